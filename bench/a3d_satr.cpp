// Forward + backward time of the A3D DenseNet-121 backbone with SATr on all three stages (the SATr
// paper's configuration: 7 slices, 512-wide FPN-lite), compared by bench/a3d_satr.py with the PyTorch
// transcription of the released Trans_with_A3D (tools/golden/a3d_golden.py) on the same input size
// and threads. The loss is the mean square of the stride-4 map. Prints one JSON line.
//   a3d_satr_bench [--size 512] [--slices 7] [--batch 1] [--satr 1] [--steps 2] [--warmup 1] [--threads N]
#include "models/backbones/a3d_densenet.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <chrono>
#include <string>

int main(int argc, char** argv) {
  int64_t size = 512, slices = 7, batch = 1, satr = 1, steps = 2, warmup = 1, threads = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const int64_t value = std::stoll(argv[i + 1]);
    if (flag == "--size") size = value;
    else if (flag == "--slices") slices = value;
    else if (flag == "--batch") batch = value;
    else if (flag == "--satr") satr = value;
    else if (flag == "--steps") steps = value;
    else if (flag == "--warmup") warmup = value;
    else if (flag == "--threads") threads = value;
  }
  if (threads > 0) torch::set_num_threads(static_cast<int>(threads));
  torch::manual_seed(0);
  facet::models::A3DDenseNetOptions o;
  o.num_slices = slices;
  o.satr_stages = {satr != 0, satr != 0, satr != 0};
  facet::models::A3DDenseNet net(o);
  net->train();
  const auto x = torch::randn({batch, slices, size, size});
  auto step = [&] {
    net->zero_grad();
    net->forward(x).square().mean().backward();
  };
  for (int64_t i = 0; i < warmup; ++i) step();
  const auto start = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < steps; ++i) step();
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count() /
                    static_cast<double>(steps);
  fmt::print("{{\"impl\": \"facet\", \"model\": \"a3d{}\", \"batch\": {}, \"slices\": {}, \"size\": {}, \"threads\": {}, "
             "\"ms_per_step\": {:.3f}}}\n",
             satr ? "_satr" : "", batch, slices, size, torch::get_num_threads(), ms);
}
