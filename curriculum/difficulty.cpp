#include "curriculum/difficulty.h"

#include "core/error.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace facet::curriculum {
namespace {

std::vector<int64_t> to_indices(const torch::Tensor& t) {
  const torch::Tensor c = t.to(torch::kCPU, torch::kLong).contiguous().view(-1);
  return {c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel()};
}

std::vector<double> to_doubles(const torch::Tensor& t) {
  const torch::Tensor c = t.detach().to(torch::kCPU, torch::kDouble).contiguous().view(-1);
  return {c.data_ptr<double>(), c.data_ptr<double>() + c.numel()};
}

}  // namespace

DifficultyOptions DifficultyOptions::from(const Config& sampler) {
  DifficultyOptions o;
  if (!sampler.has("difficulty")) return o;
  const Config c = sampler.at("difficulty");
  o.momentum = c.get_in_range<double>("momentum", o.momentum, Range::closed_open(0, 1));
  o.uncertainty = c.get<std::string>("uncertainty", o.uncertainty);
  if (o.uncertainty != "loss_std" && o.uncertainty != "mc_dropout" && o.uncertainty != "none")
    fail("{}: {}: expected loss_std, mc_dropout or none, got \"{}\"", c.where("uncertainty"), c.full_key("uncertainty"), o.uncertainty);
  o.window = c.get_in_range<int64_t>("window", o.window, Range::at_least(2));
  o.normalize = c.get<std::string>("normalize", o.normalize);
  if (o.normalize != "rank" && o.normalize != "minmax")
    fail("{}: {}: expected rank or minmax, got \"{}\"", c.where("normalize"), c.full_key("normalize"), o.normalize);
  o.weight = c.get_in_range<double>("weight", o.weight, Range::at_least(0));
  return o;
}

std::vector<double> normalize_scores(const std::vector<double>& values, const std::vector<bool>& known, const std::string& method) {
  std::vector<double> out(values.size(), 0.5);
  std::vector<size_t> have;
  for (size_t i = 0; i < values.size(); ++i)
    if (known[i]) have.push_back(i);
  if (have.size() < 2) return out;
  if (method == "minmax") {
    double lo = values[have[0]], hi = lo;
    for (size_t i : have) lo = std::min(lo, values[i]), hi = std::max(hi, values[i]);
    for (size_t i : have) out[i] = hi > lo ? (values[i] - lo) / (hi - lo) : 0.5;
    return out;
  }
  std::stable_sort(have.begin(), have.end(), [&](size_t a, size_t b) { return values[a] < values[b]; });
  const double last = static_cast<double>(have.size() - 1);
  for (size_t s = 0; s < have.size();) {
    size_t e = s;
    while (e + 1 < have.size() && values[have[e + 1]] == values[have[s]]) ++e;
    const double mean_rank = 0.5 * static_cast<double>(s + e);  // ties share their mean rank
    for (size_t k = s; k <= e; ++k) out[have[k]] = mean_rank / last;
    s = e + 1;
  }
  return out;
}

DifficultyEstimator::DifficultyEstimator(int64_t size, DifficultyOptions options)
    : size_(size), options_(std::move(options)), ema_(static_cast<size_t>(size), 0.0), visits_(static_cast<size_t>(size), 0),
      history_(static_cast<size_t>(size * options_.window), 0.0), mc_(static_cast<size_t>(size), 0.0),
      mc_known_(static_cast<size_t>(size), false) {
  if (size < 1) fail("curriculum: the dataset is empty");
}

void DifficultyEstimator::observe_losses(const torch::Tensor& indices, const torch::Tensor& losses) {
  const auto idx = to_indices(indices);
  const auto values = to_doubles(losses);
  if (idx.size() != values.size())
    fail("curriculum: {} per-sample losses for {} samples", values.size(), idx.size());
  for (int64_t i : idx)
    if (i < 0 || i >= size_) fail("curriculum: sample index {} outside the dataset's 0..{}", i, size_ - 1);
  // In (index, loss) order: the state must not depend on the order the ranks' values arrive in, not
  // even for a sample drawn twice in one step (a paced epoch repeats samples).
  std::vector<size_t> at(idx.size());
  std::iota(at.begin(), at.end(), size_t{0});
  // A non-finite loss says nothing about the sample (the trainer skips such a step).
  at.erase(std::remove_if(at.begin(), at.end(), [&](size_t k) { return !std::isfinite(values[k]); }), at.end());
  std::sort(at.begin(), at.end(), [&](size_t a, size_t b) { return idx[a] != idx[b] ? idx[a] < idx[b] : values[a] < values[b]; });
  for (size_t k : at) {
    const int64_t i = idx[k];
    const double l = values[k];
    auto& v = visits_[static_cast<size_t>(i)];
    auto& e = ema_[static_cast<size_t>(i)];
    e = v == 0 ? l : options_.momentum * e + (1 - options_.momentum) * l;
    history_[static_cast<size_t>(i * options_.window + v % options_.window)] = l;
    ++v;
  }
}

void DifficultyEstimator::observe_uncertainty(const torch::Tensor& indices, const torch::Tensor& values) {
  const auto idx = to_indices(indices);
  const auto v = to_doubles(values);
  if (idx.size() != v.size()) fail("curriculum: {} uncertainties for {} samples", v.size(), idx.size());
  for (size_t k = 0; k < idx.size(); ++k) {
    if (idx[k] < 0 || idx[k] >= size_) fail("curriculum: sample index {} outside the dataset's 0..{}", idx[k], size_ - 1);
    if (!std::isfinite(v[k])) continue;
    mc_[static_cast<size_t>(idx[k])] = v[k];
    mc_known_[static_cast<size_t>(idx[k])] = true;
  }
}

std::vector<double> DifficultyEstimator::uncertainty(std::vector<bool>* known) const {
  std::vector<double> out(static_cast<size_t>(size_), 0.0);
  std::vector<bool> have(static_cast<size_t>(size_), false);
  if (options_.uncertainty == "mc_dropout") {
    out = mc_;
    have = mc_known_;
  } else if (options_.uncertainty == "loss_std") {
    for (int64_t i = 0; i < size_; ++i) {
      const int64_t n = std::min(visits_[static_cast<size_t>(i)], options_.window);
      if (n < 2) continue;
      const double* h = history_.data() + i * options_.window;
      double mean = 0, var = 0;
      for (int64_t k = 0; k < n; ++k) mean += h[k];
      mean /= static_cast<double>(n);
      for (int64_t k = 0; k < n; ++k) var += (h[k] - mean) * (h[k] - mean);
      out[static_cast<size_t>(i)] = std::sqrt(var / static_cast<double>(n));
      have[static_cast<size_t>(i)] = true;
    }
  }
  if (known) *known = have;
  return out;
}

std::vector<double> DifficultyEstimator::difficulty() const {
  std::vector<bool> seen(static_cast<size_t>(size_));
  for (int64_t i = 0; i < size_; ++i) seen[static_cast<size_t>(i)] = visits_[static_cast<size_t>(i)] > 0;
  std::vector<double> d = normalize_scores(ema_, seen, options_.normalize);
  if (options_.uncertainty == "none" || options_.weight == 0) return d;
  std::vector<bool> known;
  const auto u = uncertainty(&known);
  const auto un = normalize_scores(u, known, options_.normalize);
  for (size_t i = 0; i < d.size(); ++i) d[i] += options_.weight * un[i];
  return d;
}

nlohmann::json DifficultyEstimator::state() const {
  return {{"size", size_}, {"window", options_.window}, {"ema", ema_}, {"visits", visits_},
          {"history", history_}, {"mc", mc_}, {"mc_known", mc_known_}};
}

void DifficultyEstimator::load_state(const nlohmann::json& s) {
  if (s.at("size").get<int64_t>() != size_ || s.at("window").get<int64_t>() != options_.window)
    fail("curriculum: the saved difficulty state is for {} samples with window {}, this run has {} with window {}",
         s.at("size").get<int64_t>(), s.at("window").get<int64_t>(), size_, options_.window);
  ema_ = s.at("ema").get<std::vector<double>>();
  visits_ = s.at("visits").get<std::vector<int64_t>>();
  history_ = s.at("history").get<std::vector<double>>();
  mc_ = s.at("mc").get<std::vector<double>>();
  mc_known_ = s.at("mc_known").get<std::vector<bool>>();
}

}  // namespace facet::curriculum
