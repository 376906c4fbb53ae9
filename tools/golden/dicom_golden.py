"""Real DICOM files written by other software, and their pixels as pydicom decodes them.

Facet's DICOM reader (data/image/dicom.cpp, DCMTK) is checked against files it did not write: a
selection of the test files bundled in the `pydicom` wheel (NEMA WG04 samples downsized by the
pydicom authors, converted with DCMTK and GDCM), copied to tests/fixtures/dicom/, plus files that
pydicom itself writes here from them (a MONOCHROME1 variant, one with a fractional RescaleSlope).

Writes under tests/fixtures/dicom/:
  <name>.dcm                 the files below
  pixels.safetensors         for each file, "<name>": float32 [rows, cols] (or [rows, cols, 3]) as
                             pydicom decodes it: pixel_array, then apply_modality_lut (RescaleSlope /
                             Intercept) for monochrome files; metadata "<name>" = JSON of
                             PhotometricInterpretation, BitsStored, PixelRepresentation, slope,
                             intercept, WindowCenter/Width, TransferSyntaxUID
The JPEG-LS and RLE copies of MR_small are lossless encodings of the same pixels, so they are checked
against "MR_small" (pydicom needs extra plugins for JPEG-LS; its own RLE decoder is used for RLE).
MR_truncated.dcm (cut inside the pixel data) is kept for the error test.

Run `make goldens` (or this script with the project's venv python) to regenerate.
"""
import json
import os
import shutil

import numpy as np
import pydicom
import torch
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_modality_lut
from golden_io import save

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "tests", "fixtures", "dicom")

# name -> what it exercises
BUNDLED = {
    "CT_small": "CT, signed 16-bit, RescaleIntercept -1024, explicit VR little endian",
    "MR_small": "MR, signed 16-bit, explicit VR little endian",
    "MR_small_bigendian": "the same pixels, explicit VR big endian (DCMTK dcmodify)",
    "MR_small_implicit": "the same pixels, implicit VR little endian",
    "MR_small_RLE": "the same pixels, RLE lossless",
    "MR_small_jpeg_ls_lossless": "the same pixels, JPEG-LS lossless",
    "SC_rgb_small_odd": "8-bit RGB, 3x3 (odd length), explicit VR little endian",
    "SC_rgb_rle": "8-bit RGB, RLE",
    "SC_rgb_rle_16bit": "16-bit RGB, RLE",
    "MR_truncated": "pixel data cut short (error test)",
}
LOSSLESS_COPIES_OF_MR_SMALL = {"MR_small_RLE", "MR_small_jpeg_ls_lossless"}


def describe(ds) -> dict:
    def first(v):
        if v is None:
            return None
        return float(v[0]) if isinstance(v, pydicom.multival.MultiValue) else float(v)

    return {
        "PhotometricInterpretation": str(ds.PhotometricInterpretation),
        "BitsStored": int(ds.BitsStored),
        "PixelRepresentation": int(ds.PixelRepresentation),
        "RescaleSlope": first(ds.get("RescaleSlope")) or 1.0,
        "RescaleIntercept": first(ds.get("RescaleIntercept")) or 0.0,
        "WindowCenter": first(ds.get("WindowCenter")),
        "WindowWidth": first(ds.get("WindowWidth")),
        "TransferSyntaxUID": str(ds.file_meta.TransferSyntaxUID),
        "Rows": int(ds.Rows),
        "Columns": int(ds.Columns),
    }


def decoded(ds) -> np.ndarray:
    pixels = ds.pixel_array
    if ds.SamplesPerPixel == 1:
        pixels = apply_modality_lut(pixels, ds)
    return np.ascontiguousarray(pixels.astype(np.float32))


def main() -> None:
    os.makedirs(OUT, exist_ok=True)
    tensors, metadata = {}, {}
    for name in BUNDLED:
        source = get_testdata_file(name + ".dcm", download=False)  # only files inside the wheel
        target = os.path.join(OUT, name + ".dcm")
        shutil.copyfile(source, target)
        if name == "MR_truncated":
            continue
        ds = pydicom.dcmread(target)
        metadata[name] = json.dumps(describe(ds), sort_keys=True)
        if name not in LOSSLESS_COPIES_OF_MR_SMALL:
            tensors[name] = torch.from_numpy(decoded(ds))

    # Written by pydicom: MR_small as MONOCHROME1 (same stored values, the other polarity), and
    # CT_small with a fractional slope (DCMTK's own rescaling would round it to integers).
    ds = pydicom.dcmread(os.path.join(OUT, "MR_small.dcm"))
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.save_as(os.path.join(OUT, "MR_small_monochrome1.dcm"))
    metadata["MR_small_monochrome1"] = json.dumps(describe(ds), sort_keys=True)
    tensors["MR_small_monochrome1"] = torch.from_numpy(decoded(ds))  # modality values, not inverted

    ds = pydicom.dcmread(os.path.join(OUT, "CT_small.dcm"))
    ds.RescaleSlope = "0.25"
    ds.RescaleIntercept = "-100.5"
    ds.save_as(os.path.join(OUT, "CT_small_fractional_slope.dcm"))
    metadata["CT_small_fractional_slope"] = json.dumps(describe(ds), sort_keys=True)
    tensors["CT_small_fractional_slope"] = torch.from_numpy(decoded(ds))

    metadata["pydicom"] = pydicom.__version__
    save(tensors, os.path.join(OUT, "pixels.safetensors"), metadata)
    for name, t in sorted(tensors.items()):
        print(f"{name}: {tuple(t.shape)} min {t.min().item():g} max {t.max().item():g}")


if __name__ == "__main__":
    main()
