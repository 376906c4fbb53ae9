// DeepLesion as the lesion detectors read it: the slice-interpolation switch, the capped spacing
// resize, RECIST marks and slice thickness, GrabCut pseudo-masks, and the SATr augmentations
// (shift-scale-rotate, flip), windowing and padding keeping boxes, types, masks and RECIST in step.
#include "core/config.h"
#include "data/dataset.h"
#include "data/deeplesion/deeplesion.h"
#include "data/synth.h"
#include "data/transform.h"
#include "tests/support/scratch.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <filesystem>
#include <fstream>

namespace facet::data::test_lesion_data {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// Slices 1..n of series 000001_01_01 (size x size): slice i is HU 10 * i, plus a disc of HU `disc`
// (radius r at (cx, cy), 0-based pixel centres) when r > 0.
void write_series(const fs::path& root, int n, int size, double disc = 0, int cx = 0, int cy = 0, int r = 0) {
  const fs::path dir = root / "Images_png" / "000001_01_01";
  fs::create_directories(dir);
  for (int i = 1; i <= n; ++i) {
    cv::Mat m(size, size, CV_16UC1, cv::Scalar(deeplesion::kHuOffset + 10 * i));
    if (r > 0) cv::circle(m, cv::Point(cx, cy), r, cv::Scalar(deeplesion::kHuOffset + disc), cv::FILLED);
    ASSERT_TRUE(cv::imwrite((dir / fmt::format("{:03d}.png", i)).string(), m));
  }
}

// One lesion on key slice 10: RECIST and box as the CSV writes them (1-based pixels).
void write_info(const fs::path& root, double pixel_mm, double z_mm, const std::string& recist, const std::string& box,
                int size) {
  std::ofstream f(root / "DL_info.csv");
  f << "File_name,Patient_index,Study_index,Series_ID,Key_slice_index,Measurement_coordinates,Bounding_boxes,"
       "Lesion_diameters_Pixel_,Normalized_lesion_location,Coarse_lesion_type,Possibly_noisy,Slice_range,"
       "Spacing_mm_px_,Image_size,DICOM_windows,Patient_gender,Patient_age,Train_Val_Test\n";
  f << fmt::format("000001_01_01_010.png,1,1,1,10,\"{}\",\"{}\",\"2, 1\",\"0.5, 0.5, 0.5\",4,0,\"1, 20\",\"{}, {}, {}\","
                   "\"{}, {}\",\"-175, 275\",F,50,3\n",
                   recist, box, pixel_mm, pixel_mm, z_mm, size, size);
}

std::shared_ptr<Dataset> open(const fs::path& root, const std::string& extra) {
  return dataset_registry().create(Config::parse(fmt::format("{{name: deeplesion, root: {}, {}}}", root.string(), extra)), "test");
}

torch::Tensor centre_values(const Sample& s) { return s.fields.at("image").mean({1, 2}); }

TEST(LesionData, SliceInterpolationReferenceQuirkOrExact) {
  const fs::path root = test_support::scratch_dir("facet_test_lesion", "interp");
  write_series(root, 20, 8);
  write_info(root, 0.8, 5.0, "4, 3, 5, 5, 4, 4, 5, 4", "3, 2, 5, 6", 8);
  // 5 mm slices, 2 mm apart: rel 0.4. Offsets 0.4, 0.8, 1.2 slices. The reference reuses the weights
  // of 0.4 (0.4 far, 0.6 near) at every offset; exact interpolation weighs each offset by itself.
  auto reference = centre_values(open(root, "num_slices: 7")->get(0, 0));
  auto exact = centre_values(open(root, "num_slices: 7, slice_interpolation: exact")->get(0, 0));
  EXPECT_TRUE(torch::allclose(reference, torch::tensor({86.0f, 96.0f, 96.0f, 100.0f, 104.0f, 104.0f, 114.0f}))) << reference;
  EXPECT_TRUE(torch::allclose(exact, torch::tensor({88.0f, 92.0f, 96.0f, 100.0f, 104.0f, 108.0f, 112.0f}))) << exact;
  EXPECT_THAT(test_support::message_of([&] { open(root, "slice_interpolation: cubic"); }),
              HasSubstr("slice_interpolation: expected reference or exact, got \"cubic\""));
}

TEST(LesionData, SpacingResizeIsCappedNotScaledPast) {
  const fs::path root = test_support::scratch_dir("facet_test_lesion", "resize");
  write_series(root, 20, 64);
  write_info(root, 0.8, 2.0, "20, 30, 40, 30, 30, 25, 30, 35", "15, 20, 45, 40", 64);
  // 0.8 mm pixels to 0.4 mm: x2 = 128 px, which 3DCE caps at MAX_SIZE (here 100): 100 px, not 200.
  Sample s = open(root, "norm_spacing_mm: 0.4, image_size: 100")->get(0, 0);
  EXPECT_EQ(s.fields.at("image").sizes(), (std::vector<int64_t>{3, 100, 100}));
  const float f = 100.0f / 64.0f;
  EXPECT_TRUE(torch::allclose(s.ragged.at("boxes"), torch::tensor({{14.0f * f, 19.0f * f, 45.0f * f, 40.0f * f}})));
  EXPECT_NEAR(s.fields.at("spacing")[0].item<float>(), 0.8f / f, 1e-5);
  EXPECT_NEAR(s.fields.at("spacing")[2].item<float>(), 2.0f, 1e-6);
  // Under the cap: the spacing alone decides (128 px), and a coarser target shrinks (32 px).
  EXPECT_EQ(open(root, "norm_spacing_mm: 0.4, image_size: 512")->get(0, 0).fields.at("image").size(1), 128);
  EXPECT_EQ(open(root, "norm_spacing_mm: 1.6, image_size: 100")->get(0, 0).fields.at("image").size(1), 32);
  // Without spacing normalisation image_size is mmdet's keep-ratio resize of the longer side.
  EXPECT_EQ(open(root, "image_size: 96")->get(0, 0).fields.at("image").size(2), 96);
}

TEST(LesionData, RecistThicknessTypesAndSpacing) {
  const fs::path root = test_support::scratch_dir("facet_test_lesion", "recist");
  write_series(root, 20, 64);
  write_info(root, 0.7, 5.0, "20, 30, 40, 30, 30, 25, 30, 35", "15, 20, 45, 40", 64);
  const Sample s = open(root, "num_slices: 3")->get(0, 0);
  // 1-based pixel x is the continuous coordinate x - 0.5.
  EXPECT_TRUE(torch::allclose(s.ragged.at("box_recist"),
                              torch::tensor({{{19.5f, 29.5f}, {39.5f, 29.5f}, {29.5f, 24.5f}, {29.5f, 34.5f}}})));
  EXPECT_FLOAT_EQ(s.fields.at("thickness").item<float>(), 5.0f);
  EXPECT_EQ(s.fields.at("thickness").dim(), 0);
  EXPECT_EQ(s.ragged.at("box_types")[0].item<int64_t>(), 4);  // liver
  EXPECT_NEAR(s.fields.at("spacing")[0].item<float>(), 0.7f, 1e-6);
  EXPECT_NO_THROW(check_per_box_fields(s, "test"));
  EXPECT_FALSE(s.ragged.contains("box_masks"));
}

// A bright disc (radius 10) in soft tissue, measured as the annotators do: GrabCut recovers the disc.
TEST(LesionData, GrabCutPseudoMaskFollowsTheLesion) {
  const fs::path root = test_support::scratch_dir("facet_test_lesion", "grabcut");
  write_series(root, 20, 64, 400, 30, 34, 10);
  // RECIST: long axis horizontal through the centre, short axis vertical (1-based: centre 31, 35);
  // the box is the RECIST extremes +- 5 px.
  write_info(root, 0.7, 2.0, "21, 35, 41, 35, 31, 25, 31, 45", "16, 20, 46, 50", 64);
  const Sample s = open(root, "num_slices: 3, masks: grabcut")->get(0, 0);
  const auto masks = s.ragged.at("box_masks");
  ASSERT_EQ(masks.sizes(), (std::vector<int64_t>{1, 64, 64}));
  cv::Mat disc = cv::Mat::zeros(64, 64, CV_8UC1);
  cv::circle(disc, cv::Point(30, 34), 10, cv::Scalar(1), cv::FILLED);
  const auto truth = torch::from_blob(disc.data, {64, 64}, torch::kUInt8).to(torch::kFloat);
  const auto m = masks[0];
  const double inter = (m * truth).sum().item<double>(), uni = ((m + truth) > 0).sum().item<double>();
  EXPECT_GT(inter / uni, 0.8) << "IoU with the lesion";
  // Nothing outside the box (the initial "probably foreground" region).
  EXPECT_EQ(m.index({torch::indexing::Slice(), torch::indexing::Slice(0, 15)}).sum().item<double>(), 0);
  EXPECT_THAT(test_support::message_of([&] { open(root, "masks: boxes"); }), HasSubstr("masks: expected none or grabcut"));
}

// The synthetic DeepLesion (`facet data synth deeplesion`): 7 slices, RECIST marks inside their
// boxes, and GrabCut masks inside the boxes on the bright lesions.
TEST(LesionData, SyntheticSetWithMasks) {
  const fs::path root = test_support::scratch_dir("facet_test_lesion", "synth");
  synth_registry().create(Config::parse("{name: deeplesion, patients: 5, slices: 12, size: 64, lesions_per_patient: 2}"), root);
  const auto d = dataset_registry().create(
      Config::parse(fmt::format("{{name: deeplesion, root: {}, num_slices: 7, masks: grabcut}}", root.string())), "train");
  ASSERT_GT(d->size(), 0);
  int64_t lesions = 0, on_lesion = 0;
  for (int64_t i = 0; i < d->size(); ++i) {
    const Sample s = d->get(i, 0);
    ASSERT_EQ(s.fields.at("image").sizes(), (std::vector<int64_t>{7, 64, 64}));
    ASSERT_NO_THROW(check_per_box_fields(s, "test"));
    const auto boxes = s.ragged.at("boxes"), recist = s.ragged.at("box_recist"), masks = s.ragged.at("box_masks");
    for (int64_t k = 0; k < boxes.size(0); ++k, ++lesions) {
      const auto b = boxes[k];
      const auto x = recist[k].select(1, 0), y = recist[k].select(1, 1);
      EXPECT_TRUE(((x > b[0]) & (x < b[2]) & (y > b[1]) & (y < b[3])).all().item<bool>()) << s.id;
      const auto m = masks[k] > 0.5;
      ASSERT_GT(m.sum().item<int64_t>(), 0) << s.id;
      const auto nz = torch::nonzero(m).to(torch::kFloat);
      EXPECT_GE(std::get<0>(nz.min(0))[1].item<float>(), b[0].item<float>() - 1) << s.id;
      EXPECT_LE(std::get<0>(nz.max(0))[1].item<float>(), b[2].item<float>()) << s.id;
      // The RECIST cross is "definite foreground", which GrabCut never relabels.
      const auto centre = recist[k].mean(0);
      EXPECT_TRUE(m[static_cast<int64_t>(centre[1].item<float>())][static_cast<int64_t>(centre[0].item<float>())].item<bool>()) << s.id;
      // How many masks stay on their lesion (brighter than the 40 HU body) is recorded, not asserted:
      // the released generator's 8-bit image wraps air and lung (-50 after windowing) to bright
      // values, which pulls lung inside a box into the mask; the real masks have that flaw too.
      on_lesion += s.fields.at("image")[3].masked_select(m).mean().item<float>() > 60.0f;
    }
  }
  EXPECT_GT(lesions, 0);
  ::testing::Test::RecordProperty("masks_on_lesion", fmt::format("{} of {}", on_lesion, lesions));
}

// A sample with two lesions (types 1 and 2), each a bright square with its mask, box and RECIST.
Sample two_lesions() {
  Sample s;
  s.id = "synthetic";
  auto image = torch::zeros({7, 64, 64});
  auto masks = torch::zeros({2, 64, 64});
  const std::vector<std::array<int, 4>> squares = {{2, 20, 10, 30}, {30, 30, 50, 46}};  // x1, y1, x2, y2 (pixel edges)
  auto boxes = torch::empty({2, 4});
  auto recist = torch::empty({2, 4, 2});
  for (int64_t i = 0; i < 2; ++i) {
    const auto& q = squares[static_cast<size_t>(i)];
    using torch::indexing::Slice;
    image.index_put_({Slice(), Slice(q[1], q[3]), Slice(q[0], q[2])}, 100.0f);
    masks.index_put_({i, Slice(q[1], q[3]), Slice(q[0], q[2])}, 1.0f);
    boxes[i] = torch::tensor({q[0], q[1], q[2], q[3]}, torch::kFloat);
    const float cx = (q[0] + q[2]) / 2.0f, cy = (q[1] + q[3]) / 2.0f;
    recist[i] = torch::tensor({{static_cast<float>(q[0]) + 1, cy}, {static_cast<float>(q[2]) - 1, cy},
                               {cx, static_cast<float>(q[1]) + 1}, {cx, static_cast<float>(q[3]) - 1}});
  }
  s.fields["image"] = image;
  s.ragged["boxes"] = boxes;
  s.ragged["box_masks"] = masks;
  s.ragged["box_recist"] = recist;
  s.ragged["box_types"] = torch::tensor({1, 2}, torch::kInt64);
  s.ragged["box_labels"] = torch::ones({2}, torch::kInt64);
  return s;
}

std::shared_ptr<Transform> transform(const std::string& yaml) { return transform_registry().create(Config::parse(yaml)); }

TEST(LesionData, ShiftScaleRotateKeepsBoxesTypesMasksAndRecistInStep) {
  const auto t = transform("{name: shift_scale_rotate, shift: 0.25, scale: 0.2, rotate: 15, p: 1.0, interpolation: cubic}");
  int dropped = 0;
  for (uint64_t seed = 0; seed < 24; ++seed) {
    Sample s = two_lesions();
    auto g = at::make_generator<at::CPUGeneratorImpl>(seed);
    t->apply(s, g);
    ASSERT_NO_THROW(check_per_box_fields(s, "test")) << seed;
    const auto boxes = s.ragged.at("boxes");
    const int64_t n = boxes.size(0);
    dropped += static_cast<int>(2 - n);
    for (int64_t i = 0; i < n; ++i) {
      const auto b = boxes[i];
      // The warped mask of this row lies in this row's box (nearest resampling: a pixel of slack),
      // and fills most of it where the box is inside the image.
      const auto m = s.ragged.at("box_masks")[i];
      const auto nz = torch::nonzero(m > 0.5);
      if (nz.size(0) > 0) {
        const auto lo = std::get<0>(nz.min(0)).to(torch::kFloat), hi = std::get<0>(nz.max(0)).to(torch::kFloat) + 1;
        EXPECT_GE(lo[1].item<float>(), b[0].item<float>() - 1.5f) << seed;
        EXPECT_GE(lo[0].item<float>(), b[1].item<float>() - 1.5f) << seed;
        EXPECT_LE(hi[1].item<float>(), b[2].item<float>() + 1.5f) << seed;
        EXPECT_LE(hi[0].item<float>(), b[3].item<float>() + 1.5f) << seed;
      }
      // The image is bright where the mask is, and the RECIST points are inside the box.
      if (nz.size(0) > 4) {
        EXPECT_GT(s.fields.at("image")[3].masked_select(m > 0.5).mean().item<float>(), 60.0f) << seed;
      }
      const auto r = s.ragged.at("box_recist")[i];
      EXPECT_TRUE(((r.select(1, 0) >= b[0] - 0.01) & (r.select(1, 0) <= b[2] + 0.01)).all().item<bool>() ||
                  (b[0].item<float>() <= 0.0f || b[2].item<float>() >= 64.0f))
          << seed;
      // The type tells which lesion this row is: the first square is the small one near the left edge.
      const int64_t type = s.ragged.at("box_types")[i].item<int64_t>();
      const float width = (b[2] - b[0]).item<float>();
      if (type == 2) {
        EXPECT_GT(width, 12.0f) << seed;
      }
    }
  }
  EXPECT_GT(dropped, 0) << "no draw pushed the left lesion out: the row-dropping path went untested";
}

TEST(LesionData, FlipMovesRecistAndPadKeepsBoxes) {
  Sample s = two_lesions();
  auto g = at::make_generator<at::CPUGeneratorImpl>(0);
  transform("{name: random_hflip, p: 1.0}")->apply(s, g);
  EXPECT_TRUE(torch::allclose(s.ragged.at("boxes")[0], torch::tensor({54.0f, 20.0f, 62.0f, 30.0f})));
  EXPECT_TRUE(torch::allclose(s.ragged.at("box_recist")[0][0], torch::tensor({61.0f, 25.0f})));
  EXPECT_EQ(s.ragged.at("box_masks")[0][25][60].item<float>(), 1.0f);
  // Pad to a multiple of 32: 50 x 70 -> 64 x 96, images filled, masks zero, boxes where they were.
  Sample p;
  p.id = "pad";
  p.fields["image"] = torch::ones({7, 50, 70});
  p.ragged["boxes"] = torch::tensor({{1.0f, 2.0f, 10.0f, 20.0f}});
  p.ragged["box_masks"] = torch::ones({1, 50, 70});
  transform("{name: pad, size_divisor: 32, fill: -7}")->apply(p, g);
  EXPECT_EQ(p.fields.at("image").sizes(), (std::vector<int64_t>{7, 64, 96}));
  EXPECT_EQ(p.fields.at("image")[0][63][95].item<float>(), -7.0f);
  EXPECT_EQ(p.fields.at("image")[0][49][69].item<float>(), 1.0f);
  EXPECT_EQ(p.ragged.at("box_masks").sizes(), (std::vector<int64_t>{1, 64, 96}));
  EXPECT_EQ(p.ragged.at("box_masks").sum().item<float>(), 50.0f * 70.0f);
  EXPECT_TRUE(torch::equal(p.ragged.at("boxes"), torch::tensor({{1.0f, 2.0f, 10.0f, 20.0f}})));
}

// The A3D/SATr windowing: [-1024, 2050] HU -> [0, 255], minus 50 (ct_window + normalize).
TEST(LesionData, SatrWindowing) {
  Sample s;
  s.id = "window";
  s.fields["image"] = torch::tensor({-2000.0f, -1024.0f, 513.0f, 2050.0f, 3000.0f}).view({1, 1, 5});
  auto g = at::make_generator<at::CPUGeneratorImpl>(0);
  transform("{name: ct_window, preset: satr, scale: 255}")->apply(s, g);
  transform("{name: normalize, mean: [50], std: [1]}")->apply(s, g);
  EXPECT_TRUE(torch::allclose(s.fields.at("image").flatten(), torch::tensor({-50.0f, -50.0f, 77.5f, 205.0f, 205.0f})))
      << s.fields.at("image");
}

}  // namespace
}  // namespace facet::data::test_lesion_data
