#include "data/image/jpeg2000.h"

#include "core/error.h"

#include <openjpeg.h>

#include <algorithm>
#include <cstring>
#include <memory>

namespace facet::data::image {
namespace {

// OpenJPEG reads through callbacks; this one serves a byte span.
struct MemoryReader {
  std::span<const uint8_t> bytes;
  size_t position = 0;
};

OPJ_SIZE_T read_bytes(void* buffer, OPJ_SIZE_T size, void* user) {
  auto& r = *static_cast<MemoryReader*>(user);
  if (r.position >= r.bytes.size()) return static_cast<OPJ_SIZE_T>(-1);  // end of stream
  const size_t n = std::min<size_t>(size, r.bytes.size() - r.position);
  std::memcpy(buffer, r.bytes.data() + r.position, n);
  r.position += n;
  return n;
}

OPJ_OFF_T skip_bytes(OPJ_OFF_T count, void* user) {
  auto& r = *static_cast<MemoryReader*>(user);
  if (count < 0) {
    const auto back = std::min<size_t>(static_cast<size_t>(-count), r.position);
    r.position -= back;
    return -static_cast<OPJ_OFF_T>(back);
  }
  const size_t n = std::min<size_t>(static_cast<size_t>(count), r.bytes.size() - std::min(r.position, r.bytes.size()));
  r.position += n;
  return static_cast<OPJ_OFF_T>(n);
}

OPJ_BOOL seek_bytes(OPJ_OFF_T offset, void* user) {
  auto& r = *static_cast<MemoryReader*>(user);
  if (offset < 0 || static_cast<uint64_t>(offset) > r.bytes.size()) return OPJ_FALSE;
  r.position = static_cast<size_t>(offset);
  return OPJ_TRUE;
}

void keep_message(const char* message, void* user) {
  auto& kept = *static_cast<std::string*>(user);
  if (kept.empty()) {
    kept = message;
    while (!kept.empty() && (kept.back() == '\n' || kept.back() == ' ')) kept.pop_back();
  }
}
void ignore_message(const char*, void*) {}

struct CodecDeleter {
  void operator()(opj_codec_t* c) const { opj_destroy_codec(c); }
};
struct StreamDeleter {
  void operator()(opj_stream_t* s) const { opj_stream_destroy(s); }
};
struct ImageDeleter {
  void operator()(opj_image_t* i) const { opj_image_destroy(i); }
};

}  // namespace

Jpeg2000Image decode_jpeg2000(std::span<const uint8_t> bytes, const std::string& context, int64_t expected_width,
                              int64_t expected_height) {
  static constexpr uint8_t kCodestream[] = {0xFF, 0x4F, 0xFF, 0x51};
  static constexpr uint8_t kJp2[] = {0x00, 0x00, 0x00, 0x0C, 0x6A, 0x50, 0x20, 0x20};
  OPJ_CODEC_FORMAT format;
  if (bytes.size() >= 4 && std::equal(kCodestream, kCodestream + 4, bytes.begin())) format = OPJ_CODEC_J2K;
  else if (bytes.size() >= 8 && std::equal(kJp2, kJp2 + 8, bytes.begin())) format = OPJ_CODEC_JP2;
  else fail("{}: the JPEG 2000 frame starts with neither a code stream (FF 4F FF 51) nor a JP2 signature", context);

  std::string error;
  const std::unique_ptr<opj_codec_t, CodecDeleter> codec(opj_create_decompress(format));
  if (!codec) fail("{}: cannot create an OpenJPEG decoder", context);
  opj_set_error_handler(codec.get(), keep_message, &error);
  opj_set_warning_handler(codec.get(), ignore_message, nullptr);
  opj_set_info_handler(codec.get(), ignore_message, nullptr);
  opj_dparameters_t parameters;
  opj_set_default_decoder_parameters(&parameters);
  if (!opj_setup_decoder(codec.get(), &parameters)) fail("{}: cannot set up the OpenJPEG decoder ({})", context, error);

  MemoryReader reader{bytes};
  const std::unique_ptr<opj_stream_t, StreamDeleter> stream(opj_stream_create(OPJ_J2K_STREAM_CHUNK_SIZE, OPJ_TRUE));
  if (!stream) fail("{}: cannot create an OpenJPEG stream", context);
  opj_stream_set_user_data(stream.get(), &reader, nullptr);
  opj_stream_set_user_data_length(stream.get(), bytes.size());
  opj_stream_set_read_function(stream.get(), read_bytes);
  opj_stream_set_skip_function(stream.get(), skip_bytes);
  opj_stream_set_seek_function(stream.get(), seek_bytes);

  opj_image_t* raw_image = nullptr;
  if (!opj_read_header(stream.get(), codec.get(), &raw_image) || !raw_image) {
    if (raw_image) opj_image_destroy(raw_image);
    fail("{}: damaged JPEG 2000 header ({})", context, error.empty() ? "OpenJPEG gave no reason" : error);
  }
  const std::unique_ptr<opj_image_t, ImageDeleter> image(raw_image);
  const int64_t width = static_cast<int64_t>(image->x1) - image->x0, height = static_cast<int64_t>(image->y1) - image->y0;
  if (width <= 0 || height <= 0 || image->numcomps < 1)
    fail("{}: JPEG 2000 header describes an empty image ({}x{}, {} components)", context, width, height, image->numcomps);
  if ((expected_width > 0 && width != expected_width) || (expected_height > 0 && height != expected_height))
    fail("{}: the JPEG 2000 frame is {}x{}, the DICOM header says {}x{} (columns x rows)", context, width, height,
         expected_width, expected_height);
  // A damaged header (or a hostile one) must not make the decoder allocate gigabytes: 2^26 samples
  // (8192 x 8192) is beyond any radiograph or mammogram frame.
  if (width * height * image->numcomps > (int64_t{1} << 26))
    fail("{}: JPEG 2000 frame of {}x{}x{} samples, more than Facet decodes (2^26)", context, width, height, image->numcomps);
  if (image->numcomps != 1 && image->numcomps != 3)
    fail("{}: JPEG 2000 frame with {} components (1 or 3 supported)", context, image->numcomps);
  for (OPJ_UINT32 c = 0; c < image->numcomps; ++c)
    if (image->comps[c].dx != 1 || image->comps[c].dy != 1)
      fail("{}: JPEG 2000 component {} is subsampled ({}x{}), not supported", context, c, image->comps[c].dx,
           image->comps[c].dy);
  if (!opj_decode(codec.get(), stream.get(), image.get()) || !opj_end_decompress(codec.get(), stream.get()))
    fail("{}: cannot decode the JPEG 2000 frame ({})", context, error.empty() ? "OpenJPEG gave no reason" : error);

  Jpeg2000Image out;
  out.width = width;
  out.height = height;
  out.precision = static_cast<int>(image->comps[0].prec);
  out.is_signed = image->comps[0].sgnd != 0;
  const size_t count = static_cast<size_t>(width) * static_cast<size_t>(height);
  for (OPJ_UINT32 c = 0; c < image->numcomps; ++c) {
    const opj_image_comp_t& comp = image->comps[c];
    if (!comp.data || static_cast<int64_t>(comp.w) != width || static_cast<int64_t>(comp.h) != height)
      fail("{}: JPEG 2000 component {} was not decoded at full size", context, c);
    out.components.emplace_back(comp.data, comp.data + count);
  }
  return out;
}

}  // namespace facet::data::image
