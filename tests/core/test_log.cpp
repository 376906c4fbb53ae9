#include "core/error.h"
#include "core/file_io.h"
#include "core/log.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <unistd.h>

namespace facet::test_log {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class LogTest : public ::testing::Test {
 protected:
  void TearDown() override {
    log::close_file();
    log::set_level(log::Level::info);
    log::set_rank(0, 1);
  }
  std::filesystem::path file = std::filesystem::temp_directory_path() /
                               ("facet_log_" + std::to_string(::getpid()) + ".txt");
};

TEST_F(LogTest, LevelsFilterAndFileReceivesLines) {
  std::filesystem::remove(file);
  log::open_file(file);
  log::set_level(log::Level::info);
  log::debug("hidden {}", 1);
  log::info("step {} loss {:.3f}", 7, 0.25);
  log::warn("careful");
  log::close_file();
  const std::string text = read_file(file);
  EXPECT_THAT(text, Not(HasSubstr("hidden")));
  EXPECT_THAT(text, HasSubstr(" I step 7 loss 0.250\n"));
  EXPECT_THAT(text, HasSubstr(" W careful\n"));
  // A timestamp leads each line: YYYY-MM-DD HH:MM:SS.mmm
  EXPECT_TRUE(std::isdigit(text[0]) && text[4] == '-' && text[10] == ' ' && text[19] == '.');
}

TEST_F(LogTest, OnlyRankZeroPrintsInfoInADistributedRun) {
  std::filesystem::remove(file);
  log::open_file(file);
  log::set_rank(1, 2);
  log::info("from rank one");
  log::warn("rank one warns");
  log::close_file();
  const std::string text = read_file(file);
  EXPECT_THAT(text, Not(HasSubstr("from rank one")));
  EXPECT_THAT(text, HasSubstr("W [rank 1] rank one warns"));
}

TEST_F(LogTest, ParseLevel) {
  EXPECT_EQ(log::parse_level("debug"), log::Level::debug);
  EXPECT_EQ(log::parse_level("warning"), log::Level::warn);
  try {
    log::parse_level("loud");
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("unknown log level \"loud\""));
  }
}

}  // namespace
}  // namespace facet::test_log
