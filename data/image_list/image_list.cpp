#include "data/image_list/image_list.h"

#include "core/file_io.h"
#include "data/face/face_io.h"
#include "data/image/image_io.h"

#include <algorithm>
#include <set>

namespace facet::data {
namespace fs = std::filesystem;

namespace {

bool is_image_or_dicom(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  static const std::set<std::string> known = {".png", ".jpg", ".jpeg", ".dcm", ".dicom"};
  return known.count(ext) > 0;
}

}  // namespace

ImageListDataset::ImageListDataset(const std::vector<fs::path>& inputs, int64_t channels) : channels_(channels) {
  if (channels != 0 && channels != 1 && channels != 3) fail("image list: channels must be 0, 1 or 3, got {}", channels);
  std::set<fs::path> folders;
  for (const auto& input : inputs) {
    if (fs::is_directory(input)) {
      std::vector<fs::path> found;
      for (const auto& e : fs::recursive_directory_iterator(input))
        if (e.is_regular_file() && is_image_or_dicom(e.path())) found.push_back(e.path());
      std::sort(found.begin(), found.end());
      if (found.empty()) fail("{}: no PNG, JPEG or DICOM image in this folder", input.string());
      files_.insert(files_.end(), found.begin(), found.end());
    } else if (input.extension() == ".txt") {
      const std::string text = read_file(input);
      size_t at = 0, line = 0;
      while (at < text.size()) {
        const size_t end = std::min(text.find('\n', at), text.size());
        std::string entry = text.substr(at, end - at);
        at = end + 1, ++line;
        while (!entry.empty() && std::isspace(static_cast<unsigned char>(entry.back()))) entry.pop_back();
        if (entry.empty() || entry[0] == '#') continue;
        const fs::path p = fs::path(entry).is_absolute() ? fs::path(entry) : input.parent_path() / entry;
        if (!fs::is_regular_file(p)) fail("{}:{}: {} is not a file", input.string(), line, p.string());
        files_.push_back(p);
      }
    } else if (fs::is_regular_file(input)) {
      files_.push_back(input);
    } else {
      fail("{}: no such file or folder", input.string());
    }
  }
  if (files_.empty()) fail("image list: no images given");
  for (const auto& f : files_) folders.insert(f.parent_path());
  for (const auto& folder : folders) {
    const fs::path marks = folder / "landmarks.txt";
    if (!fs::exists(marks)) continue;
    for (auto& line : face::read_landmark_lines(marks, "the image file name", "image"))
      landmarks_[folder / line.key] = std::move(line.xy);
  }
}

Sample ImageListDataset::get(int64_t index, uint64_t) const {
  const fs::path& file = files_.at(static_cast<size_t>(index));
  Sample s;
  s.id = file.string();
  torch::Tensor image = image::read_image(file);
  if (channels_ == 1 && image.size(0) == 3) {
    image = (0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2]).unsqueeze(0);
  } else if (channels_ == 3 && image.size(0) == 1) {
    image = image.expand({3, -1, -1}).contiguous();
  } else if (channels_ != 0 && image.size(0) != channels_) {
    fail("{}: has {} channels; the model reads {}", file.string(), image.size(0), channels_);
  }
  s.fields["image"] = image;
  if (auto it = landmarks_.find(file); it != landmarks_.end())
    s.fields["landmarks"] = torch::tensor(it->second).view({-1, 2});
  return s;
}

PredictionInputRegistry& prediction_input_registry() {
  static PredictionInputRegistry registry("prediction input", "prediction inputs");
  return registry;
}

std::shared_ptr<Dataset> open_prediction_inputs(const Config& data, const std::vector<fs::path>& inputs, int64_t channels) {
  if (data.has("name") && prediction_input_registry().contains(data.get<std::string>("name")))
    return prediction_input_registry().create(data, inputs, channels);
  return std::make_shared<ImageListDataset>(inputs, channels);
}

}  // namespace facet::data
