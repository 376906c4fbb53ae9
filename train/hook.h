// Hooks: code that watches training and may ask it to stop, built by name from the `hooks` list.
//
//   hooks:
//     - {name: early_stopping, metric: val/accuracy, mode: max, patience: 3}
#pragma once

#include "core/registry.h"

#include <nlohmann/json.hpp>

#include <map>
#include <memory>
#include <string>

namespace facet::train {

// What a hook may ask of the trainer.
struct HookRequest {
  bool stop = false;
  std::string reason;
};

class Hook {
 public:
  virtual ~Hook() = default;
  virtual void after_step(int64_t step, double loss, HookRequest& request) {}
  virtual void after_eval(int64_t step, const std::map<std::string, double>& results, HookRequest& request) {}
  // What the hook has counted so far, saved with each checkpoint so a resumed run continues it.
  virtual nlohmann::json state() const { return nullptr; }
  virtual void load_state(const nlohmann::json& state) {}
};

using HookRegistry = Registry<std::shared_ptr<Hook>>;
HookRegistry& hook_registry();

}  // namespace facet::train
