// Facial action unit (AU) facts shared by the BP4D and DISFA readers, their synthetic writers and
// the AU losses/metrics: the benchmark AU lists, the standard subject-exclusive 3-fold splits and
// per-AU class-imbalance weights. Facts: ../shared/research/face.md §A.3, §A.4, §A.7, §B.2, §B.3.
#pragma once

#include <torch/torch.h>

#include <array>
#include <string>
#include <string_view>
#include <vector>

namespace facet::data::face {

// Label-vector order of every table in the AU literature (face.md §A.3, §B.2).
inline constexpr std::array<int, 12> kBp4dAus = {1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24};
inline constexpr std::array<int, 8> kDisfaAus = {1, 2, 4, 6, 9, 12, 25, 26};

// BP4D AU_OCC value of an uncoded frame (face.md §A.2): masked, never a positive.
inline constexpr int kBp4dUnknown = 9;
// DISFA intensities 0..5; occurrence = intensity >= 2 (face.md §B.2, ME-GraphAU).
inline constexpr int kDisfaOccurrenceThreshold = 2;

// The three subject-exclusive parts (JAA-Net / ARL / ME-GraphAU lists, identical membership).
// Index 0 = part1. BP4D: 14 / 14 / 13 subjects; DISFA: 9 / 9 / 9.
const std::array<std::vector<std::string>, 3>& bp4d_parts();
const std::array<std::vector<std::string>, 3>& disfa_parts();

// The part (1..3) holding `subject`, or 0 when it is in none.
int part_of(const std::array<std::vector<std::string>, 3>& parts, std::string_view subject);

// Fold convention of Facet: fold k (1..3) TESTS on part k and trains on the two other parts; the
// splits "test" and "val" are part k (the protocol has no separate validation set), "train" the
// rest, "all" every part. Note the papers name folds differently (face.md §A.4: ME-GraphAU's fold1
// tests on part3, JAA-Net names files by the training pair), so compare per test part, not per name.
// Returns whether a subject in `part` belongs to `split` of `fold`; an unknown split is an error.
bool in_split(int part, int fold, std::string_view split);

// "AU1", "AU2", ... for label_names().
std::vector<std::string> au_names(const int* aus, size_t count);
template <size_t N>
std::vector<std::string> au_names(const std::array<int, N>& aus) {
  return au_names(aus.data(), N);
}

// Class-imbalance weights of face.md §A.7 (JAA-Net `dataset/write_AU_weight.py`): occurrence rate
// r_i = positives_i / known_i over the training split, w_i = (1 / r_i) * L / sum_j (1 / r_j), so the
// weights sum to L, the number of AUs. JAA-Net and ME-GraphAU count "value > 0" as positive over all
// frames, so a BP4D 9 would count as a positive; here unknown labels (mask 0) are left out of both
// the positives and the frame count of that AU.
// labels, mask: float [N, L]. An AU with no known label or no positive is an error naming it (its
// weight would be infinite). Returns float [L].
torch::Tensor au_class_weights(const torch::Tensor& labels, const torch::Tensor& mask,
                               const std::vector<std::string>& names);
// JAA-Net's "p_n_weight": (known_i − positives_i) / positives_i per AU, usable as BCE pos_weight.
torch::Tensor au_pos_weights(const torch::Tensor& labels, const torch::Tensor& mask,
                             const std::vector<std::string>& names);

// Implemented by the AU datasets, so that a loss can compute the class weights of the training
// split without decoding an image (dynamic_cast the Dataset to it).
class AuLabelSource {
 public:
  virtual ~AuLabelSource() = default;
  virtual torch::Tensor all_labels() const = 0;       // float [N, L], 0/1 (0 where unknown)
  virtual torch::Tensor all_label_masks() const = 0;  // float [N, L], 1 = known
  virtual std::vector<std::string> au_label_names() const = 0;
  torch::Tensor class_weights() const { return au_class_weights(all_labels(), all_label_masks(), au_label_names()); }
};

}  // namespace facet::data::face
