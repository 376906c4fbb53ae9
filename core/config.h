// Config: experiment configuration from YAML, with `_base_` inheritance, dotted command-line
// overrides, typed getters whose errors name the file, line and dotted key, and a check that every
// key in the file was read by someone (so a typo never silently runs the wrong experiment).
//
// Scalars follow the YAML 1.2 core schema: booleans are true/false (also True/TRUE/False/FALSE;
// YAML 1.1's yes/no/on/off are plain strings), integers are 12, -3, 0x1F, 0o17, floats are 1e-4,
// .5, -2.0, .inf, .nan; a quoted scalar (or one tagged !!str) is always a string.
//
// Keys are dotted paths with optional list indices: "model.backbone.depth", "data.transforms[2].p".
// A Config is a handle: copies and the views returned by at() share one tree and one record of
// which keys were read. Reads may happen from many threads; set() must not run concurrently with them.
#pragma once

#include "core/error.h"

#include <cstdint>
#include <filesystem>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace facet {

namespace config_detail {
struct Node;
struct State;

template <class T>
inline constexpr bool is_scalar_v = std::is_same_v<T, bool> || std::is_same_v<T, int> || std::is_same_v<T, int64_t> ||
                                    std::is_same_v<T, uint64_t> || std::is_same_v<T, double> ||
                                    std::is_same_v<T, float> || std::is_same_v<T, std::string>;
template <class T>
struct is_value : std::bool_constant<is_scalar_v<T>> {};
template <class T>
struct is_value<std::vector<T>> : std::bool_constant<is_scalar_v<T>> {};
}  // namespace config_detail

// The types the typed getters read: bool, int, int64_t, uint64_t, double, float, std::string, and
// std::vector of any of them.
template <class T>
concept ConfigValue = config_detail::is_value<T>::value;
// The numbers get_in_range reads.
template <class T>
concept ConfigNumber = std::is_same_v<T, int> || std::is_same_v<T, int64_t> || std::is_same_v<T, uint64_t> ||
                       std::is_same_v<T, double> || std::is_same_v<T, float>;

// The values a number read with get_in_range may take: closed bounds unless marked open. NaN and
// ±inf are in no range (`lr: .nan` is an error, not a run that trains on NaN).
struct Range {
  double lo = -std::numeric_limits<double>::infinity();
  double hi = std::numeric_limits<double>::infinity();
  bool lo_open = false, hi_open = false;

  static Range finite() { return {}; }
  static Range at_least(double lo) { return {.lo = lo}; }                   // [lo, inf)
  static Range above(double lo) { return {.lo = lo, .lo_open = true}; }     // (lo, inf)
  static Range closed(double lo, double hi) { return {.lo = lo, .hi = hi}; }  // [lo, hi]
  static Range closed_open(double lo, double hi) { return {.lo = lo, .hi = hi, .hi_open = true}; }  // [lo, hi)

  bool contains(double value) const;
  std::string str() const;  // "[0, 1)", ">= 1", "> 0", "" (any finite value)
};

class Config {
 public:
  Config();  // an empty map

  // Loads `file`, resolving `_base_` (a path or a list of paths relative to the file that names
  // them: bases merge in order, then the file on top; maps merge deeply, lists and scalars are
  // replaced, so `key: ~` removes an inherited key), then applies `overrides` of the form
  // dotted.key=yaml_value (which may create keys; check_unused() then reports them if unread).
  //
  // Keys may not contain dots or brackets (`a.b: 1` would be unreachable as a.b); files whose keys
  // are dotted paths themselves (sweep grids) load with `dotted_keys` and read them with child().
  static Config load(const std::filesystem::path& file, const std::vector<std::string>& overrides = {},
                     bool dotted_keys = false);
  // A config from YAML text; `origin` stands in for the file name in errors. No `_base_` here.
  static Config parse(std::string_view yaml, std::string origin = "<string>");

  // --- views ---------------------------------------------------------------------------------
  // An empty key means this node itself. Every key passed to has/at/get is recorded as read.
  bool has(std::string_view key) const;                // present and not null
  Config at(std::string_view key) const;               // a sub-tree; error if missing
  Config at(size_t index) const;                       // a list element; error if out of range
  Config child(const std::string& literal_key) const;  // a map child whose key is taken as is (no dot splitting)
  size_t size() const;                                 // list length, map size; 0 for scalars and null
  std::vector<std::string> keys() const;               // map keys in file order; empty for non-maps
  bool is_map() const;
  bool is_list() const;
  bool is_scalar() const;
  bool is_null() const;
  const std::string& prefix() const { return prefix_; }  // "model.backbone", "data.transforms[2]"; "" at the root
  std::string full_key(std::string_view key) const;      // prefix + "." + key (just key at the root), for errors
  // "file:line" of `key` (or of its nearest existing ancestor, or of this node), for errors raised by callers.
  std::string where(std::string_view key = {}) const;

  // --- typed getters -------------------------------------------------------------------------
  // The first form requires the key; the second returns `fallback` when the key is absent or null,
  // but still fails on a present value of the wrong type.
  template <ConfigValue T>
  T get(std::string_view key) const;
  template <ConfigValue T>
  T get(std::string_view key, const T& fallback) const;
  // A number within `range` (NaN and ±inf never are), else an error naming file:line, key, range and
  // value: `get_in_range<double>("ema_decay", 0.0, Range::closed_open(0, 1))`. The fallback is the
  // caller's and is not checked.
  template <ConfigNumber T>
  T get_in_range(std::string_view key, const Range& range) const;
  template <ConfigNumber T>
  T get_in_range(std::string_view key, const T& fallback, const Range& range) const;
  // Any finite number: get_in_range with Range::finite().
  template <ConfigNumber T>
  T get_finite(std::string_view key) const { return get_in_range<T>(key, Range::finite()); }
  template <ConfigNumber T>
  T get_finite(std::string_view key, const T& fallback) const { return get_in_range<T>(key, fallback, Range::finite()); }

  // --- changes -------------------------------------------------------------------------------
  // Sets `key` (created as needed; list indices must exist) to the YAML value `yaml_value`.
  // `origin` names where the value came from in later errors (default: "set(key=value)").
  void set(std::string_view key, std::string_view yaml_value, std::string origin = "");
  // Marks `key`'s subtree (default: this whole view) as read, for components that hand a node on
  // to something that does not read it through Config.
  void consume(std::string_view key = {}) const;
  // Throws one facet::Error listing every key below this view that nobody read, each with its
  // origin and the nearest key that was read, if one is close; a section nothing below which was
  // read (`trian:`) is listed once, with the nearest section name. Call it after everything is built.
  void check_unused() const;
  // The lines of check_unused() that carry a suggestion, at any time: for an error raised before
  // everything was read (`train: set max_steps` when the file says `trian:`), the likely cause.
  std::vector<std::string> likely_typos() const;

  // --- output --------------------------------------------------------------------------------
  std::string dump() const;         // block YAML of this view, no `_base_`; reloads to the same values
  std::string dump_inline() const;  // flow YAML on one line ("[1, 2]", "{a: 1}", "0.3"), for overrides
  void save(const std::filesystem::path& file) const;  // dump(), written atomically

 private:
  Config(std::shared_ptr<config_detail::State> state, std::shared_ptr<config_detail::Node> node, std::string prefix);
  // The node at `key`, recording the query; nullptr if absent (or below a null). With `strict`,
  // stepping into a scalar or a list by name (or a map by index) is a type error.
  std::shared_ptr<config_detail::Node> find(std::string_view key, bool strict) const;
  std::shared_ptr<config_detail::Node> require(std::string_view key) const;
  std::vector<std::string> unused_keys(bool only_likely_typos) const;

  std::shared_ptr<config_detail::State> state_;
  std::shared_ptr<config_detail::Node> node_;
  std::string prefix_;
};

}  // namespace facet
