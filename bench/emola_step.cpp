// The EmoLA training step at its published size, for a GPU: LLaVA-1.5-7B (CLIP ViT-L/14-336 frozen,
// Vicuna-7B) with the 212-d facial prior token, LoRA r 128 / alpha 256 on all seven projections of
// every decoder layer, gradient checkpointing, bf16 weights — built from experiments/vlm/emola.yaml's
// model node, stepped by the trainer's own Optimization from its optim node (freeze list, the
// mm_projector's 0.2x learning rate, fused AdamW). Weights are random (a timing needs no checkpoint)
// and made on the device directly (no float32 copy on the host). One batch: per-device 16 as the
// release (scripts/train_emola: 16 per GPU on 4 GPUs), 576 image tokens + the prior token + `--text`
// text tokens each.
//
// Prints one JSON line: ms per step, tokens/s (all positions of the decoder's sequences), and the
// model-FLOPs utilisation against `--peak-tflops` (989: H100 SXM dense bf16). Model FLOPs per step,
// as PaLM's appendix B counts them, without the recomputation of checkpointing:
//   tower (frozen, forward only)       2 * N_tower * 577 per image
//   decoder forward                    2 * N_decoder * T per sequence, + 4 * layers * T^2 * width (attention)
//   decoder backward                   2x the forward for the activations' gradients
//                                      + 2 * N_trainable_decoder * T for the LoRA weights' gradients
//   projectors (trained)               6 * N * tokens: 576 image tokens, 1 prior token
//
//   emola_step_bench [--config experiments/vlm/emola.yaml] [--batch 16] [--text 128] [--steps 10]
//                    [--warmup 3] [--device cuda] [--peak-tflops 989] [--set key=value ...]
// `--config experiments/vlm/tiny/emola.yaml --device cpu` runs the same program at test size (ctest:
// bench.emola_step_tiny), so it does not go stale without a GPU.
#include "bench/common.h"
#include "core/config.h"
#include "models/build.h"
#include "models/vlm/emola.h"
#include "train/optimization.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <string>
#include <vector>

using namespace facet;

namespace {

int64_t count(const std::vector<torch::Tensor>& tensors) {
  int64_t n = 0;
  for (const auto& t : tensors) n += t.numel();
  return n;
}

int64_t count_under(torch::nn::Module& model, const std::string& prefix, bool trainable_only) {
  int64_t n = 0;
  for (const auto& item : model.named_parameters())
    if (item.key().starts_with(prefix) && (!trainable_only || item.value().requires_grad())) n += item.value().numel();
  return n;
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_path = "experiments/vlm/emola.yaml", device_name = "cuda";
  int64_t batch = 16, text = 128, steps = 10, warmup = 3;
  double peak_tflops = 989;
  std::vector<std::string> overrides;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--config") config_path = value;
    else if (flag == "--batch") batch = std::stoll(value);
    else if (flag == "--text") text = std::stoll(value);
    else if (flag == "--steps") steps = std::stoll(value);
    else if (flag == "--warmup") warmup = std::stoll(value);
    else if (flag == "--device") device_name = value;
    else if (flag == "--peak-tflops") peak_tflops = std::stod(value);
    else if (flag == "--set") overrides.push_back(value);
    else {
      fmt::print(stderr, "emola_step_bench: unknown flag {}\n", flag);
      return 2;
    }
  }
  try {
    const torch::Device device(device_name);
    if (device.is_cuda() && !torch::cuda::is_available()) {
      fmt::print(stderr, "emola_step_bench: --device {}, but no CUDA device is usable\n", device_name);
      return 2;
    }
    const Config config = Config::load(config_path, overrides);
    const Config node = config.at("model");
    const torch::Dtype dtype = device.is_cuda() ? torch::kBFloat16 : torch::kFloat32;
    torch::manual_seed(0);
    auto model = models::build_model(node, {dtype, /*defer_init=*/true, device});
    {
      torch::NoGradGuard no_grad;
      for (auto& p : model->parameters()) p.normal_(0, 0.02);
    }
    auto& emola = dynamic_cast<models::vlm::EmolaModel&>(*model);
    const auto& o = emola.options();
    train::OptimizationSettings settings;
    const Config optim = config.at("optim");
    train::Optimization optimization("main", optim, nullptr, *model, {steps + warmup, 0}, settings, device, nullptr);

    // One batch: the image placeholder after BOS, then text; every text token is a target.
    const int64_t vocab = o.text.vocab_size, size = o.vision.image_size, prior_dim = node.get<int64_t>("prior_dim", 212);
    data::Batch b;
    auto ids = torch::randint(3, vocab - 1, {batch, text + 1}, torch::kLong);
    ids.select(1, 0).fill_(1);
    ids.select(1, 1).fill_(o.image_token_id);
    b.fields["input_ids"] = ids;
    b.fields["labels"] = ids.masked_fill(ids == o.image_token_id, -100);
    b.fields["attention_mask"] = torch::ones_like(ids);
    b.fields["image"] = torch::randn({batch, 3, size, size});
    b.fields["landmarks"] = torch::rand({batch, prior_dim});
    b.indices = torch::arange(batch);
    b = b.to(device);
    model->train();
    auto step = [&] {
      optimization.zero_grad();
      Outputs out;
      const auto r = emola.forward_losses(b, out);
      optimization.backward(r.total, true);
      optimization.step(0, r.total.detach(), 1);
    };
    const double ms = bench::ms_per_call(step, warmup, steps, [&] {
      if (device.is_cuda()) torch::cuda::synchronize();
    });

    // Model FLOPs per step (see the header).
    const int64_t image_tokens = o.vision.grid() * o.vision.grid();
    const auto seq = static_cast<double>(text + image_tokens + 1);  // text + image tokens + the prior token
    const double n_tower = static_cast<double>(count_under(*model, "vision_tower.", false));
    const double n_decoder = static_cast<double>(count_under(*model, "language_model.", false));
    const double n_lora = static_cast<double>(count_under(*model, "language_model.", true));
    const double n_image_projector = static_cast<double>(count_under(*model, "multi_modal_projector.", true));
    const double n_prior_projector = static_cast<double>(count_under(*model, "landmark_projector.", true));
    const double layers = static_cast<double>(o.text.num_hidden_layers), width = static_cast<double>(o.text.hidden_size);
    const double B = static_cast<double>(batch);
    const double tower = 2 * n_tower * static_cast<double>(image_tokens + 1) * B;
    const double decoder_forward = (2 * n_decoder * seq + 4 * layers * seq * seq * width) * B;
    const double decoder_backward = 2 * decoder_forward + 2 * n_lora * seq * B;
    const double projectors = 6 * (n_image_projector * static_cast<double>(image_tokens) + n_prior_projector) * B;
    const double flops = tower + decoder_forward + decoder_backward + projectors;
    const double tflops = flops / (ms / 1000) / 1e12;
    fmt::print("{{\"impl\": \"facet\", \"work\": \"emola_step\", \"config\": \"{}\", \"device\": \"{}\", \"dtype\": \"{}\", "
               "\"params\": {}, \"trainable\": {}, \"batch\": {}, \"sequence\": {}, \"ms_per_step\": {:.1f}, "
               "\"tokens_per_s\": {:.0f}, \"model_tflops_per_step\": {:.2f}, \"achieved_tflops\": {:.1f}, \"mfu\": {:.3f}}}\n",
               config_path, device.str(), dtype == torch::kBFloat16 ? "bf16" : "fp32",
               count_under(*model, "", false),
               count(optimization.params()), batch, static_cast<int64_t>(seq), ms, B * seq / (ms / 1000), flops / 1e12,
               tflops, tflops / peak_tflops);
  } catch (const std::exception& e) {
    fmt::print(stderr, "emola_step_bench: {}\n", e.what());
    return 1;
  }
}
