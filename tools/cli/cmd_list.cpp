// `facet list [KIND]`: every registered component, by kind, with its one-line description.
#include "core/registry.h"
#include "core/text.h"
#include "tools/cli/commands.h"

#include <fmt/format.h>

#include <algorithm>

namespace facet::cli {

void add_list_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("list", "List every registered component (models, losses, datasets, ...)");
  auto kind = std::make_shared<std::string>();
  cmd->add_option("kind", *kind, "Only this kind (e.g. models)");
  cmd->callback([kind] {
    const auto all = RegistryIndex::instance().all();
    std::vector<std::string> kinds;
    for (const auto& [name, components] : all) kinds.push_back(name);
    if (!kind->empty() && std::find(kinds.begin(), kinds.end(), *kind) == kinds.end()) {
      const auto near = closest_match(*kind, kinds);  // `list model` for `list models`
      fail("unknown kind \"{}\"{} (kinds: {})", *kind, near ? fmt::format("; did you mean {}?", *near) : "", join(kinds));
    }
    for (const auto& [name, components] : all) {
      if (!kind->empty() && name != *kind) continue;
      fmt::print("{} ({})\n", name, components.size());
      size_t width = 0;
      for (const auto& c : components) width = std::max(width, c.name.size());
      for (const auto& c : components) fmt::print("  {:<{}}  {}\n", c.name, width, c.description);
      if (components.empty()) fmt::print("  (none registered yet)\n");
    }
  });
}

}  // namespace facet::cli
