// Images given on the command line for prediction (`facet predict`): files, folders (searched
// recursively for PNG, JPEG and DICOM files, in sorted order) and list files (`.txt`, one path per
// line, relative to the list). A `landmarks.txt` beside images — the file `facet data align`
// writes, "<file> x1 y1 ... xK yK" per line — gives their samples a `landmarks` field, which the AU
// models read their regions from.
#pragma once

#include "core/registry.h"
#include "data/dataset.h"

#include <filesystem>
#include <map>
#include <vector>

namespace facet::data {

class ImageListDataset : public Dataset {
 public:
  // `channels`: 1 converts colour images to grey (ITU-R 601 luma), 3 repeats a grey image; 0 keeps
  // the file's channels.
  ImageListDataset(const std::vector<std::filesystem::path>& inputs, int64_t channels = 0);

  int64_t size() const override { return static_cast<int64_t>(files_.size()); }
  Sample get(int64_t index, uint64_t augment_seed) const override;
  const std::vector<std::filesystem::path>& files() const { return files_; }

 private:
  std::vector<std::filesystem::path> files_;
  std::map<std::filesystem::path, std::vector<float>> landmarks_;  // by file
  int64_t channels_;
};

// What `facet predict` reads for a kind of data: the files a user points at, turned into samples
// the way that kind's reader makes them (a DeepLesion key slice becomes its multi-slice stack).
// Keyed by the data config's `name`; kinds without an entry read plain images (ImageListDataset).
using PredictionInputRegistry =
    Registry<std::shared_ptr<Dataset>, const std::vector<std::filesystem::path>& /*inputs*/, int64_t /*channels*/>;
PredictionInputRegistry& prediction_input_registry();
std::shared_ptr<Dataset> open_prediction_inputs(const Config& data, const std::vector<std::filesystem::path>& inputs,
                                                int64_t channels);

}  // namespace facet::data
