// File I/O that keeps data safe: atomic replacement (temporary file, fsync, rename, fsync of the
// directory) so a crash, a kill or a full disk never leaves a half-written file under the real
// name, and a read-only memory map for large inputs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <string_view>

namespace facet {

// Writes through `write_body(fd)` into `path + ".tmp.<pid>"`, fsyncs, renames over `path` and fsyncs
// the directory. On any failure the temporary file is removed and `path` is untouched.
void write_file_atomic(const std::filesystem::path& path, const std::function<void(int fd)>& write_body);
void write_file_atomic(const std::filesystem::path& path, std::string_view contents);

// write(2) of all bytes, retrying on EINTR and short writes; throws facet::Error naming `path`.
void write_all(int fd, const void* data, size_t size, const std::filesystem::path& path);

std::string read_file(const std::filesystem::path& path);

// A read-only, private memory map of a whole file. Movable, not copyable.
class MappedFile {
 public:
  explicit MappedFile(const std::filesystem::path& path);
  ~MappedFile();
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  std::span<const uint8_t> bytes() const { return {data_, size_}; }
  const std::filesystem::path& path() const { return path_; }

  // Read-ahead for a front-to-back pass (madvise MADV_SEQUENTIAL); a hint, failures are ignored.
  void advise_sequential() const;
  // Drops this process's resident pages of [offset, offset + length) (madvise MADV_DONTNEED, the
  // range widened to whole pages): they leave the resident set and are read again from the file
  // (or the page cache) if touched later. Lets a loader stream a file larger than memory through
  // the map with only the bytes in use resident.
  void release(size_t offset, size_t length) const;

 private:
  std::filesystem::path path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace facet
