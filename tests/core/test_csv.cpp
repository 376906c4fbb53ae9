#include "core/csv.h"
#include "core/error.h"
#include "tests/support/paths.h"
#include "tests/support/scratch.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

namespace facet::test_csv {
namespace {

using ::testing::HasSubstr;

using test_support::message_of;

TEST(Csv, QuotedFieldsCrlfBomAndColumnsByName) {
  const auto t = CsvTable::parse("\xEF\xBB\xBF" "name, box ,note\r\na,\"1, 2, 3, 4\",\"say \"\"hi\"\"\"\r\n"
                                 "b,\"5,6,7,8\",\"two\nlines\"\r\n\r\n",
                                 "t.csv");
  ASSERT_EQ(t.rows(), 2u);
  EXPECT_EQ(t.column("box"), 1u);  // header cells are trimmed
  EXPECT_EQ(t.cell(0, t.column("note")), "say \"hi\"");
  EXPECT_EQ(t.cell(1, 2), "two\nlines");
  EXPECT_EQ(t.numbers(0, 1, 4), (std::vector<double>{1, 2, 3, 4}));
  EXPECT_EQ(t.where(1), "t.csv:3");  // rows are numbered by the line they start on
  EXPECT_THAT(message_of([&] { t.column("Box"); }), HasSubstr("t.csv:1: no column \"Box\" (the header has: name, box, note)"));
}

// Blank lines are skipped, except in a one-column table where they are rows with an empty cell
// ("" is such a row in any table); blank lines at the end are never rows.
TEST(Csv, BlankLinesAreRowsOnlyInAOneColumnTable) {
  const auto one = CsvTable::parse("name\nx\n\ny\n\"\"\n\n\n", "one.csv");
  ASSERT_EQ(one.rows(), 4u);
  EXPECT_EQ(one.cell(1, 0), "");
  EXPECT_EQ(one.where(1), "one.csv:3");
  EXPECT_EQ(one.cell(3, 0), "");
  const auto two = CsvTable::parse("a,b\n1,2\n\n3,4\n\n", "two.csv");
  ASSERT_EQ(two.rows(), 2u);
  EXPECT_EQ(two.where(1), "two.csv:4");
}

TEST(Csv, ErrorsNameFileLineAndColumn) {
  EXPECT_THAT(message_of([] { CsvTable::parse("a,b\n1,2\n3\n", "x.csv"); }),
              HasSubstr("x.csv:3: 1 fields, but the header has 2 columns"));
  EXPECT_THAT(message_of([] { CsvTable::parse("a\n\"open\n", "x.csv"); }), HasSubstr("x.csv:2: a quoted field is never closed"));
  EXPECT_THAT(message_of([] { CsvTable::parse("a\n\"q\"x\n", "x.csv"); }), HasSubstr("x.csv:2: text after the closing quote"));
  EXPECT_THAT(message_of([] { CsvTable::parse("", "x.csv"); }), HasSubstr("x.csv: empty CSV file"));
  const auto t = CsvTable::parse("n,v\n12x,\"1, b\"\n", "y.csv");
  EXPECT_THAT(message_of([&] { t.integer(0, 0); }), HasSubstr("y.csv:2: column n: expected an integer, got \"12x\""));
  EXPECT_THAT(message_of([&] { t.numbers(0, 1); }), HasSubstr("y.csv:2: column v: expected comma-separated numbers"));
  EXPECT_THAT(message_of([&] { t.numbers(0, 0, 4); }), HasSubstr("column n"));
}

TEST(Csv, NumberListsRefuseNanAndInfinity) {
  const auto t = CsvTable::parse("Spacing_mm_px_\n\"0.7, nan, 5\"\n\"0.7, 0.7, inf\"\n0.7\n", "dl.csv");
  EXPECT_THAT(message_of([&] { t.numbers(0, 0); }),
              HasSubstr("dl.csv:2: column Spacing_mm_px_: expected finite numbers, got \"0.7, nan, 5\""));
  EXPECT_THAT(message_of([&] { t.numbers(1, 0); }), HasSubstr("dl.csv:3: column Spacing_mm_px_: expected finite numbers"));
  EXPECT_EQ(t.numbers(2, 0), std::vector<double>{0.7});
}

TEST(Csv, ReadsTheDeepLesionHeaderAndMissingValues) {
  const auto t = CsvTable::read(test_support::source_path("tests/fixtures/csv/dl_info_sample.csv"));
  ASSERT_EQ(t.rows(), 2u);
  EXPECT_EQ(t.header().size(), 18u);
  EXPECT_EQ(t.numbers(0, t.column("Bounding_boxes"), 4), (std::vector<double>{228.5, 83.7, 265.1, 113.4}));
  EXPECT_EQ(t.integer(1, t.column("Train_Val_Test")), 3);
  EXPECT_TRUE(std::isnan(t.number(1, t.column("Patient_age"), true)));
  EXPECT_THROW(t.number(1, t.column("Patient_age")), Error);
  EXPECT_THROW(CsvTable::read("/nonexistent/DL_info.csv"), Error);
}

}  // namespace
}  // namespace facet::test_csv
