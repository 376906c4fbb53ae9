// Per-sample predictions as JSON lines, one per sample in dataset order over every rank:
//
//   {"index": 17, "id": "M003/T8/0412", "logits": [0.12, -1.3, ...], "boxes": [[x1, y1, x2, y2], ...],
//    "scores": [0.93, ...], "answer": "..."}
//
// Batch outputs become numbers or nested lists, ragged outputs lists per sample, text outputs
// strings; an output of more than kMaxValuesPerSample values a sample (a generated image) is left
// out, with one log line. When every output is one fixed-size tensor per sample, the same rows are
// also written as CSV (id, then every value of every output, headed name[index], or name[label]
// where an output holds one value per label of the dataset: logits[AU1], logits[AU2], ...).
#pragma once

#include "core/outputs.h"
#include "data/dataset.h"
#include "train/distributed.h"

#include <filesystem>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace facet::train {

class PredictionWriter {
 public:
  static constexpr int64_t kMaxValuesPerSample = 65536;
  explicit PredictionWriter(std::vector<std::string> label_names = {}) : label_names_(std::move(label_names)) {}
  void add(const data::Batch& batch, const Outputs& outputs);
  // Gathers every rank's rows (a collective: every rank calls it); rank 0 writes <stem>.jsonl and,
  // when the outputs are tabular, <stem>.csv, each atomically. Returns the files written.
  std::vector<std::filesystem::path> write(const std::filesystem::path& stem, ProcessGroup* group, bool leader);
  int64_t size() const { return static_cast<int64_t>(rows_.size()); }

 private:
  struct Row {
    int64_t index;
    std::string json, csv;
  };
  std::vector<std::string> label_names_;
  std::vector<Row> rows_;
  std::set<std::string> left_out_;
  std::string csv_header_;
  bool tabular_ = true;
};

}  // namespace facet::train
