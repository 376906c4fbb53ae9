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

// Linear warm-up wrapped around any shape.
class Warmed : public Schedule {
 public:
  Warmed(const Config& c, std::function<double(int64_t)> shape)
      : warmup_steps_(c.get<int64_t>("warmup_steps", 0)),
        warmup_factor_(c.get<double>("warmup_factor", 0.001)),
        shape_(std::move(shape)) {
    if (warmup_steps_ < 0) fail("{}: {}.warmup_steps: expected >= 0, got {}", c.where("warmup_steps"), c.prefix(), warmup_steps_);
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
               [](const Config& c, int64_t) { return std::make_shared<Warmed>(c, [](int64_t) { return 1.0; }); });

FACET_REGISTER(schedule_registry(), "cosine", "Cosine decay to min_factor × lr over the run",
               [](const Config& c, int64_t total) {
                 const double floor = c.get<double>("min_factor", 0.0);
                 const int64_t warmup = c.get<int64_t>("warmup_steps", 0);
                 return std::make_shared<Warmed>(c, [=](int64_t step) {
                   // The cosine starts after the warm-up, as in timm and detectron2.
                   const double span = std::max<double>(1.0, static_cast<double>(total - warmup));
                   const double t = std::clamp(static_cast<double>(step - warmup) / span, 0.0, 1.0);
                   return floor + (1.0 - floor) * 0.5 * (1.0 + std::cos(std::numbers::pi * t));
                 });
               });

FACET_REGISTER(schedule_registry(), "multistep", "Multiply by gamma at each of `milestones` (steps)",
               [](const Config& c, int64_t) {
                 const auto milestones = c.get<std::vector<int64_t>>("milestones");
                 const double gamma = c.get<double>("gamma", 0.1);
                 return std::make_shared<Warmed>(c, [=](int64_t step) {
                   int passed = 0;
                   for (int64_t m : milestones) passed += step >= m;
                   return std::pow(gamma, passed);
                 });
               });

FACET_REGISTER(schedule_registry(), "poly", "(1 - step/total)^power decay",
               [](const Config& c, int64_t total) {
                 const double power = c.get<double>("power", 0.9);
                 return std::make_shared<Warmed>(c, [=](int64_t step) {
                   return std::pow(1.0 - std::clamp(static_cast<double>(step) / std::max<int64_t>(total, 1), 0.0, 1.0),
                                   power);
                 });
               });

}  // namespace
}  // namespace facet::train
