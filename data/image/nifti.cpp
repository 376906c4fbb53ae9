// NIfTI-1/-2 single files, plain or gzip-compressed. Header fields are read at the offsets of
// nifti1.h / nifti2.h with memcpy (never a struct laid over the bytes: the file's byte order and
// packing need not be the host's), and every size the header declares is checked against the bytes
// there are before anything is allocated for it.
#include "data/image/nifti.h"

#include "core/error.h"
#include "core/file_io.h"

#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <string_view>

namespace facet::data::image {
namespace {

namespace fs = std::filesystem;

constexpr int32_t kNifti1Size = 348, kNifti2Size = 540;
constexpr int64_t kNiftiMaxVoxels = int64_t{1} << 31;
constexpr size_t kZlibChunk = size_t{1} << 30;  // zlib counts in 32-bit uInt

struct NiftiTypeInfo {
  int16_t code;
  int64_t size;
  const char* name;
};
constexpr NiftiTypeInfo kNiftiReadTypes[] = {
    {kNiftiUint8, 1, "uint8"},   {kNiftiInt8, 1, "int8"},     {kNiftiInt16, 2, "int16"},
    {kNiftiUint16, 2, "uint16"}, {kNiftiInt32, 4, "int32"},   {kNiftiUint32, 4, "uint32"},
    {kNiftiInt64, 8, "int64"},   {kNiftiFloat32, 4, "float32"}, {kNiftiFloat64, 8, "float64"}};

// The names of nifti1.h's other codes, so an error says what the file holds.
const char* nifti_other_type_name(int code) {
  switch (code) {
    case 0: return "unknown";
    case 1: return "binary";
    case 32: return "complex64";
    case 128: return "rgb24";
    case 1280: return "uint64";
    case 1536: return "float128";
    case 1792: return "complex128";
    case 2048: return "complex256";
    case 2304: return "rgba32";
    default: return "not a NIfTI datatype";
  }
}

// A value of type T from possibly unaligned bytes, byte-reversed when the file's order is not the host's.
template <class T>
T nifti_load(const uint8_t* p, bool swap) {
  std::array<uint8_t, sizeof(T)> b;
  std::memcpy(b.data(), p, sizeof(T));
  if (swap) std::reverse(b.begin(), b.end());
  T v;
  std::memcpy(&v, b.data(), sizeof(T));
  return v;
}

// Inflates a gzip file (one member or several concatenated, as gzip -d reads them) on demand: the
// header first, then exactly what the header says the voxels need, so a stream never expands past
// that, and the output grows with the bytes actually inflated (a header that claims gigabytes over a
// short stream costs no more than the stream).
class NiftiGzip {
 public:
  NiftiGzip(std::span<const uint8_t> in, const std::string& name) : in_(in), name_(name) {
    if (inflateInit2(&zs_, 16 + MAX_WBITS) != Z_OK) fail("{}: cannot start zlib's inflate", name_);
  }
  ~NiftiGzip() { inflateEnd(&zs_); }
  NiftiGzip(const NiftiGzip&) = delete;  // zlib's state points back at zs_
  NiftiGzip& operator=(const NiftiGzip&) = delete;

  // Grows `out` to `want` bytes, or fewer when the stream ends first.
  void fill(std::string& out, size_t want) {
    size_t have = out.size();
    while (have < want && !finished_) {
      out.resize(std::min(want, std::max<size_t>(have * 2, size_t{1} << 16)));
      while (have < out.size() && !finished_) {
        if (zs_.avail_in == 0 && pos_ < in_.size()) feed();
        zs_.next_out = reinterpret_cast<Bytef*>(out.data() + have);
        zs_.avail_out = static_cast<uInt>(std::min(out.size() - have, kZlibChunk));
        const uInt before = zs_.avail_out;
        const int rc = inflate(&zs_, Z_NO_FLUSH);
        have += before - zs_.avail_out;
        if (rc == Z_STREAM_END) {
          next_member();
        } else if (rc == Z_BUF_ERROR) {
          if (zs_.avail_in == 0 && pos_ >= in_.size()) finished_ = true;  // the input ran out: truncated
        } else if (rc != Z_OK) {
          fail("{}: corrupt gzip data: {}", name_, zs_.msg ? zs_.msg : "inflate failed");
        }
      }
    }
    out.resize(have);
  }

 private:
  void feed() {
    const size_t n = std::min(in_.size() - pos_, kZlibChunk);
    zs_.next_in = const_cast<Bytef*>(in_.data() + pos_);
    zs_.avail_in = static_cast<uInt>(n);
    pos_ += n;
  }

  // After a member's end: another member when the next bytes are gzip's magic, else the end
  // (trailing bytes that are not a member are ignored, as gzip -d does with zero padding).
  void next_member() {
    if (zs_.avail_in < 2 && pos_ < in_.size()) {  // the magic may straddle a chunk edge: rejoin it
      pos_ -= zs_.avail_in;
      zs_.avail_in = 0;
      feed();
    }
    if (zs_.avail_in >= 2 && zs_.next_in[0] == 0x1f && zs_.next_in[1] == 0x8b && inflateReset(&zs_) == Z_OK) return;
    finished_ = true;
  }

  std::span<const uint8_t> in_;
  const std::string& name_;
  z_stream zs_{};
  size_t pos_ = 0;  // of in_, handed to zlib so far
  bool finished_ = false;
};

// What read_nifti needs from the header, in host types.
struct NiftiHeader {
  int version = 1;
  bool swap = false;
  std::array<int64_t, 8> dim{};
  int16_t datatype = 0;
  std::array<double, 8> pixdim{};
  int64_t vox_offset = 0;
  double slope = 0, inter = 0;
};

NiftiHeader parse_nifti_header(std::span<const uint8_t> h, const std::string& name, bool gz) {
  const char* what = gz ? " (decompressed)" : "";
  if (h.size() < 4) fail("{}: truncated: {} bytes{}, too short for a NIfTI header", name, h.size(), what);
  NiftiHeader r;
  const int32_t native = nifti_load<int32_t>(h.data(), false), swapped = nifti_load<int32_t>(h.data(), true);
  if (native == kNifti1Size || native == kNifti2Size) {
    r.swap = false;
  } else if (swapped == kNifti1Size || swapped == kNifti2Size) {
    r.swap = true;
  } else {
    fail("{}: not a NIfTI file: sizeof_hdr is {} (NIfTI-1 has 348, NIfTI-2 540, in either byte order)", name, native);
  }
  const int32_t size = r.swap ? swapped : native;
  r.version = size == kNifti1Size ? 1 : 2;
  if (h.size() < static_cast<size_t>(size))
    fail("{}: truncated: {} bytes{}, shorter than the {}-byte NIfTI-{} header", name, h.size(), what, size, r.version);
  const uint8_t* p = h.data();
  const bool s = r.swap;
  if (r.version == 1) {
    const std::string_view magic(reinterpret_cast<const char*>(p + 344), 4);
    if (magic == std::string_view("ni1\0", 4))
      fail("{}: a NIfTI-1 .hdr/.img pair (magic \"ni1\") is not supported: convert it to one .nii or .nii.gz file "
           "(e.g. nibabel.save(nibabel.load(hdr), 'volume.nii.gz'))",
           name);
    if (magic != std::string_view("n+1\0", 4))
      fail("{}: not a single-file NIfTI-1: the magic at byte 344 is not \"n+1\" (an Analyze 7.5 header?)", name);
    for (size_t i = 0; i < 8; ++i) r.dim[i] = nifti_load<int16_t>(p + 40 + 2 * i, s);
    r.datatype = nifti_load<int16_t>(p + 70, s);
    for (size_t i = 0; i < 8; ++i) r.pixdim[i] = nifti_load<float>(p + 76 + 4 * i, s);
    const double offset = nifti_load<float>(p + 108, s);
    // A float in NIfTI-1: a whole number of bytes past the header (bounded before the cast).
    if (!(offset >= kNifti1Size && offset <= 1e15) || offset != std::floor(offset))
      fail("{}: vox_offset {} is not a whole byte offset at or past the {}-byte header", name, offset, kNifti1Size);
    r.vox_offset = static_cast<int64_t>(offset);
    r.slope = nifti_load<float>(p + 112, s);
    r.inter = nifti_load<float>(p + 116, s);
  } else {
    const std::string_view magic(reinterpret_cast<const char*>(p + 4), 8);
    if (magic.substr(0, 4) == std::string_view("ni2\0", 4))
      fail("{}: a NIfTI-2 .hdr/.img pair (magic \"ni2\") is not supported: convert it to one .nii or .nii.gz file", name);
    if (magic != std::string_view("n+2\0\r\n\032\n", 8))
      fail("{}: not a single-file NIfTI-2: the magic at byte 4 is not \"n+2\\0\\r\\n\\032\\n\"", name);
    r.datatype = nifti_load<int16_t>(p + 12, s);
    for (size_t i = 0; i < 8; ++i) r.dim[i] = nifti_load<int64_t>(p + 16 + 8 * i, s);
    for (size_t i = 0; i < 8; ++i) r.pixdim[i] = nifti_load<double>(p + 104 + 8 * i, s);
    r.vox_offset = nifti_load<int64_t>(p + 168, s);
    if (r.vox_offset < kNifti2Size)
      fail("{}: vox_offset {} is inside the {}-byte NIfTI-2 header", name, r.vox_offset, kNifti2Size);
    r.slope = nifti_load<double>(p + 176, s);
    r.inter = nifti_load<double>(p + 184, s);
  }
  return r;
}

template <class T>
void nifti_convert(const uint8_t* src, int64_t n, bool swap, bool scaled, double slope, double inter, float* dst) {
  // Through double, as nibabel's get_fdata computes before a cast to float32 (the same values).
  for (int64_t i = 0; i < n; ++i) {
    double v = static_cast<double>(nifti_load<T>(src + i * static_cast<int64_t>(sizeof(T)), swap));
    if (scaled) v = v * slope + inter;
    dst[i] = static_cast<float>(v);
  }
}

void nifti_convert_any(int16_t type, const uint8_t* src, int64_t n, bool swap, bool scaled, double slope, double inter,
                       float* dst) {
  switch (type) {
    case kNiftiUint8: return nifti_convert<uint8_t>(src, n, swap, scaled, slope, inter, dst);
    case kNiftiInt8: return nifti_convert<int8_t>(src, n, swap, scaled, slope, inter, dst);
    case kNiftiInt16: return nifti_convert<int16_t>(src, n, swap, scaled, slope, inter, dst);
    case kNiftiUint16: return nifti_convert<uint16_t>(src, n, swap, scaled, slope, inter, dst);
    case kNiftiInt32: return nifti_convert<int32_t>(src, n, swap, scaled, slope, inter, dst);
    case kNiftiUint32: return nifti_convert<uint32_t>(src, n, swap, scaled, slope, inter, dst);
    case kNiftiInt64: return nifti_convert<int64_t>(src, n, swap, scaled, slope, inter, dst);
    case kNiftiFloat32: return nifti_convert<float>(src, n, swap, scaled, slope, inter, dst);
    case kNiftiFloat64: return nifti_convert<double>(src, n, swap, scaled, slope, inter, dst);
    default: fail("nifti: unhandled datatype {}", type);  // parse_nifti checked it
  }
}

std::string nifti_gzip(std::string_view raw, const std::string& name) {
  z_stream zs{};
  if (deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    fail("{}: cannot start zlib's deflate", name);
  std::string out(deflateBound(&zs, raw.size()) + 64, '\0');
  size_t in_pos = 0, produced = 0;
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    if (zs.avail_in == 0 && in_pos < raw.size()) {
      const size_t n = std::min(raw.size() - in_pos, kZlibChunk);
      zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(raw.data() + in_pos));
      zs.avail_in = static_cast<uInt>(n);
      in_pos += n;
    }
    if (out.size() - produced < (size_t{1} << 16)) out.resize(out.size() * 2);
    zs.next_out = reinterpret_cast<Bytef*>(out.data() + produced);
    zs.avail_out = static_cast<uInt>(std::min(out.size() - produced, kZlibChunk));
    const uInt before = zs.avail_out;
    rc = deflate(&zs, in_pos == raw.size() ? Z_FINISH : Z_NO_FLUSH);
    produced += before - zs.avail_out;
    if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) {
      deflateEnd(&zs);
      fail("{}: gzip compression failed ({})", name, rc);
    }
  }
  deflateEnd(&zs);
  out.resize(produced);
  return out;
}

template <class T>
void nifti_put(std::string& h, size_t offset, T value) {
  std::memcpy(h.data() + offset, &value, sizeof(T));
}

}  // namespace

NiftiVolume parse_nifti(std::span<const uint8_t> bytes, const std::string& name, const NiftiReadOptions& options) {
  const bool gz = bytes.size() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b;
  std::unique_ptr<NiftiGzip> gzip;
  std::string inflated;
  std::span<const uint8_t> content = bytes;
  // The first `n` bytes of the (decompressed) file, or all there are.
  auto take = [&](size_t n) {
    if (!gz) return;
    gzip->fill(inflated, n);
    content = {reinterpret_cast<const uint8_t*>(inflated.data()), inflated.size()};
  };
  if (gz) gzip = std::make_unique<NiftiGzip>(bytes, name);
  take(kNifti2Size + 4);
  const NiftiHeader h = parse_nifti_header(content, name, gz);

  const int64_t rank = h.dim[0];
  if (rank < 1 || rank > 7) fail("{}: dim[0] is {} (expected 1..7): a damaged header", name, rank);
  if (rank < 3) fail("{}: a {}-D image (dim[0] = {}): only 3-D volumes are read", name, rank, rank);
  for (int64_t i = 4; i <= rank; ++i)
    if (h.dim[static_cast<size_t>(i)] != 1)
      fail("{}: a {}-D image (dim[{}] = {}): only 3-D volumes are read (a 4-D one with dim[4] = 1 is)", name, rank, i,
           h.dim[static_cast<size_t>(i)]);
  int64_t voxels = 1;
  for (size_t i = 1; i <= 3; ++i) {
    if (h.dim[i] < 1) fail("{}: dim[{}] is {} (must be positive)", name, i, h.dim[i]);
    if (h.dim[i] > kNiftiMaxVoxels || voxels * h.dim[i] > kNiftiMaxVoxels)  // voxels <= 2^31: no overflow
      fail("{}: {}x{}x{} voxels, more than the 2^31 this reader accepts", name, h.dim[1], h.dim[2], h.dim[3]);
    voxels *= h.dim[i];
  }
  const NiftiTypeInfo* type = nullptr;
  for (const auto& t : kNiftiReadTypes)
    if (t.code == h.datatype) type = &t;
  if (!type)
    fail("{}: unsupported datatype {} ({}): uint8, int8, int16, uint16, int32, uint32, int64, float32 and float64 are read",
         name, h.datatype, nifti_other_type_name(h.datatype));
  const uint64_t data_bytes = static_cast<uint64_t>(voxels) * static_cast<uint64_t>(type->size);
  if (data_bytes > options.max_bytes)
    fail("{}: the voxel data take {} bytes, more than the limit of {} (NiftiReadOptions::max_bytes)", name, data_bytes,
         options.max_bytes);
  // The bytes before the voxels count too: a .nii.gz is inflated up to the voxels' end.
  if (static_cast<uint64_t>(h.vox_offset) > options.max_bytes)
    fail("{}: vox_offset {} is past the limit of {} bytes (NiftiReadOptions::max_bytes)", name, h.vox_offset,
         options.max_bytes);
  const uint64_t end = static_cast<uint64_t>(h.vox_offset) + data_bytes;  // each below 2^63: no overflow
  take(static_cast<size_t>(end));
  if (content.size() < end)
    fail("{}: truncated: the voxel data end at byte {} (vox_offset {} + {} bytes), but the file has {}{}", name, end,
         h.vox_offset, data_bytes, content.size(), gz ? " bytes once decompressed" : " bytes");

  const bool scaled = h.slope != 0 && std::isfinite(h.slope);
  if (scaled && !std::isfinite(h.inter)) fail("{}: scl_slope is {} but scl_inter is {}", name, h.slope, h.inter);
  NiftiVolume v;
  v.datatype = h.datatype;
  v.spacing = {h.pixdim[1], h.pixdim[2], h.pixdim[3]};
  v.data = torch::empty({h.dim[3], h.dim[2], h.dim[1]}, torch::kFloat);
  nifti_convert_any(h.datatype, content.data() + h.vox_offset, voxels, h.swap, scaled, h.slope, h.inter,
                    v.data.data_ptr<float>());
  return v;
}

NiftiVolume read_nifti(const fs::path& path, const NiftiReadOptions& options) {
  const std::string name = path.string();
  std::string ext = path.extension().string();
  if (ext == ".gz") ext = path.stem().extension().string();
  if (ext == ".img" || ext == ".IMG")
    fail("{}: a NIfTI/Analyze .hdr/.img pair is not supported: convert it to one .nii or .nii.gz file "
         "(e.g. nibabel.save(nibabel.load(hdr), 'volume.nii.gz'))",
         name);
  if (!fs::exists(path)) fail("{}: no such file", name);
  const MappedFile file(path);
  return parse_nifti(file.bytes(), name, options);
}

void write_nifti(const fs::path& path, const torch::Tensor& zyx, std::array<double, 3> spacing, int16_t datatype) {
  const std::string name = path.string();
  if (zyx.dim() != 3) fail("{}: write_nifti takes a [Z, Y, X] volume, got {} dimension(s)", name, zyx.dim());
  for (int64_t i = 0; i < 3; ++i)
    if (zyx.size(i) < 1 || zyx.size(i) > std::numeric_limits<int16_t>::max())
      fail("{}: size {} of dimension {} does not fit NIfTI-1 (1..32767)", name, zyx.size(i), i);
  for (double s : spacing)
    if (!(s > 0 && std::isfinite(s))) fail("{}: voxel spacing {} must be a positive number", name, s);
  torch::ScalarType dtype;
  int16_t bitpix = 0;
  double lo = 0, hi = 0;
  switch (datatype) {
    case kNiftiUint8: dtype = torch::kUInt8, bitpix = 8, lo = 0, hi = 255; break;
    case kNiftiInt16: dtype = torch::kInt16, bitpix = 16, lo = -32768, hi = 32767; break;
    case kNiftiFloat32: dtype = torch::kFloat, bitpix = 32; break;
    default: fail("{}: write_nifti writes uint8 (2), int16 (4) or float32 (16), not datatype {}", name, datatype);
  }
  torch::Tensor values = zyx.detach().to(torch::kCPU, torch::kDouble);
  if (datatype != kNiftiFloat32) {
    values = values.round();
    const double min = values.min().item<double>(), max = values.max().item<double>();
    if (!(min >= lo && max <= hi))
      fail("{}: values {}..{} do not fit the datatype's range {}..{}", name, min, max, lo, hi);
  }
  const torch::Tensor data = values.to(dtype).contiguous();

  // NIfTI-1 header (348 bytes) + the 4-byte extension flag (none), host byte order (readers tell it
  // by sizeof_hdr).
  std::string h(352, '\0');
  nifti_put<int32_t>(h, 0, kNifti1Size);
  const std::array<int16_t, 8> dim = {3, static_cast<int16_t>(zyx.size(2)), static_cast<int16_t>(zyx.size(1)),
                                      static_cast<int16_t>(zyx.size(0)), 1, 1, 1, 1};
  for (size_t i = 0; i < 8; ++i) nifti_put<int16_t>(h, 40 + 2 * i, dim[i]);
  nifti_put<int16_t>(h, 70, datatype);
  nifti_put<int16_t>(h, 72, bitpix);
  const std::array<float, 8> pixdim = {1, static_cast<float>(spacing[0]), static_cast<float>(spacing[1]),
                                       static_cast<float>(spacing[2]), 1, 1, 1, 1};  // pixdim[0] = qfac 1
  for (size_t i = 0; i < 8; ++i) nifti_put<float>(h, 76 + 4 * i, pixdim[i]);
  nifti_put<float>(h, 108, 352.0f);  // vox_offset
  nifti_put<float>(h, 112, 1.0f);    // scl_slope
  h[123] = 2;                        // xyzt_units: mm
  std::memcpy(h.data() + 148, "facet", 5);  // descrip
  nifti_put<int16_t>(h, 252, 1);  // qform_code: scanner, identity rotation (quatern b, c, d = 0), scaled by pixdim
  nifti_put<int16_t>(h, 254, 1);  // sform_code: the same affine as rows
  for (size_t r = 0; r < 3; ++r) nifti_put<float>(h, 280 + 16 * r + 4 * r, pixdim[r + 1]);
  std::memcpy(h.data() + 344, "n+1\0", 4);
  h.append(reinterpret_cast<const char*>(data.data_ptr()), static_cast<size_t>(data.numel() * data.element_size()));

  const bool gz = path.extension() == ".gz";
  if (!gz && path.extension() != ".nii") fail("{}: write_nifti writes .nii or .nii.gz files", name);
  write_file_atomic(path, gz ? nifti_gzip(h, name) : h);
}

}  // namespace facet::data::image
