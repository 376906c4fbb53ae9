#include "data/image/dicom.h"

#include "core/error.h"
#include "data/image/jpeg2000.h"
#include "data/pooled_memory.h"

#include <dcmtk/config/osconfig.h>
// DCMTK after its config header.
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcdict.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcmetinf.h>
#include <dcmtk/dcmdata/dcpixel.h>
#include <dcmtk/dcmdata/dcpixseq.h>
#include <dcmtk/dcmdata/dcpxitem.h>
#include <dcmtk/dcmdata/dcrledrg.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmimage/diregist.h>  // colour images
#include <dcmtk/dcmimgle/dcmimage.h>
#include <dcmtk/dcmjpeg/djdecode.h>
#include <dcmtk/dcmjpls/djdecode.h>
#include <dcmtk/oflog/oflog.h>

#include <algorithm>
#include <cstdint>
#include <cmath>
#include <fstream>
#include <limits>
#include <memory>
#include <optional>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace facet::data::image {
namespace fs = std::filesystem;

namespace {

// Decoders and logging are process-wide in DCMTK; set them up once, before any reader thread.
struct DcmtkSetup {
  DcmtkSetup() {
    OFLog::configure(OFLogger::FATAL_LOG_LEVEL);  // problems become facet::Errors, not stderr noise
    DcmRLEDecoderRegistration::registerCodecs();
    DJDecoderRegistration::registerCodecs();
    DJLSDecoderRegistration::registerCodecs();
  }
};
void setup_dcmtk() {
  static const DcmtkSetup once;
  // DCMTK needs its data dictionary (Debian: /usr/share/libdcmtk17/dicom.dic) to know tag types.
  if (!dcmDataDict.isDictionaryLoaded())
    fail("DCMTK's DICOM data dictionary is not loaded: install libdcmtk17 or point DCMDICTPATH at dicom.dic");
}

// A plane of DCMTK's intermediate pixels as float [1, rows, columns], converted straight into the
// tensor (pooled memory: a radiograph is 4 MB of floats, data/pooled_memory.h), its smallest and
// largest values found in the same pass.
template <class T>
torch::Tensor plane_to_tensor(const void* data, int64_t rows, int64_t columns, std::pair<float, float>* range) {
  const auto* p = static_cast<const T*>(data);
  torch::Tensor out = pooled_empty({1, rows, columns}, torch::kFloat);
  float* dst = out.data_ptr<float>();
  T lo = std::numeric_limits<T>::max(), hi = std::numeric_limits<T>::lowest();
  for (int64_t i = 0; i < rows * columns; ++i) {
    lo = std::min(lo, p[i]);
    hi = std::max(hi, p[i]);
    dst[i] = static_cast<float>(p[i]);
  }
  if (range) *range = {static_cast<float>(lo), static_cast<float>(hi)};
  return out;
}

torch::Tensor plane(const void* data, EP_Representation representation, int64_t rows, int64_t columns,
                    std::pair<float, float>* range = nullptr) {
  switch (representation) {
    case EPR_Uint8: return plane_to_tensor<Uint8>(data, rows, columns, range);
    case EPR_Sint8: return plane_to_tensor<Sint8>(data, rows, columns, range);
    case EPR_Uint16: return plane_to_tensor<Uint16>(data, rows, columns, range);
    case EPR_Sint16: return plane_to_tensor<Sint16>(data, rows, columns, range);
    case EPR_Uint32: return plane_to_tensor<Uint32>(data, rows, columns, range);
    case EPR_Sint32: return plane_to_tensor<Sint32>(data, rows, columns, range);
  }
  return {};
}

// `map` (float -> float, non-decreasing or non-increasing) applied in one pass to every value of the
// float tensor `pixels`, in place (the reader's own tensor), and to the ends of `range`, so that they
// stay the pixels' smallest and largest to the bit.
template <class Map>
void map_values(torch::Tensor& pixels, std::optional<std::pair<float, float>>& range, Map&& map) {
  pixels = pixels.to(torch::kFloat).contiguous();
  float* v = pixels.data_ptr<float>();
  for (int64_t i = 0, n = pixels.numel(); i < n; ++i) v[i] = map(v[i]);
  if (!range) return;
  const float a = map(range->first), b = map(range->second);
  range = std::make_pair(std::min(a, b), std::max(a, b));
}

// n stored 16-bit words to float: each masked to its low `16 - spare` bits, sign-extended when Signed,
// with the smallest and largest value found in the same pass.
template <bool Signed>
void words_to_float(const uint16_t* p, size_t n, unsigned spare, float* dst, int32_t& lo, int32_t& hi) {
  for (size_t i = 0; i < n; ++i) {
    const auto moved = static_cast<uint16_t>(p[i] << spare);  // the stored bits at the top
    const int32_t v = Signed ? static_cast<int16_t>(moved) >> spare : moved >> spare;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
    dst[i] = static_cast<float>(v);
  }
}

#if defined(__x86_64__)
// The same, sixteen words per step in 16-bit lanes (the baseline build's SSE2 loop emulates the
// 32-bit min and max; this was a third of a radiograph loader's time).
template <bool Signed>
__attribute__((target("avx2"))) void words_to_float_avx2(const uint16_t* p, size_t n, unsigned spare, float* dst,
                                                         int32_t& lo, int32_t& hi) {
  const __m128i count = _mm_cvtsi32_si128(static_cast<int>(spare));
  __m256i low = _mm256_set1_epi16(Signed ? INT16_MAX : -1), high = _mm256_set1_epi16(Signed ? INT16_MIN : 0);
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i moved = _mm256_sll_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i)), count);
    const __m256i v = Signed ? _mm256_sra_epi16(moved, count) : _mm256_srl_epi16(moved, count);
    low = Signed ? _mm256_min_epi16(low, v) : _mm256_min_epu16(low, v);
    high = Signed ? _mm256_max_epi16(high, v) : _mm256_max_epu16(high, v);
    const __m128i first = _mm256_castsi256_si128(v), second = _mm256_extracti128_si256(v, 1);
    const __m256i a = Signed ? _mm256_cvtepi16_epi32(first) : _mm256_cvtepu16_epi32(first);
    const __m256i b = Signed ? _mm256_cvtepi16_epi32(second) : _mm256_cvtepu16_epi32(second);
    _mm256_storeu_ps(dst + i, _mm256_cvtepi32_ps(a));
    _mm256_storeu_ps(dst + i + 8, _mm256_cvtepi32_ps(b));
  }
  alignas(32) uint16_t lows[16], highs[16];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lows), low);
  _mm256_store_si256(reinterpret_cast<__m256i*>(highs), high);
  if (i > 0)
    for (int k = 0; k < 16; ++k) {
      lo = std::min<int32_t>(lo, Signed ? static_cast<int16_t>(lows[k]) : lows[k]);
      hi = std::max<int32_t>(hi, Signed ? static_cast<int16_t>(highs[k]) : highs[k]);
    }
  words_to_float<Signed>(p + i, n - i, spare, dst + i, lo, hi);
}
#endif

template <bool Signed>
void words_to_float_fastest(const uint16_t* p, size_t n, unsigned spare, float* dst, int32_t& lo, int32_t& hi) {
#if defined(__x86_64__)
  static const bool avx2 = __builtin_cpu_supports("avx2");
  if (avx2) return words_to_float_avx2<Signed>(p, n, spare, dst, lo, hi);
#endif
  words_to_float<Signed>(p, n, spare, dst, lo, hi);
}

// Frame `frame` of monochrome pixel data stored natively (not encapsulated) as 16-bit words, read
// from the element DCMTK loaded in host byte order, without DicomImage's intermediate copy (a third
// of a radiograph loader's time): each value masked to BitsStored, sign-extended when
// PixelRepresentation is 1 — the values DicomImage gives. nullopt for every other layout (8 or 32 bits,
// a HighBit other than BitsStored - 1, colour, compressed), which DicomImage decodes.
std::optional<torch::Tensor> native_monochrome16(DcmDataset& dataset, E_TransferSyntax xfer, const std::string& name,
                                                 int64_t frame, std::pair<float, float>& range) {
  Uint16 samples = 0, allocated = 0, stored = 0, high = 0, representation = 0, rows = 0, columns = 0;
  if (!DcmXfer(xfer).isNotEncapsulated() || dataset.findAndGetUint16(DCM_SamplesPerPixel, samples).bad() ||
      samples != 1 || dataset.findAndGetUint16(DCM_BitsAllocated, allocated).bad() || allocated != 16 ||
      dataset.findAndGetUint16(DCM_BitsStored, stored).bad() || stored < 1 || stored > 16 ||
      dataset.findAndGetUint16(DCM_HighBit, high).bad() || high != stored - 1 ||
      dataset.findAndGetUint16(DCM_PixelRepresentation, representation).bad() || representation > 1 ||
      dataset.findAndGetUint16(DCM_Rows, rows).bad() || dataset.findAndGetUint16(DCM_Columns, columns).bad() ||
      rows == 0 || columns == 0)
    return std::nullopt;
  const Uint16* words = nullptr;
  unsigned long count = 0;
  if (dataset.findAndGetUint16Array(DCM_PixelData, words, &count).bad() || words == nullptr) return std::nullopt;
  const auto pixels = static_cast<unsigned long>(rows) * columns;
  if (count < (static_cast<unsigned long>(frame) + 1) * pixels)
    fail("{}: pixel data holds {} values, {} frame(s) of {}x{} expected (truncated file?)", name, count, frame + 1, rows,
         columns);
  const Uint16* p = words + static_cast<size_t>(frame) * pixels;
  torch::Tensor out = pooled_empty({1, rows, columns}, torch::kFloat);
  float* dst = out.data_ptr<float>();
  const unsigned spare = 16u - stored;
  int32_t lo = std::numeric_limits<int32_t>::max(), hi = std::numeric_limits<int32_t>::min();
  if (representation) words_to_float_fastest<true>(p, pixels, spare, dst, lo, hi);
  else words_to_float_fastest<false>(p, pixels, spare, dst, lo, hi);
  range = {static_cast<float>(lo), static_cast<float>(hi)};
  return out;
}

std::string get_string(DcmItem& item, const DcmTagKey& tag) {
  OFString value;
  return item.findAndGetOFString(tag, value).good() ? std::string(value.c_str()) : std::string();
}

std::optional<double> get_double(DcmItem& item, const DcmTagKey& tag) {
  Float64 value = 0;
  if (item.findAndGetFloat64(tag, value, 0).good()) return value;
  return std::nullopt;
}

// "1.2.840.10008.1.2.4.90 (JPEG 2000 Image Compression (Lossless Only))", for error messages.
std::string syntax_words(E_TransferSyntax xfer) {
  const DcmXfer x(xfer);
  return fmt::format("{} ({})", x.getXferID(), x.getXferName());
}

// The pixel sequence of encapsulated pixel data (PS3.5 A.4).
DcmPixelSequence& pixel_sequence(DcmDataset& dataset, E_TransferSyntax xfer, const std::string& name) {
  DcmElement* element = nullptr;
  DcmPixelSequence* sequence = nullptr;
  auto* pixel_data = dataset.findAndGetElement(DCM_PixelData, element).good() ? dynamic_cast<DcmPixelData*>(element) : nullptr;
  if (!pixel_data || pixel_data->getEncapsulatedRepresentation(xfer, nullptr, sequence).bad() || !sequence)
    fail("{}: the pixel data of transfer syntax {} is not encapsulated", name, syntax_words(xfer));
  return *sequence;
}

// Its fragments (the items after the Basic Offset Table) as bytes.
std::vector<std::pair<const Uint8*, size_t>> fragments_of(DcmPixelSequence& sequence, const std::string& name) {
  const unsigned long items = sequence.card();
  std::vector<std::pair<const Uint8*, size_t>> fragments;
  for (unsigned long i = 1; i < items; ++i) {
    DcmPixelItem* item = nullptr;
    Uint8* data = nullptr;
    if (sequence.getItem(item, i).bad() || !item) fail("{}: unreadable pixel data fragment {}", name, i);
    const size_t length = item->getLength();
    if (length > 0 && (item->getUint8Array(data).bad() || !data)) fail("{}: unreadable pixel data fragment {}", name, i);
    fragments.emplace_back(data, length);
  }
  if (fragments.empty()) fail("{}: encapsulated pixel data without fragments", name);
  return fragments;
}

// Whether DCMTK 3.6.7's JPEG decoder, walking a fragment's markers for the frame header's bit depth
// (DJCodecDecoder::scanJpegDataForBitDepth), would reach a TEM marker (FF 01): it does not step past
// one and loops forever (found by fuzz_dicom). The same walk, which stops there instead: at a frame
// header (SOF) or at what DCMTK calls an invalid marker it ends, as DCMTK's does.
bool dcmtk_jpeg_scan_meets_tem(const Uint8* data, size_t length) {
  size_t offset = 0;
  while (offset + 4 < length) {
    if (data[offset] != 0xFF) return false;
    const Uint8 code = data[offset + 1];
    const size_t segment = size_t{data[offset + 2]} << 8 | data[offset + 3];  // a marker's length field
    if (code == 0x01) return true;
    if (code == 0xFF) offset += 1;                                       // fill byte
    else if (code >= 0xD0 && code <= 0xD9) offset += 2;                  // RSTn, SOI, EOI
    else if (code == 0xC4 || code == 0xC8 || code == 0xCC || code >= 0xDA) offset += segment + 2;
    else if (code >= 0xC0 && code <= 0xCF) return false;                 // SOFn: the scan's answer
    else if (code > 0x02 && code <= 0xBF) offset += 2;                   // RES
    else return false;
  }
  return false;
}

// The bytes of one frame of encapsulated pixel data (PS3.5 A.4): all fragments for a single
// frame, one fragment per frame, or the fragments the Basic Offset Table assigns to it.
std::vector<uint8_t> encapsulated_frame(DcmDataset& dataset, E_TransferSyntax xfer, const std::string& name,
                                        int64_t frame, int64_t frames) {
  DcmPixelSequence* sequence = &pixel_sequence(dataset, xfer, name);
  const std::vector<std::pair<const Uint8*, size_t>> fragments = fragments_of(*sequence, name);
  size_t first = 0, last = fragments.size();
  if (frames > 1 && fragments.size() == static_cast<size_t>(frames)) {
    first = static_cast<size_t>(frame);
    last = first + 1;
  } else if (frames > 1) {
    DcmPixelItem* table = nullptr;
    Uint8* offsets = nullptr;
    if (sequence->getItem(table, 0).bad() || !table || table->getLength() != 4 * static_cast<size_t>(frames) ||
        table->getUint8Array(offsets).bad() || !offsets)
      fail("{}: {} fragments for {} frames and no usable Basic Offset Table", name, fragments.size(), frames);
    auto offset_of = [&](int64_t f) {  // little endian, from the first fragment's item tag
      const Uint8* p = offsets + 4 * f;
      return uint64_t{p[0]} | uint64_t{p[1]} << 8 | uint64_t{p[2]} << 16 | uint64_t{p[3]} << 24;
    };
    first = last = fragments.size() + 1;
    uint64_t position = 0;
    for (size_t i = 0; i <= fragments.size(); ++i) {
      if (position == offset_of(frame)) first = i;
      if (frame + 1 < frames && position == offset_of(frame + 1)) last = i;
      if (i < fragments.size()) position += 8 + fragments[i].second;
    }
    if (frame + 1 == frames) last = fragments.size();
    if (first >= last || last > fragments.size())
      fail("{}: the Basic Offset Table does not match the {} fragments (frame {})", name, fragments.size(), frame);
  }
  std::vector<uint8_t> bytes;
  for (size_t i = first; i < last; ++i) bytes.insert(bytes.end(), fragments[i].first, fragments[i].first + fragments[i].second);
  return bytes;
}

// JPEG 2000 frames through OpenJPEG: stored values as [C, H, W] float.
torch::Tensor jpeg2000_frame(DcmDataset& dataset, E_TransferSyntax xfer, const std::string& name, int64_t frame,
                             int64_t frames) {
  Uint16 rows = 0, columns = 0, samples = 1, representation = 0, bits_stored = 0;
  dataset.findAndGetUint16(DCM_Rows, rows);
  dataset.findAndGetUint16(DCM_Columns, columns);
  dataset.findAndGetUint16(DCM_SamplesPerPixel, samples);
  dataset.findAndGetUint16(DCM_PixelRepresentation, representation);
  dataset.findAndGetUint16(DCM_BitsStored, bits_stored);
  if (rows == 0 || columns == 0) fail("{}: JPEG 2000 image without Rows/Columns", name);
  const std::vector<uint8_t> bytes = encapsulated_frame(dataset, xfer, name, frame, frames);
  const Jpeg2000Image j = decode_jpeg2000(bytes, name, columns, rows);
  if (j.components.size() != samples)
    fail("{}: the JPEG 2000 frame has {} components, SamplesPerPixel is {}", name, j.components.size(), samples);
  std::vector<torch::Tensor> planes;
  for (const auto& component : j.components) {
    torch::Tensor p = torch::from_blob(const_cast<int32_t*>(component.data()), {1, j.height, j.width}, torch::kInt32)
                          .to(torch::kFloat);
    // Some encoders write signed pixels as an unsigned code stream; DICOM's PixelRepresentation
    // says how the stored bits are meant, so read them as two's complement of BitsStored bits.
    const int bits = bits_stored > 0 ? bits_stored : j.precision;
    if (representation == 1 && !j.is_signed && bits > 0 && bits <= 31)
      p = torch::where(p >= std::ldexp(1.0, bits - 1), p - std::ldexp(1.0, bits), p);
    planes.push_back(p);
  }
  return torch::cat(planes, 0);
}

}  // namespace

bool looks_like_dicom(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[132] = {};
  return in.read(magic, sizeof(magic)) && std::string_view(magic + 128, 4) == "DICM";
}

DicomFrame read_dicom(const fs::path& path, const DicomReadOptions& options) {
  setup_dcmtk();
  const std::string name = path.string();
  if (!fs::exists(path)) fail("{}: no such DICOM file", name);
  DcmFileFormat file;
  if (const OFCondition status = file.loadFile(name.c_str()); status.bad())
    fail("{}: not a readable DICOM file ({})", name, status.text());
  DcmDataset& dataset = *file.getDataset();
  if (!dataset.tagExists(DCM_PixelData)) fail("{}: DICOM file without pixel data", name);

  DicomFrame out;
  out.photometric = get_string(dataset, DCM_PhotometricInterpretation);
  const E_TransferSyntax xfer = dataset.getOriginalXfer();
  // Without (0002,0010) DCMTK detects the data set's encoding from its first element (explicit
  // or implicit VR, byte order), which is what pydicom does when forced; such a file can only be
  // an uncompressed one.
  DcmMetaInfo* meta = file.getMetaInfo();
  out.transfer_syntax_inferred = !meta || !meta->tagExists(DCM_TransferSyntaxUID);
  if (xfer == EXS_Unknown) fail("{}: unknown transfer syntax (no Transfer Syntax UID, and the encoding cannot be detected)", name);
  out.transfer_syntax = DcmXfer(xfer).getXferID();
  out.transfer_syntax_name = DcmXfer(xfer).getXferName();
  Uint16 bits_stored = 0;
  dataset.findAndGetUint16(DCM_BitsStored, bits_stored);
  out.bits_stored = bits_stored;
  Sint32 frames = 1;
  if (dataset.findAndGetSint32(DCM_NumberOfFrames, frames).bad() || frames < 1) frames = 1;
  out.frames = frames;
  if (options.frame < 0 || options.frame >= out.frames)
    fail("{}: frame {} requested, the file has {}", name, options.frame, out.frames);

  // Modality values are computed here in float: DCMTK's own rescaling rounds to integers, which
  // loses a fractional RescaleSlope (PET, some MR). A Modality LUT Sequence is left to DCMTK.
  const bool has_modality_lut = dataset.tagExists(DCM_ModalityLUTSequence);
  const bool jpeg2000 = xfer == EXS_JPEG2000LosslessOnly || xfer == EXS_JPEG2000;
  bool monochrome = out.photometric.rfind("MONOCHROME", 0) == 0;
  torch::Tensor stored;
  std::pair<float, float> native_range;
  const std::optional<torch::Tensor> native =
      jpeg2000 || has_modality_lut || !monochrome
          ? std::nullopt
          : native_monochrome16(dataset, xfer, name, options.frame, native_range);
  if (jpeg2000) {
    // DCMTK's open-source build has no JPEG 2000 codec: OpenJPEG decodes the frame.
    if (has_modality_lut) fail("{}: a Modality LUT Sequence with transfer syntax {} is not supported", name, syntax_words(xfer));
    stored = jpeg2000_frame(dataset, xfer, name, options.frame, out.frames);
    if (stored.size(0) != 1 && stored.size(0) != 3) fail("{}: {} samples per pixel", name, stored.size(0));
    monochrome = stored.size(0) == 1;
    out.rows = stored.size(1);
    out.columns = stored.size(2);
  } else if (native) {
    stored = *native;
    out.rows = stored.size(1);
    out.columns = stored.size(2);
    out.range = native_range;
  } else {
    // The JPEG processes (DCMTK's dcmjpeg codecs); JPEG-LS, RLE and the rest do not run that scan, and
    // JPEG-LS scan data may hold FF 01.
    if (xfer >= EXS_JPEGProcess1 && xfer <= EXS_JPEGProcess14SV1)
      for (const auto& [data, length] : fragments_of(pixel_sequence(dataset, xfer, name), name))
        if (dcmtk_jpeg_scan_meets_tem(data, length))
          fail("{}: a TEM marker (FF 01) before the JPEG frame header, which DCMTK's decoder cannot step past "
               "(transfer syntax {})", name, syntax_words(xfer));
    const unsigned long flags = has_modality_lut ? 0 : CIF_IgnoreModalityTransformation;
    const auto image = std::make_unique<::DicomImage>(&file, xfer, flags, static_cast<unsigned long>(options.frame), 1);
    if (image->getStatus() != EIS_Normal)
      fail("{}: cannot decode the pixel data ({}; transfer syntax {}, photometric {})", name,
           ::DicomImage::getString(image->getStatus()), syntax_words(xfer), out.photometric);
    const DiPixel* pixels = image->getInterData();
    if (!pixels) fail("{}: cannot decode the pixel data (transfer syntax {})", name, syntax_words(xfer));
    out.rows = static_cast<int64_t>(image->getHeight());
    out.columns = static_cast<int64_t>(image->getWidth());
    if (pixels->getCount() < static_cast<unsigned long>(out.rows * out.columns))
      fail("{}: pixel data holds {} values, {}x{} expected (truncated file?)", name, pixels->getCount(), out.rows,
           out.columns);
    monochrome = image->isMonochrome();
    if (monochrome) {
      std::pair<float, float> range;
      stored = plane(pixels->getData(), pixels->getRepresentation(), out.rows, out.columns, &range);
      if (pixels->getCount() > 0) out.range = range;
    } else {
      // DCMTK converts colour models (YBR, palette) to RGB planes of one representation.
      if (pixels->getPlanes() != 3) fail("{}: colour image with {} planes", name, pixels->getPlanes());
      // getData() points at the image's array of three plane pointers (T* Data[3]).
      const auto* planes = static_cast<const void* const*>(pixels->getData());
      std::vector<torch::Tensor> rgb;
      for (int c = 0; c < 3; ++c) rgb.push_back(plane(planes[c], pixels->getRepresentation(), out.rows, out.columns));
      stored = torch::cat(rgb, 0);
    }
  }

  out.pixels = stored;
  if (monochrome) {
    if (!has_modality_lut) {
      out.slope = get_double(dataset, DCM_RescaleSlope).value_or(1.0);
      out.intercept = get_double(dataset, DCM_RescaleIntercept).value_or(0.0);
      if (out.slope != 1.0 || out.intercept != 0.0) {
        // The roundings of ATen's mul_(slope) then add_(intercept) on float.
        map_values(out.pixels, out.range, [slope = static_cast<float>(out.slope), intercept = static_cast<float>(out.intercept)](
                                              float v) { return v * slope + intercept; });
      }
    }
    const auto center = get_double(dataset, DCM_WindowCenter), width = get_double(dataset, DCM_WindowWidth);
    if (center && width && *width >= 1) out.window = std::make_pair(*center, *width);
    const bool monochrome1 = out.photometric == "MONOCHROME1";
    if (options.apply_window && out.window) {
      // PS3.3 C.11.2.1.2.1, linear: output 0..1 over [c - 0.5 - (w-1)/2, c - 0.5 + (w-1)/2].
      const auto [c, w] = *out.window;
      out.pixels = w > 1 ? ((out.pixels - (c - 0.5)) / (w - 1) + 0.5).clamp(0, 1)
                         : (out.pixels > c - 0.5).to(torch::kFloat);
      out.windowed = true;
      out.range.reset();
      if (monochrome1 && options.invert_monochrome1) {
        out.pixels = 1 - out.pixels;
        out.inverted = true;
      }
    } else if (monochrome1 && options.invert_monochrome1) {
      // Reflect within the modality range of the stored range, so the value range is kept.
      Uint16 representation = 0;
      dataset.findAndGetUint16(DCM_PixelRepresentation, representation);
      const int bits = bits_stored > 0 ? bits_stored : 16;
      const double lo_stored = representation ? -std::ldexp(1.0, bits - 1) : 0.0;
      const double hi_stored = representation ? std::ldexp(1.0, bits - 1) - 1 : std::ldexp(1.0, bits) - 1;
      const double a = lo_stored * out.slope + out.intercept, b = hi_stored * out.slope + out.intercept;
      // (a + b) - v with the roundings of ATen's neg_() then add_(a + b).
      map_values(out.pixels, out.range, [sum = static_cast<float>(a + b)](float v) { return -v + sum; });
      out.inverted = true;
    }
  }
  return out;
}

void write_dicom(const fs::path& path, const torch::Tensor& stored, const DicomWriteOptions& options) {
  setup_dcmtk();
  const std::string name = path.string();
  if (stored.dim() != 2) fail("{}: write_dicom expects [H, W] pixels, got {}", name, stored.sizes());
  if (options.bits_stored < 1 || options.bits_stored > 16) fail("{}: bits_stored must be 1..16", name);
  const torch::Tensor values = stored.to(torch::kInt64);
  if (values.numel() > 0 && (values.min().item<int64_t>() < 0 || values.max().item<int64_t>() >= (int64_t{1} << options.bits_stored)))
    fail("{}: pixel values outside 0..{} (bits_stored {})", name, (1 << options.bits_stored) - 1, options.bits_stored);
  const std::vector<Uint16> pixels(values.data_ptr<int64_t>(), values.data_ptr<int64_t>() + values.numel());

  DcmFileFormat file;
  DcmDataset& d = *file.getDataset();
  char uid[100];
  bool ok = true;
  auto put = [&](const DcmTagKey& tag, const std::string& value) { ok &= d.putAndInsertString(tag, value.c_str()).good(); };
  put(DCM_SOPClassUID, UID_DigitalXRayImageStorageForPresentation);
  put(DCM_SOPInstanceUID, dcmGenerateUniqueIdentifier(uid, SITE_INSTANCE_UID_ROOT));
  put(DCM_StudyInstanceUID, dcmGenerateUniqueIdentifier(uid, SITE_STUDY_UID_ROOT));
  put(DCM_SeriesInstanceUID, dcmGenerateUniqueIdentifier(uid, SITE_SERIES_UID_ROOT));
  put(DCM_Modality, options.modality);
  put(DCM_PatientID, options.patient_id);
  put(DCM_PhotometricInterpretation, options.photometric);
  ok &= d.putAndInsertUint16(DCM_SamplesPerPixel, 1).good();
  ok &= d.putAndInsertUint16(DCM_Rows, static_cast<Uint16>(stored.size(0))).good();
  ok &= d.putAndInsertUint16(DCM_Columns, static_cast<Uint16>(stored.size(1))).good();
  ok &= d.putAndInsertUint16(DCM_BitsAllocated, 16).good();
  ok &= d.putAndInsertUint16(DCM_BitsStored, static_cast<Uint16>(options.bits_stored)).good();
  ok &= d.putAndInsertUint16(DCM_HighBit, static_cast<Uint16>(options.bits_stored - 1)).good();
  ok &= d.putAndInsertUint16(DCM_PixelRepresentation, 0).good();
  if (options.slope != 1 || options.intercept != 0) {
    put(DCM_RescaleSlope, fmt::format("{}", options.slope));
    put(DCM_RescaleIntercept, fmt::format("{}", options.intercept));
  }
  if (options.window) {
    put(DCM_WindowCenter, fmt::format("{}", options.window->first));
    put(DCM_WindowWidth, fmt::format("{}", options.window->second));
  }
  ok &= d.putAndInsertUint16Array(DCM_PixelData, pixels.data(), static_cast<unsigned long>(pixels.size())).good();
  if (!ok) fail("{}: cannot build the DICOM dataset", name);
  const fs::path temporary = path.string() + ".tmp";
  if (const OFCondition status = file.saveFile(temporary.c_str(), EXS_LittleEndianExplicit); status.bad())
    fail("{}: cannot write the DICOM file ({})", name, status.text());
  fs::rename(temporary, path);
}

}  // namespace facet::data::image
