// HDF5 packs: a packed split reads back exactly what the reader + pack_transforms give, a config
// with other preprocessing is refused, and a damaged file is an error naming it.
#include "core/config.h"
#include "data/pack.h"
#include "data/synth.h"
#include "data/transform.h"
#include "tests/support/scratch.h"

#include <gmock/gmock.h>
#include <hdf5.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iostream>

namespace facet::data::test_pack {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;

using test_support::message_of;

TEST(Pack, ReadsBackWhatTheReaderGivesAndRefusesOtherPreprocessing) {
  const fs::path dir = fs::temp_directory_path() / ("facet_test_pack_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  synth_registry().create(Config::parse("{name: deeplesion, patients: 5, slices: 10, size: 64}"), dir / "dl");
  const std::string node = fmt::format(
      "name: deeplesion\nroot: {}\nbatch_size: 4\n"
      "pack_transforms: [{{name: ct_window, preset: satr, scale: 255}}, {{name: resize, size: 32}}]\n",
      (dir / "dl").string());
  const Config raw = Config::parse(node);
  const fs::path file = dir / "dl.h5";
  auto preprocessing = build_transforms(raw.at("pack_transforms"));
  for (const std::string split : {"train", "test"})
    write_pack(file, split, *dataset_registry().create(raw, split), preprocessing, Preprocess::of(raw));

  // Same samples from the pack and from the files (pack_transforms applied on the fly).
  const auto direct = open_dataset(Config::parse(node), "train");
  const Config packed_node = Config::parse(node + "pack: " + file.string() + "\n");
  const auto packed = open_dataset(packed_node, "train");
  ASSERT_EQ(packed->size(), direct->size());
  EXPECT_EQ(packed->label_names(), direct->label_names());
  for (int64_t i = 0; i < packed->size(); ++i) {
    const Sample a = direct->get(i, 0), b = packed->get(i, 0);
    EXPECT_EQ(a.id, b.id);
    ASSERT_EQ(b.fields.at("image").sizes(), (std::vector<int64_t>{3, 32, 32}));
    EXPECT_TRUE(torch::equal(a.fields.at("image"), b.fields.at("image"))) << i;
    EXPECT_TRUE(torch::equal(a.ragged.at("boxes"), b.ragged.at("boxes"))) << i;
    EXPECT_TRUE(torch::equal(a.ragged.at("box_noisy"), b.ragged.at("box_noisy"))) << i;
  }
  // Batching options, splits and where the original files lie (a pack copied to another machine)
  // do not matter; preprocessing does, and the message names what differs.
  std::string bigger_batches = node;
  bigger_batches.replace(bigger_batches.find("batch_size: 4"), 13, "batch_size: 8");
  EXPECT_NO_THROW(open_dataset(Config::parse(bigger_batches + "pack: " + file.string() + "\n"), "test"));
  std::string elsewhere = node;
  elsewhere.replace(elsewhere.find("root: "), 6 + (dir / "dl").string().size(), "root: /another/machine/DeepLesion");
  EXPECT_NO_THROW(open_dataset(Config::parse(elsewhere + "test_split: test\neval_batch_size: 2\npack: " + file.string() + "\n"), "test"));
  EXPECT_THAT(message_of([&] {
                open_dataset(Config::parse(node + "pack: " + file.string() + "\nnum_slices: 5\n"), "train");
              }),
              AllOf(HasSubstr("made with other preprocessing"), HasSubstr("data.num_slices: (absent) in the pack, 5 in the config")));
  std::string other_size = node;
  other_size.replace(other_size.find("size: 32"), 8, "size: 48");
  EXPECT_THAT(message_of([&] { open_dataset(Config::parse(other_size + "pack: " + file.string() + "\n"), "train"); }),
              HasSubstr("data.pack_transforms[1].size: 32 in the pack, 48 in the config"));
  EXPECT_THAT(message_of([&] { open_dataset(packed_node, "val"); }), HasSubstr("the pack has no split \"val\""));
  EXPECT_THAT(message_of([&] { write_pack(file, "train", *direct, {}, Preprocess::of(raw)); }),
              HasSubstr("already holds the split \"train\""));

  // A truncated pack is an error naming it, never a crash.
  const fs::path broken = dir / "broken.h5";
  {
    std::ifstream in(file, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), {});
    std::ofstream(broken, std::ios::binary) << bytes.substr(0, bytes.size() / 3);
  }
  const std::string message = message_of([&] {
    const auto d = open_dataset(Config::parse(node + "pack: " + broken.string() + "\n"), "train");
    for (int64_t i = 0; i < d->size(); ++i) d->get(i, 0);
  });
  EXPECT_THAT(message, HasSubstr(broken.string()));
  fs::remove_all(dir);
}

// Replaces /<split>/ids of a pack by `count` strings, fixed-length or variable-length (a damaged,
// hand-edited or version-1 pack).
void rewrite_ids(const fs::path& file, const std::string& split, hsize_t count, bool variable = false) {
  const hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(f, 0);
  ASSERT_GE(H5Ldelete(f, (split + "/ids").c_str(), H5P_DEFAULT), 0);
  const hid_t type = H5Tcopy(H5T_C_S1);
  H5Tset_size(type, variable ? H5T_VARIABLE : 1);
  const hid_t space = H5Screate_simple(1, &count, nullptr);
  const hid_t ds = H5Dcreate2(f, (split + "/ids").c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(ds, 0);
  std::vector<const char*> ids(count, "x");
  const std::string fixed(count, 'x');
  if (count > 0) {
    ASSERT_GE(H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, variable ? static_cast<const void*>(ids.data()) : fixed.data()), 0);
  }
  H5Dclose(ds);
  H5Sclose(space);
  H5Tclose(type);
  H5Fclose(f);
}

TEST(Pack, IdsThatDisagreeWithTheSampleCountAreAnErrorNotAnOverflow) {
  hbool_t threadsafe = 0;
  ASSERT_GE(H5is_library_threadsafe(&threadsafe), 0);
  std::cout << "libhdf5 thread-safe: " << (threadsafe ? "yes" : "no (Facet locks around its HDF5 calls)") << "\n";
  const fs::path dir = test_support::scratch_dir("facet_test_pack", "damaged_ids");
  synth_registry().create(Config::parse("{name: deeplesion, patients: 3, slices: 8, size: 32}"), dir / "dl");
  const std::string node = fmt::format("name: deeplesion\nroot: {}\n", (dir / "dl").string());
  const Config raw = Config::parse(node);
  const auto direct = dataset_registry().create(raw, "train");
  const auto n = static_cast<hsize_t>(direct->size());
  ASSERT_GT(n, 1u);
  for (const hsize_t count : {n + 3, n - 1, hsize_t{0}}) {
    const fs::path file = dir / fmt::format("ids_{}.h5", count);
    write_pack(file, "train", *direct, {}, Preprocess::of(raw));
    EXPECT_NO_THROW(open_dataset(Config::parse(node + "pack: " + file.string() + "\n"), "train"));
    fs::remove(file);
    write_pack(file, "train", *direct, {}, Preprocess::of(raw));
    rewrite_ids(file, "train", count);
    EXPECT_THAT(message_of([&] { open_dataset(Config::parse(node + "pack: " + file.string() + "\n"), "train"); }),
                HasSubstr(fmt::format("train/ids: not {} strings", n)))
        << count;
  }
  // Variable-length ids (version 1's layout) live in HDF5's global heap, whose reader a damaged
  // file overflows: refused without reading them.
  const fs::path file = dir / "vlen_ids.h5";
  write_pack(file, "train", *direct, {}, Preprocess::of(raw));
  rewrite_ids(file, "train", n, true);
  EXPECT_THAT(message_of([&] { open_dataset(Config::parse(node + "pack: " + file.string() + "\n"), "train"); }),
              HasSubstr("train/ids: not fixed-length strings"));
}

}  // namespace
}  // namespace facet::data::test_pack
