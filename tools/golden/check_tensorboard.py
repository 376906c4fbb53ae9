"""Reads a Facet-written TensorBoard event file with TensorBoard's own loader and checks its contents.

Usage: check_tensorboard.py EVENT_FILE
Expects what tests/core/test_tensorboard.cpp writes: scalars "train/loss" = 1/(step+1) for steps 0..9,
"eval/f1" = 0.5 at step 10, and one 3x2 RGB image "eval/faces" at step 10. Exits non-zero on mismatch.
"""
import math
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def main(path: str) -> int:
    acc = EventAccumulator(path, size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    tags = acc.Tags()
    loss = acc.Scalars("train/loss")
    assert [e.step for e in loss] == list(range(10)), [e.step for e in loss]
    for e in loss:
        assert math.isclose(e.value, 1.0 / (e.step + 1), rel_tol=1e-6), (e.step, e.value)
    f1 = acc.Scalars("eval/f1")
    assert len(f1) == 1 and f1[0].step == 10 and f1[0].value == 0.5, f1
    assert "eval/faces" in tags["images"], tags
    image = acc.Images("eval/faces")[0]
    assert (image.step, image.width, image.height) == (10, 2, 3), image
    assert image.encoded_image_string.startswith(b"\x89PNG"), image.encoded_image_string[:8]
    print(f"ok: {len(loss)} loss scalars, 1 f1 scalar, 1 image")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
