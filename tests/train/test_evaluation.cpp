// Evaluation and prediction apart from training: evaluation opens only its split and builds no
// optimiser; ragged outputs and text reach the predictions file and the pictures; metrics kept as
// per-sample records merge across ranks; each visualiser draws its task; `facet predict` runs a
// trained model on image files; evaluation results print their headline on one line.
#include "core/file_io.h"
#include "tests/support/ranks.h"
#include "tests/support/scratch.h"
#include "tests/support/paths.h"
#include "tests/train/toys.h"
#include "data/pack.h"
#include "data/synth.h"
#include "train/builder.h"
#include "train/caption.h"
#include "train/distributed.h"
#include "train/evaluator.h"
#include "train/metric_table.h"
#include "train/predictions.h"
#include "train/predictor.h"
#include "train/trainer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <cmath>
#include <sstream>

namespace facet::train::test_evaluation {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;
using toys::recording;

fs::path fresh_dir(const std::string& name) { return test_support::scratch_path("facet_eval", name); }

Config detector_config() {
  return Config::parse(R"(
experiment: toy_detector
data: {name: toy_squares, size: 24, batch_size: 8, workers: 1}
model: {name: toy_detector}
step: {name: model_losses}
metrics: [{name: toy_record_mean, key: box}]
optim: {name: adam, lr: 3.0e-3}
train: {max_steps: 3, eval_every: 0, log_images: 4, threads: 1}
)");
}

cv::Mat decode(const std::string& png) {
  return cv::imdecode(std::vector<uchar>(png.begin(), png.end()), cv::IMREAD_UNCHANGED);
}

// Evaluates `run`'s last checkpoint as `facet eval` does, on `split`.
EvalOutput evaluate_run(const fs::path& run, const std::string& split, const fs::path& predictions = {}) {
  const CheckpointTarget target = resolve_checkpoint(run, "last");
  Config config = Config::load(run / "config.yaml");
  const TrainOptions options = TrainOptions::from(config.at("train"));
  Runtime runtime = make_runtime(config, options, true);
  auto model = build_model(config, options, runtime.device);
  load_checkpoint_weights(*model, target.checkpoint, false, runtime.device);
  model->eval();
  Evaluator evaluator(config, split, runtime, options, *model);
  return evaluator.run(*model, predictions);
}

TEST(Evaluation, OpensOnlyItsSplit) {
  const fs::path run = fresh_dir("probe");
  {
    Trainer t(toys::shapes_experiment({"data.name=split_probe", "train.max_steps=2", "train.eval_every=0"}), run);
    t.fit();
  }
  recording().clear();
  const EvalOutput out = evaluate_run(run, "val");
  EXPECT_EQ(recording().opened_splits, (std::set<std::string>{"val"}));
  EXPECT_GT(out.metrics.at("val/accuracy"), 0.0);
}

TEST(Evaluation, RaggedOutputsAndTextReachThePredictionsAndPictures) {
  const fs::path run = fresh_dir("ragged");
  {
    Trainer t(detector_config(), run);
    t.fit();
  }
  const EvalOutput out = evaluate_run(run, "val", run / "eval" / "val_predictions");
  EXPECT_EQ(out.metrics.at("val/records"), 24);
  ASSERT_FALSE(fs::exists(run / "eval/val_predictions.csv")) << "ragged outputs do not fit a CSV";
  const std::string jsonl = read_file(run / "eval/val_predictions.jsonl");
  std::vector<nlohmann::json> lines;
  size_t at = 0;
  while (at < jsonl.size()) {
    const size_t end = jsonl.find('\n', at);
    lines.push_back(nlohmann::json::parse(jsonl.substr(at, end - at)));
    at = end + 1;
  }
  ASSERT_EQ(lines.size(), 24u);
  EXPECT_EQ(lines[3].at("index"), 3);
  EXPECT_EQ(lines[3].at("id"), "squares/3");
  EXPECT_EQ(lines[3].at("boxes").size(), 1u);
  EXPECT_EQ(lines[3].at("boxes")[0].size(), 4u);
  EXPECT_EQ(lines[3].at("scores").size(), 1u);
  EXPECT_THAT(lines[3].at("answer").get<std::string>(), HasSubstr("square at"));
  std::set<std::string> tags;
  for (const auto& [tag, png] : out.pictures) {
    tags.insert(tag);
    EXPECT_FALSE(decode(png.bytes).empty()) << tag;
  }
  EXPECT_EQ(tags, (std::set<std::string>{"val/inputs", "val/boxes"}));
}

// Two ranks evaluate halves of the split; the record metric sees all 24 records on both, the same
// value as one rank; the predictions file holds every sample once, in order.
TEST(Evaluation, RecordMetricsAndPredictionsAreGatheredAcrossRanks) {
  const fs::path run = fresh_dir("gathered");
  {
    Trainer t(detector_config(), run);
    t.fit();
  }
  const double one = evaluate_run(run, "val").metrics.at("val/record_mean");
  const fs::path dir = test_support::scratch_dir("facet_eval", "gathered_ranks");
  const auto codes = test_support::fork_ranks(2, pick_free_port(), dir, [&](int rank) {
    const EvalOutput out = evaluate_run(run, "val", dir / "predictions");
    write_file_atomic(dir / fmt::format("rank{}.txt", rank),
                      fmt::format("{:.9f} {}", out.metrics.at("val/record_mean"), out.metrics.at("val/records")));
  });
  ASSERT_EQ(codes, (std::vector<int>{0, 0})) << test_support::rank_errors(dir, 2);
  // Each rank runs the model on other batches than one rank does, and a float32 convolution's
  // rounding depends on the batch (oneDNN's blocking, thread count): equal to float precision.
  for (int rank = 0; rank < 2; ++rank) {
    double mean = 0;
    int records = 0;
    std::istringstream(read_file(dir / fmt::format("rank{}.txt", rank))) >> mean >> records;
    EXPECT_NEAR(mean, one, 1e-6 * std::abs(one)) << "rank " << rank;
    EXPECT_EQ(records, 24) << "rank " << rank;
  }
  const std::string jsonl = read_file(dir / "predictions.jsonl");
  EXPECT_EQ(std::count(jsonl.begin(), jsonl.end(), '\n'), 24);
  EXPECT_LT(jsonl.find("\"index\": 7,"), jsonl.find("\"index\": 8,"));
}

TEST(Evaluation, EachVisualiserDrawsItsTask) {
  data::Batch batch;
  batch.fields["image"] = torch::rand({3, 3, 40, 48});
  batch.fields["labels"] = torch::tensor({{1.f, 0.f, 1.f}, {0.f, 0.f, 1.f}, {1.f, 1.f, 0.f}});
  batch.fields["label"] = torch::tensor({0, 2, 1});
  batch.ragged["boxes"] = {torch::tensor({{2.f, 2.f, 20.f, 20.f}}), torch::zeros({0, 4}), torch::tensor({{5.f, 5.f, 9.f, 9.f}})};
  batch.text["answer"] = {"a circle", "nothing", "a long answer that must wrap onto more than one line of the caption"};
  batch.indices = torch::arange(3);
  batch.ids = {"a", "b", "c"};
  Outputs out;
  out["logits"] = torch::randn({3, 3});
  out["samples"] = torch::rand({3, 1, 32, 32});
  out.ragged["boxes"] = {torch::tensor({{3.f, 3.f, 19.f, 21.f}}), torch::tensor({{1.f, 1.f, 4.f, 4.f}}), torch::zeros({0, 4})};
  out.ragged["scores"] = {torch::tensor({0.9f}), torch::tensor({0.2f}), torch::zeros({0})};
  out.text["generated"] = {"a circle", "a square", "a long generated answer that also wraps"};
  const std::vector<std::string> names = {"AU1", "AU2", "AU4"};
  for (const std::string name : {"image_grid", "multilabel", "classification", "boxes", "image_text", "samples"}) {
    const auto v = visualizer_registry().create(Config::parse("name: " + name));
    const auto png = v->draw(VisualInput{batch, out, names}, 2);
    ASSERT_TRUE(png.has_value()) << name;
    const cv::Mat image = decode(png->bytes);
    ASSERT_FALSE(image.empty()) << name;
    EXPECT_EQ(image.rows, png->height) << name;
    EXPECT_GT(image.cols, 40) << name;
  }
  // Prediction has no truth: the predicted labels are drawn alone.
  data::Batch unlabelled = batch;
  unlabelled.fields.erase("labels");
  EXPECT_TRUE(visualizer_registry().create(Config::parse("name: multilabel"))->draw(VisualInput{unlabelled, out, names}, 2));
  // Nothing to draw is nothing drawn, not an error.
  const Outputs empty;
  EXPECT_FALSE(visualizer_registry().create(Config::parse("name: boxes"))->draw(VisualInput{batch, empty, names}, 2));
}

// A caption line stays inside its tile: the labels that do not fit are counted ("+9"), not drawn
// past the edge, where a clipped "AU17" read "AU1".
TEST(Evaluation, CaptionsStayInsideTheirTile) {
  std::vector<std::pair<std::string, cv::Scalar>> items;
  for (int i = 10; i < 28; ++i) items.emplace_back(fmt::format("AU{}", i), cv::Scalar(255, 255, 255));
  cv::Mat canvas(20, 400, CV_8UC3, cv::Scalar(0, 0, 0));
  put_caption(canvas, 2, 14, 158, "P:", items);
  EXPECT_GT(cv::countNonZero(canvas.colRange(0, 159).reshape(1)), 0);
  EXPECT_EQ(cv::countNonZero(canvas.colRange(161, 400).reshape(1)), 0) << "drawn past the tile's right edge";
  // Labels that fit are all drawn, with nothing counted.
  cv::Mat wide(20, 400, CV_8UC3, cv::Scalar(0, 0, 0)), narrow_items(20, 400, CV_8UC3, cv::Scalar(0, 0, 0));
  put_caption(wide, 2, 14, 398, "P:", {items.begin(), items.begin() + 3});
  put_caption(narrow_items, 2, 14, 158, "P:", {items.begin(), items.begin() + 3});
  const cv::Mat differs = wide != narrow_items;
  EXPECT_EQ(cv::countNonZero(differs.reshape(1)), 0);
}

// A generated image (here 3 x 160 x 160 = 76,800 values) is a picture, not a row of numbers; small
// outputs beside it stay, and the text too.
TEST(Evaluation, PredictionRowsLeaveOutImageSizedOutputs) {
  data::Batch batch;
  batch.indices = torch::tensor({4, 5});
  batch.ids = {"prompt4", "prompt5"};
  Outputs outputs;
  outputs["samples"] = torch::rand({2, 3, 160, 160});
  outputs["score"] = torch::tensor({0.25, 0.5});
  outputs.text["prompt"] = {"a <new1> cat", "a dog"};
  PredictionWriter writer;
  writer.add(batch, outputs);
  const fs::path stem = test_support::scratch_path("facet_eval", "image_rows") / "val_predictions";
  const auto files = writer.write(stem, nullptr, true);
  ASSERT_EQ(files.size(), 1u);
  const std::string text = read_file(files[0]);
  EXPECT_THAT(text, Not(HasSubstr("samples")));
  EXPECT_THAT(text, HasSubstr("\"score\": 0.25"));
  EXPECT_THAT(text, HasSubstr("\"prompt\": \"a <new1> cat\""));
  EXPECT_LT(text.size(), 400u);
}

TEST(Evaluation, HeadlineHoldsMeansAndSingleValuesTheTableTheRest) {
  const std::map<std::string, double> results = {{"val/f1/AU1", 0.5},     {"val/f1/AU2", 0.6}, {"val/f1/AU10", 0.7},
                                                 {"val/f1/mean", 0.6},    {"val/accuracy", 0.9},
                                                 {"val/pose/yaw", 3.0},   {"val/pose/mean", 3.0}};
  const MetricTable t = arrange_metrics(results, "val");
  EXPECT_EQ(headline_line(t, "val"), "accuracy 0.9000  f1/mean 0.6000  pose/mean 3.0000  pose/yaw 3.0000");
  EXPECT_LT(t.text.find("AU2"), t.text.find("AU10")) << t.text;
  EXPECT_THAT(t.csv, HasSubstr("AU10,0.700000"));
}

TEST(Evaluation, PredictRunsATrainedModelOnImageFiles) {
  const fs::path run = fresh_dir("predict_shapes");
  {
    Trainer t(toys::shapes_experiment({"train.max_steps=30", "train.eval_every=30"}), run);
    t.fit();
  }
  // Images on disk as a user has them: 8-bit PNG, colour, another size than the training data.
  const fs::path images = fresh_dir("predict_images");
  fs::create_directories(images / "sub");
  for (int i = 0; i < 3; ++i) {
    cv::Mat m(48, 48, CV_8UC3, cv::Scalar(20, 20, 20));
    cv::circle(m, {24, 24}, 10 + i, cv::Scalar(255, 255, 255), -1);
    cv::imwrite((images / (i == 2 ? "sub" : "") / fmt::format("img{}.png", i)).string(), m);
  }
  PredictOptions o;
  o.target = run;
  o.inputs = {images};
  o.overrides = {"data.eval_transforms=[{name: resize, size: [32, 32]}, {name: scale, factor: 0.00392156862745098}]"};
  const PredictSummary s = predict(o);
  EXPECT_EQ(s.images, 3);
  ASSERT_EQ(s.files.size(), 2u);
  const std::string jsonl = read_file(s.files[0]);
  EXPECT_EQ(std::count(jsonl.begin(), jsonl.end(), '\n'), 3);
  EXPECT_THAT(jsonl, HasSubstr("\"logits\": ["));
  EXPECT_THAT(read_file(s.files[1]), HasSubstr("id,logits[circle],logits[square],logits[triangle],logits[cross]"))
      << "a value per label is headed by the label";
  int pictures = 0;
  for (const auto& e : fs::directory_iterator(s.pictures)) pictures += !decode(read_file(e.path())).empty();
  EXPECT_EQ(pictures, 3);
  // A folder without images is a clear error.
  fs::create_directories(images / "empty");
  o.inputs = {images / "empty"};
  EXPECT_THAT(test_support::message_of([&] { predict(o); }), HasSubstr("no PNG, JPEG or DICOM image in this folder"));
}

// `facet predict` for every registered model kind: each is trained for one step on its synthetic
// data in the published layout, then run on images exported from that data as a user would have
// them (8-bit PNG files, and the landmarks.txt `facet data align` writes for the AU models).
struct ModelKind {
  std::string name, synth, config;
  std::vector<std::string> overrides;
};

void PrintTo(const ModelKind& k, std::ostream* os) { *os << k.name; }

class PredictEveryModelKind : public ::testing::TestWithParam<ModelKind> {};

TEST_P(PredictEveryModelKind, OnExportedImages) {
  const ModelKind& kind = GetParam();
  const fs::path data = fresh_dir("kind_data_" + kind.name), run = fresh_dir("kind_run_" + kind.name);
  data::synth_registry().create(Config::parse(kind.synth), data);
  std::vector<std::string> overrides = {"data.root=" + data.string(), "train.max_steps=1", "train.log_every=1000",
                                        "data.workers=1", "train.threads=1", "train.eval_every=0"};
  overrides.insert(overrides.end(), kind.overrides.begin(), kind.overrides.end());
  const Config config = kind.config.front() == '{' ? Config::parse(kind.config) : Config::load(kind.config, overrides);
  if (kind.config.front() == '{')
    for (const auto& o : overrides) const_cast<Config&>(config).set(o.substr(0, o.find('=')), o.substr(o.find('=') + 1));
  {
    Config c = config;
    c.set("metrics", "~");  // no evaluation: the checkpoint is what this test needs
    Trainer t(c, run);
    t.fit();
  }
  // Three evaluation images, exported as files.
  const auto eval = data::open_dataset(config.at("data"), config.get<std::string>("data.eval_split", "val"));
  const fs::path images = run / "exported";
  fs::create_directories(images);
  std::string landmarks;
  for (int64_t i = 0; i < 3; ++i) {
    const data::Sample s = eval->get(i, 0);
    const torch::Tensor hwc = s.fields.at("image").round().clamp(0, 255).to(torch::kUInt8).permute({1, 2, 0}).contiguous();
    cv::Mat m(static_cast<int>(hwc.size(0)), static_cast<int>(hwc.size(1)), hwc.size(2) == 3 ? CV_8UC3 : CV_8UC1, hwc.data_ptr<uint8_t>());
    if (hwc.size(2) == 3) cv::cvtColor(m, m, cv::COLOR_RGB2BGR);
    const std::string file = fmt::format("face{}.png", i);
    ASSERT_TRUE(cv::imwrite((images / file).string(), m));
    if (s.fields.contains("landmarks")) {
      landmarks += file;
      const torch::Tensor xy = s.fields.at("landmarks").reshape({-1});
      for (int64_t k = 0; k < xy.numel(); ++k) landmarks += fmt::format(" {:.2f}", xy[k].item<float>());
      landmarks += "\n";
    }
  }
  if (!landmarks.empty()) write_file_atomic(images / "landmarks.txt", landmarks);
  PredictOptions o;
  o.target = run;
  o.checkpoint = "last";
  o.inputs = {images};
  const PredictSummary summary = predict(o);
  EXPECT_EQ(summary.images, 3);
  const std::string jsonl = read_file(summary.files.at(0));
  EXPECT_EQ(std::count(jsonl.begin(), jsonl.end(), '\n'), 3) << jsonl.substr(0, 300);
  int pictures = 0;
  for (const auto& e : fs::directory_iterator(summary.pictures)) pictures += !decode(read_file(e.path())).empty();
  EXPECT_EQ(pictures, 3);
}

const std::string kSmallVit = "{image_size: 64, patch_size: 8, embed_dim: 96, depth: 2, num_heads: 4, drop_path: 0.0}";
const std::string kFaceEval = "[{name: resize, size: 64}, {name: scale, factor: 0.00392156862745098}]";

INSTANTIATE_TEST_SUITE_P(
    Models, PredictEveryModelKind,
    ::testing::Values(
        ModelKind{"resnet", "{name: lsd, train_images: 12, val_images: 6, size: 64}",
                  "{data: {name: image_folder, batch_size: 4, eval_transforms: " + kFaceEval + "}, "
                  "model: {name: resnet, depth: 18, num_classes: 6}, loss: {name: cross_entropy}, "
                  "optim: {name: sgd, lr: 0.01}, train: {}}",
                  {"data.transforms=" + kFaceEval}},
        ModelKind{"vit", "{name: lsd, train_images: 12, val_images: 6, size: 64}",
                  "{data: {name: image_folder, batch_size: 4, eval_transforms: " + kFaceEval + "}, "
                  "model: {name: vit, image_size: 64, patch_size: 8, embed_dim: 96, depth: 2, num_heads: 4, num_classes: 6}, "
                  "loss: {name: cross_entropy}, optim: {name: adamw, lr: 1.0e-3}, train: {}}",
                  {"data.transforms=" + kFaceEval}},
        ModelKind{"masked_cotex", "{name: lsd, train_images: 12, val_images: 6, size: 64}",
                  test_support::source_path("experiments/masked_cotex/lsd.yaml"),
                  {"data.batch_size=4", "model.vit=" + kSmallVit, "data.transforms=" + kFaceEval,
                   "data.eval_transforms=" + kFaceEval, "train.amp=none", "train.grad_accum=1"}},
        ModelKind{"mgrr_net", "{name: bp4d, frames_per_sequence: 4, size: 96}",
                  test_support::source_path("experiments/demo/mgrr_net_bp4d.yaml"),
                  {"data.batch_size=4", "data.transforms[0].size=80", "data.eval_transforms[0].size=80", "model.dim=32"}},
        ModelKind{"algr_net", "{name: bp4d, frames_per_sequence: 4, size: 96}",
                  test_support::source_path("experiments/algr_net/bp4d_fold1.yaml"),
                  {"data.batch_size=4", "model.backbone_depth=18", "model.dim=32", "data.transforms[0].size=80",
                   "data.transforms[1].size=72", "data.eval_transforms[0].size=80", "data.eval_transforms[1].size=72",
                   "train.max_epochs=~"}},
        ModelKind{"qface", "{name: face_tasks, train: 64, val: 6, size: 64}",
                  test_support::source_path("experiments/qface/synthetic.yaml"), {"data.batch_size=4"}},
        ModelKind{"emma", "{name: abaw, train_videos: 3, val_videos: 2, frames_per_video: 3, size: 64}",
                  test_support::source_path("experiments/emma/abaw4_mtl.yaml"),
                  {"data.batch_size=4", "model.vit=" + kSmallVit, "data.transforms=" + kFaceEval,
                   "data.eval_transforms=" + kFaceEval, "train.amp=none", "train.grad_accum=1", "model.dan=false",
                   "train.max_epochs=~", "schedule.warmup_epochs=~"}}),
    [](const ::testing::TestParamInfo<ModelKind>& info) { return info.param.name; });

}  // namespace
}  // namespace facet::train::test_evaluation
