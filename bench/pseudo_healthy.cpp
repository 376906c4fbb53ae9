// One GVS training step at the published widths (CycleGAN resnet_9blocks generator, 64-wide U-Net
// segmentor): the generator phase (G, S on its output, the three losses, backward, Adam on G), then
// the segmentor phase (S on that output, the weighted CE, backward, Adam on S) — what step
// `alternating` runs for model `pseudo_healthy`. bench/pseudo_healthy.py is GVS's main.py loop on the
// same networks. Prints one JSON line.
//   pseudo_healthy_bench [--size 128] [--batch 2] [--steps 3] [--warmup 1] [--threads N]
#include "bench/common.h"
#include "core/config.h"
#include "models/build.h"
#include "models/model.h"

#include <fmt/format.h>

using namespace facet;

int main(int argc, char** argv) {
  int64_t size = 128, batch = 2, steps = 3, warmup = 1, threads = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const int64_t value = std::stoll(argv[i + 1]);
    if (flag == "--size") size = value;
    else if (flag == "--batch") batch = value;
    else if (flag == "--steps") steps = value;
    else if (flag == "--warmup") warmup = value;
    else if (flag == "--threads") threads = value;
  }
  if (threads > 0) torch::set_num_threads(static_cast<int>(threads));
  torch::manual_seed(0);
  auto model = models::build_model(Config::parse("name: pseudo_healthy", "bench"));
  model->train();
  auto& phased = dynamic_cast<models::PhasedObjective&>(*model);
  std::vector<torch::Tensor> g_params, s_params;
  for (auto& p : model->named_parameters()) (p.key().starts_with("generator.") ? g_params : s_params).push_back(p.value());
  auto g_opt = bench::optimizer("{name: adam, lr: 1.0e-3, betas: [0.9, 0.99]}", g_params);
  auto s_opt = bench::optimizer("{name: adam, lr: 1.0e-3, betas: [0.9, 0.99]}", s_params);
  data::Batch b;
  const auto yy = torch::arange(size).view({-1, 1}).to(torch::kFloat), xx = torch::arange(size).view({1, -1}).to(torch::kFloat);
  const torch::Tensor brain = ((yy - size / 2).pow(2) + (xx - size / 2).pow(2) < size * size / 5).to(torch::kFloat);
  const torch::Tensor lesion = ((yy - size / 3).pow(2) + (xx - size / 2).pow(2) < size * size / 64).to(torch::kFloat);
  b.fields["image"] = (torch::randn({batch, 1, size, size}) * brain + lesion * 2);
  b.fields["mask"] = lesion.expand({batch, 1, size, size}).contiguous();
  b.fields["brain_mask"] = brain.expand({batch, 1, size, size}).contiguous();
  b.indices = torch::arange(batch);
  auto step = [&] {
    Outputs outputs;
    g_opt->zero_grad();
    phased.phase_loss("generator", b, outputs).total.backward();
    g_opt->step();
    s_opt->zero_grad();
    phased.phase_loss("segmentor", b, outputs).total.backward();
    s_opt->step();
  };
  const double ms = bench::ms_per_call(step, warmup, steps);
  fmt::print("{{\"impl\": \"facet\", \"model\": \"gvs\", \"batch\": {}, \"size\": {}, \"threads\": {}, \"ms_per_step\": {:.3f}}}\n", batch,
             size, torch::get_num_threads(), ms);
}
