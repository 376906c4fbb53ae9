#include "train/optimizer.h"

#include "core/log.h"
#include "train/fused_optimizers.h"
#include "models/model.h"

#include <cmath>

namespace facet::train {

OptimizerRegistry& optimizer_registry() {
  static OptimizerRegistry registry("optimiser", "optimisers");
  return registry;
}

bool glob_match(std::string_view pattern, std::string_view name) {
  // Iterative wildcard match with backtracking to the last '*'.
  size_t p = 0, n = 0, star = std::string_view::npos, mark = 0;
  while (n < name.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = n;
    } else if (p < pattern.size() && pattern[p] == name[n]) {
      ++p;
      ++n;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      n = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

std::vector<GroupSpec> make_param_groups(const Config& optim, torch::nn::Module& model) {
  // A NaN or negative rate would reach LibTorch and surface as an internal error mid-run.
  const double lr = optim.get_in_range<double>("lr", Range::at_least(0));
  const double weight_decay = optim.get_in_range<double>("weight_decay", 0.0, Range::at_least(0));
  const auto freeze = optim.get<std::vector<std::string>>("freeze", {});
  // With several optimisers (optimizers.<name>.params), each takes the parameters its patterns match.
  const auto only = optim.get<std::vector<std::string>>("params", {});
  std::vector<size_t> only_hits(only.size(), 0);
  const auto no_decay = optim.get<std::vector<std::string>>("no_decay", {});
  // Layer-wise lr decay needs the model's layer depths.
  const double layer_decay = optim.get<double>("layer_decay", 1.0);
  const auto* depths = dynamic_cast<const models::LayerDepths*>(&model);
  if (optim.has("layer_decay")) {
    if (!(layer_decay > 0 && layer_decay <= 1))
      fail("{}: {}: expected a factor in (0, 1], got {}", optim.where("layer_decay"), optim.full_key("layer_decay"), layer_decay);
    if (!depths) fail("{}: {}: this model has no layer depths", optim.where("layer_decay"), optim.full_key("layer_decay"));
  }

  struct Rule {
    std::string match;
    double lr_mult;
    std::optional<double> weight_decay;
  };
  std::vector<Rule> rules;
  if (optim.has("groups")) {
    const Config groups = optim.at("groups");
    for (size_t i = 0; i < groups.size(); ++i) {
      const Config g = groups.at(i);
      rules.push_back({g.get<std::string>("match"), g.get<double>("lr_mult", 1.0),
                       g.has("weight_decay") ? std::optional(g.get<double>("weight_decay")) : std::nullopt});
    }
  }

  const auto named = model.named_parameters(/*recurse=*/true);
  std::vector<size_t> rule_hits(rules.size(), 0), freeze_hits(freeze.size(), 0);
  // Groups keyed by (rule index or -1, decays?, layer id or -1) in first-seen order, so the layout is
  // deterministic.
  std::vector<GroupSpec> groups;
  std::map<std::tuple<int, bool, int64_t>, size_t> group_of;
  int64_t frozen = 0;
  for (const auto& item : named) {
    const std::string& name = item.key();
    torch::Tensor p = item.value();
    if (!only.empty()) {
      bool selected = false;
      for (size_t k = 0; k < only.size(); ++k)
        if (glob_match(only[k], name)) {
          ++only_hits[k];
          selected = true;
        }
      if (!selected) continue;
    }
    bool is_frozen = false;
    for (size_t f = 0; f < freeze.size(); ++f)
      if (glob_match(freeze[f], name)) {
        ++freeze_hits[f];
        is_frozen = true;
      }
    if (is_frozen) {
      p.set_requires_grad(false);
      frozen += p.numel();
      continue;
    }
    if (!p.requires_grad()) continue;
    int rule = -1;
    for (size_t r = 0; r < rules.size() && rule < 0; ++r)
      if (glob_match(rules[r].match, name)) rule = static_cast<int>(r);
    if (rule >= 0) ++rule_hits[static_cast<size_t>(rule)];
    bool decays = p.dim() > 1;
    for (const auto& pattern : no_decay)
      if (glob_match(pattern, name)) decays = false;
    int64_t layer = -1;
    if (optim.has("layer_decay")) {
      layer = depths->layer_id(name);
      if (layer < 0 || layer >= depths->num_layer_ids())
        fail("{}: {}: parameter {} has layer id {}, outside 0..{}", optim.where("layer_decay"), optim.full_key("layer_decay"),
             name, layer, depths->num_layer_ids() - 1);
    }
    const auto key = std::make_tuple(rule, decays, layer);
    if (!group_of.count(key)) {
      group_of[key] = groups.size();
      GroupSpec g;
      g.label = (rule >= 0 ? rules[static_cast<size_t>(rule)].match : std::string("default")) +
                (decays ? " (decay)" : " (no decay)") + (layer >= 0 ? fmt::format(" layer {}", layer) : "");
      g.lr = lr * (rule >= 0 ? rules[static_cast<size_t>(rule)].lr_mult : 1.0);
      if (layer >= 0) g.lr *= std::pow(layer_decay, static_cast<double>(depths->num_layer_ids() - 1 - layer));
      const double wd = rule >= 0 ? rules[static_cast<size_t>(rule)].weight_decay.value_or(weight_decay) : weight_decay;
      g.weight_decay = decays ? wd : 0.0;
      groups.push_back(std::move(g));
    }
    groups[group_of[key]].params.push_back(p);
  }
  for (size_t r = 0; r < rules.size(); ++r)
    if (rule_hits[r] == 0)
      fail("{}: {}.groups[{}].match: \"{}\" matches no trainable parameter", optim.where("groups"), optim.prefix(), r,
           rules[r].match);
  for (size_t k = 0; k < only.size(); ++k)
    if (only_hits[k] == 0)
      fail("{}: {}.params: \"{}\" matches no parameter", optim.where("params"), optim.prefix(), only[k]);
  for (size_t f = 0; f < freeze.size(); ++f)
    if (freeze_hits[f] == 0)
      fail("{}: {}.freeze: \"{}\" matches no parameter", optim.where("freeze"), optim.prefix(), freeze[f]);
  if (groups.empty()) fail("{}: {}: the model has no trainable parameter left", optim.where(), optim.prefix());
  for (const auto& g : groups) {
    int64_t n = 0;
    for (const auto& p : g.params) n += p.numel();
    log::debug("param group {}: {} tensors, {} parameters, lr {:g}, weight decay {:g}", g.label, g.params.size(), n,
               g.lr, g.weight_decay);
  }
  if (frozen) log::info("frozen parameters: {}", frozen);
  return groups;
}

std::vector<double> base_learning_rates(const std::vector<GroupSpec>& groups) {
  std::vector<double> out;
  for (const auto& g : groups) out.push_back(g.lr);
  return out;
}

std::unique_ptr<torch::optim::Optimizer> build_optimizer(const Config& optim, torch::nn::Module& model) {
  return optimizer_registry().create(optim, make_param_groups(optim, model));
}

namespace {

// Every group gets complete options (torch versions differ in how partial options are merged).
// `optim.fused` (default true) picks ATen's one-kernel-per-group step over LibTorch's loop over
// parameters; both keep the same state, so a checkpoint of either resumes in the other.
template <class Options, class Loop, class Fused>
std::unique_ptr<torch::optim::Optimizer> make(const Config& c, const std::vector<GroupSpec>& specs,
                                             const Options& defaults) {
  std::vector<torch::optim::OptimizerParamGroup> groups;
  for (const auto& s : specs) {
    auto options = std::make_unique<Options>(defaults);
    options->lr(s.lr);
    options->weight_decay(s.weight_decay);
    groups.emplace_back(s.params, std::move(options));
  }
  if (c.get<bool>("fused", true)) return std::make_unique<Fused>(std::move(groups), defaults);
  return std::make_unique<Loop>(std::move(groups), defaults);
}

std::tuple<double, double> betas(const Config& c) {
  const auto b = c.get<std::vector<double>>("betas", {0.9, 0.999});
  if (b.size() != 2) fail("{}: {}: expected two numbers, got {}", c.where("betas"), c.full_key("betas"), b.size());
  for (const double beta : b)
    if (!Range::closed_open(0, 1).contains(beta))
      fail("{}: {}: expected two numbers in [0, 1), got {}", c.where("betas"), c.full_key("betas"), beta);
  return {b[0], b[1]};
}

FACET_REGISTER(optimizer_registry(), "sgd", "SGD with momentum and optional Nesterov (momentum, nesterov, dampening)",
               [](const Config& c, const std::vector<GroupSpec>& groups) {
                 auto o = torch::optim::SGDOptions(c.get_in_range<double>("lr", Range::at_least(0)))
                              .momentum(c.get_in_range<double>("momentum", 0.0, Range::closed_open(0, 1)))
                              .nesterov(c.get<bool>("nesterov", false))
                              .dampening(c.get_in_range<double>("dampening", 0.0, Range::closed(0, 1)));
                 return make<torch::optim::SGDOptions, torch::optim::SGD, FusedSGD>(c, groups, o);
               });
FACET_REGISTER(optimizer_registry(), "adam", "Adam with L2 weight decay (betas, eps, amsgrad)",
               [](const Config& c, const std::vector<GroupSpec>& groups) {
                 auto o = torch::optim::AdamOptions(c.get_in_range<double>("lr", Range::at_least(0)))
                              .betas(betas(c))
                              .eps(c.get_in_range<double>("eps", 1e-8, Range::above(0)))
                              .amsgrad(c.get<bool>("amsgrad", false));
                 return make<torch::optim::AdamOptions, torch::optim::Adam, FusedAdam>(c, groups, o);
               });
FACET_REGISTER(optimizer_registry(), "adamw", "AdamW, decoupled weight decay (betas, eps, amsgrad)",
               [](const Config& c, const std::vector<GroupSpec>& groups) {
                 auto o = torch::optim::AdamWOptions(c.get_in_range<double>("lr", Range::at_least(0)))
                              .betas(betas(c))
                              .eps(c.get_in_range<double>("eps", 1e-8, Range::above(0)))
                              .amsgrad(c.get<bool>("amsgrad", false));
                 return make<torch::optim::AdamWOptions, torch::optim::AdamW, FusedAdamW>(c, groups, o);
               });

}  // namespace
}  // namespace facet::train
