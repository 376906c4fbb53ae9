#include "train/predictor.h"

#include "core/config.h"
#include "core/file_io.h"
#include "core/log.h"
#include "data/image_list/image_list.h"
#include "data/loader.h"
#include "data/transform.h"
#include "train/amp.h"
#include "train/builder.h"
#include "train/options.h"
#include "train/predictions.h"
#include "train/runtime.h"

namespace facet::train {
namespace fs = std::filesystem;

PredictSummary predict(const PredictOptions& o) {
  const CheckpointTarget target = resolve_checkpoint(o.target, o.checkpoint);
  const fs::path config_file = !o.config.empty() ? o.config : target.run_dir.empty() ? fs::path() : target.run_dir / "config.yaml";
  if (config_file.empty() || !fs::exists(config_file))
    fail("{}: no run config found; pass --config FILE", target.checkpoint.string());
  Config config = Config::load(config_file, o.overrides);
  const TrainOptions options = TrainOptions::from(config.at("train"));
  const Config data = config.at("data");
  // The inputs first (a wrong path fails before a large model is built): read as the kind of data
  // the model was trained on reads them (plain images by default), in the channel count it was
  // trained on (grey or colour inputs, from the checkpoint).
  const auto state = nlohmann::json::parse(read_file(target.checkpoint / "state.json"));
  const auto label_names = state.value("label_names", std::vector<std::string>{});
  auto images = data::open_prediction_inputs(data, o.inputs, state.value("image_channels", int64_t{0}));
  Runtime runtime = make_runtime(config, options, /*connect=*/false);
  auto model = build_model(config, options, runtime.device);
  load_checkpoint_weights(*model, target.checkpoint, options.ema_decay > 0, runtime.device);
  model->eval();
  std::vector<std::shared_ptr<data::Transform>> transforms;
  if (data.has("eval_transforms")) transforms = data::build_transforms(data.at("eval_transforms"));
  const auto visualizer = build_visualizer(config, *model);
  config.at("model").check_unused();
  config.consume();  // prediction reads the model and the evaluation transforms only

  data::LoaderOptions lo;
  lo.batch_size = o.batch_size;
  lo.workers = 2;
  lo.drop_last = false;
  lo.transforms = transforms;
  data::Loader loader(images, std::make_shared<data::SequentialSampler>(images->size()), lo);
  loader.start_epoch(0);

  const fs::path out = !o.out.empty() ? o.out : (target.run_dir.empty() ? target.checkpoint : target.run_dir) / "predictions";
  const fs::path pictures = out / "pictures";
  if (o.pictures) fs::create_directories(pictures);
  PredictionWriter writer(label_names);
  torch::NoGradGuard no_grad;
  int64_t done = 0;
  while (auto batch = loader.next()) {
    Outputs outputs;
    try {
      AutocastGuard autocast(runtime.device, options.amp);
      outputs = model->forward(batch->to(runtime.device)).to(torch::kCPU);
    } catch (const Error& e) {
      fail("{}\n(prediction batches hold `image`, and `landmarks` when a landmarks.txt from `facet data align` lies "
           "beside the images)",
           e.what());
    }
    writer.add(*batch, outputs);
    if (o.pictures) {
      for (int64_t i = 0; i < batch->size(); ++i) {
        // One picture per image: the visualiser sees a batch of one.
        data::Batch one;
        for (const auto& [name, t] : batch->fields) one.fields[name] = t.narrow(0, i, 1);
        for (const auto& [name, list] : batch->ragged) one.ragged[name] = {list[static_cast<size_t>(i)]};
        for (const auto& [name, list] : batch->text) one.text[name] = {list[static_cast<size_t>(i)]};
        one.ids = {batch->ids[static_cast<size_t>(i)]};
        one.indices = batch->indices.narrow(0, i, 1);
        Outputs single;
        for (const auto& [name, t] : outputs)
          if (t.dim() >= 1 && t.size(0) == batch->size()) single[name] = t.narrow(0, i, 1);
        for (const auto& [name, list] : outputs.ragged) single.ragged[name] = {list[static_cast<size_t>(i)]};
        for (const auto& [name, list] : outputs.text) single.text[name] = {list[static_cast<size_t>(i)]};
        if (auto png = visualizer->draw(VisualInput{one, single, label_names}, 1))
          write_file_atomic(pictures / fmt::format("{:05d}_{}.png", done + i, fs::path(one.ids[0]).stem().string()), png->bytes);
      }
    }
    done += batch->size();
    log::info("predicted {}/{} images", done, images->size());
  }
  PredictSummary summary;
  summary.images = done;
  summary.files = writer.write(out / "predictions", nullptr, true);
  if (o.pictures) summary.pictures = pictures;
  return summary;
}

}  // namespace facet::train
