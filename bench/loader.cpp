// Data-loading throughput of Facet's Loader (worker threads) on a dataset in its published layout,
// with the transforms of a bench/loaders/<dataset>.yaml data node (reading, decoding and the
// reader's resampling included), collated into batches. bench/loader.py does the same work with
// PyTorch's DataLoader (worker processes) the way the reference repositories do.
// Prints one JSON line; the first epoch warms the page cache and is not timed.
//   loader_bench --config bench/loaders/bp4d.yaml --root DIR [--workers 2] [--batch 32] [--epochs 3]
//                [--set key=value ...]
#include "core/config.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "data/transform.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <chrono>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  std::string config, root;
  std::vector<std::string> overrides;
  int64_t workers = 2, batch = 32, epochs = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--config") config = value;
    else if (flag == "--root") root = value;
    else if (flag == "--workers") workers = std::stoll(value);
    else if (flag == "--batch") batch = std::stoll(value);
    else if (flag == "--epochs") epochs = std::stoll(value);
    else if (flag == "--set") overrides.push_back(value);
  }
  if (config.empty() || root.empty()) {
    fmt::print(stderr, "usage: loader_bench --config bench/loaders/NAME.yaml --root DIR [--workers N] [--batch B] [--epochs E] [--set key=value]\n");
    return 2;
  }
  try {
    torch::set_num_threads(1);  // the workers are the parallelism, as in the PyTorch reference
    overrides.push_back("root=" + root);
    const facet::Config data = facet::Config::load(config, overrides);
    auto dataset = facet::data::dataset_registry().create(data, data.has("split") ? data.get<std::string>("split") : "train");
    facet::data::LoaderOptions options;
    options.batch_size = batch;
    options.workers = static_cast<int>(workers);
    options.prefetch = 2 * static_cast<int>(workers);
    options.transforms = facet::data::build_transforms(data.at("transforms"));
    auto sampler = std::make_shared<facet::data::RandomSampler>(dataset->size(), 0);
    facet::data::Loader loader(dataset, sampler, options);
    data.check_unused();  // a misspelt --set key (data.num_slices for num_slices) is an error, not ignored
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
    fmt::print("{{\"impl\": \"facet\", \"dataset\": \"{}\", \"workers\": {}, \"batch\": {}, \"samples\": {}, \"samples_per_s\": {:.1f}}}\n",
               data.get<std::string>("name"), workers, batch, samples, static_cast<double>(samples) / seconds);
  } catch (const std::exception& e) {
    fmt::print(stderr, "loader_bench: {}\n", e.what());
    return 1;
  }
}
