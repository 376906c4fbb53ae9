// Mo-SCL with a two-stage detector on a synthetic DeepLesion (`facet data synth deeplesion`): a
// Faster R-CNN on a tiny backbone with dropout trains with mo_scl and the MC-dropout uncertainty
// (scores of the detections), and its FROC is computed; and the label-noise case of issue 15 — a
// fraction of the training lesions with shifted boxes — trained with random order, loss-only
// self-paced learning and Mo-SCL, each FROC printed (the test asserts that all run, not which wins).
#include "core/config.h"
#include "curriculum/samplers.h"
#include "data/synth.h"
#include "models/backbones/backbone.h"
#include "tests/support/scratch.h"
#include "tests/support/synth_detector.h"
#include "train/trainer.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <numeric>
#include <fstream>
#include <random>
#include <sstream>

namespace facet::train::test_detection {
namespace {

namespace fs = std::filesystem;

// Three convs to one stride-4 map with channel dropout before the last, so MC dropout has something
// to sample: `curriculum_tiny_stride4` (in_channels, channels, dropout).
FACET_REGISTER(models::backbone_registry(), "curriculum_tiny_stride4", "Test: three convs with channel dropout, one stride-4 map",
               [](const Config& c) {
                 return std::make_shared<test_support::TinyDropoutBackbone>(c.get<int64_t>("in_channels", 3), c.get<int64_t>("channels", 32),
                                                                            c.get<double>("dropout", 0.1), /*batch_norm=*/false);
               });

// Splits one DL_info.csv line into fields ("..." fields keep their commas).
std::vector<std::string> csv_fields(const std::string& line) {
  std::vector<std::string> out(1);
  bool quoted = false;
  for (char ch : line) {
    if (ch == '"') quoted = !quoted;
    if (ch == ',' && !quoted) out.emplace_back();
    else out.back() += ch;
  }
  return out;
}

// Moves the box of a `fraction` of the training lesions by 0.6 to 1.0 of its size in x and y (random
// signs), clipped to the image: the "poorly labelled" lesions of the label-noise case. Returns how
// many were moved, and how many training lesions there are.
std::pair<int, int> shift_training_boxes(const fs::path& csv, double fraction, int64_t image_size, uint32_t seed) {
  std::ifstream in(csv);
  std::string header, line;
  std::getline(in, header);
  std::vector<std::string> lines;
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(0, 1);
  int moved = 0, training = 0;
  while (std::getline(in, line)) {
    auto f = csv_fields(line);
    training += f.size() == 18 && f[17] == "1";
    if (f.size() == 18 && f[17] == "1" && u(rng) < fraction) {
      std::vector<double> b;
      std::stringstream ss(f[6].substr(1, f[6].size() - 2));
      for (std::string v; std::getline(ss, v, ',');) b.push_back(std::stod(v));
      const double w = b[2] - b[0], h = b[3] - b[1];
      const double dx = (u(rng) < 0.5 ? -1 : 1) * w * (0.6 + 0.4 * u(rng)), dy = (u(rng) < 0.5 ? -1 : 1) * h * (0.6 + 0.4 * u(rng));
      const double x = std::clamp(b[0] + dx, 1.0, static_cast<double>(image_size) - w - 1);
      const double y = std::clamp(b[1] + dy, 1.0, static_cast<double>(image_size) - h - 1);
      f[6] = fmt::format("\"{:.4g}, {:.4g}, {:.4g}, {:.4g}\"", x, y, x + w, y + h);
      ++moved;
    }
    lines.push_back(join(f, ","));
  }
  in.close();
  std::ofstream out(csv);
  out << header << "\n";
  for (const auto& l : lines) out << l << "\n";
  return {moved, training};
}

Config detector_config(const fs::path& data, const std::string& sampler, int64_t steps, const std::string& extra = "") {
  test_support::SynthDetector d;
  d.root = data;
  d.experiment = "scl_synth";
  d.backbone = "{name: curriculum_tiny_stride4, in_channels: 3, dropout: 0.1}";
  d.sampler = sampler;
  d.steps = steps;
  d.extra = extra;
  return test_support::synth_detector_config(d);
}

double sens_at(const std::map<std::string, double>& m, const std::string& fps) { return test_support::overall_froc(m, "sens@" + fps); }
double sens_at_4(const std::map<std::string, double>& m) { return sens_at(m, "4"); }

TEST(CurriculumDetection, FasterRcnnTrainsWithMoSclAndMcDropoutScores) {
  const fs::path data = test_support::scratch_dir("facet_scl_det", "synth");
  data::synth_registry().create(Config::parse("{name: deeplesion, patients: 10, slices: 10, size: 64, lesions_per_patient: 2, seed: 3}"), data);
  Config c = detector_config(data, "{name: mo_scl, difficulty: {uncertainty: mc_dropout}}", 8,
                             "hooks: [{name: mc_dropout, passes: 3, top_k: 5}]");
  Trainer t(c, test_support::scratch_path("facet_scl_det", "run"));
  const RunResult r = t.fit();
  EXPECT_EQ(r.step, 8);
  const auto& e = dynamic_cast<curriculum::CurriculumSampler&>(t.sampler()).estimator();
  std::vector<bool> known;
  e.uncertainty(&known);
  int64_t seen = 0, with_u = 0;
  for (int64_t i = 0; i < e.size(); ++i) seen += e.visits(i) > 0, with_u += known[static_cast<size_t>(i)];
  EXPECT_EQ(seen, std::min<int64_t>(16, e.size()));
  EXPECT_EQ(with_u, seen) << "every trained image got an MC-dropout score variance";
  const double s = sens_at_4(r.last_eval);
  EXPECT_TRUE(s >= 0 && s <= 1);
}

int64_t env_int(const char* name, int64_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::stoll(v) : fallback;
}

// Issue 15 item 7: 30% of the training lesions with shifted boxes; the same detector, seed and
// steps with random order, loss-only self-paced learning and Mo-SCL (loss fluctuation); sensitivity at 4 FPs on the clean
// test split of each is printed. Not tuned for Mo-SCL to win. 50 steps per run keep the test short;
// FACET_SCL_NOISE_STEPS, FACET_SCL_NOISE_SEEDS (seeds 1..N), FACET_SCL_NOISE_PATIENTS and
// FACET_SCL_NOISE_PERCENT (0: the clean control) make the longer comparison.
TEST(CurriculumDetection, LabelNoiseRandomOrderVersusMoScl) {
  const auto start = std::chrono::steady_clock::now();
  const int64_t steps = env_int("FACET_SCL_NOISE_STEPS", 50), seeds = env_int("FACET_SCL_NOISE_SEEDS", 1);
  const fs::path data = test_support::scratch_dir("facet_scl_det", "noisy");
  const int64_t patients = env_int("FACET_SCL_NOISE_PATIENTS", 20);
  data::synth_registry().create(
      Config::parse(fmt::format("{{name: deeplesion, patients: {}, slices: 10, size: 64, lesions_per_patient: 3, seed: 5}}", patients)), data);
  const double fraction = static_cast<double>(env_int("FACET_SCL_NOISE_PERCENT", 30)) / 100.0;
  const auto [moved, training] = shift_training_boxes(data / "DL_info.csv", fraction, 64, 11);
  if (fraction > 0) {
    EXPECT_GT(moved, 3);
  }
  std::map<std::string, std::vector<double>> froc;
  std::map<std::string, std::map<std::string, std::vector<double>>> curve;  // sampler -> FP rate -> per seed
  const std::vector<std::string> rates = {"0.5", "1", "2", "4", "8", "16"};
  for (int64_t seed = 1; seed <= seeds; ++seed)
    for (const std::string sampler : {"random", "self_paced", "mo_scl"}) {
      Config c = detector_config(data, "{name: " + sampler + "}", steps);
      c.set("seed", std::to_string(seed));
      Trainer t(c, test_support::scratch_path("facet_scl_det", "noisy_run"));
      const auto eval = t.fit().last_eval;
      const double s = sens_at_4(eval);
      EXPECT_TRUE(s >= 0 && s <= 1) << sampler;
      for (const auto& fp : rates) curve[sampler][fp].push_back(sens_at(eval, fp));
      froc[sampler].push_back(s);
    }
  const auto mean = [](const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size()); };
  const auto summary = [&](const std::string& name) {
    const auto& v = froc.at(name);
    const double m = mean(v);
    double var = 0;
    for (double x : v) var += (x - m) * (x - m);
    std::vector<std::string> each;
    for (double x : v) each.push_back(fmt::format("{:.3f}", x));
    return fmt::format("{} {:.3f} ± {:.3f} [{}]", name, m, std::sqrt(var / static_cast<double>(v.size())), join(each));
  };
  std::printf("label noise (%d of %d training boxes shifted, p = %.2f), %lld steps, %lld seed(s), sens@4FP mean ± std [per seed]: %s; "
              "%s; %s; Mo-SCL - random %+.3f (%.0f s)\n",
              moved, training, fraction, static_cast<long long>(steps), static_cast<long long>(seeds), summary("random").c_str(), summary("self_paced").c_str(),
              summary("mo_scl").c_str(), mean(froc.at("mo_scl")) - mean(froc.at("random")),
              std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  // The FROC row of each (mean ± std over the seeds), as the ablation tables print it.
  for (const std::string sampler : {"random", "self_paced", "mo_scl"}) {
    std::string row;
    for (const auto& fp : rates) {
      const auto& v = curve[sampler][fp];
      const double m = mean(v);
      double var = 0;
      for (double x : v) var += (x - m) * (x - m);
      row += fmt::format("  @{} {:.3f}±{:.3f}", fp, m, std::sqrt(var / static_cast<double>(v.size())));
    }
    std::printf("  %-10s%s\n", sampler.c_str(), row.c_str());
  }
}

}  // namespace
}  // namespace facet::train::test_detection
