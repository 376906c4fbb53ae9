// File helpers shared by the BP4D and DISFA readers: frame files whose names may or may not be
// zero-padded, per-sequence landmark text files, and decoding a frame (with its landmarks) to the
// Sample conventions of data/dataset.h.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace facet::data::face {

// Frame files are named by a frame number, zero-padded by some toolchains and bare by others
// (face.md §A.1: JAA-Net `0643.jpg`, ME-GraphAU `643.jpg`). A candidate is (pad width, extension);
// width 0 means the bare integer. A reader resolves the candidate once per sequence directory and
// falls back to the other candidates per frame, so a sequence with mixed names still loads.
class FrameNames {
 public:
  struct Candidate {
    int width;          // 0 = bare
    std::string ext;    // ".jpg"
  };
  explicit FrameNames(std::vector<Candidate> candidates) : candidates_(std::move(candidates)) {}

  std::filesystem::path path(const std::filesystem::path& dir, int64_t frame, size_t candidate) const;
  // The first candidate under which one of `probe` (tried in order) exists in `dir`; -1 if none.
  int resolve(const std::filesystem::path& dir, const std::vector<int64_t>& probe) const;
  // The file of `frame`: under `resolved` if it exists, else under the first other candidate that
  // exists; an error naming the expected file (and the other names tried) when none does.
  std::filesystem::path find(const std::filesystem::path& dir, int64_t frame, int resolved) const;
  bool exists(const std::filesystem::path& dir, int64_t frame, int resolved) const;

 private:
  std::vector<Candidate> candidates_;
};

// A landmark text file: one line per frame, "<frame> x1 y1 x2 y2 ... xK yK", whitespace-separated,
// '#' starts a comment line, blank lines are skipped. <frame> is the frame number the label file
// uses (BP4D CSV column "0"; DISFA 1-based label frame). Coordinates are pixels of the frame file
// as stored (x right, y down, data/dataset.h convention). K is fixed by the first line; every line
// must have it. Errors name file:line.
struct LandmarkTrack {
  int64_t points = 0;
  std::unordered_map<int64_t, std::vector<float>> frames;  // frame -> 2K floats
};
LandmarkTrack read_landmarks(const std::filesystem::path& path);

// The lines of any such file, keyed by their first field (a frame number here, an image name in
// data/palsy): every line but blank and '#' ones, each with a key and the same number of x y pairs.
// `key` and `key_noun` name the first field in errors ("the frame number", "frame").
struct LandmarkLine {
  std::string key;
  std::vector<float> xy;  // 2K floats
  int64_t number = 0;     // 1-based line number, for messages
};
std::vector<LandmarkLine> read_landmark_lines(const std::filesystem::path& path, std::string_view key,
                                              std::string_view key_noun);
// Writes the same format (the synthetic writers use it).
void write_landmark_line(std::ostream& out, int64_t frame, const std::vector<float>& xy);

// Decodes a colour frame to float32 [3, H, W] RGB in 0..255. With `size` > 0 the frame is resized
// to size x size (8-bit frames: antialiased bilinear, as torchvision's Resize(antialias=True)) and
// `landmarks` ([K, 2], may be undefined) is scaled the same way; a JPEG at least twice `size` on
// both sides is first decoded at 1/2, 1/4 or 1/8 scale (image/jpeg.h). Errors name the file.
// Under EightBitImages (data/transform.h) the frame may come back uint8, and under KeptWindow only
// the window the loader's crop keeps is resized (the rest is zero).
torch::Tensor read_frame(const std::filesystem::path& path, int64_t size, torch::Tensor* landmarks);

}  // namespace facet::data::face
