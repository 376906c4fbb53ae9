#include "models/adapters/peft.h"

#include "core/config.h"
#include "core/error.h"
#include "core/file_io.h"
#include "core/safetensors.h"
#include "models/adapters/adapter.h"

#include <nlohmann/json.hpp>

#include <set>

namespace facet::models {

namespace {

constexpr std::string_view kPrefix = "base_model.model.";

struct Found {
  std::string path;
  LinearImpl* linear;
  LoraAdapter* lora;
};

std::vector<Found> lora_layers(torch::nn::Module& model) {
  std::vector<Found> out;
  for (const auto& item : model.named_modules("", /*include_self=*/true)) {
    auto* linear = dynamic_cast<LinearImpl*>(item.value().get());
    if (!linear) continue;
    for (const auto& a : linear->adapters())
      if (auto* lora = dynamic_cast<LoraAdapter*>(a.get())) out.push_back({item.key(), linear, lora});
  }
  return out;
}

std::string last_component(const std::string& path) {
  const auto dot = path.rfind('.');
  return dot == std::string::npos ? path : path.substr(dot + 1);
}

}  // namespace

int64_t save_peft_adapter(torch::nn::Module& model, const std::filesystem::path& dir, const PeftSaveOptions& options) {
  const auto layers = lora_layers(model);
  if (layers.empty()) fail("save_peft_adapter: the model has no LoRA adapter");
  const auto& first = layers.front().lora->options();
  safetensors::TensorMap tensors;
  std::set<std::string> targets;
  for (const auto& f : layers) {
    const auto& o = f.lora->options();
    if (o.rank != first.rank || o.alpha != first.alpha || o.dropout != first.dropout)
      fail("save_peft_adapter: {} has rank {}, alpha {}, dropout {} but {} has {}, {}, {}; PEFT's layout keeps one "
           "setting per adapter",
           f.path, o.rank, o.alpha, o.dropout, layers.front().path, first.rank, first.alpha, first.dropout);
    if (f.lora->merged()) fail("save_peft_adapter: {} is merged; unmerge before saving the adapter", f.path);
    tensors[std::string(kPrefix) + f.path + ".lora_A.weight"] = f.lora->lora_A->weight.detach().contiguous();
    tensors[std::string(kPrefix) + f.path + ".lora_B.weight"] = f.lora->lora_B->weight.detach().contiguous();
    targets.insert(last_component(f.path));
  }
  // PEFT matches target_modules by dotted tail: the last components name exactly these layers only
  // when no other Linear shares them, else the full names are written.
  std::set<std::string> adapted;
  for (const auto& f : layers) adapted.insert(f.path);
  bool tails_exact = true;
  for (const auto& item : model.named_modules("", true))
    if (dynamic_cast<LinearImpl*>(item.value().get()) && targets.contains(last_component(item.key())) &&
        !adapted.contains(item.key()))
      tails_exact = false;
  nlohmann::json config = {
      {"peft_type", "LORA"}, {"task_type", options.task_type}, {"r", first.rank}, {"lora_alpha", first.alpha},
      {"lora_dropout", first.dropout}, {"bias", "none"}, {"fan_in_fan_out", false}, {"inference_mode", true},
      {"init_lora_weights", true}, {"use_rslora", false}, {"use_dora", false}, {"modules_to_save", nullptr},
      {"layers_to_transform", nullptr}, {"rank_pattern", nlohmann::json::object()}, {"alpha_pattern", nlohmann::json::object()},
      {"base_model_name_or_path", options.base_model_name_or_path.empty() ? nlohmann::json(nullptr) : nlohmann::json(options.base_model_name_or_path)}};
  if (tails_exact) config["target_modules"] = std::vector<std::string>(targets.begin(), targets.end());
  else config["target_modules"] = std::vector<std::string>(adapted.begin(), adapted.end());
  std::filesystem::create_directories(dir);
  safetensors::save(dir / "adapter_model.safetensors", tensors);
  write_file_atomic(dir / "adapter_config.json", config.dump(2) + "\n");
  return static_cast<int64_t>(tensors.size());
}

std::vector<std::string> load_peft_adapter(torch::nn::Module& model, const std::filesystem::path& dir) {
  const auto config_path = dir / "adapter_config.json";
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(config_path));
  } catch (const std::exception& e) {
    fail("{}: {}", config_path.string(), e.what());
  }
  auto where = [&](const std::string& key) { return config_path.string() + ": " + key; };
  if (j.value("peft_type", std::string()) != "LORA") fail("{}: only LORA adapters are supported", where("peft_type"));
  if (!j.contains("target_modules") || !j["target_modules"].is_array())
    fail("{}: expected a list of module names (a regex string is not supported)", where("target_modules"));
  for (const char* key : {"use_dora", "use_rslora", "lora_bias"})
    if (j.value(key, false)) fail("{}: not supported", where(key));
  if (j.contains("fan_in_fan_out") && j["fan_in_fan_out"].get<bool>()) fail("{}: not supported", where("fan_in_fan_out"));
  for (const char* key : {"rank_pattern", "alpha_pattern"})
    if (j.contains(key) && j[key].is_object() && !j[key].empty()) fail("{}: per-layer patterns are not supported", where(key));
  if (j.contains("layers_to_transform") && !j["layers_to_transform"].is_null())
    fail("{}: not supported", where("layers_to_transform"));
  if (j.contains("modules_to_save") && !j["modules_to_save"].is_null() && !j["modules_to_save"].empty())
    fail("{}: not supported", where("modules_to_save"));
  const auto r = j.at("r").get<int64_t>();
  const double alpha = j.value("lora_alpha", 8.0), dropout = j.value("lora_dropout", 0.0);
  std::string targets;
  for (const auto& t : j["target_modules"]) targets += (targets.empty() ? "" : ", ") + nlohmann::json(t.get<std::string>()).dump();
  const auto applied = apply_adapters(
      model, Config::parse(fmt::format("adapters: [{{name: lora, targets: [{}], rank: {}, alpha: {}, dropout: {}}}]", targets, r, alpha, dropout),
                           config_path.string()).at("adapters"));
  const auto tensors = safetensors::load(dir / "adapter_model.safetensors");
  auto params = model.named_parameters();
  std::set<std::string> expected;
  for (const auto& f : lora_layers(model)) {
    expected.insert(f.path + ".lora_A.weight");
    expected.insert(f.path + ".lora_B.weight");
  }
  torch::NoGradGuard no_grad;
  for (const auto& [name, t] : tensors) {
    if (name.rfind(kPrefix, 0) != 0) fail("{}: \"{}\" lacks PEFT's base_model.model. prefix", (dir / "adapter_model.safetensors").string(), name);
    // PEFT may keep the adapter name ("....lora_A.default.weight") in memory; files drop it.
    const std::string target = name.substr(kPrefix.size());
    auto* p = params.find(target);
    if (!p || !expected.contains(target))
      fail("{}: \"{}\" matches no LoRA layer of the model", (dir / "adapter_model.safetensors").string(), name);
    if (p->sizes() != t.sizes())
      fail("{}: \"{}\" has shape {} but the model's {} is {}", (dir / "adapter_model.safetensors").string(), name,
           fmt::format("{}", t.sizes().vec()), target, fmt::format("{}", p->sizes().vec()));
    p->copy_(t);
    expected.erase(target);
  }
  if (!expected.empty())
    fail("{}: no tensor for {} LoRA parameter(s), e.g. {}", (dir / "adapter_model.safetensors").string(), expected.size(), *expected.begin());
  std::vector<std::string> layers;
  for (const auto& a : applied) layers.insert(layers.end(), a.layers.begin(), a.layers.end());
  return layers;
}

}  // namespace facet::models
