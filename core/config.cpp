#include "core/config.h"

#include "core/file_io.h"
#include "core/text.h"

#include <yaml-cpp/yaml.h>

#include <charconv>
#include <cmath>
#include <limits>
#include <mutex>
#include <regex>
#include <set>

namespace facet {
namespace fs = std::filesystem;

namespace config_detail {

// Facet's own tree rather than YAML::Node: yaml-cpp nodes alias on assignment, and we need each
// value's origin (file and line) to survive merging and overrides.
struct Node {
  enum class Kind { null, scalar, list, map } kind = Kind::null;
  std::string scalar;
  bool quoted = false;  // a quoted scalar is always a string
  std::vector<std::shared_ptr<Node>> items;
  std::vector<std::pair<std::string, std::shared_ptr<Node>>> fields;  // file order
  std::string origin;  // "file:line" or "command line (key=value)"

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

struct State {
  std::shared_ptr<Node> root;
  std::string file;  // the top-level file, for keys that exist nowhere
  std::mutex mutex;
  std::set<std::string> queried;
  std::set<std::string> consumed;  // prefixes whose whole subtree counts as read
};

}  // namespace config_detail

using config_detail::Node;
using config_detail::State;

namespace {

std::shared_ptr<Node> deep_copy(const std::shared_ptr<Node>& n) {
  auto out = std::make_shared<Node>(*n);
  for (auto& item : out->items) item = deep_copy(item);
  for (auto& [k, v] : out->fields) v = deep_copy(v);
  return out;
}

std::shared_ptr<Node> from_yaml(const YAML::Node& y, const std::string& file, bool dotted_keys = false) {
  auto n = std::make_shared<Node>();
  const auto mark = y.Mark();
  n->origin = mark.line >= 0 ? fmt::format("{}:{}", file, mark.line + 1) : file;
  switch (y.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      n->kind = Node::Kind::null;
      break;
    case YAML::NodeType::Scalar:
      n->kind = Node::Kind::scalar;
      n->scalar = y.Scalar();
      n->quoted = y.Tag() == "!";
      break;
    case YAML::NodeType::Sequence:
      n->kind = Node::Kind::list;
      for (const auto& item : y) n->items.push_back(from_yaml(item, file, dotted_keys));
      break;
    case YAML::NodeType::Map:
      n->kind = Node::Kind::map;
      for (const auto& kv : y) {
        const std::string key = kv.first.as<std::string>();
        if (n->field(key)) fail("{}:{}: duplicate key \"{}\"", file, kv.first.Mark().line + 1, key);
        if (!dotted_keys && key.find('.') != std::string::npos)
          fail("{}:{}: key \"{}\" contains a dot; nest it instead", file, kv.first.Mark().line + 1, key);
        auto child = from_yaml(kv.second, file, dotted_keys);
        if (kv.second.Type() == YAML::NodeType::Null) child->origin = fmt::format("{}:{}", file, kv.first.Mark().line + 1);
        n->fields.emplace_back(key, std::move(child));
      }
      break;
  }
  return n;
}

std::shared_ptr<Node> parse_yaml(std::string_view text, const std::string& origin, bool dotted_keys = false) {
  try {
    const YAML::Node y = YAML::Load(std::string(text));
    auto n = from_yaml(y, origin, dotted_keys);
    if (n->kind == Node::Kind::null) n->kind = Node::Kind::map;  // an empty document
    return n;
  } catch (const YAML::Exception& e) {
    fail("{}:{}:{}: invalid YAML: {}", origin, e.mark.line + 1, e.mark.column + 1, e.msg);
  }
}

// Maps merge key by key; anything else is replaced by the overriding value.
void merge_into(Node& dst, const std::shared_ptr<Node>& src) {
  if (dst.kind == Node::Kind::map && src->kind == Node::Kind::map) {
    for (const auto& [k, v] : src->fields) {
      auto existing = dst.field(k);
      if (existing && existing->kind == Node::Kind::map && v->kind == Node::Kind::map) merge_into(*existing, v);
      else dst.set_field(k, deep_copy(v));
    }
  } else {
    dst = *deep_copy(src);
  }
}

std::shared_ptr<Node> load_with_bases(const fs::path& file, std::vector<fs::path>& chain, bool dotted_keys) {
  const fs::path canonical = fs::weakly_canonical(file);
  for (const auto& f : chain)
    if (f == canonical) {
      std::string cycle;
      for (const auto& c : chain) cycle += c.string() + " -> ";
      fail("{}: _base_ cycle: {}{}", file.string(), cycle, canonical.string());
    }
  if (!fs::exists(file)) {
    if (chain.empty()) fail("{}: no such config file", file.string());
    fail("{}: no such config file (named in _base_ of {})", file.string(), chain.back().string());
  }
  chain.push_back(canonical);
  auto node = parse_yaml(read_file(file), file.string(), dotted_keys);
  if (node->kind != Node::Kind::map) fail("{}: a config file must be a map of keys", file.string());
  auto result = std::make_shared<Node>();
  result->kind = Node::Kind::map;
  result->origin = file.string();
  if (auto base = node->field("_base_")) {
    std::vector<std::string> bases;
    if (base->kind == Node::Kind::scalar) bases.push_back(base->scalar);
    else if (base->kind == Node::Kind::list)
      for (const auto& b : base->items) {
        if (b->kind != Node::Kind::scalar) fail("{}: _base_: expected file paths", b->origin);
        bases.push_back(b->scalar);
      }
    else fail("{}: _base_: expected a path or a list of paths", base->origin);
    for (const auto& b : bases) merge_into(*result, load_with_bases(file.parent_path() / b, chain, dotted_keys));
    std::erase_if(node->fields, [](const auto& kv) { return kv.first == "_base_"; });
  }
  merge_into(*result, node);
  chain.pop_back();
  return result;
}

std::vector<std::string> split_key(std::string_view key) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= key.size()) {
    const size_t dot = key.find('.', start);
    const auto part = key.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (part.empty()) fail("invalid key \"{}\": empty component", key);
    parts.emplace_back(part);
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return parts;
}

const char* kind_name(Node::Kind k) {
  switch (k) {
    case Node::Kind::null: return "null";
    case Node::Kind::scalar: return "a scalar";
    case Node::Kind::list: return "a list";
    case Node::Kind::map: return "a map";
  }
  return "?";
}

std::string found(const Node& n) {
  return n.kind == Node::Kind::scalar ? fmt::format("\"{}\"", n.scalar) : std::string(kind_name(n.kind));
}

// --- scalar conversion (YAML 1.2 core schema) ----------------------------------------------------
template <class T>
T convert(const Node& n, const std::string& key);

[[noreturn]] void type_error(const Node& n, const std::string& key, std::string_view expected) {
  fail("{}: {}: expected {}, got {}", n.origin, key, expected, found(n));
}

template <>
bool convert<bool>(const Node& n, const std::string& key) {
  if (n.kind == Node::Kind::scalar && !n.quoted) {
    const auto& s = n.scalar;
    if (s == "true" || s == "True" || s == "TRUE") return true;
    if (s == "false" || s == "False" || s == "FALSE") return false;
  }
  type_error(n, key, "a boolean (true or false)");
}

template <class I>
I convert_integer(const Node& n, const std::string& key) {
  if (n.kind != Node::Kind::scalar || n.quoted) type_error(n, key, "an integer");
  std::string_view s = n.scalar;
  if (!s.empty() && s[0] == '+') s.remove_prefix(1);
  I value{};
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec == std::errc::result_out_of_range)
    fail("{}: {}: {} is out of range for {}", n.origin, key, n.scalar, std::is_signed_v<I> ? "a signed integer" : "an unsigned integer");
  if (ec != std::errc() || end != s.data() + s.size() || s.empty()) type_error(n, key, "an integer");
  return value;
}
template <>
int convert<int>(const Node& n, const std::string& key) { return convert_integer<int>(n, key); }
template <>
int64_t convert<int64_t>(const Node& n, const std::string& key) { return convert_integer<int64_t>(n, key); }
template <>
uint64_t convert<uint64_t>(const Node& n, const std::string& key) { return convert_integer<uint64_t>(n, key); }

template <>
double convert<double>(const Node& n, const std::string& key) {
  static const std::regex number(R"([-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?)");
  if (n.kind != Node::Kind::scalar || n.quoted) type_error(n, key, "a number");
  const auto& s = n.scalar;
  if (s == ".inf" || s == "+.inf" || s == ".Inf" || s == ".INF") return std::numeric_limits<double>::infinity();
  if (s == "-.inf" || s == "-.Inf" || s == "-.INF") return -std::numeric_limits<double>::infinity();
  if (s == ".nan" || s == ".NaN" || s == ".NAN") return std::numeric_limits<double>::quiet_NaN();
  if (!std::regex_match(s, number)) type_error(n, key, "a number");
  return std::strtod(s.c_str(), nullptr);
}
template <>
float convert<float>(const Node& n, const std::string& key) { return static_cast<float>(convert<double>(n, key)); }

template <>
std::string convert<std::string>(const Node& n, const std::string& key) {
  if (n.kind != Node::Kind::scalar) type_error(n, key, "a string");
  return n.scalar;
}

template <class T>
std::vector<T> convert_list(const Node& n, const std::string& key) {
  if (n.kind != Node::Kind::list) type_error(n, key, "a list");
  std::vector<T> out;
  for (size_t i = 0; i < n.items.size(); ++i) out.push_back(convert<T>(*n.items[i], fmt::format("{}[{}]", key, i)));
  return out;
}

template <class T>
struct Converter {
  static T get(const Node& n, const std::string& key) { return convert<T>(n, key); }
};
template <class T>
struct Converter<std::vector<T>> {
  static std::vector<T> get(const Node& n, const std::string& key) { return convert_list<T>(n, key); }
};

// --- emitting ----------------------------------------------------------------------------------
void emit(YAML::Emitter& out, const Node& n) {
  switch (n.kind) {
    case Node::Kind::null:
      out << YAML::Null;
      break;
    case Node::Kind::scalar:
      if (n.quoted) out << YAML::DoubleQuoted << n.scalar;
      else out << n.scalar;
      break;
    case Node::Kind::list:
      out << YAML::BeginSeq;
      for (const auto& item : n.items) emit(out, *item);
      out << YAML::EndSeq;
      break;
    case Node::Kind::map:
      out << YAML::BeginMap;
      for (const auto& [k, v] : n.fields) {
        out << YAML::Key << k << YAML::Value;
        emit(out, *v);
      }
      out << YAML::EndMap;
      break;
  }
}

// Every leaf below `n` (scalars, nulls, lists of scalars), with its dotted key.
void collect_leaves(const Node& n, const std::string& key, std::vector<std::pair<std::string, const Node*>>& out) {
  if (n.kind == Node::Kind::map && !n.fields.empty()) {
    for (const auto& [k, v] : n.fields) collect_leaves(*v, key.empty() ? k : key + "." + k, out);
  } else if (n.kind == Node::Kind::list &&
             std::any_of(n.items.begin(), n.items.end(), [](const auto& i) { return i->kind == Node::Kind::map; })) {
    for (size_t i = 0; i < n.items.size(); ++i) collect_leaves(*n.items[i], fmt::format("{}[{}]", key, i), out);
  } else {
    out.emplace_back(key, &n);
  }
}

bool is_within(const std::string& key, const std::string& prefix) {
  if (prefix.empty()) return true;
  if (key.size() < prefix.size() || key.compare(0, prefix.size(), prefix) != 0) return false;
  return key.size() == prefix.size() || key[prefix.size()] == '.' || key[prefix.size()] == '[';
}

}  // namespace

// ---------------------------------------------------------------------------------------------
Config::Config() : state_(std::make_shared<State>()), node_(std::make_shared<Node>()) {
  node_->kind = Node::Kind::map;
  state_->root = node_;
  state_->file = "<config>";
}

Config::Config(std::shared_ptr<State> state, std::shared_ptr<Node> node, std::string prefix)
    : state_(std::move(state)), node_(std::move(node)), prefix_(std::move(prefix)) {}

Config Config::load(const fs::path& file, const std::vector<std::string>& overrides, bool dotted_keys) {
  std::vector<fs::path> chain;
  Config c;
  c.node_ = load_with_bases(file, chain, dotted_keys);
  c.state_->root = c.node_;
  c.state_->file = file.string();
  for (const auto& o : overrides) {
    const size_t eq = o.find('=');
    if (eq == std::string::npos || eq == 0)
      fail("command line: override \"{}\" is not of the form dotted.key=value", o);
    c.set(o.substr(0, eq), o.substr(eq + 1), fmt::format("command line ({})", o));
  }
  return c;
}

Config Config::parse(std::string_view yaml, std::string origin) {
  Config c;
  c.node_ = parse_yaml(yaml, origin);
  if (c.node_->kind != Node::Kind::map) fail("{}: a config must be a map of keys", origin);
  c.state_->root = c.node_;
  c.state_->file = origin;
  return c;
}

std::string Config::full_key(std::string_view key) const {
  if (key.empty()) return prefix_;
  return prefix_.empty() ? std::string(key) : prefix_ + "." + std::string(key);
}

std::shared_ptr<Node> Config::find(std::string_view key) const {
  {
    std::lock_guard lock(state_->mutex);
    state_->queried.insert(full_key(key));
  }
  if (key.empty()) return node_;
  std::shared_ptr<Node> n = node_;
  for (const auto& part : split_key(key)) {
    if (!n || n->kind != Node::Kind::map) return nullptr;
    n = n->field(part);
  }
  return n;
}

std::shared_ptr<Node> Config::require(std::string_view key) const {
  auto n = find(key);
  if (!n) {
    // Name the file of the nearest existing ancestor.
    std::shared_ptr<Node> ancestor = node_;
    for (const auto& part : split_key(key)) {
      auto next = ancestor && ancestor->kind == Node::Kind::map ? ancestor->field(part) : nullptr;
      if (!next) break;
      ancestor = next;
    }
    std::string file = ancestor ? ancestor->origin : state_->file;
    if (auto colon = file.rfind(':'); colon != std::string::npos && file.find('(') == std::string::npos)
      file = file.substr(0, colon);
    fail("{}: {}: required key is missing", file, full_key(key));
  }
  return n;
}

bool Config::has(std::string_view key) const {
  auto n = find(key);
  return n && n->kind != Node::Kind::null;
}

Config Config::at(std::string_view key) const { return Config(state_, require(key), full_key(key)); }

Config Config::child(const std::string& literal_key) const {
  const std::string key = prefix_.empty() ? literal_key : prefix_ + "." + literal_key;
  {
    std::lock_guard lock(state_->mutex);
    state_->queried.insert(key);
  }
  auto n = node_->kind == Node::Kind::map ? node_->field(literal_key) : nullptr;
  if (!n) fail("{}: {}: required key is missing", node_->origin, key);
  return Config(state_, n, key);
}

Config Config::at(size_t index) const {
  if (node_->kind != Node::Kind::list) fail("{}: {}: expected a list, got {}", node_->origin, prefix_, found(*node_));
  if (index >= node_->items.size())
    fail("{}: {}: index {} out of range (the list has {} items)", node_->origin, prefix_, index, node_->items.size());
  return Config(state_, node_->items[index], fmt::format("{}[{}]", prefix_, index));
}

size_t Config::size() const {
  if (node_->kind == Node::Kind::list) return node_->items.size();
  if (node_->kind == Node::Kind::map) return node_->fields.size();
  return 0;
}

std::vector<std::string> Config::keys() const {
  std::vector<std::string> out;
  if (node_->kind == Node::Kind::map)
    for (const auto& [k, v] : node_->fields) out.push_back(k);
  return out;
}

bool Config::is_map() const { return node_->kind == Node::Kind::map; }
bool Config::is_list() const { return node_->kind == Node::Kind::list; }
bool Config::is_scalar() const { return node_->kind == Node::Kind::scalar; }
bool Config::is_null() const { return node_->kind == Node::Kind::null; }

std::string Config::where(std::string_view key) const {
  std::shared_ptr<Node> n = node_;
  if (!key.empty())
    for (const auto& part : split_key(key)) {
      auto next = n->kind == Node::Kind::map ? n->field(part) : nullptr;
      if (!next) break;
      n = next;
    }
  return n->origin.empty() ? state_->file : n->origin;
}

template <class T>
T Config::get(std::string_view key) const {
  return Converter<T>::get(*require(key), full_key(key));
}

template <class T>
T Config::get(std::string_view key, const T& fallback) const {
  auto n = find(key);
  if (!n || n->kind == Node::Kind::null) return fallback;
  return Converter<T>::get(*n, full_key(key));
}

#define FACET_CONFIG_INSTANTIATE(T)                                  \
  template T Config::get<T>(std::string_view) const;                 \
  template T Config::get<T>(std::string_view, const T&) const;       \
  template std::vector<T> Config::get<std::vector<T>>(std::string_view) const; \
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
  std::shared_ptr<Node> value;
  try {
    value = from_yaml(YAML::Load(std::string(yaml_value)), origin);
  } catch (const YAML::Exception& e) {
    fail("{}: value \"{}\" is not valid YAML: {}", origin, yaml_value, e.msg);
  }
  auto relabel = [&](auto&& self, Node& n) -> void {
    n.origin = origin;
    for (auto& i : n.items) self(self, *i);
    for (auto& [k, v] : n.fields) self(self, *v);
  };
  relabel(relabel, *value);
  const auto parts = split_key(key);
  std::shared_ptr<Node> n = node_;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    auto next = n->field(parts[i]);
    if (!next || next->kind != Node::Kind::map) {
      if (next && next->kind != Node::Kind::null)
        fail("{}: cannot set {}: {} is {}, not a map", origin, key, full_key(fmt::format("{}", fmt::join(
                                                                          parts.begin(), parts.begin() + i + 1, "."))),
             kind_name(next->kind));
      next = std::make_shared<Node>();
      next->kind = Node::Kind::map;
      next->origin = origin;
      n->set_field(parts[i], next);
    }
    n = next;
  }
  n->set_field(parts.back(), value);
}

void Config::consume(std::string_view key) const {
  std::lock_guard lock(state_->mutex);
  state_->consumed.insert(full_key(key));
}

void Config::check_unused() const {
  std::vector<std::pair<std::string, const Node*>> leaves;
  collect_leaves(*node_, prefix_, leaves);
  std::vector<std::string> read;
  std::set<std::string> queried, consumed;
  {
    std::lock_guard lock(state_->mutex);
    queried = state_->queried;
    consumed = state_->consumed;
  }
  read.assign(queried.begin(), queried.end());
  std::vector<std::string> problems;
  for (const auto& [key, node] : leaves) {
    bool used = queried.count(key) > 0;
    for (const auto& c : consumed) used = used || is_within(key, c);
    // A list of maps read element by element counts as read through its elements' keys.
    for (const auto& q : queried) used = used || (is_within(q, key) && q != key);
    if (used) continue;
    std::string line = fmt::format("{}: {}: unknown key (nothing reads it)", node->origin, key);
    if (auto near = closest_match(key, read)) line += fmt::format("; did you mean {}?", *near);
    problems.push_back(line);
  }
  if (!problems.empty()) fail("{}", join(problems, "\n"));
}

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
