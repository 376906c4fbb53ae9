// Model: a torch::nn::Module that maps a Batch to named outputs. Every model family registers here
// and is built from the config's `model` node, like torch::nn modules are built from Options.
#pragma once

#include "core/outputs.h"
#include "core/registry.h"
#include "data/dataset.h"
#include "losses/loss.h"

#include <torch/torch.h>

#include <set>
#include <string>

namespace facet::models {

class NoiseSchedule;

class Model : public torch::nn::Module {
 public:
  virtual Outputs forward(const data::Batch& batch) = 0;
  // The picture evaluation draws when the config names no `visualizer` (train/visualize.h).
  virtual std::string default_visualizer() const { return "image_grid"; }
  // Called once a new training run has applied train.init_weights (with or without entries; not on
  // resume, where the checkpoint holds every trained tensor), with the model names the entries
  // loaded: parameters derived from loaded ones are set here (a new word's embedding copied from an
  // existing word's once the vocabulary is loaded), unless an entry loaded them itself.
  virtual void weights_loaded(const std::set<std::string>& loaded) { (void)loaded; }
};

// What a model can do beyond forward, as capabilities the training steps look for (a step that
// needs one refuses, at build time, a model without it):

// Models that compute their own training losses — two-stage detectors, whose RPN and box-head
// losses need the anchors and proposals sampled inside the forward pass. Step `model_losses`.
class ComputesLosses {
 public:
  virtual ~ComputesLosses() = default;
  // The training forward: fills `outputs` and returns the losses, per image in `per_sample` when
  // the model can (curriculum samplers feed on them).
  virtual losses::LossResult forward_losses(const data::Batch& batch, Outputs& outputs) = 0;
};

// Models trained in phases, each with its own optimiser (a GAN's discriminator, then its
// generator). Step `alternating` calls phase_loss for each configured phase in order.
class PhasedObjective {
 public:
  virtual ~PhasedObjective() = default;
  virtual std::vector<std::string> phases() const = 0;
  virtual losses::LossResult phase_loss(const std::string& phase, const data::Batch& batch, Outputs& outputs) = 0;
};

// Denoising diffusion models (step `diffusion`): encoders (frozen, or with a trained part such as
// learned words) turn a batch into clean inputs x0 (latents) and a condition; the trained network
// predicts the noise (or velocity) of x0 noised to timestep t. The step draws t and the noise.
struct DenoiserInputs {
  torch::Tensor x0;         // [B, ...]
  TensorDict condition;     // anything the network is conditioned on (text embeddings, masks)
  torch::Tensor loss_mask;  // optional, broadcastable to x0: the loss is averaged where it is 1, per sample
  // Terms added to the loss as they are (weighted already), reported under their names: DETEX's
  // L1 penalty on the mapped words.
  TensorDict regularizers;
};
class Denoiser {
 public:
  virtual ~Denoiser() = default;
  // Runs with gradients enabled: the trainable text side (learned words, mappers) needs them, and
  // frozen encoders are the model's to run without (a VAE under torch::NoGradGuard).
  virtual DenoiserInputs encode(const data::Batch& batch) = 0;
  virtual torch::Tensor denoise(const torch::Tensor& noisy, const torch::Tensor& timesteps, const DenoiserInputs& inputs) = 0;
  // The noise schedule the model samples with, when it has one: the diffusion step trains with it
  // (and refuses step keys that disagree), so training and sampling cannot drift apart.
  virtual const NoiseSchedule* noise_schedule() const { return nullptr; }
};

// Models whose parameters sit at depths, for layer-wise learning-rate decay (BEiT / MAE fine-tuning,
// EMMA, Masked CoTEX): with optim.layer_decay: d, a parameter at layer id k of L ids trains at
// lr * d^(L - 1 - k), so the embeddings learn slowest and the head at the full rate.
class LayerDepths {
 public:
  virtual ~LayerDepths() = default;
  virtual int64_t num_layer_ids() const = 0;
  // In 0 .. num_layer_ids() - 1 for every parameter name of the model.
  virtual int64_t layer_id(const std::string& parameter_name) const = 0;
};

// Monte-Carlo dropout (uncertainty from the spread of several stochastic forward passes, as Mo-SCL
// estimates it): while it lives, the model is in eval mode except its dropout modules, so BatchNorm
// statistics neither move nor come from the batch. The modes it found are restored after.
class DropoutOnlyTraining {
 public:
  explicit DropoutOnlyTraining(torch::nn::Module& model);
  ~DropoutOnlyTraining();
  DropoutOnlyTraining(const DropoutOnlyTraining&) = delete;
  DropoutOnlyTraining& operator=(const DropoutOnlyTraining&) = delete;
  // Number of dropout modules switched to training (0: every pass is the same).
  int64_t dropout_modules() const { return dropout_modules_; }

 private:
  torch::nn::Module* root_ = nullptr;
  bool root_training_ = false;
  std::vector<std::pair<std::shared_ptr<torch::nn::Module>, bool>> modes_;
  int64_t dropout_modules_ = 0;
};

using ModelRegistry = Registry<std::shared_ptr<Model>>;
ModelRegistry& model_registry();

}  // namespace facet::models
