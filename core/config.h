// Config: experiment configuration from YAML, with `_base_` inheritance, dotted command-line
// overrides, typed getters whose errors name the file, line and dotted key, and a check that every
// key in the file was read by someone (so a typo never silently runs the wrong experiment).
//
// Scalars follow the YAML 1.2 core schema: booleans are true/false (also True/TRUE/False/FALSE),
// integers and floats are the plain forms (1, -3, 1e-4, .5, .inf); a quoted scalar is a string.
#pragma once

#include "core/error.h"

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace facet {

namespace config_detail {
struct Node;
struct State;
}  // namespace config_detail

class Config {
 public:
  Config();  // an empty map

  // Loads `file`, resolving `_base_` (a path or a list of paths relative to the file that names
  // them: bases merge in order, then the file on top; maps merge deeply, lists and scalars are
  // replaced), then applies `overrides` of the form dotted.key=yaml_value.
  //
  // Keys may not contain dots (`a.b: 1` would be unreachable as a.b); files whose keys are dotted
  // paths themselves (sweep grids) load with `dotted_keys` and read them with child().
  static Config load(const std::filesystem::path& file, const std::vector<std::string>& overrides = {},
                     bool dotted_keys = false);
  static Config parse(std::string_view yaml, std::string origin = "<string>");

  // --- views -----------------------------------------------------------------------------------
  bool has(std::string_view key) const;          // present and not null
  Config at(std::string_view key) const;         // a sub-tree; error if missing
  Config at(size_t index) const;                 // a list element; error if out of range
  Config child(const std::string& literal_key) const;  // a map child whose key is taken as is (no dot splitting)
  size_t size() const;                           // list length, map size; 0 for scalars/null
  std::vector<std::string> keys() const;         // map keys in file order
  bool is_map() const;
  bool is_list() const;
  bool is_scalar() const;
  bool is_null() const;
  const std::string& prefix() const { return prefix_; }  // "model.backbone"; "" at the root
  // "file:line" of `key` (or of this node), for errors raised by callers.
  std::string where(std::string_view key = {}) const;

  // --- typed getters: bool, int, int64_t, uint64_t, double, float, std::string, std::vector<T> ----
  template <class T>
  T get(std::string_view key) const;
  template <class T>
  T get(std::string_view key, const T& fallback) const;

  // --- changes -------------------------------------------------------------------------------------
  // Sets `key` (dotted, created as needed) to the YAML value `yaml_value`.
  void set(std::string_view key, std::string_view yaml_value, std::string origin = "");
  // Marks `key`'s subtree (default: this whole view) as read, for components that hand a node on
  // to something that does not read it through Config.
  void consume(std::string_view key = {}) const;
  // Throws one facet::Error listing every present key that nobody read, each with its origin and
  // the nearest key that was read, if one is close.
  void check_unused() const;

  // --- output ----------------------------------------------------------------------------------------
  std::string dump() const;         // block YAML of this view, no `_base_`; reloads to the same values
  std::string dump_inline() const;  // flow YAML on one line ("[1, 2]", "{a: 1}", "0.3"), for overrides
  void save(const std::filesystem::path& file) const;

 private:
  Config(std::shared_ptr<config_detail::State> state, std::shared_ptr<config_detail::Node> node, std::string prefix);
  std::string full_key(std::string_view key) const;
  // The node at `key`, recording the query; nullptr if absent.
  std::shared_ptr<config_detail::Node> find(std::string_view key) const;
  std::shared_ptr<config_detail::Node> require(std::string_view key) const;

  std::shared_ptr<config_detail::State> state_;
  std::shared_ptr<config_detail::Node> node_;
  std::string prefix_;
};

}  // namespace facet
