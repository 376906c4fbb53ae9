#include "train/hook.h"

#include "core/text.h"
#include "train/checkpoint.h"
#include "train/trainer.h"

#include <cmath>

namespace facet::train {

HookRegistry& hook_registry() {
  static HookRegistry registry("hook", "hooks");
  return registry;
}

namespace {

// Stops when `metric` has not improved for `patience` evaluations in a row.
class EarlyStopping : public Hook {
 public:
  explicit EarlyStopping(const Config& c)
      : metric_(c.get<std::string>("metric")),
        maximise_(c.get<std::string>("mode", "max") == "max"),
        patience_(c.get<int>("patience", 5)),
        min_delta_(c.get<double>("min_delta", 0.0)), where_(fmt::format("{}: {}.metric", c.where("metric"), c.prefix())) {
    const auto mode = c.get<std::string>("mode", "max");
    if (mode != "max" && mode != "min") fail("{}: {}.mode: expected max or min, got \"{}\"", c.where("mode"), c.prefix(), mode);
    if (patience_ < 1) fail("{}: {}.patience: expected >= 1, got {}", c.where("patience"), c.prefix(), patience_);
  }

  std::string name() const override { return "early_stopping"; }
  std::vector<std::pair<std::string, std::string>> metrics_read() const override { return {{metric_, where_}}; }

  void after_eval(Trainer& trainer, const EvalResults& results) override {
    auto it = results.find(metric_);
    if (it == results.end()) {
      std::vector<std::string> names;
      for (const auto& [k, v] : results) names.push_back(k);
      fail("early_stopping: metric \"{}\" is not among the evaluation results ({})", metric_, join(names));
    }
    // A value that is not a finite number (an F1 over no positive label is NaN) never improves.
    const double v = it->second;
    const bool better = std::isfinite(v) && (!best_ || (maximise_ ? v > *best_ + min_delta_ : v < *best_ - min_delta_));
    if (better) {
      best_ = v;
      stale_ = 0;
      return;
    }
    if (++stale_ >= patience_)
      trainer.request_stop(fmt::format("early stopping at step {}: {} {} for {} evaluations", trainer.state().step,
                                       metric_,
                                       best_ ? fmt::format("has not improved on {:.4f}", *best_)
                                             : std::string("has not been a finite number"),
                                       stale_));
  }

  void on_save(Trainer&, CheckpointContents& contents) override {
    nlohmann::json s = {{"stale", stale_}};
    if (best_) s["best"] = *best_;
    contents.state["hooks"][name()] = s;
  }
  void on_restore(Trainer&, const CheckpointContents& contents) override {
    const auto hooks = contents.state.value("hooks", nlohmann::json::object());
    if (!hooks.is_object() || !hooks.contains(name())) return;
    const auto& s = hooks.at(name());
    stale_ = s.value("stale", 0);
    if (s.contains("best") && s.at("best").is_number()) best_ = s.at("best").get<double>();
  }

 private:
  std::string metric_;
  bool maximise_;
  int patience_;
  double min_delta_;
  std::string where_;
  std::optional<double> best_;
  int stale_ = 0;
};

FACET_REGISTER(hook_registry(), "early_stopping", "Stop when a metric stops improving (metric, mode, patience)",
               [](const Config& c) { return std::make_shared<EarlyStopping>(c); });

}  // namespace
}  // namespace facet::train
