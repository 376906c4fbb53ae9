// Face alignment: JAA-Net's similarity transform checked on constructed landmarks (invariance,
// eyes level, the box scale), the 68/66/49-point schemes agreeing, and dlib detection + alignment
// on a real photograph (scikit-image's astronaut; its cat has no human face).
#include "core/config.h"
#include "core/file_io.h"
#include "data/face/align.h"
#include "data/image/image_io.h"
#include "data/transform.h"
#include "tests/support/paths.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <numbers>
#include <sstream>

namespace facet::data::face::test_face_align {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

const fs::path kFaces = fs::path(test_support::kSourceDir) / "tests/fixtures/faces";

// 68 points: eyes, nose and mouth corners where a frontal face has them (continuous pixels of a
// 100-pixel face centred at (60, 70)); the other points anywhere.
torch::Tensor frontal_68() {
  torch::Tensor p = torch::rand({68, 2}, at::make_generator<at::CPUGeneratorImpl>(3)) * 80 + 20;
  for (int i = 36; i < 42; ++i) p[i] = torch::tensor({40.f + static_cast<float>(i - 36), 55.f});  // image-left eye
  for (int i = 42; i < 48; ++i) p[i] = torch::tensor({75.f + static_cast<float>(i - 42), 55.f});
  p[30] = torch::tensor({60.f, 75.f});
  p[48] = torch::tensor({48.f, 90.f});
  p[54] = torch::tensor({72.f, 90.f});
  return p;
}

// p -> s R(angle) p + t.
torch::Tensor similar(const torch::Tensor& p, double angle_deg, double scale, double tx, double ty) {
  const double a = angle_deg * std::numbers::pi / 180;
  const torch::Tensor r = torch::tensor({{std::cos(a), -std::sin(a)}, {std::sin(a), std::cos(a)}}, torch::kDouble);
  return (p.to(torch::kDouble).matmul(r.t()) * scale + torch::tensor({tx, ty}, torch::kDouble)).to(torch::kFloat);
}

torch::Tensor transform_points(const cv::Matx23d& a, const torch::Tensor& p) {
  const torch::Tensor m = torch::tensor({{a(0, 0), a(0, 1)}, {a(1, 0), a(1, 1)}}, torch::kDouble);
  return (p.to(torch::kDouble).matmul(m.t()) + torch::tensor({a(0, 2), a(1, 2)}, torch::kDouble)).to(torch::kFloat);
}

torch::Tensor eye_centres(const torch::Tensor& p68) {
  return torch::stack({p68.slice(0, 36, 42).mean(0), p68.slice(0, 42, 48).mean(0)});
}

TEST(FaceAlign, JaaNetTransformLevelsTheEyesAndIgnoresPoseScaleAndPosition) {
  const AlignOptions o;
  const torch::Tensor face = frontal_68();
  const torch::Tensor aligned = transform_points(alignment_matrix(face, o), face);
  const torch::Tensor moved = similar(face, 23, 1.7, 140, -30);
  const torch::Tensor aligned_moved = transform_points(alignment_matrix(moved, o), moved);
  EXPECT_TRUE(torch::allclose(aligned, aligned_moved, 1e-3, 1e-3));
  const torch::Tensor eyes = eye_centres(aligned_moved);
  EXPECT_NEAR(eyes[0][1].item<float>(), eyes[1][1].item<float>(), 1e-3);
  EXPECT_LT(eyes[0][0].item<float>(), eyes[1][0].item<float>());
  // The box of {eyes, nose, mouth corners}: longer side (here the width, 37.5 px) becomes
  // (size - 1) / box_enlarge, and its centre the crop centre.
  const torch::Tensor key = torch::cat({eyes, aligned.index_select(0, torch::tensor({30, 48, 54}))});
  const auto lo = std::get<0>(key.min(0)), hi = std::get<0>(key.max(0));
  EXPECT_NEAR((hi - lo).max().item<float>(), 199 / 2.9, 1e-3);
  EXPECT_NEAR(((lo + hi) / 2)[0].item<float>(), 100, 1e-3);
  EXPECT_NEAR(((lo + hi) / 2)[1].item<float>(), 100, 1e-3);
}

TEST(FaceAlign, SixtyEightSixtySixAndFortyNinePointSchemesAgree) {
  const torch::Tensor face = similar(frontal_68(), -12, 2.0, 30, 10);
  std::vector<int64_t> keep66, keep49;
  for (int64_t i = 0; i < 68; ++i) {
    if (i != 60 && i != 64) keep66.push_back(i);
    if (i >= 17 && i != 60 && i != 64) keep49.push_back(i);
  }
  const cv::Matx23d a68 = alignment_matrix(face, {});
  const cv::Matx23d a66 = alignment_matrix(face.index_select(0, torch::tensor(keep66)), {});
  const cv::Matx23d a49 = alignment_matrix(face.index_select(0, torch::tensor(keep49)), {});
  for (int r = 0; r < 2; ++r)
    for (int c = 0; c < 3; ++c) {
      EXPECT_NEAR(a68(r, c), a66(r, c), 1e-9);
      EXPECT_NEAR(a68(r, c), a49(r, c), 1e-9);
    }
  try {
    alignment_matrix(torch::zeros({50, 2}), {}, "frame 7");
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("frame 7: face alignment needs 68, 66 or 49 landmarks, got 50"));
  }
}

TEST(FaceAlign, TransformMovesImageLandmarksAndBoxesTogether) {
  const auto transforms = build_transforms(Config::parse("transforms: [{name: face_align, size: 120}]", "t.yaml").at("transforms"));
  Sample s;
  s.id = "face";
  const torch::Tensor face = similar(frontal_68(), 15, 1.5, 20, 5);
  s.fields["image"] = torch::full({3, 240, 260}, 30.f);
  s.fields["landmarks"] = face;
  s.ragged["boxes"] = torch::tensor({{60.f, 80.f, 140.f, 160.f}});
  auto g = at::make_generator<at::CPUGeneratorImpl>(0);
  transforms[0]->apply(s, g);
  EXPECT_EQ(s.fields["image"].sizes(), (std::vector<int64_t>{3, 120, 120}));
  AlignOptions o;
  o.size = 120;
  EXPECT_TRUE(torch::allclose(s.fields["landmarks"], transform_points(alignment_matrix(face, o), face), 1e-4, 1e-4));
  const torch::Tensor eyes = eye_centres(s.fields["landmarks"]);
  EXPECT_NEAR(eyes[0][1].item<float>(), eyes[1][1].item<float>(), 1e-3);
  EXPECT_EQ(s.ragged["boxes"].size(0), 1);
  // The face fills the crop's middle; the source image covers it, so no grey fill there.
  EXPECT_NEAR(s.fields["image"][0][60][60].item<float>(), 30, 1e-3);
}

TEST(FaceAlign, RealPhotographIsDetectedLandmarkedAndAligned) {
  const fs::path out = fs::temp_directory_path() / ("facet_test_align_" + std::to_string(::getpid()));
  fs::remove_all(out);
  const AlignFolderReport report = align_folder(kFaces, out, {}, 2);
  EXPECT_EQ(report.images, 2);
  EXPECT_EQ(report.aligned, 1);
  ASSERT_EQ(report.no_face, (std::vector<std::string>{"chelsea.jpg"}));
  EXPECT_EQ(read_file(out / "no_face.txt"), "chelsea.jpg\n");
  const torch::Tensor crop = image::read_image(out / "astronaut.jpg");
  EXPECT_EQ(crop.sizes(), (std::vector<int64_t>{3, 200, 200}));
  std::istringstream line(read_file(out / "landmarks.txt"));
  std::string name;
  line >> name;
  EXPECT_EQ(name, "astronaut.jpg");
  std::vector<float> xy;
  for (float v; line >> v;) xy.push_back(v);
  ASSERT_EQ(xy.size(), 136u);
  const torch::Tensor p = torch::tensor(xy).view({68, 2});
  const torch::Tensor eyes = eye_centres(p);
  // dlib's landmarks are whole pixels, so the eyes are level to within a pixel or so.
  EXPECT_NEAR(eyes[0][1].item<float>(), eyes[1][1].item<float>(), 1.5);
  const float between = (eyes[1][0] - eyes[0][0]).item<float>();
  EXPECT_GT(between, 35);
  EXPECT_LT(between, 70);
  EXPECT_NEAR(p[30][0].item<float>(), 100, 15);  // nose tip near the vertical midline
  for (int64_t i = 0; i < 68; ++i) {
    EXPECT_GT(p[i][0].item<float>(), 0);
    EXPECT_LT(p[i][0].item<float>(), 200);
  }
  // The whole aligned face comes from the photograph: no grey border inside the landmark box.
  EXPECT_GT((crop[0][100].slice(0, 40, 160) - 128).abs().sum().item<float>(), 100);
}

}  // namespace
}  // namespace facet::data::face::test_face_align
