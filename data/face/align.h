// Face alignment: JAA-Net's similarity transform from facial landmarks to the protocol's canonical
// crop (face.md §A.5) — eyes level, the box of {eye centres, nose, mouth corners} enlarged 2.9x
// and scaled to 200 x 200, grey (128) outside the image — and, for folders of raw photographs,
// detection of the face and its 68 landmarks with dlib.
#pragma once

#include "data/dataset.h"

#include <opencv2/core.hpp>

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace facet::data::face {

struct AlignOptions {
  int64_t size = 200;        // output side (JAA-Net: 200, then a 176 crop)
  double box_enlarge = 2.9;  // the face box's half-size = 0.5 * box_enlarge * its longer side
  double fill = 128;         // image value outside the source

  static AlignOptions from(const Config& c);
};

// The affine map (continuous input pixels -> output pixels, data/dataset.h conventions) that JAA-Net
// applies for `landmarks` [K, 2]: K = 68 (iBUG/dlib), 66 (DISFA) or 49 (IntraFace) points, whose
// eye, nose and mouth-corner indices it knows. Other K is an error naming `origin`.
cv::Matx23d alignment_matrix(const torch::Tensor& landmarks, const AlignOptions& options, std::string_view origin = "");

// Aligns a sample in place from its fields["landmarks"]: images (fill outside), masks, landmarks
// and boxes move together; the image becomes size x size.
void align_sample(Sample& sample, const AlignOptions& options);

// Finds the largest frontal face (dlib's HOG detector, the image upsampled once for small faces)
// and its 68 landmarks (dlib's shape predictor trained on iBUG 300-W). One instance per thread.
class FaceLandmarker {
 public:
  // The 68-point model Debian's libdlib-data installs.
  static std::filesystem::path default_model();
  explicit FaceLandmarker(const std::filesystem::path& model = default_model());
  ~FaceLandmarker();
  FaceLandmarker(FaceLandmarker&&) noexcept;

  // image: float32 [C, H, W] (1 or 3 channels, 0..255). [68, 2] continuous pixel coordinates, or
  // nullopt when no face is found.
  std::optional<torch::Tensor> landmarks(const torch::Tensor& image) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// `facet data align`: every image under `in` (recursively: .jpg .jpeg .png .bmp) is detected,
// aligned and written to the same relative path under `out`; each output folder gets a
// landmarks.txt with one line per crop, "<file name> x1 y1 ... x68 y68" in the crop's pixels.
// Images without a detectable face are listed in the report (and in out/no_face.txt), not written.
struct AlignFolderReport {
  int64_t images = 0, aligned = 0;
  std::vector<std::string> no_face;  // relative paths
};
AlignFolderReport align_folder(const std::filesystem::path& in, const std::filesystem::path& out,
                               const AlignOptions& options, int workers,
                               const std::function<void(int64_t done, int64_t total)>& progress = {});

}  // namespace facet::data::face
