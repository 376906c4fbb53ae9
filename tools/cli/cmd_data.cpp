// `facet data ...`: dataset tools.
//   synth NAME --out DIR [key=value ...]   a small synthetic dataset in a published on-disk format
//   inspect CONFIG [--split S] [key=value]  open the configured dataset, load every sample (so every
//                                           file is checked) and print counts, label and box
//                                           statistics, and every problem with its file
//   pack CONFIG --out FILE.h5 [--split S]   write the preprocessed samples of splits to an HDF5 pack
//   align IN --out OUT [--size 200]          detect, landmark and align every face photo of a folder
//   frames DISFA_ROOT [--out DIR]            extract DISFA's left-camera videos into 0-based frames
#include "core/config.h"
#include "data/dataset.h"
#include "data/disfa/videos.h"
#include "data/face/align.h"
#include "data/pack.h"
#include "data/synth.h"
#include "data/transform.h"
#include "tools/cli/commands.h"
#include "tools/cli/count_progress.h"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>

namespace facet::cli {
namespace {

// What `inspect` gathers over one split.
struct SplitStats {
  int64_t samples = 0;
  std::vector<std::string> problems;  // "sample <index>: <file>: <what>", one per failed sample
  std::map<std::string, int64_t> image_sizes;  // "CxHxW" -> count
  torch::Tensor positives, unknown;          // multi-label [L] sums
  std::map<int64_t, int64_t> classes;        // single-label counts
  int64_t boxes = 0;
  std::vector<float> box_widths, box_heights;
  std::map<int64_t, int64_t> box_labels;
};

void add(SplitStats& st, const data::Sample& s) {
  ++st.samples;
  if (s.fields.contains("image")) {
    std::vector<std::string> dims;
    for (const auto d : s.fields.at("image").sizes()) dims.push_back(std::to_string(d));
    ++st.image_sizes[join(dims, "x")];
  }
  if (s.fields.contains("labels")) {
    const auto labels = s.fields.at("labels").to(torch::kFloat);
    const auto known = s.fields.contains("label_mask") ? s.fields.at("label_mask").to(torch::kFloat) : torch::ones_like(labels);
    const auto pos = labels * known, unk = 1 - known;
    st.positives = st.positives.defined() ? st.positives + pos : pos;
    st.unknown = st.unknown.defined() ? st.unknown + unk : unk;
  }
  if (s.fields.contains("label")) ++st.classes[s.fields.at("label").item<int64_t>()];
  if (s.ragged.contains("boxes") && s.ragged.at("boxes").numel() > 0) {
    const auto b = s.ragged.at("boxes").to(torch::kFloat);
    st.boxes += b.size(0);
    for (int64_t i = 0; i < b.size(0); ++i) {
      st.box_widths.push_back((b[i][2] - b[i][0]).item<float>());
      st.box_heights.push_back((b[i][3] - b[i][1]).item<float>());
    }
    if (s.ragged.contains("box_labels")) {
      const auto labels = s.ragged.at("box_labels");
      for (int64_t i = 0; i < labels.numel(); ++i) ++st.box_labels[labels[i].item<int64_t>()];
    }
  }
}

SplitStats inspect_split(const data::Dataset& dataset, const std::string& split, int workers) {
  const int64_t n = dataset.size();
  std::vector<std::optional<data::Sample>> samples(static_cast<size_t>(n));
  std::vector<std::string> errors(static_cast<size_t>(n));
  std::atomic<int64_t> next{0}, done{0};
  CountProgress progress(fmt::format("checking {}", split), n);
  std::mutex progress_mutex;
  auto work = [&] {
    for (int64_t i; (i = next++) < n;) {
      try {
        samples[static_cast<size_t>(i)] = dataset.get(i, 0);
      } catch (const std::exception& e) {
        errors[static_cast<size_t>(i)] = e.what();
      }
      const int64_t d = ++done;
      std::lock_guard lock(progress_mutex);
      progress.update(d);
    }
  };
  std::vector<std::thread> threads;
  for (int w = 0; w < std::max(1, workers); ++w) threads.emplace_back(work);
  for (auto& t : threads) t.join();
  SplitStats st;
  // Sequential, in index order, so the report does not depend on the thread count.
  for (int64_t i = 0; i < n; ++i) {
    // The sample's index too: one file can be read by several samples (a CT slice in two stacks).
    if (!errors[static_cast<size_t>(i)].empty()) st.problems.push_back(fmt::format("sample {}: {}", i, errors[static_cast<size_t>(i)]));
    else add(st, *samples[static_cast<size_t>(i)]);
  }
  return st;
}

std::string name_of(const std::vector<std::string>& names, int64_t i) {
  return i >= 0 && i < static_cast<int64_t>(names.size()) ? names[static_cast<size_t>(i)] : std::to_string(i);
}

void print_stats(const std::string& split, const data::Dataset& dataset, const SplitStats& st) {
  const auto names = dataset.label_names();
  fmt::print("\n== {}: {} samples loaded, {} problem(s)\n", split, st.samples, st.problems.size());
  for (const auto& [size, count] : st.image_sizes) fmt::print("  image {:<20} {:>8}\n", size, count);
  if (st.positives.defined()) {
    fmt::print("  {:<24} {:>9} {:>8} {:>9}\n", "label", "positive", "rate", "unknown");
    for (int64_t i = 0; i < st.positives.numel(); ++i) {
      const double pos = st.positives[i].item<double>(), unk = st.unknown[i].item<double>();
      const double known = static_cast<double>(st.samples) - unk;
      fmt::print("  {:<24} {:>9.0f} {:>7.1f}% {:>9.0f}\n", name_of(names, i), pos, known > 0 ? 100 * pos / known : 0.0, unk);
    }
  }
  for (const auto& [c, count] : st.classes) fmt::print("  class {:<18} {:>9}\n", name_of(names, c), count);
  if (st.boxes > 0) {
    auto describe = [](std::vector<float> v) {
      std::sort(v.begin(), v.end());
      return fmt::format("min {:.1f}  median {:.1f}  max {:.1f}", v.front(), v[v.size() / 2], v.back());
    };
    fmt::print("  boxes {} ({:.2f} per sample); width {}; height {}\n", st.boxes,
               static_cast<double>(st.boxes) / static_cast<double>(std::max<int64_t>(1, st.samples)),
               describe(st.box_widths), describe(st.box_heights));
    for (const auto& [label, count] : st.box_labels) fmt::print("  boxes of {:<15} {:>9}\n", name_of(names, label), count);
  }
  for (const auto& p : st.problems) fmt::print("  problem: {}\n", p);
}

}  // namespace

void add_data_command(CLI::App& app) {
  auto* data = app.add_subcommand("data", "Dataset tools: synthesise a dataset in a published format, inspect, pack, align faces, extract video frames");
  data->require_subcommand(1);

  struct SynthArgs {
    std::string name, out;
    std::vector<std::string> options;
  };
  auto synth_args = std::make_shared<SynthArgs>();
  auto* synth = data->add_subcommand(
      "synth", "Write a small synthetic dataset in a published on-disk layout (see `facet list` for the writers)");
  synth->add_option("name", synth_args->name, "Writer name, e.g. bp4d, disfa, vindr-cxr, deeplesion")->required();
  synth->add_option("--out", synth_args->out, "Output directory (the dataset root)")->required();
  synth->add_option("options", synth_args->options, "Writer options as key=value (e.g. subjects=6 seed=1)");
  synth->callback([synth_args] {
    Config c = Config::parse("name: " + synth_args->name, "facet data synth");
    for (const auto& o : synth_args->options) {
      const auto eq = o.find('=');
      if (eq == std::string::npos) fail("facet data synth: option \"{}\": expected key=value", o);
      c.set(o.substr(0, eq), o.substr(eq + 1), "command line");
    }
    const auto result = data::synth_registry().create(c, synth_args->out);
    c.check_unused();
    fmt::print("{}\nwrote {} files under {}\n", result.summary, result.files, result.root.string());
  });

  struct InspectArgs {
    std::string config;
    std::vector<std::string> overrides;
    std::vector<std::string> splits;
    int workers = 0;
  };
  auto inspect_args = std::make_shared<InspectArgs>();
  auto* inspect = data->add_subcommand("inspect", "Load every sample of the configured dataset and report statistics "
                                                  "and every problem with its file");
  inspect->add_option("config", inspect_args->config, "Experiment config (YAML); its `data` node is used")
      ->required();
  inspect->add_option("overrides", inspect_args->overrides, "Dotted overrides (data.root=/path)");
  inspect->add_option("--split", inspect_args->splits, "Split(s) to check (default: train_split and eval_split)");
  inspect->add_option("--workers", inspect_args->workers, "Loading threads (default: all cores)");
  inspect->callback([inspect_args] {
    Config config = Config::load(inspect_args->config, inspect_args->overrides);
    const Config node = config.at("data");
    auto splits = inspect_args->splits;
    if (splits.empty()) splits = {node.get<std::string>("train_split", "train"), node.get<std::string>("eval_split", "val")};
    // Only the dataset's own keys matter here: the rest of the experiment, and the data keys the
    // loader and trainer read, are not typos; a misspelt dataset key is (checked once it is open).
    for (const auto& key : config.keys())
      if (key != "data") config.consume(key);
    for (const auto& key : data::loader_keys())
      if (node.has(key)) node.consume(key);
    const int workers = inspect_args->workers > 0 ? inspect_args->workers
                                                  : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    std::vector<std::shared_ptr<data::Dataset>> datasets;
    for (const auto& split : splits) datasets.push_back(data::open_dataset(node, split));
    config.check_unused();
    size_t problems = 0;
    for (size_t i = 0; i < splits.size(); ++i) {
      const SplitStats st = inspect_split(*datasets[i], splits[i], workers);
      print_stats(splits[i], *datasets[i], st);
      problems += st.problems.size();
    }
    std::fflush(stdout);  // the statistics before the verdict, also when both go to one pipe
    if (problems > 0) fail("{} sample(s) could not be loaded (listed above)", problems);
  });

  struct PackArgs {
    std::string config, out;
    std::vector<std::string> overrides, splits;
  };
  auto pack_args = std::make_shared<PackArgs>();
  auto* pack = data->add_subcommand(
      "pack", "Write the preprocessed samples (data.pack_transforms applied) of splits to one HDF5 file; train from "
              "it with data.pack=FILE");
  pack->add_option("config", pack_args->config, "Experiment config (YAML); its `data` node is used")
      ->required();
  pack->add_option("overrides", pack_args->overrides, "Dotted overrides");
  pack->add_option("--out", pack_args->out, "The HDF5 file to write (splits are added to an existing pack)")->required();
  pack->add_option("--split", pack_args->splits, "Split(s) to pack (default: train_split and eval_split)");
  pack->callback([pack_args] {
    Config config = Config::load(pack_args->config, pack_args->overrides);
    const Config node = config.at("data");
    if (node.has("pack")) fail("{}: data.pack: packing reads the original files; remove data.pack", node.where("pack"));
    auto splits = pack_args->splits;
    if (splits.empty()) splits = {node.get<std::string>("train_split", "train"), node.get<std::string>("eval_split", "val")};
    std::vector<std::shared_ptr<data::Transform>> preprocessing;
    if (node.has("pack_transforms")) preprocessing = data::build_transforms(node.at("pack_transforms"));
    const auto preprocess = data::Preprocess::of(node);
    config.consume();
    for (const auto& split : splits) {
      const auto reader = data::dataset_registry().create(node, split);
      CountProgress progress(fmt::format("packing {}", split), reader->size());
      data::write_pack(pack_args->out, split, *reader, preprocessing, preprocess, [&](int64_t done) { progress.update(done); });
    }
    fmt::print("wrote {} ({}), preprocessing hash {}\n", pack_args->out, join(splits), preprocess.hash);
  });

  struct AlignArgs {
    std::string in, out;
    int64_t size = 200;
    double box_enlarge = 2.9;
    int workers = 0;
  };
  auto align_args = std::make_shared<AlignArgs>();
  auto* align = data->add_subcommand(
      "align", "Detect the face in every image of a folder (dlib), find its 68 landmarks and align it to the JAA-Net "
               "crop; crops keep their relative paths, landmarks.txt lies beside them");
  align->add_option("in", align_args->in, "Folder of face photographs (searched recursively)")->required()->check(CLI::ExistingDirectory);
  align->add_option("--out", align_args->out, "Output folder")->required();
  align->add_option("--size", align_args->size, "Side of the aligned crop (default 200)");
  align->add_option("--box-enlarge", align_args->box_enlarge, "Face box enlargement (default 2.9, JAA-Net)");
  align->add_option("--workers", align_args->workers, "Threads (default: all cores)");
  align->callback([align_args] {
    data::face::AlignOptions options;
    options.size = align_args->size;
    options.box_enlarge = align_args->box_enlarge;
    const int workers = align_args->workers > 0 ? align_args->workers
                                                : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    std::unique_ptr<CountProgress> progress;
    const auto report = data::face::align_folder(align_args->in, align_args->out, options, workers,
                                                 [&](int64_t done, int64_t total) {
                                                   if (!progress) progress = std::make_unique<CountProgress>("aligning", total);
                                                   progress->update(done);
                                                 });
    fmt::print("aligned {} of {} images into {}\n", report.aligned, report.images, align_args->out);
    if (!report.no_face.empty())
      fmt::print("no face found in {} image(s), listed in {}/no_face.txt: {}{}\n", report.no_face.size(), align_args->out,
                 join(std::vector<std::string>(report.no_face.begin(), report.no_face.begin() + std::min<size_t>(5, report.no_face.size()))),
                 report.no_face.size() > 5 ? ", ..." : "");
    if (report.images > 0 && report.aligned == 0) fail("facet data align: no face found in any of {} images", report.images);
  });

  struct FramesArgs {
    std::string root, out, ext = "png";
    int workers = 0;
  };
  auto frames_args = std::make_shared<FramesArgs>();
  auto* frames = data->add_subcommand(
      "frames", "Extract DISFA's left-camera videos (Videos_LeftCamera/LeftVideoSN001_comp.avi ...) into the frames the "
                "disfa reader reads: <out>/<SN>/<t>.png, t = label frame - 1 (an interrupted run resumes)");
  frames->add_option("root", frames_args->root, "The DISFA download (holds Videos_LeftCamera/ and ActionUnit_Labels/)")
      ->required()->check(CLI::ExistingDirectory);
  frames->add_option("--out", frames_args->out, "Output folder (default ROOT/img, the reader's images_dir default)");
  frames->add_option("--ext", frames_args->ext, "png (lossless, default) or jpg");
  frames->add_option("--workers", frames_args->workers, "Videos decoded at once (default: all cores)");
  frames->callback([frames_args] {
    data::disfa::FrameExtraction options;
    options.ext = frames_args->ext;
    options.workers = frames_args->workers > 0 ? frames_args->workers
                                               : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    std::unique_ptr<CountProgress> progress;
    const auto videos = data::disfa::left_camera_videos(frames_args->root).size();
    const auto subjects = data::disfa::extract_frames(frames_args->root, frames_args->out, options,
                                                      [&](int64_t, int64_t finished, int64_t total) {
                                                        if (!progress) progress = std::make_unique<CountProgress>("videos", total);
                                                        progress->update(finished);
                                                      });
    int64_t total = 0;
    for (const auto& s : subjects) {
      total += s.frames;
      const std::string labels = s.label_lines < 0 ? "no label files"
                                 : s.label_lines == s.frames ? fmt::format("{} label lines", s.label_lines)
                                                             : fmt::format("{} label lines: {} frame(s) {} the labels", s.label_lines,
                                                                           std::abs(s.label_lines - s.frames),
                                                                           s.label_lines > s.frames ? "fewer than" : "more than");
      fmt::print("{}: {} frames{} ({})\n", s.subject, s.frames, s.resumed ? " (already extracted)" : "", labels);
    }
    const std::string out = frames_args->out.empty() ? (std::filesystem::path(frames_args->root) / "img").string() : frames_args->out;
    fmt::print("extracted {} frames of {} videos into {}\n", total, videos, out);
  });
}

}  // namespace facet::cli
