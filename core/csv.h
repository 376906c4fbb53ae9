// CSV tables as the datasets publish them (RFC 4180: quoted fields may hold commas, quotes ("")
// and line breaks; CRLF or LF; a UTF-8 BOM is skipped). The first row is the header; columns are
// found by name. Every error names the file and line, and the column.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace facet {

class CsvTable {
 public:
  static CsvTable read(const std::filesystem::path& path);
  // `origin` stands in for the file name in errors.
  static CsvTable parse(std::string_view text, std::string origin);

  const std::vector<std::string>& header() const { return header_; }
  size_t rows() const { return rows_.size(); }
  const std::string& origin() const { return origin_; }

  // The index of column `name`; an error listing the header when it is absent.
  size_t column(std::string_view name) const;
  std::optional<size_t> find_column(std::string_view name) const;

  const std::string& cell(size_t row, size_t col) const;
  // "file:line" of a data row, for errors raised by callers.
  std::string where(size_t row) const;

  // Typed cells: the whole cell (surrounding spaces allowed) must parse, else an error naming
  // file:line, the column and the text.
  int64_t integer(size_t row, size_t col) const;
  double number(size_t row, size_t col) const;  // "NaN" and empty read as NaN only when allow_missing
  double number(size_t row, size_t col, bool allow_missing) const;
  // "x1, y1, x2, y2" inside one quoted field (DeepLesion); `expected` = 0 accepts any count.
  std::vector<double> numbers(size_t row, size_t col, size_t expected = 0) const;

 private:
  std::string origin_;
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
  std::vector<int64_t> lines_;  // 1-based line on which each data row starts
};

}  // namespace facet
