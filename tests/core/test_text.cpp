#include "core/text.h"

#include <gtest/gtest.h>

namespace facet {
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

}  // namespace
}  // namespace facet
