// The length-grouped sampler of LLaVA's trainer (`group_by_modality_length`,
// llava/train/llava_trainer.py get_modality_length_grouped_indices): each epoch a random
// permutation is cut into mega-batches of one global batch, each sorted by length (longest
// first) so that a batch pads little. With `modality: true` (the default) samples with an image
// (positive lengths) and text-only samples (negative) are grouped apart, the full mega-batches of
// both kinds shuffled together, and the two remainders merged into one last batch in index order.
// Facet's loader then cuts each global batch into the ranks' slices, so the reference's
// per-rank balancing (split_to_even_chunks) has no counterpart here.
//
//   data:
//     sampler: {name: length_grouped, modality: true}
// The dataset must offer its lengths (data/instruct/vlm_data.h ModalityLengths); the Loader
// tells the sampler its dataset through Sampler::attach.
#include "core/error.h"
#include "data/dataset.h"
#include "data/instruct/length_grouped.h"
#include "data/instruct/vlm_data.h"

#include <algorithm>
#include <numeric>

namespace facet::data {

LengthGroupedSampler::LengthGroupedSampler(int64_t size, uint64_t seed, bool modality)
    : size_(size), seed_(seed), modality_(modality) {}

void LengthGroupedSampler::attach(const Dataset& dataset) {
  const auto* lengths = dynamic_cast<const vlm::ModalityLengths*>(&dataset);
  if (!lengths) fail("length_grouped sampler: the dataset does not report sample lengths (an instruction dataset does)");
  set_lengths(lengths->modality_lengths());
}

void LengthGroupedSampler::set_lengths(std::vector<int64_t> lengths) {
  if (static_cast<int64_t>(lengths.size()) != size_)
    fail("length_grouped sampler: {} lengths for a dataset of {} samples", lengths.size(), size_);
  for (size_t i = 0; i < lengths.size(); ++i)
    if (lengths[i] == 0) fail("length_grouped sampler: sample {} has length 0", i);
  lengths_ = std::move(lengths);
}

namespace {

std::vector<int64_t> permutation(int64_t n, at::Generator& g) {
  const auto perm = torch::randperm(n, g, torch::kInt64);
  return {perm.data_ptr<int64_t>(), perm.data_ptr<int64_t>() + n};
}

// `members` (dataset indices) shuffled, cut into mega-batches of `batch`, each sorted by |length|
// descending (stable, as Python's sorted).
std::vector<std::vector<int64_t>> grouped(const std::vector<int64_t>& members, const std::vector<int64_t>& lengths,
                                          int64_t batch, at::Generator& g) {
  const std::vector<int64_t> perm = permutation(static_cast<int64_t>(members.size()), g);
  std::vector<std::vector<int64_t>> out;
  for (size_t i = 0; i < perm.size(); i += static_cast<size_t>(batch)) {
    std::vector<int64_t> mb;
    for (size_t k = i; k < std::min(perm.size(), i + static_cast<size_t>(batch)); ++k)
      mb.push_back(members[static_cast<size_t>(perm[k])]);
    std::stable_sort(mb.begin(), mb.end(), [&](int64_t a, int64_t b) {
      return std::abs(lengths[static_cast<size_t>(a)]) > std::abs(lengths[static_cast<size_t>(b)]);
    });
    out.push_back(std::move(mb));
  }
  return out;
}

}  // namespace

std::vector<int64_t> LengthGroupedSampler::epoch_order(int64_t epoch) {
  if (lengths_.empty() && size_ > 0)
    fail("length_grouped sampler: no sample lengths; it must be attached to its dataset (Sampler::attach) before "
         "the first epoch");
  auto g = at::make_generator<at::CPUGeneratorImpl>(mix_seed(seed_, static_cast<uint64_t>(epoch), 0x4c47));
  std::vector<int64_t> mm, lang;
  for (int64_t i = 0; i < size_; ++i) (lengths_[static_cast<size_t>(i)] > 0 ? mm : lang).push_back(i);
  std::vector<int64_t> order;
  if (!modality_ || mm.empty() || lang.empty()) {
    std::vector<int64_t> all(static_cast<size_t>(size_));
    std::iota(all.begin(), all.end(), int64_t{0});
    for (const auto& mb : grouped(all, lengths_, batch_, g)) order.insert(order.end(), mb.begin(), mb.end());
    return order;
  }
  auto mm_batches = grouped(mm, lengths_, batch_, g);
  auto lang_batches = grouped(lang, lengths_, batch_, g);
  std::vector<int64_t> additional = mm_batches.back();
  additional.insert(additional.end(), lang_batches.back().begin(), lang_batches.back().end());
  std::vector<std::vector<int64_t>> batches(mm_batches.begin(), mm_batches.end() - 1);
  batches.insert(batches.end(), lang_batches.begin(), lang_batches.end() - 1);
  for (int64_t k : permutation(static_cast<int64_t>(batches.size()), g))
    order.insert(order.end(), batches[static_cast<size_t>(k)].begin(), batches[static_cast<size_t>(k)].end());
  std::sort(additional.begin(), additional.end());
  order.insert(order.end(), additional.begin(), additional.end());
  return order;
}

FACET_REGISTER(sampler_registry(), "length_grouped",
               "LLaVA's group_by_modality_length: shuffled mega-batches sorted by length, image and text-only samples "
               "apart (needs a dataset that reports lengths)",
               [](const Config& c, int64_t size, uint64_t seed) {
                 return std::make_shared<LengthGroupedSampler>(size, seed, c.get<bool>("modality", true));
               });

}  // namespace facet::data
