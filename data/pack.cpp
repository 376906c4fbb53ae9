#include "data/pack.h"

#include "core/file_io.h"
#include "data/sampler.h"
#include "data/transform.h"

#include <fcntl.h>
#include <hdf5.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <charconv>
#include <map>
#include <mutex>
#include <optional>
#include <set>

namespace facet::data {
namespace {

namespace fs = std::filesystem;

// 2: ids are fixed-length strings. Version 1 stored them variable-length, which HDF5 keeps in a
// global heap whose reader (libhdf5 1.10.8's H5HG_read) overflows or hangs on a damaged file (found
// by tests/fuzz/fuzz_pack); fixed-length strings never touch it.
constexpr int kPackVersion = 2;

// Keys of the data node that do not change what a sample holds: the loader's and the trainer's.
const std::set<std::string> kLoaderKeys = {"batch_size",      "eval_batch_size", "workers",    "prefetch",
                                                 "transforms",      "eval_transforms", "on_error",   "pack",
                                                 "sampler",         "train_split",     "eval_split", "test_split"};
// Where the original files lie, which neither: a pack copied to another machine is the same pack.
// The dataset's reader reads it, so training from a pack marks it read with the reader's options.
const std::set<std::string> kLocation = {"root"};

// A data node as the preprocessing it describes: its YAML minus the keys that do not shape a sample,
// map keys sorted so that the order a file lists them does not matter. Applied to the text a pack
// stores too, so a pack written when more keys counted still matches.
std::string canonical_preprocessing(const YAML::Node& node) {
  std::function<void(YAML::Emitter&, const YAML::Node&)> emit = [&](YAML::Emitter& out, const YAML::Node& n) {
    if (n.IsMap()) {
      std::map<std::string, YAML::Node> sorted;
      for (const auto& kv : n) sorted.emplace(kv.first.as<std::string>(), kv.second);
      out << YAML::BeginMap;
      for (const auto& [k, v] : sorted) {
        out << YAML::Key << k << YAML::Value;
        emit(out, v);
      }
      out << YAML::EndMap;
    } else if (n.IsSequence()) {
      out << YAML::BeginSeq;
      for (const auto& v : n) emit(out, v);
      out << YAML::EndSeq;
    } else if (n.IsNull()) {
      out << YAML::Null;
    } else {
      out << n.as<std::string>();
    }
  };
  YAML::Node kept(YAML::NodeType::Map);
  for (const auto& kv : node) {
    const std::string key = kv.first.as<std::string>();
    if (!kLoaderKeys.count(key) && !kLocation.count(key)) kept[key] = kv.second;
  }
  YAML::Emitter out;
  emit(out, kept);
  return out.c_str();
}

// Every scalar of a YAML tree by dotted key, to name what differs between two preprocessings.
void flatten_yaml(const YAML::Node& n, const std::string& key, std::map<std::string, std::string>& out) {
  if (n.IsMap()) {
    for (const auto& kv : n) flatten_yaml(kv.second, (key.empty() ? "" : key + ".") + kv.first.as<std::string>(), out);
  } else if (n.IsSequence()) {
    for (size_t i = 0; i < n.size(); ++i) flatten_yaml(n[i], fmt::format("{}[{}]", key, i), out);
    if (n.size() == 0) out[key] = "[]";
  } else {
    out[key] = n.IsNull() ? "~" : n.as<std::string>();
  }
}

// "  data.image_size: 224 in the pack, 256 in the config" for each key that differs.
std::string preprocessing_differences(const std::string& pack_yaml, const std::string& config_yaml) {
  std::map<std::string, std::string> pack, config;
  flatten_yaml(YAML::Load(pack_yaml), "", pack);
  flatten_yaml(YAML::Load(config_yaml), "", config);
  std::set<std::string> keys;
  for (const auto& [k, v] : pack) keys.insert(k);
  for (const auto& [k, v] : config) keys.insert(k);
  std::string lines;
  for (const auto& k : keys) {
    const auto a = pack.find(k), b = config.find(k);
    const std::string was = a == pack.end() ? "(absent)" : a->second, is = b == config.end() ? "(absent)" : b->second;
    if (was != is) lines += fmt::format("\n  data.{}: {} in the pack, {} in the config", k, was, is);
  }
  return lines;
}

// Whether the pack's stored preprocessing (the YAML it was written with) is the one `expected`
// describes; the differing keys otherwise.
std::optional<std::string> preprocessing_mismatch(const std::string& stored_yaml, const Preprocess& expected) {
  try {
    const std::string stored = canonical_preprocessing(YAML::Load(stored_yaml));
    if (stored == expected.yaml) return std::nullopt;
    return preprocessing_differences(stored, expected.yaml);
  } catch (const YAML::Exception& e) {  // a damaged file
    return fmt::format(" the pack's recorded preprocessing is not readable ({})", e.what());
  }
}

// An HDF5 handle closed on scope exit.
class Handle {
 public:
  Handle() = default;
  Handle(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  Handle(Handle&& o) noexcept : id_(std::exchange(o.id_, H5I_INVALID_HID)), close_(o.close_) {}
  Handle& operator=(Handle&& o) noexcept {
    std::swap(id_, o.id_);
    std::swap(close_, o.close_);
    return *this;
  }
  ~Handle() {
    if (id_ >= 0 && close_) close_(id_);
  }
  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }

 private:
  hid_t id_ = H5I_INVALID_HID;
  herr_t (*close_)(hid_t) = nullptr;
};

void fsync_path(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0 || ::fsync(fd) != 0) {
    if (fd >= 0) ::close(fd);
    fail("{}: fsync failed", path.string());
  }
  ::close(fd);
}

// HDF5 prints its own error stack to stderr by default; Facet reports errors itself. Checked
// here too, once: whether this libhdf5 was built thread-safe (Debian's is: one global lock inside).
// A build that is not gets Facet's own lock around every HDF5 call of this file (hdf5_guard), as the
// loader's workers read a pack concurrently.
bool hdf5_threadsafe = true;
void quiet_hdf5() {
  static std::once_flag once;
  std::call_once(once, [] {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    hbool_t threadsafe = 0;
    hdf5_threadsafe = H5is_library_threadsafe(&threadsafe) >= 0 && threadsafe;
  });
}

std::unique_lock<std::mutex> hdf5_guard() {
  static std::mutex mutex;
  quiet_hdf5();
  return hdf5_threadsafe ? std::unique_lock<std::mutex>() : std::unique_lock<std::mutex>(mutex);
}

hid_t check(hid_t id, const fs::path& file, std::string_view what) {
  if (id < 0) fail("{}: HDF5 could not {}", file.string(), what);
  return id;
}

struct TypeInfo {
  hid_t h5;
  torch::ScalarType torch;
  const char* name;
};

const TypeInfo& type_of(torch::ScalarType t, const fs::path& file, std::string_view field) {
  static const std::vector<TypeInfo> types = {
      {H5T_NATIVE_FLOAT, torch::kFloat, "float32"}, {H5T_NATIVE_DOUBLE, torch::kDouble, "float64"},
      {H5T_NATIVE_INT64, torch::kInt64, "int64"},   {H5T_NATIVE_INT32, torch::kInt32, "int32"},
      {H5T_NATIVE_INT16, torch::kInt16, "int16"},   {H5T_NATIVE_UINT8, torch::kUInt8, "uint8"},
      {H5T_NATIVE_UINT8, torch::kBool, "bool"},     {H5T_NATIVE_INT8, torch::kInt8, "int8"}};
  for (const auto& ti : types)
    if (ti.torch == t) return ti;
  fail("{}: field \"{}\": dtype {} cannot be packed", file.string(), field, c10::toString(t));
}

const TypeInfo& type_named(const std::string& name, const fs::path& file, std::string_view field) {
  for (auto t : {torch::kFloat, torch::kDouble, torch::kInt64, torch::kInt32, torch::kInt16, torch::kUInt8, torch::kBool,
                 torch::kInt8})
    if (type_of(t, file, field).name == name) return type_of(t, file, field);
  fail("{}: field \"{}\": unknown stored dtype \"{}\"", file.string(), field, name);
}

void write_string_attribute(hid_t object, const char* name, const std::string& value, const fs::path& file) {
  Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type.get(), std::max<size_t>(1, value.size()));
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle attr(check(H5Acreate2(object, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT), file,
                    fmt::format("create attribute {}", name)),
              H5Aclose);
  std::string padded = value.empty() ? std::string(1, '\0') : value;
  if (H5Awrite(attr.get(), type.get(), padded.data()) < 0) fail("{}: HDF5 could not write attribute {}", file.string(), name);
}

std::string read_string_attribute(hid_t object, const char* name, const fs::path& file) {
  if (H5Aexists(object, name) <= 0) fail("{}: not a Facet pack (no \"{}\" attribute)", file.string(), name);
  Handle attr(check(H5Aopen(object, name, H5P_DEFAULT), file, fmt::format("open attribute {}", name)), H5Aclose);
  Handle type(H5Aget_type(attr.get()), H5Tclose);
  if (H5Tget_class(type.get()) != H5T_STRING || H5Tis_variable_str(type.get()) > 0)
    fail("{}: attribute {} is not a fixed-length string", file.string(), name);
  std::string value(H5Tget_size(type.get()), '\0');
  if (H5Aread(attr.get(), type.get(), value.data()) < 0) fail("{}: HDF5 could not read attribute {}", file.string(), name);
  while (!value.empty() && value.back() == '\0') value.pop_back();
  return value;
}

// Creates [n, shape...] chunked one sample at a time, shuffled + gzip.
Handle create_dataset(hid_t parent, const std::string& name, const TypeInfo& type, int64_t n,
                      const std::vector<int64_t>& shape, const fs::path& file) {
  std::vector<hsize_t> dims = {static_cast<hsize_t>(n)}, chunk = {1};
  for (auto d : shape) {
    dims.push_back(static_cast<hsize_t>(d));
    chunk.push_back(static_cast<hsize_t>(std::max<int64_t>(1, d)));
  }
  Handle space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose);
  Handle props(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  if (n > 0) {
    H5Pset_chunk(props.get(), static_cast<int>(chunk.size()), chunk.data());
    H5Pset_shuffle(props.get());
    H5Pset_deflate(props.get(), 4);
  }
  Handle ds(check(H5Dcreate2(parent, name.c_str(), type.h5, space.get(), H5P_DEFAULT, props.get(), H5P_DEFAULT), file,
                  fmt::format("create dataset {}", name)),
            H5Dclose);
  write_string_attribute(ds.get(), "torch_dtype", type.name, file);
  return ds;
}

// Selects rows [first, first + count) of an [N, ...] dataset.
std::pair<Handle, Handle> rows(hid_t dataset, int64_t first, int64_t count) {
  Handle file_space(H5Dget_space(dataset), H5Sclose);
  const int rank = H5Sget_simple_extent_ndims(file_space.get());
  std::vector<hsize_t> dims(static_cast<size_t>(rank)), start(static_cast<size_t>(rank), 0);
  H5Sget_simple_extent_dims(file_space.get(), dims.data(), nullptr);
  start[0] = static_cast<hsize_t>(first);
  dims[0] = static_cast<hsize_t>(count);
  H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start.data(), nullptr, dims.data(), nullptr);
  Handle memory(H5Screate_simple(rank, dims.data(), nullptr), H5Sclose);
  return {std::move(file_space), std::move(memory)};
}

Handle create_group(hid_t parent, const std::string& name, const fs::path& file) {
  return Handle(check(H5Gcreate2(parent, name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), file,
                      fmt::format("create group {}", name)),
                H5Gclose);
}

std::vector<int64_t> sizes_of(hid_t dataset) {
  Handle space(H5Dget_space(dataset), H5Sclose);
  const int rank = H5Sget_simple_extent_ndims(space.get());
  if (rank < 0) return {-1};  // unreadable: matches no expected shape
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  return std::vector<int64_t>(dims.begin(), dims.end());
}

// Applies deterministic preprocessing on the fly, so a config reads the same samples whether or
// not they come from a pack.
class Preprocessed : public Dataset {
 public:
  Preprocessed(std::shared_ptr<Dataset> inner, std::vector<std::shared_ptr<Transform>> transforms)
      : inner_(std::move(inner)), transforms_(std::move(transforms)) {}
  int64_t size() const override { return inner_->size(); }
  std::vector<std::string> label_names() const override { return inner_->label_names(); }
  Sample get(int64_t index, uint64_t seed) const override {
    Sample s = inner_->get(index, seed);
    auto g = at::make_generator<at::CPUGeneratorImpl>(mix_seed(0x7061636b, static_cast<uint64_t>(index)));
    apply_transforms(transforms_, s, g);
    return s;
  }

 private:
  std::shared_ptr<Dataset> inner_;
  std::vector<std::shared_ptr<Transform>> transforms_;
};

// A split of a pack. HDF5 is built thread-safe on Debian (one global lock), so the loader's
// workers may call get() concurrently; decompression is serialised by that lock (or by
// hdf5_guard's where the library is not thread-safe).
class PackDataset : public Dataset {
 public:
  PackDataset(const fs::path& file, const std::string& split, const Preprocess& expected) : file_(file) {
    const auto guard = hdf5_guard();
    if (!fs::exists(file)) fail("{}: data.pack: no such file (write it with `facet data pack`)", file.string());
    handle_ = Handle(H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
    if (!handle_.valid()) fail("{}: not an HDF5 file, or truncated", file.string());
    const std::string version = read_string_attribute(handle_.get(), "facet_pack_version", file);
    if (version != std::to_string(kPackVersion))
      fail("{}: pack format version {}, this Facet reads version {}", file.string(), version, kPackVersion);
    if (const auto differences = preprocessing_mismatch(read_string_attribute(handle_.get(), "preprocess", file), expected))
      fail("{}: made with other preprocessing than this config asks for; re-run `facet data pack`:{}", file.string(),
           *differences);
    if (H5Lexists(handle_.get(), split.c_str(), H5P_DEFAULT) <= 0) fail("{}: the pack has no split \"{}\"", file.string(), split);
    group_ = Handle(check(H5Gopen2(handle_.get(), split.c_str(), H5P_DEFAULT), file, "open the split"), H5Gclose);
    const std::string n_text = read_string_attribute(group_.get(), "samples", file);
    if (std::from_chars(n_text.data(), n_text.data() + n_text.size(), size_).ec != std::errc() || size_ < 0)
      fail("{}: {}: bad sample count \"{}\"", file.string(), split, n_text);
    // Shapes come from the file: a damaged one must be an error, not a huge allocation (fuzz_pack).
    if (size_ > kMaxSamples) fail("{}: {}: {} samples, more than a pack holds (damaged pack?)", file.string(), split, size_);
    const std::string label_text = read_string_attribute(group_.get(), "label_names", file);
    for (std::string_view rest = label_text; !rest.empty();) {
      const size_t cut = rest.find('\n');
      labels_.emplace_back(rest.substr(0, cut));
      rest = cut == std::string_view::npos ? std::string_view() : rest.substr(cut + 1);
    }
    for (const auto& name : member_names("fields")) {
      Handle ds(check(H5Dopen2(group_.get(), ("fields/" + name).c_str(), H5P_DEFAULT), file, "open " + name), H5Dclose);
      const auto& type = type_named(read_string_attribute(ds.get(), "torch_dtype", file), file, name);
      auto shape = sizes_of(ds.get());
      if (shape.empty() || shape[0] != size_) fail("{}: {}/fields/{}: expected {} rows", file.string(), split, name, size_);
      shape.erase(shape.begin());
      check_row_values(shape, 1, file, split + "/fields/" + name);
      fields_.push_back({name, std::move(ds), &type, shape, torch::Tensor()});
    }
    for (const auto& name : member_names("ragged")) {
      const std::string base = "ragged/" + name;
      Handle values(check(H5Dopen2(group_.get(), (base + "/values").c_str(), H5P_DEFAULT), file, "open " + base), H5Dclose);
      Handle offsets(check(H5Dopen2(group_.get(), (base + "/offsets").c_str(), H5P_DEFAULT), file, "open " + base), H5Dclose);
      const auto& type = type_named(read_string_attribute(values.get(), "torch_dtype", file), file, name);
      auto shape = sizes_of(values.get());
      if (sizes_of(offsets.get()) != std::vector<int64_t>{size_ + 1})
        fail("{}: {}/offsets: unreadable or not {} entries", file.string(), base, size_ + 1);
      torch::Tensor off = torch::empty({size_ + 1}, torch::kInt64);
      if (H5Dread(offsets.get(), H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, off.data_ptr()) < 0)
        fail("{}: {}/offsets: unreadable or not {} entries", file.string(), base, size_ + 1);
      if (!(off.diff() >= 0).all().item<bool>() || off[0].item<int64_t>() != 0 || off[-1].item<int64_t>() != shape.at(0))
        fail("{}: {}/offsets do not describe {} rows", file.string(), base, shape.at(0));
      shape.erase(shape.begin());
      check_row_values(shape, size_ > 0 ? off.diff().max().item<int64_t>() : 0, file, split + "/" + base);
      ragged_.push_back({name, std::move(values), &type, shape, off});
    }
    Handle ids(check(H5Dopen2(group_.get(), "ids", H5P_DEFAULT), file, "open ids"), H5Dclose);
    Handle type(H5Dget_type(ids.get()), H5Tclose);
    // The read below fills `samples` pointers: a damaged pack whose ids disagree with its
    // "samples" attribute would otherwise write past them.
    if (sizes_of(ids.get()) != std::vector<int64_t>{size_} || H5Tget_class(type.get()) != H5T_STRING)
      fail("{}: {}/ids: not {} strings (the \"samples\" attribute), damaged pack?", file.string(), split, size_);
    const size_t width = H5Tget_size(type.get());
    if (H5Tis_variable_str(type.get()) != 0 || width < 1 || width > 65536)
      fail("{}: {}/ids: not fixed-length strings (a pack of an older Facet? re-run `facet data pack`)", file.string(), split);
    if (static_cast<uint64_t>(size_) * width > static_cast<uint64_t>(kMaxValues))
      fail("{}: {}/ids: {} ids of {} bytes, damaged pack?", file.string(), split, size_, width);
    std::string raw(static_cast<size_t>(size_) * width, '\0');
    Handle str(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(str.get(), width);
    H5Tset_strpad(str.get(), H5T_STR_NULLPAD);
    if (size_ > 0 && H5Dread(ids.get(), str.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, raw.data()) < 0)
      fail("{}: {}/ids unreadable", file.string(), split);
    ids_.resize(static_cast<size_t>(size_));
    for (size_t i = 0; i < ids_.size(); ++i) {
      const char* id = raw.data() + i * width;
      ids_[i].assign(id, strnlen(id, width));
    }
  }

  // At most 2^30 values in one read (4 GiB of float32): far above any sample, far below what a
  // damaged shape can ask for.
  static constexpr int64_t kMaxValues = int64_t{1} << 30;
  static constexpr int64_t kMaxSamples = int64_t{1} << 26;  // 67 M: fifty ImageNets

  // `rows` rows of `shape` values each, as one get() reads them.
  static void check_row_values(const std::vector<int64_t>& shape, int64_t rows, const fs::path& file, const std::string& what) {
    int64_t values = std::max<int64_t>(rows, 1);
    for (const int64_t d : shape) {
      if (d < 0 || (d > 0 && values > kMaxValues / d))
        fail("{}: {}: {} rows of {} dimensions are too large (damaged pack?)", file.string(), what, rows, shape.size());
      values *= std::max<int64_t>(d, 1);
    }
  }

  ~PackDataset() override {
    const auto guard = hdf5_guard();  // the handles close under the lock too
    fields_.clear();
    ragged_.clear();
    group_ = Handle();
    handle_ = Handle();
  }

  int64_t size() const override { return size_; }
  std::vector<std::string> label_names() const override { return labels_; }

  Sample get(int64_t index, uint64_t) const override {
    if (index < 0 || index >= size_) fail("{}: sample {} is outside the pack's {} samples", file_.string(), index, size_);
    const auto guard = hdf5_guard();
    Sample s;
    s.id = ids_[static_cast<size_t>(index)];
    for (const auto& f : fields_) s.fields[f.name] = read_rows(f, index, 1).squeeze(0);
    for (const auto& r : ragged_) {
      const int64_t begin = r.offsets[index].item<int64_t>(), end = r.offsets[index + 1].item<int64_t>();
      s.ragged[r.name] = read_rows(r, begin, end - begin);
    }
    return s;
  }

 private:
  struct Stored {
    std::string name;
    Handle dataset;
    const TypeInfo* type;
    std::vector<int64_t> shape;  // per row
    torch::Tensor offsets;       // ragged only
  };

  torch::Tensor read_rows(const Stored& f, int64_t first, int64_t count) const {
    std::vector<int64_t> shape = {count};
    shape.insert(shape.end(), f.shape.begin(), f.shape.end());
    torch::Tensor out = torch::empty(shape, f.type->torch);
    if (count == 0) return out;
    auto [file_space, memory] = rows(f.dataset.get(), first, count);
    if (H5Dread(f.dataset.get(), f.type->h5, memory.get(), file_space.get(), H5P_DEFAULT, out.data_ptr()) < 0)
      fail("{}: could not read {} of sample rows {}..{} (damaged file?)", file_.string(), f.name, first, first + count);
    return out;
  }

  std::vector<std::string> member_names(const std::string& group) const {
    std::vector<std::string> names;
    if (H5Lexists(group_.get(), group.c_str(), H5P_DEFAULT) <= 0) return names;
    Handle g(check(H5Gopen2(group_.get(), group.c_str(), H5P_DEFAULT), file_, "open " + group), H5Gclose);
    H5G_info_t info;
    H5Gget_info(g.get(), &info);
    for (hsize_t i = 0; i < info.nlinks; ++i) {
      const ssize_t len = H5Lget_name_by_idx(g.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
      std::string name(static_cast<size_t>(std::max<ssize_t>(0, len)), '\0');
      H5Lget_name_by_idx(g.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, name.data(), name.size() + 1, H5P_DEFAULT);
      names.push_back(name);
    }
    return names;
  }

  fs::path file_;
  std::vector<std::string> labels_;
  Handle handle_, group_;
  int64_t size_ = 0;
  std::vector<Stored> fields_, ragged_;
  std::vector<std::string> ids_;
};

}  // namespace

Preprocess Preprocess::of(const Config& data_node) {
  Preprocess p;
  p.yaml = canonical_preprocessing(YAML::Load(data_node.dump()));  // dump() records no reads
  uint64_t h = 0xcbf29ce484222325ull;
  for (const unsigned char ch : p.yaml) h = (h ^ ch) * 0x100000001b3ull;
  p.hash = fmt::format("{:016x}", h);
  return p;
}

void write_pack(const fs::path& file, const std::string& split, const Dataset& dataset,
                const std::vector<std::shared_ptr<Transform>>& transforms, const Preprocess& preprocess,
                const std::function<void(int64_t)>& progress) {
  quiet_hdf5();
  const int64_t n = dataset.size();
  // Written beside the target and renamed into place: an interrupted pack never looks complete.
  const fs::path tmp = file.string() + ".tmp";
  if (fs::exists(file)) fs::copy_file(file, tmp, fs::copy_options::overwrite_existing);
  else fs::remove(tmp);
  {
    Handle h(fs::exists(tmp) ? H5Fopen(tmp.c_str(), H5F_ACC_RDWR, H5P_DEFAULT)
                             : H5Fcreate(tmp.c_str(), H5F_ACC_EXCL, H5P_DEFAULT, H5P_DEFAULT),
             H5Fclose);
    if (!h.valid()) fail("{}: cannot open or create the HDF5 file", tmp.string());
    if (H5Aexists(h.get(), "preprocess_hash") > 0) {
      if (const auto differences = preprocessing_mismatch(read_string_attribute(h.get(), "preprocess", file), preprocess))
        fail("{}: already holds splits made with other preprocessing; write a new file:{}", file.string(), *differences);
    } else {
      write_string_attribute(h.get(), "facet_pack_version", std::to_string(kPackVersion), file);
      write_string_attribute(h.get(), "preprocess", preprocess.yaml, file);
      write_string_attribute(h.get(), "preprocess_hash", preprocess.hash, file);
    }
    if (H5Lexists(h.get(), split.c_str(), H5P_DEFAULT) > 0) fail("{}: already holds the split \"{}\"", file.string(), split);
    Handle group = create_group(h.get(), split, file);
    write_string_attribute(group.get(), "samples", std::to_string(n), file);
    write_string_attribute(group.get(), "label_names", join(dataset.label_names(), "\n"), file);
    Handle fields_group = create_group(group.get(), "fields", file);

    std::map<std::string, Handle> fields;
    std::map<std::string, std::vector<torch::Tensor>> ragged;
    std::vector<std::string> ids;
    Sample first;
    for (int64_t i = 0; i < n; ++i) {
      Sample s = dataset.get(i, 0);
      auto g = at::make_generator<at::CPUGeneratorImpl>(mix_seed(0x7061636b, static_cast<uint64_t>(i)));
      apply_transforms(transforms, s, g);
      if (i == 0) {
        for (const auto& [name, t] : s.fields) {
          fields.emplace(name, create_dataset(fields_group.get(), name, type_of(t.scalar_type(), file, name), n,
                                              t.sizes().vec(), file));
          first.fields[name] = t;
        }
        for (const auto& [name, t] : s.ragged) first.ragged[name] = t;
      }
      if (s.fields.keys() != first.fields.keys() || s.ragged.keys() != first.ragged.keys())
        fail("{}: sample {} has other fields than the first sample; a pack needs the same fields everywhere", s.id, i);
      for (const auto& [name, t] : s.fields) {
        const auto& ref = first.fields.at(name);
        if (t.sizes() != ref.sizes() || t.scalar_type() != ref.scalar_type())
          fail("{}: field \"{}\" is {} {}, the first sample's {} {}; resize in data.pack_transforms", s.id, name,
               c10::toString(t.scalar_type()), c10::str(t.sizes()), c10::toString(ref.scalar_type()), c10::str(ref.sizes()));
        const torch::Tensor row = t.contiguous();
        auto [file_space, memory] = rows(fields.at(name).get(), i, 1);
        if (H5Dwrite(fields.at(name).get(), type_of(t.scalar_type(), file, name).h5, memory.get(), file_space.get(),
                     H5P_DEFAULT, row.data_ptr()) < 0)
          fail("{}: HDF5 could not write {} of sample {} (disk full?)", tmp.string(), name, i);
      }
      for (auto [name, t] : s.ragged) {
        if (t.dim() == 0) t = t.reshape({1});
        auto ref = first.ragged.at(name);
        if (ref.dim() == 0) ref = ref.reshape({1});
        if (t.dim() != ref.dim() || t.sizes().slice(1) != ref.sizes().slice(1) || t.scalar_type() != ref.scalar_type())
          fail("{}: ragged \"{}\" is {} {}, the first sample's {} {}", s.id, name, c10::toString(t.scalar_type()),
               c10::str(t.sizes()), c10::toString(ref.scalar_type()), c10::str(ref.sizes()));
        ragged[name].push_back(t);
      }
      ids.push_back(s.id);
      if (progress) progress(i + 1);
    }
    if (!ragged.empty()) {
      Handle ragged_group = create_group(group.get(), "ragged", file);
      for (const auto& [name, parts] : ragged) {
        Handle g = create_group(ragged_group.get(), name, file);
        const torch::Tensor values = torch::cat(parts).contiguous();
        std::vector<int64_t> offsets = {0};
        for (const auto& p : parts) offsets.push_back(offsets.back() + p.size(0));
        const auto& type = type_of(values.scalar_type(), file, name);
        Handle v = create_dataset(g.get(), "values", type, values.size(0), values.sizes().slice(1).vec(), file);
        if (values.numel() > 0 && H5Dwrite(v.get(), type.h5, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data_ptr()) < 0)
          fail("{}: HDF5 could not write ragged {}", tmp.string(), name);
        Handle o = create_dataset(g.get(), "offsets", type_of(torch::kInt64, file, name), static_cast<int64_t>(offsets.size()), {}, file);
        if (H5Dwrite(o.get(), H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, offsets.data()) < 0)
          fail("{}: HDF5 could not write ragged {} offsets", tmp.string(), name);
      }
    }
    // Fixed-length (null-padded to the longest id): see kPackVersion.
    size_t width = 1;
    for (const auto& id : ids) width = std::max(width, id.size());
    Handle str(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(str.get(), width);
    H5Tset_strpad(str.get(), H5T_STR_NULLPAD);
    const hsize_t count = ids.size();
    Handle space(H5Screate_simple(1, &count, nullptr), H5Sclose);
    Handle id_ds(check(H5Dcreate2(group.get(), "ids", str.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                       file, "create ids"),
                 H5Dclose);
    std::string raw(ids.size() * width, '\0');
    for (size_t i = 0; i < ids.size(); ++i) ids[i].copy(raw.data() + i * width, width);
    if (!ids.empty() && H5Dwrite(id_ds.get(), str.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, raw.data()) < 0)
      fail("{}: HDF5 could not write the sample ids", tmp.string());
    if (H5Fflush(h.get(), H5F_SCOPE_GLOBAL) < 0) fail("{}: HDF5 could not flush (disk full?)", tmp.string());
  }
  fsync_path(tmp);
  fs::rename(tmp, file);
  fsync_path(fs::absolute(file).parent_path());
}

const std::set<std::string>& loader_keys() { return kLoaderKeys; }

std::shared_ptr<Dataset> open_dataset(const Config& data_node, const std::string& split) {
  std::vector<std::shared_ptr<Transform>> preprocessing;
  if (data_node.has("pack_transforms")) preprocessing = build_transforms(data_node.at("pack_transforms"));
  if (data_node.has("pack")) {
    const fs::path file = data_node.get<std::string>("pack");
    // The reader's options are part of the preprocessing the pack was checked against: mark them
    // read (the pack replaces the reader). Other data keys stay subject to the unused-key check.
    const Preprocess expected = Preprocess::of(data_node);
    for (const auto& key : data_node.keys())
      if (!kLoaderKeys.count(key)) data_node.consume(key);
    return std::make_shared<PackDataset>(file, split, expected);
  }
  auto reader = dataset_registry().create(data_node, split);
  if (preprocessing.empty()) return reader;
  return std::make_shared<Preprocessed>(std::move(reader), std::move(preprocessing));
}

}  // namespace facet::data
