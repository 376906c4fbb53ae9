#include "data/npy.h"

#include "core/error.h"
#include "core/file_io.h"

#include <cstring>
#include <limits>

namespace facet::data {

namespace {

// The header is a Python dict literal: {'descr': '<f4', 'fortran_order': False, 'shape': (212,), }
class HeaderParser {
 public:
  HeaderParser(std::string_view text, const std::string& origin) : s_(text), origin_(origin) {}

  void parse(NpyArray& out, bool& fortran, bool& have_descr, bool& have_order, bool& have_shape) {
    skip();
    expect('{');
    while (true) {
      skip();
      if (peek() == '}') break;
      const std::string key = quoted();
      skip();
      expect(':');
      skip();
      if (key == "descr") {
        out.dtype = quoted();
        have_descr = true;
      } else if (key == "fortran_order") {
        fortran = boolean();
        have_order = true;
      } else if (key == "shape") {
        out.shape = tuple();
        have_shape = true;
      } else {
        fail("{}: .npy header: unexpected key '{}'", origin_, key);
      }
      skip();
      if (peek() == ',') {
        ++at_;
        continue;
      }
      skip();
      if (peek() != '}') fail("{}: .npy header: expected ',' or '}}' at byte {}", origin_, at_);
    }
  }

 private:
  char peek() const {
    if (at_ >= s_.size()) fail("{}: .npy header ends early", origin_);
    return s_[at_];
  }
  void skip() {
    while (at_ < s_.size() && (s_[at_] == ' ' || s_[at_] == '\t')) ++at_;
  }
  void expect(char c) {
    if (peek() != c) fail("{}: .npy header: expected '{}' at byte {}", origin_, c, at_);
    ++at_;
  }
  std::string quoted() {
    const char q = peek();
    if (q != '\'' && q != '"') fail("{}: .npy header: expected a quoted string at byte {}", origin_, at_);
    const size_t end = s_.find(q, at_ + 1);
    if (end == std::string_view::npos) fail("{}: .npy header: unterminated string", origin_);
    std::string out(s_.substr(at_ + 1, end - at_ - 1));
    at_ = end + 1;
    return out;
  }
  bool boolean() {
    if (s_.substr(at_, 4) == "True") return at_ += 4, true;
    if (s_.substr(at_, 5) == "False") return at_ += 5, false;
    fail("{}: .npy header: expected True or False at byte {}", origin_, at_);
  }
  std::vector<int64_t> tuple() {
    expect('(');
    std::vector<int64_t> dims;
    while (true) {
      skip();
      if (peek() == ')') break;
      int64_t v = 0;
      size_t digits = 0;
      while (at_ < s_.size() && s_[at_] >= '0' && s_[at_] <= '9') {
        if (v > (std::numeric_limits<int64_t>::max() - 9) / 10) fail("{}: .npy header: dimension too large", origin_);
        v = v * 10 + (s_[at_++] - '0');
        ++digits;
      }
      if (digits == 0) fail("{}: .npy header: expected a dimension at byte {}", origin_, at_);
      if (s_.substr(at_, 1) == "L") ++at_;  // Python 2 long literals
      dims.push_back(v);
      skip();
      if (peek() == ',') ++at_;
      else if (peek() != ')') fail("{}: .npy header: expected ',' or ')' at byte {}", origin_, at_);
    }
    ++at_;
    return dims;
  }

  std::string_view s_;
  const std::string& origin_;
  size_t at_ = 0;
};

}  // namespace

NpyArray parse_npy(std::string_view bytes, const std::string& origin) {
  static constexpr std::string_view kMagic("\x93NUMPY", 6);
  if (bytes.size() < 10 || bytes.substr(0, 6) != kMagic) fail("{}: not a .npy file (no \\x93NUMPY magic)", origin);
  const auto major = static_cast<uint8_t>(bytes[6]);
  size_t header_len = 0, offset = 0;
  if (major == 1) {
    header_len = static_cast<uint8_t>(bytes[8]) | (size_t{static_cast<uint8_t>(bytes[9])} << 8);
    offset = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) fail("{}: .npy header ends early", origin);
    for (int i = 3; i >= 0; --i) header_len = (header_len << 8) | static_cast<uint8_t>(bytes[8 + static_cast<size_t>(i)]);
    offset = 12;
  } else {
    fail("{}: .npy format version {} is not supported (1, 2, 3)", origin, major);
  }
  if (header_len > bytes.size() - offset) fail("{}: .npy header length {} exceeds the file ({} bytes)", origin, header_len, bytes.size());
  std::string_view header = bytes.substr(offset, header_len);
  while (!header.empty() && (header.back() == '\n' || header.back() == ' ' || header.back() == '\0')) header.remove_suffix(1);

  NpyArray out;
  bool fortran = false, have_descr = false, have_order = false, have_shape = false;
  HeaderParser(header, origin).parse(out, fortran, have_descr, have_order, have_shape);
  if (!have_descr || !have_order || !have_shape)
    fail("{}: .npy header lacks {}", origin, !have_descr ? "'descr'" : !have_order ? "'fortran_order'" : "'shape'");
  if (fortran) fail("{}: Fortran-order .npy arrays are not supported (save with C order)", origin);
  size_t item = 0;
  if (out.dtype == "<f4" || out.dtype == "=f4") item = 4;
  else if (out.dtype == "<f8" || out.dtype == "=f8") item = 8;
  else fail("{}: .npy dtype '{}' is not supported (little-endian float32 '<f4' or float64 '<f8')", origin, out.dtype);

  size_t count = 1;
  for (int64_t d : out.shape) {
    if (d < 0) fail("{}: .npy shape has a negative dimension", origin);
    const auto u = static_cast<size_t>(d);
    if (u != 0 && count > std::numeric_limits<size_t>::max() / item / u)
      fail("{}: .npy shape is too large", origin);
    count *= u;
  }
  const size_t data_at = offset + header_len;
  const size_t available = bytes.size() - data_at;
  if (count * item != available)
    fail("{}: .npy data holds {} bytes, the shape and dtype need {}", origin, available, count * item);
  out.values.resize(count);
  const char* data = bytes.data() + data_at;
  for (size_t i = 0; i < count; ++i) {
    if (item == 4) {
      float v;
      std::memcpy(&v, data + i * 4, 4);
      out.values[i] = v;
    } else {
      std::memcpy(&out.values[i], data + i * 8, 8);
    }
  }
  return out;
}

NpyArray read_npy(const std::filesystem::path& path) { return parse_npy(read_file(path), path.string()); }

void write_npy(const std::filesystem::path& path, const std::vector<float>& values, const std::vector<int64_t>& shape) {
  int64_t count = 1;
  std::string tuple;  // Python's tuple literal: (), (212,), (2, 3)
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] < 0) fail("{}: write_npy: negative dimension {}", path.string(), shape[i]);
    count *= shape[i];
    tuple += (i ? ", " : "") + std::to_string(shape[i]);
  }
  if (shape.size() == 1) tuple += ",";
  if (count != static_cast<int64_t>(values.size()))
    fail("{}: write_npy: {} values for a shape of {}", path.string(), values.size(), count);
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + tuple + "), }";
  const size_t unpadded = 10 + header.size() + 1;  // magic, version, length, header, '\n'
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';
  std::string bytes = "\x93NUMPY";
  bytes += '\x01';
  bytes += '\x00';
  bytes += static_cast<char>(header.size() & 0xff);
  bytes += static_cast<char>((header.size() >> 8) & 0xff);
  bytes += header;
  static_assert(sizeof(float) == 4);
  bytes.append(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));  // little-endian host
  write_file_atomic(path, bytes);
}

}  // namespace facet::data
