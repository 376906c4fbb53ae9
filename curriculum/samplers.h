// Curriculum samplers, registered in data::sampler_registry() and chosen by `data.sampler`. Both
// learn per-sample difficulty from the trainer's feedback (per-sample losses gathered over ranks, the
// same on every rank) and decide each epoch's order from (seed, epoch, their state) alone, so ranks
// agree without talking and a run resumes exactly (the trainer checkpoints the interrupted epoch's
// order; state() holds everything the next epochs depend on). Random order is data's `random`.
//
//   self_paced  Loss-only self-paced learning, the baseline Mo-SCL argues against (Kumar et al.,
//               NeurIPS 2010, "Self-paced learning for latent variable models"): samples whose loss
//               is above the pace threshold are left out. [choice] Hard (0/1) weights, realised by
//               the sampler: the threshold is a quantile — the easiest fraction p(t) of the samples
//               seen so far — and the epoch is filled to the dataset's length by drawing that pool
//               again, so steps per epoch do not change. Unseen samples are always drawn (they need
//               a first loss; epoch 0 is therefore a plain random epoch).
//   mo_scl      Mixed-order self-paced curriculum (Li, Han, Zhou, arXiv 2302.04677): difficulty from
//               loss + uncertainty (curriculum/difficulty.h); the epoch's samples sorted by it and
//               each global batch built from the easiest and the hardest remaining ones (medical.md
//               §2.2: batch b pairs the b-th easiest with the b-th hardest), so hard samples are used
//               from the start instead of de-weighted. [choices] hard_fraction 0.5 of each batch
//               from the hard end, easy and hard interleaved in the batch (so every rank's
//               contiguous slice holds both); the full batches in a seeded random order
//               (shuffle_batches) so the extreme pairs are not all at the start of the epoch; ties
//               (all unseen in epoch 0) in a seeded random order; a global batch of 1 pairs
//               consecutive batches. Optional pace (default off: start 1) restricts the pool as in
//               self_paced.
//
//   data:
//     sampler:
//       name: mo_scl                       # or self_paced
//       difficulty: {momentum: 0.9, uncertainty: loss_std, window: 5, normalize: rank, weight: 1.0}
//       pace: {start: 1.0, epochs: 0}      # p(e) = min(1, start + (1 - start) e / epochs); self_paced: {start: 0.5, epochs: 5}
//       hard_fraction: 0.5                 # mo_scl
//       shuffle_batches: true              # mo_scl
#pragma once

#include "curriculum/difficulty.h"
#include "data/sampler.h"

namespace facet::curriculum {

// The pace schedule: the fraction of the (seen) samples, easiest first, an epoch draws from.
struct Pace {
  double start = 1.0;
  int64_t epochs = 0;
  double at(int64_t epoch) const;
  static Pace from(const Config& sampler, Pace fallback);
};

// A sampler whose order follows the difficulty it learns; hooks feed it extra estimates (MC dropout).
class CurriculumSampler : public data::Sampler {
 public:
  CurriculumSampler(int64_t size, uint64_t seed, DifficultyOptions difficulty, Pace pace);
  void set_batch_size(int64_t global_batch) override { batch_ = global_batch; }
  bool uses_feedback() const override { return true; }
  void feedback(const torch::Tensor& indices, const torch::Tensor& losses) override;
  // MC-dropout score variances of some samples (the same on every rank).
  void feedback_uncertainty(const torch::Tensor& indices, const torch::Tensor& values);
  nlohmann::json state() const override;
  void load_state(const nlohmann::json& state) override;

  const DifficultyEstimator& estimator() const { return estimator_; }
  int64_t batch_size() const { return batch_; }
  const Pace& pace() const { return pace_; }

 protected:
  // The epoch's pool filled to the dataset's length: unseen samples and the easiest fraction
  // pace(epoch) of the seen ones, in a random order from `generator` (repeated when the pool is short).
  std::vector<int64_t> paced_pool(int64_t epoch, const std::vector<double>& difficulty, at::Generator& generator) const;

  int64_t size_;
  uint64_t seed_;
  int64_t batch_ = 1;
  DifficultyEstimator estimator_;
  Pace pace_;
};

class SelfPacedSampler : public CurriculumSampler {
 public:
  SelfPacedSampler(int64_t size, uint64_t seed, DifficultyOptions difficulty, Pace pace);
  std::vector<int64_t> epoch_order(int64_t epoch) override;
};

class MoSclSampler : public CurriculumSampler {
 public:
  MoSclSampler(int64_t size, uint64_t seed, DifficultyOptions difficulty, Pace pace, double hard_fraction, bool shuffle_batches);
  std::vector<int64_t> epoch_order(int64_t epoch) override;

 private:
  double hard_fraction_;
  bool shuffle_batches_;
};

// Arranges `samples` (sorted easiest first) into batches of `batch` that each take ~hard_fraction
// of their places from the hard end and the rest from the easy end, easy and hard interleaved;
// the full batches in the order `batch_order` (a permutation of their count; empty: in turn), a
// short remainder last.
std::vector<int64_t> mixed_order(const std::vector<int64_t>& sorted, int64_t batch, double hard_fraction,
                                 const std::vector<int64_t>& batch_order);

}  // namespace facet::curriculum
