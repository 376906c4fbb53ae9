#include "core/config.h"

#include "core/file_io.h"
#include "core/text.h"
#include "core/utf8.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>

namespace facet {
namespace fs = std::filesystem;

namespace config_detail {

struct Origin {
  std::string source;  // a file, "<string>", or "command line (key=value)"
  int line = 0;        // 1-based; 0 when there is none (a whole file, an override)

  std::string str() const { return line > 0 ? fmt::format("{}:{}", source, line) : source; }
};

// Facet's own tree rather than YAML::Node: yaml-cpp nodes alias on assignment, and each value's
// origin (file and line) has to survive merging and overrides.
struct Node {
  enum class Kind { null, scalar, list, map } kind = Kind::null;
  std::string scalar;
  bool quoted = false;  // a quoted scalar is always a string
  std::vector<std::shared_ptr<Node>> items;
  std::vector<std::pair<std::string, std::shared_ptr<Node>>> fields;  // file order
  Origin origin;

  std::vector<std::string> keys() const {
    std::vector<std::string> out;
    for (const auto& [k, v] : fields) out.push_back(k);
    return out;
  }
  std::shared_ptr<Node> field(std::string_view name) const {
    for (const auto& [k, v] : fields)
      if (k == name) return v;
    return nullptr;
  }
  void set_field(const std::string& name, std::shared_ptr<Node> value) {
    for (auto& [k, v] : fields)
      if (k == name) {
        v = std::move(value);
        return;
      }
    fields.emplace_back(name, std::move(value));
  }
};

// Shared by every view of one Config: which keys were read. Views may be read from loader threads.
struct State {
  std::shared_ptr<Node> root;
  std::string file;  // the top-level file or origin, for keys that exist nowhere
  std::mutex mutex;
  std::set<std::string> queried;
  std::set<std::string> consumed;  // keys whose whole subtree counts as read
};

}  // namespace config_detail

using config_detail::Node;
using config_detail::Origin;
using config_detail::State;
using Kind = Node::Kind;

namespace {

std::shared_ptr<Node> deep_copy(const std::shared_ptr<Node>& n) {
  auto out = std::make_shared<Node>(*n);
  for (auto& item : out->items) item = deep_copy(item);
  for (auto& [k, v] : out->fields) v = deep_copy(v);
  return out;
}

Origin origin_of(const YAML::Mark& mark, const std::string& source) {
  return {source, mark.is_null() ? 0 : mark.line + 1};
}

// --- keys ----------------------------------------------------------------------------------------
// One step of a dotted key: a map field ("depth") or a list index ("[2]").
struct Step {
  std::string name;
  std::optional<size_t> index;
};

std::string append_step(const std::string& key, const Step& step) {
  if (step.index) return fmt::format("{}[{}]", key, *step.index);
  return key.empty() ? step.name : key + "." + step.name;
}

std::string join_key(const std::string& prefix, std::string_view key) {
  if (key.empty()) return prefix;
  if (prefix.empty()) return std::string(key);
  return key.front() == '[' ? prefix + std::string(key) : prefix + "." + std::string(key);
}

// "data.transforms[2].p" → data, transforms, [2], p. Only the first component may be a bare index.
std::vector<Step> parse_key(std::string_view key) {
  std::vector<Step> steps;
  size_t i = 0;
  while (i < key.size()) {
    const size_t end = key.find_first_of(".[", i);
    const auto name = key.substr(i, end == std::string_view::npos ? std::string_view::npos : end - i);
    if (name.find(']') != std::string_view::npos) fail("invalid key \"{}\": unbalanced ']'", key);
    if (!name.empty()) steps.push_back({std::string(name), std::nullopt});
    else if (!(i == 0 && end != std::string_view::npos && key[end] == '['))
      fail("invalid key \"{}\": empty component", key);
    i = end == std::string_view::npos ? key.size() : end;
    while (i < key.size() && key[i] == '[') {
      const size_t close = key.find(']', i);
      size_t index = 0;
      const auto digits = key.substr(i + 1, close == std::string_view::npos ? 0 : close - i - 1);
      const auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), index);
      if (close == std::string_view::npos || digits.empty() || ec != std::errc() || ptr != digits.data() + digits.size())
        fail("invalid key \"{}\": a list index is [N] with N a non-negative integer", key);
      steps.push_back({"", index});
      i = close + 1;
    }
    if (i < key.size()) {
      if (key[i] != '.' || i + 1 == key.size()) fail("invalid key \"{}\": empty component", key);
      ++i;
    }
  }
  return steps;
}

// The node at `key` below `n`; nullptr if absent.
std::shared_ptr<Node> lookup(std::shared_ptr<Node> n, std::string_view key) {
  for (const auto& step : parse_key(key)) {
    if (step.index) n = n->kind == Kind::list && *step.index < n->items.size() ? n->items[*step.index] : nullptr;
    else n = n->kind == Kind::map ? n->field(step.name) : nullptr;
    if (!n) return nullptr;
  }
  return n;
}

// The node at `key` below `n`, or its deepest existing ancestor; for naming where a key is or belongs.
std::shared_ptr<Node> deepest(std::shared_ptr<Node> n, std::string_view key) {
  for (const auto& step : parse_key(key)) {
    std::shared_ptr<Node> next;
    if (step.index && n->kind == Kind::list && *step.index < n->items.size()) next = n->items[*step.index];
    if (!step.index && n->kind == Kind::map) next = n->field(step.name);
    if (!next) break;
    n = std::move(next);
  }
  return n;
}

// --- reading YAML --------------------------------------------------------------------------------

// Facet's tree copies what a YAML alias shares, so nine aliases of nine aliases (a "billion laughs"
// file) would expand to 10^9 values: the copy has a budget of values and of nesting depth, far
// above any config, and a file past it is an error rather than an out-of-memory.
constexpr size_t kMaxKeyLength = 200;

struct YamlBudget {
  static constexpr size_t kMaxValues = 1'000'000;
  static constexpr int kMaxDepth = 128;
  std::string source;
  bool dotted_keys = false;
  size_t values = 0;
  int depth = 0;
};

std::shared_ptr<Node> from_yaml(const YAML::Node& y, YamlBudget& budget) {
  const std::string& source = budget.source;
  const bool dotted_keys = budget.dotted_keys;
  auto n = std::make_shared<Node>();
  n->origin = origin_of(y.Mark(), source);
  if (++budget.values > YamlBudget::kMaxValues)
    fail("{}: the YAML expands to more than {} values (aliases of aliases?); a config is far smaller", n->origin.str(),
         YamlBudget::kMaxValues);
  if (budget.depth >= YamlBudget::kMaxDepth)
    fail("{}: the YAML nests deeper than {} levels", n->origin.str(), YamlBudget::kMaxDepth);
  struct Deeper {
    int& depth;
    explicit Deeper(int& d) : depth(++d) {}
    ~Deeper() { --depth; }
  } deeper(budget.depth);
  const std::string& tag = y.Tag();
  if (!tag.empty() && tag != "?" && tag != "!" && !tag.starts_with("tag:yaml.org,2002:"))
    fail("{}: YAML tag {} is not supported", n->origin.str(), tag);
  switch (y.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      break;
    case YAML::NodeType::Scalar:
      n->kind = Kind::scalar;
      n->scalar = y.Scalar();
      n->quoted = tag == "!" || tag == "tag:yaml.org,2002:str";
      break;
    case YAML::NodeType::Sequence:
      n->kind = Kind::list;
      for (const auto& item : y) n->items.push_back(from_yaml(item, budget));
      break;
    case YAML::NodeType::Map: {
      n->kind = Kind::map;
      std::vector<std::shared_ptr<Node>> merged;  // YAML merge keys: `<<: *defaults`
      for (const auto& kv : y) {
        const int line = origin_of(kv.first.Mark(), source).line;
        if (!kv.first.IsScalar()) fail("{}:{}: a key must be a plain string", source, line);
        const std::string key = kv.first.Scalar();
        // Keys are names. A very long one would also not reload: escaped, it passes YAML's 1024-character
        // limit on an implicit key (found by fuzz_config).
        if (key.size() > kMaxKeyLength)
          fail("{}:{}: a key of {} characters; keys are names of at most {}", source, line, key.size(), kMaxKeyLength);
        if (key == "<<" && kv.first.Tag() == "?") {
          auto value = from_yaml(kv.second, budget);
          if (value->kind == Kind::map) merged.push_back(value);
          for (const auto& item : value->items) merged.push_back(item);
          if (value->kind != Kind::map &&
              !(value->kind == Kind::list &&
                std::all_of(value->items.begin(), value->items.end(), [](auto& i) { return i->kind == Kind::map; })))
            fail("{}:{}: a merge key (<<) takes a map or a list of maps", source, line);
          continue;
        }
        // A tagged or quoted "<<" is not a merge key, but would be one once the config is saved.
        if (key == "<<") fail("{}:{}: \"<<\" is a key only as a plain merge key", source, line);
        if (n->field(key)) fail("{}:{}: duplicate key \"{}\"", source, line, key);
        if (!dotted_keys && key.find_first_of(".[]") != std::string::npos)
          fail("{}:{}: key \"{}\" contains '.', '[' or ']', which dotted keys cannot reach; nest it instead", source,
               line, key);
        auto child = from_yaml(kv.second, budget);
        // A value's line is its key's line: a block map or list otherwise starts on the next line.
        child->origin.line = line;
        n->fields.emplace_back(key, std::move(child));
      }
      // Keys written in the map win over merged ones, and earlier merged maps over later ones.
      for (const auto& m : merged)
        for (const auto& [k, v] : m->fields)
          if (!n->field(k)) n->fields.emplace_back(k, deep_copy(v));
      break;
    }
  }
  return n;
}

// Where each YAML document starts. Facet counts documents with this rather than YAML::LoadAll, which
// in yaml-cpp 0.7 (Debian 12) loops forever, allocating, on a document that starts with a token no
// value can start with (a leading ','; jbeder/yaml-cpp#1040, fixed upstream by #1319): such a
// document does not move the parser on, so the next one starts where it did.
class DocumentStarts : public YAML::EventHandler {
 public:
  std::vector<YAML::Mark> starts;
  void OnDocumentStart(const YAML::Mark& mark) override { starts.push_back(mark); }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t, const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

std::shared_ptr<Node> parse_yaml(std::string_view text, const std::string& source, bool dotted_keys) {
  // A config is UTF-8 (yaml-cpp would take stray 0xFE 0xFF bytes for a UTF-16 byte-order mark).
  if (const auto bad = first_invalid_utf8(text)) {
    const auto line = 1 + std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(*bad), '\n');
    fail("{}:{}: not UTF-8 text (byte 0x{:02X} at offset {}); save the config as UTF-8", source, line,
         static_cast<unsigned char>(text[*bad]), *bad);
  }
  if (const size_t nul = text.find('\0'); nul != std::string_view::npos)
    fail("{}:{}: a NUL byte at offset {}; a config is text", source, 1 + std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(nul), '\n'), nul);
  YAML::Node document;
  try {
    std::istringstream in{std::string(text)};
    YAML::Parser parser(in);
    DocumentStarts documents;
    while (documents.starts.size() < 3 && parser.HandleNextDocument(documents)) {
    }
    if (documents.starts.size() > 1) {
      const YAML::Mark& second = documents.starts[1];
      if (second.pos == documents.starts[0].pos)
        fail("{}:{}:{}: invalid YAML: no value can start here", source, second.line + 1, second.column + 1);
      fail("{}: {}{} YAML documents; a config is one document", source, documents.starts.size() > 2 ? "at least " : "",
           documents.starts.size());
    }
    if (!documents.starts.empty()) document = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    if (e.mark.is_null()) fail("{}: invalid YAML: {}", source, e.msg);
    fail("{}:{}:{}: invalid YAML: {}", source, e.mark.line + 1, e.mark.column + 1, e.msg);
  }
  YamlBudget budget{.source = source, .dotted_keys = dotted_keys};
  auto n = from_yaml(document, budget);
  if (n->kind == Kind::null) n->kind = Kind::map;  // an empty document
  if (n->kind != Kind::map) fail("{}: a config must be a map of keys, got {}", source, n->kind == Kind::list ? "a list" : "a scalar");
  n->origin.line = 0;  // the document as a whole
  return n;
}

// Maps merge key by key, recursively; any other value replaces what was there.
void merge_into(Node& dst, const Node& src) {
  for (const auto& [k, v] : src.fields) {
    auto existing = dst.field(k);
    if (existing && existing->kind == Kind::map && v->kind == Kind::map) merge_into(*existing, *v);
    else dst.set_field(k, deep_copy(v));
  }
}

struct Visited {
  fs::path canonical;
  std::string shown;
};

std::shared_ptr<Node> load_with_bases(const fs::path& file, std::vector<Visited>& chain, bool dotted_keys) {
  const std::string shown = file.lexically_normal().string();
  const fs::path canonical = fs::weakly_canonical(file);
  for (const auto& v : chain)
    if (v.canonical == canonical) {
      std::string cycle;
      for (const auto& c : chain) cycle += c.shown + " -> ";
      fail("{}: _base_ cycle: {}{}", shown, cycle, shown);
    }
  if (!fs::is_regular_file(file)) {
    if (chain.empty()) fail("{}: no such config file", shown);
    fail("{}: no such config file (named in _base_ of {})", shown, chain.back().shown);
  }
  chain.push_back({canonical, shown});
  auto node = parse_yaml(read_file(file), shown, dotted_keys);
  auto result = std::make_shared<Node>();
  result->kind = Kind::map;
  result->origin = {shown, 0};
  if (auto base = node->field("_base_")) {
    std::vector<std::shared_ptr<Node>> names;
    if (base->kind == Kind::scalar) names.push_back(base);
    else if (base->kind == Kind::list) names = base->items;
    else fail("{}: _base_: expected a path or a list of paths", base->origin.str());
    for (const auto& name : names) {
      if (name->kind != Kind::scalar) fail("{}: _base_: expected a path, got a {}", name->origin.str(),
                                           name->kind == Kind::map ? "map" : name->kind == Kind::list ? "list" : "null");
      merge_into(*result, *load_with_bases(file.parent_path() / name->scalar, chain, dotted_keys));
    }
    std::erase_if(node->fields, [](const auto& kv) { return kv.first == "_base_"; });
  }
  merge_into(*result, *node);
  chain.pop_back();
  return result;
}

// --- scalar conversion (YAML 1.2 core schema) ----------------------------------------------------
std::string found(const Node& n) {
  switch (n.kind) {
    case Kind::null: return "null";
    case Kind::list: return "a list";
    case Kind::map: return "a map";
    case Kind::scalar: break;
  }
  return n.quoted ? fmt::format("{:?} (quoted, so a string)", n.scalar) : fmt::format("{:?}", n.scalar);
}

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::null: return "null";
    case Kind::scalar: return "a scalar";
    case Kind::list: return "a list";
    case Kind::map: return "a map";
  }
  return "?";
}

[[noreturn]] void type_error(const Node& n, const std::string& key, std::string_view expected) {
  fail("{}: {}: expected {}, got {}", n.origin.str(), key, expected, found(n));
}

enum class Parsed { ok, invalid, out_of_range };

// Decimal (with sign), 0x hexadecimal and 0o octal, as the core schema writes integers.
template <class I>
Parsed parse_integer(std::string_view s, I& value) {
  int base = 10;
  if (s.starts_with("0x")) base = 16;
  else if (s.starts_with("0o")) base = 8;
  if (base != 10) s.remove_prefix(2);
  else if (s.starts_with('+')) s.remove_prefix(1);
  if (s.empty() || (base != 10 && (s[0] == '-' || s[0] == '+')) || s[0] == '+') return Parsed::invalid;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value, base);
  if (ec == std::errc::result_out_of_range) return Parsed::out_of_range;
  return ec == std::errc() && end == s.data() + s.size() ? Parsed::ok : Parsed::invalid;
}

// std::from_chars reports overflow and underflow alike. The decimal magnitude (digits before the
// point + exponent) tells them apart: an underflow is a harmless 0, an overflow is an error.
bool overflows(std::string_view s) {
  int64_t exponent = 0;
  const size_t e = s.find_first_of("eE");
  if (e != std::string_view::npos) {
    auto digits = s.substr(e + 1);
    if (digits.starts_with('+')) digits.remove_prefix(1);
    std::from_chars(digits.data(), digits.data() + digits.size(), exponent);
  }
  auto mantissa = s.substr(0, std::min(e, s.find('.')));
  while (!mantissa.empty() && (mantissa[0] == '-' || mantissa[0] == '+' || mantissa[0] == '0')) mantissa.remove_prefix(1);
  return static_cast<int64_t>(mantissa.size()) + exponent > 0;
}

template <class T>
T convert(const Node& n, const std::string& key);

template <>
bool convert<bool>(const Node& n, const std::string& key) {
  if (n.kind == Kind::scalar && !n.quoted) {
    const auto& s = n.scalar;
    if (s == "true" || s == "True" || s == "TRUE") return true;
    if (s == "false" || s == "False" || s == "FALSE") return false;
  }
  type_error(n, key, "a boolean (true or false)");
}

template <class I>
I convert_integer(const Node& n, const std::string& key) {
  const char* expected = std::is_signed_v<I> ? "an integer" : "a non-negative integer";
  if (n.kind != Kind::scalar || n.quoted) type_error(n, key, expected);
  I value{};
  const Parsed p = parse_integer(n.scalar, value);
  if (p == Parsed::out_of_range)
    type_error(n, key, fmt::format("{} in [{}, {}]", expected, std::numeric_limits<I>::min(), std::numeric_limits<I>::max()));
  if (p != Parsed::ok) type_error(n, key, expected);
  return value;
}
template <>
int convert<int>(const Node& n, const std::string& key) { return convert_integer<int>(n, key); }
template <>
int64_t convert<int64_t>(const Node& n, const std::string& key) { return convert_integer<int64_t>(n, key); }
template <>
uint64_t convert<uint64_t>(const Node& n, const std::string& key) { return convert_integer<uint64_t>(n, key); }

// The core schema's float: [-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?
bool is_core_float(std::string_view s) {
  size_t i = 0;
  const auto digits = [&] {
    const size_t start = i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
    return i > start;
  };
  const auto accept = [&](std::string_view chars) {
    if (i >= s.size() || chars.find(s[i]) == std::string_view::npos) return false;
    ++i;
    return true;
  };
  accept("+-");
  if (accept(".")) {
    if (!digits()) return false;
  } else {
    if (!digits()) return false;
    if (accept(".")) digits();
  }
  if (accept("eE")) {
    accept("+-");
    if (!digits()) return false;
  }
  return i == s.size();
}

template <>
double convert<double>(const Node& n, const std::string& key) {
  if (n.kind != Kind::scalar || n.quoted) type_error(n, key, "a number");
  std::string_view s = n.scalar;
  if (is_core_float(s)) {
    if (s.starts_with('+')) s.remove_prefix(1);
    double value = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);  // locale-independent
    if (ec == std::errc::result_out_of_range) {
      if (overflows(s)) type_error(n, key, "a number within the range of a double");
      return s.starts_with('-') ? -0.0 : 0.0;
    }
    return value;
  }
  if (s == ".inf" || s == "+.inf" || s == ".Inf" || s == "+.Inf" || s == ".INF" || s == "+.INF")
    return std::numeric_limits<double>::infinity();
  if (s == "-.inf" || s == "-.Inf" || s == "-.INF") return -std::numeric_limits<double>::infinity();
  if (s == ".nan" || s == ".NaN" || s == ".NAN") return std::numeric_limits<double>::quiet_NaN();
  if (int64_t i = 0; parse_integer(s, i) == Parsed::ok) return static_cast<double>(i);  // 0x1F, 0o17
  if (uint64_t u = 0; parse_integer(s, u) == Parsed::ok) return static_cast<double>(u);
  type_error(n, key, "a number");
}

template <>
float convert<float>(const Node& n, const std::string& key) {
  const double value = convert<double>(n, key);
  if (std::isfinite(value) && std::fabs(value) > std::numeric_limits<float>::max())
    type_error(n, key, "a number within the range of a float");
  return static_cast<float>(value);
}

template <>
std::string convert<std::string>(const Node& n, const std::string& key) {
  if (n.kind != Kind::scalar) type_error(n, key, "a string");
  return n.scalar;
}

template <class T>
struct Converter {
  static T get(const Node& n, const std::string& key) { return convert<T>(n, key); }
};
template <class T>
struct Converter<std::vector<T>> {
  static std::vector<T> get(const Node& n, const std::string& key) {
    if (n.kind != Kind::list) type_error(n, key, "a list");
    std::vector<T> out;
    out.reserve(n.items.size());
    for (size_t i = 0; i < n.items.size(); ++i) out.push_back(convert<T>(*n.items[i], fmt::format("{}[{}]", key, i)));
    return out;
  }
};

// --- emitting ------------------------------------------------------------------------------------
// Plain scalars are written as they were read and quoted ones quoted, so every value reloads with
// the same text and the same type: 1e-4 stays that number, "1e-4" and "true" stay strings.
bool has_control_characters(const std::string& s) {
  return std::any_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
}

void emit(YAML::Emitter& out, const Node& n) {
  switch (n.kind) {
    case Kind::null:
      out << YAML::Null;
      break;
    case Kind::scalar:
      // Control characters (a stray \r from a Windows file) do not survive a plain scalar's reload;
      // such a scalar is never a number or a bool, so quoting it keeps its type too.
      if (n.quoted || has_control_characters(n.scalar)) out << YAML::DoubleQuoted << n.scalar;
      else out << n.scalar;
      break;
    case Kind::list:
      out << YAML::BeginSeq;
      for (const auto& item : n.items) emit(out, *item);
      out << YAML::EndSeq;
      break;
    case Kind::map:
      out << YAML::BeginMap;
      for (const auto& [k, v] : n.fields) {
        out << YAML::Key;
        if (has_control_characters(k)) out << YAML::DoubleQuoted;
        out << k << YAML::Value;
        emit(out, *v);
      }
      out << YAML::EndMap;
      break;
  }
}

// Every leaf below `n` with its dotted key: scalars, nulls, empty maps, and lists without maps in
// them (read as one value). Lists that hold maps are walked element by element.
void collect_leaves(const Node& n, const std::string& key, std::vector<std::pair<std::string, const Node*>>& out) {
  if (n.kind == Kind::map && !n.fields.empty()) {
    for (const auto& [k, v] : n.fields) collect_leaves(*v, key.empty() ? k : key + "." + k, out);
  } else if (n.kind == Kind::list &&
             std::any_of(n.items.begin(), n.items.end(), [](const auto& i) { return i->kind == Kind::map; })) {
    for (size_t i = 0; i < n.items.size(); ++i) collect_leaves(*n.items[i], fmt::format("{}[{}]", key, i), out);
  } else {
    out.emplace_back(key, &n);
  }
}

// Whether `key` is `prefix` or lies below it.
bool is_within(const std::string& key, const std::string& prefix) {
  if (prefix.empty()) return true;
  if (!key.starts_with(prefix)) return false;
  return key.size() == prefix.size() || key[prefix.size()] == '.' || key[prefix.size()] == '[';
}

}  // namespace

// ---------------------------------------------------------------------------------------------
Config::Config() : state_(std::make_shared<State>()), node_(std::make_shared<Node>()) {
  node_->kind = Kind::map;
  node_->origin = {"<config>", 0};
  state_->root = node_;
  state_->file = "<config>";
}

Config::Config(std::shared_ptr<State> state, std::shared_ptr<Node> node, std::string prefix)
    : state_(std::move(state)), node_(std::move(node)), prefix_(std::move(prefix)) {}

Config Config::load(const fs::path& file, const std::vector<std::string>& overrides, bool dotted_keys) {
  std::vector<Visited> chain;
  Config c;
  c.node_ = load_with_bases(file, chain, dotted_keys);
  c.state_->root = c.node_;
  c.state_->file = c.node_->origin.source;
  for (const auto& o : overrides) {
    const size_t eq = o.find('=');
    std::string_view key = std::string_view(o).substr(0, eq);
    while (!key.empty() && std::isspace(static_cast<unsigned char>(key.back()))) key.remove_suffix(1);
    while (!key.empty() && std::isspace(static_cast<unsigned char>(key.front()))) key.remove_prefix(1);
    if (eq == std::string::npos || key.empty())
      fail("command line: override \"{}\" is not of the form dotted.key=value", o);
    c.set(key, std::string_view(o).substr(eq + 1), fmt::format("command line ({})", o));
  }
  return c;
}

Config Config::parse(std::string_view yaml, std::string origin) {
  Config c;
  c.node_ = parse_yaml(yaml, origin, false);
  c.state_->root = c.node_;
  if (auto base = c.node_->field("_base_"))
    fail("{}: _base_ is resolved only in files read with Config::load", base->origin.str());
  c.state_->file = std::move(origin);
  return c;
}

std::string Config::full_key(std::string_view key) const { return join_key(prefix_, key); }

std::shared_ptr<Node> Config::find(std::string_view key, bool strict) const {
  const std::string full = full_key(key);
  const auto steps = parse_key(key);
  {
    std::lock_guard lock(state_->mutex);
    state_->queried.insert(full);
  }
  std::shared_ptr<Node> n = node_;
  std::string walked = prefix_;
  for (const auto& step : steps) {
    if (n->kind == Kind::null) return nullptr;  // below a null: absent, like below a removed key
    if (step.index) {
      if (n->kind != Kind::list) {
        if (strict) type_error(*n, walked, fmt::format("a list (to read {})", full));
        return nullptr;
      }
      if (*step.index >= n->items.size()) return nullptr;
      n = n->items[*step.index];
    } else {
      if (n->kind != Kind::map) {
        if (strict) type_error(*n, walked, fmt::format("a map (to read {})", full));
        return nullptr;
      }
      n = n->field(step.name);
      if (!n) return nullptr;
    }
    walked = append_step(walked, step);
  }
  return n;
}

std::shared_ptr<Node> Config::require(std::string_view key) const {
  auto n = find(key, /*strict=*/true);
  if (n) return n;
  // Name the file of the nearest existing ancestor: that is where the key belongs. A sibling spelt
  // nearly like the missing step (`trian:` where `train` is required) is the likely cause.
  const auto parent = deepest(node_, key);
  std::string hint;
  if (parent->kind == Kind::map) {
    std::string missing;
    std::shared_ptr<Node> walk = node_;
    for (const auto& step : parse_key(key)) {
      std::shared_ptr<Node> next;
      if (step.index && walk->kind == Kind::list && *step.index < walk->items.size()) next = walk->items[*step.index];
      if (!step.index && walk->kind == Kind::map) next = walk->field(step.name);
      if (!next) {
        missing = step.name;
        break;
      }
      walk = std::move(next);
    }
    if (!missing.empty())
      if (auto near = closest_match(missing, parent->keys())) hint = fmt::format("; did you mean {} ({})?", *near,
                                                                                 parent->field(*near)->origin.str());
  }
  fail("{}: {}: required key is missing{}", parent->origin.source, full_key(key), hint);
}

bool Config::has(std::string_view key) const {
  auto n = find(key, /*strict=*/false);
  return n && n->kind != Kind::null;
}

Config Config::at(std::string_view key) const { return Config(state_, require(key), full_key(key)); }

Config Config::at(size_t index) const {
  const std::string key = fmt::format("{}[{}]", prefix_, index);
  {
    std::lock_guard lock(state_->mutex);
    state_->queried.insert(key);
  }
  if (node_->kind != Kind::list) type_error(*node_, prefix_, fmt::format("a list (to read {})", key));
  if (index >= node_->items.size())
    fail("{}: {}: index {} out of range (the list has {} items)", node_->origin.str(), prefix_, index,
         node_->items.size());
  return Config(state_, node_->items[index], key);
}

Config Config::child(const std::string& literal_key) const {
  const std::string key = prefix_.empty() ? literal_key : prefix_ + "." + literal_key;
  {
    std::lock_guard lock(state_->mutex);
    state_->queried.insert(key);
  }
  if (node_->kind != Kind::map) type_error(*node_, prefix_, fmt::format("a map (to read {})", key));
  auto n = node_->field(literal_key);
  if (!n) fail("{}: {}: required key is missing", node_->origin.source, key);
  return Config(state_, n, key);
}

size_t Config::size() const {
  if (node_->kind == Kind::list) return node_->items.size();
  if (node_->kind == Kind::map) return node_->fields.size();
  return 0;
}

std::vector<std::string> Config::keys() const {
  std::vector<std::string> out;
  for (const auto& [k, v] : node_->fields) out.push_back(k);
  return out;
}

bool Config::is_map() const { return node_->kind == Kind::map; }
bool Config::is_list() const { return node_->kind == Kind::list; }
bool Config::is_scalar() const { return node_->kind == Kind::scalar; }
bool Config::is_null() const { return node_->kind == Kind::null; }

std::string Config::where(std::string_view key) const {
  const auto n = deepest(node_, key);
  return n->origin.source.empty() ? state_->file : n->origin.str();
}

template <ConfigValue T>
T Config::get(std::string_view key) const {
  return Converter<T>::get(*require(key), full_key(key));
}

template <ConfigValue T>
T Config::get(std::string_view key, const T& fallback) const {
  auto n = find(key, /*strict=*/true);
  if (!n || n->kind == Kind::null) return fallback;
  return Converter<T>::get(*n, full_key(key));
}

bool Range::contains(double value) const {
  if (!std::isfinite(value)) return false;
  return (lo_open ? value > lo : value >= lo) && (hi_open ? value < hi : value <= hi);
}

std::string Range::str() const {
  const bool has_lo = std::isfinite(lo), has_hi = std::isfinite(hi);
  if (has_lo && has_hi) return fmt::format("{}{}, {}{}", lo_open ? '(' : '[', lo, hi, hi_open ? ')' : ']');
  if (has_lo) return fmt::format("{} {}", lo_open ? ">" : ">=", lo);
  if (has_hi) return fmt::format("{} {}", hi_open ? "<" : "<=", hi);
  return "";
}

namespace {

template <ConfigNumber T>
T number_in_range(const Node& n, const std::string& key, const Range& range) {
  const T value = Converter<T>::get(n, key);
  if (!range.contains(static_cast<double>(value))) {
    const std::string bounds = range.str();
    const char* what = std::is_integral_v<T> ? "an integer" : "a finite number";
    type_error(n, key, bounds.empty() ? std::string(what)
                       : fmt::format("{} {}{}", what, bounds.front() == '[' || bounds.front() == '(' ? "in " : "", bounds));
  }
  return value;
}

}  // namespace

template <ConfigNumber T>
T Config::get_in_range(std::string_view key, const Range& range) const {
  return number_in_range<T>(*require(key), full_key(key), range);
}

template <ConfigNumber T>
T Config::get_in_range(std::string_view key, const T& fallback, const Range& range) const {
  auto n = find(key, /*strict=*/true);
  if (!n || n->kind == Kind::null) return fallback;
  return number_in_range<T>(*n, full_key(key), range);
}

#define FACET_CONFIG_INSTANTIATE_NUMBER(T)                                    \
  template T Config::get_in_range<T>(std::string_view, const Range&) const; \
  template T Config::get_in_range<T>(std::string_view, const T&, const Range&) const;
FACET_CONFIG_INSTANTIATE_NUMBER(int)
FACET_CONFIG_INSTANTIATE_NUMBER(int64_t)
FACET_CONFIG_INSTANTIATE_NUMBER(uint64_t)
FACET_CONFIG_INSTANTIATE_NUMBER(double)
FACET_CONFIG_INSTANTIATE_NUMBER(float)
#undef FACET_CONFIG_INSTANTIATE_NUMBER

#define FACET_CONFIG_INSTANTIATE(T)                                                      \
  template T Config::get<T>(std::string_view) const;                                     \
  template T Config::get<T>(std::string_view, const T&) const;                           \
  template std::vector<T> Config::get<std::vector<T>>(std::string_view) const;           \
  template std::vector<T> Config::get<std::vector<T>>(std::string_view, const std::vector<T>&) const;
FACET_CONFIG_INSTANTIATE(bool)
FACET_CONFIG_INSTANTIATE(int)
FACET_CONFIG_INSTANTIATE(int64_t)
FACET_CONFIG_INSTANTIATE(uint64_t)
FACET_CONFIG_INSTANTIATE(double)
FACET_CONFIG_INSTANTIATE(float)
FACET_CONFIG_INSTANTIATE(std::string)
#undef FACET_CONFIG_INSTANTIATE

void Config::set(std::string_view key, std::string_view yaml_value, std::string origin) {
  if (origin.empty()) origin = fmt::format("set({}={})", key, yaml_value);
  const std::string full = full_key(key);
  std::vector<Step> steps;
  try {
    steps = parse_key(key);
  } catch (const Error& e) {
    fail("{}: {}", origin, e.what());
  }
  if (steps.empty()) fail("{}: an empty key cannot be set", origin);
  if (prefix_.empty() && steps[0].name == "_base_") fail("{}: _base_ cannot be set; it is read only from files", origin);

  std::shared_ptr<Node> value;
  try {
    YamlBudget budget{.source = origin};
    value = from_yaml(YAML::Load(std::string(yaml_value)), budget);
  } catch (const YAML::Exception& e) {
    fail("{}: value \"{}\" is not valid YAML: {}", origin, yaml_value, e.msg);
  }
  auto relabel = [&](auto&& self, Node& n) -> void {
    n.origin = {origin, 0};
    for (auto& i : n.items) self(self, *i);
    for (auto& [k, v] : n.fields) self(self, *v);
  };
  relabel(relabel, *value);

  std::shared_ptr<Node> n = node_;
  std::string walked = prefix_;
  for (size_t i = 0; i < steps.size(); ++i) {
    const Step& step = steps[i];
    const bool last = i + 1 == steps.size();
    const std::string here = walked.empty() ? "the root" : walked;
    if (step.index) {
      if (n->kind != Kind::list) fail("{}: cannot set {}: {} is {}, not a list", origin, full, here, kind_name(n->kind));
      if (*step.index >= n->items.size())
        fail("{}: cannot set {}: {} has {} items; a list is replaced as a whole, not extended", origin, full, here,
             n->items.size());
      if (last) {
        n->items[*step.index] = value;
        return;
      }
      n = n->items[*step.index];
    } else {
      if (n->kind != Kind::map) fail("{}: cannot set {}: {} is {}, not a map", origin, full, here, kind_name(n->kind));
      if (last) {
        n->set_field(step.name, value);
        return;
      }
      auto next = n->field(step.name);
      if (!next || next->kind == Kind::null) {
        if (steps[i + 1].index)
          fail("{}: cannot set {}: {} is not a list", origin, full, append_step(walked, step));
        next = std::make_shared<Node>();
        next->kind = Kind::map;
        next->origin = {origin, 0};
        n->set_field(step.name, next);
      }
      n = next;
    }
    walked = append_step(walked, step);
  }
}

void Config::consume(std::string_view key) const {
  const std::string full = full_key(key);
  std::lock_guard lock(state_->mutex);
  state_->consumed.insert(full);
}

std::vector<std::string> Config::unused_keys(bool only_likely_typos) const {
  std::vector<std::pair<std::string, const Node*>> leaves;
  collect_leaves(*node_, prefix_, leaves);
  std::set<std::string> queried, consumed;
  {
    std::lock_guard lock(state_->mutex);
    queried = state_->queried;
    consumed = state_->consumed;
  }
  // Suggestions are keys the code asked for, except those present in the same file as the unknown
  // key: whoever wrote both meant two keys. A key present elsewhere (a base, the command line) is a
  // likely target: `lrr: 0.5` in an experiment meant to override the base's `lr`.
  std::vector<std::pair<std::string, std::string>> read;  // key, source where present ("" if absent)
  for (const auto& q : queried) {
    std::shared_ptr<Node> n;
    try {
      n = lookup(state_->root, q);
    } catch (const Error&) {  // a literal key from child() that is no dotted path
    }
    read.emplace_back(q, n && n->kind != Kind::null ? n->origin.source : "");
  }
  auto read_within = [&](const std::string& prefix) {
    for (const auto& q : queried)
      if (is_within(q, prefix)) return true;
    for (const auto& c : consumed)
      if (is_within(c, prefix)) return true;
    return false;
  };
  // A misspelt section (`trian:`) leaves every key below it unread, and its own name is the typo:
  // the topmost unread map above `key` and the nearest sibling name something asked for, if close.
  auto misspelt_section = [&](const std::string& key, const std::string& source)
      -> std::optional<std::pair<std::string, std::string>> {
    std::vector<Step> steps;
    try {
      steps = parse_key(key);
    } catch (const Error&) {
      return std::nullopt;
    }
    std::string parent;
    for (size_t i = 0; i + 1 < steps.size(); parent = append_step(parent, steps[i]), ++i) {
      const std::string section = append_step(parent, steps[i]);
      if (!is_within(section, prefix_) || section == prefix_ || read_within(section)) continue;
      if (steps[i].index) return std::nullopt;  // an unread list element is no misspelling
      std::vector<std::string> names;
      for (const auto& [q, q_source] : read) {
        if (q == parent || !is_within(q, parent)) continue;
        std::vector<Step> q_steps;
        try {
          q_steps = parse_key(q);
        } catch (const Error&) {
          continue;
        }
        if (q_steps.size() <= i || q_steps[i].index || q_steps[i].name == steps[i].name) continue;
        const auto sibling = lookup(state_->root, append_step(parent, q_steps[i]));
        if (sibling && sibling->kind != Kind::null && sibling->origin.source == source) continue;
        names.push_back(q_steps[i].name);
      }
      if (auto near = closest_match(steps[i].name, names))
        return std::make_pair(section, append_step(parent, Step{*near, std::nullopt}));
      return std::nullopt;
    }
    return std::nullopt;
  };
  std::vector<std::string> problems;
  std::set<std::string> sections_reported;
  for (const auto& [key, node] : leaves) {
    bool used = queried.count(key) > 0;
    for (const auto& c : consumed) used = used || is_within(key, c);
    // Reading into a list of scalars (an element), a null or an empty map reads it; asking
    // has("a.b") of a scalar `a` does not read `a`.
    if (node->kind != Kind::scalar)
      for (const auto& q : queried) used = used || (q != key && is_within(q, key));
    if (used) continue;
    if (const auto section = misspelt_section(key, node->origin.source)) {
      // One line for the section, not one per key below it.
      if (sections_reported.insert(section->first).second)
        problems.push_back(fmt::format("{}: {}: unknown key (nothing reads it); did you mean {}?",
                                       lookup(state_->root, section->first)->origin.str(), section->first,
                                       section->second));
      continue;
    }
    std::string line = fmt::format("{}: {}: unknown key (nothing reads it)", node->origin.str(), key);
    std::vector<std::string> candidates;
    for (const auto& [q, source] : read)
      if (source != node->origin.source) candidates.push_back(q);
    if (auto near = closest_match(key, candidates)) line += fmt::format("; did you mean {}?", *near);
    else if (only_likely_typos) continue;
    problems.push_back(line);
  }
  return problems;
}

void Config::check_unused() const {
  const auto problems = unused_keys(/*only_likely_typos=*/false);
  if (!problems.empty()) fail("{}", join(problems, "\n"));
}

std::vector<std::string> Config::likely_typos() const { return unused_keys(/*only_likely_typos=*/true); }

std::string Config::dump() const {
  YAML::Emitter out;
  emit(out, *node_);
  return std::string(out.c_str()) + "\n";
}

std::string Config::dump_inline() const {
  YAML::Emitter out;
  out << YAML::Flow;
  emit(out, *node_);
  return out.c_str();
}

void Config::save(const fs::path& file) const { write_file_atomic(file, dump()); }

}  // namespace facet
