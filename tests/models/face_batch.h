// A batch of drawn faces (data/face/synth_face.h) with their 68 landmarks and AU labels, for the
// face-model tests: the same drawing the synthetic BP4D writer uses, without touching the disk.
#pragma once

#include "tests/support/tensors.h"
#include "data/dataset.h"
#include "data/face/au.h"
#include "data/face/synth_face.h"

#include <opencv2/core.hpp>

namespace facet::testing {

inline data::Batch drawn_face_batch(int64_t batch, int64_t size, uint64_t seed = 1) {
  data::face::SynthRng rng(seed);
  const std::vector<int> aus(data::face::kBp4dAus.begin(), data::face::kBp4dAus.end());
  std::vector<torch::Tensor> images, landmarks, labels;
  for (int64_t i = 0; i < batch; ++i) {
    const auto id = data::face::random_identity(rng, static_cast<int>(size));
    const auto expression = static_cast<data::face::Expression>(i % data::face::kExpressions);
    const auto intensities = data::face::sample_intensities(rng, expression, aus, 0.9, false);
    cv::Mat image(static_cast<int>(size), static_cast<int>(size), CV_8UC3);
    const auto points = data::face::draw_face(image, id, intensities, rng);
    cv::Mat f;
    image.convertTo(f, CV_32FC3, 1 / 127.5, -1.0);
    images.push_back(torch::from_blob(f.data, {size, size, 3}, torch::kFloat).permute({2, 0, 1}).flip({0}).clone());
    torch::Tensor lm = torch::empty({68, 2});
    for (int64_t k = 0; k < 68; ++k) lm[k] = torch::tensor({points[static_cast<size_t>(k)].x, points[static_cast<size_t>(k)].y});
    landmarks.push_back(lm);
    torch::Tensor y = torch::zeros({static_cast<int64_t>(aus.size())});
    for (size_t a = 0; a < aus.size(); ++a) y[static_cast<int64_t>(a)] = intensities.count(aus[a]) && intensities.at(aus[a]) >= 2 ? 1.f : 0.f;
    labels.push_back(y);
  }
  data::Batch b;
  b.fields["image"] = torch::stack(images);
  b.fields["landmarks"] = torch::stack(landmarks);
  b.fields["labels"] = torch::stack(labels);
  b.fields["label_mask"] = torch::ones_like(b.fields["labels"]);
  b.indices = torch::arange(batch);
  return b;
}

using test_support::parameter_count;

}  // namespace facet::testing
