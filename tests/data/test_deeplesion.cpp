// DeepLesion: the reader against hand-made slices (3DCE's neighbour interpolation, missing
// neighbours, box conversion) and against the synthetic writer's output; errors name the file.
#include "core/config.h"
#include "core/csv.h"
#include "data/dataset.h"
#include "data/deeplesion/deeplesion.h"
#include "data/synth.h"
#include "tests/support/scratch.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>

#include <filesystem>
#include <fstream>

namespace facet::data::test_deeplesion {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

fs::path fresh_dir(const std::string& name) { return test_support::scratch_dir("facet_test_deeplesion", name); }

using test_support::message_of;

// Slices 1..n of series 000001_01_01, slice i filled with HU 10 * i.
void write_series(const fs::path& root, int n, int size = 8) {
  const fs::path dir = root / "Images_png" / "000001_01_01";
  fs::create_directories(dir);
  for (int i = 1; i <= n; ++i)
    ASSERT_TRUE(cv::imwrite((dir / fmt::format("{:03d}.png", i)).string(),
                            cv::Mat(size, size, CV_16UC1, cv::Scalar(deeplesion::kHuOffset + 10 * i))));
}

void write_info(const fs::path& root, double z_spacing, const std::string& box = "\"3, 2, 5, 6\"", int split = 1) {
  std::ofstream f(root / "DL_info.csv");
  f << "File_name,Patient_index,Study_index,Series_ID,Key_slice_index,Measurement_coordinates,Bounding_boxes,"
       "Lesion_diameters_Pixel_,Normalized_lesion_location,Coarse_lesion_type,Possibly_noisy,Slice_range,"
       "Spacing_mm_px_,Image_size,DICOM_windows,Patient_gender,Patient_age,Train_Val_Test\n";
  f << fmt::format("000001_01_01_010.png,1,1,1,10,\"4, 3, 5, 5, 4, 4, 5, 4\",{},\"2, 1\",\"0.5, 0.5, 0.5\",-1,0,"
                   "\"1, 20\",\"0.8, 0.8, {}\",\"8, 8\",\"-175, 275\",F,50,{}\n",
                   box, z_spacing, split);
}

std::shared_ptr<Dataset> open(const fs::path& root, int slices, const std::string& split = "train") {
  return dataset_registry().create(
      Config::parse(fmt::format("name: deeplesion\nroot: {}\nnum_slices: {}", root.string(), slices)), split);
}

TEST(DeepLesion, NeighbourSlicesFollow3dceInterpolation) {
  const fs::path root = fresh_dir("interp");
  write_series(root, 20);
  // 5 mm slices, 2 mm target: rel 0.4, weights a = 0.4 (far), b = 0.6 (near), computed once, so the
  // second neighbours (d = 0.8) reuse them: the reference code's quirk.
  write_info(root, 5.0);
  Sample s = open(root, 5)->get(0, 0);
  const auto centre = s.fields.at("image").mean({1, 2});
  EXPECT_TRUE(torch::allclose(centre, torch::tensor({96.0f, 96.0f, 100.0f, 104.0f, 104.0f}))) << centre;
  // The CSV box "3, 2, 5, 6" (1-based, inclusive) is [2, 1, 5, 6] in continuous pixels.
  EXPECT_TRUE(torch::allclose(s.ragged.at("boxes"), torch::tensor({{2.0f, 1.0f, 5.0f, 6.0f}})));
  EXPECT_EQ(s.ragged.at("box_types")[0].item<int64_t>(), -1);
  // Every ragged key is the boxes or a per-box field with one row per box, so transforms keep them in step.
  EXPECT_EQ(s.ragged.keys(), (std::vector<std::string>{"box_labels", "box_noisy", "box_recist", "box_types", "boxes"}));
  EXPECT_NO_THROW(check_per_box_fields(s, "test"));

  // 1 mm slices: rel 2, plain neighbours at ±2 and ±4; slice 14 is missing, so +4 steps back to 13.
  write_info(root, 1.0);
  fs::remove(root / "Images_png/000001_01_01/014.png");
  s = open(root, 5)->get(0, 0);
  EXPECT_TRUE(torch::allclose(s.fields.at("image").mean({1, 2}), torch::tensor({60.0f, 80.0f, 100.0f, 120.0f, 130.0f})));
}

TEST(DeepLesion, BadFilesAreErrorsNamingThem) {
  const fs::path root = fresh_dir("bad");
  write_series(root, 20);
  write_info(root, 5.0, "\"3, 2, oops, 6\"");
  EXPECT_THAT(message_of([&] { open(root, 3); }),
              HasSubstr("DL_info.csv:2: column Bounding_boxes: expected comma-separated numbers"));
  write_info(root, 5.0);
  fs::remove(root / "Images_png/000001_01_01/010.png");
  EXPECT_THAT(message_of([&] { open(root, 3)->get(0, 0); }),
              HasSubstr("Images_png/000001_01_01/010.png: no such slice file"));
  cv::imwrite((root / "Images_png/000001_01_01/010.png").string(), cv::Mat(8, 8, CV_8UC1, cv::Scalar(1)));
  EXPECT_THAT(message_of([&] { open(root, 3)->get(0, 0); }), HasSubstr("010.png: expected a single-channel 16-bit PNG"));
  { std::ofstream(root / "Images_png/000001_01_01/010.png") << "\x89PNG\r\n\x1a\n truncated"; }
  EXPECT_THAT(message_of([&] { open(root, 3)->get(0, 0); }), HasSubstr("010.png: cannot decode the PNG"));
  EXPECT_THAT(message_of([&] { open(root, 4); }), HasSubstr("num_slices: expected an odd positive number, got 4"));
  EXPECT_THAT(message_of([&] { open(root, 3, "test"); }), HasSubstr("no test lesions"));
}

TEST(DeepLesion, ReadsTheSyntheticDataset) {
  const fs::path root = fresh_dir("synth");
  const auto result = synth_registry().create(
      Config::parse("{name: deeplesion, patients: 5, slices: 12, size: 64, lesions_per_patient: 2}"), root);
  EXPECT_EQ(result.files, 5 * 12 + 1);
  const CsvTable info = CsvTable::read(root / "DL_info.csv");
  int64_t lesions = 0;
  for (const std::string split : {"train", "val", "test"}) {
    const auto d = open(root, 3, split);
    for (int64_t i = 0; i < d->size(); ++i) {
      const Sample s = d->get(i, 0);
      ASSERT_EQ(s.fields.at("image").sizes(), (std::vector<int64_t>{3, 64, 64}));
      lesions += s.ragged.at("boxes").size(0);
      // Air in the corner, and every lesion box brighter inside than the body's soft tissue (40 HU).
      EXPECT_NEAR(s.fields.at("image")[1][0][0].item<float>(), -1000.0f, 60.0f);
      const auto b = s.ragged.at("boxes");
      for (int64_t k = 0; k < b.size(0); ++k) {
        const int64_t cx = static_cast<int64_t>((b[k][0] + b[k][2]).item<float>() / 2);
        const int64_t cy = static_cast<int64_t>((b[k][1] + b[k][3]).item<float>() / 2);
        EXPECT_GT(s.fields.at("image")[1][cy][cx].item<float>(), 60.0f) << s.id;
      }
    }
  }
  EXPECT_EQ(lesions, static_cast<int64_t>(info.rows()));
}

}  // namespace
}  // namespace facet::data::test_deeplesion
