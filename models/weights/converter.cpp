#include "models/weights/converter.h"

#include "core/text.h"

#include <algorithm>
#include <set>

namespace facet::models {

namespace {

class FunctionConverter : public WeightConverter {
 public:
  explicit FunctionConverter(ConverterFunction f) : f_(std::move(f)) {}
  ConversionPlan plan(const SourceTensors& file, const TargetShapes& model) const override { return f_(file, model); }

 private:
  ConverterFunction f_;
};

// "a.b.c" -> its dotted suffixes, longest first: "a.b.c", "b.c", "c".
std::vector<std::string> dotted_suffixes(const std::string& name) {
  std::vector<std::string> out{name};
  for (size_t dot = name.find('.'); dot != std::string::npos; dot = name.find('.', dot + 1)) out.push_back(name.substr(dot + 1));
  return out;
}

}  // namespace

std::function<std::shared_ptr<const WeightConverter>(const Config&)> make_converter(ConverterFunction function) {
  auto converter = std::make_shared<const FunctionConverter>(std::move(function));
  return [converter](const Config&) { return converter; };
}

ConverterRegistry& converter_registry() {
  static ConverterRegistry registry("converter", "converters");
  return registry;
}

namespace {
// Facet's own checkpoints (and any file already in the model's names): every tensor by its name.
FACET_REGISTER(converter_registry(), "facet", "Facet's own names (the default): every tensor to the model tensor of the same name",
               make_converter([](const SourceTensors& file, const TargetShapes&) {
                 ConversionPlan plan;
                 for (const auto& t : file) plan.copy(t.name, t.name);
                 return plan;
               }));
}  // namespace

std::vector<std::string> prefixes_of(const TargetShapes& model, const std::string& anchor) {
  std::vector<std::string> out;
  for (const auto& [name, shape] : model)
    if (name.size() >= anchor.size() && name.compare(name.size() - anchor.size(), anchor.size(), anchor) == 0) {
      const std::string prefix = name.substr(0, name.size() - anchor.size());
      if (prefix.empty() || prefix.back() == '.') out.push_back(prefix);
    }
  return out;
}

std::string locate(const TargetShapes& model, const std::string& anchor, const std::string& what) {
  const auto found = prefixes_of(model, anchor);
  if (found.empty())
    fail("the model (in this entry's scope) has no {} (no tensor named ...{}); {}", what, anchor,
         model.empty() ? "the scope is empty: check add_prefix" : "is add_prefix right?");
  if (found.size() > 1) {
    std::vector<std::string> shown;
    for (const auto& p : found) shown.push_back(p.empty() ? "(top level)" : p);
    fail("the model holds {} {}s ({}); choose one with add_prefix", found.size(), what, join(shown));
  }
  return found.front();
}

std::string shape_text(const std::vector<int64_t>& shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

std::string summarize_names(const std::vector<std::string>& names, size_t examples) {
  if (names.empty()) return "none";
  // Group by the leading dotted components; one level deeper while everything shares one group.
  auto group_of = [](const std::string& name, size_t depth) {
    size_t end = 0;
    for (size_t i = 0; i < depth; ++i) {
      const size_t dot = name.find('.', end);
      if (dot == std::string::npos) return name;
      end = dot + 1;
    }
    return name.substr(0, end) + "*";
  };
  struct Group {
    size_t count = 0;
    std::string first;
  };
  std::map<std::string, Group> groups;
  for (size_t depth = 1; depth <= 3; ++depth) {
    groups.clear();
    for (const auto& n : names) {
      Group& g = groups[group_of(n, depth)];
      if (g.count++ == 0) g.first = n;
    }
    if (groups.size() > 1) break;
  }
  const size_t max_groups = 6;
  std::vector<std::string> parts;
  bool all_shown = groups.size() <= max_groups;
  for (const auto& [key, g] : groups) {
    if (parts.size() == max_groups) {
      parts.push_back(fmt::format("... ({} more groups)", groups.size() - max_groups));
      break;
    }
    parts.push_back(g.count == 1 ? g.first : fmt::format("{} ({})", key, g.count));
    all_shown = all_shown && g.count == 1;
  }
  std::string out = fmt::format("{} tensor{}: {}", names.size(), names.size() == 1 ? "" : "s", join(parts));
  if (all_shown) return out;
  // Examples from the groups that show only a count: the first name of each top-level module, then
  // more from the start.
  std::set<std::string> singletons;
  for (const auto& [key, g] : groups)
    if (g.count == 1) singletons.insert(g.first);
  std::vector<std::string> shown;
  std::set<std::string> seen_groups;
  for (const auto& n : names) {
    if (shown.size() >= examples) break;
    if (!singletons.count(n) && seen_groups.insert(group_of(n, 1)).second) shown.push_back(n);
  }
  for (const auto& n : names) {
    if (shown.size() >= examples) break;
    if (!singletons.count(n) && std::find(shown.begin(), shown.end(), n) == shown.end()) shown.push_back(n);
  }
  return out + fmt::format("; e.g. {}{}", join(shown), names.size() > shown.size() + singletons.size() ? ", ..." : "");
}

std::optional<std::string> suggest_prefix(const std::vector<std::string>& missing, const std::vector<std::string>& unexpected) {
  if (missing.empty() || unexpected.empty()) return std::nullopt;
  const std::set<std::string> missing_set(missing.begin(), missing.end());
  // Every dotted suffix of a missing name -> the prefixes in front of it.
  std::map<std::string, std::set<std::string>> by_suffix;
  for (const auto& m : missing)
    for (const auto& r : dotted_suffixes(m)) by_suffix[r].insert(m.substr(0, m.size() - r.size()));
  const std::string& first = unexpected.front();
  for (const auto& r : dotted_suffixes(first)) {  // longest common tail first: the smallest change
    auto it = by_suffix.find(r);
    if (it == by_suffix.end()) continue;
    const std::string strip = first.substr(0, first.size() - r.size());
    // A shared leaf alone ("weight") says nothing: the tail must be the whole name or two components.
    if (!strip.empty() && r.find('.') == std::string::npos) continue;
    for (const auto& add : it->second) {
      if (add == strip) continue;
      const bool fits = std::all_of(unexpected.begin(), unexpected.end(), [&](const std::string& u) {
        return u.starts_with(strip) && missing_set.count(add + u.substr(strip.size()));
      });
      if (!fits) continue;
      if (strip.empty()) return fmt::format("add_prefix: {}", add);
      if (add.empty()) return fmt::format("strip_prefix: {}", strip);
      return fmt::format("strip_prefix: {}, add_prefix: {}", strip, add);
    }
  }
  return std::nullopt;
}

}  // namespace facet::models
