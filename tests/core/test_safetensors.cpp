#include "core/error.h"
#include "core/file_io.h"
#include "core/safetensors.h"
#include "tests/support/paths.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <unistd.h>

namespace facet::safetensors::test_safetensors {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;

const fs::path kFixtures = test_support::source_path("tests/fixtures/safetensors");

fs::path temp_dir(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / ("facet_st_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// The same tensors as tools/golden/safetensors_golden.py expected().
TensorMap expected() {
  const auto base = torch::arange(6, torch::kFloat64).reshape({2, 3}) / 4 - 0.5;
  return {
      {"f64", base},
      {"f32", base.to(torch::kFloat32) * 3},
      {"f16", base.to(torch::kFloat16) * 5},
      {"bf16", base.to(torch::kBFloat16) * 7},
      {"i64", torch::arange(-3, 3, torch::kInt64) * 1'000'000'007},
      {"i32", torch::arange(-3, 3, torch::kInt32) * 100'003},
      {"i16", torch::arange(-3, 3, torch::kInt16) * 1'001},
      {"i8", torch::arange(-3, 3, torch::kInt8) * 11},
      {"u8", torch::arange(0, 250, 50, torch::kUInt8)},
      {"bool", torch::tensor({true, false, true, true})},
      {"scalar", torch::tensor(3.5f)},
      {"empty", torch::zeros({0, 3}, torch::kFloat32)},
      {"nested.name.weight", torch::ones({2, 2}, torch::kFloat32)},
  };
}

// The same tensors as safetensors_golden.py extra_dtypes().
TensorMap extra_dtypes() {
  const auto small = torch::tensor({-2.0f, -0.5f, 0.0f, 0.25f, 1.0f, 3.0f});
  return {
      {"u16", torch::tensor({0, 1, 1000, 40'000, 65'535}, torch::kInt64).to(torch::kUInt16)},
      {"u32", torch::tensor(
                  {int64_t{0}, int64_t{1}, int64_t{70'000}, (int64_t{1} << 31) + 5, (int64_t{1} << 32) - 1})
                  .to(torch::kUInt32)},
      {"u64", torch::tensor({int64_t{0}, int64_t{1}, int64_t{1} << 33, (int64_t{1} << 62) + 7, int64_t{-1}})
                  .view(torch::kUInt64)},
      {"c64", torch::view_as_complex(torch::arange(8, torch::kFloat32).reshape({4, 2}) - 3)},
      {"f8_e4m3", small.to(torch::kFloat8_e4m3fn)},
      {"f8_e5m2", small.to(torch::kFloat8_e5m2)},
      {"f8_e4m3fnuz", small.to(torch::kFloat8_e4m3fnuz)},
      {"f8_e5m2fnuz", small.to(torch::kFloat8_e5m2fnuz)},
  };
}

// The same as safetensors_golden.py escaped_names() and ESCAPED_METADATA.
TensorMap escaped_names() {
  const std::vector<std::string> names = {
      "quote\"",          "back\\slash", "tab\tnew\nline",
      "ctrl\x01\x1f",     "del\x7f",     "\u00fcn\u00efc\u00f6d\u00e9/\u00f8",
      "\xF0\x9F\x98\x80",
  };
  TensorMap out;
  for (size_t i = 0; i < names.size(); ++i) out[names[i]] = torch::full({2}, static_cast<double>(i));
  return out;
}
const Metadata kEscapedMetadata = {{"note", "a \"quoted\" \\ line\nwith \x02 and \u00e9"}};

std::string bytes_of(const torch::Tensor& t) {
  const auto c = t.contiguous();
  return {static_cast<const char*>(c.data_ptr()), static_cast<size_t>(c.nbytes())};
}

// Same names, dtypes, shapes and bytes (torch::equal lacks kernels for the unsigned and float8 types).
void expect_same(const TensorMap& got, const TensorMap& want) {
  ASSERT_EQ(got.size(), want.size());
  for (const auto& [name, w] : want) {
    ASSERT_TRUE(got.count(name)) << name;
    const auto& g = got.at(name);
    EXPECT_EQ(g.scalar_type(), w.scalar_type()) << name;
    EXPECT_EQ(g.sizes(), w.sizes()) << name;
    EXPECT_EQ(bytes_of(g), bytes_of(w)) << name;
  }
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// A file from a header text and `buffer` bytes; `size_field` overrides the header length prefix.
fs::path raw_file(const std::string& name, const std::string& header, const std::string& buffer,
                  std::optional<uint64_t> size_field = {}) {
  const fs::path p = temp_dir("raw") / name;
  std::string bytes(8, '\0');
  const uint64_t n = size_field.value_or(header.size());
  for (int i = 0; i < 8; ++i) bytes[static_cast<size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xFF);
  write_file_atomic(p, bytes + header + buffer);
  return p;
}

TEST(Safetensors, ReadsEveryDtypeThePythonLibraryWrote) {
  const File f(kFixtures / "all_dtypes.safetensors");
  EXPECT_EQ(f.metadata().at("format"), "pt");
  expect_same(f.load_all(), expected());
  EXPECT_EQ(f.entry("scalar").shape.size(), 0u);
}

TEST(Safetensors, WritesByteForByteWhatThePythonLibraryWrites) {
  const fs::path out = temp_dir("bytes") / "facet.safetensors";
  save(out, expected());
  EXPECT_EQ(read_file(out), read_file(kFixtures / "all_dtypes.safetensors"));
}

TEST(Safetensors, UnsignedComplexAndFloat8MatchThePythonLibrary) {
  expect_same(load(kFixtures / "extra_dtypes.safetensors"), extra_dtypes());
  const fs::path out = temp_dir("extra") / "extra.safetensors";
  save(out, extra_dtypes(), {});
  EXPECT_EQ(read_file(out), read_file(kFixtures / "extra_dtypes.safetensors"));
  // F8_E8M0 is not in the Python library's torch mapping: a round trip through Facet only.
  const TensorMap e8m0 = {{"scale", torch::tensor({0.25f, 1.0f, 64.0f}).to(torch::kFloat8_e8m0fnu)}};
  save(out, e8m0);
  EXPECT_EQ(File(out).entry("scale").dtype, "F8_E8M0");
  expect_same(load(out), e8m0);
}

TEST(Safetensors, EscapesNamesAndMetadataAsTheReferenceWriter) {
  const fs::path out = temp_dir("escaped") / "escaped.safetensors";
  save(out, escaped_names(), kEscapedMetadata);
  EXPECT_EQ(read_file(out), read_file(kFixtures / "escaped_names.safetensors"));
  const File f(kFixtures / "escaped_names.safetensors");
  EXPECT_EQ(f.metadata(), kEscapedMetadata);
  expect_same(f.load_all(), escaped_names());
}

TEST(Safetensors, SavesNonContiguousTensorsAsTheirValues) {
  const auto t = torch::arange(12, torch::kFloat32).reshape({3, 4});
  const fs::path out = temp_dir("strided") / "strided.safetensors";
  save(out, {{"t", t.t()}, {"s", t.index({torch::indexing::Slice(), 1})}});
  const TensorMap back = load(out);
  EXPECT_TRUE(torch::equal(back.at("t"), t.t().contiguous()));
  EXPECT_TRUE(torch::equal(back.at("s"), torch::tensor({1.0f, 5.0f, 9.0f})));
}

TEST(Safetensors, WriterErrorsNameTheFile) {
  const fs::path out = temp_dir("writer") / "bad.safetensors";
  const auto bad_name = [&] { save(out, TensorMap{{"bad\xff", torch::zeros({1})}}); };
  const auto undefined = [&] { save(out, TensorMap{{"undefined", torch::Tensor()}}); };
  EXPECT_THAT(error_of(bad_name), AllOf(HasSubstr(out.string()), HasSubstr("not valid UTF-8")));
  EXPECT_THAT(error_of(undefined), HasSubstr("\"undefined\" is undefined"));
  EXPECT_FALSE(fs::exists(out));
}

TEST(Safetensors, PythonReadsWhatFacetWrote) {
  const fs::path dir = temp_dir("python");
  save(dir / "facet.safetensors", expected());
  save_sharded(dir / "sharded", expected(), 100);
  for (const auto& path : {dir / "facet.safetensors", dir / "sharded"}) {
    const std::string cmd = std::string(test_support::kPython) +
                            " " + test_support::source_path("tools/golden/check_safetensors.py") + " " + path.string();
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
}

TEST(Safetensors, ShardedRoundTripAndPythonWrittenShards) {
  const fs::path dir = temp_dir("sharded");
  save_sharded(dir, expected(), 64);
  EXPECT_TRUE(fs::exists(dir / "model.safetensors.index.json"));
  EXPECT_GT(open_checkpoint(dir).size(), 1u);
  expect_same(load(dir), expected());
  expect_same(load(dir / "model.safetensors.index.json"), expected());
  expect_same(load(kFixtures / "sharded"), expected());
  // One shard's worth: a plain file, no index.
  const fs::path single = temp_dir("single");
  save_sharded(single, expected(), 1 << 20);
  EXPECT_TRUE(fs::exists(single / "model.safetensors"));
  EXPECT_FALSE(fs::exists(single / "model.safetensors.index.json"));
  expect_same(load(single), expected());
}

TEST(Safetensors, ShardedIndexErrorsNameTheFiles) {
  const fs::path dir = temp_dir("bad_index");
  save_sharded(dir, expected(), 64);
  const fs::path index = dir / "model.safetensors.index.json";
  const std::string good_index = read_file(index);
  std::string ghost = good_index;
  ghost.replace(ghost.find("\"weight_map\": {"), 15,
                "\"weight_map\": {\"ghost\": \"model-00003-of-00005.safetensors\",");
  write_file_atomic(index, ghost);
  EXPECT_THAT(error_of([&] { load(dir); }),
              HasSubstr("model-00003-of-00005.safetensors: lacks \"ghost\", which " + index.string()));
  write_file_atomic(index, good_index);
  fs::remove(dir / "model-00002-of-00005.safetensors");
  EXPECT_THAT(error_of([&] { load(dir); }), HasSubstr("model-00002-of-00005.safetensors is missing"));
  write_file_atomic(dir / "model.safetensors.index.json",
                    "{\"weight_map\": {\"f32\": \"../x.safetensors\"}}");
  EXPECT_THAT(error_of([&] { load(dir); }), HasSubstr("must be a file beside the index"));
  write_file_atomic(dir / "model.safetensors.index.json",
                    "{\"weight_map\": {\"f32\": \"model-00001-of-00005.safetensors\"}}");
  EXPECT_THAT(error_of([&] { load(dir); }),
              HasSubstr("which " + (dir / "model.safetensors.index.json").string() + " assigns elsewhere"));
  EXPECT_THAT(error_of([&] { load(temp_dir("empty_dir")); }), HasSubstr("no model.safetensors"));
}

TEST(Safetensors, MalformedFilesAreErrorsNamingFileAndProblem) {
  const std::string ok_entry = R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  const std::string overlapping = R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]})";
  const std::string eight(8, '\0');
  // A header holding one tensor "a".
  const auto one = [](std::string_view dtype, std::string_view shape, std::string_view offsets) {
    return fmt::format(R"({{"a":{{"dtype":"{}","shape":{},"data_offsets":{}}}}})", dtype, shape, offsets);
  };
  struct Case {
    std::string name, header, buffer;
    std::optional<uint64_t> size;
    std::string message;
  };
  // clang-format off
  const std::vector<Case> cases = {
      {"too_large", "{}", "", uint64_t{200'000'000}, "exceeds the 100000000 byte limit"},
      {"past_end", "{}", "", uint64_t{1000}, "header size 1000 runs past the end of the file"},
      {"not_object", "[]", "", {}, "must start with '{'"},
      {"bad_json", "{\"a\":", "", {}, "the header is not valid JSON"},
      {"bad_utf8", "{\"\xff\":{}}", "", {}, "not valid JSON"},
      {"duplicate", "{" + ok_entry + "," + ok_entry + "}", eight, {}, "duplicate key \"a\""},
      {"metadata_type", R"({"__metadata__":{"x":1}})", "", {}, "__metadata__.x: expected a string"},
      {"unknown_dtype", one("F33", "[2]", "[0,8]"), eight, {}, "unknown dtype \"F33\""},
      {"negative_dim", one("F32", "[-2]", "[0,8]"), eight, {}, "expected a non-negative integer"},
      {"size_mismatch", one("F32", "[3]", "[0,8]"), eight, {}, "8 bytes in data_offsets, but F32"},
      {"reversed", one("F32", "[0]", "[8,0]"), eight, {}, "end 0 before begin 8"},
      {"overflow", one("F64", "[4294967296,4294967296]", "[0,8]"), eight, {}, "overflows"},
      {"hole", one("F32", "[2]", "[8,16]"), eight + eight, {}, "leaves a hole"},
      {"overlap", "{" + ok_entry + "," + overlapping + "}", eight, {}, "overlaps the previous tensor"},
      {"trailing", "{" + ok_entry + "}", eight + "x", {}, "trailing bytes"},
      {"truncated", "{" + ok_entry + "}", "1234", {}, "the file is truncated"},
      {"offsets_shape", one("F32", "[2]", "[0]"), eight, {}, "data_offsets must be [begin, end]"},
      {"missing_dtype", R"({"a":{"shape":[2],"data_offsets":[0,8]}})", eight, {}, "non-string dtype"},
      {"shape_not_list", one("F32", "2", "[0,8]"), eight, {}, "non-list shape"},
      {"float_dim", one("F32", "[2.0]", "[0,8]"), eight, {}, "got 2.0"},
      {"tensor_not_object", R"({"a":[1,2]})", "", {}, "tensor \"a\": expected an object, got [1,2]"},
      {"metadata_not_object", R"({"__metadata__":"pt"})", "", {}, "__metadata__ must be an object"},
      {"odd_f4", one("F4", "[3]", "[0,2]"), "12", {}, "3 values of F4 do not fill"},
      {"empty_header", "", "", {}, "must start with '{'"},
      {"leading_space", " {}", "", {}, "must start with '{'"},
      {"nul", std::string("{}\0 ", 4), "", {}, "NUL byte at offset 10"},  // nlohmann would stop there
      {"huge_dim", one("F32", "[0,9223372036854775808]", "[0,0]"), "", {}, "does not fit a signed 64-bit"},
      {"huge_empty", one("F32", "[0,4294967296,4294967296]", "[0,0]"), "", {}, "has strides beyond a signed 64-bit size"},
  };
  // clang-format on
  for (const auto& c : cases) {
    const fs::path p = raw_file(c.name + ".safetensors", c.header, c.buffer, c.size);
    const std::string message = error_of([&] { File f(p); });
    EXPECT_THAT(message, HasSubstr(p.string())) << c.name;
    EXPECT_THAT(message, HasSubstr(c.message)) << c.name;
  }
  const fs::path tiny = temp_dir("tiny") / "tiny.safetensors";
  write_file_atomic(tiny, "abc");
  EXPECT_THAT(error_of([&] { File f(tiny); }), HasSubstr("3 bytes is too short"));
  // Another format handed over by mistake is named, not read as a header size.
  const fs::path pt = temp_dir("other") / "model.pt", png = temp_dir("other") / "face.safetensors";
  write_file_atomic(pt, std::string("PK\x03\x04\x14\x00\x00\x00\x08\x00archive/data.pkl", 26));
  write_file_atomic(png, std::string("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", 16));
  EXPECT_THAT(error_of([&] { File f(pt); }),
              AllOf(HasSubstr(pt.string() + ": not a safetensors file; it is a ZIP archive, as torch.save writes"),
                    HasSubstr("tools/convert_pickle_to_safetensors.py")));
  EXPECT_THAT(error_of([&] { File f(png); }), HasSubstr(png.string() + ": not a safetensors file; it is a PNG image"));
}

TEST(Safetensors, AcceptsWhatTheReferenceAcceptsAtTheEdges) {
  // null metadata, zero-size tensors sharing an offset, 0-d scalars, unknown fields, packed F4.
  const fs::path p =
      raw_file("edges.safetensors",
               R"({"__metadata__":null,"e":{"dtype":"F32","shape":[0,4],"data_offsets":[0,0]},)"
               R"("s":{"dtype":"I16","shape":[],"data_offsets":[0,2],"extra":1},)"
               R"("q":{"dtype":"F4","shape":[2,2],"data_offsets":[2,4]}})",
               std::string("\x07\x00\x12\x34", 4));
  const File f(p);
  EXPECT_TRUE(f.metadata().empty());
  EXPECT_EQ(f.names(), (std::vector<std::string>{"e", "s", "q"}));
  EXPECT_EQ(f.tensor("s").item<int64_t>(), 7);
  EXPECT_EQ(f.tensor("e").sizes(), (std::vector<int64_t>{0, 4}));
  EXPECT_THAT(error_of([&] { f.tensor("q"); }),
              AllOf(HasSubstr(p.string()), HasSubstr("tensor \"q\": dtype F4 has no LibTorch equivalent")));
  EXPECT_THAT(error_of([&] { f.tensor("nope"); }), HasSubstr("no tensor named \"nope\""));
  EXPECT_THAT(error_of([] { dtype_size("F6_E2M3"); }), HasSubstr("packs several values per byte"));
  EXPECT_EQ(dtype_size("BF16"), 2u);
  EXPECT_LT(dtype_order("F32"), dtype_order("F64"));
}

TEST(Safetensors, EveryTruncationOfAValidFileIsAnErrorNotACrash) {
  const std::string bytes = read_file(kFixtures / "all_dtypes.safetensors");
  for (size_t n = 0; n < bytes.size(); ++n) {
    const std::span<const uint8_t> prefix(reinterpret_cast<const uint8_t*>(bytes.data()), n);
    EXPECT_THROW(parse_header(prefix, "truncated"), Error) << n;
  }
  // Flipping any single header byte either still parses or is an Error (never a crash).
  std::string copy = bytes;
  for (size_t i = 0; i < 200 && i < copy.size(); ++i) {
    copy[i] = static_cast<char>(copy[i] ^ 0x5A);
    try {
      parse_header({reinterpret_cast<const uint8_t*>(copy.data()), copy.size()}, "mutated");
    } catch (const Error&) {
    }
    copy[i] = bytes[i];
  }
}

struct Net : torch::nn::Module {
  Net() {
    fc = register_module("fc", torch::nn::Linear(3, 2));
    bn = register_module("bn", torch::nn::BatchNorm1d(2));
  }
  torch::nn::Linear fc{nullptr};
  torch::nn::BatchNorm1d bn{nullptr};
};

TEST(Safetensors, LoadsIntoAModuleInPlaceWithANameMap) {
  Net source, target;
  torch::NoGradGuard no_grad;
  for (auto& p : source.parameters()) p.uniform_();
  TensorMap file;
  for (const auto& [name, t] : state_dict(source)) file["model." + name] = t.clone();
  file["model.extra.position_ids"] = torch::arange(4);
  const auto* weight_before = target.fc->weight.unsafeGetTensorImpl();
  NameMap names;
  names.ignore = {R"(position_ids$)"};
  names.prefixes = {{"model.", ""}};
  const auto report = load_into(target, file, names, true, "ckpt.safetensors");
  EXPECT_TRUE(report.ok()) << report.summary();
  EXPECT_TRUE(torch::equal(target.fc->weight, source.fc->weight));
  EXPECT_TRUE(torch::equal(target.bn->running_mean, source.bn->running_mean));
  EXPECT_EQ(target.fc->weight.unsafeGetTensorImpl(), weight_before) << "copied in place, not replaced";
}

TEST(Safetensors, NameMapRulesApplyInOrder) {
  NameMap names;
  names.ignore = {R"(\.num_batches_tracked$)", "^text_model\\.embeddings\\.position_ids$"};
  names.prefixes = {{"model.", ""}, {"model.encoder.", "never."}};
  names.regexes = {{R"(\.gamma$)", ".weight"}, {R"(^layers\.(\d+)\.)", "blocks.$1."}};
  EXPECT_EQ(names.apply("model.layers.3.norm.gamma"), "blocks.3.norm.weight");
  EXPECT_EQ(names.apply("model.encoder.x"), "encoder.x") << "only the first matching prefix applies";
  EXPECT_EQ(names.apply("bn.num_batches_tracked"), std::nullopt);
  EXPECT_EQ(names.apply("text_model.embeddings.position_ids"), std::nullopt);
  names.custom = [](const std::string& n) -> std::optional<std::string> {
    if (n.starts_with("drop.")) return std::nullopt;
    return "net." + n;
  };
  EXPECT_EQ(names.apply("drop.me"), std::nullopt);
  EXPECT_EQ(names.apply("fc.weight"), "net.fc.weight");
  names.ignore = {"*.num_batches_tracked"};  // a glob, not a regex
  EXPECT_THAT(error_of([&] { names.apply("x"); }),
              HasSubstr("\"*.num_batches_tracked\" is not a valid regular expression"));
}

TEST(Safetensors, StrictLoadReportsMissingUnexpectedAndMismatched) {
  Net target;
  TensorMap file = state_dict(Net());
  file.erase("fc.bias");
  file["fc.weight"] = torch::zeros({5, 3});
  file["head.weight"] = torch::zeros({1});
  const std::string message = error_of([&] { load_into(target, file, {}, true, "ckpt.safetensors"); });
  EXPECT_THAT(message, HasSubstr("ckpt.safetensors: does not match the model"));
  EXPECT_THAT(message, HasSubstr("1 missing: fc.bias"));
  EXPECT_THAT(message, HasSubstr("1 unexpected: head.weight"));
  EXPECT_THAT(message, HasSubstr("fc.weight: module [2, 3], file [5, 3]"));
  const auto report = load_into(target, file, {}, false);
  EXPECT_FALSE(report.ok());
  EXPECT_EQ(report.loaded.size(), 5u);  // bn: weight, bias, running_mean, running_var, num_batches_tracked
}

}  // namespace
}  // namespace facet::safetensors::test_safetensors
