#include "curriculum/mc_dropout.h"

#include "core/error.h"

#include <algorithm>

namespace facet::curriculum {
namespace {

// One pass's per-sample score vectors [B, D].
torch::Tensor pass_scores(const Outputs& out, const McDropoutOptions& o, int64_t batch) {
  const std::string dense = o.output.empty() ? "logits" : o.output;
  if (out.contains(dense)) return out.at(dense).detach().to(torch::kFloat).reshape({batch, -1});
  const std::string ragged = o.output.empty() ? "scores" : o.output;
  auto it = out.ragged.find(ragged);
  if (it == out.ragged.end())
    fail("mc_dropout: the model's outputs hold neither a tensor nor per-sample \"{}\" (tensors: {})", o.output.empty() ? "logits / scores" : o.output,
         join(out.keys()));
  if (static_cast<int64_t>(it->second.size()) != batch)
    fail("mc_dropout: {} per-sample \"{}\" for a batch of {}", it->second.size(), ragged, batch);
  std::vector<torch::Tensor> rows;
  for (const auto& s : it->second) {
    auto sorted = std::get<0>(s.detach().to(torch::kFloat).reshape({-1}).sort(0, /*descending=*/true));
    const int64_t k = std::min<int64_t>(o.top_k, sorted.numel());
    rows.push_back(torch::constant_pad_nd(sorted.narrow(0, 0, k), {0, o.top_k - k}, 0));
  }
  return torch::stack(rows);
}

}  // namespace

torch::Tensor mc_dropout_variance(models::Model& model, const data::Batch& batch, const McDropoutOptions& o) {
  if (o.passes < 2) fail("mc_dropout: passes must be at least 2, got {}", o.passes);
  torch::NoGradGuard no_grad;
  models::DropoutOnlyTraining mode(model);
  if (mode.dropout_modules() == 0)
    fail("mc_dropout: the model has no dropout module, so every pass would give the same scores; add dropout to the model "
         "or use difficulty.uncertainty: loss_std");
  const int64_t b = batch.size();
  std::vector<torch::Tensor> passes;
  for (int64_t t = 0; t < o.passes; ++t) passes.push_back(pass_scores(model.forward(batch), o, b));
  return torch::stack(passes).var(0, /*unbiased=*/false).mean(1);
}

}  // namespace facet::curriculum
