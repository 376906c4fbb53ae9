#include "data/disfa/videos.h"

#include "core/error.h"
#include "core/file_io.h"
#include "data/disfa/disfa.h"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/videoio.hpp>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <mutex>
#include <regex>
#include <thread>

namespace facet::data::disfa {
namespace fs = std::filesystem;

namespace {

// LeftVideoSN001_comp.avi; the right camera's files are spelt _Comp, so the case is not relied on.
std::string subject_of(const fs::path& video) {
  static const std::regex name(R"(LeftVideo(SN[0-9]{3})_comp\.avi)", std::regex::icase);
  std::smatch m;
  const std::string file = video.filename().string();
  return std::regex_match(file, m, name) ? m[1].str() : std::string();
}

int64_t count_lines(const fs::path& file) {
  std::ifstream in(file);
  int64_t n = 0;
  for (std::string line; std::getline(in, line);) n += !line.empty() && line != "\r";
  return n;
}

}  // namespace

std::vector<fs::path> left_camera_videos(const fs::path& root) {
  const fs::path dir = root / kVideosDir;
  if (!fs::is_directory(dir))
    fail("{}: no such folder; DISFA's left-camera videos (LeftVideoSN001_comp.avi, ...) are expected there", dir.string());
  std::vector<fs::path> videos;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file() && !subject_of(e.path()).empty()) videos.push_back(e.path());
  std::sort(videos.begin(), videos.end(), [](const fs::path& a, const fs::path& b) { return subject_of(a) < subject_of(b); });
  if (videos.empty()) fail("{}: no LeftVideoSN<nnn>_comp.avi file in this folder", dir.string());
  return videos;
}

std::vector<SubjectFrames> extract_frames(const fs::path& root, const fs::path& out_dir, const FrameExtraction& o,
                                          const std::function<void(int64_t, int64_t, int64_t)>& progress) {
  if (o.ext != "png" && o.ext != "jpg") fail("facet data frames: --ext: expected png or jpg, got \"{}\"", o.ext);
  const std::vector<fs::path> videos = left_camera_videos(root);
  const fs::path out = out_dir.empty() ? root / kImagesDir : out_dir;
  std::vector<SubjectFrames> results(videos.size());
  std::atomic<size_t> next{0};
  std::atomic<int64_t> written{0}, finished{0};
  std::mutex report;
  std::vector<std::string> errors(videos.size());
  auto work = [&] {
    for (size_t i = next++; i < videos.size(); i = next++) {
      SubjectFrames& r = results[i];
      r.subject = subject_of(videos[i]);
      const fs::path labels = root / kLabelDir / r.subject / (r.subject + "_au1.txt");
      if (fs::exists(labels)) r.label_lines = count_lines(labels);
      const fs::path dir = out / r.subject, done = dir / ".extracted";
      try {
        if (fs::exists(done)) {  // a finished subject of an earlier run
          r.frames = std::stoll(read_file(done));
          r.resumed = true;
        } else {
          cv::VideoCapture capture(videos[i].string());
          if (!capture.isOpened())
            fail("{}: cannot open the video (OpenCV's video backend, FFmpeg, could not read it)", videos[i].string());
          fs::create_directories(dir);
          cv::Mat frame;
          std::vector<uchar> bytes;
          for (int64_t t = 0; capture.read(frame); ++t) {
            if (frame.empty()) break;
            if (!cv::imencode("." + o.ext, frame, bytes)) fail("{}: cannot encode frame {}", videos[i].string(), t);
            write_file_atomic(dir / fmt::format("{}.{}", t, o.ext), std::string(bytes.begin(), bytes.end()));
            ++r.frames;
            if (progress && ++written % 50 == 0) {
              std::lock_guard<std::mutex> lock(report);
              progress(written, finished, static_cast<int64_t>(videos.size()));
            }
          }
          if (r.frames == 0) fail("{}: no frame could be decoded", videos[i].string());
          write_file_atomic(done, std::to_string(r.frames));
        }
      } catch (const std::exception& e) {
        errors[i] = e.what();
      }
      ++finished;
      if (progress) {
        std::lock_guard<std::mutex> lock(report);
        progress(written, finished, static_cast<int64_t>(videos.size()));
      }
    }
  };
  std::vector<std::thread> threads;
  for (int w = 0; w < std::max(1, std::min<int>(o.workers, static_cast<int>(videos.size()))); ++w) threads.emplace_back(work);
  for (auto& t : threads) t.join();
  for (const auto& e : errors)
    if (!e.empty()) fail("{}", e);
  return results;
}

}  // namespace facet::data::disfa
