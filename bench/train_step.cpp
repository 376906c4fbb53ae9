// Training-step time of a backbone in Facet (LibTorch, C++), compared by bench/train_step.py with
// the same model, batch, input and threads in PyTorch (Python): torchvision's ResNet-18/50 and
// transformers' ViT-B/16 (with a linear head on the CLS token). Prints one JSON line.
//   train_step_bench [--model resnet18|resnet50|vit_b16] [--batch 16] [--size 112] [--steps 20]
//                    [--warmup 5] [--threads N] [--device cpu|cuda] [--dtype fp32|bf16]
// --dtype bf16 runs forward and loss under autocast (train/amp.h), as torch.autocast(device,
// torch.bfloat16) does in the Python side; on CUDA the timed region is bracketed by device syncs.
#include "models/backbones/resnet.h"
#include "models/backbones/vit.h"
#include "train/amp.h"
#include "train/optimizer.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <chrono>
#include <functional>
#include <string>

int main(int argc, char** argv) {
  std::string model = "resnet18";
  std::string device_name = "cpu", dtype = "fp32";
  int64_t batch = 16, size = 112, steps = 20, warmup = 5, threads = 0;
  bool optim_loop = false;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--model") model = value;
    else if (flag == "--batch") batch = std::stoll(value);
    else if (flag == "--size") size = std::stoll(value);
    else if (flag == "--steps") steps = std::stoll(value);
    else if (flag == "--warmup") warmup = std::stoll(value);
    else if (flag == "--threads") threads = std::stoll(value);
    else if (flag == "--device") device_name = value;
    else if (flag == "--dtype") dtype = value;
    else if (flag == "--optim-loop") optim_loop = value == "1";
  }
  if (device_name != "cpu" && device_name != "cuda") {
    fmt::print(stderr, "train_step_bench: unknown --device {} (cpu, cuda)\n", device_name);
    return 2;
  }
  if (dtype != "fp32" && dtype != "bf16") {
    fmt::print(stderr, "train_step_bench: unknown --dtype {} (fp32, bf16)\n", dtype);
    return 2;
  }
  if (device_name == "cuda" && !torch::cuda::is_available()) {
    fmt::print(stderr, "train_step_bench: --device cuda, but no CUDA device is usable\n");
    return 2;
  }
  const torch::Device device(device_name == "cuda" ? torch::kCUDA : torch::kCPU);
  const std::optional<torch::ScalarType> autocast =
      dtype == "bf16" ? std::optional<torch::ScalarType>(torch::kBFloat16) : std::nullopt;
  if (threads > 0) torch::set_num_threads(static_cast<int>(threads));
  torch::manual_seed(0);
  std::shared_ptr<torch::nn::Module> net;
  std::function<torch::Tensor(const torch::Tensor&)> forward;
  if (model == "resnet18" || model == "resnet50") {
    facet::models::ResNetOptions o;
    o.depth = model == "resnet18" ? 18 : 50;
    o.num_classes = 10;
    auto resnet = facet::models::ResNet(o);
    net = resnet.ptr();
    forward = [resnet](const torch::Tensor& x) mutable { return resnet->forward(x); };
  } else if (model == "vit_b16") {
    facet::models::ViTOptions o;
    o.image_size = size;
    o.norm_eps = 1e-12;  // as transformers' ViT
    auto vit = facet::models::ViT(o);
    auto head = torch::nn::Linear(o.embed_dim, 10);
    auto both = std::make_shared<torch::nn::Module>();
    both->register_module("vit", vit);
    both->register_module("head", head);
    net = both;
    forward = [vit, head](const torch::Tensor& x) mutable { return head->forward(vit->forward(x)); };
  } else {
    fmt::print(stderr, "train_step_bench: unknown --model {} (resnet18, resnet50, vit_b16)\n", model);
    return 2;
  }
  net->to(device);
  net->train();
  // Facet's optimiser as the trainer builds it (`optim: {name: sgd, lr: 0.01, momentum: 0.9}`): fused
  // unless --optim-loop asks for LibTorch's loop over parameters.
  const auto optimizer_ptr = facet::train::optimizer_registry().create(
      facet::Config::parse(fmt::format("name: sgd\nlr: 0.01\nmomentum: 0.9\nfused: {}", !optim_loop)),
      {{"all", net->parameters(), 0.01, 0.0}});
  auto& optimizer = *optimizer_ptr;
  // Drawn on the CPU as before (the CPU numbers stay comparable), then moved.
  const auto x = torch::randn({batch, 3, size, size}).to(device);
  const auto y = torch::randint(0, 10, {batch}, torch::kInt64).to(device);
  auto step = [&] {
    optimizer.zero_grad();
    torch::Tensor loss;
    {
      facet::train::AutocastGuard guard(device, autocast);
      loss = torch::nn::functional::cross_entropy(forward(x), y);
    }
    loss.backward();
    optimizer.step();
  };
  auto sync = [&] {
    if (device.is_cuda()) torch::cuda::synchronize();
  };
  for (int64_t i = 0; i < warmup; ++i) step();
  sync();
  const auto start = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < steps; ++i) step();
  sync();
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count() /
                    static_cast<double>(steps);
  fmt::print("{{\"impl\": \"facet\", \"model\": \"{}\", \"batch\": {}, \"size\": {}, \"threads\": {}, "
             "\"device\": \"{}\", \"dtype\": \"{}\", \"ms_per_step\": {:.3f}, \"images_per_s\": {:.1f}}}\n",
             model, batch, size, torch::get_num_threads(), device_name, dtype, ms,
             1000.0 * static_cast<double>(batch) / ms);
}
