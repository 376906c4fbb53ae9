// The executables' link order: which library a dynamic symbol resolves to (cmake/FacetTorch.cmake).
#include <dlfcn.h>

#include <gtest/gtest.h>

#include <string>

namespace {

std::string library_of(const char* symbol) {
  void* address = dlsym(RTLD_DEFAULT, symbol);
  if (address == nullptr) return "<not found>";
  Dl_info info{};
  if (dladdr(address, &info) == 0 || info.dli_fname == nullptr) return "<unknown>";
  return info.dli_fname;
}

}  // namespace

// dlib pulls Debian's reference libblas into every Facet executable; if it comes before
// libtorch_cpu, torch's CPU matmuls call the reference sgemm_ (many times slower).
TEST(LinkOrder, TorchsBlasWinsOverDebiansReferenceBlas) {
  EXPECT_NE(library_of("sgemm_").find("libtorch_cpu"), std::string::npos) << library_of("sgemm_");
  EXPECT_NE(library_of("dgemm_").find("libtorch_cpu"), std::string::npos) << library_of("dgemm_");
}
