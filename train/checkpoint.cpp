#include "train/checkpoint.h"

#include "core/error.h"
#include "core/file_io.h"
#include "core/safetensors.h"

#include <fcntl.h>
#include <stdio.h>  // renameat2, RENAME_EXCHANGE (glibc 2.28)
#include <unistd.h>

#include <algorithm>

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

}  // namespace

fs::path CheckpointDir::save(int64_t step, const CheckpointContents& contents, torch::optim::Optimizer& optimizer,
                             bool is_best) {
  fs::create_directories(dir_);
  const fs::path final_dir = dir_ / step_name(step);
  const fs::path tmp = dir_ / fmt::format(".tmp.{}.{}", step_name(step), ::getpid());
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  try {
    safetensors::save(tmp / "model.safetensors", contents.model);
    if (!contents.ema.empty()) safetensors::save(tmp / "ema.safetensors", contents.ema);
    safetensors::save(tmp / "rng.safetensors", contents.extra);
    torch::save(optimizer, (tmp / "optimizer.pt").string());
    fsync_path(tmp / "optimizer.pt", false);
    write_file_atomic(tmp / "state.json", contents.state.dump(2) + "\n");
    fsync_path(tmp, true);
    if (fs::exists(final_dir)) {
      // The same step again (the end-of-epoch save after a periodic one, a final best, a resumed
      // finished run): `last` points at final_dir, so swap the two directories in one step rather
      // than delete the one it points at first.
      if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, final_dir.c_str(), RENAME_EXCHANGE) == 0) {
        fs::remove_all(tmp);
      } else {  // a file system without RENAME_EXCHANGE: a short window without final_dir
        fs::remove_all(final_dir);
        fs::rename(tmp, final_dir);
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
  point("last", final_dir);
  if (is_best) point("best", final_dir);
  prune();
  return final_dir;
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
  if (!fs::is_directory(target)) fail("{}: points at {}, which does not exist", p.string(), target.string());
  return target;
}

void CheckpointDir::prune() const {
  std::vector<fs::path> steps;
  for (const auto& entry : fs::directory_iterator(dir_)) {
    const std::string name = entry.path().filename().string();
    if (entry.is_directory() && !entry.is_symlink() && name.rfind("step_", 0) == 0) steps.push_back(entry.path());
    // Leftovers of a run killed mid-write.
    if (name.rfind(".tmp.", 0) == 0 && name.find(std::to_string(::getpid())) == std::string::npos) {
      std::error_code ignored;
      fs::remove_all(entry.path(), ignored);
    }
  }
  std::sort(steps.begin(), steps.end());
  const auto last = resolve("last"), best = resolve("best");
  const int64_t excess = static_cast<int64_t>(steps.size()) - keep_last_;
  for (int64_t i = 0; i < excess; ++i) {
    const auto& s = steps[static_cast<size_t>(i)];
    if ((last && fs::equivalent(s, *last)) || (best && fs::equivalent(s, *best))) continue;
    fs::remove_all(s);
  }
}

CheckpointContents CheckpointDir::load(const fs::path& checkpoint) {
  for (const char* f : {"model.safetensors", "rng.safetensors", "optimizer.pt", "state.json"})
    if (!fs::exists(checkpoint / f)) fail("{}: checkpoint is incomplete, {} is missing", checkpoint.string(), f);
  CheckpointContents c;
  c.model = safetensors::load(checkpoint / "model.safetensors");
  if (fs::exists(checkpoint / "ema.safetensors")) c.ema = safetensors::load(checkpoint / "ema.safetensors");
  c.extra = safetensors::load(checkpoint / "rng.safetensors");
  try {
    c.state = nlohmann::json::parse(read_file(checkpoint / "state.json"));
  } catch (const nlohmann::json::exception& e) {
    fail("{}: corrupt: {}", (checkpoint / "state.json").string(), e.what());
  }
  return c;
}

void CheckpointDir::load_optimizer(const fs::path& checkpoint, torch::optim::Optimizer& optimizer,
                                   const torch::Device& device) {
  try {
    // Onto this rank's device: the file holds rank 0's, and the state must sit with the parameters.
    torch::load(optimizer, (checkpoint / "optimizer.pt").string(), device);
  } catch (const c10::Error& e) {
    fail("{}: cannot restore the optimiser (different model or optimiser?): {}", (checkpoint / "optimizer.pt").string(),
         e.what_without_backtrace());
  }
}

}  // namespace facet::train
