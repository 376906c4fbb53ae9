// The Trainer: builds everything of an experiment from its config through the registries and runs
// it — iterations or epochs, gradient accumulation, clipping, mixed precision, EMA, evaluation with
// best-checkpoint selection, exact resume, non-finite guards, and data-parallel training over c10d.
#pragma once

#include "core/config.h"
#include "core/tensor_dict.h"
#include "data/loader.h"
#include "losses/loss.h"
#include "metrics/metric.h"
#include "models/model.h"
#include "train/amp.h"
#include "train/checkpoint.h"
#include "train/hook.h"
#include "train/distributed.h"
#include "train/schedule.h"

#include <filesystem>
#include <map>
#include <memory>
#include <string>

namespace facet::tensorboard {
class EventWriter;
}

namespace facet::train {

// The `train` node.
struct TrainOptions {
  int64_t max_steps = 0;         // optimiser steps; 0: use max_epochs
  int64_t max_epochs = 0;
  int64_t grad_accum = 1;        // micro-batches per optimiser step
  double clip_norm = 0;          // 0: no clipping
  std::string amp = "none";      // none | bf16 | fp16 (fp16 uses a gradient scaler)
  double ema_decay = 0;          // 0: no EMA
  int64_t eval_every = 0;        // steps; 0: at the end of every epoch
  int64_t checkpoint_every = 0;  // steps; 0: after every evaluation
  int keep_last = 2;
  std::string best_metric;       // e.g. "val/accuracy"; empty: no best checkpoint
  std::string best_mode = "max";
  int64_t log_every = 10;
  std::string non_finite = "skip";  // skip | stop
  std::string device = "auto";      // auto | cpu | cuda | cuda:N
  double dist_timeout_s = 300;
  bool overlap_grad_reduce = true;  // all-reduce gradient buckets during backward (several ranks)
  int64_t bucket_mb = 25;           // gradient all-reduce bucket size
  int threads = 0;                  // intra-op threads; 0: LibTorch's default
  int64_t log_images = 0;           // eval inputs shown per evaluation (TensorBoard + visuals/); 0: none

  static TrainOptions from(const Config& train);
};

// What a finished (or interrupted) run reports.
struct RunResult {
  int64_t step = 0;
  bool interrupted = false;    // by a signal; resume to continue
  std::string stopped_early;   // a hook's reason, when one ended the run before max_steps
  std::map<std::string, double> last_eval;
};

enum class Mode {
  train,     // a new run in run_dir
  resume,    // continue run_dir from checkpoints/last (the model config must match the saved one)
  evaluate,  // no training state, no run files: load weights with load_weights(), then evaluate()
};

struct Png;

class Trainer {
 public:
  // `run_dir` holds config.yaml, log.txt, metrics.csv, events, checkpoints/.
  Trainer(Config config, std::filesystem::path run_dir, Mode mode);
  ~Trainer();

  RunResult fit();
  // Evaluates on `split` with the current (or EMA) weights, merged over ranks. With a path, rank 0
  // also writes one CSV row per sample: its id and every output value.
  std::map<std::string, double> evaluate(const std::string& split, const std::filesystem::path& predictions = {});
  // Model (and EMA) weights of a checkpoint directory, for evaluation.
  void load_weights(const std::filesystem::path& checkpoint);

  models::Model& model() { return *model_; }
  int64_t step() const { return step_; }

 private:
  struct StepOutcome {
    bool applied = false;
    double loss = 0;
    std::map<std::string, double> parts;
  };
  StepOutcome train_step(std::vector<data::Batch>& micro_batches);
  void save_checkpoint(bool is_best);
  void restore(const std::filesystem::path& checkpoint);
  void log_scalars(const std::string& prefix, const std::map<std::string, double>& values);
  // A picture to TensorBoard and visuals/<tag>_step<N>.png (facet eval: eval/<tag>.png).
  void log_png(const std::string& tag, const Png& png);
  // Records `results` against train.best_metric; true when they are the best so far.
  bool improves_with(const std::map<std::string, double>& results);
  void ema_update();
  void swap_ema();

  Config config_;
  std::filesystem::path run_dir_;
  TrainOptions options_;
  DistributedEnv env_;
  std::unique_ptr<ProcessGroup> group_;
  std::unique_ptr<OverlappedGradientReducer> reducer_;  // when options_.overlap_grad_reduce
  torch::Device device_{torch::kCPU};
  uint64_t seed_ = 0;

  std::shared_ptr<data::Dataset> train_set_;
  std::unique_ptr<data::Loader> loader_;
  std::shared_ptr<models::Model> model_;
  std::shared_ptr<losses::Loss> loss_;
  std::vector<std::shared_ptr<metrics::Metric>> metrics_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  std::vector<double> base_lrs_;
  std::shared_ptr<Schedule> schedule_;
  std::vector<torch::Tensor> params_;  // trainable, in optimiser order
  std::map<std::string, torch::Tensor> ema_;
  std::unique_ptr<GradScaler> scaler_;  // fp16 only
  std::shared_ptr<data::Dataset> eval_set_;
  std::string eval_split_;
  std::vector<std::shared_ptr<data::Transform>> eval_transforms_;
  std::vector<std::shared_ptr<Hook>> hooks_;
  HookRequest hook_request_;
  Mode mode_;
  int eval_workers_ = 2;

  std::unique_ptr<CheckpointDir> checkpoints_;
  std::unique_ptr<tensorboard::EventWriter> events_;
  std::FILE* metrics_csv_ = nullptr;

  int64_t step_ = 0, epoch_ = 0, batch_in_epoch_ = 0, total_steps_ = 0, skipped_steps_ = 0;
  std::optional<double> best_;
  std::map<std::string, double> last_eval_;
};

// Installs SIGINT/SIGTERM handlers that ask the running trainer to checkpoint and stop.
void install_stop_signal_handlers();
// The signal that asked us to stop, or 0.
int stop_signal();

}  // namespace facet::train
