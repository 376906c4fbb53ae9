"""Data-loading throughput of PyTorch's DataLoader (worker processes): the reference for
bench/loader.cpp, doing the same work as bench/loaders/<dataset>.yaml the way the reference
repositories do it. Prints one JSON line; the first epoch is not timed.

    python bench/loader.py --dataset bp4d|deeplesion|vindr_cxr --root DIR [--slices 7]
                           [--workers 2] [--batch 32] [--epochs 3]

bp4d        read the AU_OCC CSVs; torchvision.io.decode_jpeg (libjpeg-turbo), v2.Resize(200, antialias),
            RandomCrop(176), RandomHorizontalFlip, ToDtype(float32), Normalize(127.5, 127.5)
deeplesion  DL_info.csv, train split, one sample per key slice; 3DCE's load_multislice_img_16bit_png
            recipe (cv2.imread(path, -1) of the key slice and its neighbours at 2 mm, the reference's
            interpolation weights, missing neighbours clamped), HU = value - 32768, A3D/SATr's window
            [-1024, 2050] -> [0, 255] - 50, horizontal flip; [slices, H, W] float32
vindr_cxr   image_labels_train.csv ids; pydicom (pixel_array, MONOCHROME1 inverted), min-max to 0..255,
            cv2.resize to 512 (INTER_AREA), horizontal flip, Normalize(127.5, 127.5); [1, 512, 512]
"""
import argparse
import csv
import glob
import json
import math
import os
import random
import time

import cv2
import numpy as np
import pydicom
import torch
import torchvision
from torchvision.transforms import v2

AUS = ["1", "2", "4", "6", "7", "10", "12", "14", "15", "17", "23", "24"]


class Bp4dFrames(torch.utils.data.Dataset):
    def __init__(self, root: str, _slices: int):
        self.items = []
        for path in sorted(glob.glob(os.path.join(root, "AUCoding", "AU_OCC", "*.csv"))):
            subject, task = os.path.basename(path)[:-4].split("_")
            with open(path, newline="") as f:
                for row in csv.DictReader(f):
                    frame = int(row["0"])
                    image = os.path.join(root, "img", subject, task, f"{frame:04d}.jpg")
                    if not os.path.exists(image):
                        image = os.path.join(root, "img", subject, task, f"{frame}.jpg")
                    labels = [float(row[a]) for a in AUS]
                    self.items.append((image, torch.tensor([0.0 if v == 9 else v for v in labels]),
                                       torch.tensor([0.0 if v == 9 else 1.0 for v in labels])))
        self.transform = v2.Compose([
            v2.Resize(200, antialias=True), v2.RandomCrop(176), v2.RandomHorizontalFlip(0.5),
            v2.ToDtype(torch.float32), v2.Normalize([127.5] * 3, [127.5] * 3)])

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        path, labels, mask = self.items[i]
        image = torchvision.io.decode_jpeg(torchvision.io.read_file(path))
        return self.transform(image), labels, mask


class DeepLesionSlices(torch.utils.data.Dataset):
    """Key slices of the train split with their neighbours, as 3DCE's loader forms them."""

    def __init__(self, root: str, slices: int):
        self.root, self.slices, self.items = root, slices, {}
        with open(os.path.join(root, "DL_info.csv"), newline="") as f:
            for row in csv.DictReader(f):
                if row["Train_Val_Test"] != "1":
                    continue
                spacing_z = float(row["Spacing_mm_px_"].split(",")[2])
                self.items.setdefault(row["File_name"], spacing_z)
        self.items = sorted(self.items.items())

    def __len__(self) -> int:
        return len(self.items)

    def slice_path(self, name: str, delta: int) -> str:
        # <folder>/<NNN>.png from the last underscore; a missing neighbour steps back toward the key.
        folder, index = name.rsplit("_", 1)
        key = int(index[:-4])
        while True:
            path = os.path.join(self.root, "Images_png", folder, f"{key + delta:03d}.png")
            if delta == 0 or os.path.exists(path):
                return path
            delta -= int(math.copysign(1, delta))

    def __getitem__(self, i: int):
        name, spacing_z = self.items[i]
        cache = {}

        def load(delta):
            path = self.slice_path(name, int(delta))
            if path not in cache:
                cache[path] = cv2.imread(path, -1)
            return cache[path]

        key = load(0)
        if math.isnan(spacing_z) or spacing_z <= 0:
            ims = [key] * self.slices
        else:
            ims = [key]
            rel = 2.0 / spacing_z
            a, b = rel - math.floor(rel), math.ceil(rel) - rel
            for p in range(1, (self.slices - 1) // 2 + 1):
                d = rel * p
                if a == 0:
                    prev, nxt = load(-d), load(d)
                else:
                    prev = a * load(-math.ceil(d)) + b * load(-math.floor(d))
                    nxt = a * load(math.ceil(d)) + b * load(math.floor(d))
                ims = [prev] + ims + [nxt]
        im = cv2.merge([x.astype(float) for x in ims]).astype(np.float32) - 32768
        im = np.clip((im + 1024) / (2050 + 1024) * 255, 0, 255) - 50
        if random.random() < 0.5:
            im = im[:, ::-1]
        return torch.from_numpy(np.ascontiguousarray(im.transpose(2, 0, 1)))


class VindrDicoms(torch.utils.data.Dataset):
    def __init__(self, root: str, _slices: int):
        with open(os.path.join(root, "annotations", "image_labels_train.csv"), newline="") as f:
            ids = sorted({row["image_id"] for row in csv.DictReader(f)})
        self.files = [os.path.join(root, "train", f"{i}.dicom") for i in ids]

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        d = pydicom.dcmread(self.files[i])
        x = d.pixel_array.astype(np.float32)
        if d.PhotometricInterpretation == "MONOCHROME1":
            x = x.max() - x
        lo, hi = x.min(), x.max()
        x = (x - lo) * (255.0 / (hi - lo) if hi > lo else 0.0)
        x = cv2.resize(x, (512, 512), interpolation=cv2.INTER_AREA)
        if random.random() < 0.5:
            x = x[:, ::-1]
        return (torch.from_numpy(np.ascontiguousarray(x))[None] - 127.5) / 127.5


DATASETS = {"bp4d": Bp4dFrames, "deeplesion": DeepLesionSlices, "vindr_cxr": VindrDicoms}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--dataset", default="bp4d", choices=sorted(DATASETS))
    p.add_argument("--root", required=True)
    p.add_argument("--slices", type=int, default=7)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--epochs", type=int, default=3)
    a = p.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    dataset = DATASETS[a.dataset](a.root, a.slices)
    loader = torch.utils.data.DataLoader(dataset, batch_size=a.batch, shuffle=True, num_workers=a.workers,
                                         drop_last=True, persistent_workers=a.workers > 0,
                                         prefetch_factor=2 if a.workers > 0 else None)
    samples, seconds = 0, 0.0
    for epoch in range(a.epochs):
        start = time.perf_counter()
        n = sum(len(batch[0]) if isinstance(batch, (list, tuple)) else len(batch) for batch in loader)
        if epoch == 0:
            continue  # warm-up: worker start-up and the page cache
        seconds += time.perf_counter() - start
        samples += n
    print(json.dumps({"impl": "pytorch", "dataset": a.dataset, "workers": a.workers, "batch": a.batch,
                      "samples": samples, "samples_per_s": round(samples / seconds, 1)}))


if __name__ == "__main__":
    main()
