#include "core/log.h"
#include "train/checkpoint.h"
#include "train/hooks/builtin.h"
#include "train/step.h"
#include "train/trainer.h"

namespace facet::train {
namespace {

class EmaHook : public Hook {
 public:
  explicit EmaHook(double decay) : decay_(decay) {}
  std::string name() const override { return "ema"; }
  int priority() const override { return hook_priority::ema; }

  void before_train(Trainer& trainer) override {
    if (!ema_.empty()) return;  // restored from the checkpoint
    torch::NoGradGuard no_grad;
    for (auto& [name, t] : tracked(trainer.model())) ema_[name] = t.detach().clone();
  }

  void after_step(Trainer& trainer, const StepResult& result) override {
    if (!result.applied) return;
    torch::NoGradGuard no_grad;
    for (auto& [name, t] : tracked(trainer.model())) {
      auto& e = ema_.at(name);
      if (t.is_floating_point()) e.mul_(decay_).add_(t.detach(), 1.0 - decay_);
      else e.copy_(t);
    }
  }

  void before_eval(Trainer& trainer) override { swap(trainer.model()); }
  void after_eval(Trainer& trainer, const EvalResults&) override { swap(trainer.model()); }

  void on_save(Trainer&, CheckpointContents& contents) override {
    auto& file = contents.files["ema.safetensors"];
    for (const auto& [name, t] : ema_) file[name] = t.cpu();
  }

  void on_restore(Trainer& trainer, const CheckpointContents& contents) override {
    const auto it = contents.files.find("ema.safetensors");
    if (it == contents.files.end()) {
      log::warn("the checkpoint has no EMA weights; the average restarts from the current weights");
      return;
    }
    const std::string file = (contents.source / "ema.safetensors").string();
    const auto own = tracked(trainer.model());
    for (const auto& [name, t] : own) {
      auto saved = it->second.find(name);
      if (saved == it->second.end()) fail("{}: has no EMA tensor \"{}\"", file, name);
      if (saved->second.sizes() != t.sizes())
        fail("{}: EMA tensor \"{}\" is {}, the model's is {}", file, name, saved->second.sizes(), t.sizes());
      ema_[name] = saved->second.to(t.device(), t.dtype());
    }
    if (it->second.size() != own.size())
      fail("{}: {} EMA tensors for a model with {} trained tensors and buffers", file, it->second.size(), own.size());
  }

 private:
  // What the average covers: trainable parameters and every buffer (BatchNorm statistics).
  static std::map<std::string, torch::Tensor> tracked(torch::nn::Module& model) {
    std::map<std::string, torch::Tensor> out;
    for (const auto& p : model.named_parameters())
      if (p.value().requires_grad()) out[p.key()] = p.value();
    for (const auto& b : model.named_buffers()) out[b.key()] = b.value();
    return out;
  }

  void swap(torch::nn::Module& model) {
    torch::NoGradGuard no_grad;
    for (auto& [name, t] : tracked(model)) {
      torch::Tensor tmp = t.detach().clone();
      t.detach().copy_(ema_.at(name));
      ema_.at(name).copy_(tmp);
    }
  }

  double decay_;
  std::map<std::string, torch::Tensor> ema_;
};

}  // namespace

std::shared_ptr<Hook> make_ema_hook(double decay) { return std::make_shared<EmaHook>(decay); }

}  // namespace facet::train
