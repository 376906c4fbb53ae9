// LiteGPT's training answers built natively from the VinDr-CXR CSVs, as the release builds them
// (LiteGPT `medlvlm/modules/preprocess_label.py` and `vindrcxr_dataset.py` @1828e4c; facts in
// ../shared/research/medical.md §1.5). The reference's quirks are kept on purpose:
//   - global labels: the union over every row (reader) of an image in image_labels_*.csv, listed in
//     LiteGPT's order Lung tumor, Pneumonia, Tuberculosis, Other diseases, COPD, No finding; an
//     image with none gives "... are ." ("Other disease", the test spelling, reads as "Other diseases").
//   - boxes: within (image, class), any two rows (readers ignored) whose IoU (+1 pixel convention)
//     exceeds 0.5 are chained by one greedy pass over the pairs in order, where a later pair may
//     move a box to another group; only the first CSV row of each group is kept. "No finding" rows
//     are kept once per image and appear in the local sentence as the bare words "No finding".
//   - coordinates: round-half-to-even of x / width * 100 and y / height * 100 (each axis by its own
//     side of the original image), items "<p>{class}</p> {<x1><y1><x2><y2>}" joined by "," with
//     identical strings once (the reference joins a Python set, so its order is arbitrary; Facet
//     keeps the first kept row's order).
//   - grounded answer: global sentence + " " + local sentence, or the global sentence alone when
//     "No finding" is among the global labels (even if another reader marked findings).
#pragma once

#include "core/csv.h"

#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace facet::data::vindr_cxr {

// LiteGPT's global-label order (not the CSV's).
inline constexpr std::array<std::string_view, 6> kLiteGptGlobalOrder = {"Lung tumor", "Pneumonia",      "Tuberculosis",
                                                                       "Other diseases", "COPD", "No finding"};

// The training prompts of the [grounding] task at @1828e4c. The release's list has five entries: a
// missing comma joins its last two strings into one (kept as released).
extern const std::array<std::string, 5> kLiteGptGroundingPrompts;
// The global-classification prompt of the evaluation ([vqa] task).
extern const std::string kLiteGptVqaPrompt;
// The MiniGPT-v2 instruction around a prompt: "<Img><ImageHere></Img> {prompt} " (trailing space).
std::string litegpt_instruction(std::string_view prompt);

struct LiteGptBox {
  std::string class_name;                   // a local label, or "No finding" (no box)
  std::optional<std::array<double, 4>> box;  // x_min, y_min, x_max, y_max in original pixels
};

// One image's labels as the reference keeps them, before coordinates are scaled.
struct LiteGptLabels {
  std::string image_id;
  std::vector<std::string> global;  // in kLiteGptGlobalOrder order
  std::vector<LiteGptBox> local;    // kept rows in CSV order; empty when the image has no box row
  bool has_local_rows = false;      // whether annotations_*.csv has any row for the image
  // The 28 image-level labels (kLocalLabels then kGlobalLabels), the union over the image's rows,
  // for LiteGPT's classification report; empty when the CSV lacks some of the 28 columns.
  std::vector<float> all_labels;
};

struct LiteGptAnswer {
  std::string global, local, grounded;
};

// The global sentence alone (needs no image size).
std::string litegpt_answer_global(const LiteGptLabels& labels);

// IoU of two boxes with the +1 pixel convention (LiteGPT `computeIoU`).
double litegpt_iou(const std::array<double, 4>& a, const std::array<double, 4>& b);

// Images in order of first appearance in `image_labels`, with their union of global labels and
// their de-duplicated box rows from `annotations` (dedup = false keeps every row, the reference's
// process_overlap=False). Errors name the file, line and column.
std::vector<LiteGptLabels> litegpt_labels(const CsvTable& image_labels, const CsvTable& annotations, bool dedup = true);

// The three sentences for an image of the given original size (pixels). A grounded answer needs
// the local sentence: an image with findings but no annotation row is an error naming it.
LiteGptAnswer litegpt_answer(const LiteGptLabels& labels, double width, double height);

}  // namespace facet::data::vindr_cxr
