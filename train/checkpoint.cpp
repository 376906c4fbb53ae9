#include "train/checkpoint.h"

#include "core/error.h"
#include "core/file_io.h"

#include <fcntl.h>
#include <stdio.h>  // renameat2, RENAME_EXCHANGE (glibc 2.28)
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <regex>

namespace facet::train {
namespace fs = std::filesystem;

namespace {

void fsync_path(const fs::path& path, bool directory) {
  int fd = ::open(path.c_str(), directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
  if (fd < 0) fail("{}: cannot open for fsync", path.string());
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) fail("{}: fsync failed", path.string());
}

std::string step_name(int64_t step) { return fmt::format("step_{:08d}", step); }

std::string optimizer_file(const std::string& name) {
  return name == "main" ? "optimizer.pt" : fmt::format("optimizer.{}.pt", name);
}

// FACET_CHECKPOINT_FAULT (see checkpoint.h): ends the process at `stage` of the configured save.
void fault_point(const char* stage, int save_number) {
  const char* spec = std::getenv("FACET_CHECKPOINT_FAULT");
  if (!spec || !*spec) return;
  std::string s = spec;
  int n = 1;
  if (const auto colon = s.find(':'); colon != std::string::npos) {
    n = std::atoi(s.c_str() + colon + 1);
    s.resize(colon);
  }
  if (s == stage && save_number == n) ::_exit(kCheckpointFaultExitCode);
}

bool exchange_allowed() {
  const char* off = std::getenv("FACET_CHECKPOINT_NO_EXCHANGE");
  return !(off && std::string(off) == "1");
}

// Saves by this process (a forked child counts its own).
int next_save_number() {
  static std::atomic<pid_t> owner{0};
  static std::atomic<int> count{0};
  if (owner.exchange(::getpid()) != ::getpid()) count = 0;
  return ++count;
}

// step_00001200 → 1200, step_00001200.old → 1200; -1 for other names.
int64_t step_of(const std::string& name, bool* old = nullptr) {
  static const std::regex pattern(R"(step_(\d+)(\.old)?)");
  std::smatch m;
  if (!std::regex_match(name, m, pattern)) return -1;
  if (old) *old = m[2].matched;
  return std::stoll(m[1].str());
}

}  // namespace

bool CheckpointDir::is_complete(const fs::path& checkpoint) {
  // state.json is written last, atomically: a directory that has it has everything.
  return fs::is_directory(checkpoint) && fs::exists(checkpoint / "state.json") &&
         fs::exists(checkpoint / "model.safetensors");
}

fs::path CheckpointDir::save(int64_t step, const CheckpointContents& contents, bool is_best) {
  const int save_number = next_save_number();
  fs::create_directories(dir_);
  const fs::path final_dir = dir_ / step_name(step);
  const fs::path tmp = dir_ / fmt::format(".tmp.{}.{}", step_name(step), ::getpid());
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  try {
    safetensors::save(tmp / "model.safetensors", contents.model);
    for (const auto& [file, tensors] : contents.files) safetensors::save(tmp / file, tensors);
    for (const auto& [name, optimizer] : contents.optimizers) {
      torch::save(*optimizer, (tmp / optimizer_file(name)).string());
      fsync_path(tmp / optimizer_file(name), false);
    }
    fault_point("files", save_number);
    write_file_atomic(tmp / "state.json", contents.state.dump(2) + "\n");
    fsync_path(tmp, true);
    fault_point("state", save_number);
    if (fs::exists(final_dir)) {
      // The same step again (the end-of-epoch save after a periodic one, a final best, a resumed
      // finished run): `last` points at final_dir, so it is never deleted before its replacement
      // is in place — swapped in one step, or else moved aside first.
      if (exchange_allowed() &&
          ::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, final_dir.c_str(), RENAME_EXCHANGE) == 0) {
        fsync_path(dir_, true);
        fault_point("swap", save_number);
        fs::remove_all(tmp);
      } else {
        const fs::path old = dir_ / (step_name(step) + ".old");
        fs::remove_all(old);
        fs::rename(final_dir, old);
        fsync_path(dir_, true);
        fault_point("swap", save_number);  // neither in place: latest_complete() takes the .old copy
        fs::rename(tmp, final_dir);
        fsync_path(dir_, true);
        fs::remove_all(old);
      }
    } else {
      fs::rename(tmp, final_dir);
    }
    fsync_path(dir_, true);
  } catch (...) {
    std::error_code ignored;
    fs::remove_all(tmp, ignored);
    throw;
  }
  fault_point("link", save_number);
  // `best` first: a crash between the two leaves `last` behind, which a resume sets right (relink);
  // the other order would leave `best` on a worse checkpoint than the saved best value.
  if (is_best) point("best", final_dir);
  point("last", final_dir);
  prune();
  return final_dir;
}

void CheckpointDir::relink(const fs::path& checkpoint, bool is_best) const {
  if (checkpoint.extension() == ".old") return;  // the copy of an interrupted swap: prune() renames it
  for (const std::string link : {"best", "last"}) {
    if (link == "best" && !is_best) continue;
    const auto now = resolve(link);
    if (!now || !fs::equivalent(*now, checkpoint)) point(link, checkpoint);
  }
}

void CheckpointDir::point(const std::string& link, const fs::path& target) const {
  const fs::path tmp = dir_ / fmt::format(".tmp.{}.{}", link, ::getpid());
  fs::remove(tmp);
  fs::create_directory_symlink(target.filename(), tmp);
  fs::rename(tmp, dir_ / link);  // rename(2) replaces the old link atomically
  fsync_path(dir_, true);
}

std::optional<fs::path> CheckpointDir::resolve(const std::string& link) const {
  const fs::path p = dir_ / link;
  if (!fs::is_symlink(p)) return std::nullopt;
  const fs::path target = dir_ / fs::read_symlink(p);
  if (!is_complete(target)) return std::nullopt;
  return target;
}

std::optional<fs::path> CheckpointDir::latest_complete() const {
  if (!fs::is_directory(dir_)) return std::nullopt;
  std::optional<fs::path> best;
  int64_t best_step = -1;
  bool best_old = true;
  for (const auto& entry : fs::directory_iterator(dir_)) {
    if (entry.is_symlink()) continue;
    bool old = false;
    const int64_t step = step_of(entry.path().filename().string(), &old);
    if (step < 0 || !is_complete(entry.path())) continue;
    if (step > best_step || (step == best_step && best_old && !old)) {
      best = entry.path();
      best_step = step;
      best_old = old;
    }
  }
  return best;
}

void CheckpointDir::prune() const {
  std::vector<fs::path> entries;
  for (const auto& entry : fs::directory_iterator(dir_)) entries.push_back(entry.path());
  std::vector<fs::path> steps;
  for (const auto& path : entries) {
    const std::string name = path.filename().string();
    std::error_code ignored;
    bool old = false;
    if (fs::is_directory(path) && !fs::is_symlink(path) && step_of(name, &old) >= 0) {
      if (!old) {
        steps.push_back(path);
        continue;
      }
      // The previous copy of a same-step save that was interrupted: superfluous once the new copy is
      // in place, else the only copy of its step, which goes back under its name.
      const fs::path twin = dir_ / name.substr(0, name.size() - 4);
      if (is_complete(twin)) {
        fs::remove_all(path, ignored);
      } else {
        fs::remove_all(twin, ignored);
        fs::rename(path, twin);
        if (std::find(steps.begin(), steps.end(), twin) == steps.end()) steps.push_back(twin);
      }
    } else if (name.rfind(".tmp.", 0) == 0 && name.find(std::to_string(::getpid())) == std::string::npos) {
      fs::remove_all(path, ignored);  // leftovers of a run killed mid-write
    }
  }
  std::sort(steps.begin(), steps.end());
  steps.erase(std::unique(steps.begin(), steps.end()), steps.end());
  const auto last = resolve("last"), best = resolve("best");
  const int64_t excess = static_cast<int64_t>(steps.size()) - keep_last_;
  for (int64_t i = 0; i < excess; ++i) {
    const auto& s = steps[static_cast<size_t>(i)];
    if ((last && fs::equivalent(s, *last)) || (best && fs::equivalent(s, *best))) continue;
    fs::remove_all(s);
  }
}

CheckpointContents CheckpointDir::load(const fs::path& checkpoint) {
  for (const char* f : {"model.safetensors", "state.json"})
    if (!fs::exists(checkpoint / f)) fail("{}: checkpoint is incomplete, {} is missing", checkpoint.string(), f);
  CheckpointContents c;
  c.source = checkpoint;
  c.model = safetensors::load(checkpoint / "model.safetensors");
  for (const auto& entry : fs::directory_iterator(checkpoint)) {
    const std::string name = entry.path().filename().string();
    if (entry.path().extension() == ".safetensors" && name != "model.safetensors")
      c.files[name] = safetensors::load(entry.path());
  }
  try {
    c.state = nlohmann::json::parse(read_file(checkpoint / "state.json"));
  } catch (const nlohmann::json::exception& e) {
    fail("{}: corrupt: {}", (checkpoint / "state.json").string(), e.what());
  }
  return c;
}

void CheckpointDir::load_optimizer(const fs::path& checkpoint, const std::string& name,
                                   torch::optim::Optimizer& optimizer, const torch::Device& device) {
  const fs::path file = checkpoint / optimizer_file(name);
  if (!fs::exists(file)) fail("{}: checkpoint has no state for optimiser \"{}\"", file.string(), name);
  try {
    // Onto this rank's device: the file holds rank 0's, and the state must sit with the parameters.
    torch::load(optimizer, file.string(), device);
  } catch (const c10::Error& e) {
    fail("{}: cannot restore the optimiser (different model or optimiser?): {}", file.string(), e.what_without_backtrace());
  }
}

}  // namespace facet::train
