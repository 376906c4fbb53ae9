#include "train/schedule.h"

#include <cmath>
#include <numbers>

namespace facet::train {

ScheduleRegistry& schedule_registry() {
  static ScheduleRegistry registry("schedule", "schedules");
  return registry;
}

void apply_learning_rates(torch::optim::Optimizer& optimizer, const std::vector<double>& base_lrs,
                          const Schedule& schedule, int64_t step) {
  auto& groups = optimizer.param_groups();
  if (groups.size() != base_lrs.size()) fail("schedule: {} base learning rates for {} groups", base_lrs.size(), groups.size());
  const double f = schedule.factor(step);
  for (size_t i = 0; i < groups.size(); ++i) groups[i].options().set_lr(base_lrs[i] * f);
}

namespace {

// `key` in steps, or `epochs_key` in (fractional) epochs converted with the span.
int64_t steps_or_epochs(const Config& c, const std::string& key, const std::string& epochs_key, const ScheduleSpan& span,
                        int64_t fallback) {
  if (c.has(key) && c.has(epochs_key)) fail("{}: {}: give {} or {}, not both", c.where(key), c.full_key(key), key, epochs_key);
  if (!c.has(epochs_key)) return c.get<int64_t>(key, fallback);
  if (span.steps_per_epoch <= 0)
    fail("{}: {}: epochs are unknown here; give {} in steps", c.where(epochs_key), c.full_key(epochs_key), key);
  return static_cast<int64_t>(std::llround(c.get<double>(epochs_key) * static_cast<double>(span.steps_per_epoch)));
}

// Linear warm-up wrapped around any shape.
class Warmed : public Schedule {
 public:
  Warmed(const Config& c, const ScheduleSpan& span, std::function<double(int64_t)> shape)
      : warmup_steps_(steps_or_epochs(c, "warmup_steps", "warmup_epochs", span, 0)),
        warmup_factor_(c.get<double>("warmup_factor", 0.001)),
        shape_(std::move(shape)) {
    if (warmup_steps_ < 0) fail("{}: {}: expected >= 0, got {}", c.where("warmup_steps"), c.full_key("warmup_steps"), warmup_steps_);
  }
  double factor(int64_t step) const override {
    double f = shape_(step);
    if (step < warmup_steps_) {
      const double alpha = static_cast<double>(step) / static_cast<double>(warmup_steps_);
      f *= warmup_factor_ * (1.0 - alpha) + alpha;
    }
    return f;
  }

 private:
  int64_t warmup_steps_;
  double warmup_factor_;
  std::function<double(int64_t)> shape_;
};

FACET_REGISTER(schedule_registry(), "constant", "Constant learning rate (after optional warm-up)",
               [](const Config& c, const ScheduleSpan& span) {
                 return std::make_shared<Warmed>(c, span, [](int64_t) { return 1.0; });
               });

FACET_REGISTER(schedule_registry(), "cosine", "Cosine decay to min_factor × lr over the run",
               [](const Config& c, const ScheduleSpan& span) {
                 const double floor = c.get<double>("min_factor", 0.0);
                 const int64_t warmup = steps_or_epochs(c, "warmup_steps", "warmup_epochs", span, 0);
                 const int64_t total = span.total_steps;
                 return std::make_shared<Warmed>(c, span, [=](int64_t step) {
                   // The cosine starts after the warm-up, as in timm and detectron2.
                   const double span = std::max<double>(1.0, static_cast<double>(total - warmup));
                   const double t = std::clamp(static_cast<double>(step - warmup) / span, 0.0, 1.0);
                   return floor + (1.0 - floor) * 0.5 * (1.0 + std::cos(std::numbers::pi * t));
                 });
               });

FACET_REGISTER(schedule_registry(), "multistep", "Multiply by gamma at each of `milestones` (steps) or `milestone_epochs`",
               [](const Config& c, const ScheduleSpan& span) {
                 std::vector<int64_t> milestones;
                 if (c.has("milestone_epochs")) {
                   if (span.steps_per_epoch <= 0)
                     fail("{}: {}: epochs are unknown here; give milestones in steps", c.where("milestone_epochs"), c.full_key("milestone_epochs"));
                   for (double e : c.get<std::vector<double>>("milestone_epochs"))
                     milestones.push_back(static_cast<int64_t>(std::llround(e * static_cast<double>(span.steps_per_epoch))));
                 } else {
                   milestones = c.get<std::vector<int64_t>>("milestones");
                 }
                 const double gamma = c.get<double>("gamma", 0.1);
                 return std::make_shared<Warmed>(c, span, [=](int64_t step) {
                   int passed = 0;
                   for (int64_t m : milestones) passed += step >= m;
                   return std::pow(gamma, passed);
                 });
               });

FACET_REGISTER(schedule_registry(), "step", "Multiply by gamma every step_size steps or step_epochs epochs (JAA-Net)",
               [](const Config& c, const ScheduleSpan& span) {
                 const int64_t every = steps_or_epochs(c, "step_size", "step_epochs", span, 0);
                 if (every <= 0) fail("{}: {}: give a positive step_size (steps) or step_epochs", c.where("step_size"), c.full_key("step_size"));
                 const double gamma = c.get<double>("gamma", 0.1);
                 return std::make_shared<Warmed>(c, span, [=](int64_t step) {
                   return std::pow(gamma, static_cast<double>(step / every));
                 });
               });
FACET_REGISTER(schedule_registry(), "poly", "(1 - step/total)^power decay",
               [](const Config& c, const ScheduleSpan& span) {
                 const double power = c.get<double>("power", 0.9);
                 const int64_t total = span.total_steps;
                 return std::make_shared<Warmed>(c, span, [=](int64_t step) {
                   return std::pow(1.0 - std::clamp(static_cast<double>(step) / std::max<int64_t>(total, 1), 0.0, 1.0),
                                   power);
                 });
               });

}  // namespace
}  // namespace facet::train
