#include "core/safetensors_header.h"

#include "core/error.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <set>

namespace facet::safetensors {
namespace {

using json = nlohmann::json;

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// Non-negative integer from JSON, or an error naming what it was for.
uint64_t as_count(const json& v, std::string_view origin, const std::string& what) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer() && v.get<int64_t>() >= 0) return static_cast<uint64_t>(v.get<int64_t>());
  fail("{}: {}: expected a non-negative integer, got {}", origin, what, v.dump());
}

}  // namespace

size_t dtype_size(std::string_view dtype) {
  static const std::map<std::string_view, size_t> sizes = {
      {"BOOL", 1},       {"U8", 1},          {"I8", 1},           {"F8_E5M2", 1}, {"F8_E4M3", 1},
      {"F8_E8M0", 1},    {"F8_E4M3FNUZ", 1}, {"F8_E5M2FNUZ", 1},  {"I16", 2},     {"U16", 2},
      {"F16", 2},        {"BF16", 2},        {"I32", 4},          {"U32", 4},     {"F32", 4},
      {"C64", 8},        {"F64", 8},         {"I64", 8},          {"U64", 8}};
  auto it = sizes.find(dtype);
  if (it != sizes.end()) return it->second;
  if (dtype == "F4" || dtype == "F6_E2M3" || dtype == "F6_E3M2")
    fail("dtype {} packs several values per byte, which Facet does not read", dtype);
  fail("unknown dtype \"{}\"", dtype);
}

Header parse_header(std::span<const uint8_t> bytes, std::string_view origin) {
  if (bytes.size() < 8) fail("{}: {} bytes is too short for a safetensors file (no header size)", origin, bytes.size());
  const uint64_t n = read_u64_le(bytes.data());
  if (n > kMaxHeaderSize) fail("{}: header size {} exceeds the {} byte limit", origin, n, kMaxHeaderSize);
  if (n > bytes.size() - 8)
    fail("{}: header size {} runs past the end of the file ({} bytes)", origin, n, bytes.size());
  if (n == 0 || bytes[8] != '{') fail("{}: the header is not a JSON object (it must start with '{{')", origin);
  const std::string_view text(reinterpret_cast<const char*>(bytes.data() + 8), n);

  // nlohmann keeps the last of duplicate keys silently; the reference parser rejects them.
  std::vector<std::set<std::string>> seen;
  std::string duplicate;
  const json::parser_callback_t track_keys = [&](int, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start) seen.emplace_back();
    else if (event == json::parse_event_t::object_end && !seen.empty()) seen.pop_back();
    else if (event == json::parse_event_t::key && !seen.empty() && !seen.back().insert(parsed.get<std::string>()).second &&
             duplicate.empty())
      duplicate = parsed.get<std::string>();
    return true;
  };
  json root;
  try {
    root = json::parse(text.begin(), text.end(), track_keys);
  } catch (const json::exception& e) {
    fail("{}: the header is not valid JSON: {}", origin, e.what());
  }
  if (!duplicate.empty()) fail("{}: duplicate key \"{}\" in the header", origin, duplicate);
  if (!root.is_object()) fail("{}: the header is not a JSON object", origin);

  Header header;
  header.data_start = 8 + n;
  for (const auto& [name, value] : root.items()) {
    if (name == "__metadata__") {
      if (!value.is_object()) fail("{}: __metadata__ must be an object of strings", origin);
      for (const auto& [k, v] : value.items()) {
        if (!v.is_string()) fail("{}: __metadata__.{}: expected a string, got {}", origin, k, v.dump());
        header.metadata[k] = v.get<std::string>();
      }
      continue;
    }
    if (!value.is_object()) fail("{}: tensor \"{}\": expected an object, got {}", origin, name, value.dump());
    TensorEntry t;
    t.name = name;
    const auto dtype = value.find("dtype"), shape = value.find("shape"), offsets = value.find("data_offsets");
    if (dtype == value.end() || !dtype->is_string()) fail("{}: tensor \"{}\": missing or non-string dtype", origin, name);
    if (shape == value.end() || !shape->is_array()) fail("{}: tensor \"{}\": missing or non-list shape", origin, name);
    if (offsets == value.end() || !offsets->is_array() || offsets->size() != 2)
      fail("{}: tensor \"{}\": data_offsets must be [begin, end]", origin, name);
    t.dtype = dtype->get<std::string>();
    size_t element_size = 0;
    try {
      element_size = dtype_size(t.dtype);
    } catch (const Error& e) {
      fail("{}: tensor \"{}\": {}", origin, name, e.what());
    }
    uint64_t numel = 1;
    for (const auto& d : *shape) {
      const uint64_t dim = as_count(d, origin, fmt::format("tensor \"{}\" shape", name));
      if (dim > static_cast<uint64_t>(INT64_MAX) || __builtin_mul_overflow(numel, dim, &numel))
        fail("{}: tensor \"{}\": the number of elements overflows", origin, name);
      t.shape.push_back(static_cast<int64_t>(dim));
    }
    t.begin = as_count((*offsets)[0], origin, fmt::format("tensor \"{}\" data_offsets", name));
    t.end = as_count((*offsets)[1], origin, fmt::format("tensor \"{}\" data_offsets", name));
    if (t.end < t.begin) fail("{}: tensor \"{}\": data_offsets end {} before begin {}", origin, name, t.end, t.begin);
    uint64_t expected = 0;
    if (__builtin_mul_overflow(numel, static_cast<uint64_t>(element_size), &expected))
      fail("{}: tensor \"{}\": the byte size overflows", origin, name);
    if (t.end - t.begin != expected)
      fail("{}: tensor \"{}\": {} bytes in data_offsets, but {} × shape {} needs {}", origin, name, t.end - t.begin,
           t.dtype, shape->dump(), expected);
    header.tensors.push_back(std::move(t));
  }

  // The tensors must tile the buffer exactly: no holes, no overlap, nothing after the last one.
  std::sort(header.tensors.begin(), header.tensors.end(),
            [](const TensorEntry& a, const TensorEntry& b) { return std::tie(a.begin, a.end) < std::tie(b.begin, b.end); });
  uint64_t position = 0;
  for (const auto& t : header.tensors) {
    if (t.begin != position)
      fail("{}: tensor \"{}\": data starts at byte {} of the buffer, expected {} ({})", origin, t.name, t.begin, position,
           t.begin < position ? "overlaps the previous tensor" : "leaves a hole");
    position = t.end;
  }
  const uint64_t buffer = bytes.size() - header.data_start;
  if (position != buffer)
    fail("{}: the tensors cover {} bytes but the data buffer has {} ({})", origin, position, buffer,
         position < buffer ? "trailing bytes" : "the file is truncated");
  return header;
}

std::string serialize_header(const std::vector<TensorEntry>& tensors, const std::map<std::string, std::string>& metadata) {
  // Compact JSON in the reference writer's order: __metadata__ first, then the tensors in file
  // order, each as {"dtype", "shape", "data_offsets"}.
  std::string body = "{";
  if (!metadata.empty()) body += "\"__metadata__\":" + json(metadata).dump() + ",";
  for (const auto& t : tensors) {
    body += json(t.name).dump() + ":{\"dtype\":" + json(t.dtype).dump() + ",\"shape\":" + json(t.shape).dump() +
            ",\"data_offsets\":[" + std::to_string(t.begin) + "," + std::to_string(t.end) + "]},";
  }
  if (body.back() == ',') body.pop_back();
  body += "}";
  body.append((8 - body.size() % 8) % 8, ' ');  // the data buffer starts 8-aligned
  std::string out(8, '\0');
  uint64_t n = body.size();
  for (int i = 0; i < 8; ++i) out[static_cast<size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xFF);
  return out + body;
}

}  // namespace facet::safetensors
