#include "core/safetensors_header.h"

#include "core/error.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <set>
#include <tuple>

namespace facet::safetensors {
namespace {

using json = nlohmann::json;

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// A JSON value for an error message, cut short: a hostile header can hold megabytes in one value.
std::string brief(const json& v) {
  std::string s = v.dump();
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return s;
}

// Non-negative integer from JSON, or an error naming what it was for.
uint64_t as_count(const json& v, std::string_view origin, const std::string& what) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer() && v.get<int64_t>() >= 0) return static_cast<uint64_t>(v.get<int64_t>());
  fail("{}: {}: expected a non-negative integer, got {}", origin, what, brief(v));
}

struct Dtype {
  std::string_view name;
  int bits;
};

// The reference's Dtype enum in declaration order (safetensors tensor.rs), with bits per element.
// clang-format off
constexpr std::array<Dtype, 22> kDtypes = {{
    {"BOOL", 8}, {"F4", 4}, {"F6_E2M3", 6}, {"F6_E3M2", 6}, {"U8", 8}, {"I8", 8},
    {"F8_E5M2", 8}, {"F8_E4M3", 8}, {"F8_E8M0", 8}, {"F8_E4M3FNUZ", 8}, {"F8_E5M2FNUZ", 8},
    {"I16", 16}, {"U16", 16}, {"F16", 16}, {"BF16", 16}, {"I32", 32}, {"U32", 32}, {"F32", 32},
    {"C64", 64}, {"F64", 64}, {"I64", 64}, {"U64", 64},
}};
// clang-format on

const Dtype* find_dtype(std::string_view name) {
  for (const auto& d : kDtypes)
    if (d.name == name) return &d;
  fail("unknown dtype \"{}\"", name);
}

int dtype_bits(std::string_view name) { return find_dtype(name)->bits; }

}  // namespace

size_t dtype_size(std::string_view dtype) {
  const int bits = dtype_bits(dtype);
  if (bits % 8 != 0) fail("dtype {} packs several values per byte, which Facet does not read", dtype);
  return static_cast<size_t>(bits / 8);
}

int dtype_order(std::string_view dtype) { return static_cast<int>(find_dtype(dtype) - kDtypes.begin()); }

namespace {

// What a file that failed to parse as safetensors is, from its first bytes, when it is a format a
// user might hand over by mistake: "" otherwise. (Only asked after a failure: a valid header size
// may begin with any bytes.)
std::string other_format(std::span<const uint8_t> bytes) {
  const auto starts = [&](std::string_view magic) {
    return bytes.size() >= magic.size() && std::equal(magic.begin(), magic.end(), bytes.begin(),
                                                      [](char a, uint8_t b) { return static_cast<uint8_t>(a) == b; });
  };
  if (starts("PK\x03\x04"))
    return "a ZIP archive, as torch.save writes (.pt, .bin): convert it with tools/convert_pickle_to_safetensors.py";
  if (starts("\x80\x02") || starts("\x80\x04") || starts("\x80\x05"))
    return "a Python pickle: convert it with tools/convert_pickle_to_safetensors.py";
  if (starts("\x89PNG")) return "a PNG image";
  if (starts("\xff\xd8\xff")) return "a JPEG image";
  if (starts("\x89HDF")) return "an HDF5 file";
  if (starts("{")) return "JSON text (an index of shards is model.safetensors.index.json)";
  return "";
}

}  // namespace

Header parse_header(std::span<const uint8_t> bytes, std::string_view origin) {
  const auto check = [&](bool ok, const std::string& problem) {
    if (ok) return;
    if (const std::string other = other_format(bytes); !other.empty()) fail("{}: not a safetensors file; it is {}", origin, other);
    fail("{}: {}", origin, problem);
  };
  check(bytes.size() >= 8, fmt::format("{} bytes is too short for a safetensors file (no header size)", bytes.size()));
  const uint64_t n = read_u64_le(bytes.data());
  check(n <= kMaxHeaderSize, fmt::format("header size {} exceeds the {} byte limit", n, kMaxHeaderSize));
  check(n <= bytes.size() - 8, fmt::format("header size {} runs past the end of the file ({} bytes)", n, bytes.size()));
  // The format requires '{' first; the reference parser (0.8) also skips leading spaces, but no writer
  // produces them and a strict first byte keeps the header unambiguous.
  check(n != 0 && bytes[8] == '{', "the header is not a JSON object (it must start with '{')");
  const std::string_view text(reinterpret_cast<const char*>(bytes.data() + 8), n);
  // nlohmann stops at a NUL byte as at the end of input, which would accept junk after it; the
  // reference rejects it (JSON has no raw NUL, not even inside strings).
  if (const size_t nul = text.find('\0'); nul != std::string_view::npos)
    fail("{}: the header is not valid JSON: NUL byte at offset {}", origin, 8 + nul);

  // The format forbids duplicate keys. nlohmann silently keeps the last one (the reference keeps some
  // too, e.g. inside __metadata__): reject them all, so that no file can mean two things.
  std::vector<std::set<std::string>> seen;
  std::string duplicate;
  const json::parser_callback_t track_keys = [&](int, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start)
      seen.emplace_back();
    else if (event == json::parse_event_t::object_end && !seen.empty())
      seen.pop_back();
    else if (event == json::parse_event_t::key && !seen.empty() &&
             !seen.back().insert(parsed.get<std::string>()).second && duplicate.empty())
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
      if (value.is_null()) continue;  // the reference reads null as "no metadata"
      if (!value.is_object()) fail("{}: __metadata__ must be an object of strings", origin);
      for (const auto& [k, v] : value.items()) {
        if (!v.is_string()) fail("{}: __metadata__.{}: expected a string, got {}", origin, k, brief(v));
        header.metadata[k] = v.get<std::string>();
      }
      continue;
    }
    if (!value.is_object()) fail("{}: tensor \"{}\": expected an object, got {}", origin, name, brief(value));
    TensorEntry t;
    t.name = name;
    const auto dtype = value.find("dtype"), shape = value.find("shape"), offsets = value.find("data_offsets");
    if (dtype == value.end() || !dtype->is_string())
      fail("{}: tensor \"{}\": missing or non-string dtype", origin, name);
    if (shape == value.end() || !shape->is_array())
      fail("{}: tensor \"{}\": missing or non-list shape", origin, name);
    if (offsets == value.end() || !offsets->is_array() || offsets->size() != 2)
      fail("{}: tensor \"{}\": data_offsets must be [begin, end]", origin, name);
    t.dtype = dtype->get<std::string>();
    int bits = 0;
    try {
      bits = dtype_bits(t.dtype);
    } catch (const Error& e) {
      fail("{}: tensor \"{}\": {}", origin, name, e.what());
    }
    uint64_t numel = 1, span = 1;  // span: the product with zeros read as ones, which torch's strides must fit
    for (const auto& d : *shape) {
      const uint64_t dim = as_count(d, origin, fmt::format("tensor \"{}\" shape", name));
      // The reference allows a huge dim when another is 0; a torch size must fit int64.
      if (dim > static_cast<uint64_t>(INT64_MAX))
        fail("{}: tensor \"{}\": dimension {} does not fit a signed 64-bit size", origin, name, dim);
      if (__builtin_mul_overflow(numel, dim, &numel))
        fail("{}: tensor \"{}\": the number of elements overflows", origin, name);
      if (__builtin_mul_overflow(span, std::max<uint64_t>(dim, 1), &span) || span > static_cast<uint64_t>(INT64_MAX))
        fail("{}: tensor \"{}\": shape {} has strides beyond a signed 64-bit size", origin, name, brief(*shape));
      t.shape.push_back(static_cast<int64_t>(dim));
    }
    t.begin = as_count((*offsets)[0], origin, fmt::format("tensor \"{}\" data_offsets", name));
    t.end = as_count((*offsets)[1], origin, fmt::format("tensor \"{}\" data_offsets", name));
    if (t.end < t.begin)
      fail("{}: tensor \"{}\": data_offsets end {} before begin {}", origin, name, t.end, t.begin);
    uint64_t total_bits = 0;
    if (__builtin_mul_overflow(numel, static_cast<uint64_t>(bits), &total_bits))
      fail("{}: tensor \"{}\": the byte size overflows", origin, name);
    // Sub-byte dtypes (F4, F6) pack values; a tensor must still end on a byte boundary.
    if (total_bits % 8 != 0)
      fail("{}: tensor \"{}\": {} values of {} do not fill a whole number of bytes", origin, name, numel,
           t.dtype);
    const uint64_t expected = total_bits / 8;
    if (t.end - t.begin != expected)
      fail("{}: tensor \"{}\": {} bytes in data_offsets, but {} × shape {} needs {}", origin, name,
           t.end - t.begin, t.dtype, brief(*shape), expected);
    header.tensors.push_back(std::move(t));
  }

  // The tensors must tile the buffer exactly: no holes, no overlap, nothing after the last one.
  std::sort(header.tensors.begin(), header.tensors.end(), [](const TensorEntry& a, const TensorEntry& b) {
    return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
  });
  uint64_t position = 0;
  for (const auto& t : header.tensors) {
    if (t.begin != position)
      fail("{}: tensor \"{}\": data starts at byte {} of the buffer, expected {} ({})", origin, t.name,
           t.begin, position, t.begin < position ? "overlaps the previous tensor" : "leaves a hole");
    position = t.end;
  }
  const uint64_t buffer = bytes.size() - header.data_start;
  if (position != buffer)
    fail("{}: the tensors cover {} bytes but the data buffer has {} ({})", origin, position, buffer,
         position < buffer ? "trailing bytes" : "the file is truncated");
  return header;
}

std::string serialize_header(const std::vector<TensorEntry>& tensors,
                             const std::map<std::string, std::string>& metadata, std::string_view origin) {
  // Compact JSON in the reference writer's order: __metadata__ first, then the tensors in file
  // order, each as {"dtype", "shape", "data_offsets"}. nlohmann escapes strings as serde_json does
  // (short escapes, \u00XX for other control bytes, UTF-8 kept). The reference keeps metadata in a
  // hash map, so only files with at most one metadata key can be byte-identical; ours are sorted.
  std::string body = "{";
  try {
    if (!metadata.empty()) body += "\"__metadata__\":" + json(metadata).dump() + ",";
    for (const auto& t : tensors) {
      body += json(t.name).dump() + ":{\"dtype\":" + json(t.dtype).dump() +
              ",\"shape\":" + json(t.shape).dump() + ",\"data_offsets\":[" + std::to_string(t.begin) + "," +
              std::to_string(t.end) + "]},";
    }
  } catch (const json::exception& e) {
    fail("{}: a tensor name or metadata entry is not valid UTF-8 ({})", origin, e.what());
  }
  if (body.back() == ',') body.pop_back();
  body += "}";
  body.append((8 - body.size() % 8) % 8, ' ');  // the data buffer starts 8-aligned
  std::string out(8, '\0');
  uint64_t n = body.size();
  for (int i = 0; i < 8; ++i) out[static_cast<size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xFF);
  return out + body;
}

std::map<std::string, std::set<std::string>> parse_index(std::string_view json_text, std::string_view origin) {
  json index;
  try {
    index = json::parse(json_text.begin(), json_text.end());
  } catch (const json::exception& e) {
    fail("{}: not a valid JSON index: {}", origin, e.what());
  }
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
    fail("{}: a sharded index needs a \"weight_map\" object", origin);
  std::map<std::string, std::set<std::string>> shards;
  for (const auto& [tensor, shard] : index["weight_map"].items()) {
    if (!shard.is_string()) fail("{}: weight_map.{}: expected a shard file name", origin, tensor);
    std::string file = shard.get<std::string>();
    // A name from the internet must not reach outside the checkpoint's folder.
    if (file.empty() || file.find('/') != std::string::npos || file.find('\\') != std::string::npos || file == "." ||
        file == ".." || file.find('\0') != std::string::npos)
      fail("{}: weight_map.{}: shard \"{}\" must be a file beside the index", origin, tensor, file);
    shards[std::move(file)].insert(tensor);
  }
  return shards;
}

}  // namespace facet::safetensors
