#include "train/trainer.h"

#include "core/log.h"
#include "core/safetensors.h"
#include "core/tensorboard.h"
#include "data/pack.h"
#include "train/amp.h"
#include "train/init_weights.h"
#include "train/optimizer.h"
#include "train/progress.h"
#include "train/visualize.h"

#include <csignal>
#include <cmath>

namespace facet::train {
namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------
// Stop signals: the handler only records the signal; the training loop checkpoints and returns.
namespace {
std::atomic<int> g_stop_signal{0};
extern "C" void on_stop_signal(int signal) { g_stop_signal.store(signal); }
}  // namespace

void install_stop_signal_handlers() {
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

int stop_signal() { return g_stop_signal.load(); }

// ---------------------------------------------------------------------------------------------
TrainOptions TrainOptions::from(const Config& t) {
  TrainOptions o;
  o.max_steps = t.get<int64_t>("max_steps", 0);
  o.max_epochs = t.get<int64_t>("max_epochs", 0);
  if (o.max_steps <= 0 && o.max_epochs <= 0)
    fail("{}: {}: set max_steps or max_epochs to a positive number", t.where(), t.prefix().empty() ? "train" : t.prefix());
  o.grad_accum = t.get<int64_t>("grad_accum", 1);
  if (o.grad_accum < 1) fail("{}: {}.grad_accum: expected >= 1, got {}", t.where("grad_accum"), t.prefix(), o.grad_accum);
  o.clip_norm = t.get<double>("clip_norm", 0.0);
  o.amp = t.get<std::string>("amp", "none");
  parse_amp(o.amp);
  o.ema_decay = t.get<double>("ema_decay", 0.0);
  o.eval_every = t.get<int64_t>("eval_every", 0);
  o.checkpoint_every = t.get<int64_t>("checkpoint_every", 0);
  o.keep_last = t.get<int>("keep_last", 2);
  if (o.keep_last < 1) fail("{}: {}.keep_last: expected >= 1, got {}", t.where("keep_last"), t.prefix(), o.keep_last);
  o.best_metric = t.get<std::string>("best_metric", "");
  o.best_mode = t.get<std::string>("best_mode", "max");
  if (o.best_mode != "max" && o.best_mode != "min")
    fail("{}: {}.best_mode: expected max or min, got \"{}\"", t.where("best_mode"), t.prefix(), o.best_mode);
  o.log_every = t.get<int64_t>("log_every", 10);
  o.non_finite = t.get<std::string>("non_finite", "skip");
  if (o.non_finite != "skip" && o.non_finite != "stop")
    fail("{}: {}.non_finite: expected skip or stop, got \"{}\"", t.where("non_finite"), t.prefix(), o.non_finite);
  o.device = t.get<std::string>("device", "auto");
  o.dist_timeout_s = t.get<double>("dist_timeout_s", 300.0);
  o.overlap_grad_reduce = t.get<bool>("overlap_grad_reduce", true);
  o.bucket_mb = t.get<int64_t>("bucket_mb", 25);
  if (o.bucket_mb < 1) fail("{}: {}.bucket_mb: expected >= 1, got {}", t.where("bucket_mb"), t.prefix(), o.bucket_mb);
  o.threads = t.get<int>("threads", 0);
  o.log_images = t.get<int64_t>("log_images", 0);
  return o;
}

namespace {

torch::Device choose_device(const std::string& name, int local_rank) {
  if (name == "cpu") return torch::kCPU;
  if (name == "auto") return torch::cuda::is_available() ? torch::Device(torch::kCUDA, local_rank) : torch::kCPU;
  if (name == "cuda") {
    if (!torch::cuda::is_available()) fail("train.device: cuda requested but no CUDA device is usable");
    return torch::Device(torch::kCUDA, local_rank);
  }
  try {
    return torch::Device(name);
  } catch (const c10::Error&) {
    fail("train.device: expected auto, cpu, cuda or cuda:N, got \"{}\"", name);
  }
}

std::map<std::string, torch::Tensor> module_state(torch::nn::Module& module) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& p : module.named_parameters()) out[p.key()] = p.value().detach();
  for (const auto& b : module.named_buffers()) out[b.key()] = b.value().detach();
  return out;
}

// A checkpoint's EMA weights on `device`, which must match the model's state name for name and
// shape (an EMA of another model would otherwise fail later, inside the update, without a file).
std::map<std::string, torch::Tensor> checked_ema(const safetensors::TensorMap& saved, torch::nn::Module& model,
                                                 const fs::path& file, const torch::Device& device) {
  const auto own = module_state(model);
  std::map<std::string, torch::Tensor> out;
  for (const auto& [name, t] : own) {
    auto it = saved.find(name);
    if (it == saved.end()) fail("{}: has no EMA tensor \"{}\"", file.string(), name);
    if (it->second.sizes() != t.sizes())
      fail("{}: EMA tensor \"{}\" is {}, the model's is {}", file.string(), name, it->second.sizes(), t.sizes());
    out[name] = it->second.to(device);
  }
  if (saved.size() != own.size()) fail("{}: {} EMA tensors for a model of {}", file.string(), saved.size(), own.size());
  return out;
}

torch::Tensor generator_state(at::Generator generator) {
  std::lock_guard lock(generator.mutex());
  return generator.get_state();
}

void set_generator_state(at::Generator generator, const torch::Tensor& state) {
  std::lock_guard lock(generator.mutex());
  generator.set_state(state);
}

// A metric entry with `label: NAME` reports its values as NAME/<value>, so that two metrics of the
// same kind (multilabel_f1 for AUs and for attributes, mae for age and for pose) do not collide.
class LabelledMetric : public metrics::Metric {
 public:
  LabelledMetric(std::string label, std::shared_ptr<metrics::Metric> inner) : label_(std::move(label)), inner_(std::move(inner)) {}
  void update(const TensorDict& outputs, const data::Batch& batch) override { inner_->update(outputs, batch); }
  std::map<std::string, double> compute() const override {
    std::map<std::string, double> out;
    for (const auto& [name, value] : inner_->compute()) out[label_ + "/" + name] = value;
    return out;
  }
  void reset() override { inner_->reset(); }
  void prepare(const data::Dataset& eval) override { inner_->prepare(eval); }
  torch::Tensor state() const override { return inner_->state(); }
  void load_state(const torch::Tensor& summed) override { inner_->load_state(summed); }

 private:
  std::string label_;
  std::shared_ptr<metrics::Metric> inner_;
};

// One CSV row per sample: id, then every output's values (flattened), headed by name[index].
void write_prediction_rows(std::FILE* rows, bool& header, const TensorDict& outputs, const data::Batch& batch) {
  std::vector<std::pair<std::string, torch::Tensor>> flat;
  for (const auto& [name, t] : outputs)
    if (t.defined() && t.dim() >= 1 && t.size(0) == batch.size())
      flat.emplace_back(name, t.detach().to(torch::kCPU, torch::kDouble).reshape({batch.size(), -1}).contiguous());
  if (!header) {
    std::string line = "id";
    for (const auto& [name, t] : flat)
      for (int64_t j = 0; j < t.size(1); ++j) line += fmt::format(",{}[{}]", name, j);
    std::fprintf(rows, "%s\n", line.c_str());
    header = true;
  }
  for (int64_t i = 0; i < batch.size(); ++i) {
    std::string line = "\"" + batch.ids[static_cast<size_t>(i)] + "\"";
    for (const auto& [name, t] : flat) {
      const double* v = t.data_ptr<double>() + i * t.size(1);
      for (int64_t j = 0; j < t.size(1); ++j) line += fmt::format(",{:.6g}", v[j]);
    }
    std::fprintf(rows, "%s\n", line.c_str());
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
Trainer::Trainer(Config config, fs::path run_dir, Mode mode)
    : config_(std::move(config)), run_dir_(std::move(run_dir)), mode_(mode) {
  const bool resume = mode == Mode::resume;
  options_ = TrainOptions::from(config_.at("train"));
  env_ = DistributedEnv::from_environment();
  log::set_rank(env_.rank, env_.world_size);
  device_ = choose_device(options_.device, env_.local_rank);
  if (options_.threads > 0) torch::set_num_threads(options_.threads);
  seed_ = static_cast<uint64_t>(config_.get<int64_t>("seed", 0));
  const bool leader = env_.rank == 0 && mode != Mode::evaluate;

  if (leader) {
    fs::create_directories(run_dir_);
    log::open_file(run_dir_ / "log.txt");
    if (!resume) config_.save(run_dir_ / "config.yaml");
  }
  const std::string experiment = config_.get<std::string>("experiment", "(unnamed)");
  if (mode != Mode::evaluate) log::info("experiment {}, run directory {}", experiment, run_dir_.string());
  if (env_.enabled()) {
    group_ = ProcessGroup::create(env_, device_,
                                  std::chrono::milliseconds(static_cast<int64_t>(options_.dist_timeout_s * 1000)));
    log::info("distributed: rank {} of {}, device {}", env_.rank, env_.world_size, device_.str());
  }
  torch::manual_seed(seed_);

  // Data.
  const Config data = config_.at("data");
  train_set_ = data::open_dataset(data, data.get<std::string>("train_split", "train"));
  std::shared_ptr<data::Sampler> sampler =
      data.has("sampler") ? data::sampler_registry().create(data.at("sampler"), train_set_->size(), seed_)
                          : std::make_shared<data::RandomSampler>(train_set_->size(), seed_);
  data::LoaderOptions lo;
  lo.batch_size = data.get<int64_t>("batch_size");
  lo.workers = data.get<int>("workers", 2);
  lo.prefetch = data.get<int>("prefetch", 4);
  lo.drop_last = true;
  lo.rank = env_.rank;
  lo.world_size = env_.world_size;
  lo.pin_memory = device_.is_cuda();
  const auto on_error = data.get<std::string>("on_error", "fail");
  if (on_error != "fail" && on_error != "skip")
    fail("{}: data.on_error: expected fail or skip, got \"{}\"", data.where("on_error"), on_error);
  lo.on_error = on_error == "skip" ? data::OnError::skip : data::OnError::fail;
  lo.seed = seed_;
  if (data.has("transforms")) lo.transforms = data::build_transforms(data.at("transforms"));
  if (data.has("eval_transforms")) eval_transforms_ = data::build_transforms(data.at("eval_transforms"));
  loader_ = std::make_unique<data::Loader>(train_set_, sampler, lo);
  if (loader_->batches_per_epoch() < options_.grad_accum)
    fail("{}: data.batch_size: the train split has {} samples, fewer than one optimiser step needs",
         data.where("batch_size"), train_set_->size());

  // Model, loss, metrics.
  model_ = models::model_registry().create(config_.at("model"));
  if (const Config train_node = config_.at("train"); train_node.has("init_weights")) {
    if (mode == Mode::train) init_weights(*model_, train_node.at("init_weights"));
    else train_node.consume("init_weights");  // a resumed run restores its own weights
  }
  model_->to(device_);
  loss_ = losses::loss_registry().create(config_.at("loss"));
  loss_->prepare(*train_set_);
  if (config_.has("metrics")) {
    const Config list = config_.at("metrics");
    for (size_t i = 0; i < list.size(); ++i) {
      const Config entry = list.at(i);
      const std::string label = entry.get<std::string>("label", "");
      auto metric = metrics::metric_registry().create(entry);
      metrics_.push_back(label.empty() ? metric : std::make_shared<LabelledMetric>(label, std::move(metric)));
    }
  }

  // Optimiser and schedule.
  auto groups = make_param_groups(config_.at("optim"), *model_);
  base_lrs_ = base_learning_rates(groups);
  for (const auto& g : groups) params_.insert(params_.end(), g.params.begin(), g.params.end());
  optimizer_ = optimizer_registry().create(config_.at("optim"), groups);
  total_steps_ = options_.max_steps > 0 ? options_.max_steps
                                        : options_.max_epochs * (loader_->batches_per_epoch() / options_.grad_accum);
  const ScheduleSpan span{total_steps_, loader_->batches_per_epoch() / options_.grad_accum};
  schedule_ = config_.has("schedule") ? schedule_registry().create(config_.at("schedule"), span)
                                      : schedule_registry().create(Config::parse("name: constant"), span);
  if (options_.amp == "fp16") scaler_ = std::make_unique<GradScaler>(device_);
  if (group_ && options_.overlap_grad_reduce)
    reducer_ = std::make_unique<OverlappedGradientReducer>(*group_, params_, options_.bucket_mb << 20);

  // Evaluation data are built now so that every config key is read before the unused-key check.
  eval_split_ = data.get<std::string>("eval_split", "val");
  if (!metrics_.empty()) eval_set_ = data::open_dataset(data, eval_split_);
  eval_workers_ = lo.workers;
  if (config_.has("hooks")) {
    const Config list = config_.at("hooks");
    for (size_t i = 0; i < list.size(); ++i) hooks_.push_back(hook_registry().create(list.at(i)));
  }
  config_.check_unused();

  checkpoints_ = std::make_unique<CheckpointDir>(run_dir_ / "checkpoints", options_.keep_last);
  if (resume) {
    const auto last = checkpoints_->resolve("last");
    if (!last) fail("{}: nothing to resume, no checkpoints/last", run_dir_.string());
    restore(*last);
  } else if (group_ && mode == Mode::train) {
    group_->broadcast_module(*model_);
  }
  if (options_.ema_decay > 0 && ema_.empty())
    for (auto& [name, t] : module_state(*model_)) ema_[name] = t.clone();

  if (leader) {
    events_ = std::make_unique<tensorboard::EventWriter>(run_dir_);
    metrics_csv_ = std::fopen((run_dir_ / "metrics.csv").c_str(), "a");
    if (!metrics_csv_) fail("{}: cannot open for appending", (run_dir_ / "metrics.csv").string());
    if (std::ftell(metrics_csv_) == 0) std::fputs("step,epoch,name,value\n", metrics_csv_);
  }
  int64_t n_params = 0, n_trainable = 0;
  for (const auto& p : model_->parameters()) {
    n_params += p.numel();
    if (p.requires_grad()) n_trainable += p.numel();
  }
  log::info("model {}: {} parameters ({} trainable); {} train samples, {} steps of global batch {}",
            config_.get<std::string>("model.name"), n_params, n_trainable, train_set_->size(), total_steps_,
            lo.batch_size * options_.grad_accum);
}

Trainer::~Trainer() {
  if (metrics_csv_) std::fclose(metrics_csv_);
  if (mode_ != Mode::evaluate) log::close_file();
}

// ---------------------------------------------------------------------------------------------
RunResult Trainer::fit() {
  install_stop_signal_handlers();
  Progress progress(total_steps_, options_.log_every, env_.rank == 0);
  const int64_t per_step_samples = loader_->local_batch_size() * env_.world_size * options_.grad_accum;
  RunResult result;
  if (hook_request_.stop) {  // resumed after a hook stopped the run: it stays stopped
    log::info("the run had stopped ({}); nothing to resume", hook_request_.reason);
    result.step = step_;
    result.stopped_early = hook_request_.reason;
    return result;
  }
  bool saved_at_step = false;
  while (step_ < total_steps_) {
    loader_->start_epoch(epoch_, batch_in_epoch_);
    std::vector<data::Batch> micro;
    bool epoch_done = false;
    while (step_ < total_steps_) {
      auto batch = loader_->next();
      if (!batch) {
        epoch_done = true;
        break;
      }
      micro.push_back(batch->to(device_, /*non_blocking=*/device_.is_cuda()));
      batch_in_epoch_ = loader_->position();  // counts batches the loader skipped, too
      if (static_cast<int64_t>(micro.size()) < options_.grad_accum) continue;
      const StepOutcome outcome = train_step(micro);
      micro.clear();
      ++step_;
      saved_at_step = false;
      const double lr = optimizer_->param_groups()[0].options().get_lr();
      progress.update(step_, epoch_, outcome.loss, lr, per_step_samples);
      if (env_.rank == 0 && (step_ % options_.log_every == 0 || step_ == total_steps_)) {
        std::map<std::string, double> scalars = outcome.parts;
        scalars["loss"] = outcome.loss;
        scalars["lr"] = lr;
        log_scalars("train", scalars);
      }
      for (auto& h : hooks_) h->after_step(step_, outcome.loss, hook_request_);
      const bool eval_due = options_.eval_every > 0 && step_ % options_.eval_every == 0;
      bool is_best = false;
      if (eval_due && eval_set_) {
        progress.break_line();
        is_best = improves_with(evaluate(eval_split_));
      }
      const bool checkpoint_due = options_.checkpoint_every > 0 ? step_ % options_.checkpoint_every == 0 : eval_due;
      if (checkpoint_due || is_best) {
        save_checkpoint(is_best);
        saved_at_step = true;
      }
      if (hook_request_.stop) {  // hooks see the same values on every rank, so all stop together
        progress.break_line();
        if (!saved_at_step) save_checkpoint(false);
        log::info("{}", hook_request_.reason);
        result.step = step_;
        result.stopped_early = hook_request_.reason;
        result.last_eval = last_eval_;
        if (events_) events_->flush();
        return result;
      }
      const bool stop = group_ ? group_->any_rank(stop_signal() != 0) : stop_signal() != 0;
      if (stop) {
        progress.break_line();
        if (!saved_at_step) save_checkpoint(false);
        log::warn("stopped by signal at step {}; resume with: facet train --resume {}", step_, run_dir_.string());
        result.step = step_;
        result.interrupted = true;
        return result;
      }
    }
    if (epoch_done) {
      ++epoch_;
      batch_in_epoch_ = 0;
      if (options_.eval_every == 0 && step_ < total_steps_) {
        progress.break_line();
        bool is_best = eval_set_ ? improves_with(evaluate(eval_split_)) : false;
        save_checkpoint(is_best);
        saved_at_step = true;
      }
    }
  }
  progress.break_line();
  bool is_best = false;
  if (eval_set_ && !(options_.eval_every > 0 && step_ % options_.eval_every == 0)) is_best = improves_with(evaluate(eval_split_));
  if (!saved_at_step || is_best) save_checkpoint(is_best);
  if (skipped_steps_) log::warn("{} step(s) were skipped because of non-finite values", skipped_steps_);
  if (events_) events_->flush();
  result.step = step_;
  result.last_eval = last_eval_;
  return result;
}

Trainer::StepOutcome Trainer::train_step(std::vector<data::Batch>& micro_batches) {
  model_->train();
  StepOutcome outcome;
  const auto amp = parse_amp(options_.amp);
  bool local_non_finite = false;
  std::string bad_parts;
  for (size_t i = 0; i < micro_batches.size(); ++i) {
    data::Batch& batch = micro_batches[i];
    const bool last_micro_batch = i + 1 == micro_batches.size();
    losses::LossResult r;
    {
      AutocastGuard autocast(device_, amp);
      const TensorDict outputs = model_->forward(batch);
      r = (*loss_)(outputs, batch);
    }
    torch::Tensor scaled = r.total.to(torch::kFloat) / static_cast<double>(options_.grad_accum);
    if (scaler_) scaled = scaler_->scale(scaled);
    // Only the last micro-batch's backward communicates: earlier ones just accumulate locally.
    if (reducer_ && last_micro_batch) reducer_->arm();
    scaled.backward();
    if (reducer_ && last_micro_batch) reducer_->finish();
    const double value = r.total.item<double>();
    if (!std::isfinite(value)) {
      local_non_finite = true;
      for (const auto& [name, part] : r.parts)
        if (!std::isfinite(part.item<double>())) bad_parts += (bad_parts.empty() ? "" : ", ") + name;
    }
    outcome.loss += value / static_cast<double>(micro_batches.size());
    for (const auto& [name, part] : r.parts)
      outcome.parts[name] += part.item<double>() / static_cast<double>(micro_batches.size());
  }
  if (group_) {
    if (!reducer_) group_->allreduce_gradients(params_, options_.bucket_mb << 20);
    outcome.loss = group_->allreduce_mean(outcome.loss);
  }
  bool overflow = false;
  if (scaler_) overflow = scaler_->unscale_and_check(params_);
  // Gradients are identical on every rank after the all-reduce, so the norm is too; the loss is
  // not, so its verdict is reduced (every rank must take the same branch).
  std::vector<torch::Tensor> grads;
  for (const auto& p : params_)
    if (p.grad().defined()) grads.push_back(p.grad());
  const double norm = grads.empty() ? 0.0
                      : options_.clip_norm > 0 ? torch::nn::utils::clip_grad_norm_(params_, options_.clip_norm)
                                               : torch::stack(torch::_foreach_norm(grads)).norm().item<double>();
  bool non_finite = local_non_finite || (!std::isfinite(norm) && !overflow);
  if (group_) non_finite = group_->any_rank(non_finite);
  if (scaler_) scaler_->update(overflow);
  if (non_finite || overflow) {
    if (non_finite && options_.non_finite == "stop") {
      std::vector<std::string> bad;
      for (const auto& item : model_->named_parameters())
        if (item.value().grad().defined() && !torch::isfinite(item.value().grad()).all().item<bool>())
          bad.push_back(item.key());
      fail("step {}: non-finite {} (loss parts: {}); parameters with non-finite gradients: {}. "
           "Lower train.lr, enable train.clip_norm, or set train.non_finite: skip",
           step_ + 1, local_non_finite ? "loss" : "gradient norm", bad_parts.empty() ? "-" : bad_parts,
           bad.empty() ? "none" : join(bad));
    }
    if (non_finite) {
      ++skipped_steps_;
      log::warn("step {}: non-finite {} — step skipped (train.non_finite: skip)", step_ + 1,
                local_non_finite ? fmt::format("loss ({})", bad_parts.empty() ? "total" : bad_parts) : "gradients");
    }
    optimizer_->zero_grad();
    return outcome;
  }
  apply_learning_rates(*optimizer_, base_lrs_, *schedule_, step_);
  optimizer_->step();
  optimizer_->zero_grad();
  if (!ema_.empty()) ema_update();
  outcome.applied = true;
  return outcome;
}

// ---------------------------------------------------------------------------------------------
std::map<std::string, double> Trainer::evaluate(const std::string& split, const fs::path& predictions) {
  if (!eval_set_) fail("evaluation needs `metrics` in the config");
  const auto dataset = split == eval_split_ ? eval_set_ : data::open_dataset(config_.at("data"), split);
  std::FILE* rows = nullptr;
  if (!predictions.empty() && env_.rank == 0) {
    fs::create_directories(predictions.parent_path());
    rows = std::fopen(predictions.c_str(), "w");
    if (!rows) fail("{}: cannot write predictions", predictions.string());
  }
  bool header = false;
  torch::NoGradGuard no_grad;
  model_->eval();
  if (!ema_.empty()) swap_ema();
  for (auto& m : metrics_) {
    m->reset();
    m->prepare(*dataset);
  }
  data::LoaderOptions lo;
  lo.batch_size = loader_->local_batch_size() * env_.world_size;
  lo.workers = eval_workers_;
  lo.drop_last = false;
  lo.rank = env_.rank;
  lo.world_size = env_.world_size;
  lo.transforms = eval_transforms_;
  data::Loader loader(dataset, std::make_shared<data::SequentialSampler>(dataset->size()), lo);
  loader.start_epoch(0);
  const auto amp = parse_amp(options_.amp);
  // The first batch's images for log_images, with its multi-label truth and predictions if any.
  torch::Tensor shown, shown_truth, shown_predicted;
  while (auto batch = loader.next()) {
    if (!shown.defined() && options_.log_images > 0 && batch->fields.contains("image"))
      shown = batch->fields.at("image");
    const data::Batch b = batch->to(device_);
    AutocastGuard autocast(device_, amp);
    const TensorDict outputs = model_->forward(b);
    if (shown.defined() && !shown_truth.defined() && outputs.contains("logits") && b.fields.contains("labels") &&
        outputs.at("logits").sizes() == b.fields.at("labels").sizes()) {
      shown_truth = b.fields.at("labels").to(torch::kCPU, torch::kFloat).clone();
      if (b.fields.contains("label_mask")) shown_truth.masked_fill_(b.fields.at("label_mask").to(torch::kCPU) < 0.5, -1);
      shown_predicted = (torch::sigmoid(outputs.at("logits").to(torch::kFloat)) >= 0.5).to(torch::kCPU);
    }
    for (auto& m : metrics_) m->update(outputs, b);
    if (rows) write_prediction_rows(rows, header, outputs, b);
  }
  if (rows) std::fclose(rows);
  std::map<std::string, double> results;
  for (auto& m : metrics_) {
    if (group_) {
      torch::Tensor state = m->state().to(torch::kDouble).contiguous();
      group_->allreduce_sum_(state);
      m->load_state(state);
    }
    for (const auto& [name, value] : m->compute())
      if (!results.emplace(split + "/" + name, value).second)
        fail("metrics: two metrics report \"{}\"; give one of them a `label:` (its values become <label>/{})", name, name);
  }
  if (!ema_.empty()) swap_ema();
  model_->train();
  last_eval_ = results;
  for (auto& h : hooks_) h->after_eval(step_, results, hook_request_);
  if (env_.rank == 0) {
    std::string line;
    for (const auto& [name, value] : results) line += fmt::format("  {} {:.4f}", name, value);
    log::info("eval at step {}:{}", step_, line);
    std::map<std::string, double> plain;
    for (const auto& [name, value] : results) plain[name.substr(split.size() + 1)] = value;
    log_scalars(split, plain);
    if (shown.defined() && mode_ != Mode::evaluate) log_png(split + "/inputs", image_grid_png(shown, options_.log_images));
    if (shown_truth.defined())
      log_png(split + "/labels", labelled_grid_png(shown, shown_truth, shown_predicted, dataset->label_names(), options_.log_images));
  }
  return results;
}

void Trainer::load_weights(const fs::path& checkpoint) {
  const fs::path model_file = checkpoint / "model.safetensors";
  if (!fs::exists(model_file)) fail("{}: not a checkpoint directory (no model.safetensors)", checkpoint.string());
  safetensors::load_into(*model_, safetensors::load(model_file), {}, /*strict=*/true, model_file.string());
  if (options_.ema_decay > 0 && fs::exists(checkpoint / "ema.safetensors"))
    ema_ = checked_ema(safetensors::load(checkpoint / "ema.safetensors"), *model_, checkpoint / "ema.safetensors", device_);
  else
    ema_.clear();
  log::info("weights from {}{}", checkpoint.string(), ema_.empty() ? "" : " (evaluating the EMA weights)");
}

bool Trainer::improves_with(const std::map<std::string, double>& results) {
  if (options_.best_metric.empty()) return false;
  auto it = results.find(options_.best_metric);
  if (it == results.end()) {
    std::vector<std::string> names;
    for (const auto& [name, value] : results) names.push_back(name);
    fail("train.best_metric: \"{}\" is not among the evaluation results ({})", options_.best_metric, join(names));
  }
  const double v = it->second;
  const bool better = !best_ || (options_.best_mode == "max" ? v > *best_ : v < *best_);
  if (better) best_ = v;
  return better;
}

void Trainer::log_png(const std::string& tag, const Png& png) {
  if (events_) events_->add_image(tag, png.bytes, png.height, png.width, png.channels, step_);
  std::string name = tag;
  std::replace(name.begin(), name.end(), '/', '_');
  const fs::path file = mode_ == Mode::evaluate ? run_dir_ / "eval" / (name + ".png")
                                                : run_dir_ / "visuals" / fmt::format("{}_step{}.png", name, step_);
  fs::create_directories(file.parent_path());
  write_file_atomic(file, png.bytes);
}

void Trainer::log_scalars(const std::string& prefix, const std::map<std::string, double>& values) {
  for (const auto& [name, value] : values) {
    const std::string tag = prefix + "/" + name;
    if (events_) events_->add_scalar(tag, value, step_);
    if (metrics_csv_) std::fprintf(metrics_csv_, "%lld,%lld,%s,%.9g\n", static_cast<long long>(step_),
                                   static_cast<long long>(epoch_), tag.c_str(), value);
  }
  if (metrics_csv_) std::fflush(metrics_csv_);
}

void Trainer::ema_update() {
  torch::NoGradGuard no_grad;
  const double d = options_.ema_decay;
  for (auto& [name, t] : module_state(*model_)) {
    auto& e = ema_.at(name);
    if (t.is_floating_point()) e.mul_(d).add_(t, 1.0 - d);
    else e.copy_(t);
  }
}

void Trainer::swap_ema() {
  torch::NoGradGuard no_grad;
  for (auto& [name, t] : module_state(*model_)) {
    torch::Tensor tmp = t.clone();
    t.copy_(ema_.at(name));
    ema_.at(name).copy_(tmp);
  }
}

// ---------------------------------------------------------------------------------------------
void Trainer::save_checkpoint(bool is_best) {
  if (env_.rank != 0) return;
  CheckpointContents c;
  for (auto& [name, t] : module_state(*model_)) c.model[name] = t.cpu();
  for (auto& [name, t] : ema_) c.ema[name] = t.cpu();
  c.extra["rng.cpu"] = generator_state(at::detail::getDefaultCPUGenerator());
  // The generator of rank 0's own device. Every rank seeds alike and draws alike, so each rank's
  // device generator is in this state too (the other devices' generators of rank 0 never move).
  if (device_.is_cuda()) c.extra["rng.cuda"] = generator_state(at::globalContext().defaultGenerator(device_));
  if (scaler_) {
    c.extra["scaler.scale"] = scaler_->scale_tensor().cpu();
    c.extra["scaler.growth"] = scaler_->growth_tracker().cpu();
  }
  c.state = {{"step", step_},
             {"epoch", epoch_},
             {"batch_in_epoch", batch_in_epoch_},
             {"skipped_steps", skipped_steps_},
             {"sampler", loader_->sampler().state()},
             {"model", config_.at("model").dump()},
             {"world_size", env_.world_size}};
  if (best_) c.state["best"] = *best_;
  if (hook_request_.stop) c.state["stopped"] = hook_request_.reason;
  c.state["hooks"] = nlohmann::json::array();
  for (const auto& h : hooks_) c.state["hooks"].push_back(h->state());
  const fs::path where = checkpoints_->save(step_, c, *optimizer_, is_best);
  if (events_) events_->flush();
  log::info("checkpoint {}{}", where.string(), is_best ? " (best)" : "");
}

void Trainer::restore(const fs::path& checkpoint) {
  CheckpointContents c = CheckpointDir::load(checkpoint);
  const std::string saved_model = c.state.value("model", "");
  if (!saved_model.empty() && saved_model != config_.at("model").dump())
    fail("{}: was written with a different `model` config than {}; resume with the run's own config",
         checkpoint.string(), (run_dir_ / "config.yaml").string());
  safetensors::load_into(*model_, c.model, {}, /*strict=*/true, (checkpoint / "model.safetensors").string());
  CheckpointDir::load_optimizer(checkpoint, *optimizer_, device_);
  if (!c.ema.empty()) ema_ = checked_ema(c.ema, *model_, checkpoint / "ema.safetensors", device_);
  const auto extra = [&](const std::string& name) -> const torch::Tensor& {
    auto it = c.extra.find(name);
    if (it == c.extra.end()) fail("{}: has no tensor \"{}\"", (checkpoint / "rng.safetensors").string(), name);
    return it->second;
  };
  set_generator_state(at::detail::getDefaultCPUGenerator(), extra("rng.cpu"));
  if (device_.is_cuda()) {
    const auto it = c.extra.find("rng.cuda");
    if (it != c.extra.end()) set_generator_state(at::globalContext().defaultGenerator(device_), it->second);
    else log::warn("{}: no CUDA generator state; the GPU random streams restart", checkpoint.string());
  }
  if (scaler_ && c.extra.count("scaler.scale")) {
    scaler_->scale_tensor().copy_(extra("scaler.scale"));
    scaler_->growth_tracker().copy_(extra("scaler.growth"));
  }
  try {
    step_ = c.state.at("step").get<int64_t>();
    epoch_ = c.state.at("epoch").get<int64_t>();
    batch_in_epoch_ = c.state.at("batch_in_epoch").get<int64_t>();
    skipped_steps_ = c.state.value("skipped_steps", int64_t{0});
    if (c.state.contains("best")) best_ = c.state.at("best").get<double>();
    loader_->sampler().load_state(c.state.value("sampler", nlohmann::json::object()));
    const nlohmann::json hooks = c.state.value("hooks", nlohmann::json::array());
    if (hooks.size() == hooks_.size())
      for (size_t i = 0; i < hooks_.size(); ++i) hooks_[i]->load_state(hooks.at(i));
    else if (!hooks.empty())
      log::warn("{}: saved the state of {} hook(s), the config has {}; they start afresh", checkpoint.string(), hooks.size(),
                hooks_.size());
    if (c.state.contains("stopped")) {
      hook_request_.stop = true;
      hook_request_.reason = c.state.at("stopped").get<std::string>();
    }
  } catch (const nlohmann::json::exception& e) {
    fail("{}: corrupt: {}", (checkpoint / "state.json").string(), e.what());
  }
  log::info("resumed from {} at step {} (epoch {}, batch {})", checkpoint.string(), step_, epoch_, batch_in_epoch_);
}

}  // namespace facet::train
