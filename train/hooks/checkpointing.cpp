#include "core/text.h"
#include "train/checkpoint.h"
#include "train/hooks/builtin.h"
#include "train/trainer.h"

#include <cmath>

namespace facet::train {
namespace {

class CheckpointHook : public Hook {
 public:
  explicit CheckpointHook(const TrainOptions& o)
      : every_(o.checkpoint_every), eval_every_(o.eval_every), metric_(o.best_metric), maximise_(o.best_max) {}
  std::string name() const override { return "checkpoint"; }
  int priority() const override { return hook_priority::checkpoint; }

  void after_eval(Trainer& trainer, const EvalResults& results) override {
    evaluated_at_ = trainer.state().step;
    if (metric_.empty()) return;
    const auto it = results.find(metric_);
    if (it == results.end()) {
      std::vector<std::string> names;
      for (const auto& [name, value] : results) names.push_back(name);
      fail("train.best_metric: \"{}\" is not among the evaluation results ({})", metric_, join(names));
    }
    // A value that is not a finite number (an F1 over no positive label is NaN) is never the best.
    if (std::isfinite(it->second) && (!best_ || (maximise_ ? it->second > *best_ : it->second < *best_))) {
      best_ = it->second;
      pending_best_ = true;
    }
  }

  void after_step(Trainer& trainer, const StepResult&) override {
    const int64_t step = trainer.state().step;
    const bool due = every_ > 0 ? step % every_ == 0 : evaluated_at_ == step;
    if (due || pending_best_) save(trainer);
  }

  void after_epoch(Trainer& trainer) override {
    const auto& s = trainer.state();
    if (eval_every_ == 0 && s.step < s.total_steps && (trainer.last_saved_step() != s.step || pending_best_)) save(trainer);
  }

  void after_train(Trainer& trainer) override {
    if (trainer.last_saved_step() != trainer.state().step || pending_best_) save(trainer);
  }

  void on_save(Trainer&, CheckpointContents& contents) override {
    if (best_) contents.state["best"] = *best_;
  }
  void on_restore(Trainer&, const CheckpointContents& contents) override {
    if (contents.state.contains("best") && contents.state.at("best").is_number()) best_ = contents.state.at("best").get<double>();
  }

 private:
  void save(Trainer& trainer) {
    trainer.save_checkpoint(pending_best_);
    pending_best_ = false;
  }

  int64_t every_, eval_every_;
  std::string metric_;
  bool maximise_;
  std::optional<double> best_;
  bool pending_best_ = false;
  int64_t evaluated_at_ = -1;
};

}  // namespace

std::shared_ptr<Hook> make_checkpoint_hook(const TrainOptions& options) { return std::make_shared<CheckpointHook>(options); }

}  // namespace facet::train
