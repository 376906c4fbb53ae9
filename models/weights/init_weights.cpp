#include "models/weights/init_weights.h"

#include "core/file_io.h"
#include "core/hash.h"
#include "core/log.h"
#include "core/safetensors.h"
#include "core/text.h"
#include "models/layers/construction.h"
#include "models/weights/converter.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <regex>
#include <set>

namespace facet::models {
namespace {

const std::vector<std::string> kEntryKeys = {"path", "convert", "add_prefix", "strip_prefix", "ignore", "strict"};

struct Entry {
  std::string path, convert = "facet", add, strip;
  std::vector<std::string> ignore_patterns;
  std::vector<std::regex> ignore;
  bool strict = true;
  std::shared_ptr<const WeightConverter> converter;
};

Entry read_entry(const Config& e) {
  if (!e.is_map()) fail("{}: {}: expected a map {{path: ..., convert: ..., add_prefix: ...}}", e.where(), e.prefix());
  for (const auto& key : e.keys())
    if (std::find(kEntryKeys.begin(), kEntryKeys.end(), key) == kEntryKeys.end()) {
      const auto near = closest_match(key, kEntryKeys);
      fail("{}: {}: unknown key{}; an entry has {}", e.where(key), e.full_key(key),
           near ? fmt::format(" (did you mean {}?)", *near) : "", join(kEntryKeys));
    }
  Entry entry;
  entry.path = e.get<std::string>("path");
  entry.convert = e.get<std::string>("convert", entry.convert);
  entry.add = e.get<std::string>("add_prefix", "");
  entry.strip = e.get<std::string>("strip_prefix", "");
  entry.strict = e.get<bool>("strict", true);
  entry.ignore_patterns = e.get<std::vector<std::string>>("ignore", {});
  for (const auto& pattern : entry.ignore_patterns) {
    try {
      entry.ignore.emplace_back(pattern);
    } catch (const std::regex_error& err) {
      fail("{}: {}: \"{}\" is not a valid regular expression ({})", e.where("ignore"), e.full_key("ignore"), pattern, err.what());
    }
  }
  const auto& registry = converter_registry();
  if (!registry.contains(entry.convert)) {
    const auto near = closest_match(entry.convert, registry.names());
    fail("{}: {}: unknown converter \"{}\"{}; registered: {}", e.where("convert"), e.full_key("convert"), entry.convert,
         near ? fmt::format(" (did you mean \"{}\"?)", *near) : "", join(registry.names()));
  }
  entry.converter = registry.create(Config::parse(fmt::format("{{name: {}}}", entry.convert)));
  return entry;
}

bool ignored(const Entry& entry, const std::string& name) {
  return std::any_of(entry.ignore.begin(), entry.ignore.end(), [&](const std::regex& r) { return std::regex_search(name, r); });
}

// At most `n` items, then "... (N more)".
std::string first_items(const std::vector<std::string>& items, size_t n, std::string_view separator = "; ") {
  std::vector<std::string> shown(items.begin(), items.begin() + static_cast<std::ptrdiff_t>(std::min(n, items.size())));
  std::string out = join(shown, separator);
  if (items.size() > n) out += fmt::format("{}... ({} more)", separator, items.size() - n);
  return out;
}

std::map<std::string, torch::Tensor> model_tensors(torch::nn::Module& model) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& p : model.named_parameters()) out.emplace(p.key(), p.value());
  for (const auto& b : model.named_buffers()) out.emplace(b.key(), b.value());
  return out;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

LoadedWeights load_entry(torch::nn::Module& model, const Config& e, const std::string* expected_hash) {
  const auto start = std::chrono::steady_clock::now();
  const Entry entry = read_entry(e);
  const std::string context =
      e.prefix().empty() ? fmt::format("{}: {}", e.where("path"), entry.path) : fmt::format("{}: {}: {}", e.where("path"), e.prefix(), entry.path);

  std::vector<safetensors::File> files;
  std::filesystem::path target_file;
  try {
    target_file = safetensors::checkpoint_file(entry.path);
    files = safetensors::open_checkpoint(entry.path);
  } catch (const Error& err) {
    fail("{}: {}: {}", e.where("path"), e.full_key("path"), err.what());
  }

  // The file's tensors, named as the converter sees them (after strip_prefix).
  struct Source {
    size_t file;
    const safetensors::TensorEntry* entry;
    bool ignored;
  };
  std::vector<Source> sources;
  std::map<std::string, size_t> source_index;
  SourceTensors visible;
  for (size_t f = 0; f < files.size(); ++f)
    for (const auto& t : files[f].entries()) {
      const std::string name = !entry.strip.empty() && t.name.starts_with(entry.strip) ? t.name.substr(entry.strip.size()) : t.name;
      if (!source_index.emplace(name, sources.size()).second)
        fail("{}: two tensors are called \"{}\" once strip_prefix \"{}\" is removed", context, name, entry.strip);
      sources.push_back({f, &t, ignored(entry, t.name)});
      visible.push_back({name, t.dtype, t.shape});
    }

  // The model part the entry loads into.
  const auto targets = model_tensors(model);
  TargetShapes scoped;
  for (const auto& [name, t] : targets)
    if (name.starts_with(entry.add)) scoped.emplace(name.substr(entry.add.size()), t.sizes().vec());
  if (scoped.empty())
    fail("{}: the model has no tensor under add_prefix \"{}\"{}", context, entry.add, [&] {
      std::vector<std::string> names;
      for (const auto& [name, t] : targets) names.push_back(name);
      const auto near = closest_match(entry.add, names);
      return near ? fmt::format(" (nearest name: {})", *near) : std::string();
    }());

  ConversionPlan plan;
  try {
    plan = entry.converter->plan(visible, scoped);
  } catch (const Error& err) {
    fail("{}: convert: {}: {}", context, entry.convert, err.what());
  }

  // Check everything before a byte is copied.
  struct Job {
    const TensorRecipe* recipe;
    std::string target;  // full model name
    std::vector<size_t> sources;
    torch::Tensor dest;
  };
  std::vector<Job> jobs;
  std::set<size_t> used;
  std::set<std::string> exempt, loaded_set;
  std::vector<std::string> unexpected, mismatched;
  for (const auto& recipe : plan.tensors) {
    Job job{&recipe, entry.add + recipe.target, {}, {}};
    for (const auto& name : recipe.sources) {
      auto it = source_index.find(name);
      if (it == source_index.end()) fail("{}: convert: {}: reads \"{}\", which the file lacks", context, entry.convert, name);
      job.sources.push_back(it->second);
      used.insert(it->second);
    }
    if (job.sources.empty()) fail("{}: convert: {}: \"{}\" is made from no file tensor", context, entry.convert, recipe.target);
    if (std::any_of(job.sources.begin(), job.sources.end(), [&](size_t s) { return sources[s].ignored; })) {
      exempt.insert(recipe.target);
      continue;
    }
    auto target = scoped.find(recipe.target);
    if (target == scoped.end()) {
      unexpected.push_back(job.target);
      continue;
    }
    if (recipe.shape.empty() && (job.sources.size() != 1 || recipe.make))
      fail("{}: convert: {}: \"{}\" is computed but its plan gives no shape", context, entry.convert, recipe.target);
    const std::vector<int64_t>& found = recipe.shape.empty() ? sources[job.sources[0]].entry->shape : recipe.shape;
    if (found != target->second) {
      std::vector<std::string> from;
      for (size_t s : job.sources) from.push_back(sources[s].entry->name);
      mismatched.push_back(fmt::format("{}: the model expects {}, the file's {} {} {}", job.target, shape_text(target->second),
                                       join(from), recipe.make ? "give" : "is", shape_text(found)));
      continue;
    }
    if (!loaded_set.insert(job.target).second)
      fail("{}: convert: {}: two file tensors load into \"{}\"", context, entry.convert, job.target);
    job.dest = targets.at(job.target);
    jobs.push_back(std::move(job));
  }
  std::set<size_t> dropped_sources;
  for (const auto& [name, why] : plan.dropped)
    if (auto it = source_index.find(name); it != source_index.end()) dropped_sources.insert(it->second);
  for (size_t i = 0; i < sources.size(); ++i)
    if (!used.count(i) && !dropped_sources.count(i) && !sources[i].ignored) unexpected.push_back(sources[i].entry->name);

  std::vector<std::string> missing;
  std::vector<std::string> covered;
  if (plan.covers) covered = *plan.covers;
  else
    for (const auto& [name, shape] : scoped) covered.push_back(name);
  for (const auto& name : covered) {
    if (loaded_set.count(entry.add + name) || exempt.count(name)) continue;
    // A model tensor whose file name would be ignored stays as it is on purpose (a new head).
    if (ignored(entry, entry.strip + name)) continue;
    missing.push_back(entry.add + name);
  }

  if (!mismatched.empty())
    fail("{}: {} tensor{} of another shape: {}", context, mismatched.size(), mismatched.size() == 1 ? "" : "s",
         first_items(mismatched, 5));
  if (entry.strict && (!missing.empty() || !unexpected.empty())) {
    std::string message = fmt::format("{}: does not fit the model ({} of its tensors would load)", context, jobs.size());
    if (!missing.empty()) message += fmt::format("; model tensors the file lacks: {}", summarize_names(missing));
    if (!unexpected.empty()) message += fmt::format("; file tensors the model lacks: {}", summarize_names(unexpected));
    if (auto fix = suggest_prefix(missing, unexpected)) message += fmt::format("; they match with `{}`", *fix);
    else if (!missing.empty() && unexpected.empty()) message += "; `strict: false` keeps the rest as it is, `ignore:` leaves tensors out";
    fail("{}", message);
  }

  // Stream: every file front to back, hashing every byte and copying each tensor where it goes as
  // soon as its sources have been read; then its mapped pages are dropped.
  std::vector<std::vector<size_t>> jobs_of(sources.size());
  std::vector<size_t> waiting(jobs.size()), users(sources.size(), 0);
  for (size_t j = 0; j < jobs.size(); ++j) {
    waiting[j] = jobs[j].sources.size();
    for (size_t s : jobs[j].sources) {
      jobs_of[s].push_back(j);
      ++users[s];
    }
  }
  Hash64 hash;
  if (safetensors::is_sharded_index(target_file)) {
    const std::string index_bytes = read_file(target_file);
    hash.update(index_bytes.data(), index_bytes.size());
  }
  std::map<size_t, torch::Tensor> held;  // source -> its view, while a job still needs it
  std::vector<std::string> notes;
  torch::NoGradGuard no_grad;
  size_t s = 0;  // sources were listed in this same order
  for (size_t f = 0; f < files.size(); ++f) {
    const safetensors::File& file = files[f];
    file.advise_sequential();
    const auto bytes = file.bytes();
    hash.update(bytes.subspan(0, file.data_start()));
    for (const auto& t : file.entries()) {  // in offset order
      hash.update(bytes.subspan(file.data_start() + t.begin, t.end - t.begin));
      const size_t index = s++;
      if (jobs_of[index].empty()) {
        file.release(t);
        continue;
      }
      held[index] = file.view(t);
      for (size_t j : jobs_of[index]) {
        if (--waiting[j] > 0) continue;
        Job& job = jobs[j];
        std::vector<torch::Tensor> inputs;
        for (size_t i : job.sources) inputs.push_back(held.at(i));
        try {
          const torch::Tensor value = job.recipe->make ? job.recipe->make(inputs) : inputs[0];
          if (value.sizes() != job.dest.sizes())
            fail("makes {} instead of the planned {}", shape_text(value.sizes().vec()), shape_text(job.dest.sizes().vec()));
          job.dest.copy_(value);
        } catch (const Error& err) {
          fail("{}: convert: {}: {}: {}", context, entry.convert, job.target, err.what());
        } catch (const c10::Error& err) {
          fail("{}: {}: {}", context, job.target, err.what_without_backtrace());
        }
        mark_initialized(job.dest);
        if (!job.recipe->note.empty()) notes.push_back(fmt::format("{} {}", job.target, job.recipe->note));
        for (size_t i : job.sources)
          if (--users[i] == 0) {
            files[sources[i].file].release(*sources[i].entry);
            held.erase(i);
          }
      }
    }
  }
  const std::string content_hash = "xxh64:" + hash.hex();
  if (expected_hash && *expected_hash != content_hash)
    fail("{}: the file changed since its weights were recorded: content hash {}, recorded {}", context, content_hash, *expected_hash);

  LoadedWeights record;
  record.path = entry.path;
  record.content_hash = content_hash;
  record.entry_yaml = e.dump_inline();
  for (const auto& job : jobs) record.tensors.push_back(job.target);
  std::sort(record.tensors.begin(), record.tensors.end());

  std::string details;
  if (!plan.dropped.empty()) {
    std::vector<std::string> names;
    std::map<std::string, size_t> reasons;
    for (const auto& [name, why] : plan.dropped) ++reasons[why];
    for (const auto& [why, n] : reasons) names.push_back(fmt::format("{} {}", n, why));
    details += fmt::format("; left out: {}", first_items(names, 4, ", "));
  }
  if (!exempt.empty()) details += fmt::format("; {} ignored", exempt.size());
  if (!missing.empty()) details += fmt::format("; not in the file (kept as they are): {}", summarize_names(missing, 3));
  if (!unexpected.empty()) details += fmt::format("; not used: {}", summarize_names(unexpected, 3));
  for (const auto& note : notes) details += "; " + note;
  // Where they went: add_prefix, or the part the converter found (backbone., cnn.features.).
  std::string into = entry.add;
  if (into.empty() && !record.tensors.empty()) {
    into = record.tensors.front().substr(0, record.tensors.front().rfind('.') + 1);
    for (const auto& name : record.tensors)
      while (!into.empty() && !name.starts_with(into)) into = into.substr(0, into.rfind('.', into.size() - 2) + 1);
  }
  log::info("init_weights: {} tensors from {} into {} (convert: {}) in {:.1f} s{}", jobs.size(), entry.path,
            into.empty() ? "the model" : into, entry.convert, seconds_since(start), details);
  return record;
}

}  // namespace

std::vector<LoadedWeights> init_weights(torch::nn::Module& model, const Config& list, const InitWeightsOptions& options) {
  if (!list.is_list()) fail("{}: {}: expected a list of {{path, ...}} entries", list.where(), list.prefix());
  std::vector<LoadedWeights> out;
  for (size_t i = 0; i < list.size(); ++i) out.push_back(load_entry(model, list.at(i), nullptr));
  if (!out.empty()) {
    const std::string left = describe_unloaded(model, out);
    log::info("init_weights: {}", left.empty() ? "every model tensor was loaded" : left);
  }
  if (options.check_initialized) check_initialized(model, list.size() ? fmt::format("{}: {}", list.where(), list.prefix()) : "init_weights");
  return out;
}

LoadedWeights reapply_weights(torch::nn::Module& model, const LoadedWeights& record) {
  const Config entry = Config::parse(record.entry_yaml, "recorded init_weights entry");
  LoadedWeights again = load_entry(model, entry, &record.content_hash);
  if (again.tensors != record.tensors)
    fail("{}: re-applied, the entry loads {} tensors instead of the recorded {}", record.path, again.tensors.size(),
         record.tensors.size());
  return again;
}

std::string describe_unloaded(const torch::nn::Module& model, const std::vector<LoadedWeights>& loaded) {
  std::set<std::string> done;
  for (const auto& record : loaded) done.insert(record.tensors.begin(), record.tensors.end());
  std::vector<std::string> left;
  size_t total = 0;
  for (const auto& p : model.named_parameters()) {
    ++total;
    if (!done.count(p.key())) left.push_back(p.key());
  }
  for (const auto& b : model.named_buffers()) {
    ++total;
    if (!done.count(b.key())) left.push_back(b.key());
  }
  if (left.empty()) return "";
  return fmt::format("{} of {} model tensors keep their initialisation: {}", left.size(), total, summarize_names(left));
}

}  // namespace facet::models
