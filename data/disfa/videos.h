// DISFA as distributed ships the left-camera videos (<root>/Videos_LeftCamera/LeftVideoSN001_comp.avi
// ...), not frames; the reader and the AU literature use frames extracted 0-based, image t holding
// label frame t + 1 (face.md §B.1). `facet data frames` makes them: <out>/<SN>/<t>.png, one video per
// worker thread, written atomically, each finished subject marked so an interrupted run resumes.
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace facet::data::disfa {

inline constexpr std::string_view kVideosDir = "Videos_LeftCamera";

struct FrameExtraction {
  std::string ext = "png";  // png | jpg
  int workers = 1;
};

struct SubjectFrames {
  std::string subject;        // SN001
  int64_t frames = 0;         // extracted (or found complete from an earlier run)
  int64_t label_lines = -1;   // lines of <SN>_au1.txt, -1 without label files
  bool resumed = false;       // already complete: left as it was
};

// The left-camera video of each subject in <root>/Videos_LeftCamera, sorted by subject.
std::vector<std::filesystem::path> left_camera_videos(const std::filesystem::path& root);

// Extracts every left-camera video of `root` into `out` (default layout: <root>/img). `progress`
// receives (frames written so far, videos finished, videos).
std::vector<SubjectFrames> extract_frames(const std::filesystem::path& root, const std::filesystem::path& out,
                                          const FrameExtraction& options,
                                          const std::function<void(int64_t, int64_t, int64_t)>& progress = {});

}  // namespace facet::data::disfa
