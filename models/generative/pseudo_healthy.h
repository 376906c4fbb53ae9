// Pseudo-healthy synthesis: an image with lesions in, the same image without them out.
//
// Model `pseudo_healthy` is Generator versus Segmentor (GVS; Zhang et al., MICCAI 2020, arXiv
// 2009.05722, code github.com/Au3C2/GVS main.py) and, with unlabelled images, the semi-supervised
// setting of SMILE (Du et al. 2021, arXiv 2106.15345), whose method section and code are not public
// (../shared/research/medical.md §5): what it adds here is marked [I].
//
//   generator G  CycleGAN's ResNet generator (9 blocks, 64 filters, instance norm, tanh output) in
//                its state-dict layout (model.<i>...), 1 channel in and out: 11,365,633 parameters.
//   segmentor S  the U-Net of milesial/Pytorch-UNet (bilinear up-sampling, BatchNorm) with 2 classes,
//                in its layout (models/segmentation/unet.h): 17,266,306 parameters.
//
// They train in turns (step `alternating`, phases `generator` then `segmentor`, Adam 1e-3, betas
// (0.9, 0.99) each). With x the image, m its lesion mask, y = G(x) and per-pixel means:
//   generator: λ_adv CE(S(y), 0) + λ_id (y - x)² (1 - m) + λ_fill (y - μ)² m
//              — fool S into finding no lesion, keep normal tissue, fill the lesion with μ, the
//              mean of the image's own normal brain tissue;
//   segmentor: λ_seg CE(S(y.detach()), m) w, w = max(1 - |y - x| / max|y - x|, 0.1) per image
//              — find what is left of the lesion, less where G changed the most (GVS's muting of
//              well-transformed pixels); y is the generator phase's, before G's update, as in the
//              reference (with the phases in the other order, G runs again without gradients).
// Two deliberate differences from the reference code, both where it departs from its own intent:
// its identity term multiplies [B, 1, H, W] by [B, H, W] and so broadcasts every image against
// every mask (here each image uses its own), and its μ is one mean over the batch (here each
// image's own, so a sample's loss does not depend on its batch-mates).
//
// Semi-supervised [I]: a sample whose `labelled` field is 0 has no mask; once the generator has
// trained on `pseudo_masks.after_steps` batches (its steps times train.grad_accum), S's prediction
// on the real image (evaluation mode, probability > `pseudo_masks.threshold`, within the brain, no
// gradient) stands in for it in both phases of the step; before, the sample weighs nothing.
//
// Inputs as GVS feeds them (data `brats` with slice_range: [-1, 1]): the tanh output spans the
// image's range. z-scores without that rescaling exceed 1 where tissue is bright (CSF on T2), which
// a tanh cannot reach: set generator.tanh_output: false for such inputs.
#pragma once

#include "core/config.h"
#include "models/segmentation/unet.h"

#include <torch/torch.h>

#include <string>

namespace facet::models::generative {

struct ResnetGeneratorOptions {
  int64_t in_channels = 1, out_channels = 1;
  int64_t filters = 64;    // ngf
  int64_t blocks = 9;      // resnet_9blocks
  bool tanh_output = true;  // CycleGAN's; off: a linear output, free to match z-scored intensities above 1

  static ResnetGeneratorOptions from(const Config& c);
};

// One residual block: reflection pad, 3x3 conv, instance norm, ReLU, pad, conv, norm; x + block(x).
class ResnetBlockImpl : public torch::nn::Module {
 public:
  explicit ResnetBlockImpl(int64_t channels);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Sequential conv_block{nullptr};
};
TORCH_MODULE(ResnetBlock);

// CycleGAN's ResnetGenerator: 7x7 stem, two stride-2 convs, the residual blocks at 4x filters, two
// transposed convs back, 7x7 out. Sides must be multiples of 4. Weights N(0, 0.02), biases 0.
class ResnetGeneratorImpl : public torch::nn::Module {
 public:
  explicit ResnetGeneratorImpl(const ResnetGeneratorOptions& o);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Sequential model{nullptr};
};
TORCH_MODULE(ResnetGenerator);

struct PseudoHealthyOptions {
  ResnetGeneratorOptions generator;
  segmentation::UNetOptions segmentor;
  // GVS main.py's λ = [1, 1, 10, 5].
  double segmentor_weight = 1, adversarial_weight = 1, identity_weight = 10, fill_weight = 5;
  double min_pixel_weight = 0.1;  // floor of the segmentor's per-pixel weight
  // [I] SMILE: masks for unlabelled samples from the segmentor, after the generator's first steps.
  double pseudo_mask_threshold = 0.5;
  int64_t pseudo_masks_after_steps = 0;  // generator batches (micro-batches)
  // A third U-Net, frozen, for evaluation only: GVS measures healthiness with a segmentor trained
  // beforehand on real images (load it with train.init_weights); without it the trained S serves.
  bool reference_segmentor = false;
  std::string image_field = "image", mask_field = "mask", brain_field = "brain_mask", labelled_field = "labelled";

  static PseudoHealthyOptions from(const Config& c);
};

}  // namespace facet::models::generative
