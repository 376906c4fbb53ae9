// HDF5 packs: the decoded, preprocessed samples of a split in one chunked, compressed file, so
// training reads one file instead of decoding thousands of PNG/DICOM files per epoch.
//
//   facet data pack CONFIG --out train.h5 [--split train]   (data.pack_transforms preprocess)
//   data: {pack: train.h5, ...}                              (read back, transparently)
//
// Layout (one group per split):
//   /<split>/fields/<name>         [N, ...] one chunk per sample, gzip
//   /<split>/ragged/<name>/values  [M, ...] concatenated; /<split>/ragged/<name>/offsets [N + 1]
//   /<split>/ids                   [N] strings
//   attributes on /: facet_pack_version, preprocess (the YAML it was made with), preprocess_hash
// A pack made with other preprocessing than the config asks for is refused, naming both.
#pragma once

#include "data/dataset.h"

#include <filesystem>
#include <functional>
#include <set>
#include <string>

namespace facet::data {

// The preprocessing a pack depends on: the data node without what only affects training
// (batching, workers, random augmentation, error policy, the pack itself), as YAML, and its hash.
struct Preprocess {
  std::string yaml;
  std::string hash;  // 16 hex digits (FNV-1a 64 of yaml)

  static Preprocess of(const Config& data_node);
};

// Writes `split` of the dataset, each sample passed through `transforms` first, to `file` (created
// or extended with a new split group; an existing group of that split is an error). `progress(done)`
// is called after each sample.
void write_pack(const std::filesystem::path& file, const std::string& split, const Dataset& dataset,
                const std::vector<std::shared_ptr<class Transform>>& transforms, const Preprocess& preprocess,
                const std::function<void(int64_t)>& progress = {});

// Keys of a data node that the loader and the trainer read, not the dataset's reader: batching,
// workers, augmentation, splits, the error policy and the pack itself.
const std::set<std::string>& loader_keys();

// The dataset a data node describes: its `pack` when it names one (checked against the node's
// preprocessing), else the registered reader. Use this instead of dataset_registry().create.
std::shared_ptr<Dataset> open_dataset(const Config& data_node, const std::string& split);

}  // namespace facet::data
