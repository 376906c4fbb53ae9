// TensorBoard event files written natively: TFRecord framing (length, masked CRC32C, payload,
// masked CRC32C) around hand-encoded Event/Summary protobufs. Scalars use Summary.Value.simple_value
// and images the legacy Summary.Image (PNG bytes), both of which TensorBoard reads and migrates.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace facet::tensorboard {

// CRC-32C (Castagnoli) and TFRecord's masked form: rotate right by 15, then add 0xa282ead8.
uint32_t crc32c(std::string_view bytes);
uint32_t masked_crc32c(std::string_view bytes);

// One TFRecord: uint64 length, masked CRC of the length, payload, masked CRC of the payload.
std::string frame_record(std::string_view payload);

// Serialized Event protos.
std::string file_version_event(double wall_time);
std::string scalar_event(double wall_time, int64_t step, std::string_view tag, float value);
// SessionLog START at `step`: TensorBoard discards every event of earlier files with step >= `step`
// (a resumed run's restart point), so rows written after the last checkpoint are not shown twice.
std::string session_start_event(double wall_time, int64_t step);
std::string image_event(double wall_time, int64_t step, std::string_view tag, std::string_view png, int height,
                        int width, int channels);

// Appends events to `<logdir>/events.out.tfevents.<unix seconds>.<hostname>.<pid>`, created on
// construction with the "brain.Event:2" version record. Not thread-safe; one writer per run (rank 0).
class EventWriter {
 public:
  explicit EventWriter(const std::filesystem::path& logdir);
  ~EventWriter();
  EventWriter(const EventWriter&) = delete;
  EventWriter& operator=(const EventWriter&) = delete;

  void add_scalar(std::string_view tag, double value, int64_t step);
  // A restart at `step` (see session_start_event).
  void add_session_start(int64_t step);
  // `png` holds an encoded PNG of height x width x channels (1 gray, 3 RGB, 4 RGBA).
  void add_image(std::string_view tag, std::string_view png, int height, int width, int channels, int64_t step);
  // Pushes buffered records to disk (fsync): call at checkpoints and before exit.
  void flush();

  const std::filesystem::path& path() const { return path_; }

 private:
  void append(const std::string& event);

  std::filesystem::path path_;
  int fd_ = -1;
  std::string buffer_;
};

}  // namespace facet::tensorboard
