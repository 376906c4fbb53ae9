#include "data/face/face_io.h"

#include "core/error.h"
#include "data/image/image_io.h"
#include "data/image/resample.h"
#include "data/transform.h"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <ostream>
#include <sstream>

namespace facet::data::face {

namespace fs = std::filesystem;

fs::path FrameNames::path(const fs::path& dir, int64_t frame, size_t candidate) const {
  const Candidate& c = candidates_.at(candidate);
  const std::string stem = c.width > 0 ? fmt::format("{:0{}d}", frame, c.width) : std::to_string(frame);
  return dir / (stem + c.ext);
}

int FrameNames::resolve(const fs::path& dir, const std::vector<int64_t>& probe) const {
  for (int64_t frame : probe)
    for (size_t c = 0; c < candidates_.size(); ++c)
      if (fs::exists(path(dir, frame, c))) return static_cast<int>(c);
  return -1;
}

bool FrameNames::exists(const fs::path& dir, int64_t frame, int resolved) const {
  if (resolved >= 0 && fs::exists(path(dir, frame, static_cast<size_t>(resolved)))) return true;
  for (size_t c = 0; c < candidates_.size(); ++c)
    if (static_cast<int>(c) != resolved && fs::exists(path(dir, frame, c))) return true;
  return false;
}

fs::path FrameNames::find(const fs::path& dir, int64_t frame, int resolved) const {
  if (resolved >= 0) {
    fs::path p = path(dir, frame, static_cast<size_t>(resolved));
    if (fs::exists(p)) return p;
  }
  std::vector<std::string> tried;
  for (size_t c = 0; c < candidates_.size(); ++c) {
    fs::path p = path(dir, frame, c);
    if (fs::exists(p)) return p;
    if (static_cast<int>(c) != resolved) tried.push_back(p.filename().string());
  }
  const size_t expected = resolved >= 0 ? static_cast<size_t>(resolved) : 0;
  fail("{}: no such frame file (also tried {} in that directory)", path(dir, frame, expected).string(),
       fmt::join(tried, ", "));
}

namespace {

bool parse_double(const std::string& token, double& out) {
  if (token.empty()) return false;
  char* end = nullptr;
  errno = 0;
  out = std::strtod(token.c_str(), &end);
  // strtod reads "nan" and "inf" too; no landmark is there.
  return errno == 0 && end == token.c_str() + token.size() && std::isfinite(out);
}

bool parse_int(const std::string& token, int64_t& out) {
  if (token.empty()) return false;
  char* end = nullptr;
  errno = 0;
  out = std::strtoll(token.c_str(), &end, 10);
  return errno == 0 && end == token.c_str() + token.size();
}

}  // namespace

std::vector<LandmarkLine> read_landmark_lines(const fs::path& path, std::string_view key, std::string_view key_noun) {
  std::ifstream in(path);
  if (!in) fail("{}: cannot open the landmark file", path.string());
  std::vector<LandmarkLine> lines;
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    std::istringstream tokens(line);
    std::vector<std::string> t;
    for (std::string s; tokens >> s;) t.push_back(s);
    if (t.empty() || t[0][0] == '#') continue;
    if (t.size() < 3 || (t.size() - 1) % 2 != 0)
      fail("{}:{}: expected {} and x y pairs, got {} numbers after the {}", path.string(), number, key, t.size() - 1, key_noun);
    if (!lines.empty() && t.size() - 1 != lines.front().xy.size())
      fail("{}:{}: {} points, but the file's first line has {}", path.string(), number, (t.size() - 1) / 2,
           lines.front().xy.size() / 2);
    std::vector<float> xy(t.size() - 1);
    for (size_t i = 1; i < t.size(); ++i) {
      double v = 0;
      if (!parse_double(t[i], v)) fail("{}:{}: field {}: expected a finite number, got \"{}\"", path.string(), number, i + 1, t[i]);
      xy[i - 1] = static_cast<float>(v);
    }
    lines.push_back({std::move(t[0]), std::move(xy), number});
  }
  return lines;
}

LandmarkTrack read_landmarks(const fs::path& path) {
  LandmarkTrack track;
  for (auto& line : read_landmark_lines(path, "the frame number", "frame")) {
    int64_t frame = 0;
    if (!parse_int(line.key, frame))
      fail("{}:{}: expected a frame number first, got \"{}\"", path.string(), line.number, line.key);
    track.points = static_cast<int64_t>(line.xy.size() / 2);
    if (!track.frames.emplace(frame, std::move(line.xy)).second)
      fail("{}:{}: frame {} appears twice", path.string(), line.number, frame);
  }
  if (track.frames.empty()) fail("{}: no landmark lines", path.string());
  return track;
}

void write_landmark_line(std::ostream& out, int64_t frame, const std::vector<float>& xy) {
  out << frame;
  for (float v : xy) out << ' ' << fmt::format("{:.2f}", v);
  out << '\n';
}

namespace {

// [C, H, W] of a decoded frame: float, or under EightBitImages an 8-bit view of the frame's own
// buffer (the view keeps the cv::Mat alive).
torch::Tensor chw(const cv::Mat& rgb) {
  if (!EightBitImages::allowed() || rgb.depth() != CV_8U) return image::mat_to_chw(rgb);
  const int64_t c = rgb.channels();
  return torch::from_blob(rgb.data, {rgb.rows, rgb.cols, c}, {static_cast<int64_t>(rgb.step1()), c, 1},
                          [keep = rgb](void*) mutable { keep.release(); }, torch::kUInt8)
      .permute({2, 0, 1});
}

// Zeroes the pixels of an interleaved [rows, cols, channels] buffer outside `keep`.
void zero_outside(uint8_t* pixels, int64_t rows, int64_t cols, int64_t channels, const cv::Rect& keep) {
  const int64_t row_bytes = cols * channels;
  std::memset(pixels, 0, keep.y * row_bytes);
  for (int64_t y = keep.y; y < keep.y + keep.height; ++y) {
    uint8_t* row = pixels + y * row_bytes;
    std::memset(row, 0, keep.x * channels);
    std::memset(row + (keep.x + keep.width) * channels, 0, (cols - keep.x - keep.width) * channels);
  }
  std::memset(pixels + (keep.y + keep.height) * row_bytes, 0, (rows - keep.y - keep.height) * row_bytes);
}

}  // namespace

torch::Tensor read_frame(const fs::path& path, int64_t size, torch::Tensor* landmarks) {
  // Decoded straight to RGB and resized while still 8-bit: both are several times cheaper there.
  // A JPEG at least twice `size` on both sides decodes at a reduced scale first (image/jpeg.h).
  int reduction = 1;
  cv::Mat rgb = image::read_image_mat(path, size, &reduction);
  if (rgb.channels() == 1) cv::cvtColor(rgb, rgb, cv::COLOR_GRAY2RGB);
  if (rgb.channels() != 3) fail("{}: expected a colour frame, got {} channels", path.string(), rgb.channels());
  if (size <= 0 || (rgb.rows * reduction == size && rgb.cols * reduction == size)) return chw(rgb);
  if (landmarks != nullptr && landmarks->defined()) {
    // Continuous coordinates with pixel centres at +0.5 scale exactly by the ratio of `size` to the
    // stored frame's sides (a reduced decode divides them exactly by `reduction`).
    const auto scale = torch::tensor({static_cast<float>(size) / static_cast<float>(rgb.cols * reduction),
                                      static_cast<float>(size) / static_cast<float>(rgb.rows * reduction)});
    *landmarks = *landmarks * scale;
  }
  if (rgb.rows == size && rgb.cols == size) return chw(rgb);  // the reduced decode did it all
  if (rgb.depth() == CV_8U) {
    // Antialiased bilinear on the 8-bit frame, bitwise torchvision's Resize(antialias=True) on a uint8
    // tensor, with its weight tables made once per size (image/resample.h); OpenCV's area resize at
    // non-integer ratios is neither the same nor vectorised.
    // Only the window the loader's crop keeps, when it says (KeptWindow): the rest is zero.
    const int64_t c = rgb.channels();
    const cv::Rect keep = KeptWindow::of(cv::Size(static_cast<int>(size), static_cast<int>(size)));
    torch::Tensor resized = torch::empty({size, size, c}, torch::kUInt8);
    zero_outside(resized.data_ptr<uint8_t>(), size, size, c, keep);
    image::resize_antialiased({rgb.data, rgb.rows, rgb.cols, c, static_cast<int64_t>(rgb.step1())},
                              resized.data_ptr<uint8_t>(), size, size, {keep.y, keep.x, keep.height, keep.width});
    resized = resized.permute({2, 0, 1});
    // 8-bit when the loader's transforms take it (data/transform.h), else uint8 HWC to float CHW in one
    // copy (not a float HWC copy, then a contiguous one).
    if (EightBitImages::allowed()) return resized;
    return resized.to(torch::kFloat, /*non_blocking=*/false, /*copy=*/false, torch::MemoryFormat::Contiguous);
  }
  cv::Mat resized;
  cv::resize(rgb, resized, cv::Size(static_cast<int>(size), static_cast<int>(size)), 0, 0,
             rgb.rows > size || rgb.cols > size ? cv::INTER_AREA : cv::INTER_LINEAR);
  rgb = resized;
  return chw(rgb);
}

}  // namespace facet::data::face
