"""Data-loading throughput of PyTorch's DataLoader (worker processes) with torchvision on a
BP4D-format folder of JPEG frames: the reference for bench/loader.cpp, doing the same work — read the
AU_OCC CSVs, decode each JPEG (torchvision.io, libjpeg-turbo), resize to 200, random 176 crop,
horizontal flip, normalise, collate batches. Prints one JSON line; the first epoch is not timed.

    python bench/loader.py --root DIR [--workers 2] [--batch 32] [--epochs 2]
"""
import argparse
import csv
import glob
import json
import os
import time

import torch
import torchvision
from torchvision.transforms import v2

AUS = ["1", "2", "4", "6", "7", "10", "12", "14", "15", "17", "23", "24"]


class Bp4dFrames(torch.utils.data.Dataset):
    def __init__(self, root: str):
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


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--root", required=True)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--epochs", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(1)
    dataset = Bp4dFrames(a.root)
    loader = torch.utils.data.DataLoader(dataset, batch_size=a.batch, shuffle=True, num_workers=a.workers,
                                         drop_last=True, persistent_workers=a.workers > 0,
                                         prefetch_factor=2 if a.workers > 0 else None)
    samples, seconds = 0, 0.0
    for epoch in range(a.epochs):
        start = time.perf_counter()
        n = sum(batch[0].shape[0] for batch in loader)
        if epoch == 0:
            continue  # warm-up: worker start-up and the page cache
        seconds += time.perf_counter() - start
        samples += n
    print(json.dumps({"impl": "pytorch", "workers": a.workers, "batch": a.batch, "samples": samples,
                      "samples_per_s": round(samples / seconds, 1)}))


if __name__ == "__main__":
    main()
