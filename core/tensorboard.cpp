#include "core/tensorboard.h"

#include "core/error.h"
#include "core/file_io.h"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <bit>
#include <chrono>
#include <cstring>

namespace facet::tensorboard {
namespace {

constexpr std::array<uint32_t, 256> make_crc32c_table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    table[i] = c;
  }
  return table;
}
constexpr auto kCrc32cTable = make_crc32c_table();

// --- protobuf wire format: just what Event/Summary need ---------------------------------------
void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}
template <class T>
void put_little_endian(std::string& out, T value) {
  static_assert(std::endian::native == std::endian::little, "Facet assumes a little-endian host");
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));
  out.append(bytes, sizeof(T));
}
void put_tag(std::string& out, int field, int wire_type) { put_varint(out, static_cast<uint64_t>(field << 3 | wire_type)); }
void put_bytes(std::string& out, int field, std::string_view bytes) {
  put_tag(out, field, 2);
  put_varint(out, bytes.size());
  out.append(bytes);
}
void put_int(std::string& out, int field, int64_t v) {
  put_tag(out, field, 0);
  put_varint(out, static_cast<uint64_t>(v));
}

std::string event_with_summary_value(double wall_time, int64_t step, const std::string& value) {
  std::string summary;
  put_bytes(summary, 1, value);  // Summary.value
  std::string event;
  put_tag(event, 1, 1);  // Event.wall_time (double)
  put_little_endian(event, wall_time);
  put_int(event, 2, step);       // Event.step
  put_bytes(event, 5, summary);  // Event.summary
  return event;
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

uint32_t crc32c(std::string_view bytes) {
  uint32_t c = 0xFFFFFFFFu;
  for (unsigned char b : bytes) c = kCrc32cTable[(c ^ b) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

uint32_t masked_crc32c(std::string_view bytes) {
  const uint32_t c = crc32c(bytes);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

std::string frame_record(std::string_view payload) {
  std::string out;
  std::string length;
  put_little_endian(length, static_cast<uint64_t>(payload.size()));
  out += length;
  put_little_endian(out, masked_crc32c(length));
  out.append(payload);
  put_little_endian(out, masked_crc32c(payload));
  return out;
}

std::string file_version_event(double wall_time) {
  std::string event;
  put_tag(event, 1, 1);
  put_little_endian(event, wall_time);
  put_bytes(event, 3, "brain.Event:2");  // Event.file_version
  return event;
}

std::string session_start_event(double wall_time, int64_t step) {
  std::string log;
  put_int(log, 1, 1);  // SessionLog.status = START
  std::string event;
  put_tag(event, 1, 1);
  put_little_endian(event, wall_time);
  put_int(event, 2, step);      // Event.step
  put_bytes(event, 7, log);     // Event.session_log
  return event;
}

std::string scalar_event(double wall_time, int64_t step, std::string_view tag, float value) {
  std::string v;
  put_bytes(v, 1, tag);  // Value.tag
  put_tag(v, 2, 5);      // Value.simple_value (float)
  put_little_endian(v, value);
  return event_with_summary_value(wall_time, step, v);
}

std::string image_event(double wall_time, int64_t step, std::string_view tag, std::string_view png, int height,
                        int width, int channels) {
  std::string image;
  put_int(image, 1, height);
  put_int(image, 2, width);
  put_int(image, 3, channels);  // colorspace = channel count
  put_bytes(image, 4, png);
  std::string v;
  put_bytes(v, 1, tag);
  put_bytes(v, 4, image);  // Value.image
  return event_with_summary_value(wall_time, step, v);
}

EventWriter::EventWriter(const std::filesystem::path& logdir) {
  std::filesystem::create_directories(logdir);
  char host[256] = "localhost";
  ::gethostname(host, sizeof(host) - 1);
  const auto seconds = static_cast<int64_t>(now_seconds());
  path_ = logdir / fmt::format("events.out.tfevents.{}.{}.{}", seconds, host, ::getpid());
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd_ < 0) fail("{}: cannot create TensorBoard event file: {}", path_.string(), std::strerror(errno));
  append(file_version_event(now_seconds()));
  flush();
}

EventWriter::~EventWriter() {
  try {
    flush();
  } catch (const Error&) {
    // A destructor must not throw; the last records are lost, earlier ones are on disk.
  }
  if (fd_ >= 0) ::close(fd_);
}

void EventWriter::add_session_start(int64_t step) { append(session_start_event(now_seconds(), step)); }

void EventWriter::add_scalar(std::string_view tag, double value, int64_t step) {
  append(scalar_event(now_seconds(), step, tag, static_cast<float>(value)));
}

void EventWriter::add_image(std::string_view tag, std::string_view png, int height, int width, int channels,
                            int64_t step) {
  append(image_event(now_seconds(), step, tag, png, height, width, channels));
  flush();  // images are rare and large: do not let them pile up in memory
}

void EventWriter::append(const std::string& event) {
  buffer_ += frame_record(event);
  if (buffer_.size() > (1 << 20)) flush();
}

void EventWriter::flush() {
  if (buffer_.empty() || fd_ < 0) return;
  write_all(fd_, buffer_.data(), buffer_.size(), path_);
  buffer_.clear();
  ::fdatasync(fd_);
}

}  // namespace facet::tensorboard
