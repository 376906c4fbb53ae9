// Generator versus Segmentor and its semi-supervised setting (models/generative/pseudo_healthy.h).
#include "models/generative/pseudo_healthy.h"

#include "core/text.h"
#include "data/class_map.h"
#include "models/model.h"

#include <algorithm>

namespace facet::models::generative {

namespace F = torch::nn::functional;
using segmentation::UNet;

ResnetGeneratorOptions ResnetGeneratorOptions::from(const Config& c) {
  ResnetGeneratorOptions o;
  o.in_channels = c.get_in_range<int64_t>("in_channels", o.in_channels, Range::at_least(1));
  o.out_channels = c.get_in_range<int64_t>("out_channels", o.out_channels, Range::at_least(1));
  o.filters = c.get_in_range<int64_t>("filters", o.filters, Range::at_least(1));
  o.blocks = c.get_in_range<int64_t>("blocks", o.blocks, Range::at_least(0));
  o.tanh_output = c.get<bool>("tanh_output", o.tanh_output);
  return o;
}

PseudoHealthyOptions PseudoHealthyOptions::from(const Config& c) {
  PseudoHealthyOptions o;
  if (c.has("generator")) o.generator = ResnetGeneratorOptions::from(c.at("generator"));
  if (c.has("segmentor")) o.segmentor = segmentation::UNetOptions::from(c.at("segmentor"));
  if (o.segmentor.in_channels != o.generator.out_channels || o.generator.in_channels != o.generator.out_channels)
    fail("{}: {}: the generator maps {} channels to {} and the segmentor reads {}; pseudo-healthy images have the input's channels",
         c.where("segmentor"), c.full_key("segmentor"), o.generator.in_channels, o.generator.out_channels, o.segmentor.in_channels);
  o.segmentor_weight = c.get_in_range<double>("segmentor_weight", o.segmentor_weight, Range::at_least(0));
  o.adversarial_weight = c.get_in_range<double>("adversarial_weight", o.adversarial_weight, Range::at_least(0));
  o.identity_weight = c.get_in_range<double>("identity_weight", o.identity_weight, Range::at_least(0));
  o.fill_weight = c.get_in_range<double>("fill_weight", o.fill_weight, Range::at_least(0));
  o.min_pixel_weight = c.get_in_range<double>("min_pixel_weight", o.min_pixel_weight, Range::closed(0, 1));
  if (c.has("pseudo_masks")) {
    const Config p = c.at("pseudo_masks");
    o.pseudo_mask_threshold = p.get_in_range<double>("threshold", o.pseudo_mask_threshold, Range::closed_open(0, 1));
    o.pseudo_masks_after_steps = p.get_in_range<int64_t>("after_steps", o.pseudo_masks_after_steps, Range::at_least(0));
  }
  o.reference_segmentor = c.get<bool>("reference_segmentor", o.reference_segmentor);
  o.image_field = c.get<std::string>("image_field", o.image_field);
  o.mask_field = c.get<std::string>("mask_field", o.mask_field);
  o.brain_field = c.get<std::string>("brain_field", o.brain_field);
  o.labelled_field = c.get<std::string>("labelled_field", o.labelled_field);
  return o;
}

// ---------------------------------------------------------------------------------------------
// The generator, in CycleGAN's Sequential order so that its checkpoints load by name.

namespace {

torch::nn::Conv2d conv(int64_t in, int64_t out, int64_t kernel, int64_t stride = 1, int64_t padding = 0) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, kernel).stride(stride).padding(padding));
}
// Instance norm without affine parameters or running statistics (CycleGAN's `norm='instance'`).
torch::nn::InstanceNorm2d instance_norm(int64_t channels) { return torch::nn::InstanceNorm2d(channels); }

}  // namespace

ResnetBlockImpl::ResnetBlockImpl(int64_t channels) {
  conv_block = register_module(
      "conv_block", torch::nn::Sequential(torch::nn::ReflectionPad2d(1), conv(channels, channels, 3), instance_norm(channels),
                                          torch::nn::ReLU(true), torch::nn::ReflectionPad2d(1), conv(channels, channels, 3),
                                          instance_norm(channels)));
}

torch::Tensor ResnetBlockImpl::forward(const torch::Tensor& x) { return x + conv_block->forward(x); }

ResnetGeneratorImpl::ResnetGeneratorImpl(const ResnetGeneratorOptions& o) {
  const int64_t f = o.filters;
  model = torch::nn::Sequential(torch::nn::ReflectionPad2d(3), conv(o.in_channels, f, 7), instance_norm(f), torch::nn::ReLU(true));
  for (int64_t mult : {1, 2}) {
    model->push_back(conv(f * mult, f * mult * 2, 3, 2, 1));
    model->push_back(instance_norm(f * mult * 2));
    model->push_back(torch::nn::ReLU(true));
  }
  for (int64_t i = 0; i < o.blocks; ++i) model->push_back(ResnetBlock(f * 4));
  for (int64_t mult : {4, 2}) {
    model->push_back(torch::nn::ConvTranspose2d(
        torch::nn::ConvTranspose2dOptions(f * mult, f * mult / 2, 3).stride(2).padding(1).output_padding(1)));
    model->push_back(instance_norm(f * mult / 2));
    model->push_back(torch::nn::ReLU(true));
  }
  model->push_back(torch::nn::ReflectionPad2d(3));
  model->push_back(conv(f, o.out_channels, 7));
  if (o.tanh_output) model->push_back(torch::nn::Tanh());
  register_module("model", model);
  // CycleGAN's init_weights('normal', 0.02); instance norm has no weights to set.
  torch::NoGradGuard no_grad;
  for (auto& item : named_parameters()) {
    if (item.key().ends_with(".weight")) item.value().normal_(0.0, 0.02);
    else item.value().zero_();
  }
}

torch::Tensor ResnetGeneratorImpl::forward(const torch::Tensor& x) {
  if (x.dim() != 4 || x.size(2) % 4 != 0 || x.size(3) % 4 != 0)
    fail("resnet generator: expected [B, C, H, W] with H and W multiples of 4, got {}", x.sizes());
  return model->forward(x);
}

// ---------------------------------------------------------------------------------------------
// The model.

namespace {

// Per-sample mean over every dimension but the first.
torch::Tensor sample_mean(const torch::Tensor& t) { return t.flatten(1).mean(1); }

class PseudoHealthy : public Model, public PhasedObjective {
 public:
  explicit PseudoHealthy(PseudoHealthyOptions o) : options_(std::move(o)) {
    generator = register_module("generator", ResnetGenerator(options_.generator));
    segmentor = register_module("segmentor", UNet(options_.segmentor));
    if (options_.reference_segmentor) reference_segmentor = register_module("reference_segmentor", UNet(options_.segmentor));
    generator_steps_ = register_buffer("generator_steps", torch::zeros({}, torch::kInt64));
  }

  // Evaluation and prediction: the pseudo-healthy image, and the lesion logits of the healthiness
  // segmentor (the reference one when configured) on the input and on the output.
  Outputs forward(const data::Batch& batch) override {
    const torch::Tensor x = field(batch, options_.image_field);
    const torch::Tensor y = generator->forward(x);
    UNet& judge = reference_segmentor ? reference_segmentor : segmentor;
    return {{"pseudo_healthy", y}, {"lesion_logits", judge->forward(x)}, {"residual_lesion_logits", judge->forward(y)}};
  }
  std::string default_visualizer() const override { return "pseudo_healthy"; }

  std::vector<std::string> phases() const override { return {"generator", "segmentor"}; }

  losses::LossResult phase_loss(const std::string& phase, const data::Batch& batch, Outputs& outputs) override {
    const torch::Tensor x = field(batch, options_.image_field);
    losses::LossResult r;
    torch::Tensor per_sample, weight;
    if (phase == "generator") {
      const Targets t = targets(batch, x);
      const torch::Tensor y = generator->forward(x);
      const torch::Tensor logits = segmentor->forward(y);
      const torch::Tensor healthy = torch::zeros({x.size(0), x.size(2), x.size(3)}, x.options().dtype(torch::kLong));
      const torch::Tensor adversarial = sample_mean(F::cross_entropy(logits, healthy, F::CrossEntropyFuncOptions().reduction(torch::kNone)));
      const torch::Tensor identity = sample_mean((y - x).pow(2) * (1 - t.mask));
      const torch::Tensor fill = sample_mean((y - normal_tissue_mean(x, t)).pow(2) * t.mask);
      r.parts["adversarial"] = weighted_mean(adversarial, t.weight);
      r.parts["identity"] = weighted_mean(identity, t.weight);
      r.parts["fill"] = weighted_mean(fill, t.weight);
      per_sample = options_.adversarial_weight * adversarial + options_.identity_weight * identity + options_.fill_weight * fill;
      weight = t.weight;
      outputs["pseudo_healthy"] = y;
      if (is_training()) {
        generator_steps_ += 1;
        remember(x, y, t);
      }
    } else if (phase == "segmentor") {
      Generated g = recall(x);
      if (!g.output.defined()) {
        g.targets = targets(batch, x);
        torch::NoGradGuard no_grad;
        g.output = generator->forward(x);
      }
      const torch::Tensor& y = g.output;
      const Targets& t = g.targets;
      const torch::Tensor logits = segmentor->forward(y);
      // Mute the pixels G changed the most: they are the lesion it removed well.
      const torch::Tensor change = (y - x).abs().sum(1);  // [B, H, W]
      const torch::Tensor largest = change.flatten(1).amax(1).clamp_min(1e-12).view({-1, 1, 1});
      const torch::Tensor pixel_weight = (1 - change / largest).clamp_min(options_.min_pixel_weight);
      const torch::Tensor ce =
          F::cross_entropy(logits, data::class_map(t.mask, logits), F::CrossEntropyFuncOptions().reduction(torch::kNone));
      const torch::Tensor segmentation = sample_mean(ce * pixel_weight);
      r.parts["segmentation"] = weighted_mean(segmentation, t.weight);
      per_sample = options_.segmentor_weight * segmentation;
      weight = t.weight;
    } else {
      fail("pseudo_healthy: no phase \"{}\" (its phases: generator, segmentor)", phase);
    }
    r.total = weighted_mean(per_sample, weight);
    r.per_sample = (per_sample * weight).detach();
    return r;
  }

  ResnetGenerator generator{nullptr};
  UNet segmentor{nullptr}, reference_segmentor{nullptr};

 private:
  struct Targets {
    torch::Tensor mask;    // [B, 1, H, W] lesion, 0/1 (a pseudo mask for unlabelled samples)
    torch::Tensor brain;   // [B, 1, H, W], ones when the batch has no brain mask
    torch::Tensor weight;  // [B]: 0 for unlabelled samples before pseudo masks start
  };

  static torch::Tensor field(const data::Batch& batch, const std::string& name, const char* key = "image_field") {
    if (!batch.fields.contains(name))
      fail("pseudo_healthy: the batch has no field \"{}\" (model.{}); its fields: {}", name, key, join(batch.fields.keys()));
    return batch.fields.at(name);
  }

  // [B, 1, H, W] like the images, or an error naming the field and its model key.
  static torch::Tensor per_pixel_field(const data::Batch& batch, const std::string& name, const char* key, const torch::Tensor& x) {
    const torch::Tensor f = field(batch, name, key).to(x.dtype());
    if (f.dim() != 4 || f.size(0) != x.size(0) || f.size(1) != 1 || f.size(2) != x.size(2) || f.size(3) != x.size(3))
      fail("pseudo_healthy: the field \"{}\" (model.{}) is {}; expected [B, 1, H, W] for images {}", name, key, f.sizes(), x.sizes());
    return f;
  }

  Targets targets(const data::Batch& batch, const torch::Tensor& x) {
    Targets t;
    t.mask = per_pixel_field(batch, options_.mask_field, "mask_field", x);
    t.brain = batch.fields.contains(options_.brain_field) ? per_pixel_field(batch, options_.brain_field, "brain_field", x)
                                                          : torch::ones_like(t.mask);
    t.weight = torch::ones({x.size(0)}, x.options());
    if (!batch.fields.contains(options_.labelled_field)) return t;
    const torch::Tensor labelled = batch.fields.at(options_.labelled_field).to(x.dtype()).view({-1});
    if (labelled.numel() != x.size(0))
      fail("pseudo_healthy: the field \"{}\" (model.labelled_field) has {} values for {} images", options_.labelled_field,
           labelled.numel(), x.size(0));
    if (!(labelled < 0.5).any().item<bool>()) return t;
    // [I] SMILE: the segmentor's masks on the real images of the unlabelled samples — in evaluation
    // mode, so that this extra pass moves no BatchNorm statistics.
    if (generator_steps_.item<int64_t>() < options_.pseudo_masks_after_steps) {
      t.weight = labelled;
      return t;
    }
    torch::Tensor pseudo;
    {
      torch::NoGradGuard no_grad;
      const bool was_training = segmentor->is_training();
      segmentor->eval();
      pseudo = (segmentor->forward(x).softmax(1).narrow(1, 1, 1) > options_.pseudo_mask_threshold).to(x.dtype()) * t.brain;
      segmentor->train(was_training);
    }
    const torch::Tensor is_labelled = labelled.view({-1, 1, 1, 1});
    t.mask = is_labelled * t.mask + (1 - is_labelled) * pseudo;
    return t;
  }

  // The segmentor phase trains on the generator's output from the generator phase of the same
  // step, before its update, as the reference does (and one generator forward fewer), with the
  // same targets (pseudo masks included). Kept per micro-batch with a copy of its input (the loader
  // may reuse the batch's memory) and taken by the segmentor phase whose input equals it; without
  // one (phases in the other order) it runs G itself.
  struct Generated {
    torch::Tensor input, output;
    Targets targets;
  };
  void remember(const torch::Tensor& x, const torch::Tensor& y, const Targets& t) {
    forget(x);  // an older output for the same input is stale
    if (generated_.size() >= 64) generated_.clear();  // never taken: a config without the segmentor phase
    generated_.push_back({x.detach().clone(), y.detach(), t});
  }
  Generated recall(const torch::Tensor& x) {
    const auto it = find_generated(x);
    if (it == generated_.end()) return {};
    Generated g = std::move(*it);
    generated_.erase(it);
    return g;
  }
  void forget(const torch::Tensor& x) {
    if (const auto it = find_generated(x); it != generated_.end()) generated_.erase(it);
  }
  std::vector<Generated>::iterator find_generated(const torch::Tensor& x) {
    return std::find_if(generated_.begin(), generated_.end(), [&](const Generated& g) {
      return g.input.sizes() == x.sizes() && g.input.device() == x.device() && torch::equal(g.input, x);
    });
  }

  // μ: the mean of each image over its brain outside the lesion (0 where there is none); no gradient.
  static torch::Tensor normal_tissue_mean(const torch::Tensor& x, const Targets& t) {
    const torch::Tensor normal = (1 - t.mask) * t.brain;
    const torch::Tensor count = normal.flatten(1).sum(1);
    return ((x * normal).flatten(1).sum(1) / count.clamp_min(1)).detach().view({-1, 1, 1, 1});
  }

  // Σ w_i v_i / Σ w_i: the batch mean over the samples that count (the plain mean when all do).
  static torch::Tensor weighted_mean(const torch::Tensor& v, const torch::Tensor& w) {
    return (v * w).sum() / w.sum().clamp_min(1);
  }

  PseudoHealthyOptions options_;
  torch::Tensor generator_steps_;  // generator batches trained on: a buffer, so a resumed run goes on counting
  std::vector<Generated> generated_;
};

FACET_REGISTER(model_registry(), "pseudo_healthy",
               "Pseudo-healthy synthesis: GVS generator vs segmentor; unlabelled samples with pseudo masks (SMILE)",
               [](const Config& c) { return std::make_shared<PseudoHealthy>(PseudoHealthyOptions::from(c)); });

}  // namespace
}  // namespace facet::models::generative
