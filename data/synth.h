// Writers of small synthetic datasets in the published on-disk formats (`facet data synth NAME`):
// the tests and `make demo` read them through the same readers as the real downloads. Each writer
// is registered by dataset name and takes its options from a config node (`name` + options).
#pragma once

#include "core/config.h"
#include "core/registry.h"

#include <cstdint>
#include <filesystem>
#include <string>

namespace facet::data {

// What a writer produced, for the CLI's closing line and for tests.
struct SynthResult {
  std::filesystem::path root;  // the dataset root to point `data.root` at
  int64_t files = 0;           // files written
  std::string summary;         // one line: subjects / images / labels written
};

using SynthRegistry = Registry<SynthResult, const std::filesystem::path&>;
SynthRegistry& synth_registry();

// A writer as registered: its options are read (Options::from) and the node checked for keys
// nothing read before a file is written, so a misspelt option writes nothing.
template <class Options, class Write>
auto synth_writer(Write write) {
  return [write](const Config& c, const std::filesystem::path& out) {
    const Options options = Options::from(c);
    c.check_unused();
    return write(options, out);
  };
}

}  // namespace facet::data
