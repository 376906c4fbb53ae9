// Pseudo-healthy synthesis, as GVS evaluates it (github.com/Au3C2/GVS brats_predict.py):
//   identity: how well normal tissue survives — the mean absolute error and the PSNR between output
//             and input over the brain outside the lesion. The PSNR is per slice (capped at 100 dB,
//             an unchanged slice's), averaged over slices, its peak the slice's brain intensity range.
//             The reference's differs in three ways, none meaningful on normalised slices: its MSE is
//             over the whole slice (background included), its peak a fixed 250 on de-normalised
//             intensities, and it averages per case, then over cases. And SSIM (Wang et al. 2004: Gaussian window 11, σ 1.5, K 0.01 / 0.03, the map's mean
//             over its valid part, per slice, averaged), between output and input with the lesion
//             set to 0 in both, as the reference's MS-SSIM compares them (single-scale: MS-SSIM's
//             five scales need 161 px); `data_range` is the images' (2 for slices in [-1, 1]);
//             checked against scikit-image's structural_similarity;
//   healthiness: 1 - (lesion pixels a segmentor finds on the outputs) / (those it finds on the
//             inputs), over the whole evaluation set; 1 is healthy, 0 changed nothing, below 0 the
//             outputs show more lesion than the inputs did (an untrained generator).
// A value with nothing to compute it from (no normal tissue, slices under 11 px, no segmentor
// outputs) is NaN.
//
//   metrics: [{name: pseudo_healthy, data_range: 2}]   # keys: output, image, mask, brain_mask,
//                    # lesion_logits, residual_lesion_logits (the model's output names)
#include "metrics/metric.h"

#include <cmath>
#include <limits>

namespace facet::metrics {
namespace {

class PseudoHealthyMetric : public Metric {
 public:
  explicit PseudoHealthyMetric(const Config& c)
      : output_(c.get<std::string>("output", "pseudo_healthy")), image_(c.get<std::string>("image", "image")),
        mask_(c.get<std::string>("mask", "mask")), brain_(c.get<std::string>("brain_mask", "brain_mask")),
        on_input_(c.get<std::string>("lesion_logits", "lesion_logits")),
        on_output_(c.get<std::string>("residual_lesion_logits", "residual_lesion_logits")),
        data_range_(c.get_in_range<double>("data_range", 2.0, Range::above(0))), gaussian_(ssim_window()) {
    reset();
  }

  void update(const Outputs& outputs, const data::Batch& batch) override {
    const torch::Tensor x = read_field(batch, image_), m = read_field(batch, mask_);
    const torch::Tensor y = read_output(outputs, output_);
    if (y.sizes() != x.sizes()) fail("pseudo_healthy metric: {} is {}, {} is {}", output_, y.sizes(), image_, x.sizes());
    const torch::Tensor brain = batch.fields.contains(brain_) ? read_field(batch, brain_) : torch::ones_like(m);
    const torch::Tensor normal = (brain * (1 - m)).flatten(1);  // [B, HW] (one channel)
    const torch::Tensor diff = (y - x).flatten(2).mean(1);       // over channels: [B, HW]
    const torch::Tensor n = normal.sum(1);
    const torch::Tensor abs_sum = (diff.abs() * normal).sum(1), mse = (diff.pow(2) * normal).sum(1) / n.clamp_min(1);
    // Each slice's peak: its brain's intensity range.
    const torch::Tensor xb = x.flatten(2).mean(1), inside = brain.flatten(1) > 0.5;
    const auto big = std::numeric_limits<double>::max();
    const torch::Tensor range = torch::where(inside, xb, -big).amax(1) - torch::where(inside, xb, big).amin(1);
    const torch::Tensor counted = (n > 0) & (range > 0);
    const torch::Tensor psnr = (10 * (range.pow(2) / mse.clamp_min(1e-300)).log10()).clamp_max(100);
    if (x.size(2) >= kWindow && x.size(3) >= kWindow) {
      const torch::Tensor keep = 1 - m;
      sums_[6] += ssim(y.mean(1, true) * keep, x.mean(1, true) * keep).sum();
      sums_[7] += x.size(0);
    }
    sums_[0] += abs_sum.sum();
    sums_[1] += n.sum();
    sums_[2] += torch::where(counted, psnr, torch::zeros_like(psnr)).sum();
    sums_[3] += counted.sum();
    if (outputs.contains(on_input_) && outputs.contains(on_output_)) {
      sums_[4] += read_output(outputs, on_input_).argmax(1).gt(0).sum();
      sums_[5] += read_output(outputs, on_output_).argmax(1).gt(0).sum();
    }
  }

  std::map<std::string, double> compute() const override {
    const auto s = sums_.accessor<double, 1>();
    const double nan = std::numeric_limits<double>::quiet_NaN();
    return {{"identity/mae", s[1] > 0 ? s[0] / s[1] : nan},
            {"identity/psnr", s[3] > 0 ? s[2] / s[3] : nan},
            {"identity/ssim", s[7] > 0 ? s[6] / s[7] : nan},
            {"healthiness", s[4] > 0 ? 1 - s[5] / s[4] : nan}};
  }

  void reset() override { sums_ = torch::zeros({8}, torch::kDouble); }
  torch::Tensor state() const override { return sums_.clone(); }
  void load_state(const torch::Tensor& summed) override { sums_ = summed.clone(); }

 private:
  static torch::Tensor read_field(const data::Batch& batch, const std::string& name) {
    if (!batch.fields.contains(name)) fail("pseudo_healthy metric: the batch has no field \"{}\"", name);
    return batch.fields.at(name).detach().to(torch::kCPU, torch::kDouble);
  }
  static torch::Tensor read_output(const Outputs& outputs, const std::string& name) {
    if (!outputs.contains(name)) fail("pseudo_healthy metric: the model gives no output \"{}\"", name);
    return outputs.at(name).detach().to(torch::kCPU, torch::kDouble);
  }

  static constexpr int64_t kWindow = 11;

  // Per-image SSIM of [B, 1, H, W] images: local statistics under a normalised 11-tap Gaussian
  // (σ 1.5, scikit-image's truncate 3.5) in both directions, population covariances, the map's
  // mean over the positions the window fits.
  static torch::Tensor ssim_window() {
    const torch::Tensor taps = torch::arange(kWindow, torch::kDouble) - (kWindow - 1) / 2;
    const torch::Tensor g = (-taps.pow(2) / (2 * 1.5 * 1.5)).exp();
    return g / g.sum();
  }
  torch::Tensor ssim(const torch::Tensor& a, const torch::Tensor& b) const {
    const torch::Tensor rows = gaussian_.view({1, 1, kWindow, 1}), cols = gaussian_.view({1, 1, 1, kWindow});
    const auto blur = [&](const torch::Tensor& t) { return torch::conv2d(torch::conv2d(t, rows), cols); };
    const torch::Tensor ma = blur(a), mb = blur(b);
    const torch::Tensor va = blur(a * a) - ma * ma, vb = blur(b * b) - mb * mb, cov = blur(a * b) - ma * mb;
    const double c1 = std::pow(0.01 * data_range_, 2), c2 = std::pow(0.03 * data_range_, 2);
    const torch::Tensor map = ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2));
    return map.flatten(1).mean(1);
  }

  std::string output_, image_, mask_, brain_, on_input_, on_output_;
  double data_range_;
  torch::Tensor gaussian_;  // the normalised 11-tap window, float64
  // Σ |y - x| and the pixel count over normal brain; Σ slice PSNR and the slices counted; lesion
  // pixels the segmentor finds on the inputs and on the outputs; Σ slice SSIM and the slices counted.
  torch::Tensor sums_;
};

FACET_REGISTER(metric_registry(), "pseudo_healthy",
               "Pseudo-healthy synthesis: identity (MAE, PSNR, SSIM of the normal brain) and healthiness (lesion pixels removed)",
               [](const Config& c) { return std::make_shared<PseudoHealthyMetric>(c); });

}  // namespace
}  // namespace facet::metrics
