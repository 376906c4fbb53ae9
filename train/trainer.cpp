#include "train/trainer.h"

#include "core/file_io.h"
#include "core/log.h"
#include "core/safetensors.h"
#include "core/tensorboard.h"
#include "core/text.h"
#include "data/pack.h"
#include "models/weights/converter.h"
#include "train/builder.h"
#include "train/checkpoint.h"
#include "train/hooks/builtin.h"
#include "train/memory_format.h"
#include "train/metric_table.h"
#include "train/optimization.h"

#include <algorithm>
#include <csignal>
#include <set>

namespace facet::train {
namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------
// Stop signals: the handler only records the signal; the training loop checkpoints and returns.
namespace {
std::atomic<int> g_stop_signal{0};
extern "C" void on_stop_signal(int signal) { g_stop_signal.store(signal); }

// Keys a resumed run may change: they do not alter what is computed, or (the run length) the
// change is stated when the run resumes.
const std::set<std::string> kResumeMayChange = {
    "train.max_steps", "train.max_epochs", "train.log_every", "train.eval_every", "train.checkpoint_every",
    "train.keep_last", "train.log_images", "train.dist_timeout_s", "train.threads", "data.workers", "data.prefetch"};

// Every scalar of a config tree by dotted key ("data.transforms[1].size" → "32").
void flatten(const Config& node, const std::string& key, std::map<std::string, std::string>& out) {
  if (node.is_map()) {
    for (const auto& k : node.keys()) flatten(node.child(k), key.empty() ? k : key + "." + k, out);
  } else if (node.is_list()) {
    for (size_t i = 0; i < node.size(); ++i) flatten(node.at(i), fmt::format("{}[{}]", key, i), out);
    if (node.size() == 0) out[key] = "[]";
  } else {
    out[key] = node.is_null() ? "~" : node.dump_inline();
  }
}

std::map<std::string, std::string> flat_config(const std::string& yaml) {
  std::map<std::string, std::string> out;
  flatten(Config::parse(yaml), "", out);
  return out;
}

// A new run never writes into another run's directory: its rows in metrics.csv and its checkpoints
// would mix with ours, and a resume could continue the other run.
void refuse_existing_run(const fs::path& dir) {
  for (const char* file : {"config.yaml", "metrics.csv", "checkpoints"})
    if (fs::exists(dir / file))
      fail("{}: already holds a run ({} exists); continue it with `facet train --resume {}`, or choose another "
           "--run-dir",
           dir.string(), file, dir.string());
}

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
Trainer::Trainer(Config config, fs::path run_dir, Mode mode) : config_(std::move(config)), run_dir_(std::move(run_dir)) {
  build(mode);
}

Trainer::~Trainer() {
  if (metrics_csv_) std::fclose(metrics_csv_);
  if (events_ || metrics_csv_) log::close_file();
}

void Trainer::build(Mode mode) {
  const bool resume = mode == Mode::resume, check = mode == Mode::check;
  experiment_ = config_.get<std::string>("experiment", "(unnamed)");
  options_ = TrainOptions::from(config_.at("train"));
  runtime_ = make_runtime(config_, options_, /*connect=*/!check);
  torch::manual_seed(runtime_.seed);  // the model's initialisation
  build_data();
  build_model_and_step(mode);
  build_optimizations();
  find_frozen();
  if (options_.cuda_graph) build_cuda_graph();
  if (config_.has("metrics")) {
    evaluator_ = std::make_unique<Evaluator>(config_, config_.get<std::string>("data.eval_split", "val"), runtime_, options_,
                                             *model_);
    test_split_ = config_.get<std::string>("data.test_split", "");
    if (test_split_ == evaluator_->split())
      fail("{}: data.test_split is the evaluation split \"{}\"; name the held-out split (or drop the key)",
           config_.where("data.test_split"), test_split_);
    if (!test_split_.empty()) data::open_dataset(config_.at("data"), test_split_);  // fails now, not after training
  } else {  // no evaluation during training; `facet eval` and `facet predict` read these
    for (const char* key : {"eval_split", "test_split", "eval_transforms", "eval_batch_size", "visualizer"})
      if (config_.at("data").has(key)) config_.at("data").consume(key);
    if (config_.has("visualizer")) config_.consume("visualizer");
  }
  build_hooks();
  check_metric_names();
  config_.check_unused();
  if (check) return;

  // Only a config that built completely gets a run directory.
  if (runtime_.leader()) {
    if (!resume) refuse_existing_run(run_dir_);
    fs::create_directories(run_dir_);
    log::open_file(run_dir_ / "log.txt");
  }
  checkpoints_ = std::make_unique<CheckpointDir>(run_dir_ / "checkpoints", options_.keep_last);
  if (resume) {
    const auto last = checkpoints_->latest_complete();
    if (!last) fail("{}: nothing to resume, no complete checkpoint in checkpoints/", run_dir_.string());
    restore(*last);
  } else if (runtime_.group) {
    runtime_.group->broadcast_module(*model_);
  }
  open_run_files(resume);
  int64_t n_params = 0, n_trainable = 0;
  for (const auto& p : model_->parameters()) {
    n_params += p.numel();
    if (p.requires_grad()) n_trainable += p.numel();
  }
  log::info("model {}: {} parameters ({} trainable); {} train samples, {} steps of global batch {}",
            config_.get<std::string>("model.name"), n_params, n_trainable, train_set_->size(), state_.total_steps,
            loader_->options().batch_size * options_.grad_accum);
}

void Trainer::build_data() {
  const Config data = config_.at("data");
  train_set_ = data::open_dataset(data, data.get<std::string>("train_split", "train"));
  auto sampler = build_sampler(data, train_set_->size(), runtime_.seed);
  const data::LoaderOptions lo = train_loader_options(data, runtime_);
  sampler->set_batch_size(lo.batch_size);
  adaptive_sampler_ = sampler->uses_feedback();
  loader_ = std::make_unique<data::Loader>(train_set_, sampler, lo);
  prefetcher_ = std::make_unique<DevicePrefetcher>(
      *loader_, PrefetchOptions{runtime_.device, options_.channels_last, options_.prefetch_to_device});
  state_.steps_per_epoch = loader_->batches_per_epoch() / options_.grad_accum;
  if (state_.steps_per_epoch < 1)
    fail("{}: data.batch_size: the train split has {} samples, fewer than one optimiser step needs ({} x {})",
         data.where("batch_size"), train_set_->size(), lo.batch_size, options_.grad_accum);
  state_.total_steps = options_.max_steps > 0 ? options_.max_steps : options_.max_epochs * state_.steps_per_epoch;
  try {  // what `facet predict` converts images to; a sample that fails to load is reported by the loader
    const data::Sample first = train_set_->get(0, 0);
    if (first.fields.contains("image")) image_channels_ = first.fields.at("image").size(0);
  } catch (const std::exception&) {
  }
}

void Trainer::build_cuda_graph() {
  const Config train = config_.at("train");
  if (!runtime_.device.is_cuda())
    fail("{}: train.cuda_graph: CUDA graphs need a CUDA device, and this run is on {} (set train.cuda_graph: false)",
         train.where("cuda_graph"), runtime_.device.str());
  const auto step = config_.get<std::string>("step.name", "supervised");
  if (step != "supervised")
    fail("{}: train.cuda_graph: only the supervised step runs through CUDA graphs; step {} does not (set "
         "train.cuda_graph: false)",
         train.where("cuda_graph"), step);
  // The graph sees the batch's fields; its ids and indices (host data) come from the batch captured.
  graph_ = std::make_unique<GraphedFunction>(
      [this](const TensorDict& fields) {
        data::Batch b;
        b.fields = fields;
        b.ids = graph_batch_->ids;
        b.indices = graph_batch_->indices;
        Outputs out = model_->forward(b);
        if (!out.ragged.empty() || !out.text.empty())
          fail("train.cuda_graph: model {} returns per-sample outputs or text; a CUDA graph captures fixed-shape tensors "
               "only (set train.cuda_graph: false)",
               config_.get<std::string>("model.name"));
        return static_cast<TensorDict>(out);
      },
      model_->parameters(), model_.get());
}

Outputs Trainer::forward(const data::Batch& batch) {
  if (!graph_ || !model_->is_training()) return model_->forward(batch);
  if (!batch.ragged.empty() || !batch.text.empty())
    fail("train.cuda_graph: the batch has per-sample fields or text ({}); a CUDA graph captures fixed-shape tensors only "
         "(set train.cuda_graph: false)",
         batch.ragged.empty() ? batch.text.begin()->first : batch.ragged.begin()->first);
  graph_batch_ = &batch;
  auto out = (*graph_)(batch.fields);
  graph_batch_ = nullptr;
  if (out) return Outputs(std::move(*out));
  if (!graph_fallback_logged_) {
    log::info("train.cuda_graph: a batch of {} samples has other shapes than the captured ones and runs eagerly "
              "(logged once)", batch.size());
    graph_fallback_logged_ = true;
  }
  return model_->forward(batch);
}

void Trainer::build_model_and_step(Mode mode) {
  model_ = build_model(config_, options_, runtime_.device);
  if (options_.channels_last) use_channels_last(*model_);
  if (mode == Mode::train) init_weights_record_ = load_init_weights(config_, *model_);
  else if (config_.at("train").has("init_weights")) config_.at("train").consume("init_weights");  // the checkpoint has them
  step_ = step_registry().create(config_.has("step") ? config_.at("step") : Config::parse("name: supervised"), *model_);
  if (step_->uses_loss()) {
    loss_ = losses::loss_registry().create(config_.at("loss"));
    loss_->prepare(*train_set_);
  } else if (config_.has("loss")) {
    fail("{}: loss: the {} step computes its losses itself; remove `loss`", config_.where("loss"),
         config_.get<std::string>("step.name"));
  }
}

// `optim` (+ `schedule`) for steps with one optimiser, else `optimizers.<name>` (+ `schedules.<name>`).
void Trainer::build_optimizations() {
  const ScheduleSpan span{state_.total_steps, state_.steps_per_epoch};
  const OptimizationSettings settings{options_.amp, options_.grad_accum, options_.clip_norm, options_.overlap_grad_reduce,
                                      options_.bucket_mb << 20};
  const auto names = step_->optimizers();
  std::map<const void*, std::string> owner;
  for (const auto& name : names) {
    const bool single = names.size() == 1 && name == "main";
    const Config node = single ? config_.at("optim") : config_.at("optimizers").at(name);
    std::optional<Config> schedule;
    if (single && config_.has("schedule")) schedule = config_.at("schedule");
    if (!single && config_.has("schedules") && config_.at("schedules").has(name)) schedule = config_.at("schedules").at(name);
    optimizations_.push_back(std::make_unique<Optimization>(name, node, schedule ? &*schedule : nullptr, *model_, span,
                                                            settings, runtime_.device, runtime_.group.get()));
    for (const auto& p : optimizations_.back()->params()) {
      auto [it, fresh] = owner.emplace(p.unsafeGetTensorImpl(), name);
      if (!fresh)
        fail("{}: optimisers \"{}\" and \"{}\" both train the same parameter; give each its own `params` patterns",
             node.where(), it->second, name);
    }
  }
  // A parameter that no optimiser's `params` selects is frozen: no gradient is computed for it (the
  // 1 B parameters of Stable Diffusion when only its cross-attention K/V train), and checkpoints
  // reference it instead of re-saving it (find_frozen).
  std::vector<std::string> unowned;
  int64_t count = 0;
  for (auto& p : model_->named_parameters())
    if (p.value().requires_grad() && !owner.count(p.value().unsafeGetTensorImpl())) {
      p.value().set_requires_grad(false);
      unowned.push_back(p.key());
      count += p.value().numel();
    }
  if (!unowned.empty())
    log::info("frozen because no optimiser's params select them: {} parameters in {}", count, models::summarize_names(unowned));
}

// Modules with parameters, all frozen, run in eval mode (BatchNorm statistics stay put). Their
// buffers and every frozen parameter are "frozen tensors": a checkpoint does not re-save those that
// came from an init_weights file, it references the file.
void Trainer::find_frozen() {
  for (const auto& p : model_->named_parameters())
    if (!p.value().requires_grad()) frozen_tensors_.insert(p.key());
  for (const auto& item : model_->named_modules("", /*include_self=*/false)) {
    const auto params = item.value()->parameters();
    if (params.empty() || std::any_of(params.begin(), params.end(), [](const torch::Tensor& p) { return p.requires_grad(); }))
      continue;
    frozen_modules_.push_back(item.value().get());
    for (const auto& b : item.value()->named_buffers()) frozen_tensors_.insert(item.key() + "." + b.key());
  }
}

void Trainer::build_hooks() {
  add_hook(make_logging_hook(options_));
  if (options_.ema_decay > 0) add_hook(make_ema_hook(options_.ema_decay));
  if (adaptive_sampler_) add_hook(make_curriculum_hook());
  if (evaluator_) add_hook(make_evaluation_hook(options_));
  add_hook(make_checkpoint_hook(options_));
  for (auto& h : build_configured_hooks(config_)) add_hook(std::move(h));
}

// A best_metric or hook that names a result the evaluation does not report would otherwise stop
// the run at its first evaluation, maybe hours in.
void Trainer::check_metric_names() {
  std::vector<std::pair<std::string, std::string>> read;  // (result, where the config names it)
  if (!options_.best_metric.empty())
    read.emplace_back(options_.best_metric, fmt::format("{}: train.best_metric", config_.where("train.best_metric")));
  for (const auto& h : hooks_)
    for (auto& r : h->metrics_read()) read.push_back(std::move(r));
  if (read.empty()) return;
  if (!evaluator_) {  // e.g. `metrics` dropped to train without evaluating
    log::warn("{}: reads the evaluation result \"{}\", but the config has no `metrics`: nothing is evaluated", read[0].second,
              read[0].first);
    return;
  }
  const auto names = evaluator_->result_names();
  if (!names) return;  // a metric cannot name its results before it has seen samples
  for (const auto& [result, where] : read) {
    if (std::find(names->begin(), names->end(), result) != names->end()) continue;
    // A close spelling, or else a result ending in the same last two parts ("/f1/macro").
    std::optional<std::string> near = closest_match(result, *names);
    const size_t last = result.rfind('/');
    const size_t cut = last == std::string::npos || last == 0 ? std::string::npos : result.rfind('/', last - 1);
    const std::string tail = cut == std::string::npos ? "" : result.substr(cut);
    for (const auto& n : *names)
      if (!near && !tail.empty() && n.ends_with(tail)) near = n;
    std::vector<std::string> shown(names->begin(), names->begin() + std::min<size_t>(names->size(), 12));
    if (names->size() > shown.size()) shown.push_back(fmt::format("... {} in all", names->size()));
    fail("{}: \"{}\" is not among the results of the evaluation on \"{}\" ({}){}", where, result, evaluator_->split(),
         join(shown), near ? fmt::format("; did you mean {}?", *near) : "");
  }
}

void Trainer::open_run_files(bool resume) {
  if (!runtime_.leader()) return;
  // On a resume too: a longer run asked for on the command line stays asked for at the next resume.
  config_.save(run_dir_ / "config.yaml");
  log::info("experiment {}, run directory {}", experiment_, run_dir_.string());
  const fs::path csv = run_dir_ / "metrics.csv";
  if (resume && fs::exists(csv)) {
    // Rows written after the checkpoint we resume from would otherwise appear twice: the checkpoint
    // counts the rows before it (an evaluation logged after the checkpoint of its step runs again);
    // for an older checkpoint without the count, rows of later steps go.
    std::string kept, line;
    const std::string text = read_file(csv);
    const int64_t rows_before = metrics_rows_;
    metrics_rows_ = 0;
    size_t at = 0;
    while (at < text.size()) {
      const size_t end = std::min(text.find('\n', at), text.size());
      line = text.substr(at, end - at);
      at = end + 1;
      const size_t comma = line.find(',');
      bool keep = comma == std::string::npos || line.rfind("step,", 0) == 0;
      if (!keep && rows_before >= 0) {
        keep = metrics_rows_ < rows_before && end < text.size();  // a torn last line of a killed run goes
      } else if (!keep) {
        try {
          keep = std::stoll(line.substr(0, comma)) <= state_.step;
        } catch (const std::exception&) {
          keep = false;  // a torn last line of a killed run
        }
      }
      if (keep && comma != std::string::npos && line.rfind("step,", 0) != 0) ++metrics_rows_;
      if (keep) kept += line + "\n";
    }
    write_file_atomic(csv, kept);
  } else {
    metrics_rows_ = 0;
  }
  events_ = std::make_unique<tensorboard::EventWriter>(run_dir_);
  if (resume) events_->add_session_start(state_.step + 1);
  metrics_csv_ = std::fopen(csv.c_str(), "a");
  if (!metrics_csv_) fail("{}: cannot open for appending", csv.string());
  if (std::ftell(metrics_csv_) == 0) std::fputs("step,epoch,name,value\n", metrics_csv_);
}

// ---------------------------------------------------------------------------------------------
losses::Loss& Trainer::loss() {
  if (!loss_) fail("this run's step ({}) has no `loss`", config_.get<std::string>("step.name", "supervised"));
  return *loss_;
}

Optimization& Trainer::optimization(const std::string& name) {
  for (auto& o : optimizations_)
    if (o->name() == name) return *o;
  fail("no optimiser named \"{}\"", name);
}

void Trainer::begin_micro_batch(const data::Batch& batch, int64_t index, uint64_t phase) {
  // The micro-batch's place among all micro-batches of the step over all ranks: on one rank with
  // accumulation and on several ranks the same samples get the same random draws.
  const auto shard = static_cast<uint64_t>(index * runtime_.world_size() + runtime_.env.rank);
  seed_random_streams(runtime_, static_cast<uint64_t>(state_.step), shard, phase);
  for_hooks([&](Hook& h) { h.before_micro_batch(*this, batch, index); });
}

void Trainer::end_micro_batch(const MicroBatch& micro) {
  for_hooks([&](Hook& h) { h.after_micro_batch(*this, micro); });
}

void Trainer::train_mode() {
  model_->train();
  for (auto* m : frozen_modules_) m->eval();
}

bool Trainer::any_rank_empty(const std::vector<data::Batch>& micro_batches) {
  bool empty = std::any_of(micro_batches.begin(), micro_batches.end(), [](const data::Batch& b) { return b.size() == 0; });
  if (runtime_.group && loader_->options().on_error == data::OnError::skip) empty = runtime_.group->any_rank(empty);
  return empty;
}

void Trainer::gather_per_sample(StepResult& result) {
  if (!result.indices.defined()) return;
  if (auto* group = runtime_.group.get()) {
    result.indices = group->allgather_varying(result.indices);
    result.per_sample = group->allgather_varying(result.per_sample);
  }
}

void Trainer::add_hook(std::shared_ptr<Hook> hook) {
  for (const auto& h : hooks_)
    if (h->name() == hook->name()) fail("hooks: two hooks named \"{}\"; give one a `label`", hook->name());
  wants_per_sample_ = wants_per_sample_ || hook->wants_per_sample();
  // Ascending priority; among equals, the order they were added.
  const auto at = std::upper_bound(hooks_.begin(), hooks_.end(), hook->priority(),
                                   [](int p, const std::shared_ptr<Hook>& h) { return p < h->priority(); });
  if (restored_) hook->on_restore(*this, *restored_);  // added to a resumed run after the build
  hooks_.insert(at, std::move(hook));
}

void Trainer::request_stop(std::string reason) {
  if (stop_reason_.empty()) stop_reason_ = std::move(reason);
}

// ---------------------------------------------------------------------------------------------
RunResult Trainer::fit() {
  install_stop_signal_handlers();
  restored_.reset();
  RunResult result;
  if (!stop_reason_.empty()) {  // resumed after a hook stopped the run: it stays stopped
    log::info("the run had stopped ({}); nothing to resume", stop_reason_);
    result.step = state_.step;
    result.stopped_early = stop_reason_;
    result.last_eval = last_eval_;  // the evaluation before the stop, from the checkpoint
    return result;
  }
  for_hooks([&](Hook& h) { h.before_train(*this); });
  std::vector<int64_t> order = std::move(resumed_order_);
  while (state_.step < state_.total_steps && stop_reason_.empty()) {
    loader_->start_epoch(state_.epoch, state_.batch_in_epoch, std::move(order));
    prefetcher_->restart();
    order.clear();
    std::vector<data::Batch> micro;
    bool epoch_done = false;
    while (state_.step < state_.total_steps && stop_reason_.empty()) {
      auto batch = prefetcher_->next();
      if (!batch) {
        epoch_done = true;
        break;
      }
      micro.push_back(std::move(batch->device));
      state_.batch_in_epoch = batch->position;  // counts batches the loader skipped, too
      if (static_cast<int64_t>(micro.size()) < options_.grad_accum) continue;
      if (any_rank_empty(micro)) {
        log::warn("step {}: a micro-batch of some rank has no sample that loaded; every rank skips these batches",
                  state_.step + 1);
        micro.clear();
        continue;
      }
      train_mode();
      StepResult r = step_->run(*this, micro);
      micro.clear();
      ++state_.step;
      if (r.non_finite) ++state_.skipped_steps;
      if (wants_per_sample_) gather_per_sample(r);
      for_hooks([&](Hook& h) { h.after_step(*this, r); });
      const bool signalled = runtime_.group ? runtime_.group->any_rank(stop_signal() != 0) : stop_signal() != 0;
      if (signalled) {
        if (last_saved_step_ != state_.step) save_checkpoint(false);
        log::warn("stopped by signal at step {}; resume with: facet train --resume {}", state_.step, run_dir_.string());
        result.step = state_.step;
        result.interrupted = true;
        return result;
      }
    }
    if (epoch_done) {
      ++state_.epoch;
      state_.batch_in_epoch = 0;
      for_hooks([&](Hook& h) { h.after_epoch(*this); });
    }
  }
  if (!stop_reason_.empty()) {  // hooks see the same values on every rank, so all stop together
    if (last_saved_step_ != state_.step) save_checkpoint(false);
    log::info("{}", stop_reason_);
    result.stopped_early = stop_reason_;
  } else {
    for_hooks([&](Hook& h) { h.after_train(*this); });
  }
  if (events_) events_->flush();
  result.step = state_.step;
  result.last_eval = last_eval_;
  return result;
}

// ---------------------------------------------------------------------------------------------
EvalResults Trainer::evaluate() {
  if (!evaluator_) fail("evaluation needs `metrics` in the config");
  for_hooks([&](Hook& h) { h.before_eval(*this); });
  model_->eval();
  EvalOutput out = evaluator_->run(*model_);
  train_mode();
  last_eval_ = out.metrics;
  report_eval(out, evaluator_->split(), fmt::format("eval at step {}", state_.step));
  for_hooks([&](Hook& h) { h.after_eval(*this, out.metrics); });
  return out.metrics;
}

EvalResults Trainer::test() {
  if (test_split_.empty()) return {};
  // The best checkpoint's weights; without one the last step's — its EMA, as every evaluation uses.
  const bool ema = options_.ema_decay > 0;
  std::optional<fs::path> weights = checkpoints_ ? checkpoints_->resolve("best") : std::nullopt;
  if (!weights && ema && checkpoints_) weights = checkpoints_->resolve("last");
  // Rank 0 wrote the checkpoints: it loads them and sends the weights, so ranks on machines that
  // do not share its disk test the same model.
  if (weights && runtime_.leader()) load_checkpoint_weights(*model_, *weights, ema, runtime_.device);
  if (runtime_.group) runtime_.group->broadcast_module(*model_);
  log::info("test split \"{}\" with the {}weights of {}", test_split_, ema ? "EMA " : "",
            weights ? weights->string() : "the last step");
  Evaluator tester(config_, test_split_, runtime_, options_, *model_);
  model_->eval();
  EvalOutput out = tester.run(*model_);
  train_mode();
  report_eval(out, test_split_, "test");
  return out.metrics;
}

void Trainer::report_eval(const EvalOutput& out, const std::string& split, const std::string& what) {
  if (!runtime_.leader()) return;
  const std::string headline = headline_line(arrange_metrics(out.metrics, split), split);
  log::info("{}: {}", what, !headline.empty() ? headline : out.pictures.empty() ? "no metrics" : "no metrics; pictures in visuals/");
  std::map<std::string, double> plain;
  for (const auto& [name, value] : out.metrics) plain[name.substr(split.size() + 1)] = value;
  log_scalars(split, plain);
  for (const auto& [tag, png] : out.pictures) log_picture(tag, png);
}

void Trainer::log_picture(const std::string& tag, const Png& png) {
  if (events_) events_->add_image(tag, png.bytes, png.height, png.width, png.channels, state_.step);
  std::string name = tag;
  std::replace(name.begin(), name.end(), '/', '_');
  const fs::path file = run_dir_ / "visuals" / fmt::format("{}_step{}.png", name, state_.step);
  fs::create_directories(file.parent_path());
  write_file_atomic(file, png.bytes);
}

void Trainer::log_scalars(const std::string& prefix, const std::map<std::string, double>& values) {
  for (const auto& [name, value] : values) {
    const std::string tag = prefix + "/" + name;
    if (events_) events_->add_scalar(tag, value, state_.step);
    if (metrics_csv_) {
      std::fprintf(metrics_csv_, "%lld,%lld,%s,%.9g\n", static_cast<long long>(state_.step),
                   static_cast<long long>(state_.epoch), tag.c_str(), value);
      ++metrics_rows_;
    }
  }
  if (metrics_csv_) std::fflush(metrics_csv_);
}

// ---------------------------------------------------------------------------------------------
void Trainer::save_checkpoint(bool is_best) {
  last_saved_step_ = state_.step;
  if (!runtime_.leader()) return;
  CheckpointContents c;
  // What trains is saved; frozen tensors that came from an init_weights file are referenced instead.
  nlohmann::json frozen_weights = nlohmann::json::array();
  std::set<std::string> referenced;
  for (const auto& record : init_weights_record_) {
    std::vector<std::string> tensors = record.at("tensors").get<std::vector<std::string>>();
    if (std::none_of(tensors.begin(), tensors.end(), [&](const std::string& t) { return frozen_tensors_.count(t) > 0; }))
      continue;
    frozen_weights.push_back(record);
    for (const auto& t : tensors)
      if (frozen_tensors_.count(t)) referenced.insert(t);
  }
  for (const auto& p : model_->named_parameters())
    if (!referenced.count(p.key())) c.model[p.key()] = p.value().detach().cpu();
  for (const auto& b : model_->named_buffers())
    if (!referenced.count(b.key())) c.model[b.key()] = b.value().detach().cpu();
  auto& trainer_file = c.files["trainer.safetensors"];
  trainer_file["format"] = torch::tensor({1}, torch::kInt32);
  for (auto& o : optimizations_) {
    c.optimizers[o->name()] = &o->optimizer();
    if (auto* scaler = o->scaler()) {
      trainer_file["scaler." + o->name() + ".scale"] = scaler->scale_tensor().cpu();
      trainer_file["scaler." + o->name() + ".growth"] = scaler->growth_tracker().cpu();
    }
  }
  // Mid-epoch, the epoch's order (an adaptive sampler drew it from feedback since changed). At an
  // epoch's end none: the next epoch's order is drawn on resume, from the sampler state saved here.
  if (adaptive_sampler_)
    trainer_file["loader.order"] = state_.batch_in_epoch > 0 ? torch::tensor(loader_->epoch_order(), torch::kInt64)
                                                              : torch::empty({0}, torch::kInt64);
  c.state = {{"step", state_.step},
             {"epoch", state_.epoch},
             {"batch_in_epoch", state_.batch_in_epoch},
             {"skipped_steps", state_.skipped_steps},
             {"sampler", loader_->sampler().state()},
             {"config", config_.dump()},
             {"world_size", runtime_.world_size()},
             {"label_names", train_set_->label_names()},
             {"image_channels", image_channels_},
             {"init_weights", init_weights_record_},
             {"frozen_weights", frozen_weights},
             {"hooks", nlohmann::json::object()},
             {"last_eval", metrics_to_json(last_eval_)},
             {"metrics_csv_rows", metrics_rows_},
             {"saved_as_best", is_best}};
  if (!stop_reason_.empty()) c.state["stopped"] = stop_reason_;
  for_hooks([&](Hook& h) { h.on_save(*this, c); });
  const fs::path where = checkpoints_->save(state_.step, c, is_best);
  if (events_) events_->flush();
  log::info("checkpoint {}{}", where.string(), is_best ? " (best)" : "");
}

void Trainer::check_resumable(const nlohmann::json& saved) const {
  const std::string saved_config = saved.value("config", "");
  if (saved_config.empty())
    fail("{}: the checkpoint records no config (written by an older Facet); it cannot be resumed exactly",
         run_dir_.string());
  const auto before = flat_config(saved_config), now = flat_config(config_.dump());
  std::vector<std::string> refused, reinterpreted;
  std::set<std::string> keys;
  for (const auto& [k, v] : before) keys.insert(k);
  for (const auto& [k, v] : now) keys.insert(k);
  for (const auto& k : keys) {
    const auto a = before.find(k), b = now.find(k);
    const std::string was = a == before.end() ? "(absent)" : a->second, is = b == now.end() ? "(absent)" : b->second;
    if (was == is) continue;
    const std::string line = fmt::format("{}: {} -> {}", k, was, is);
    (kResumeMayChange.count(k) ? reinterpreted : refused).push_back(line);
  }
  const int saved_world = saved.value("world_size", 1);
  if (saved_world != runtime_.world_size())
    refused.push_back(fmt::format("world size: {} -> {} (each rank's share of a batch, and its random draws, would change)",
                                  saved_world, runtime_.world_size()));
  if (!refused.empty())
    fail("{}: cannot resume exactly with a different setup; it differs from the checkpoint in:\n  {}\n"
         "Start a new run (with train.init_weights from this checkpoint) for a different experiment.",
         run_dir_.string(), join(refused, "\n  "));
  for (const auto& line : reinterpreted) log::info("resuming with {}", line);
  if (std::any_of(reinterpreted.begin(), reinterpreted.end(),
                  [](const std::string& l) { return l.rfind("train.max_", 0) == 0; }))
    log::warn("the run length changed: it now ends at step {}; schedules that depend on the length (cosine, poly) are "
              "stretched from here on",
              state_.total_steps);
}

void Trainer::restore(const fs::path& checkpoint) {
  CheckpointContents c = CheckpointDir::load(checkpoint);
  check_resumable(c.state);
  load_checkpoint_model(*model_, c.model, c.state, checkpoint);
  for (auto& o : optimizations_) CheckpointDir::load_optimizer(checkpoint, o->name(), o->optimizer(), runtime_.device);
  const auto& trainer_file = c.files["trainer.safetensors"];
  const auto tensor = [&](const std::string& name) -> const torch::Tensor& {
    auto it = trainer_file.find(name);
    if (it == trainer_file.end()) fail("{}: has no tensor \"{}\"", (checkpoint / "trainer.safetensors").string(), name);
    return it->second;
  };
  for (auto& o : optimizations_)
    if (auto* scaler = o->scaler()) {
      scaler->scale_tensor().copy_(tensor("scaler." + o->name() + ".scale"));
      scaler->growth_tracker().copy_(tensor("scaler." + o->name() + ".growth"));
    }
  if (adaptive_sampler_) {
    const torch::Tensor order = tensor("loader.order").to(torch::kLong).contiguous();
    resumed_order_.assign(order.data_ptr<int64_t>(), order.data_ptr<int64_t>() + order.numel());
  }
  try {
    state_.step = c.state.at("step").get<int64_t>();
    state_.epoch = c.state.at("epoch").get<int64_t>();
    state_.batch_in_epoch = c.state.at("batch_in_epoch").get<int64_t>();
    state_.skipped_steps = c.state.value("skipped_steps", int64_t{0});
    init_weights_record_ = c.state.value("init_weights", nlohmann::json::array());
    loader_->sampler().load_state(c.state.value("sampler", nlohmann::json::object()));
    if (c.state.contains("stopped")) stop_reason_ = c.state.at("stopped").get<std::string>();
    if (c.state.contains("last_eval")) last_eval_ = metrics_from_json(c.state.at("last_eval"), (checkpoint / "state.json").string());
    metrics_rows_ = c.state.value("metrics_csv_rows", int64_t{-1});
  } catch (const nlohmann::json::exception& e) {
    fail("{}: corrupt: {}", (checkpoint / "state.json").string(), e.what());
  }
  last_saved_step_ = state_.step;
  // A crash between a save and its links left `last` (and `best`) on the checkpoint before.
  if (runtime_.leader()) checkpoints_->relink(checkpoint, c.state.value("saved_as_best", false));
  for_hooks([&](Hook& h) { h.on_restore(*this, c); });
  c.model.clear();
  restored_ = std::move(c);
  log::info("resumed from {} at step {} (epoch {}, batch {})", checkpoint.string(), state_.step, state_.epoch,
            state_.batch_in_epoch);
}

}  // namespace facet::train
