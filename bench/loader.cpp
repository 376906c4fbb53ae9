// Data-loading throughput of Facet's Loader (worker threads) on a BP4D-format folder of JPEG
// frames: decode, resize to 200 (the reader's image_size, done on the 8-bit frame), random 176
// crop, horizontal flip, normalise, collate batches.
// bench/loader.py does the same work with PyTorch's DataLoader (worker processes) and torchvision.
// Prints one JSON line; the first epoch warms the page cache and is not timed.
//   loader_bench --root DIR [--workers 2] [--batch 32] [--epochs 2]
#include "core/config.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "data/transform.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <chrono>
#include <string>

int main(int argc, char** argv) {
  std::string root;
  int64_t workers = 2, batch = 32, epochs = 2;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--root") root = value;
    else if (flag == "--workers") workers = std::stoll(value);
    else if (flag == "--batch") batch = std::stoll(value);
    else if (flag == "--epochs") epochs = std::stoll(value);
  }
  if (root.empty()) {
    fmt::print(stderr, "usage: loader_bench --root BP4D_DIR [--workers N] [--batch B] [--epochs E]\n");
    return 2;
  }
  try {
    torch::set_num_threads(1);  // the workers are the parallelism, as in the PyTorch reference
    const facet::Config data = facet::Config::parse(fmt::format(R"(
name: bp4d
root: {}
fold: 1
landmarks_dir: ""
image_size: 200
transforms:
  - {{name: random_crop, size: 176}}
  - {{name: random_hflip, p: 0.5}}
  - {{name: normalize, mean: [127.5, 127.5, 127.5], std: [127.5, 127.5, 127.5]}}
)", root), "loader_bench");
    auto dataset = facet::data::dataset_registry().create(data, "all");
    facet::data::LoaderOptions options;
    options.batch_size = batch;
    options.workers = static_cast<int>(workers);
    options.prefetch = 2 * static_cast<int>(workers);
    options.transforms = facet::data::build_transforms(data.at("transforms"));
    auto sampler = std::make_shared<facet::data::RandomSampler>(dataset->size(), 0);
    facet::data::Loader loader(dataset, sampler, options);
    int64_t samples = 0;
    double seconds = 0;
    for (int64_t epoch = 0; epoch < epochs; ++epoch) {
      const auto start = std::chrono::steady_clock::now();
      loader.start_epoch(epoch);
      int64_t n = 0;
      while (auto b = loader.next()) n += b->size();
      if (epoch == 0) continue;  // warm-up
      seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      samples += n;
    }
    fmt::print("{{\"impl\": \"facet\", \"workers\": {}, \"batch\": {}, \"samples\": {}, \"samples_per_s\": {:.1f}}}\n",
               workers, batch, samples, static_cast<double>(samples) / seconds);
  } catch (const std::exception& e) {
    fmt::print(stderr, "loader_bench: {}\n", e.what());
    return 1;
  }
}
