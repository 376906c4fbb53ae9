#include "models/adapters/adapter.h"

#include "core/log.h"
#include "core/text.h"

#include <algorithm>
#include <set>

namespace facet::models {

AdapterRegistry& adapter_registry() {
  static AdapterRegistry registry("adapter", "adapters");
  return registry;
}

bool glob_match(std::string_view pattern, std::string_view name) {
  if (pattern.empty()) return name.empty();
  if (pattern.starts_with("**")) {
    for (size_t i = 0; i <= name.size(); ++i)
      if (glob_match(pattern.substr(2), name.substr(i))) return true;
    return false;
  }
  if (pattern.front() == '*') {
    for (size_t i = 0; i <= name.size(); ++i) {
      if (glob_match(pattern.substr(1), name.substr(i))) return true;
      if (i < name.size() && name[i] == '.') break;  // '*' stays within one component
    }
    return false;
  }
  return !name.empty() && pattern.front() == name.front() && glob_match(pattern.substr(1), name.substr(1));
}

namespace {

// The whole name, or a dotted tail of it.
bool matches(const std::string& pattern, const std::string& name) {
  if (glob_match(pattern, name)) return true;
  for (size_t dot = name.find('.'); dot != std::string::npos; dot = name.find('.', dot + 1))
    if (glob_match(pattern, std::string_view(name).substr(dot + 1))) return true;
  return false;
}

// The `n` names closest to `pattern` (edit distance), for error messages.
std::vector<std::string> nearest(const std::string& pattern, const std::vector<std::string>& names, size_t n = 3) {
  std::vector<std::pair<size_t, std::string>> scored;
  for (const auto& name : names) {
    size_t best = edit_distance(pattern, name);
    for (size_t dot = name.find('.'); dot != std::string::npos; dot = name.find('.', dot + 1))
      best = std::min(best, edit_distance(pattern, std::string_view(name).substr(dot + 1)));
    scored.emplace_back(best, name);
  }
  std::stable_sort(scored.begin(), scored.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<std::string> out;
  for (size_t i = 0; i < scored.size() && i < n; ++i) out.push_back(scored[i].second);
  return out;
}

}  // namespace

std::vector<AppliedAdapters> apply_adapters(torch::nn::Module& model, const Config& list) {
  if (!list.is_list()) fail("{}: {}: expected a list of {{name: ..., targets: [...]}} entries", list.where(), list.prefix());
  // Candidates: every models::Linear of the model that is not itself part of an adapter.
  std::vector<std::pair<std::string, std::shared_ptr<torch::nn::Module>>> modules;
  std::vector<std::string> linear_names;
  std::set<std::string> linear_set;
  for (const auto& item : model.named_modules("", /*include_self=*/false)) {
    const std::string& name = item.key();
    bool inside_linear = false;
    for (size_t dot = name.find('.'); dot != std::string::npos && !inside_linear; dot = name.find('.', dot + 1))
      inside_linear = linear_set.count(name.substr(0, dot)) > 0;
    if (inside_linear) continue;
    modules.emplace_back(name, item.value());
    if (item.value()->as<LinearImpl>()) {
      linear_names.push_back(name);
      linear_set.insert(name);
    }
  }
  std::vector<AppliedAdapters> out;
  for (size_t i = 0; i < list.size(); ++i) {
    const Config entry = list.at(i);
    const auto adapter = adapter_registry().create(entry);
    const auto targets = entry.get<std::vector<std::string>>("targets");
    const bool freeze_base = entry.get<bool>("freeze_base", true);
    if (targets.empty()) fail("{}: {}: expected at least one pattern", entry.where("targets"), entry.full_key("targets"));
    AppliedAdapters applied{entry.get<std::string>("name"), {}};
    std::set<std::string> chosen;
    for (const auto& pattern : targets) {
      size_t hits = 0;
      for (const auto& [name, module] : modules) {
        if (!matches(pattern, name)) continue;
        if (!module->as<LinearImpl>())
          fail("{}: {}: \"{}\" matches {} ({}), which is not a models::Linear and cannot be adapted; Linear layers near it: {}",
               entry.where("targets"), entry.full_key("targets"), pattern, name, module->name(), join(nearest(name, linear_names)));
        ++hits;
        chosen.insert(name);
      }
      if (hits == 0)
        fail("{}: {}: \"{}\" matches no layer of the model; nearest Linear layers: {}", entry.where("targets"),
             entry.full_key("targets"), pattern, linear_names.empty() ? "(the model has none)" : join(nearest(pattern, linear_names)));
    }
    for (const auto& [name, module] : modules) {
      if (!chosen.count(name)) continue;
      auto* linear = module->as<LinearImpl>();
      adapter->attach(*linear, name);
      if (freeze_base) {
        linear->weight.set_requires_grad(false);
        if (linear->bias.defined()) linear->bias.set_requires_grad(false);
      }
      applied.layers.push_back(name);
    }
    log::info("adapters: {} on {} layers{}", applied.name, applied.layers.size(), freeze_base ? " (their base weights frozen)" : "");
    out.push_back(std::move(applied));
  }
  return out;
}

void merge_adapters(torch::nn::Module& model) {
  for (const auto& m : model.modules())
    if (auto* linear = m->as<LinearImpl>())
      for (const auto& a : linear->adapters())
        if (!a->merged()) a->merge();
}

void unmerge_adapters(torch::nn::Module& model) {
  for (const auto& m : model.modules())
    if (auto* linear = m->as<LinearImpl>())
      for (const auto& a : linear->adapters())
        if (a->merged()) a->unmerge();
}

// --- LoRA --------------------------------------------------------------------------------------------
LoraOptions LoraOptions::from(const Config& c) {
  LoraOptions o;
  o.rank = c.get<int64_t>("rank", o.rank);
  o.alpha = c.get<double>("alpha", o.alpha);
  o.dropout = c.get<double>("dropout", o.dropout);
  if (o.rank < 1) fail("{}: {}: expected a positive rank, got {}", c.where("rank"), c.full_key("rank"), o.rank);
  if (!(o.alpha > 0)) fail("{}: {}: expected > 0, got {}", c.where("alpha"), c.full_key("alpha"), o.alpha);
  if (!(o.dropout >= 0 && o.dropout < 1)) fail("{}: {}: expected [0, 1), got {}", c.where("dropout"), c.full_key("dropout"), o.dropout);
  return o;
}

LoraAdapter::LoraAdapter(LinearImpl& host, const LoraOptions& options) : host_(host), options_(options) {
  if (host.options.in_features() < 1 || host.options.out_features() < 1) fail("lora: the layer has no inputs or outputs");
  // Trained parameters: initialised whatever scope the model was built in, in the base weight's dtype.
  ConstructionScope scope(host.weight.scalar_type(), /*defer_init=*/false, host.weight.device());
  lora_A = host.register_module("lora_A", Linear(LinearOptions(host.options.in_features(), options.rank).bias(false)));
  lora_B = host.register_module("lora_B", Linear(LinearOptions(options.rank, host.options.out_features()).bias(false)));
  torch::NoGradGuard no_grad;
  lora_B->weight.zero_();  // A keeps Linear's kaiming_uniform_(a = sqrt(5)), as PEFT's init_lora_weights = True
}

torch::Tensor LoraAdapter::forward(const torch::Tensor& x, torch::Tensor y, bool training) {
  if (merged_) return y;
  const torch::Tensor h = options_.dropout > 0 ? torch::dropout(x, options_.dropout, training) : x;
  return y + lora_B(lora_A(h)) * scaling();
}

torch::Tensor LoraAdapter::delta() const {
  return (torch::matmul(lora_B->weight.to(torch::kFloat), lora_A->weight.to(torch::kFloat)) * scaling()).to(host_.weight.scalar_type());
}

void LoraAdapter::merge() {
  if (merged_) return;
  torch::NoGradGuard no_grad;
  host_.weight.add_(delta());
  merged_ = true;
}

void LoraAdapter::unmerge() {
  if (!merged_) return;
  torch::NoGradGuard no_grad;
  host_.weight.sub_(delta());
  merged_ = false;
}

namespace {

class Lora : public Adapter {
 public:
  explicit Lora(LoraOptions o) : options_(o) {}
  void attach(LinearImpl& linear, const std::string& path) const override {
    for (const auto& a : linear.adapters())
      if (a->kind() == "lora") fail("{}: already has a LoRA adapter", path);
    linear.add_adapter(std::make_shared<LoraAdapter>(linear, options_));
  }

 private:
  LoraOptions options_;
};

FACET_REGISTER(adapter_registry(), "lora",
               "LoRA (Hu et al. 2021) on models::Linear layers: lora_A [r, in] kaiming, lora_B [out, r] zeros, "
               "scaling alpha / r (targets, rank, alpha, dropout, freeze_base)",
               [](const Config& c) -> std::shared_ptr<const Adapter> { return std::make_shared<const Lora>(LoraOptions::from(c)); });

}  // namespace
}  // namespace facet::models
