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

The transfer-syntax table (tests/data/test_dicom.cpp, DicomCodecs.*) uses CODECS below: each file is
decoded by pydicom with the pylibjpeg plug-ins (pylibjpeg-openjpeg for JPEG 2000, pylibjpeg-libjpeg
for JPEG and JPEG-LS; tools/requirements.txt), an independent decoder from DCMTK and from Facet's
own OpenJPEG path, and saved losslessly as a PNG under codecs/ (uint8, or uint16 holding
value - offset), described in codecs/codecs.json (syntax, bits, photometric, offset, frames,
lossless). Also written: copies of MR_small whose file meta lacks the Transfer Syntax UID
(explicit/implicit VR little endian, explicit big endian), a 12-bit MONOCHROME1 radiograph-like
copy, and pydicom's apply_voi_lut (normalised to [0, 1] by its output range) as "<name>_voi".

Run `make goldens` (or this script with the project's venv python) to regenerate.
"""
import json
import os
import shutil
import struct

import numpy as np
import pydicom
import torch
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_modality_lut
from pydicom.pixels import apply_voi_lut
from PIL import Image
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

    codecs(tensors, metadata)

    metadata["pydicom"] = pydicom.__version__
    save(tensors, os.path.join(OUT, "pixels.safetensors"), metadata)
    for name, t in sorted(tensors.items()):
        print(f"{name}: {tuple(t.shape)} min {t.min().item():g} max {t.max().item():g}")


# name -> what it exercises; frames: how many frames the test compares. All files are small.
CODECS = {
    "MR_small_jp2klossless": "JPEG 2000 lossless, signed 16-bit MR",
    "JPEG2000": "JPEG 2000 (lossy allowed), signed 16-bit, 1024x256",
    "GDCMJ2K_TextGBR": "JPEG 2000 lossless, 8-bit colour with the reversible colour transform",
    "image_dfl": "deflated explicit VR little endian, 8-bit",
    "SC_rgb_jpeg_dcmtk": "JPEG baseline 8-bit, YBR_FULL colour",
    "JPGExtended": "JPEG extended 12-bit",
    "SC_rgb_jpeg_gdcm": "JPEG lossless (process 14, SV1), 8-bit RGB",
    "JPEGLSNearLossless_16": "JPEG-LS near-lossless, 16-bit",
    "SC_rgb_rle_2frame": "RLE, 8-bit RGB, two frames",
}


LOSSLESS_SYNTAXES = {"1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70",
                     "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.90"}


def strip_transfer_syntax(source: str, target: str) -> None:
    """Copies a Part 10 file without (0002,0010) in its meta, fixing the group length (0002,0000)."""
    raw = open(source, "rb").read()
    assert raw[128:132] == b"DICM"
    pos, elements = 132, []
    while True:
        group, element = struct.unpack("<HH", raw[pos:pos + 4])
        if group != 2:
            break
        vr = raw[pos + 4:pos + 6]
        if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN"):
            length = struct.unpack("<I", raw[pos + 8:pos + 12])[0]
            header = 12
        else:
            length = struct.unpack("<H", raw[pos + 6:pos + 8])[0]
            header = 8
        elements.append((element, raw[pos:pos + header + length]))
        pos += header + length
    kept = [b for e, b in elements if e not in (0x0000, 0x0010)]
    body = b"".join(kept)
    group_length = struct.pack("<HH2sHI", 2, 0, b"UL", 4, len(body))
    with open(target, "wb") as f:
        f.write(raw[:132] + group_length + body + raw[pos:])


def voi_normalised(ds, modality: np.ndarray) -> np.ndarray:
    """pydicom's apply_voi_lut (first window), mapped from its output range to [0, 1]."""
    bits = int(ds.BitsStored)
    lo, hi = (0, 2**bits - 1) if ds.PixelRepresentation == 0 else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    if "RescaleSlope" in ds and "RescaleIntercept" in ds:
        lo, hi = lo * float(ds.RescaleSlope) + float(ds.RescaleIntercept), hi * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    out = apply_voi_lut(modality.astype(np.float64), ds, index=0)
    return np.ascontiguousarray(((out - lo) / (hi - lo)).astype(np.float32))


def codecs(tensors: dict, metadata: dict) -> None:
    folder = os.path.join(OUT, "codecs")
    os.makedirs(folder, exist_ok=True)
    table = {}
    for name, what in CODECS.items():
        source = get_testdata_file(name + ".dcm", download=False)
        target = os.path.join(OUT, name + ".dcm")
        shutil.copyfile(source, target)
        ds = pydicom.dcmread(target)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        pixels = ds.pixel_array if frames > 1 else ds.pixel_array[None]
        if ds.SamplesPerPixel == 1:
            values = np.stack([apply_modality_lut(p, ds) for p in pixels])
        else:
            values = pixels  # RGB: pydicom converts YBR_FULL JPEG to RGB; OpenJPEG undoes J2K's RCT
        assert np.all(values == np.round(values)), name
        offset = int(min(0, values.min()))
        assert values.max() - offset < 65536, name
        dtype = np.uint8 if values.max() - offset < 256 and ds.BitsAllocated == 8 else np.uint16
        for i, frame in enumerate(values):
            Image.fromarray(np.ascontiguousarray((frame - offset).astype(dtype))).save(
                os.path.join(folder, f"{name}_{i}.png"))
        ts = ds.file_meta.TransferSyntaxUID
        table[name] = {"what": what, "syntax": str(ts), "syntax_name": ts.name, "frames": frames,
                       "offset": offset, "bits_stored": int(ds.BitsStored),
                       "photometric": str(ds.PhotometricInterpretation),
                       "lossless": not ts.is_encapsulated or str(ts) in LOSSLESS_SYNTAXES}
    with open(os.path.join(folder, "codecs.json"), "w") as f:
        json.dump({"pydicom": pydicom.__version__, "files": table}, f, indent=1, sort_keys=True)
        f.write("\n")

    # Files whose meta lacks the Transfer Syntax UID (some VinDr-CXR files): pydicom infers it.
    for name in ("MR_small", "MR_small_implicit", "MR_small_bigendian"):
        target = os.path.join(OUT, name + "_no_tsyntax.dcm")
        strip_transfer_syntax(os.path.join(OUT, name + ".dcm"), target)
        ds = pydicom.dcmread(target, force=True)
        assert "TransferSyntaxUID" not in ds.file_meta
        # pydicom read the data set with the encoding it inferred; it decodes pixels only once told.
        implicit, little = ds.original_encoding
        ds.file_meta.TransferSyntaxUID = (pydicom.uid.ImplicitVRLittleEndian if implicit else
                                          pydicom.uid.ExplicitVRLittleEndian if little else pydicom.uid.ExplicitVRBigEndian)
        assert str(ds.file_meta.TransferSyntaxUID) == str(pydicom.dcmread(os.path.join(OUT, name + ".dcm")).file_meta.TransferSyntaxUID)
        assert np.array_equal(decoded(ds), tensors["MR_small"].numpy()), name

    # A radiograph-like file: 12 of 16 bits stored, unsigned, MONOCHROME1, with a window.
    ds = pydicom.dcmread(os.path.join(OUT, "MR_small.dcm"))
    stored = ds.pixel_array.astype(np.uint16)
    assert stored.max() < 4096
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, 0
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.WindowCenter, ds.WindowWidth = "1100", "1800"
    ds.PixelData = stored.tobytes()
    ds.save_as(os.path.join(OUT, "MR_small_12bit_monochrome1.dcm"))
    ds = pydicom.dcmread(os.path.join(OUT, "MR_small_12bit_monochrome1.dcm"))
    metadata["MR_small_12bit_monochrome1"] = json.dumps(describe(ds), sort_keys=True)
    tensors["MR_small_12bit_monochrome1"] = torch.from_numpy(decoded(ds))
    tensors["MR_small_12bit_monochrome1_voi"] = torch.from_numpy(voi_normalised(ds, decoded(ds)))
    ds = pydicom.dcmread(os.path.join(OUT, "MR_small.dcm"))
    tensors["MR_small_voi"] = torch.from_numpy(voi_normalised(ds, decoded(ds)))
    ds = pydicom.dcmread(os.path.join(OUT, "CT_small.dcm"))
    if "WindowCenter" in ds:
        tensors["CT_small_voi"] = torch.from_numpy(voi_normalised(ds, decoded(ds)))


if __name__ == "__main__":
    main()
