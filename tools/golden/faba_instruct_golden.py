"""A tiny FABA-Instruct in the published layout (face.md §1.6), with numpy's own .npy writer, for the
faba_instruct / llava_instruct datasets and the .npy reader (data/npy.*), whose fuzzer seeds from
these files too.

Writes under tests/fixtures/faba_instruct/:
  train/train_au_anno.json      two records with LLaVA conversations ("<image>" after the question,
                                as the release writes it) and "landmark" paths
  train/images/*.png            non-square RGB images (10x6, 6x10)
  train/landmarks/*.npy         float32 (212,) and float64 (1, 212), as np.save writes them
  eval/eval_au_anno.json        records without conversations: "label" and "gpt4" only
  eval/images, eval/landmarks
  npy/                          edge cases: format 2.0, Fortran order, int32, 210 values, empty
  expected.json                 the landmark values (for the reader's parity)
"""
import json
import os

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "tests", "fixtures", "faba_instruct")


def image(path, w, h, seed):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)).save(path)


def main() -> None:
    rng = np.random.default_rng(7)
    expected = {}
    for split in ("train", "eval"):
        os.makedirs(os.path.join(OUT, split, "images"), exist_ok=True)
        os.makedirs(os.path.join(OUT, split, "landmarks"), exist_ok=True)
    lm_a = rng.normal(size=212).astype(np.float32)
    lm_b = rng.normal(size=(1, 212))
    np.save(os.path.join(OUT, "train", "landmarks", "a.npy"), lm_a)
    np.save(os.path.join(OUT, "train", "landmarks", "b.npy"), lm_b)
    np.save(os.path.join(OUT, "eval", "landmarks", "c.npy"), lm_a[::-1].copy())
    expected["a"] = [float(v) for v in lm_a]
    expected["b"] = [float(v) for v in lm_b.reshape(-1)]
    image(os.path.join(OUT, "train", "images", "a.png"), 10, 6, 1)
    image(os.path.join(OUT, "train", "images", "b.png"), 6, 10, 2)
    image(os.path.join(OUT, "eval", "images", "c.png"), 12, 8, 3)
    train = [
        {"source": "AffectNet", "image": "images/a.png", "id": "a", "landmark": "landmarks/a.npy",
         "conversations": [{"from": "human", "value": "Which AUs are active in this face? <image>"},
                           {"from": "gpt", "value": "AU6 and AU12 are active, a smile."}]},
        {"source": "AffectNet", "image": "images/b.png", "id": "b", "landmark": "landmarks/b.npy",
         "conversations": [{"from": "human", "value": "<image>\nDescribe the action units."},
                           {"from": "gpt", "value": "The brows are raised: AU1, AU2."},
                           {"from": "human", "value": "Anything else?"},
                           {"from": "gpt", "value": "No."}]},
    ]
    evaluation = [{"image": "images/c.png", "landmark": "landmarks/c.npy", "label": "1, 2, 4",
                   "gpt4": "The inner and outer brows are raised (AU1, AU2) and lowered (AU4)."}]
    with open(os.path.join(OUT, "train", "train_au_anno.json"), "w") as f:
        json.dump(train, f, indent=1)
    with open(os.path.join(OUT, "eval", "eval_au_anno.json"), "w") as f:
        json.dump(evaluation, f, indent=1)

    npy = os.path.join(OUT, "npy")
    os.makedirs(npy, exist_ok=True)
    with open(os.path.join(npy, "v2.npy"), "wb") as f:
        np.lib.format.write_array(f, np.arange(6, dtype="<f8").reshape(2, 3), version=(2, 0))
    np.save(os.path.join(npy, "fortran.npy"), np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3)))
    np.save(os.path.join(npy, "int32.npy"), np.arange(4, dtype=np.int32))
    np.save(os.path.join(npy, "short.npy"), np.zeros(210, dtype=np.float32))
    np.save(os.path.join(npy, "empty.npy"), np.zeros((0, 3), dtype=np.float32))
    with open(os.path.join(npy, "truncated.npy"), "wb") as f:
        blob = open(os.path.join(OUT, "train", "landmarks", "a.npy"), "rb").read()
        f.write(blob[:-4])
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f)


if __name__ == "__main__":
    main()
