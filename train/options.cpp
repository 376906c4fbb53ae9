#include "train/options.h"

#include "models/build.h"

#include <cmath>
#include <limits>

namespace facet::train {

namespace {

// A number of `t` that must be finite and within [lo, hi]; the error names the file, line and key.
template <class T>
T bounded(const Config& t, const std::string& key, T fallback, T lo, T hi, const char* expected) {
  const T v = t.get<T>(key, fallback);
  bool ok = v >= lo && v <= hi;
  if constexpr (std::is_floating_point_v<T>) ok = ok && std::isfinite(v);
  if (!ok) fail("{}: {}: expected {}, got {}", t.where(key), t.full_key(key), expected, v);
  return v;
}

constexpr int64_t kMaxInt = std::numeric_limits<int64_t>::max();

}  // namespace

std::optional<torch::ScalarType> parse_amp(const std::string& amp) {
  if (amp == "none" || amp.empty()) return std::nullopt;
  if (amp == "bf16") return torch::kBFloat16;
  if (amp == "fp16") return torch::kHalf;
  fail("train.amp: expected none, bf16 or fp16, got \"{}\"", amp);
}

TrainOptions TrainOptions::from(const Config& t) {
  TrainOptions o;
  o.max_steps = bounded<int64_t>(t, "max_steps", 0, 0, kMaxInt, "a number of steps >= 0");
  o.max_epochs = bounded<int64_t>(t, "max_epochs", 0, 0, kMaxInt, "a number of epochs >= 0");
  if (o.max_steps <= 0 && o.max_epochs <= 0)
    fail("{}: {}: set max_steps or max_epochs to a positive number", t.where(), t.prefix().empty() ? "train" : t.prefix());
  o.grad_accum = bounded<int64_t>(t, "grad_accum", 1, 1, 1 << 20, ">= 1");
  o.clip_norm = bounded<double>(t, "clip_norm", 0.0, 0.0, 1e30, "a finite norm >= 0 (0: no clipping)");
  o.amp_name = t.get<std::string>("amp", "none");
  if (o.amp_name != "none" && o.amp_name != "bf16" && o.amp_name != "fp16")
    fail("{}: {}: expected none, bf16 or fp16, got \"{}\"", t.where("amp"), t.full_key("amp"), o.amp_name);
  o.amp = parse_amp(o.amp_name);
  o.ema_decay = t.get<double>("ema_decay", 0.0);
  if (!(o.ema_decay == 0 || (o.ema_decay > 0 && o.ema_decay < 1)))
    fail("{}: {}: expected 0 (off) or a decay in (0, 1), got {}", t.where("ema_decay"), t.full_key("ema_decay"), o.ema_decay);
  o.eval_every = bounded<int64_t>(t, "eval_every", 0, 0, kMaxInt, "a number of steps >= 0 (0: every epoch)");
  o.checkpoint_every = bounded<int64_t>(t, "checkpoint_every", 0, 0, kMaxInt, "a number of steps >= 0 (0: at evaluations)");
  o.keep_last = bounded<int>(t, "keep_last", 2, 1, 1 << 20, ">= 1");
  o.best_metric = t.get<std::string>("best_metric", "");
  const auto best_mode = t.get<std::string>("best_mode", "max");
  if (best_mode != "max" && best_mode != "min")
    fail("{}: {}: expected max or min, got \"{}\"", t.where("best_mode"), t.full_key("best_mode"), best_mode);
  o.best_max = best_mode == "max";
  o.log_every = bounded<int64_t>(t, "log_every", 10, 1, kMaxInt, "a number of steps >= 1");
  const auto non_finite = t.get<std::string>("non_finite", "skip");
  if (non_finite != "skip" && non_finite != "stop")
    fail("{}: {}: expected skip or stop, got \"{}\"", t.where("non_finite"), t.full_key("non_finite"), non_finite);
  o.non_finite = non_finite == "skip" ? NonFinite::skip : NonFinite::stop;
  o.device = t.get<std::string>("device", "auto");
  o.dist_timeout_s = bounded<double>(t, "dist_timeout_s", 300.0, 0.001, 1e7, "a timeout in seconds > 0");
  o.overlap_grad_reduce = t.get<bool>("overlap_grad_reduce", true);
  o.bucket_mb = bounded<int64_t>(t, "bucket_mb", 25, 1, 1 << 20, ">= 1");
  o.threads = bounded<int>(t, "threads", 0, 0, 1 << 16, ">= 0 (0: LibTorch's default)");
  o.log_images = bounded<int64_t>(t, "log_images", 0, 0, 1 << 16, ">= 0");
  o.weights_dtype = models::parse_dtype(t.get<std::string>("weights_dtype", "float32"),
                                        t.where("weights_dtype") + ": " + t.full_key("weights_dtype"));
  o.defer_init = t.get<bool>("defer_init", false);
  o.channels_last = t.get<bool>("channels_last", false);
  o.cudnn_benchmark = t.get<bool>("cudnn_benchmark", false);
  o.prefetch_to_device = t.get<bool>("prefetch_to_device", true);
  o.cuda_graph = t.get<bool>("cuda_graph", false);
  if (o.defer_init && !t.has("init_weights"))
    fail("{}: {}: a model built without initialisation needs train.init_weights to cover it", t.where("defer_init"),
         t.full_key("defer_init"));
  return o;
}

}  // namespace facet::train
