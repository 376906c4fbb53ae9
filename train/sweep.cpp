#include "train/sweep.h"

#include "core/file_io.h"
#include "core/log.h"
#include "core/text.h"
#include "train/metric_table.h"

#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <set>

namespace facet::train {
namespace fs = std::filesystem;

namespace {

// A label safe as a directory name: "model.dropout=0.3,seed=1" → "model.dropout=0.3_seed=1".
std::string dir_label(const std::string& label) {
  std::string out;
  for (char c : label) out += (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '=' || c == '-') ? c : '_';
  return out.empty() ? "base" : out;
}

// Cartesian product of the grid axes, in file order.
std::vector<std::vector<std::pair<std::string, std::string>>> expand_grid(const Config& grid) {
  std::vector<std::vector<std::pair<std::string, std::string>>> members{{}};
  for (const auto& key : grid.keys()) {
    const Config values = grid.child(key);
    grid.consume(key);  // each value is read whole, nested maps and lists too
    if (!values.is_list() || values.size() == 0)
      fail("{}: grid.{}: expected a non-empty list of values", grid.where(key), key);
    std::vector<std::vector<std::pair<std::string, std::string>>> next;
    for (const auto& m : members)
      for (size_t i = 0; i < values.size(); ++i) {
        auto extended = m;
        extended.emplace_back(key, values.at(i).dump_inline());
        next.push_back(std::move(extended));
      }
    members = std::move(next);
  }
  return members;
}

// `reference` of `owner` (the sweep file or the base config), checked against the plan's metrics
// and variant labels.
SweepReference read_reference(const Config& owner, const SweepPlan& plan) {
  SweepReference r;
  r.origin = owner.where("reference");
  const Config node = owner.at("reference");
  r.source = node.get<std::string>("source");
  const Config values = node.at("values");
  if (!values.is_map() || values.size() == 0)
    fail("{}: {}: expected a map of metric: figure, or variant: {{metric: figure}}", values.where(), values.prefix());
  std::vector<std::string> variants;
  for (const auto& run : plan.runs)
    if (std::find(variants.begin(), variants.end(), run.variant) == variants.end()) variants.push_back(run.variant);
  // A figure for a metric the sweep does not report would silently never be shown.
  auto figure = [&](const Config& map, const std::string& metric) {
    const Config value = map.child(metric);
    if (std::find(plan.metrics.begin(), plan.metrics.end(), metric) == plan.metrics.end()) {
      const auto near = closest_match(metric, plan.metrics);
      fail("{}: {}: not one of the sweep's metrics ({}){}", value.where(), value.prefix(), join(plan.metrics),
           near ? fmt::format("; did you mean {}?", *near) : "");
    }
    return std::make_pair(metric, value.get_finite<double>(""));
  };
  for (const auto& key : values.keys()) {
    const Config entry = values.child(key);
    if (!entry.is_map()) {  // metric: figure, for every variant
      r.all.insert(figure(values, key));
      continue;
    }
    if (std::find(variants.begin(), variants.end(), key) == variants.end()) {
      const auto near = closest_match(key, variants);
      fail("{}: {}: no variant of the sweep has this label (variants: {}){}", entry.where(), entry.prefix(),
           join(variants), near ? fmt::format("; did you mean {}?", *near) : "");
    }
    for (const auto& metric : entry.keys()) r.per_variant[key].insert(figure(entry, metric));
  }
  return r;
}

}  // namespace

std::optional<double> SweepReference::value(const std::string& variant, const std::string& metric) const {
  if (auto v = per_variant.find(variant); v != per_variant.end())
    if (auto m = v->second.find(metric); m != v->second.end()) return m->second;
  if (auto m = all.find(metric); m != all.end()) return m->second;
  return std::nullopt;
}

SweepPlan plan_sweep(const fs::path& sweep_file, const fs::path& out_dir, const std::vector<std::string>& overrides) {
  const Config sweep = Config::load(sweep_file, {}, /*dotted_keys=*/true);
  SweepPlan plan;
  plan.name = sweep.get<std::string>("name", sweep_file.stem().string());
  plan.base_config = sweep_file.parent_path() / sweep.get<std::string>("base");
  if (!fs::exists(plan.base_config))
    fail("{}: base: {} does not exist", sweep.where("base"), plan.base_config.string());
  plan.out_dir = out_dir.empty() ? fs::path("runs") / "sweeps" / plan.name : out_dir;
  plan.metrics = sweep.get<std::vector<std::string>>("metrics");
  plan.parallel = sweep.get<int>("parallel", 1);
  plan.nproc_per_node = sweep.get<int>("nproc_per_node", 1);
  plan.master_port = sweep.get<int>("master_port", 0);
  if (plan.parallel < 1 || plan.nproc_per_node < 1) fail("{}: parallel and nproc_per_node must be >= 1", sweep_file.string());
  if (plan.master_port < 0 || plan.master_port + plan.parallel - 1 > 65535)
    fail("{}: master_port: {} + parallel {} leaves the port range", sweep.where("master_port"), plan.master_port, plan.parallel);
  const auto averaged_keys = sweep.get<std::vector<std::string>>("average_over", {"seed"});
  const std::set<std::string> averaged(averaged_keys.begin(), averaged_keys.end());
  auto common = sweep.get<std::vector<std::string>>("overrides", {});
  for (const auto& o : overrides) {
    if (o.find('=') == std::string::npos) fail("facet sweep: override \"{}\": expected key=value", o);
    common.push_back(o);
  }

  // Variants: named override sets (default: one empty variant).
  std::vector<std::pair<std::string, std::vector<std::pair<std::string, std::string>>>> variants;
  if (sweep.has("variants")) {
    const Config list = sweep.at("variants");
    for (size_t i = 0; i < list.size(); ++i) {
      const Config v = list.at(i);
      std::vector<std::pair<std::string, std::string>> sets;
      for (const auto& key : v.keys())
        if (key != "name") {
          sets.emplace_back(key, v.child(key).dump_inline());
          v.consume(key);  // an override's value is read whole, nested maps and lists too
        }
      variants.emplace_back(v.get<std::string>("name", fmt::format("variant{}", i)), std::move(sets));
    }
  } else {
    variants.emplace_back("", std::vector<std::pair<std::string, std::string>>{});
  }
  const auto grid = sweep.has("grid") ? expand_grid(sweep.at("grid"))
                                      : std::vector<std::vector<std::pair<std::string, std::string>>>{{}};
  for (const auto& [variant_name, variant_sets] : variants) {
    for (const auto& member : grid) {
      SweepRun run;
      std::vector<std::string> variant_parts, replicate_parts;
      if (!variant_name.empty()) variant_parts.push_back(variant_name);
      run.overrides = common;
      for (const auto& [k, v] : variant_sets) run.overrides.push_back(k + "=" + v);
      for (const auto& [k, v] : member) {
        run.overrides.push_back(k + "=" + v);
        (averaged.count(k) ? replicate_parts : variant_parts).push_back(k + "=" + v);
      }
      run.variant = variant_parts.empty() ? "base" : join(variant_parts, ",");
      run.replicate = replicate_parts.empty() ? "single" : join(replicate_parts, ",");
      run.run_dir = plan.out_dir / dir_label(run.variant) / dir_label(run.replicate);
      plan.runs.push_back(std::move(run));
    }
  }
  if (sweep.has("reference")) {
    plan.reference = read_reference(sweep, plan);
  } else {
    const Config base = Config::load(plan.base_config);
    if (base.has("reference")) plan.reference = read_reference(base, plan);
  }
  sweep.check_unused();
  return plan;
}

std::map<std::string, double> read_final_metrics(const fs::path& run_dir) {
  const fs::path file = run_dir / "final_metrics.json";
  if (!fs::exists(file)) return {};
  try {
    const auto j = nlohmann::json::parse(read_file(file));
    return metrics_from_json(j.at("metrics"), file.string());
  } catch (const nlohmann::json::exception& e) {
    fail("{}: corrupt: {}", file.string(), e.what());
  }
}

void write_final_metrics(const fs::path& run_dir, int64_t step, const std::map<std::string, double>& metrics) {
  write_file_atomic(run_dir / "final_metrics.json",
                    nlohmann::json{{"step", step}, {"metrics", metrics_to_json(metrics)}}.dump(2) + "\n");
}

namespace {

// The last `n` lines of a text file ("" when it cannot be read), for a failed run's output.
std::string last_lines(const fs::path& file, size_t n) {
  std::string text;
  try {
    text = read_file(file);
  } catch (const Error&) {
    return "";
  }
  while (!text.empty() && text.back() == '\n') text.pop_back();
  size_t at = text.size();
  for (size_t k = 0; k < n && at != std::string::npos && at > 0; ++k) at = text.rfind('\n', at - 1);
  return at == std::string::npos ? text : text.substr(at + 1);
}

}  // namespace

std::vector<std::string> sweep_command(const SweepPlan& plan, const SweepRun& run, int slot,
                                       const std::string& facet_binary) {
  std::vector<std::string> args = {facet_binary};
  // Concurrent multi-rank runs must not share a rendezvous port: with master_port 0 each launcher
  // picks a free one; with a fixed master_port, slot i uses master_port + i.
  if (plan.nproc_per_node > 1)
    args.insert(args.end(), {"launch", "--nproc-per-node", std::to_string(plan.nproc_per_node), "--master-port",
                             std::to_string(plan.master_port == 0 ? 0 : plan.master_port + slot), "--"});
  if (fs::exists(run.run_dir / "checkpoints" / "last")) {
    args.insert(args.end(), {"train", "--resume", run.run_dir.string()});
  } else {
    args.insert(args.end(), {"train", plan.base_config.string()});
    args.insert(args.end(), run.overrides.begin(), run.overrides.end());
    args.insert(args.end(), {"--run-dir", run.run_dir.string()});
  }
  return args;
}

int run_sweep(const SweepPlan& plan, const std::string& facet_binary) {
  fs::create_directories(plan.out_dir);
  std::vector<const SweepRun*> todo;
  for (const auto& run : plan.runs)
    if (read_final_metrics(run.run_dir).empty()) todo.push_back(&run);
  log::info("sweep {}: {} runs, {} already finished, {} to run ({} at once)", plan.name, plan.runs.size(),
            plan.runs.size() - todo.size(), todo.size(), plan.parallel);
  std::map<pid_t, std::pair<const SweepRun*, int>> running;  // pid -> (run, slot)
  std::set<int> free_slots;
  for (int slot = 0; slot < plan.parallel; ++slot) free_slots.insert(slot);
  size_t next = 0;
  int failures = 0;
  while (next < todo.size() || !running.empty()) {
    while (next < todo.size() && !free_slots.empty()) {
      const SweepRun& run = *todo[next++];
      const int slot = *free_slots.begin();
      free_slots.erase(free_slots.begin());
      std::vector<std::string> args = sweep_command(plan, run, slot, facet_binary);
      const bool resume = std::find(args.begin(), args.end(), "--resume") != args.end();
      // A run stopped before its first checkpoint starts again from nothing (`facet train` refuses a
      // directory that holds a run).
      if (!resume && fs::exists(run.run_dir) && !fs::is_empty(run.run_dir)) {
        log::info("{} / {}: stopped before its first checkpoint; starting it again", run.variant, run.replicate);
        fs::remove_all(run.run_dir);
      }
      fs::create_directories(run.run_dir);
      const std::string log_path = (run.run_dir.parent_path() / (run.run_dir.filename().string() + ".out")).string();
      const pid_t pid = ::fork();
      if (pid < 0) fail("sweep: fork failed");
      if (pid == 0) {
        // Child: own output file, then exec facet.
        if (!std::freopen(log_path.c_str(), "a", stdout) || !std::freopen(log_path.c_str(), "a", stderr)) ::_exit(126);
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        ::execv(argv[0], argv.data());
        ::_exit(127);
      }
      log::info("[{}/{}] {} / {}{}  (output: {})", next, todo.size(), run.variant, run.replicate,
                resume ? " (resuming)" : "", log_path);
      running.emplace(pid, std::make_pair(&run, slot));
    }
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, 0);
    if (pid < 0) break;
    auto it = running.find(pid);
    if (it == running.end()) continue;
    const auto [run, slot] = it->second;
    const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!ok) {
      ++failures;
      const fs::path out = run->run_dir.parent_path() / (run->run_dir.filename().string() + ".out");
      log::error("run {} / {} failed (exit {}); the end of {}:\n{}", run->variant, run->replicate,
                 WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), out.string(), last_lines(out, 6));
      // A run that never wrote its config.yaml failed to build: the other members share its config
      // (a missing data root, a misspelt key) and would fail alike.
      if (!fs::exists(run->run_dir / "config.yaml") && next < todo.size()) {
        log::error("run {} / {} failed before training started; not starting the {} runs left (fix the config, "
                   "then run the sweep again: finished runs are skipped)",
                   run->variant, run->replicate, todo.size() - next);
        next = todo.size();
      }
    }
    free_slots.insert(slot);
    running.erase(it);
  }
  return failures;
}

std::string write_sweep_report(const SweepPlan& plan) {
  // Variants in plan order.
  std::vector<std::string> order;
  std::map<std::string, std::vector<const SweepRun*>> by_variant;
  for (const auto& run : plan.runs) {
    if (!by_variant.count(run.variant)) order.push_back(run.variant);
    by_variant[run.variant].push_back(&run);
  }
  // The metrics the paper gives a figure for (for any variant) get two more columns.
  const SweepReference& ref = plan.reference;
  std::set<std::string> referenced;
  for (const auto& m : plan.metrics)
    for (const auto& variant : order)
      if (ref.value(variant, m)) referenced.insert(m);
  std::string md = fmt::format("# Sweep {}\n\nBase config: `{}`. Mean ± std (sample) over replicates.\n",
                               plan.name, plan.base_config.string());
  if (!referenced.empty())
    md += fmt::format("Paper: {} ({}); Δ = measured mean − paper.\n", ref.source, ref.origin);
  md += "\n| variant | n |";
  std::string csv = "variant,n", rule = "|---|---|";
  for (const auto& m : plan.metrics) {
    md += fmt::format(" {} |", m);
    csv += fmt::format(",{0}_mean,{0}_std", m);
    rule += "---|";
    if (referenced.count(m)) {
      md += " paper | Δ |";
      csv += fmt::format(",{0}_reference,{0}_diff", m);
      rule += "---|---|";
    }
  }
  md += " runs |\n" + rule + "---|\n";
  csv += ",runs\n";
  for (const auto& variant : order) {
    std::vector<std::map<std::string, double>> finished;
    std::vector<std::string> dirs;
    for (const SweepRun* run : by_variant[variant]) {
      auto metrics = read_final_metrics(run->run_dir);
      dirs.push_back(run->run_dir.string());
      if (!metrics.empty()) finished.push_back(std::move(metrics));
    }
    md += fmt::format("| {} | {} |", variant, finished.size());
    csv += fmt::format("\"{}\",{}", variant, finished.size());
    for (const auto& m : plan.metrics) {
      std::vector<double> values;
      for (const auto& f : finished)
        if (auto it = f.find(m); it != f.end()) values.push_back(it->second);
      double mean = 0, sd = 0;
      if (values.empty()) {
        md += " – |";
        csv += ",,";
      } else {
        for (double v : values) mean += v / static_cast<double>(values.size());
        double var = 0;
        for (double v : values) var += (v - mean) * (v - mean);
        sd = values.size() > 1 ? std::sqrt(var / static_cast<double>(values.size() - 1)) : 0.0;
        md += fmt::format(" {:.4f} ± {:.4f} |", mean, sd);
        csv += fmt::format(",{:.6f},{:.6f}", mean, sd);
      }
      if (!referenced.count(m)) continue;
      const auto paper = ref.value(variant, m);
      md += paper ? fmt::format(" {:.4f} |", *paper) : std::string(" – |");
      csv += paper ? fmt::format(",{:.6f}", *paper) : std::string(",");
      if (paper && !values.empty()) {
        md += fmt::format(" {:+.4f} |", mean - *paper);
        csv += fmt::format(",{:.6f}", mean - *paper);
      } else {
        md += " – |";
        csv += ",";
      }
    }
    md += fmt::format(" {} |\n", join(dirs, "<br>"));
    csv += fmt::format(",\"{}\"\n", join(dirs, ";"));
  }
  write_file_atomic(plan.out_dir / "results.md", md);
  write_file_atomic(plan.out_dir / "results.csv", csv);
  return md;
}

}  // namespace facet::train
