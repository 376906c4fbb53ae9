#include "data/vindr_cxr/litegpt_answers.h"

#include "core/error.h"
#include "data/vindr_cxr/vindr_cxr.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

namespace facet::data::vindr_cxr {

namespace {

const std::string kDescribe =
    "please describe this image in details with radiological features. Use two sentences unless there are no "
    "findings. The first sentence should list the global diseases present in the image, and the second should list "
    "local diseases with localized bounding boxes.";
const std::string kPosterior =
    "This is a radiological image of a chest x-ray from a Posterior Anterior view. Examine all the areas where the "
    "lung borders the diaphragm, the heart and other mediastinal structures. ";

}  // namespace

const std::array<std::string, 5> kLiteGptGroundingPrompts = {
    "[grounding] " + kDescribe,
    "[grounding] " + kDescribe + " Let's think step by step.",
    "[grounding] " + kPosterior + "Please" + kDescribe.substr(6),
    "[grounding] " + kPosterior + "Please" + kDescribe.substr(6) + " Let's think step by step.",
    // Two strings of the release joined by its missing comma (no space between them), double
    // spaces included.
    "[grounding] Please describe this image in details with radiological features. Use one sentence unless there "
    "are no findings. The sentence should list the global diseases present in the image.[grounding] This is a "
    "radiological image of a chest x-ray from a Posterior Anterior view. Examine all the areas where the lung borders "
    " the diaphragm, the heart and other mediastinal structures. Please describe this image in details with "
    "radiological features. Use one sentence unless there are no findings. The sentence should list the  global "
    "diseases present in the image."};

const std::string kLiteGptVqaPrompt =
    "[vqa] Given the provided chest X-ray image, which of the following diagnoses are present (select all that "
    "apply): COPD, Lung Tumor, Pneumonia, Tuberculosis, Other Disease, or No Finding?";

std::string litegpt_instruction(std::string_view prompt) { return fmt::format("<Img><ImageHere></Img> {} ", prompt); }

double litegpt_iou(const std::array<double, 4>& a, const std::array<double, 4>& b) {
  const double w = std::max(0.0, std::min(a[2], b[2]) - std::max(a[0], b[0]) + 1);
  const double h = std::max(0.0, std::min(a[3], b[3]) - std::max(a[1], b[1]) + 1);
  const double inter = w * h;
  const double uni = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - inter;
  return inter / uni;
}

namespace {

// The reference's greedy pass over the pairs (i < j, in order): a pair above 0.5 joins a new group
// when neither box has one, else the later box takes the earlier one's group (even if it had its
// own), else the earlier takes the later's; boxes left alone get groups of their own.
std::vector<int> chain_groups(const std::vector<std::array<double, 4>>& boxes) {
  std::vector<int> group(boxes.size(), 0);
  int next = 1;
  for (size_t i = 0; i < boxes.size(); ++i)
    for (size_t j = i + 1; j < boxes.size(); ++j) {
      if (!(litegpt_iou(boxes[i], boxes[j]) > 0.5)) continue;
      if (group[i] == 0 && group[j] == 0) group[i] = group[j] = next++;
      else if (group[i] != 0) group[j] = group[i];
      else group[i] = group[j];
    }
  next = group.empty() ? 1 : *std::max_element(group.begin(), group.end()) + 1;
  for (int& g : group)
    if (g == 0) g = next++;
  return group;
}

}  // namespace

std::vector<LiteGptLabels> litegpt_labels(const CsvTable& image_labels, const CsvTable& annotations, bool dedup) {
  std::vector<LiteGptLabels> out;
  std::map<std::string, size_t> index;  // image id -> position in out
  {
    const size_t id_col = image_labels.column("image_id");
    std::array<size_t, kLiteGptGlobalOrder.size()> cols{};
    for (size_t i = 0; i < cols.size(); ++i) {
      auto col = image_labels.find_column(kLiteGptGlobalOrder[i]);
      if (!col && kLiteGptGlobalOrder[i] == kGlobalLabels[4]) col = image_labels.find_column(kOtherDiseaseTestSpelling);
      cols[i] = col ? *col : image_labels.column(kLiteGptGlobalOrder[i]);  // the error lists the header
    }
    // All 28 columns, when present, for the image-level label vector.
    std::vector<size_t> all_cols;
    for (size_t i = 0; i < kNumLabels; ++i) {
      const std::string_view name = i < kLocalLabels.size() ? kLocalLabels[i] : kGlobalLabels[i - kLocalLabels.size()];
      auto col = image_labels.find_column(name);
      if (!col && name == kGlobalLabels[4]) col = image_labels.find_column(kOtherDiseaseTestSpelling);
      if (!col) break;
      all_cols.push_back(*col);
    }
    const bool all = all_cols.size() == kNumLabels;
    std::vector<std::set<size_t>> positive;
    for (size_t r = 0; r < image_labels.rows(); ++r) {
      const std::string& id = image_labels.cell(r, id_col);
      auto [it, added] = index.emplace(id, out.size());
      if (added) {
        out.push_back({id, {}, {}, false, all ? std::vector<float>(kNumLabels, 0.f) : std::vector<float>()});
        positive.emplace_back();
      }
      if (all)
        for (size_t i = 0; i < kNumLabels; ++i)
          if (image_labels.number(r, all_cols[i]) != 0) out[it->second].all_labels[i] = 1.f;
      for (size_t i = 0; i < cols.size(); ++i)
        if (image_labels.number(r, cols[i]) != 0) positive[it->second].insert(i);
    }
    for (size_t k = 0; k < out.size(); ++k)
      for (size_t i : positive[k]) out[k].global.emplace_back(kLiteGptGlobalOrder[i]);
  }

  const size_t id_col = annotations.column("image_id"), class_col = annotations.column("class_name");
  const std::array<size_t, 4> xy = {annotations.column("x_min"), annotations.column("y_min"),
                                    annotations.column("x_max"), annotations.column("y_max")};
  // (image, class) -> rows in CSV order
  std::map<std::pair<std::string, std::string>, std::vector<size_t>> groups;
  std::vector<std::array<double, 4>> row_boxes(annotations.rows());
  for (size_t r = 0; r < annotations.rows(); ++r) {
    const std::string& id = annotations.cell(r, id_col);
    const std::string& name = annotations.cell(r, class_col);
    if (!index.count(id))
      fail("{}: image {} has no row in {}", annotations.where(r), id, image_labels.origin());
    if (name != kNoFinding) {
      if (std::find(kLocalLabels.begin(), kLocalLabels.end(), name) == kLocalLabels.end())
        fail("{}: class_name: \"{}\" is not one of the 22 local labels (or \"No finding\")", annotations.where(r), name);
      for (size_t i = 0; i < 4; ++i) row_boxes[r][i] = annotations.number(r, xy[i]);
    }
    groups[{id, name}].push_back(r);
  }
  // The group of every row; rows sharing (image, class, group) after the first are dropped.
  std::vector<int> row_group(annotations.rows(), -1);
  for (const auto& [key, rows] : groups) {
    if (key.second == kNoFinding) continue;  // one group (-1) per image
    std::vector<std::array<double, 4>> boxes;
    for (size_t r : rows) boxes.push_back(row_boxes[r]);
    const std::vector<int> g = dedup ? chain_groups(boxes) : std::vector<int>();
    for (size_t k = 0; k < rows.size(); ++k) row_group[rows[k]] = dedup ? g[k] : static_cast<int>(k) + 1;
  }
  if (!dedup)  // process_overlap=False keeps every row, "No finding" ones included
    for (size_t r = 0; r < annotations.rows(); ++r)
      if (row_group[r] == -1) row_group[r] = -2 - static_cast<int>(r);
  std::set<std::tuple<std::string, std::string, int>> seen;
  for (size_t r = 0; r < annotations.rows(); ++r) {
    const std::string& id = annotations.cell(r, id_col);
    const std::string& name = annotations.cell(r, class_col);
    LiteGptLabels& l = out[index.at(id)];
    l.has_local_rows = true;
    if (!seen.emplace(id, name, row_group[r]).second) continue;
    l.local.push_back({name, name == kNoFinding ? std::nullopt : std::optional(row_boxes[r])});
  }
  return out;
}

std::string litegpt_answer_global(const LiteGptLabels& labels) {
  return fmt::format("Global diseases of this chest radiograph are {}.", fmt::join(labels.global, ", "));
}

LiteGptAnswer litegpt_answer(const LiteGptLabels& labels, double width, double height) {
  if (!(width > 0 && height > 0)) fail("VinDr-CXR image {}: size {}x{} is not positive", labels.image_id, width, height);
  LiteGptAnswer a;
  a.global = litegpt_answer_global(labels);
  std::vector<std::string> items;
  for (const LiteGptBox& b : labels.local) {
    std::string item = b.class_name;
    if (b.box) {
      const auto& x = *b.box;
      // pandas: round(x / size * 100), numpy's round half to even.
      auto scale = [](double v, double side) { return static_cast<int64_t>(std::nearbyint(v / side * 100)); };
      item = fmt::format("<p>{}</p> {{<{}><{}><{}><{}>}}", b.class_name, scale(x[0], width), scale(x[1], height),
                         scale(x[2], width), scale(x[3], height));
    }
    if (std::find(items.begin(), items.end(), item) == items.end()) items.push_back(std::move(item));
  }
  if (labels.has_local_rows) a.local = fmt::format("Local diseases of this chest radiograph are {}.", fmt::join(items, ","));
  const bool normal = a.global.find(kNoFinding) != std::string::npos;
  if (normal) {
    a.grounded = a.global;
  } else {
    if (!labels.has_local_rows)
      fail("VinDr-CXR image {}: no \"No finding\" label but no row in the annotations CSV, so no local sentence",
           labels.image_id);
    a.grounded = a.global + " " + a.local;
  }
  return a;
}

}  // namespace facet::data::vindr_cxr
