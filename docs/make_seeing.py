"""Make the pictures of docs/seeing.md: `netspec show` on a trained LeNet run (runs/demo,
made by `make demo`), and on specs/filters.net and specs/hog_features.net with
scikit-image's public-domain camera photograph. Run from the repository root:
`python docs/make_seeing.py [RUN]`."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

ROOT = Path(__file__).resolve().parents[1]
IMG = ROOT / "docs" / "img"


def show(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "netspec", "show", *args], cwd=ROOT, check=True)


def main() -> None:
    run = sys.argv[1] if len(sys.argv) > 1 else "runs/demo"
    show(run, "--digit", "0", "-o", str(IMG / "lenet"))
    with tempfile.TemporaryDirectory() as tmp:
        photo = Path(tmp) / "camera.png"
        camera = Image.fromarray(np.asarray(data.camera())).resize((96, 96))
        camera.save(photo)
        show("specs/filters.net", "--input", str(photo), "-o", str(IMG / "filters"))
        # HOG's gradients and glyphs, on the photograph at 128x128 (16x16 cells of 8x8)
        Image.fromarray(np.asarray(data.camera())).resize((128, 128)).save(photo)
        pictures = Path(tmp) / "hog"
        show("specs/hog_features.net", "--input", str(photo), "-o", str(pictures))
        (IMG / "hog").mkdir(exist_ok=True)
        for name in ("hog-gradients.png", "hog-glyphs.png"):
            (IMG / "hog" / name).write_bytes((pictures / name).read_bytes())


if __name__ == "__main__":
    main()
