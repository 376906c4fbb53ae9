// NIfTI volumes (.nii, .nii.gz): a native reader of NIfTI-1 and NIfTI-2 single files in either byte
// order, and a NIfTI-1 writer, for MRI datasets such as BraTS. The format: nifti.nimh.nih.gov
// (nifti1.h, nifti2.h); the reader is checked against nibabel (tools/golden/nifti_golden.py).
#pragma once

#include <torch/torch.h>

#include <array>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>

namespace facet::data::image {

// NIfTI datatype codes (nifti1.h) of the types read here; write_nifti takes uint8, int16, float32.
inline constexpr int16_t kNiftiUint8 = 2, kNiftiInt16 = 4, kNiftiInt32 = 8, kNiftiFloat32 = 16, kNiftiFloat64 = 64,
                         kNiftiInt8 = 256, kNiftiUint16 = 512, kNiftiUint32 = 768, kNiftiInt64 = 1024;

struct NiftiVolume {
  // float32 [Z, Y, X]: the file's voxels in file order (x fastest), times scl_slope plus scl_inter
  // when scl_slope is a non-zero finite number (the NIfTI rule; nibabel's get_fdata), else as stored.
  torch::Tensor data;
  std::array<double, 3> spacing{};  // pixdim[1..3]: the x, y, z voxel size (usually mm)
  int16_t datatype = 0;             // as stored, e.g. kNiftiInt16
};

struct NiftiReadOptions {
  // The most bytes of voxel data a file may declare, and the furthest vox_offset (a .nii.gz is
  // inflated only up to the voxels' end, so never past twice this): a damaged or hostile header
  // cannot make the reader inflate or allocate more.
  uint64_t max_bytes = uint64_t{4} << 30;
};

// Reads a 3-D volume (dim[0] = 3, or 4..7 with every further dimension 1) of datatype uint8, int8,
// int16, uint16, int32, uint32, int64, float32 or float64, from a single-file NIfTI-1 (n+1) or
// NIfTI-2 (n+2), gzip-compressed or not (told by the bytes, not the name). Anything else — a .hdr/.img
// pair, a 2-D or 4-D image, another datatype, a truncated or inconsistent file — is a facet::Error
// whose message starts with the path and says what is wrong.
NiftiVolume read_nifti(const std::filesystem::path& path, const NiftiReadOptions& options = {});
// The same from bytes in memory (the file's, compressed or not); `name` stands for the path in errors.
NiftiVolume parse_nifti(std::span<const uint8_t> bytes, const std::string& name, const NiftiReadOptions& options = {});

// Writes `zyx` ([Z, Y, X], any real dtype) as a NIfTI-1 single file: gzip-compressed when the name
// ends in .gz (.nii.gz), plain for .nii. `datatype`: kNiftiUint8 or kNiftiInt16 (values rounded and
// required to fit) or kNiftiFloat32. `spacing`: x, y, z voxel size in mm (the sform is that diagonal).
// Written atomically (a temporary file renamed).
void write_nifti(const std::filesystem::path& path, const torch::Tensor& zyx, std::array<double, 3> spacing,
                 int16_t datatype);

}  // namespace facet::data::image
