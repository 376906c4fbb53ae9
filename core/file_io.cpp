#include "core/file_io.h"

#include "core/error.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

namespace facet {
namespace fs = std::filesystem;

namespace {
std::string errno_text() { return std::strerror(errno); }

void fsync_directory(const fs::path& dir) {
  int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;  // some filesystems do not allow it; the rename itself is still atomic
  ::fsync(fd);
  ::close(fd);
}
}  // namespace

void write_all(int fd, const void* data, size_t size, const fs::path& path) {
  const auto* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::write(fd, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("{}: write failed: {}", path.string(), errno_text());
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
}

void write_file_atomic(const fs::path& path, const std::function<void(int fd)>& write_body) {
  const fs::path dir = path.parent_path();
  if (!dir.empty()) fs::create_directories(dir);
  const fs::path tmp = fs::path(path.string() + ".tmp." + std::to_string(::getpid()));
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail("{}: cannot create: {}", tmp.string(), errno_text());
  try {
    write_body(fd);
    if (::fsync(fd) != 0) fail("{}: fsync failed: {}", tmp.string(), errno_text());
    if (::close(fd) != 0) {
      fd = -1;
      fail("{}: close failed: {}", tmp.string(), errno_text());
    }
    fd = -1;
    if (::rename(tmp.c_str(), path.c_str()) != 0)
      fail("{}: cannot rename {} into place: {}", path.string(), tmp.string(), errno_text());
  } catch (...) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  fsync_directory(dir);
}

void write_file_atomic(const fs::path& path, std::string_view contents) {
  write_file_atomic(path, [&](int fd) { write_all(fd, contents.data(), contents.size(), path); });
}

std::string read_file(const fs::path& path) {
  // One open, one fstat, reads of the whole size (a loader reads thousands of small files a second;
  // a stream copy grew the string chunk by chunk).
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("{}: cannot open: {}", path.string(), errno_text());
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const std::string why = errno_text();
    ::close(fd);
    fail("{}: cannot stat: {}", path.string(), why);
  }
  std::string out(S_ISREG(st.st_mode) ? static_cast<size_t>(st.st_size) : 0, '\0');
  size_t size = 0;
  const auto read_some = [&](char* into, size_t count) {
    while (true) {
      const ssize_t n = ::read(fd, into, count);
      if (n >= 0) return static_cast<size_t>(n);
      if (errno == EINTR) continue;
      const std::string why = errno_text();
      ::close(fd);
      fail("{}: read failed: {}", path.string(), why);
    }
  };
  while (true) {
    if (size == out.size()) {  // at the size fstat gave: the end, unless the file grew (or is a pipe)
      char next;
      if (read_some(&next, 1) == 0) break;
      out.resize(std::max<size_t>(2 * out.size(), 4096));
      out[size++] = next;
    }
    const size_t n = read_some(out.data() + size, out.size() - size);
    if (n == 0) break;
    size += n;
  }
  ::close(fd);
  out.resize(size);
  return out;
}

MappedFile::MappedFile(const fs::path& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("{}: cannot open: {}", path.string(), errno_text());
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("{}: not a regular file", path.string());
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      ::close(fd);
      fail("{}: mmap failed: {}", path.string(), errno_text());
    }
    data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);
}

void MappedFile::advise_sequential() const {
  if (data_) ::madvise(const_cast<uint8_t*>(data_), size_, MADV_SEQUENTIAL);
}

void MappedFile::release(size_t offset, size_t length) const {
  if (!data_ || length == 0 || offset >= size_) return;
  static const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  const size_t begin = offset / page * page;
  const size_t end = std::min(size_, offset + length);
  // The map is private and never written, so dropping pages loses nothing (a neighbour's page in the
  // widened range is simply read again when touched).
  ::madvise(const_cast<uint8_t*>(data_) + begin, end - begin, MADV_DONTNEED);
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

MappedFile::MappedFile(MappedFile&& other) noexcept
    : path_(std::move(other.path_)), data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
    path_ = std::move(other.path_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

}  // namespace facet
