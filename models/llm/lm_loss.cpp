#include "models/llm/lm_loss.h"

#include "data/dataset.h"

namespace facet::models::llm {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Losses of one chunk and, for backward, d loss_i / d logits = softmax - onehot (0 for ignored rows).
struct ChunkResult {
  torch::Tensor losses, grad_logits;
};

ChunkResult chunk_losses(const torch::Tensor& h, const torch::Tensor& w, const torch::Tensor& targets, bool want_grad) {
  const auto logits = torch::matmul(h, w.t()).to(torch::kFloat32);
  const auto valid = targets != data::kIgnoreIndex;
  const auto safe = targets.masked_fill(valid.logical_not(), 0).unsqueeze(1);
  const auto lse = logits.logsumexp(1);
  const auto losses = (lse - logits.gather(1, safe).squeeze(1)) * valid.to(torch::kFloat32);
  ChunkResult r{losses, {}};
  if (want_grad) {
    auto g = (logits - lse.unsqueeze(1)).exp_();
    g.scatter_add_(1, safe, -torch::ones_like(safe, g.options()));
    g.mul_(valid.to(torch::kFloat32).unsqueeze(1));
    r.grad_logits = g;
  }
  return r;
}

struct ChunkedTokenLosses : public torch::autograd::Function<ChunkedTokenLosses> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& hidden, const torch::Tensor& weight,
                               const torch::Tensor& targets, int64_t chunk) {
    ctx->save_for_backward({hidden, weight, targets});
    ctx->saved_data["chunk"] = chunk;
    const int64_t n = hidden.size(0);
    auto out = torch::empty({n}, hidden.options().dtype(torch::kFloat32));
    for (int64_t s = 0; s < n; s += chunk) {
      const int64_t len = std::min(chunk, n - s);
      out.narrow(0, s, len).copy_(chunk_losses(hidden.narrow(0, s, len), weight, targets.narrow(0, s, len), false).losses);
    }
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& hidden = saved[0];
    const auto& weight = saved[1];
    const auto& targets = saved[2];
    const int64_t chunk = ctx->saved_data["chunk"].toInt();
    const auto grad_out = grads[0].to(torch::kFloat32);
    const bool need_h = ctx->needs_input_grad(0), need_w = ctx->needs_input_grad(1);
    torch::Tensor gh = need_h ? torch::empty_like(hidden) : torch::Tensor();
    torch::Tensor gw = need_w ? torch::zeros(weight.sizes(), weight.options().dtype(torch::kFloat32)) : torch::Tensor();
    const int64_t n = hidden.size(0);
    for (int64_t s = 0; s < n; s += chunk) {
      const int64_t len = std::min(chunk, n - s);
      const auto h = hidden.narrow(0, s, len);
      auto g = chunk_losses(h, weight, targets.narrow(0, s, len), true).grad_logits;
      g.mul_(grad_out.narrow(0, s, len).unsqueeze(1));
      if (need_h) gh.narrow(0, s, len).copy_(torch::matmul(g.to(weight.scalar_type()), weight));
      if (need_w) gw.addmm_(g.t(), h.to(torch::kFloat32));
    }
    return {gh, need_w ? gw.to(weight.scalar_type()) : torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor chunked_token_losses(const torch::Tensor& hidden, const torch::Tensor& weight, const torch::Tensor& targets,
                                   int64_t chunk) {
  TORCH_CHECK(hidden.dim() == 2 && weight.dim() == 2 && hidden.size(1) == weight.size(1),
              "chunked_token_losses: hidden [N, H] and weight [V, H], got ", hidden.sizes(), " and ", weight.sizes());
  TORCH_CHECK(targets.dim() == 1 && targets.size(0) == hidden.size(0), "chunked_token_losses: targets must be [N]");
  TORCH_CHECK(chunk > 0, "chunked_token_losses: chunk must be positive");
  return ChunkedTokenLosses::apply(hidden, weight, targets.to(torch::kLong), chunk);
}

torch::Tensor naive_token_losses(const torch::Tensor& logits, const torch::Tensor& targets) {
  namespace F = torch::nn::functional;
  return F::cross_entropy(logits.to(torch::kFloat32), targets.to(torch::kLong),
                          F::CrossEntropyFuncOptions().reduction(torch::kNone).ignore_index(data::kIgnoreIndex));
}

}  // namespace facet::models::llm
