// The Trainer: the training loop and nothing else. The builder (train/builder.h) makes the
// components from the config; a TrainStep (train/step.h) turns the micro-batches of one global
// batch into one optimiser step; hooks (train/hook.h, train/hooks/) log, keep the EMA, evaluate,
// checkpoint, stop early and feed per-sample losses back to curriculum samplers.
//
//   loop:  micro-batches ← loader;  result ← step.run(micro-batches);  hooks.after_step(result)
//
// Steps and hooks reach the run through the public interface below (as detectron2's hooks reach
// their trainer). Resuming restores the model, every optimiser and scaler, the sampler, the
// current epoch's order, the hooks' state and the position in the epoch; together with random
// streams seeded per micro-batch (runtime.h), a resumed run continues exactly.
#pragma once

#include "core/config.h"
#include "data/loader.h"
#include "losses/loss.h"
#include "models/model.h"
#include "train/checkpoint.h"
#include "train/cuda_graph.h"
#include "train/device_prefetch.h"
#include "train/evaluator.h"
#include "train/hook.h"
#include "train/options.h"
#include "train/runtime.h"
#include "train/step.h"

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>

namespace facet::tensorboard {
class EventWriter;
}

namespace facet::train {

class Optimization;
struct Png;

// What a finished (or interrupted) run reports.
struct RunResult {
  int64_t step = 0;
  bool interrupted = false;    // by a signal; resume to continue
  std::string stopped_early;   // a hook's reason, when one ended the run before max_steps
  std::map<std::string, double> last_eval;
};

// Where the loop stands; saved with every checkpoint.
struct RunState {
  int64_t step = 0;            // optimiser steps done
  int64_t epoch = 0;
  int64_t batch_in_epoch = 0;  // loader position within the epoch (batches consumed or skipped)
  int64_t total_steps = 0;
  int64_t steps_per_epoch = 0;
  int64_t skipped_steps = 0;   // steps not applied (non-finite values)
};

enum class Mode {
  train,   // a new run in run_dir (config.yaml, log.txt, metrics.csv, events, checkpoints/)
  resume,  // the run in run_dir, continued from its newest complete checkpoint
  check,   // build every component and check the config, then stop: nothing is loaded or written
};

class Trainer {
 public:
  // Every component is built and the config checked for unread keys before anything is written
  // to `run_dir`, so a config that fails leaves no run directory behind.
  Trainer(Config config, std::filesystem::path run_dir, Mode mode = Mode::train);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  RunResult fit();
  // Adds a hook built in C++ (configs add theirs by name); call before fit(). In a resumed run the
  // hook gets its state back (on_restore) as it is added.
  void add_hook(std::shared_ptr<Hook> hook);

  // --- the run, for steps and hooks -----------------------------------------------------------
  const Config& config() const { return config_; }
  const TrainOptions& options() const { return options_; }
  const RunState& state() const { return state_; }
  const Runtime& runtime() const { return runtime_; }
  const std::filesystem::path& run_dir() const { return run_dir_; }
  models::Model& model() { return *model_; }
  // The model's forward as a training step runs it: through the CUDA graphs with train.cuda_graph
  // (eagerly for a batch of other shapes), else model().forward(batch).
  Outputs forward(const data::Batch& batch);
  losses::Loss& loss();
  Optimization& optimization(const std::string& name = "main");
  const std::vector<std::unique_ptr<Optimization>>& optimizations() const { return optimizations_; }
  data::Loader& loader() { return *loader_; }
  data::Sampler& sampler() { return loader_->sampler(); }
  const DevicePrefetcher& prefetcher() const { return *prefetcher_; }
  const data::Dataset& train_set() const { return *train_set_; }
  bool has_evaluation() const { return evaluator_ != nullptr; }
  const std::map<std::string, double>& last_eval() const { return last_eval_; }
  int64_t last_saved_step() const { return last_saved_step_; }

  // Steps call these around every micro-batch: the first seeds its random streams from (step,
  // its place in the global batch, phase) and runs the hooks' before_micro_batch; the second runs
  // after_micro_batch.
  void begin_micro_batch(const data::Batch& batch, int64_t index, uint64_t phase);
  void end_micro_batch(const MicroBatch& micro);
  // Whether steps must collect per-sample losses (a sampler or hook uses them).
  bool wants_per_sample() const { return wants_per_sample_; }

  // Hooks call these.
  EvalResults evaluate();                    // the eval split, current weights; before_eval / after_eval around it
  // After fit(): `data.test_split` evaluated once with the best checkpoint's weights (the last
  // ones without a best), as papers report a held-out test split chosen on validation; empty
  // without a test split. Every rank calls it.
  EvalResults test();
  void save_checkpoint(bool is_best);        // rank 0 writes; every rank may call
  void request_stop(std::string reason);     // ends the run after this step (same on every rank)
  bool stop_requested() const { return !stop_reason_.empty(); }
  void log_scalars(const std::string& prefix, const std::map<std::string, double>& values);
  void log_picture(const std::string& tag, const Png& png);

 private:
  void build(Mode mode);
  void build_data();
  void build_model_and_step(Mode mode);
  void build_optimizations();
  void find_frozen();
  void build_cuda_graph();
  void build_hooks();
  void check_metric_names();
  void restore(const std::filesystem::path& checkpoint);
  // Rank 0: an evaluation's headline in the log, its values in metrics.csv and TensorBoard, its pictures.
  void report_eval(const EvalOutput& out, const std::string& split, const std::string& what);
  void check_resumable(const nlohmann::json& saved) const;
  void open_run_files(bool resume);
  // Puts modules whose parameters are all frozen in eval mode (their BatchNorm statistics and
  // dropout do not move); called whenever the model is set to training.
  void train_mode();
  // Gathers the step's per-sample values over ranks, for the sampler and hooks.
  void gather_per_sample(StepResult& result);
  // Whether any rank holds an empty micro-batch (every sample failed to load): the step is then
  // skipped on every rank, so collectives stay in step.
  bool any_rank_empty(const std::vector<data::Batch>& micro_batches);
  template <class F>
  void for_hooks(F&& f) {
    for (auto& h : hooks_) f(*h);
  }

  Config config_;
  std::string experiment_;
  std::filesystem::path run_dir_;
  TrainOptions options_;
  Runtime runtime_;
  RunState state_;

  std::shared_ptr<data::Dataset> train_set_;
  std::unique_ptr<data::Loader> loader_;
  std::unique_ptr<DevicePrefetcher> prefetcher_;  // the loader's batches on the device, one ahead on a GPU
  std::shared_ptr<models::Model> model_;
  std::shared_ptr<losses::Loss> loss_;
  std::shared_ptr<TrainStep> step_;
  std::unique_ptr<GraphedFunction> graph_;  // train.cuda_graph
  const data::Batch* graph_batch_ = nullptr;  // the batch being graphed (its ids and indices, at capture)
  bool graph_fallback_logged_ = false;
  std::vector<std::unique_ptr<Optimization>> optimizations_;
  std::vector<torch::nn::Module*> frozen_modules_;
  std::set<std::string> frozen_tensors_;  // frozen parameters, and the buffers of frozen modules
  std::unique_ptr<Evaluator> evaluator_;
  std::string test_split_;  // data.test_split, evaluated by test()
  std::vector<std::shared_ptr<Hook>> hooks_;
  bool wants_per_sample_ = false;
  bool adaptive_sampler_ = false;   // its order depends on feedback: the epoch's order is checkpointed
  nlohmann::json init_weights_record_ = nlohmann::json::array();
  std::vector<int64_t> resumed_order_;  // the interrupted epoch's order, for an adaptive sampler
  // The checkpoint resumed from, less its model tensors, until fit(): for hooks added after the build.
  std::optional<CheckpointContents> restored_;
  int64_t image_channels_ = 0;          // of the training images, for `facet predict`

  std::unique_ptr<CheckpointDir> checkpoints_;
  std::unique_ptr<tensorboard::EventWriter> events_;
  std::FILE* metrics_csv_ = nullptr;
  int64_t metrics_rows_ = -1;  // rows of values in metrics.csv (rank 0; saved with each checkpoint); -1: unknown
  std::string stop_reason_;
  int64_t last_saved_step_ = -1;
  std::map<std::string, double> last_eval_;
};

// Installs SIGINT/SIGTERM handlers that ask the running trainer to checkpoint and stop.
void install_stop_signal_handlers();
// The signal that asked us to stop, or 0.
int stop_signal();

}  // namespace facet::train
