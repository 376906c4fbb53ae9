#include "train/metric_table.h"

#include "core/error.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>
#include <set>
#include <vector>

namespace facet::train {

namespace {

// "AU2" < "AU10" (digits compared as numbers); "mean" last.
bool natural_less(const std::string& a, const std::string& b) {
  if ((a == "mean") != (b == "mean")) return b == "mean";
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    if (std::isdigit(static_cast<unsigned char>(a[i])) && std::isdigit(static_cast<unsigned char>(b[j]))) {
      size_t ie = i, je = j;
      while (ie < a.size() && std::isdigit(static_cast<unsigned char>(a[ie]))) ++ie;
      while (je < b.size() && std::isdigit(static_cast<unsigned char>(b[je]))) ++je;
      const auto x = std::stoll(a.substr(i, ie - i)), y = std::stoll(b.substr(j, je - j));
      if (x != y) return x < y;
      i = ie, j = je;
    } else {
      if (a[i] != b[j]) return a[i] < b[j];
      ++i, ++j;
    }
  }
  return a.size() - i < b.size() - j;
}

}  // namespace

MetricTable arrange_metrics(const std::map<std::string, double>& results, const std::string& split) {
  std::map<std::string, std::map<std::string, double>> families;  // family -> label -> value
  for (const auto& [key, value] : results) {
    const std::string name = key.substr(std::min(key.size(), split.size() + 1));
    const size_t cut = name.rfind('/');
    if (cut != std::string::npos) families[name.substr(0, cut)][name.substr(cut + 1)] = value;
  }
  std::vector<std::string> columns, labels;
  for (const auto& [family, values] : families)
    if (values.size() >= 3) {
      columns.push_back(family);
      for (const auto& [label, v] : values)
        if (std::find(labels.begin(), labels.end(), label) == labels.end()) labels.push_back(label);
    }
  MetricTable out;
  std::set<std::string> tabled;
  for (const auto& c : columns)
    for (const auto& [label, v] : families[c])
      if (label != "mean") tabled.insert(split + "/" + c + "/" + label);
  for (const auto& [key, value] : results)
    if (!tabled.count(key)) out.headline[key] = value;
  if (columns.empty()) return out;
  std::sort(labels.begin(), labels.end(), natural_less);
  out.text = fmt::format("{:<20}", "label");
  out.csv = "label";
  for (const auto& c : columns) out.text += fmt::format(" {:>16}", c), out.csv += "," + c;
  out.text += "\n", out.csv += "\n";
  for (const auto& label : labels) {
    out.text += fmt::format("{:<20}", label), out.csv += label;
    for (const auto& c : columns) {
      const auto& values = families[c];
      const auto it = values.find(label);
      out.text += it == values.end() ? fmt::format(" {:>16}", "-") : fmt::format(" {:>16.4f}", it->second);
      out.csv += it == values.end() ? "," : fmt::format(",{:.6f}", it->second);
    }
    out.text += "\n", out.csv += "\n";
  }
  return out;
}

std::string headline_line(const MetricTable& table, const std::string& split) {
  std::string line;
  for (const auto& [key, value] : table.headline)
    line += fmt::format("{}{} {:.4f}", line.empty() ? "" : "  ", key.substr(std::min(key.size(), split.size() + 1)), value);
  return line;
}

nlohmann::json metrics_to_json(const std::map<std::string, double>& metrics) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [name, value] : metrics) out[name] = std::isfinite(value) ? nlohmann::json(value) : nlohmann::json();
  return out;
}

std::map<std::string, double> metrics_from_json(const nlohmann::json& object, const std::string& where) {
  if (!object.is_object()) fail("{}: metrics: expected an object of numbers, got {}", where, object.type_name());
  std::map<std::string, double> out;
  for (const auto& [name, value] : object.items()) {
    if (value.is_null()) out[name] = std::numeric_limits<double>::quiet_NaN();
    else if (value.is_number()) out[name] = value.get<double>();
    else fail("{}: metric \"{}\": expected a number or null, got {}", where, name, value.dump());
  }
  return out;
}

}  // namespace facet::train
