// Transforms: geometry (images, masks, landmarks and boxes move together), face-landmark mirroring,
// CT windowing and colour jitter, each checked against hand-computed values.
#include "core/config.h"
#include "data/transform.h"
#include "data/transforms/geometry.h"
#include "tests/support/scratch.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <limits>

namespace facet::data::test_transforms {
namespace {

using ::testing::HasSubstr;

void run(const std::string& yaml, Sample& s, uint64_t seed = 0) {
  const auto ts = build_transforms(Config::parse("t: [" + yaml + "]").at("t"));
  auto g = at::make_generator<at::CPUGeneratorImpl>(seed);
  for (const auto& t : ts) t->apply(s, g);
}

using test_support::message_of;

// A sample of size H x W: image = 3 channels of arange, a mask, one landmark and two boxes.
Sample make_sample(int64_t h, int64_t w) {
  Sample s;
  s.id = "case.png";
  s.fields["image"] = torch::arange(3 * h * w, torch::kFloat).view({3, h, w});
  s.fields["mask"] = torch::zeros({1, h, w});
  s.fields["landmarks"] = torch::tensor({{1.5f, 0.5f}});
  s.ragged["boxes"] = torch::tensor({{2.0f, 1.0f, 4.0f, 3.0f}, {6.0f, 0.0f, 8.0f, 1.0f}});
  s.ragged["box_labels"] = torch::tensor({7, 9}, torch::kInt64);
  return s;
}

TEST(Transforms, ResizeScalesImagesLandmarksAndBoxes) {
  Sample s = make_sample(4, 8);
  run("{name: resize, size: [8, 16]}", s);
  EXPECT_EQ(s.fields.at("image").sizes(), (std::vector<int64_t>{3, 8, 16}));
  EXPECT_EQ(s.fields.at("mask").sizes(), (std::vector<int64_t>{1, 8, 16}));
  EXPECT_TRUE(torch::allclose(s.fields.at("landmarks"), torch::tensor({{3.0f, 1.0f}})));
  EXPECT_TRUE(torch::allclose(s.ragged.at("boxes"), torch::tensor({{4.0f, 2.0f, 8.0f, 6.0f}, {12.0f, 0.0f, 16.0f, 2.0f}})));
  // Shrinking by 2 averages 2x2 blocks (area interpolation), exactly.
  Sample t = make_sample(4, 8);
  run("{name: resize, max_size: 4}", t);
  const auto img = t.fields.at("image");
  ASSERT_EQ(img.sizes(), (std::vector<int64_t>{3, 2, 4}));
  EXPECT_FLOAT_EQ(img[0][0][0].item<float>(), (0 + 1 + 8 + 9) / 4.0f);
  EXPECT_FLOAT_EQ(img[2][1][3].item<float>(), (86 + 87 + 94 + 95) / 4.0f);  // channel 2 starts at 64
}

TEST(Transforms, CropsMoveAndClipBoxesAndDropThoseOutside) {
  Sample s = make_sample(4, 8);
  run("{name: center_crop, size: [2, 4]}", s);  // window x 2..6, y 1..3
  EXPECT_TRUE(torch::equal(s.fields.at("image")[0], torch::tensor({{10.0f, 11.0f, 12.0f, 13.0f}, {18.0f, 19.0f, 20.0f, 21.0f}})));
  EXPECT_TRUE(torch::allclose(s.fields.at("landmarks"), torch::tensor({{-0.5f, -0.5f}})));
  // Box 1 becomes [0, 0, 2, 2]; box 2 (x 6..8, y 0..1) falls outside and goes with its label.
  EXPECT_TRUE(torch::allclose(s.ragged.at("boxes"), torch::tensor({{0.0f, 0.0f, 2.0f, 2.0f}})));
  EXPECT_TRUE(torch::equal(s.ragged.at("box_labels"), torch::tensor({7}, torch::kInt64)));

  // Random crops stay inside the padded image, and padding is filled.
  for (uint64_t seed = 0; seed < 20; ++seed) {
    Sample r = make_sample(4, 8);
    run("{name: random_crop, size: [4, 8], padding: 2, fill: -1}", r, seed);
    const auto img = r.fields.at("image");
    ASSERT_EQ(img.sizes(), (std::vector<int64_t>{3, 4, 8}));
    // Exactly the pixels inside the original image are kept: their count matches the offset.
    const auto kept = (img[0] >= 0).sum().item<int64_t>();
    const auto lm = r.fields.at("landmarks")[0];
    const int64_t dx = static_cast<int64_t>(1.5f - lm[0].item<float>()), dy = static_cast<int64_t>(0.5f - lm[1].item<float>());
    EXPECT_EQ(kept, (8 - std::abs(dx)) * (4 - std::abs(dy))) << seed;
  }
  EXPECT_THAT(message_of([] {
                Sample big = make_sample(4, 8);
                run("{name: center_crop, size: 6}", big);
              }),
              HasSubstr("case.png: center_crop: the crop 6x6 is larger than the image 4x8"));
}

// Every per-box field (box_*) loses the rows of the boxes a transform drops, whatever its name,
// and per-box masks are cropped with the image.
TEST(Transforms, DroppedBoxesTakeTheirRowsOfEveryPerBoxField) {
  Sample s = make_sample(4, 8);
  s.ragged["boxes"] = torch::tensor({{6.0f, 0.0f, 8.0f, 1.0f}, {2.0f, 1.0f, 4.0f, 3.0f}, {0.0f, 3.0f, 1.0f, 4.0f}});
  s.ragged["box_labels"] = torch::tensor({7, 9, 11}, torch::kInt64);
  s.ragged["box_types"] = torch::tensor({-1, 3, 5}, torch::kInt64);
  s.ragged["box_noisy"] = torch::tensor({true, false, true});
  s.ragged["box_masks"] = torch::zeros({3, 4, 8});
  s.ragged["box_masks"][1].slice(0, 1, 3).slice(1, 2, 4).fill_(1);  // box 1's own pixels
  run("{name: center_crop, size: [2, 4]}", s);  // window x 2..6, y 1..3: boxes 0 and 2 fall outside
  EXPECT_TRUE(torch::allclose(s.ragged.at("boxes"), torch::tensor({{0.0f, 0.0f, 2.0f, 2.0f}})));
  EXPECT_TRUE(torch::equal(s.ragged.at("box_labels"), torch::tensor({9}, torch::kInt64)));
  EXPECT_TRUE(torch::equal(s.ragged.at("box_types"), torch::tensor({3}, torch::kInt64)));
  EXPECT_TRUE(torch::equal(s.ragged.at("box_noisy"), torch::tensor({false})));
  EXPECT_TRUE(torch::equal(s.ragged.at("box_masks"), torch::tensor({{{1.f, 1.f, 0.f, 0.f}, {1.f, 1.f, 0.f, 0.f}}})));

  // An affine map that moves every box out of the image leaves every per-box field empty.
  Sample gone = make_sample(4, 8);
  gone.ragged["box_types"] = torch::tensor({1, 2}, torch::kInt64);
  gone.ragged["box_noisy"] = torch::tensor({false, true});
  map_geometry(gone, cv::Matx23d(1, 0, 100, 0, 1, 0), cv::Size(8, 4));
  for (const auto* key : {"boxes", "box_labels", "box_types", "box_noisy"}) EXPECT_EQ(gone.ragged.at(key).size(0), 0) << key;

  // A per-box field that does not have one row per box is an error naming the sample and the key.
  Sample bad = make_sample(4, 8);
  bad.ragged["box_types"] = torch::tensor({1, 2, 3}, torch::kInt64);
  EXPECT_THAT(message_of([&] { run("{name: random_hflip, p: 1.0, landmark_mirror: [0]}", bad); }),
              HasSubstr("case.png: geometric transform: per-box field \"box_types\" has shape [3] for 2 boxes"));
}

TEST(Transforms, HorizontalFlipMirrorsBoxesAndSwapsFaceLandmarks) {
  Sample s = make_sample(4, 8);
  run("{name: random_hflip, p: 1.0, landmark_mirror: [0]}", s);
  EXPECT_TRUE(torch::equal(s.fields.at("image"), make_sample(4, 8).fields.at("image").flip({-1})));
  EXPECT_TRUE(torch::allclose(s.fields.at("landmarks"), torch::tensor({{6.5f, 0.5f}})));
  EXPECT_TRUE(torch::allclose(s.ragged.at("boxes"), torch::tensor({{4.0f, 1.0f, 6.0f, 3.0f}, {0.0f, 0.0f, 2.0f, 1.0f}})));

  // 68 points: the right eye's outer corner (36) lands where the left one's (45) was, mirrored.
  Sample face;
  face.id = "face.jpg";
  face.fields["image"] = torch::zeros({3, 10, 20});
  face.fields["landmarks"] = torch::zeros({68, 2});
  face.fields["landmarks"][36] = torch::tensor({4.0f, 5.0f});
  face.fields["landmarks"][45] = torch::tensor({15.0f, 5.0f});
  run("{name: random_hflip, p: 1.0}", face);
  EXPECT_TRUE(torch::allclose(face.fields.at("landmarks")[45], torch::tensor({16.0f, 5.0f})));
  EXPECT_TRUE(torch::allclose(face.fields.at("landmarks")[36], torch::tensor({5.0f, 5.0f})));

  // The 49-point mirror derived from the 68-point one equals JAA-Net's published reflect_49.txt.
  const std::vector<int64_t> reflect_49 = {10, 9,  8,  7,  6,  5,  4,  3,  2,  1,  11, 12, 13, 14, 19, 18, 17,
                                           16, 15, 29, 28, 27, 26, 31, 30, 23, 22, 21, 20, 25, 24, 38, 37, 36,
                                           35, 34, 33, 32, 43, 42, 41, 40, 39, 46, 45, 44, 49, 48, 47};
  auto m49 = face_landmark_mirror(49);
  for (auto& i : m49) ++i;
  EXPECT_EQ(m49, reflect_49);
  for (const int64_t k : {68, 66, 49}) {  // mirroring twice is the identity
    const auto m = face_landmark_mirror(k);
    for (size_t i = 0; i < m.size(); ++i) EXPECT_EQ(m[static_cast<size_t>(m[i])], static_cast<int64_t>(i)) << k;
  }
  EXPECT_THAT(message_of([] { face_landmark_mirror(5); }), HasSubstr("no built-in left-right landmark mirror for 5"));
}

// The image and the landmarks must move by the same map: a bright blob drawn at a landmark is found
// at the transformed landmark after a random rotation, scale, shear and translation.
TEST(Transforms, RandomAffineMovesImageAndLandmarksTogether) {
  for (uint64_t seed = 0; seed < 8; ++seed) {
    Sample s;
    s.id = "blob";
    const int64_t n = 64;
    const float x0 = 40.5f, y0 = 22.0f;
    const auto axis = torch::arange(n, torch::kFloat) + 0.5f;  // pixel centres
    const auto yy = axis.view({-1, 1}), xx = axis.view({1, -1});
    s.fields["image"] = torch::exp(-((xx - x0).pow(2) + (yy - y0).pow(2)) / 8.0f).unsqueeze(0);
    s.fields["landmarks"] = torch::tensor({{x0, y0}});
    run("{name: random_affine, degrees: 40, scale: [0.8, 1.2], translate: 0.1, shear: 10}", s, seed);
    const auto img = s.fields.at("image")[0];
    const auto w = img / img.sum();
    const float cx = (w * xx).sum().item<float>(), cy = (w * yy).sum().item<float>();
    const auto lm = s.fields.at("landmarks")[0];
    EXPECT_NEAR(cx, lm[0].item<float>(), 0.15) << seed;
    EXPECT_NEAR(cy, lm[1].item<float>(), 0.15) << seed;
  }
}

TEST(Transforms, CtWindowMapsHounsfieldUnits) {
  Sample s;
  s.id = "ct";
  s.fields["image"] = torch::tensor({-2000.0f, -1024.0f, 1023.5f, 3071.0f, 5000.0f}).view({1, 1, 5});
  run("{name: ct_window, preset: deeplesion_3dce, scale: 255}", s);
  EXPECT_TRUE(torch::allclose(s.fields.at("image"), torch::tensor({0.0f, 0.0f, 127.5f, 255.0f, 255.0f}).view({1, 1, 5})));
  Sample m;
  m.id = "ct";
  m.fields["image"] = torch::tensor({0.0f, 100.0f}).view({2, 1, 1});  // two slices
  run("{name: ct_window, windows: [[0, 100], [-100, 100]]}", m);
  // [slice0/window0, slice0/window1, slice1/window0, slice1/window1]
  EXPECT_TRUE(torch::allclose(m.fields.at("image").flatten(), torch::tensor({0.0f, 0.5f, 1.0f, 1.0f})));
  EXPECT_THAT(message_of([] { build_transforms(Config::parse("t: [{name: ct_window, preset: lungs}]").at("t")); }),
              HasSubstr("t[0].preset: unknown window \"lungs\"; known: bone, brain"));
}

TEST(Transforms, ColorJitterIsIdentityAtZeroAndDeterministicPerSeed) {
  Sample s = make_sample(4, 8);
  run("{name: color_jitter, max_value: 1000}", s);
  EXPECT_TRUE(torch::allclose(s.fields.at("image"), make_sample(4, 8).fields.at("image")));
  Sample a = make_sample(4, 8), b = make_sample(4, 8);
  run("{name: color_jitter, brightness: 0.4, contrast: 0.4, saturation: 0.4, max_value: 60}", a, 3);
  run("{name: color_jitter, brightness: 0.4, contrast: 0.4, saturation: 0.4, max_value: 60}", b, 3);
  EXPECT_TRUE(torch::equal(a.fields.at("image"), b.fields.at("image")));
  EXPECT_LE(a.fields.at("image").max().item<float>(), 60.0f);
  EXPECT_GE(a.fields.at("image").min().item<float>(), 0.0f);
}

// An 8-bit frame's interleaved view (a crop of a decoded frame, on the loader's 8-bit path) is mirrored
// by image::mirror_rows: RGB in 5-pixel vector steps plus a scalar tail, so every width from 1 to 24
// (each tail length), 1, 3 and 4 channels, rows longer than the crop. The pixels are torch's flip and
// stay interleaved.
TEST(Transforms, FlipOfAnInterleavedEightBitViewIsTorchsFlip) {
  auto g = at::make_generator<at::CPUGeneratorImpl>(7);
  for (const int64_t channels : {1, 3, 4})
    for (int64_t width = 1; width <= 24; ++width) {
      const torch::Tensor frame = torch::randint(0, 256, {5, width + 3, channels}, g, torch::kUInt8);
      const torch::Tensor before = frame.clone();
      const torch::Tensor view = frame.narrow(1, 2, width).permute({2, 0, 1});  // [C, H, W], row stride > W * C
      Sample s;
      s.id = "frame.jpg";
      s.fields["image"] = view;
      run("{name: random_hflip, p: 1.0}", s);
      const torch::Tensor& got = s.fields.at("image");
      EXPECT_TRUE(torch::equal(got, view.flip({-1}))) << channels << " channels, width " << width;
      EXPECT_EQ(got.stride(0), 1) << "interleaved";
      EXPECT_TRUE(torch::equal(frame, before)) << "the frame itself is untouched";
    }
}

TEST(Transforms, EightBitImagesGoThroughCropsAndFlipsUntilNormalize) {
  auto takes = [](const std::string& yaml) { return takes_eight_bit_images(build_transforms(Config::parse("t: [" + yaml + "]").at("t"))); };
  EXPECT_TRUE(takes("{name: random_crop, size: 4}, {name: random_hflip}, {name: normalize, mean: [1], std: [2]}"));
  EXPECT_TRUE(takes("{name: normalize, mean: [1], std: [2]}, {name: color_jitter, brightness: 0.2}")) << "float after normalize";
  EXPECT_FALSE(takes("{name: random_crop, size: 4}, {name: random_hflip}")) << "nothing converts: the batch must be float";
  EXPECT_FALSE(takes("{name: random_crop, size: 4, padding: 2}, {name: normalize, mean: [1], std: [2]}")) << "padding fills";
  EXPECT_FALSE(takes("{name: color_jitter, brightness: 0.2}, {name: normalize, mean: [1], std: [2]}"));
  EXPECT_FALSE(takes("{name: normalize, field: depth, mean: [1], std: [2]}"));
  EXPECT_FALSE(EightBitImages::allowed());
  {
    const EightBitImages scope;
    EXPECT_TRUE(EightBitImages::allowed());
  }
  EXPECT_FALSE(EightBitImages::allowed());
}

// random_below and random_unit draw what torch::randint and torch::rand would, in the same order, so
// a seeded pipeline gives the crops and flips it gave when the transforms drew tensors.
TEST(Transforms, TensorFreeDrawsAreTorchsDraws) {
  for (uint64_t seed = 0; seed < 50; ++seed) {
    auto ours = at::make_generator<at::CPUGeneratorImpl>(seed), torchs = at::make_generator<at::CPUGeneratorImpl>(seed);
    for (const int64_t n : {int64_t{1}, int64_t{2}, int64_t{25}, int64_t{1000}, int64_t{1} << 30}) {
      EXPECT_EQ(random_below(ours, n), torch::randint(n, {1}, torchs).item<int64_t>()) << "seed " << seed << ", n " << n;
      EXPECT_EQ(random_unit(ours), torch::rand({1}, torchs).item<float>()) << "seed " << seed;
    }
  }
  auto g = at::make_generator<at::CPUGeneratorImpl>(0);
  EXPECT_EQ(message_of([&] { random_below(g, 0); }), "random_below: expected a positive bound, got 0");
}

// KeptWindow: the window a reader is told is the one the first transform then crops, from the same
// generator; anything that is not a plain crop of `image` tells the whole picture.
TEST(Transforms, KeptWindowIsTheCropTheFirstTransformThenTakes) {
  const cv::Size size(30, 20);
  EXPECT_EQ(KeptWindow::of(size), cv::Rect(0, 0, 30, 20)) << "no window open";
  auto window_of = [&](const std::string& yaml, uint64_t seed) {
    const auto first = build_transforms(Config::parse("t: [" + yaml + "]").at("t")).front();
    const at::Generator g = at::make_generator<at::CPUGeneratorImpl>(seed);
    const KeptWindow scope(*first, g);
    return KeptWindow::of(size);
  };
  for (uint64_t seed = 0; seed < 20; ++seed) {
    const cv::Rect told = window_of("{name: random_crop, size: [12, 16]}", seed);
    Sample s = make_sample(20, 30);
    run("{name: random_crop, size: [12, 16]}", s, seed);
    const torch::Tensor kept = s.fields.at("image");
    ASSERT_EQ(told.size(), cv::Size(16, 12));
    // The arange image: the crop's first pixel says where it was taken.
    EXPECT_EQ(kept[0][0][0].item<float>(), static_cast<float>(told.y * 30 + told.x)) << "seed " << seed;
  }
  EXPECT_EQ(window_of("{name: center_crop, size: 10}", 0), cv::Rect(10, 5, 10, 10));
  EXPECT_EQ(window_of("{name: random_crop, size: 10, padding: 2}", 0), cv::Rect(0, 0, 30, 20)) << "padding fills";
  EXPECT_EQ(window_of("{name: random_crop, size: 10, fields: [depth]}", 0), cv::Rect(0, 0, 30, 20)) << "not the image";
  EXPECT_EQ(window_of("{name: random_crop, size: 40}", 0), cv::Rect(0, 0, 30, 20)) << "larger: apply's error";
  EXPECT_EQ(window_of("{name: random_hflip}", 0), cv::Rect(0, 0, 30, 20));
}

TEST(Transforms, NormalizeOfEightBitPixelsEqualsTheFloatPath) {
  // data/transforms/eight_bit_normalize.cpp's two ways: a decoded HWC buffer seen as [C, H, W], cropped
  // (a strided view: the interleaved kernel) to a width of whole 8-pixel steps or not, flipped or not (a
  // copy in the same layout), or made planar (the table); bitwise the float path's result, whichever
  // kernel ATen's addcmul runs on this CPU.
  const torch::Tensor hwc = torch::randint(0, 256, {20, 32, 3}, torch::kUInt8);
  for (const int64_t width : {16, 19, 5})
    for (const std::string mean_std : {"mean: [127.5, 100, 90], std: [127.5, 60, 70]", "mean: [123.675], std: [58.395]"})
      for (const std::string layout : {"interleaved", "flipped", "planar"}) {
        const torch::Tensor chw = hwc.permute({2, 0, 1}).narrow(1, 3, 12).narrow(2, 5, width);
        Sample eight, floats;
        eight.fields["image"] = layout == "flipped" ? chw.flip({-1}) : layout == "planar" ? chw.contiguous() : chw;
        floats.fields["image"] = eight.fields["image"].to(torch::kFloat);
        run("{name: normalize, " + mean_std + "}", eight);
        run("{name: normalize, " + mean_std + "}", floats);
        const torch::Tensor& got = eight.fields["image"];
        EXPECT_EQ(got.scalar_type(), torch::kFloat);
        EXPECT_TRUE(got.is_contiguous());
        EXPECT_TRUE(torch::equal(got, floats.fields["image"])) << mean_std << ", " << layout << ", width " << width;
      }
}

// apply_transforms runs consecutive elementwise transforms on one field in a single pass: the values
// must be, to the bit, those of calling each apply() in turn (ATen's clamp/sub/mul and addcmul),
// NaN and infinities included.
TEST(Transforms, ElementwiseRunsInOnePassGiveEachApplysValuesToTheBit) {
  auto g = at::make_generator<at::CPUGeneratorImpl>(7);
  torch::Tensor image = torch::randn({3, 37, 129}, g) * 1500 + 40;  // Hounsfield-like, not a block multiple
  image[0][0][0] = std::numeric_limits<float>::quiet_NaN();
  image[1][2][3] = std::numeric_limits<float>::infinity();
  image[2][4][5] = -std::numeric_limits<float>::infinity();
  for (const std::string pipeline : {
           "{name: ct_window, preset: satr, scale: 255}, {name: normalize, mean: [50], std: [1]}",
           "{name: ct_window, center: 40, width: 400}, {name: scale, factor: 0.37}, {name: normalize, mean: [0.1, 0.2, 0.3], std: [0.7, 1.3, 0.9]}",
           "{name: normalize, mean: [127.5], std: [127.5]}",
           "{name: scale, factor: 0.0039215686}, {name: random_hflip, p: 1.0}, {name: normalize, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225]}"}) {
    const auto transforms = build_transforms(Config::parse("t: [" + pipeline + "]").at("t"));
    Sample one_by_one, fused;
    one_by_one.id = fused.id = "ct.png";
    one_by_one.fields["image"] = image.clone();
    fused.fields["image"] = image.clone();
    auto g1 = at::make_generator<at::CPUGeneratorImpl>(3), g2 = at::make_generator<at::CPUGeneratorImpl>(3);
    for (const auto& t : transforms) t->apply(one_by_one, g1);
    apply_transforms(transforms, fused, g2);
    const torch::Tensor a = one_by_one.fields.at("image"), b = fused.fields.at("image");
    ASSERT_EQ(a.sizes(), b.sizes()) << pipeline;
    EXPECT_TRUE(torch::equal(a.contiguous().view(torch::kInt32), b.contiguous().view(torch::kInt32))) << pipeline;
  }
  // Their errors are apply()'s.
  Sample grey;
  grey.id = "grey.png";
  grey.fields["image"] = torch::zeros({1, 4, 4});
  const auto rgb_normalize = build_transforms(
      Config::parse("t: [{name: scale, factor: 2}, {name: normalize, mean: [1, 2, 3], std: [1, 1, 1]}]").at("t"));
  EXPECT_THAT(message_of([&] { apply_transforms(rgb_normalize, grey, g); }),
              HasSubstr("grey.png: normalize: field \"image\" has 1 channels, mean/std have 3"));
  Sample flat;
  flat.id = "flat.png";
  flat.fields["image"] = torch::zeros({4, 4});
  const auto window = build_transforms(Config::parse("t: [{name: ct_window, preset: lung}]").at("t"));
  EXPECT_THAT(message_of([&] { apply_transforms(window, flat, g); }), HasSubstr("flat.png: ct_window: field \"image\" is not [C, H, W]"));
}

}  // namespace
}  // namespace facet::data::test_transforms
