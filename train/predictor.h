// Prediction on images a user points at (`facet predict`): the model of a run (or a checkpoint
// with its config), its evaluation transforms, and no dataset — the images come from files,
// folders or lists (data/image_list). Writes predictions.jsonl (and .csv when tabular) and one
// picture per image from the task's visualiser.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace facet::train {

struct PredictOptions {
  std::filesystem::path target;           // RUN_DIR or a checkpoint directory
  std::string checkpoint = "best";        // for a RUN_DIR: best or last
  std::filesystem::path config;           // default: the run's config.yaml
  std::vector<std::string> overrides;
  std::vector<std::filesystem::path> inputs;  // images, folders, .txt lists
  std::filesystem::path out;              // default: <run>/predictions (or <checkpoint>/predictions)
  int64_t batch_size = 8;
  bool pictures = true;
};

struct PredictSummary {
  int64_t images = 0;
  std::vector<std::filesystem::path> files;  // predictions.jsonl [, predictions.csv]
  std::filesystem::path pictures;            // the folder of pictures, or empty
};

PredictSummary predict(const PredictOptions& options);

}  // namespace facet::train
