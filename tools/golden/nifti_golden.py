"""Small NIfTI files written by nibabel, and the voxels nibabel reads from them.

Facet's NIfTI reader (data/image/nifti.cpp) is checked against files it did not write. Each file
below is written with nibabel (or, where nibabel's writer would not keep a field, from a nibabel
header and raw bytes) and read back with nibabel's own reader, whose answer is the golden.

Writes under tests/fixtures/nifti/:
  int16_le.nii.gz        NIfTI-1, int16, little endian, gzip-compressed (the BraTS layout)
  int16_members.nii.gz   the same file as two concatenated gzip members (as `cat a.gz b.gz` makes)
  float32_be.nii         NIfTI-1, float32, big endian, uncompressed
  uint8_scaled.nii.gz    NIfTI-1, uint8 with scl_slope 2, scl_inter -5
  nifti2_uint16.nii      NIfTI-2, uint16
  float64_4d.nii.gz      NIfTI-1, float64, 4-D with dim[4] = 1
  int8.nii, int32_be.nii.gz, uint32.nii, int64.nii.gz   the remaining datatypes the reader takes
  nibabel/               files written by other software, copied from nibabel's test data (MIT licence):
                         anatomical.nii (SPM, big-endian int16, scl_slope NaN), reoriented_anat_moved.nii
                         (SPM, big-endian float32), standard.nii.gz (uint8), and example_nifti2.nii.gz (FSL
                         via NIfTI-2, 4-D with two volumes: the reader refuses it)
  voxels.safetensors     for each file, "<file name>": float32 [Z, Y, X] = nibabel's get_fdata()
                         (x, y, z) transposed, cast to float32; metadata "<file name>" = JSON of
                         spacing (get_zooms()[:3]) and datatype (the header's code)
gzip members are written with mtime 0, so reruns give identical files.

Run `make goldens` (or this script with the project's venv python) to regenerate.
"""
import gzip
import json
import os
import shutil
import tempfile

import nibabel as nib
import numpy as np
import torch
from golden_io import save

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "tests", "fixtures", "nifti")


def affine(spacing):
    return np.diag([*spacing, 1.0])


def image_bytes(img) -> bytes:
    """The single-file bytes nibabel writes for `img` (uncompressed)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "x.nii")
        nib.save(img, path)
        with open(path, "rb") as f:
            return f.read()


def write(name: str, raw: bytes, members: int = 1) -> None:
    path = os.path.join(OUT, name)
    if name.endswith(".gz"):
        cut = len(raw) // members
        parts = [raw[i * cut:(i + 1) * cut if i + 1 < members else len(raw)] for i in range(members)]
        raw = b"".join(gzip.compress(p, mtime=0) for p in parts)
    with open(path, "wb") as f:
        f.write(raw)


def main() -> None:
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(7)
    files = []

    a = rng.integers(-3000, 3000, size=(5, 4, 3)).astype(np.int16)
    raw = image_bytes(nib.Nifti1Image(a, affine([0.9, 1.1, 2.5]), dtype=np.int16))
    write("int16_le.nii.gz", raw)
    write("int16_members.nii.gz", raw, members=2)
    files += ["int16_le.nii.gz", "int16_members.nii.gz"]

    big = nib.Nifti1Header(endianness=">")
    f = (rng.standard_normal((4, 3, 2)) * 100).astype(np.float32)
    img = nib.Nifti1Image(f, affine([1.0, 1.0, 1.5]), header=big, dtype=np.float32)
    raw = image_bytes(img)
    assert raw[:4] == (348).to_bytes(4, "big"), "nibabel did not keep the big-endian header"
    write("float32_be.nii", raw)
    files.append("float32_be.nii")

    # nibabel's writer recomputes scl_slope/scl_inter from the data, so this header is written by hand.
    hdr = nib.Nifti1Header()
    u = rng.integers(0, 256, size=(3, 4, 5)).astype(np.uint8)
    hdr.set_data_shape(u.shape)
    hdr.set_data_dtype(np.uint8)
    hdr.set_zooms((2.0, 2.0, 3.0))
    hdr.set_sform(affine([2.0, 2.0, 3.0]), code=1)
    hdr["scl_slope"] = 2
    hdr["scl_inter"] = -5
    hdr["vox_offset"] = 352
    write("uint8_scaled.nii.gz", hdr.binaryblock + b"\0" * 4 + u.tobytes(order="F"))
    files.append("uint8_scaled.nii.gz")

    w = rng.integers(0, 65536, size=(4, 4, 3)).astype(np.uint16)
    write("nifti2_uint16.nii", image_bytes(nib.Nifti2Image(w, affine([0.5, 0.5, 1.0]), dtype=np.uint16)))
    files.append("nifti2_uint16.nii")

    d = rng.standard_normal((3, 4, 2, 1)) * 1e3
    write("float64_4d.nii.gz", image_bytes(nib.Nifti1Image(d, affine([1.2, 1.2, 1.2]), dtype=np.float64)))
    files.append("float64_4d.nii.gz")

    for name, dtype, lo, hi, header in [
        ("int8.nii", np.int8, -128, 128, None),
        ("int32_be.nii.gz", np.int32, -2**31, 2**31, nib.Nifti1Header(endianness=">")),
        ("uint32.nii", np.uint32, 0, 2**32, None),
        ("int64.nii.gz", np.int64, -2**62, 2**62, None),
    ]:
        v = rng.integers(lo, hi, size=(2, 3, 2), dtype=np.int64 if dtype != np.uint32 else np.uint64).astype(dtype)
        write(name, image_bytes(nib.Nifti1Image(v, affine([1.0, 2.0, 3.0]), header=header, dtype=dtype)))
        files.append(name)

    # Files other software wrote (nibabel's own test data): SPM's and FSL's headers as they come.
    third_party = os.path.join(os.path.dirname(nib.__file__), "tests", "data")
    os.makedirs(os.path.join(OUT, "nibabel"), exist_ok=True)
    for name in ("anatomical.nii", "reoriented_anat_moved.nii", "standard.nii.gz", "example_nifti2.nii.gz"):
        shutil.copyfile(os.path.join(third_party, name), os.path.join(OUT, "nibabel", name))
        if name != "example_nifti2.nii.gz":  # 4-D: no voxels to compare
            files.append("nibabel/" + name)

    tensors, metadata = {}, {}
    for name in files:
        img = nib.load(os.path.join(OUT, name))
        data = np.asarray(img.get_fdata())  # float64, slope and intercept applied
        if data.ndim == 4:
            assert data.shape[3] == 1
            data = data[..., 0]
        tensors[name] = torch.from_numpy(np.ascontiguousarray(data.transpose(2, 1, 0)).astype(np.float32))
        metadata[name] = json.dumps({
            "spacing": [float(z) for z in img.header.get_zooms()[:3]],
            "datatype": int(img.header["datatype"]),
        })
        print(name, tuple(data.shape), img.header.get_data_dtype(), os.path.getsize(os.path.join(OUT, name)), "bytes")
    save(tensors, os.path.join(OUT, "voxels.safetensors"), metadata)


if __name__ == "__main__":
    main()
