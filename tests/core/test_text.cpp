#include "core/text.h"
#include "core/utf8.h"

#include <gtest/gtest.h>

namespace facet::test_text {
namespace {

TEST(Text, EditDistanceHandComputed) {
  EXPECT_EQ(edit_distance("", ""), 0u);
  EXPECT_EQ(edit_distance("abc", ""), 3u);
  EXPECT_EQ(edit_distance("kitten", "sitting"), 3u);
  EXPECT_EQ(edit_distance("train.lr", "train.lr"), 0u);
  EXPECT_EQ(edit_distance("flaw", "lawn"), 2u);
}

TEST(Text, ClosestMatchOnlySuggestsPlausibleTypos) {
  const std::vector<std::string> keys = {"train.lr", "train.max_steps", "model.num_aus"};
  EXPECT_EQ(closest_match("train.lt", keys), "train.lr");
  EXPECT_EQ(closest_match("model.num_au", keys), "model.num_aus");
  EXPECT_EQ(closest_match("data.root", keys), std::nullopt);
  EXPECT_EQ(closest_match("x", {}), std::nullopt);
}

TEST(Text, Join) {
  EXPECT_EQ(join({}), "");
  EXPECT_EQ(join({"a"}), "a");
  EXPECT_EQ(join({"a", "b", "c"}, "|"), "a|b|c");
}

// Well-formed UTF-8 per the Unicode standard's table 3-7.
TEST(Text, FirstInvalidUtf8) {
  EXPECT_EQ(first_invalid_utf8("plain ascii"), std::nullopt);
  EXPECT_EQ(first_invalid_utf8("caf\xC3\xA9 \xE6\x97\xA5 \xF0\x9F\x98\x80"), std::nullopt);  // é, 日, 😀
  EXPECT_EQ(first_invalid_utf8("ab\xE9"), 2u);                   // Latin-1 é
  EXPECT_EQ(first_invalid_utf8("\xC0\xAF"), 0u);                 // overlong '/'
  EXPECT_EQ(first_invalid_utf8("x\xED\xA0\x80"), 1u);            // a surrogate
  EXPECT_EQ(first_invalid_utf8("\xF4\x90\x80\x80"), 0u);         // past U+10FFFF
  EXPECT_EQ(first_invalid_utf8("ok\xE6\x97"), 2u);               // cut short
  EXPECT_EQ(first_invalid_utf8("\xFE\xFF"), 0u);                 // a UTF-16 byte-order mark
}

}  // namespace
}  // namespace facet::test_text
