#include "core/file_io.h"
#include "core/tensorboard.h"
#include "tests/support/paths.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdlib>

namespace facet::tensorboard::test_tensorboard {
namespace {

std::string hex(std::string_view bytes) {
  std::string out;
  for (unsigned char b : bytes) out += fmt::format("{:02x}", b);
  return out;
}

TEST(TensorBoard, Crc32cTestVectors) {
  EXPECT_EQ(crc32c("abcd"), 0x92c80a31u);
  EXPECT_EQ(crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(masked_crc32c("abcd"), 0xb6e61068u);
  EXPECT_EQ(crc32c(""), 0u);
}

TEST(TensorBoard, EventEncodingMatchesTheProtobufWireFormat) {
  // Worked examples from the research notes (infra.md §4.3), wall time 1.7e9.
  EXPECT_EQ(hex(file_version_event(1.7e9)), "0900000040fc54d9411a0d627261696e2e4576656e743a32");
  EXPECT_EQ(hex(scalar_event(1.7e9, 7, "loss", 0.5f)),
            "0900000040fc54d94110072a0d0a0b0a046c6f7373150000003f");
}

TEST(TensorBoard, RecordFraming) {
  const std::string record = frame_record(file_version_event(1.7e9));
  ASSERT_EQ(record.size(), 8u + 4u + 24u + 4u);
  EXPECT_EQ(hex(record.substr(0, 8)), "1800000000000000");
  uint32_t header_crc = 0, data_crc = 0;
  std::memcpy(&header_crc, record.data() + 8, 4);
  std::memcpy(&data_crc, record.data() + 36, 4);
  EXPECT_EQ(header_crc, 0x224b7fa3u);
  EXPECT_EQ(data_crc, 0x9d8fedecu);
}

TEST(TensorBoard, TensorBoardItselfReadsTheFile) {
  const auto logdir = std::filesystem::temp_directory_path() / ("facet_tb_" + std::to_string(::getpid()));
  std::filesystem::remove_all(logdir);
  std::filesystem::path file;
  {
    EventWriter writer(logdir);
    file = writer.path();
    EXPECT_NE(file.filename().string().find("events.out.tfevents."), std::string::npos);
    for (int step = 0; step < 10; ++step) writer.add_scalar("train/loss", 1.0 / (step + 1), step);
    writer.add_scalar("eval/f1", 0.5, 10);
    // A 3x2 RGB PNG (height 3, width 2), encoded offline; its bytes only need to start like a PNG.
    const std::string png = std::string("\x89PNG\r\n\x1a\n", 8) + std::string(16, '\0');
    writer.add_image("eval/faces", png, 3, 2, 3, 10);
  }
  const std::string command = std::string(test_support::kPython) + " " + test_support::source_path("tools/golden/check_tensorboard.py") + " " +
                              file.string();
  EXPECT_EQ(std::system(command.c_str()), 0) << command;
}

}  // namespace
}  // namespace facet::tensorboard::test_tensorboard
