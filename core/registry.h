// Registry<Product, Args...>: components built by name from config, in the style of detectron2's
// registries. Each kind (models, losses, datasets, ...) owns one registry; registration happens at
// the definition with FACET_REGISTER, creation with `registry.create(config_node, args...)`, which
// reads the node's `name` key. A duplicate name stops the program at start-up; an unknown name is a
// facet::Error that lists the registered names and suggests the nearest one.
#pragma once

#include "core/config.h"
#include "core/error.h"
#include "core/text.h"

#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace facet {

// What `facet list` prints for one component.
struct ComponentInfo {
  std::string name;
  std::string description;
};

// Every registry announces itself here so `facet list` can show all kinds at once.
class RegistryIndex {
 public:
  using Lister = std::function<std::vector<ComponentInfo>()>;
  static RegistryIndex& instance();
  void add_kind(std::string kind, Lister lister);
  // (kind, components sorted by name), kinds in alphabetical order.
  std::vector<std::pair<std::string, std::vector<ComponentInfo>>> all() const;

 private:
  std::map<std::string, Lister> kinds_;
};

template <class Product, class... Args>
class Registry {
 public:
  using Factory = std::function<Product(const Config&, Args...)>;

  // `kind` is singular ("model"); `kinds` the plural used in listings ("models").
  Registry(std::string kind, std::string kinds) : kind_(std::move(kind)) {
    RegistryIndex::instance().add_kind(std::move(kinds), [this] { return components(); });
  }
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  void add(const std::string& name, std::string description, Factory factory) {
    if (entries_.count(name)) fail("duplicate registration of {} \"{}\"", kind_, name);
    entries_.emplace(name, Entry{std::move(description), std::move(factory)});
  }

  bool contains(std::string_view name) const { return entries_.count(std::string(name)) > 0; }

  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& [name, entry] : entries_) out.push_back(name);
    return out;
  }

  // Builds the component named by `node.name`, passing it the node itself.
  Product create(const Config& node, Args... args) const {
    const auto name = node.get<std::string>("name");
    auto it = entries_.find(name);
    if (it == entries_.end()) fail("{}", unknown_name_message(node, name));
    return it->second.factory(node, std::forward<Args>(args)...);
  }

  std::vector<ComponentInfo> components() const {
    std::vector<ComponentInfo> out;
    for (const auto& [name, entry] : entries_) out.push_back({name, entry.description});
    return out;
  }

 private:
  struct Entry {
    std::string description;
    Factory factory;
  };

  std::string unknown_name_message(const Config& node, const std::string& name) const {
    std::string key = node.prefix().empty() ? "name" : node.prefix() + ".name";
    std::string message = fmt::format("{}: {}: unknown {} \"{}\"", node.where("name"), key, kind_, name);
    if (auto near = closest_match(name, names())) message += fmt::format(" (did you mean \"{}\"?)", *near);
    message += entries_.empty() ? fmt::format("; no {} is registered", kind_)
                                : fmt::format("; registered: {}", join(names()));
    return message;
  }

  std::string kind_;
  std::map<std::string, Entry> entries_;
};

namespace detail {
// Registration runs during static initialisation, where an exception cannot be caught: report the
// problem and stop, so a duplicate name can never silently shadow another component.
template <class R, class F>
bool register_or_die(R& registry, const char* name, const char* description, F&& factory) noexcept {
  try {
    registry.add(name, description, std::forward<F>(factory));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "facet: fatal error at start-up: %s\n", e.what());
    std::abort();
  }
  return true;
}
}  // namespace detail

#define FACET_CONCAT_INNER(a, b) a##b
#define FACET_CONCAT(a, b) FACET_CONCAT_INNER(a, b)

// FACET_REGISTER(model_registry(), "mgrr_net", "MGRR-Net AU detector (Luo et al. 2022)",
//                [](const Config& c) { return std::make_shared<MGRRNet>(MGRRNetOptions::from(c)); });
#define FACET_REGISTER(registry, name, description, ...)                                       \
  [[maybe_unused]] static const bool FACET_CONCAT(facet_registered_, __COUNTER__) =            \
      ::facet::detail::register_or_die(registry, name, description, __VA_ARGS__)

}  // namespace facet
