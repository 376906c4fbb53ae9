#include "data/face/align.h"

#include "core/file_io.h"
#include "core/text.h"
#include "data/image/image_io.h"
#include "data/transform.h"
#include "data/transforms/geometry.h"

#include <dlib/image_processing.h>
#include <dlib/image_processing/frontal_face_detector.h>
#include <dlib/image_transforms.h>
#include <dlib/opencv.h>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <map>
#include <mutex>
#include <thread>

namespace facet::data::face {
namespace fs = std::filesystem;

namespace {

// Indices (0-based) of the points JAA-Net's alignment uses, per landmark scheme.
struct KeyPoints {
  std::array<int64_t, 6> eye_a, eye_b;  // the image-left eye first
  int64_t nose, mouth_a, mouth_b;
};

KeyPoints key_points(int64_t k, std::string_view origin) {
  // 68-point iBUG (and 66-point DISFA, which only lacks the inner-mouth corners 61 and 65, 1-based):
  // eyes 37-42 / 43-48, nose tip 31, mouth corners 49 / 55 (1-based). 49-point IntraFace: eyes
  // 20-25 / 26-31, nose 14, mouth corners 32 / 38 (face.md §A.5, §C.1).
  if (k == 68 || k == 66) return {{36, 37, 38, 39, 40, 41}, {42, 43, 44, 45, 46, 47}, 30, 48, 54};
  if (k == 49) return {{19, 20, 21, 22, 23, 24}, {25, 26, 27, 28, 29, 30}, 13, 31, 37};
  fail("{}: face alignment needs 68, 66 or 49 landmarks, got {}", origin, k);
}

}  // namespace

AlignOptions AlignOptions::from(const Config& c) {
  AlignOptions o;
  o.size = c.get<int64_t>("size", o.size);
  o.box_enlarge = c.get<double>("box_enlarge", o.box_enlarge);
  o.fill = c.get<double>("fill", o.fill);
  if (o.size < 8) fail("{}: {}: expected at least 8, got {}", c.where("size"), c.full_key("size"), o.size);
  if (!(o.box_enlarge > 0)) fail("{}: {}: expected > 0", c.where("box_enlarge"), c.full_key("box_enlarge"));
  return o;
}

cv::Matx23d alignment_matrix(const torch::Tensor& landmarks, const AlignOptions& o, std::string_view origin) {
  if (landmarks.dim() != 2 || landmarks.size(1) != 2) fail("{}: landmarks must be [K, 2], got {}", origin, landmarks.sizes());
  const KeyPoints kp = key_points(landmarks.size(0), origin);
  // JAA-Net works in pixel-index coordinates (pixel centres on integers): shift by half a pixel.
  const torch::Tensor p = landmarks.to(torch::kDouble).contiguous() - 0.5;
  auto at = [&](int64_t i) { return cv::Vec2d(p[i][0].item<double>(), p[i][1].item<double>()); };
  auto mean = [&](const std::array<int64_t, 6>& idx) {
    cv::Vec2d m(0, 0);
    for (int64_t i : idx) m += at(i);
    return m / 6.0;
  };
  const cv::Vec2d eye_a = mean(kp.eye_a), eye_b = mean(kp.eye_b);
  const cv::Vec2d d = eye_b - eye_a;
  const double l = std::hypot(d[0], d[1]);
  if (!(l > 0)) fail("{}: face alignment: the two eye centres coincide", origin);
  const double c = d[0] / l, s = d[1] / l;  // rotate the eye line onto the x axis
  auto rotate = [&](const cv::Vec2d& v) { return cv::Vec2d(c * v[0] + s * v[1], -s * v[0] + c * v[1]); };
  double x0 = 1e300, x1 = -1e300, y0 = 1e300, y1 = -1e300;
  for (const cv::Vec2d& q : {eye_a, eye_b, at(kp.nose), at(kp.mouth_a), at(kp.mouth_b)}) {
    const cv::Vec2d r = rotate(q);
    x0 = std::min(x0, r[0]), x1 = std::max(x1, r[0]), y0 = std::min(y0, r[1]), y1 = std::max(y1, r[1]);
  }
  const double cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
  const double half = 0.5 * o.box_enlarge * std::max(x1 - x0, y1 - y0);
  if (!(half > 0)) fail("{}: face alignment: degenerate landmarks", origin);
  // The box centre goes to the output centre, (size - 1) / 2 in index coordinates.
  const double k = (static_cast<double>(o.size) - 1) / 2.0 / half;
  const cv::Matx23d index_map(k * c, k * s, k * (half - cx), -k * s, k * c, k * (half - cy));
  // Back to continuous coordinates: p' = M (p - 0.5) + 0.5.
  cv::Matx23d a = index_map;
  a(0, 2) += 0.5 - 0.5 * (a(0, 0) + a(0, 1));
  a(1, 2) += 0.5 - 0.5 * (a(1, 0) + a(1, 1));
  return a;
}

void align_sample(Sample& s, const AlignOptions& o) {
  if (!s.fields.contains("landmarks")) fail("{}: face_align needs the sample's landmarks", s.id);
  const cv::Matx23d a = alignment_matrix(s.fields["landmarks"], o, s.id);
  const SpatialFields fields;
  const cv::Size out(static_cast<int>(o.size), static_cast<int>(o.size));
  warp_fields(s, fields, a, out, o.fill);
  map_geometry(s, a, out);
}

// --- detection -------------------------------------------------------------------------------

struct FaceLandmarker::Impl {
  dlib::frontal_face_detector detector = dlib::get_frontal_face_detector();
  dlib::shape_predictor predictor;
};

fs::path FaceLandmarker::default_model() { return "/usr/share/dlib/shape_predictor_68_face_landmarks.dat"; }

FaceLandmarker::FaceLandmarker(const fs::path& model) : impl_(std::make_unique<Impl>()) {
  if (!fs::exists(model))
    fail("{}: no landmark model (Debian's libdlib-data installs it; tools/bootstrap.sh does)", model.string());
  try {
    dlib::deserialize(model.string()) >> impl_->predictor;
  } catch (const std::exception& e) {
    fail("{}: cannot read the dlib shape predictor: {}", model.string(), e.what());
  }
  if (impl_->predictor.num_parts() != 68)
    fail("{}: expected a 68-point shape predictor, it has {} parts", model.string(), impl_->predictor.num_parts());
}

FaceLandmarker::~FaceLandmarker() = default;
FaceLandmarker::FaceLandmarker(FaceLandmarker&&) noexcept = default;

std::optional<torch::Tensor> FaceLandmarker::landmarks(const torch::Tensor& image) const {
  if (image.dim() != 3 || (image.size(0) != 1 && image.size(0) != 3))
    fail("face detection expects a [1 or 3, H, W] image, got {}", image.sizes());
  // dlib's detector and predictor work on grey levels.
  const torch::Tensor grey = (image.size(0) == 3 ? (image[0] * 0.299 + image[1] * 0.587 + image[2] * 0.114) : image[0])
                                 .round().clamp(0, 255).to(torch::kUInt8).contiguous();
  const cv::Mat mat(static_cast<int>(grey.size(0)), static_cast<int>(grey.size(1)), CV_8UC1, grey.data_ptr<uint8_t>());
  const dlib::cv_image<unsigned char> view(mat);
  dlib::array2d<unsigned char> up;
  const dlib::pyramid_down<2> pyramid;
  dlib::pyramid_up(view, up, pyramid);  // x2, so faces down to ~40 px are found
  const std::vector<dlib::rectangle> faces = impl_->detector(up);
  if (faces.empty()) return std::nullopt;
  const auto largest = std::max_element(faces.begin(), faces.end(),
                                        [](const auto& a, const auto& b) { return a.area() < b.area(); });
  const dlib::full_object_detection shape = impl_->predictor(view, pyramid.rect_down(*largest));
  torch::Tensor out = torch::empty({68, 2});
  for (unsigned long i = 0; i < 68; ++i) {
    out[static_cast<int64_t>(i)][0] = static_cast<float>(shape.part(i).x()) + 0.5f;  // index -> continuous
    out[static_cast<int64_t>(i)][1] = static_cast<float>(shape.part(i).y()) + 0.5f;
  }
  return out;
}

AlignFolderReport align_folder(const fs::path& in, const fs::path& out, const AlignOptions& options, int workers,
                               const std::function<void(int64_t, int64_t)>& progress) {
  if (!fs::is_directory(in)) fail("{}: not a directory", in.string());
  std::vector<fs::path> files;
  for (const auto& e : fs::recursive_directory_iterator(in)) {
    std::string ext = e.path().extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
    if (e.is_regular_file() && (ext == ".jpg" || ext == ".jpeg" || ext == ".png" || ext == ".bmp"))
      files.push_back(fs::relative(e.path(), in));
  }
  std::sort(files.begin(), files.end());
  const auto n = static_cast<int64_t>(files.size());
  std::vector<std::string> lines(files.size());  // landmark line per file; empty: no face
  std::atomic<int64_t> next{0}, done{0};
  std::mutex mutex;
  std::exception_ptr error;
  auto work = [&] {
    try {
      const FaceLandmarker landmarker;
      for (int64_t i; (i = next++) < n;) {
        const fs::path& rel = files[static_cast<size_t>(i)];
        Sample s;
        s.id = (in / rel).string();
        s.fields["image"] = image::read_image(in / rel);
        if (const auto points = landmarker.landmarks(s.fields["image"])) {
          s.fields["landmarks"] = *points;
          align_sample(s, options);
          const torch::Tensor hwc = s.fields["image"].round().clamp(0, 255).to(torch::kUInt8).permute({1, 2, 0}).contiguous();
          cv::Mat crop(static_cast<int>(hwc.size(0)), static_cast<int>(hwc.size(1)), CV_8UC(static_cast<int>(hwc.size(2))),
                       hwc.data_ptr<uint8_t>());
          if (crop.channels() == 3) cv::cvtColor(crop, crop, cv::COLOR_RGB2BGR);
          fs::create_directories((out / rel).parent_path());
          if (!cv::imwrite((out / rel).string(), crop)) fail("{}: cannot write the aligned crop", (out / rel).string());
          std::string line = rel.filename().string();
          const torch::Tensor lm = s.fields["landmarks"].contiguous();
          for (int64_t k = 0; k < lm.numel(); ++k) line += fmt::format(" {:.2f}", lm.data_ptr<float>()[k]);
          lines[static_cast<size_t>(i)] = std::move(line);
        }
        const int64_t d = ++done;
        if (progress) {
          std::lock_guard lock(mutex);
          progress(d, n);
        }
      }
    } catch (...) {
      std::lock_guard lock(mutex);
      if (!error) error = std::current_exception();
      next = n;  // stop the others
    }
  };
  std::vector<std::thread> threads;
  for (int w = 0; w < std::max(1, workers); ++w) threads.emplace_back(work);
  for (auto& t : threads) t.join();
  if (error) std::rethrow_exception(error);

  AlignFolderReport report;
  report.images = n;
  std::map<fs::path, std::string> per_folder;
  for (size_t i = 0; i < files.size(); ++i) {
    if (lines[i].empty()) {
      report.no_face.push_back(files[i].string());
      continue;
    }
    ++report.aligned;
    per_folder[files[i].parent_path()] += lines[i] + "\n";
  }
  for (const auto& [folder, text] : per_folder) write_file_atomic(out / folder / "landmarks.txt", text);
  if (!report.no_face.empty()) write_file_atomic(out / "no_face.txt", join(report.no_face, "\n") + "\n");
  return report;
}

namespace {

class FaceAlign : public Transform {
 public:
  explicit FaceAlign(const Config& c) : options_(AlignOptions::from(c)) {}
  void apply(Sample& s, at::Generator&) const override { align_sample(s, options_); }

 private:
  AlignOptions options_;
};

FACET_REGISTER(transform_registry(), "face_align",
               "JAA-Net similarity alignment from the sample's 68/66/49 landmarks to a size x size crop (200, box_enlarge 2.9)",
               [](const Config& c) { return std::make_shared<FaceAlign>(c); });

}  // namespace
}  // namespace facet::data::face
