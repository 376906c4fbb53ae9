// `facet predict` for a detector trained on DeepLesion: the user points at key-slice PNGs inside the
// download's series folders; each becomes the same multi-slice stack the dataset reads (spacing from
// the download's DL_info.csv, or data.predict_spacing_mm for a series outside one), and the
// predictions hold boxes and scores per image, with one picture each.
#include "core/config.h"
#include "core/file_io.h"
#include "data/image/image_io.h"
#include "data/synth.h"
#include "tests/support/scratch.h"
#include "train/predictor.h"
#include "train/trainer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace facet::train::test_predict_deeplesion {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

TEST(PredictDeepLesion, KeySlicesBecomeTheTrainingStackAndYieldBoxes) {
  const fs::path data = test_support::scratch_dir("facet_det_predict", "synth");
  data::synth_registry().create(Config::parse("{name: deeplesion, patients: 5, slices: 10, size: 64, seed: 2}"), data);
  const fs::path run = test_support::scratch_path("facet_det_predict", "run");
  Config config = Config::parse(fmt::format(R"(
experiment: det_predict
data:
  name: deeplesion
  root: {}
  num_slices: 3
  transforms: [{{name: ct_window, preset: mediastinum}}]
  eval_transforms: [{{name: ct_window, preset: mediastinum}}]
  batch_size: 2
  workers: 1
model:
  name: faster_rcnn
  backbone: {{name: test_tiny_stride4, in_channels: 3}}
  rpn: {{feat_channels: 16}}
  roi: {{fc: 32, score_threshold: 0.0}}
step: {{name: model_losses}}
optim: {{name: adam, lr: 1.0e-3}}
train: {{max_steps: 1, eval_every: 0, threads: 1}}
)", data.string()));
  {
    Trainer t(config, run, Mode::train);
    t.fit();
  }
  // Two key slices of the first series, as the user finds them in the download.
  const fs::path series = data / "Images_png" / "000001_01_01";
  ASSERT_TRUE(fs::exists(series / "004.png"));
  PredictOptions o;
  o.target = run;
  o.checkpoint = "last";
  o.inputs = {series / "004.png", series / "006.png"};
  const PredictSummary s = predict(o);
  EXPECT_EQ(s.images, 2);
  const std::string jsonl = read_file(s.files.at(0));
  EXPECT_EQ(std::count(jsonl.begin(), jsonl.end(), '\n'), 2);
  EXPECT_THAT(jsonl, HasSubstr("\"boxes\""));
  EXPECT_THAT(jsonl, HasSubstr("\"scores\""));
  EXPECT_THAT(jsonl, HasSubstr("004.png"));
  int pictures = 0;
  for (const auto& e : fs::directory_iterator(s.pictures)) pictures += data::image::read_image(e.path()).numel() > 0;
  EXPECT_EQ(pictures, 2);

  // A series copied out of the download has no DL_info.csv to give its slice interval: a clear error,
  // then the spacing given by hand.
  const fs::path loose = test_support::scratch_dir("facet_det_predict", "loose");
  fs::copy(series, loose / "000001_01_01");
  o.inputs = {loose / "000001_01_01" / "005.png"};
  o.out = test_support::scratch_path("facet_det_predict", "loose_out");
  EXPECT_THAT(test_support::message_of([&] { predict(o); }),
              AllOf(HasSubstr("005.png: no DL_info.csv row gives this series' spacing"), HasSubstr("data.predict_spacing_mm")));
  o.overrides = {"data.predict_spacing_mm=[0.8, 0.8, 2.5]"};
  EXPECT_EQ(predict(o).images, 1);
  // A file that is not a numbered slice is named.
  o.inputs = {data / "DL_info.csv"};
  EXPECT_THAT(test_support::message_of([&] { predict(o); }), HasSubstr("DL_info.csv: expected a DeepLesion slice <NNN>.png"));
}

}  // namespace
}  // namespace facet::train::test_predict_deeplesion
