"""Real photographs for the face-alignment tests, from the scikit-image wheel's bundled data.

Writes under tests/fixtures/faces/:
  astronaut.jpg  skimage.data.astronaut(): Eileen Collins' NASA portrait (public domain), 512x512,
                 one frontal face; dlib must find it and its 68 landmarks
  chelsea.jpg    skimage.data.chelsea(): a cat, 451x300; no human face, so `facet data align` must
                 list it under no_face.txt instead of writing a crop
Both are re-encoded as JPEG (quality 90) to keep the fixtures small.

Run `make goldens` (or this script with the project's venv python) to regenerate.
"""
import os

from PIL import Image
from skimage import data

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "tests", "fixtures", "faces")


def main() -> None:
    os.makedirs(OUT, exist_ok=True)
    for name, image in (("astronaut", data.astronaut()), ("chelsea", data.chelsea())):
        path = os.path.join(OUT, name + ".jpg")
        Image.fromarray(image).save(path, quality=90)
        print(f"{path}: {image.shape}")


if __name__ == "__main__":
    main()
