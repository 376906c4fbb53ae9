// 8-bit pixels to normalised float in one pass: the kernel of the loader's 8-bit path
// (data/transform.h), where `normalize` meets the reader's uint8 [C, H, W] view of a decoded frame.
#pragma once

#include <torch/torch.h>

namespace facet::data {

// The per-channel affine map x * scale + shift of 8-bit values, bitwise as ATen's addcmul computes it
// on floats: `normalize`'s float path.
class EightBitNormalize {
 public:
  // scale and shift: float [channels] or [1] (one for every channel).
  EightBitNormalize(const torch::Tensor& scale, const torch::Tensor& shift);

  // `in` uint8 [C, H, W] with any strides; `out` float [C, H, W] contiguous.
  //
  // An interleaved RGB view (channel stride 1, pixel stride 3: a crop of a decoded HWC frame, or its
  // flip, which torch copies keeping the layout) goes through an AVX2 kernel that deinterleaves eight pixels per step with byte shuffles
  // and applies one fused multiply-add, as ATen's AVX2 and AVX-512 addcmul do. Elsewhere (other
  // layouts; ATen dispatching to its unfused default kernels) each value is looked up among the 256
  // results ATen's addcmul gives for its channel.
  void operator()(const torch::Tensor& in, torch::Tensor& out) const;

  // The same map of n float values of `channel`, in place, bitwise as addcmul: fused (one rounding)
  // where ATen's is, else x * scale then + shift. `normalize`'s elementwise path (data/transform.h).
  void map(float* values, int64_t n, int64_t channel) const;

 private:
  std::vector<float> scale_, shift_;
  torch::Tensor table_;  // float [channels or 1, 256]
  bool fused_kernel_;    // ATen's addcmul fuses (AVX2 / AVX-512) and so can ours
};

}  // namespace facet::data
