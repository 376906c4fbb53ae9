#include "train/predictions.h"

#include "core/file_io.h"
#include "core/log.h"

#include <nlohmann/json.hpp>

#include <algorithm>

namespace facet::train {
namespace fs = std::filesystem;

namespace {

// A tensor as a JSON number or nested list, numbers with 6 significant digits.
void append_json(std::string& out, const torch::Tensor& t) {
  if (t.dim() == 0) {
    const double v = t.item<double>();
    out += std::isfinite(v) ? fmt::format("{:.6g}", v) : "null";
    return;
  }
  out += '[';
  for (int64_t i = 0; i < t.size(0); ++i) {
    if (i) out += ", ";
    append_json(out, t[i]);
  }
  out += ']';
}

std::string quoted(const std::string& s) { return nlohmann::json(s).dump(); }

}  // namespace

void PredictionWriter::add(const data::Batch& batch, const Outputs& outputs) {
  const int64_t b = batch.size();
  std::vector<std::pair<std::string, torch::Tensor>> per_sample;  // [B, ...] outputs, on the CPU in double
  for (const auto& [name, t] : outputs) {
    if (!t.defined() || t.dim() < 1 || t.size(0) != b) continue;
    // A generated 512 px image would be 786,432 numbers a line: such outputs are pictures, not rows.
    if (b > 0 && t[0].numel() > kMaxValuesPerSample) {
      if (left_out_.insert(name).second)
        log::info("predictions: output \"{}\" ({} values a sample) is left out of the rows (more than {}); it is drawn in "
                  "the pictures (facet predict writes one per sample)", name, t[0].numel(), kMaxValuesPerSample);
      continue;
    }
    per_sample.emplace_back(name, t.detach().to(torch::kCPU, torch::kDouble).contiguous());
  }
  if (!outputs.ragged.empty() || !outputs.text.empty()) tabular_ = false;
  if (tabular_ && csv_header_.empty()) {
    csv_header_ = "id";
    for (const auto& [name, t] : per_sample) {
      const bool per_label = t.dim() == 2 && t.size(1) == static_cast<int64_t>(label_names_.size());
      for (int64_t j = 0; j < t[0].numel(); ++j) {
        std::string column = per_label ? fmt::format("{}[{}]", name, label_names_[static_cast<size_t>(j)])
                                       : fmt::format("{}[{}]", name, j);
        if (column.find_first_of(",\"\n") != std::string::npos) {  // CSV quoting, as RFC 4180
          std::string quoted_column = "\"";
          for (const char c : column) quoted_column += c == '"' ? std::string("\"\"") : std::string(1, c);
          column = quoted_column + "\"";
        }
        csv_header_ += "," + column;
      }
    }
  }
  const torch::Tensor indices = batch.indices.to(torch::kCPU);
  for (int64_t i = 0; i < b; ++i) {
    Row row;
    row.index = indices[i].item<int64_t>();
    row.json = fmt::format("{{\"index\": {}, \"id\": {}", row.index, quoted(batch.ids[static_cast<size_t>(i)]));
    for (const auto& [name, t] : per_sample) {
      row.json += fmt::format(", {}: ", quoted(name));
      append_json(row.json, t[i]);
    }
    for (const auto& [name, list] : outputs.ragged) {
      row.json += fmt::format(", {}: ", quoted(name));
      append_json(row.json, list.at(static_cast<size_t>(i)).detach().to(torch::kCPU, torch::kDouble));
    }
    for (const auto& [name, list] : outputs.text) row.json += fmt::format(", {}: {}", quoted(name), quoted(list.at(static_cast<size_t>(i))));
    // Beside generated text, the sample's own text (the question and the reference answer) so that a
    // line reads on its own; the rendered prompt is left out (long, and rebuilt from the data).
    if (!outputs.text.empty())
      for (const auto& [name, list] : batch.text)
        if (name != "prompt" && !outputs.text.contains(name) && static_cast<int64_t>(list.size()) == b)
          row.json += fmt::format(", {}: {}", quoted(name), quoted(list.at(static_cast<size_t>(i))));
    row.json += "}";
    if (tabular_) {
      row.csv = quoted(batch.ids[static_cast<size_t>(i)]);
      for (const auto& [name, t] : per_sample) {
        const torch::Tensor flat = t[i].reshape({-1});
        const double* v = flat.data_ptr<double>();
        for (int64_t j = 0; j < flat.numel(); ++j) row.csv += fmt::format(",{:.6g}", v[j]);
      }
    }
    rows_.push_back(std::move(row));
  }
}

std::vector<fs::path> PredictionWriter::write(const fs::path& stem, ProcessGroup* group, bool leader) {
  std::vector<Row> rows = rows_;
  bool tabular = tabular_;
  if (group) {
    // Rows travel as "index\tjson\tcsv\n" records; a JSON or CSV line never holds a raw tab or newline.
    std::string mine = tabular ? "T" : "R";
    for (const auto& r : rows_) mine += fmt::format("{}\t{}\t{}\n", r.index, r.json, r.csv);
    rows.clear();
    for (const std::string& part : group->allgather_bytes(mine)) {
      if (part.empty()) continue;
      tabular = tabular && part[0] == 'T';
      size_t at = 1;
      while (at < part.size()) {
        const size_t t1 = part.find('\t', at), t2 = part.find('\t', t1 + 1), end = part.find('\n', t2 + 1);
        rows.push_back({std::stoll(part.substr(at, t1 - at)), part.substr(t1 + 1, t2 - t1 - 1), part.substr(t2 + 1, end - t2 - 1)});
        at = end + 1;
      }
    }
  }
  if (!leader) return {};
  std::stable_sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return a.index < b.index; });
  std::string jsonl, csv = csv_header_ + "\n";
  for (const auto& r : rows) {
    jsonl += r.json + "\n";
    csv += r.csv + "\n";
  }
  fs::path file = stem;
  file += ".jsonl";
  fs::create_directories(file.parent_path());
  write_file_atomic(file, jsonl);
  std::vector<fs::path> written{file};
  if (tabular && !csv_header_.empty()) {
    fs::path table = stem;
    table += ".csv";
    write_file_atomic(table, csv);
    written.push_back(table);
  }
  return written;
}

}  // namespace facet::train
