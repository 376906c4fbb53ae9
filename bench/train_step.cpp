// Training-step time of torchvision's ResNet-18 layout in Facet (LibTorch, C++), to be compared
// with bench/train_step.py doing the same work in PyTorch (Python). Prints one JSON line.
//   train_step_bench [--batch 16] [--size 112] [--steps 20] [--warmup 5] [--threads N]
#include "models/backbones/resnet.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <chrono>
#include <cstring>
#include <string>

int main(int argc, char** argv) {
  int64_t batch = 16, size = 112, steps = 20, warmup = 5, threads = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const int64_t value = std::stoll(argv[i + 1]);
    if (flag == "--batch") batch = value;
    else if (flag == "--size") size = value;
    else if (flag == "--steps") steps = value;
    else if (flag == "--warmup") warmup = value;
    else if (flag == "--threads") threads = value;
  }
  if (threads > 0) torch::set_num_threads(static_cast<int>(threads));
  torch::manual_seed(0);
  facet::models::ResNetOptions options;
  options.depth = 18;
  options.num_classes = 10;
  facet::models::ResNet net(options);
  net->train();
  torch::optim::SGD optimizer(net->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9));
  const auto x = torch::randn({batch, 3, size, size});
  const auto y = torch::randint(0, 10, {batch}, torch::kInt64);
  auto step = [&] {
    optimizer.zero_grad();
    auto loss = torch::nn::functional::cross_entropy(net->forward(x), y);
    loss.backward();
    optimizer.step();
  };
  for (int64_t i = 0; i < warmup; ++i) step();
  const auto start = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < steps; ++i) step();
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count() /
                    static_cast<double>(steps);
  fmt::print("{{\"impl\": \"facet\", \"model\": \"resnet18\", \"batch\": {}, \"size\": {}, \"threads\": {}, "
             "\"ms_per_step\": {:.3f}}}\n",
             batch, size, torch::get_num_threads(), ms);
}
