// NIfTI: the reader against files nibabel wrote and nibabel's reading of them
// (tools/golden/nifti_golden.py), write/read round trips, and every refusal as an error that starts
// with the file's path and says what is wrong.
#include "core/error.h"
#include "core/file_io.h"
#include "core/safetensors.h"
#include "data/image/nifti.h"
#include "tests/support/paths.h"
#include "tests/support/scratch.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>

namespace facet::data::image::test_nifti {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using test_support::message_of;

const fs::path kDir = fs::path(test_support::kSourceDir) / "tests/fixtures/nifti";

fs::path fresh_dir(const std::string& name) { return test_support::scratch_dir("facet_test_nifti", name); }

void write_bytes(const fs::path& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

template <class T>
void patch(std::string& bytes, size_t offset, T value) {
  std::memcpy(bytes.data() + offset, &value, sizeof(T));
}

// read_nifti's error for `path`, checked to start with the path.
std::string error_of(const fs::path& path, const NiftiReadOptions& options = {}) {
  const std::string message = message_of([&] { read_nifti(path, options); });
  EXPECT_THAT(message, StartsWith(path.string() + ": "));
  return message;
}

TEST(Nifti, EveryFixtureMatchesNibabel) {
  const safetensors::File golden(kDir / "voxels.safetensors");
  ASSERT_EQ(golden.names().size(), 13u);  // ten written by nibabel, three by SPM and others (nibabel/)
  for (const auto& name : golden.names()) {
    const NiftiVolume v = read_nifti(kDir / name);
    const torch::Tensor expected = golden.tensor(name);
    ASSERT_EQ(v.data.sizes(), expected.sizes()) << name;
    EXPECT_EQ(v.data.scalar_type(), torch::kFloat) << name;
    EXPECT_TRUE(torch::equal(v.data, expected)) << name << ": max diff " << (v.data - expected).abs().max().item<double>();
    const auto info = nlohmann::json::parse(golden.metadata().at(name));
    EXPECT_EQ(v.datatype, info["datatype"].get<int>()) << name;
    for (size_t i = 0; i < 3; ++i) EXPECT_EQ(v.spacing[i], info["spacing"][i].get<double>()) << name;
  }
  // FSL's NIfTI-2 example holds two volumes: refused, naming the file and the dimension.
  EXPECT_THAT(error_of(kDir / "nibabel/example_nifti2.nii.gz"), HasSubstr("a 4-D image (dim[4] = 2)"));
  // The scaled uint8 file: every value is 2 * stored - 5, so odd; the stored bytes are not.
  const NiftiVolume scaled = read_nifti(kDir / "uint8_scaled.nii.gz");
  EXPECT_TRUE(torch::equal(scaled.data.remainder(2), torch::ones_like(scaled.data)));
  // From memory, compressed or not, the same as from the file.
  for (const std::string name : {"int16_le.nii.gz", "float32_be.nii"}) {
    const std::string bytes = read_file(kDir / name);
    const NiftiVolume v = parse_nifti({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()}, name);
    EXPECT_TRUE(torch::equal(v.data, read_nifti(kDir / name).data)) << name;
  }
}

TEST(Nifti, WriteThenReadRoundTrips) {
  const fs::path dir = fresh_dir("roundtrip");
  const torch::Tensor ramp = torch::arange(2 * 3 * 4, torch::kFloat).view({2, 3, 4});  // [Z, Y, X]
  struct Case {
    std::string file;
    torch::Tensor values;
    int16_t datatype;
  };
  const std::vector<Case> cases = {{"f.nii.gz", ramp * 0.37f - 3.1f, kNiftiFloat32},
                                   {"f.nii", ramp * -1.5f, kNiftiFloat32},
                                   {"s.nii.gz", ramp * 1000 - 12000, kNiftiInt16},
                                   {"u.nii", ramp * 10, kNiftiUint8}};
  for (const auto& c : cases) {
    write_nifti(dir / c.file, c.values, {0.5, 0.75, 2.0}, c.datatype);
    const NiftiVolume v = read_nifti(dir / c.file);
    EXPECT_TRUE(torch::equal(v.data, c.values)) << c.file;
    EXPECT_EQ(v.datatype, c.datatype) << c.file;
    EXPECT_EQ(v.spacing, (std::array<double, 3>{0.5, 0.75, 2.0})) << c.file;
  }
  // .gz is gzip (told by its magic when read back), .nii starts with the header size.
  EXPECT_EQ(read_file(dir / "f.nii.gz").substr(0, 2), "\x1f\x8b");
  EXPECT_EQ(read_file(dir / "f.nii").substr(0, 4), std::string("\x5c\x01\0\0", 4));  // 348, little endian
  // Integer types round, and refuse what does not fit.
  write_nifti(dir / "r.nii", torch::full({1, 1, 2}, 2.6), {1, 1, 1}, kNiftiInt16);
  EXPECT_TRUE(torch::equal(read_nifti(dir / "r.nii").data, torch::full({1, 1, 2}, 3.0f)));
  EXPECT_THAT(message_of([&] { write_nifti(dir / "big.nii", torch::full({1, 1, 1}, 300.0), {1, 1, 1}, kNiftiUint8); }),
              HasSubstr("big.nii: values 300..300 do not fit the datatype's range 0..255"));
  EXPECT_THAT(message_of([&] { write_nifti(dir / "x.nii", torch::zeros({2, 2}), {1, 1, 1}, kNiftiUint8); }),
              HasSubstr("x.nii: write_nifti takes a [Z, Y, X] volume, got 2 dimension(s)"));
  EXPECT_THAT(message_of([&] { write_nifti(dir / "x.nii", torch::zeros({2, 2, 2}), {1, 1, 1}, kNiftiFloat64); }),
              HasSubstr("x.nii: write_nifti writes uint8 (2), int16 (4) or float32 (16), not datatype 64"));
}

TEST(Nifti, DamagedFilesAreErrorsNamingTheFile) {
  const fs::path dir = fresh_dir("damaged");
  write_nifti(dir / "good.nii", torch::arange(60, torch::kFloat).view({3, 4, 5}), {1, 1, 1}, kNiftiInt16);
  const std::string good = read_file(dir / "good.nii");  // 352 header bytes + 120 data bytes
  ASSERT_EQ(good.size(), 352u + 120u);
  auto damaged = [&](const std::string& name, const std::function<void(std::string&)>& change) {
    std::string bytes = good;
    change(bytes);
    write_bytes(dir / name, bytes);
    return dir / name;
  };

  EXPECT_THAT(error_of(damaged("short.nii", [](std::string& b) { b.resize(100); })),
              HasSubstr("truncated: 100 bytes, shorter than the 348-byte NIfTI-1 header"));
  EXPECT_THAT(error_of(damaged("cut.nii", [](std::string& b) { b.resize(400); })),
              HasSubstr("truncated: the voxel data end at byte 472 (vox_offset 352 + 120 bytes), but the file has 400 bytes"));
  EXPECT_THAT(error_of(damaged("size.nii", [](std::string& b) { patch<int32_t>(b, 0, 123); })),
              HasSubstr("not a NIfTI file: sizeof_hdr is 123"));
  EXPECT_THAT(error_of(damaged("offset.nii", [](std::string& b) { patch<float>(b, 108, 1e6f); })),
              HasSubstr("the voxel data end at byte 1000120 (vox_offset 1000000 + 120 bytes), but the file has 472 bytes"));
  EXPECT_THAT(error_of(damaged("inside.nii", [](std::string& b) { patch<float>(b, 108, 100.0f); })),
              HasSubstr("vox_offset 100 is not a whole byte offset at or past the 348-byte header"));
  EXPECT_THAT(error_of(damaged("4d.nii", [](std::string& b) { patch<int16_t>(b, 40, 4), patch<int16_t>(b, 48, 3); })),
              HasSubstr("a 4-D image (dim[4] = 3): only 3-D volumes are read"));
  EXPECT_THAT(error_of(damaged("2d.nii", [](std::string& b) { patch<int16_t>(b, 40, 2); })),
              HasSubstr("a 2-D image (dim[0] = 2): only 3-D volumes are read"));
  EXPECT_THAT(error_of(damaged("dim.nii", [](std::string& b) { patch<int16_t>(b, 44, -3); })),
              HasSubstr("dim[2] is -3 (must be positive)"));
  EXPECT_THAT(error_of(damaged("huge.nii", [](std::string& b) { patch<int16_t>(b, 42, 32767), patch<int16_t>(b, 44, 32767); })),
              HasSubstr("32767x32767x3 voxels, more than the 2^31 this reader accepts"));
  EXPECT_THAT(error_of(damaged("complex.nii", [](std::string& b) { patch<int16_t>(b, 70, 32); })),
              HasSubstr("unsupported datatype 32 (complex64)"));
  EXPECT_THAT(error_of(damaged("type.nii", [](std::string& b) { patch<int16_t>(b, 70, 1234); })),
              HasSubstr("unsupported datatype 1234 (not a NIfTI datatype)"));
  EXPECT_THAT(error_of(damaged("pair.hdr", [](std::string& b) { std::memcpy(b.data() + 344, "ni1", 4); })),
              HasSubstr("a NIfTI-1 .hdr/.img pair (magic \"ni1\") is not supported"));
  EXPECT_THAT(error_of(damaged("pair.img", [](std::string&) {})), HasSubstr(".hdr/.img pair is not supported"));
  EXPECT_THAT(error_of(damaged("analyze.nii", [](std::string& b) { std::memcpy(b.data() + 344, "\0\0\0\0", 4); })),
              HasSubstr("not a single-file NIfTI-1"));
  EXPECT_THAT(error_of(dir / "absent.nii.gz"), HasSubstr("no such file"));

  // Compressed: a cut stream, a damaged one, and the cap on what a header may make the reader inflate.
  write_nifti(dir / "good.nii.gz", torch::arange(60, torch::kFloat).view({3, 4, 5}), {1, 1, 1}, kNiftiInt16);
  const std::string gz = read_file(dir / "good.nii.gz");
  write_bytes(dir / "cut.nii.gz", gz.substr(0, gz.size() / 2));
  EXPECT_THAT(error_of(dir / "cut.nii.gz"), HasSubstr("truncated"));
  std::string garbled = gz.substr(0, 10) + std::string(64, '\xff');
  write_bytes(dir / "garbled.nii.gz", garbled);
  EXPECT_THAT(error_of(dir / "garbled.nii.gz"), HasSubstr("corrupt gzip data"));
  // 1 MiB of zeros inflates from about a kilobyte: over a 256 KiB cap, refused before inflating it.
  write_nifti(dir / "bomb.nii.gz", torch::zeros({64, 64, 64}), {1, 1, 1}, kNiftiFloat32);
  EXPECT_LT(fs::file_size(dir / "bomb.nii.gz"), 8192u);
  NiftiReadOptions capped;
  capped.max_bytes = 256 << 10;
  EXPECT_THAT(error_of(dir / "bomb.nii.gz", capped),
              HasSubstr("the voxel data take 1048576 bytes, more than the limit of 262144 (NiftiReadOptions::max_bytes)"));
  EXPECT_EQ(read_nifti(dir / "bomb.nii.gz").data.sum().item<float>(), 0.0f);  // under the default cap
  EXPECT_THAT(error_of(damaged("far.nii", [](std::string& b) { patch<float>(b, 108, 1e6f); }), capped),
              HasSubstr("vox_offset 1000000 is past the limit of 262144 bytes (NiftiReadOptions::max_bytes)"));
}

}  // namespace
}  // namespace facet::data::image::test_nifti
