#include "core/error.h"
#include "core/file_io.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <unistd.h>

namespace facet::test_file_io {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

fs::path temp_dir(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / ("facet_test_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

TEST(FileIo, AtomicWriteCreatesDirectoriesAndReplaces) {
  const fs::path file = temp_dir("atomic") / "sub" / "out.txt";
  write_file_atomic(file, "first");
  EXPECT_EQ(read_file(file), "first");
  write_file_atomic(file, "second, longer");
  EXPECT_EQ(read_file(file), "second, longer");
  // No temporary file is left next to it.
  size_t entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(file.parent_path())) ++entries;
  EXPECT_EQ(entries, 1u);
}

TEST(FileIo, FailedWriteLeavesTheOldFileIntact) {
  const fs::path file = temp_dir("atomic_fail") / "checkpoint.bin";
  write_file_atomic(file, "last good");
  EXPECT_THROW(write_file_atomic(file,
                                 [&](int fd) {
                                   write_all(fd, "partial", 7, file);
                                   fail("disk full (simulated)");
                                 }),
               Error);
  EXPECT_EQ(read_file(file), "last good");
  size_t entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(file.parent_path())) ++entries;
  EXPECT_EQ(entries, 1u) << "the temporary file must be removed";
}

TEST(FileIo, MappedFileSeesBytes) {
  const fs::path file = temp_dir("mmap") / "data.bin";
  write_file_atomic(file, std::string("\x01\x02\x03", 3));
  MappedFile map(file);
  ASSERT_EQ(map.bytes().size(), 3u);
  EXPECT_EQ(map.bytes()[2], 3);
  MappedFile moved = std::move(map);
  EXPECT_EQ(moved.bytes().size(), 3u);
  EXPECT_EQ(map.bytes().size(), 0u);
}

TEST(FileIo, ReadFileReadsWholeFilesOfAnySizeTheKernelReports) {
  const fs::path dir = fs::temp_directory_path() / ("facet_read_file_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::string big(100'003, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 31 % 251);
  write_file_atomic(dir / "big.bin", big);
  write_file_atomic(dir / "empty.bin", "");
  EXPECT_EQ(read_file(dir / "big.bin"), big);
  EXPECT_EQ(read_file(dir / "empty.bin"), "");
  // /proc files report size 0 to stat and hold more than one first guess of 4 KiB.
  const std::string maps = read_file("/proc/self/maps");
  EXPECT_GT(maps.size(), 4096u);
  EXPECT_EQ(maps.back(), '\n');
  try {
    read_file(dir);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr(dir.string() + ": read failed"));
  }
  fs::remove_all(dir);
}

TEST(FileIo, ErrorsNameThePath) {
  try {
    MappedFile map("/nonexistent/facet/file.safetensors");
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("/nonexistent/facet/file.safetensors: cannot open"));
  }
  try {
    read_file("/nonexistent/x.yaml");
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("/nonexistent/x.yaml: cannot open"));
  }
  EXPECT_THROW(MappedFile(fs::temp_directory_path()), Error);  // a directory
}

}  // namespace
}  // namespace facet::test_file_io
