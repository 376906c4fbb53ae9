#include "train/evaluator.h"

#include "data/loader.h"
#include "data/pack.h"
#include "train/amp.h"
#include "train/builder.h"
#include "train/device_prefetch.h"
#include "train/predictions.h"

namespace facet::train {

Evaluator::Evaluator(const Config& config, std::string split, const Runtime& runtime, const TrainOptions& options,
                     const models::Model& model)
    : split_(std::move(split)),
      runtime_(runtime),
      amp_(options.amp),
      channels_last_(options.channels_last),
      prefetch_(options.prefetch_to_device),
      log_images_(options.log_images) {
  const Config data = config.at("data");
  batch_size_ = data.get<int64_t>("eval_batch_size", data.get<int64_t>("batch_size"));
  if (batch_size_ < 1) fail("{}: data.eval_batch_size: expected >= 1, got {}", data.where("eval_batch_size"), batch_size_);
  workers_ = data.get<int>("workers", 2);
  if (data.has("eval_transforms")) transforms_ = data::build_transforms(data.at("eval_transforms"));
  metrics_ = build_metrics(config);
  visualizer_ = build_visualizer(config, model);
  dataset_ = data::open_dataset(data, split_);
}

std::optional<std::vector<std::string>> Evaluator::result_names() {
  std::vector<std::string> names;
  for (auto& m : metrics_) {
    m->reset();
    m->prepare(*dataset_);
    try {
      for (const auto& [name, value] : m->compute()) names.push_back(split_ + "/" + name);
    } catch (const std::exception&) {
      m->reset();
      return std::nullopt;
    }
    m->reset();
  }
  return names;
}

EvalOutput Evaluator::run(models::Model& model, const std::filesystem::path& predictions) {
  torch::NoGradGuard no_grad;
  for (auto& m : metrics_) {
    m->reset();
    m->prepare(*dataset_);
  }
  data::LoaderOptions lo;
  // A global batch no smaller than the ranks, so that every rank gets samples of each batch.
  lo.batch_size = std::max<int64_t>(batch_size_ / runtime_.world_size(), 1) * runtime_.world_size();
  lo.workers = workers_;
  lo.drop_last = false;
  lo.rank = runtime_.env.rank;
  lo.world_size = runtime_.world_size();
  lo.pin_memory = runtime_.device.is_cuda();
  lo.transforms = transforms_;
  lo.split = split_;
  data::Loader loader(dataset_, std::make_shared<data::SequentialSampler>(dataset_->size()), lo);
  loader.start_epoch(0);
  PredictionWriter writer(dataset_->label_names());
  EvalOutput out;
  const auto label_names = dataset_->label_names();
  bool drawn = false;
  DevicePrefetcher prefetcher(loader, {runtime_.device, channels_last_, prefetch_});
  while (auto ready = prefetcher.next()) {
    const data::Batch& host = ready->host;  // predictions and pictures read the host copy
    const data::Batch& b = ready->device;
    Outputs outputs;
    {
      AutocastGuard autocast(runtime_.device, amp_);
      outputs = model.forward(b);
    }
    for (auto& m : metrics_) m->update(outputs, b);
    if (!predictions.empty()) writer.add(host, outputs);
    if (!drawn && log_images_ > 0 && runtime_.leader()) {
      drawn = true;
      const Outputs shown = outputs.to(torch::kCPU);
      const VisualInput input{host, shown, label_names};
      if (auto grid = visualizer_registry().create(Config::parse("name: image_grid"))->draw(input, log_images_))
        out.pictures.emplace_back(split_ + "/inputs", std::move(*grid));
      if (visualizer_->tag() != "inputs")
        if (auto picture = visualizer_->draw(input, log_images_))
          out.pictures.emplace_back(split_ + "/" + visualizer_->tag(), std::move(*picture));
    }
  }
  for (auto& m : metrics_) {
    if (runtime_.group) {
      torch::Tensor state = m->state().to(torch::kDouble).contiguous();
      if (state.numel() > 0) {
        runtime_.group->allreduce_sum_(state);
        m->load_state(state);
      }
      const std::string mine = m->records();
      const auto all = runtime_.group->allgather_bytes(mine);
      if (std::any_of(all.begin(), all.end(), [](const std::string& r) { return !r.empty(); })) m->merge_records(all);
    }
    for (const auto& [name, value] : m->compute())
      if (!out.metrics.emplace(split_ + "/" + name, value).second)
        fail("metrics: two metrics report \"{}\"; give one of them a `label:` (its values become <label>/{})", name, name);
  }
  if (!predictions.empty()) writer.write(predictions, runtime_.group.get(), runtime_.leader());
  return out;
}

}  // namespace facet::train
