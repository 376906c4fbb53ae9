// Evaluation results arranged for reading. Metrics named <family>/<label> whose family has three or
// more labels (per-AU F1, its all-positive baseline, prediction rates) form a table — a row per
// label, a column per family; everything else, and each family's mean, is the headline that fits
// on one log line.
#pragma once

#include <nlohmann/json.hpp>

#include <map>
#include <string>

namespace facet::train {

struct MetricTable {
  std::map<std::string, double> headline;  // full result keys ("val/f1/mean", "val/accuracy")
  std::string text;                        // the table as aligned text; empty when there is none
  std::string csv;                         // the same as CSV
};

// `results` keyed "<split>/<name>".
MetricTable arrange_metrics(const std::map<std::string, double>& results, const std::string& split);

// "val/accuracy 0.9312  val/f1/mean 0.6120 ..." (the `split/` prefix dropped).
std::string headline_line(const MetricTable& table, const std::string& split);

// Metric values as a JSON object and back. JSON has no NaN: a metric that is not a number (an F1
// over no positive label) or infinite is written as null and read back as NaN. `where` names the
// file in the error for anything else.
nlohmann::json metrics_to_json(const std::map<std::string, double>& metrics);
std::map<std::string, double> metrics_from_json(const nlohmann::json& object, const std::string& where);

}  // namespace facet::train
