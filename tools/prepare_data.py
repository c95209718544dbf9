"""Prepare the offline training and validation images.

Training (the only sources we train on): the wallpapers of Debian's plasma-workspace-wallpapers
(/usr/share/wallpapers, largest file of each wallpaper) and ukui-wallpapers (/usr/share/backgrounds),
and the RGB images bundled in scikit-image's wheel (skimage/data).
Validation: photos from Debian's opencv-doc (/usr/share/doc/opencv-doc/examples/data).

Wallpapers are large and smooth; each is resized (Lanczos) so its longer side is --max-side,
which makes a patch hold more detail, like DIV2K-sized photos. Writes PNGs to data/train and data/val.

    sudo apt-get install plasma-workspace-wallpapers ukui-wallpapers opencv-doc
    python tools/prepare_data.py
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
from PIL import Image

WALLPAPERS = Path("/usr/share/wallpapers")
UKUI = Path("/usr/share/backgrounds")
OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
# Natural colour photos from opencv-doc; every other file there is a synthetic pattern or grey.
VALIDATION = [
    "apple.jpg", "baboon.jpg", "building.jpg", "butterfly.jpg", "fruits.jpg", "home.jpg",
    "messi5.jpg", "orange.jpg", "aero1.jpg", "board.jpg", "smarties.png",
    "squirrel_cls.jpg", "stuff.jpg", "leuvenA.jpg", "HappyFish.jpg",
]


def _pixels(path: Path) -> int:
    m = re.match(r"(\d+)x(\d+)", path.stem)
    if m:
        return int(m[1]) * int(m[2])
    with Image.open(path) as im:
        return im.size[0] * im.size[1]


def training_sources() -> list[Path]:
    """Every training image: one (largest) file per plasma wallpaper variant, ukui, skimage."""
    out: list[Path] = []
    for folder in sorted(WALLPAPERS.glob("*/contents/images*")):
        files = [p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg")]
        if files:
            out.append(max(files, key=_pixels))
    out += sorted(p for p in UKUI.glob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    import skimage

    skdata = Path(skimage.__file__).parent / "data"
    for p in sorted(skdata.glob("*")):
        if p.suffix.lower() in (".png", ".jpg"):
            with Image.open(p) as im:
                if im.mode in ("RGB", "RGBA") and min(im.size) >= 128:
                    out.append(p)
    return out


def _save_rgb(src: Path, dst: Path, max_side: int | None) -> tuple[int, int]:
    with Image.open(src) as im:
        im = im.convert("RGB")
        if max_side and max(im.size) > max_side:
            f = max_side / max(im.size)
            im = im.resize((round(im.size[0] * f), round(im.size[1] * f)), Image.LANCZOS)
        arr = np.asarray(im)
    Image.fromarray(arr).save(dst)
    return arr.shape[1], arr.shape[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("data"))
    ap.add_argument("--max-side", type=int, default=1280)
    args = ap.parse_args()
    if not WALLPAPERS.is_dir() or not OPENCV_DATA.is_dir():
        raise SystemExit("install plasma-workspace-wallpapers ukui-wallpapers opencv-doc first")
    train, val = args.out / "train", args.out / "val"
    train.mkdir(parents=True, exist_ok=True)
    val.mkdir(parents=True, exist_ok=True)
    for i, src in enumerate(training_sources()):
        name = f"{i:03d}_{src.parent.parent.parent.name if 'wallpapers' in str(src) else src.stem}.png"
        size = _save_rgb(src, train / name, args.max_side)
        print(f"train {name} {size[0]}x{size[1]} <- {src}")
    for name in VALIDATION:
        size = _save_rgb(OPENCV_DATA / name, val / (Path(name).stem + ".png"), None)
        print(f"val   {name} {size[0]}x{size[1]}")


if __name__ == "__main__":
    main()
