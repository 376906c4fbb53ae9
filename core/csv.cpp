#include "core/csv.h"

#include "core/error.h"
#include "core/file_io.h"
#include "core/text.h"

#include <charconv>
#include <cmath>

namespace facet {

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

CsvTable CsvTable::read(const std::filesystem::path& path) {
  return parse(read_file(path), path.string());
}

CsvTable CsvTable::parse(std::string_view text, std::string origin) {
  CsvTable t;
  t.origin_ = std::move(origin);
  if (text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);
  std::vector<std::vector<std::string>> records;
  std::vector<int64_t> starts;
  std::vector<std::string> record;
  std::string field;
  int64_t line = 1, record_line = 1;
  bool quoted = false, field_started = false, after_quote = false;
  auto end_field = [&] {
    record.push_back(std::move(field));
    field.clear();
    field_started = after_quote = false;
  };
  std::vector<bool> blank;  // a line with nothing on it (not even "")
  auto end_record = [&] {
    blank.push_back(record.empty() && !field_started);
    end_field();
    records.push_back(std::move(record));
    starts.push_back(record_line);
    record.clear();
  };
  for (size_t i = 0; i < text.size(); ++i) {
    const char ch = text[i];
    if (quoted) {
      if (ch == '"') {
        if (i + 1 < text.size() && text[i + 1] == '"') {
          field += '"';
          ++i;
        } else {
          quoted = false;
          after_quote = true;
        }
      } else {
        if (ch == '\n') ++line;
        field += ch;
      }
      continue;
    }
    if (ch == ',') {
      end_field();
    } else if (ch == '\n' || ch == '\r') {
      if (ch == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      end_record();
      record_line = ++line;
    } else if (ch == '"' && !field_started) {
      quoted = field_started = true;
    } else {
      if (after_quote && ch != ' ' && ch != '\t')
        fail("{}:{}: text after the closing quote of field {}", t.origin_, line, record.size() + 1);
      if (!after_quote) field += ch;
      field_started = true;
    }
  }
  if (quoted) fail("{}:{}: a quoted field is never closed", t.origin_, record_line);
  if (field_started || !record.empty()) end_record();
  if (records.empty()) fail("{}: empty CSV file (no header row)", t.origin_);
  t.header_ = std::move(records[0]);
  for (auto& h : t.header_) h = std::string(trim(h));
  // Blank lines are no records (common at the end of files), except inside a one-column table,
  // where a blank line is a row whose only cell is empty.
  size_t end = records.size();
  while (end > 1 && blank[end - 1]) --end;
  for (size_t r = 1; r < end; ++r) {
    if (blank[r] && t.header_.size() > 1) continue;
    if (records[r].size() != t.header_.size())
      fail("{}:{}: {} fields, but the header has {} columns", t.origin_, starts[r], records[r].size(), t.header_.size());
    t.rows_.push_back(std::move(records[r]));
    t.lines_.push_back(starts[r]);
  }
  return t;
}

std::optional<size_t> CsvTable::find_column(std::string_view name) const {
  for (size_t i = 0; i < header_.size(); ++i)
    if (header_[i] == name) return i;
  return std::nullopt;
}

size_t CsvTable::column(std::string_view name) const {
  if (auto i = find_column(name)) return *i;
  fail("{}:1: no column \"{}\" (the header has: {})", origin_, name, join(header_));
}

const std::string& CsvTable::cell(size_t row, size_t col) const {
  if (row >= rows_.size() || col >= header_.size())
    fail("{}: cell ({}, {}) is outside the table ({} rows, {} columns)", origin_, row, col, rows_.size(), header_.size());
  return rows_[row][col];
}

std::string CsvTable::where(size_t row) const {
  return row < lines_.size() ? fmt::format("{}:{}", origin_, lines_[row]) : origin_;
}

int64_t CsvTable::integer(size_t row, size_t col) const {
  const std::string_view text = trim(cell(row, col));
  int64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty())
    fail("{}: column {}: expected an integer, got \"{}\"", where(row), header_[col], cell(row, col));
  return value;
}

double CsvTable::number(size_t row, size_t col) const { return number(row, col, false); }

double CsvTable::number(size_t row, size_t col, bool allow_missing) const {
  const std::string_view text = trim(cell(row, col));
  if (allow_missing && (text.empty() || text == "NaN" || text == "nan")) return std::nan("");
  double value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty() || !std::isfinite(value))
    fail("{}: column {}: expected a number, got \"{}\"", where(row), header_[col], cell(row, col));
  return value;
}

std::vector<double> CsvTable::numbers(size_t row, size_t col, size_t expected) const {
  std::vector<double> out;
  std::string_view rest = cell(row, col);
  while (true) {
    const size_t comma = rest.find(',');
    const std::string_view item = trim(rest.substr(0, comma));
    double value = 0;
    const auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), value);
    if (item.empty() || ec != std::errc() || end != item.data() + item.size())
      fail("{}: column {}: expected comma-separated numbers, got \"{}\"", where(row), header_[col], cell(row, col));
    if (!std::isfinite(value))  // from_chars reads "nan" and "inf" as numbers
      fail("{}: column {}: expected finite numbers, got \"{}\"", where(row), header_[col], cell(row, col));
    out.push_back(value);
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  if (expected && out.size() != expected)
    fail("{}: column {}: expected {} numbers, got {} (\"{}\")", where(row), header_[col], expected, out.size(),
         cell(row, col));
  return out;
}

}  // namespace facet
