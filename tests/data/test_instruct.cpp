// The LLaVA-format instruction reader: a well-formed file parses with its extra fields; each kind of
// malformed record is an error naming the file, the record and the key.
#include "data/instruct/instruct.h"

#include "core/error.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace facet::data::test_instruct {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

fs::path write(const std::string& name, const std::string& text) {
  const fs::path dir = fs::temp_directory_path() / ("facet_test_instruct_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / name) << text;
  return dir / name;
}

std::string message_of(const fs::path& file, bool check_images = false) {
  try {
    read_instructions(file, {}, check_images);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Instructions, ReadsLlavaConversationsWithExtraFields) {
  const fs::path file = write("ok.json", R"([
    {"id": "F001_T1_2440", "image": "F001/T1/2440.jpg", "landmark": "F001/T1/2440.txt",
     "conversations": [{"from": "human", "value": "<image>\nWhich action units are active?"},
                       {"from": "gpt", "value": "AU1, AU2 and AU12."},
                       {"from": "human", "value": "And the expression?"},
                       {"from": "gpt", "value": "Happiness."}]},
    {"id": 7, "conversations": [{"from": "user", "value": "Text only."}, {"from": "assistant", "value": "Yes."}]}
  ])");
  const auto cs = read_instructions(file);
  ASSERT_EQ(cs.size(), 2u);
  EXPECT_EQ(cs[0].id, "F001_T1_2440");
  EXPECT_EQ(cs[0].images, std::vector<fs::path>{file.parent_path() / "F001/T1/2440.jpg"});
  ASSERT_EQ(cs[0].turns.size(), 4u);
  EXPECT_EQ(cs[0].turns[1].role, Turn::Role::gpt);
  EXPECT_EQ(cs[0].turns[1].text, "AU1, AU2 and AU12.");
  EXPECT_EQ(cs[0].extra.at("landmark"), "F001/T1/2440.txt");
  EXPECT_EQ(cs[1].id, "7");
  EXPECT_TRUE(cs[1].images.empty());
  EXPECT_THAT(message_of(file, /*check_images=*/true), HasSubstr("record 0 (id F001_T1_2440): image"));
}

TEST(Instructions, MalformedRecordsNameFileRecordAndKey) {
  EXPECT_THAT(message_of(write("a.json", "{\"id\": 1}")), HasSubstr("a.json: expected a JSON list of conversations"));
  EXPECT_THAT(message_of(write("b.json", "[{\"id\": 1, \"conversations\": [")), HasSubstr("b.json: not valid JSON"));
  EXPECT_THAT(message_of(write("c.json", R"([{"conversations": [{"from": "human", "value": "hi"}]}])")),
              HasSubstr("c.json: record 0: \"id\": expected a string or an integer"));
  EXPECT_THAT(message_of(write("d.json", R"([{"id": "x", "conversations": [{"from": "gpt", "value": "hi"}]}])")),
              HasSubstr("d.json: record 0 (id x): conversations[0]: turns must alternate starting with human"));
  EXPECT_THAT(message_of(write("e.json", R"([{"id": "x", "conversations": [{"from": "human", "value": 3}]}])")),
              HasSubstr("conversations[0]: \"value\": expected a string"));
  EXPECT_THAT(message_of(write("f.json", R"([{"id": "x", "image": "a.jpg", "conversations": [{"from": "human", "value": "no token"}]}])")),
              HasSubstr("record 0 (id x): 1 image(s) but 0 \"<image>\" placeholder(s)"));
  EXPECT_THAT(message_of(write("g.json", R"([{"id": "x", "conversations": [{"from": "bot", "value": "hi"}]}])")),
              HasSubstr("\"from\": expected \"human\" or \"gpt\", got \"bot\""));
}

}  // namespace
}  // namespace facet::data::test_instruct
