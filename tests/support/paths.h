// Where the tests find the repository (fixtures, experiments, tools), the build (the facet
// executable) and the Python with the reference packages. Defined once per build in a generated
// file (tests/support/paths.cpp.in), not compiled into every test object: test objects then do not
// depend on where the clone lives, and ccache hits across clones.
#pragma once

#include <string>

namespace facet::test_support {

extern const char kSourceDir[];  // the repository root
extern const char kBinaryDir[];  // the CMake build directory
extern const char kPython[];     // tools/bootstrap.sh's venv python (FACET_TEST_PYTHON)

// A path under the repository root or the build directory: source_path("experiments/demo/shapes.yaml").
inline std::string source_path(const std::string& relative) { return std::string(kSourceDir) + "/" + relative; }
inline std::string binary_path(const std::string& relative) { return std::string(kBinaryDir) + "/" + relative; }

}  // namespace facet::test_support
