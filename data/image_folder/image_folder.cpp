// The ImageFolder reader ("image_folder"): <root>/<split folder>/<class>/<image> (image_folder.h),
// one int64 `label` per image, as torchvision.datasets.ImageFolder reads it: classes are the
// sorted sub-folder names, images sorted by path within each class, non-image files ignored.
//
//   data:
//     name: image_folder
//     root: /data/abaw4_lsd
//     folders: {train: train, val: val}   # split -> folder under root; default: the split's name
//     class_source: train                 # the split whose folders define the classes
//     image_size: 0                       # > 0: resize every image to this square size
//
// Every split takes its class list from `class_source` (when that folder exists), so a validation
// folder that lacks a class cannot shift the others' indices the way two separate torchvision
// ImageFolders would; a class folder that is not in the list is an error. Images are decoded as
// 3-channel RGB 0..255 (PIL's convert("RGB") in torchvision's loader).
#include "core/text.h"
#include "data/dataset.h"
#include "data/face/face_io.h"
#include "data/image_folder/image_folder.h"

#include <algorithm>
#include <cctype>
#include <filesystem>

namespace facet::data {

bool image_folder::has_image_extension(const std::filesystem::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char ch) { return std::tolower(ch); });
  return std::find(kExtensions.begin(), kExtensions.end(), ext) != kExtensions.end();
}

namespace {

namespace fs = std::filesystem;

std::vector<std::string> class_folders(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_directory()) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

class ImageFolder : public Dataset {
 public:
  ImageFolder(const Config& c, const std::string& split) {
    root_ = c.get<std::string>("root");
    image_size_ = c.get<int64_t>("image_size", 0);
    if (image_size_ < 0) fail("{}: {}: expected >= 0, got {}", c.where("image_size"), c.full_key("image_size"), image_size_);
    if (!fs::is_directory(root_)) fail("{}: {}: {} is not a directory", c.where("root"), c.full_key("root"), root_.string());
    auto folder_of = [&](const std::string& s) {
      const std::string key = "folders." + s;
      return c.has(key) ? c.get<std::string>(key) : s;
    };
    if (c.has("folders")) c.consume("folders");  // entries for splits this run does not open
    const fs::path dir = root_ / folder_of(split);
    if (!fs::is_directory(dir)) fail("{}: split {}: {} is not a directory", c.where("root"), split, dir.string());
    const std::string source = c.get<std::string>("class_source", "train");
    const fs::path source_dir = root_ / folder_of(source);
    classes_ = class_folders(fs::is_directory(source_dir) ? source_dir : dir);
    if (classes_.empty()) fail("{}: no class folders in {}", c.where("root"), (fs::is_directory(source_dir) ? source_dir : dir).string());
    for (const auto& name : class_folders(dir))
      if (!std::binary_search(classes_.begin(), classes_.end(), name))
        fail("{}: class folder \"{}\" is not among the classes of {} ({})", (dir / name).string(), name, source_dir.string(),
             join(classes_));
    for (size_t k = 0; k < classes_.size(); ++k) {
      const fs::path class_dir = dir / classes_[k];
      if (!fs::is_directory(class_dir)) continue;  // a split may lack a class; the indices stay put
      std::vector<fs::path> files;
      for (const auto& e : fs::recursive_directory_iterator(class_dir))
        if (e.is_regular_file() && image_folder::has_image_extension(e.path())) files.push_back(e.path());
      std::sort(files.begin(), files.end());
      for (auto& f : files) items_.push_back({std::move(f), static_cast<int64_t>(k)});
    }
    if (items_.empty()) fail("{}: no images under {} (extensions {})", c.where("root"), dir.string(), join(std::vector<std::string>(
        image_folder::kExtensions.begin(), image_folder::kExtensions.end())));
  }

  int64_t size() const override { return static_cast<int64_t>(items_.size()); }
  std::vector<std::string> label_names() const override { return classes_; }
  bool passes_eight_bit_images() const override { return true; }  // face::read_frame's image, untouched

  Sample get(int64_t index, uint64_t) const override {
    const auto& item = items_.at(static_cast<size_t>(index));
    Sample s;
    s.fields["image"] = face::read_frame(item.path, image_size_, nullptr);
    s.fields["label"] = torch::tensor(item.label, torch::kInt64);
    s.id = item.path.string();
    return s;
  }

 private:
  struct Item {
    fs::path path;
    int64_t label;
  };
  fs::path root_;
  int64_t image_size_ = 0;
  std::vector<std::string> classes_;
  std::vector<Item> items_;
};

FACET_REGISTER(dataset_registry(), "image_folder",
               "torchvision ImageFolder layout <root>/<split>/<class>/<image>, classes = sorted folder names",
               [](const Config& c, const std::string& split) { return std::make_shared<ImageFolder>(c, split); });

}  // namespace
}  // namespace facet::data
