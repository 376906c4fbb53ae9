#include "train/builder.h"

#include "core/file_io.h"
#include "core/log.h"
#include "core/safetensors.h"
#include "models/layers/construction.h"

#include <set>
#include "train/checkpoint.h"
#include "models/build.h"
#include "models/weights/init_weights.h"

namespace facet::train {
namespace fs = std::filesystem;

namespace {

// A metric entry with `label: NAME` reports its values as NAME/<value>, so that two metrics of the
// same kind (multilabel_f1 for AUs and for attributes, mae for age and for pose) do not collide.
class LabelledMetric : public metrics::Metric {
 public:
  LabelledMetric(std::string label, std::shared_ptr<metrics::Metric> inner) : label_(std::move(label)), inner_(std::move(inner)) {}
  void update(const Outputs& outputs, const data::Batch& batch) override { inner_->update(outputs, batch); }
  std::map<std::string, double> compute() const override {
    std::map<std::string, double> out;
    for (const auto& [name, value] : inner_->compute()) out[label_ + "/" + name] = value;
    return out;
  }
  void reset() override { inner_->reset(); }
  void prepare(const data::Dataset& eval) override { inner_->prepare(eval); }
  torch::Tensor state() const override { return inner_->state(); }
  void load_state(const torch::Tensor& summed) override { inner_->load_state(summed); }
  std::string records() const override { return inner_->records(); }
  void merge_records(const std::vector<std::string>& per_rank) override { inner_->merge_records(per_rank); }

 private:
  std::string label_;
  std::shared_ptr<metrics::Metric> inner_;
};

}  // namespace

std::shared_ptr<models::Model> build_model(const Config& config, const TrainOptions& options, const torch::Device& device) {
  return models::build_model(config.at("model"), {options.weights_dtype, options.defer_init, device});
}

namespace {

nlohmann::json to_json(const models::LoadedWeights& w) {
  return {{"path", w.path}, {"content_hash", w.content_hash}, {"entry", w.entry_yaml}, {"tensors", w.tensors}};
}

models::LoadedWeights from_json(const nlohmann::json& j) {
  models::LoadedWeights w;
  w.path = j.at("path").get<std::string>();
  w.content_hash = j.at("content_hash").get<std::string>();
  w.entry_yaml = j.at("entry").get<std::string>();
  w.tensors = j.at("tensors").get<std::vector<std::string>>();
  return w;
}

}  // namespace

nlohmann::json load_init_weights(const Config& config, models::Model& model) {
  nlohmann::json records = nlohmann::json::array();
  const Config train = config.at("train");
  std::set<std::string> names;
  if (train.has("init_weights")) {
    const auto loaded = models::init_weights(model, train.at("init_weights"));
    for (const auto& w : loaded) {
      records.push_back(to_json(w));
      names.insert(w.tensors.begin(), w.tensors.end());
    }
    if (const std::string unloaded = models::describe_unloaded(model, loaded); !unloaded.empty()) log::info("{}", unloaded);
  }
  model.weights_loaded(names);
  return records;
}

std::vector<std::shared_ptr<metrics::Metric>> build_metrics(const Config& config) {
  std::vector<std::shared_ptr<metrics::Metric>> out;
  if (!config.has("metrics")) return out;
  const Config list = config.at("metrics");
  for (size_t i = 0; i < list.size(); ++i) {
    const Config entry = list.at(i);
    const std::string label = entry.get<std::string>("label", "");
    auto metric = metrics::metric_registry().create(entry);
    out.push_back(label.empty() ? metric : std::make_shared<LabelledMetric>(label, std::move(metric)));
  }
  return out;
}

std::shared_ptr<Visualizer> build_visualizer(const Config& config, const models::Model& model) {
  if (!config.has("visualizer"))
    return visualizer_registry().create(Config::parse("name: " + model.default_visualizer(), "the model's default visualizer"));
  const Config node = config.at("visualizer");
  if (node.is_scalar())
    return visualizer_registry().create(Config::parse("name: " + node.get<std::string>(""), node.where()));
  return visualizer_registry().create(node);
}

std::shared_ptr<data::Sampler> build_sampler(const Config& data, int64_t size, uint64_t seed) {
  return data.has("sampler") ? data::sampler_registry().create(data.at("sampler"), size, seed)
                             : std::make_shared<data::RandomSampler>(size, seed);
}

data::LoaderOptions train_loader_options(const Config& data, const Runtime& runtime) {
  data::LoaderOptions lo;
  lo.batch_size = data.get<int64_t>("batch_size");
  lo.workers = data.get<int>("workers", 2);
  lo.prefetch = data.get<int>("prefetch", 4);
  lo.drop_last = true;
  lo.keep_empty_batches = true;  // the trainer decides over all ranks whether to skip one
  lo.rank = runtime.env.rank;
  lo.world_size = runtime.env.world_size;
  lo.pin_memory = runtime.device.is_cuda();
  const auto on_error = data.get<std::string>("on_error", "fail");
  if (on_error != "fail" && on_error != "skip")
    fail("{}: {}: expected fail or skip, got \"{}\"", data.where("on_error"), data.full_key("on_error"), on_error);
  lo.on_error = on_error == "skip" ? data::OnError::skip : data::OnError::fail;
  lo.seed = runtime.seed;
  lo.split = data.get<std::string>("train_split", "train");
  if (data.has("transforms")) lo.transforms = data::build_transforms(data.at("transforms"));
  return lo;
}

std::vector<std::shared_ptr<Hook>> build_configured_hooks(const Config& config) {
  std::vector<std::shared_ptr<Hook>> out;
  if (!config.has("hooks")) return out;
  const Config list = config.at("hooks");
  for (size_t i = 0; i < list.size(); ++i) out.push_back(hook_registry().create(list.at(i)));
  return out;
}

CheckpointTarget resolve_checkpoint(const fs::path& target, const std::string& which) {
  CheckpointTarget t;
  if (fs::exists(target / "model.safetensors")) {  // a checkpoint directory
    t.checkpoint = target;
    // Inside a run directory only when it sits in <run>/checkpoints/ next to the run's config.
    const fs::path parent = fs::absolute(target).lexically_normal().parent_path();
    if (parent.filename() == "checkpoints" && fs::exists(parent.parent_path() / "config.yaml"))
      t.run_dir = parent.parent_path();
    return t;
  }
  if (!fs::is_directory(target / "checkpoints"))
    fail("{}: expected a run directory (with checkpoints/) or a checkpoint directory (with model.safetensors)",
         target.string());
  t.run_dir = target;
  const CheckpointDir dir(target / "checkpoints");
  auto found = dir.resolve(which);
  if (!found) found = dir.latest_complete();
  if (!found) fail("{}: no complete checkpoint to load (checkpoints/{} and every step_* are missing or incomplete)",
                   target.string(), which);
  t.checkpoint = *found;
  return t;
}

void load_checkpoint_model(models::Model& model, const safetensors::TensorMap& tensors, const nlohmann::json& state,
                           const fs::path& checkpoint) {
  // The frozen tensors the checkpoint does not hold come from the files it references.
  std::set<std::string> referenced;
  for (const auto& j : state.value("frozen_weights", nlohmann::json::array())) {
    const auto record = models::reapply_weights(model, from_json(j));
    referenced.insert(record.tensors.begin(), record.tensors.end());
  }
  const fs::path model_file = checkpoint / "model.safetensors";
  const auto report = safetensors::load_into(model, tensors, {}, /*strict=*/false, model_file.string());
  const std::set<std::string> loaded(report.loaded.begin(), report.loaded.end());
  for (const auto& p : model.named_parameters())
    if (loaded.count(p.key())) models::mark_initialized(p.value());
  for (const auto& b : model.named_buffers())
    if (loaded.count(b.key())) models::mark_initialized(b.value());
  std::vector<std::string> missing;
  for (const auto& name : report.missing)
    if (!referenced.count(name)) missing.push_back(name);
  if (!missing.empty() || !report.unexpected.empty() || !report.mismatched.empty()) {
    safetensors::LoadReport shown = report;
    shown.missing = missing;
    fail("{}: does not fit the model: {}", model_file.string(), shown.summary());
  }
  models::check_initialized(model, model_file.string());
}

void load_checkpoint_weights(models::Model& model, const fs::path& checkpoint, bool prefer_ema, const torch::Device& device) {
  const fs::path model_file = checkpoint / "model.safetensors", ema_file = checkpoint / "ema.safetensors";
  if (!fs::exists(model_file)) fail("{}: not a checkpoint directory (no model.safetensors)", checkpoint.string());
  const bool ema = prefer_ema && fs::exists(ema_file);
  nlohmann::json state = nlohmann::json::object();
  if (fs::exists(checkpoint / "state.json")) {
    try {
      state = nlohmann::json::parse(read_file(checkpoint / "state.json"));
    } catch (const nlohmann::json::exception& e) {
      fail("{}: corrupt: {}", (checkpoint / "state.json").string(), e.what());
    }
  }
  load_checkpoint_model(model, safetensors::load(model_file), state, checkpoint);
  if (ema) {
    // EMA files hold the averaged trainable tensors and buffers; the rest stays as in model.safetensors.
    const auto report = safetensors::load_into(model, safetensors::load(ema_file), {}, /*strict=*/false, ema_file.string());
    if (!report.unexpected.empty() || !report.mismatched.empty())
      fail("{}: does not match the model: {}", ema_file.string(), report.summary());
  }
  model.to(device);
  log::info("weights from {}{}", checkpoint.string(), ema ? " (the EMA weights)" : "");
}

std::vector<std::string> checkpoint_label_names(const fs::path& checkpoint) {
  const fs::path file = checkpoint / "state.json";
  if (!fs::exists(file)) return {};
  try {
    const auto state = nlohmann::json::parse(read_file(file));
    return state.value("label_names", std::vector<std::string>{});
  } catch (const nlohmann::json::exception& e) {
    fail("{}: corrupt: {}", file.string(), e.what());
  }
}

}  // namespace facet::train
