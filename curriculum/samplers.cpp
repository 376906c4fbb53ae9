#include "curriculum/samplers.h"

#include "core/error.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace facet::curriculum {
namespace {

at::Generator epoch_generator(uint64_t seed, int64_t epoch, uint64_t stream) {
  return at::make_generator<at::CPUGeneratorImpl>(data::mix_seed(seed, static_cast<uint64_t>(epoch), stream));
}

std::vector<int64_t> permutation(int64_t n, at::Generator& g) {
  const auto p = torch::randperm(n, g, torch::kLong);
  return {p.data_ptr<int64_t>(), p.data_ptr<int64_t>() + n};
}

// Indices sorted by difficulty (easiest first), ties in the random order of `tie`.
std::vector<int64_t> sorted_by(std::vector<int64_t> items, const std::vector<double>& difficulty, at::Generator& g) {
  const auto tie = permutation(static_cast<int64_t>(items.size()), g);
  std::vector<size_t> pos(items.size());
  std::iota(pos.begin(), pos.end(), size_t{0});
  std::sort(pos.begin(), pos.end(), [&](size_t a, size_t b) {
    const double da = difficulty[static_cast<size_t>(items[a])], db = difficulty[static_cast<size_t>(items[b])];
    return da != db ? da < db : tie[a] < tie[b];
  });
  std::vector<int64_t> out;
  out.reserve(items.size());
  for (size_t p : pos) out.push_back(items[p]);
  return out;
}

}  // namespace

double Pace::at(int64_t epoch) const {
  if (epochs <= 0 || start >= 1) return 1.0;
  return std::min(1.0, start + (1 - start) * static_cast<double>(epoch) / static_cast<double>(epochs));
}

Pace Pace::from(const Config& sampler, Pace fallback) {
  if (!sampler.has("pace")) return fallback;
  const Config c = sampler.at("pace");
  Pace p = fallback;
  p.start = c.get_in_range<double>("start", p.start, Range{.lo = 0, .hi = 1, .lo_open = true});
  p.epochs = c.get_in_range<int64_t>("epochs", p.epochs, Range::at_least(0));
  return p;
}

CurriculumSampler::CurriculumSampler(int64_t size, uint64_t seed, DifficultyOptions difficulty, Pace pace)
    : size_(size), seed_(seed), estimator_(size, std::move(difficulty)), pace_(pace) {}

void CurriculumSampler::feedback(const torch::Tensor& indices, const torch::Tensor& losses) {
  estimator_.observe_losses(indices, losses);
}

void CurriculumSampler::feedback_uncertainty(const torch::Tensor& indices, const torch::Tensor& values) {
  if (estimator_.options().uncertainty != "mc_dropout")
    fail("curriculum: MC-dropout uncertainties were fed to a sampler whose difficulty.uncertainty is \"{}\"; set it to mc_dropout",
         estimator_.options().uncertainty);
  estimator_.observe_uncertainty(indices, values);
}

nlohmann::json CurriculumSampler::state() const { return {{"difficulty", estimator_.state()}}; }

void CurriculumSampler::load_state(const nlohmann::json& state) {
  if (!state.contains("difficulty")) fail("curriculum: the checkpoint holds no curriculum sampler state");
  estimator_.load_state(state.at("difficulty"));
}

std::vector<int64_t> CurriculumSampler::paced_pool(int64_t epoch, const std::vector<double>& difficulty, at::Generator& g) const {
  const double p = pace_.at(epoch);
  std::vector<int64_t> pool, seen;
  for (int64_t i = 0; i < size_; ++i) (estimator_.visits(i) > 0 ? seen : pool).push_back(i);
  if (p >= 1) {
    pool.insert(pool.end(), seen.begin(), seen.end());
  } else {
    const auto easiest = sorted_by(seen, difficulty, g);
    const auto keep = static_cast<size_t>(std::max<double>(1, std::ceil(p * static_cast<double>(easiest.size()))));
    pool.insert(pool.end(), easiest.begin(), easiest.begin() + static_cast<int64_t>(std::min(keep, easiest.size())));
  }
  std::sort(pool.begin(), pool.end());
  std::vector<int64_t> out;
  out.reserve(static_cast<size_t>(size_));
  while (static_cast<int64_t>(out.size()) < size_) {
    for (int64_t k : permutation(static_cast<int64_t>(pool.size()), g)) {
      if (static_cast<int64_t>(out.size()) == size_) break;
      out.push_back(pool[static_cast<size_t>(k)]);
    }
  }
  return out;
}

SelfPacedSampler::SelfPacedSampler(int64_t size, uint64_t seed, DifficultyOptions difficulty, Pace pace)
    : CurriculumSampler(size, seed, std::move(difficulty), pace) {}

std::vector<int64_t> SelfPacedSampler::epoch_order(int64_t epoch) {
  auto g = epoch_generator(seed_, epoch, 0x5E1F);
  return paced_pool(epoch, estimator_.difficulty(), g);
}

MoSclSampler::MoSclSampler(int64_t size, uint64_t seed, DifficultyOptions difficulty, Pace pace, double hard_fraction,
                           bool shuffle_batches)
    : CurriculumSampler(size, seed, std::move(difficulty), pace), hard_fraction_(hard_fraction), shuffle_batches_(shuffle_batches) {}

std::vector<int64_t> MoSclSampler::epoch_order(int64_t epoch) {
  auto g = epoch_generator(seed_, epoch, 0x3C1);
  const auto difficulty = estimator_.difficulty();
  const auto sorted = sorted_by(paced_pool(epoch, difficulty, g), difficulty, g);
  const int64_t group = std::max<int64_t>(batch_, 2);
  const int64_t full = static_cast<int64_t>(sorted.size()) / group;
  std::vector<int64_t> batch_order;
  if (shuffle_batches_) batch_order = permutation(full, g);
  return mixed_order(sorted, group, hard_fraction_, batch_order);
}

std::vector<int64_t> mixed_order(const std::vector<int64_t>& sorted, int64_t batch, double hard_fraction,
                                 const std::vector<int64_t>& batch_order) {
  const int64_t n = static_cast<int64_t>(sorted.size());
  const int64_t full = n / batch;
  const int64_t hard = std::clamp<int64_t>(std::llround(hard_fraction * static_cast<double>(batch)), batch > 1 ? 1 : 0,
                                           batch > 1 ? batch - 1 : 1);
  const int64_t easy = batch - hard;
  std::vector<std::vector<int64_t>> batches(static_cast<size_t>(full));
  for (int64_t b = 0; b < full; ++b) {
    auto& out = batches[static_cast<size_t>(b)];
    int64_t e = b * easy, h = n - 1 - b * hard;  // the b-th easiest run and the b-th hardest run
    for (int64_t j = 0; j < batch; ++j) {
      // Place j is hard when the running hard count steps up there: hard places spread evenly.
      const bool is_hard = (j + 1) * hard / batch > j * hard / batch;
      out.push_back(is_hard ? sorted[static_cast<size_t>(h--)] : sorted[static_cast<size_t>(e++)]);
    }
  }
  std::vector<int64_t> order;
  order.reserve(sorted.size());
  for (int64_t k = 0; k < full; ++k) {
    const int64_t b = batch_order.empty() ? k : batch_order[static_cast<size_t>(k)];
    order.insert(order.end(), batches[static_cast<size_t>(b)].begin(), batches[static_cast<size_t>(b)].end());
  }
  // The middle of the order that fills no whole batch.
  order.insert(order.end(), sorted.begin() + full * easy, sorted.begin() + (n - full * hard));
  return order;
}

namespace {

FACET_REGISTER(data::sampler_registry(), "self_paced",
               "Loss-only self-paced learning (Kumar et al. 2010): each epoch draws the easiest fraction of the seen samples "
               "(pace: {start, epochs}), hard ones left out",
               [](const Config& c, int64_t size, uint64_t seed) {
                 DifficultyOptions d = DifficultyOptions::from(c);
                 if (c.has("difficulty") && c.at("difficulty").has("uncertainty") && d.uncertainty != "none")
                   fail("{}: {}: self_paced is the loss-only baseline; use mo_scl for loss + uncertainty",
                        c.at("difficulty").where("uncertainty"), c.at("difficulty").full_key("uncertainty"));
                 d.uncertainty = "none";
                 return std::make_shared<SelfPacedSampler>(size, seed, d, Pace::from(c, Pace{0.5, 5}));
               });

FACET_REGISTER(data::sampler_registry(), "mo_scl",
               "Mo-SCL (Li, Han, Zhou 2023): difficulty from loss + uncertainty, each batch pairs the easiest and hardest samples",
               [](const Config& c, int64_t size, uint64_t seed) {
                 const double hard = c.get_in_range<double>("hard_fraction", 0.5, Range{.lo = 0, .hi = 1, .lo_open = true, .hi_open = true});
                 const bool shuffle = c.get<bool>("shuffle_batches", true);
                 return std::make_shared<MoSclSampler>(size, seed, DifficultyOptions::from(c), Pace::from(c, Pace{1.0, 0}), hard, shuffle);
               });

}  // namespace
}  // namespace facet::curriculum
