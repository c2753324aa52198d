"""Regenerate the example media in assets/examples from scikit-image's bundled photos.

Deterministic: the same scikit-image and PyAV versions give the same files. The committed
outputs are what ship; scikit-image is needed only to run this script.

    .venv/bin/python scripts/make_examples.py [--out assets/examples]
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from PIL import Image

MAX_SIDE = 448
JPEG_QUALITY = 85
VIDEO_SIZE = (256, 192)
VIDEO_FPS = 12
VIDEO_SECONDS = 3

PHOTOS = {  # file stem -> scikit-image loader name
    "chelsea": "chelsea",
    "coffee": "coffee",
    "rocket": "rocket",
    "astronaut": "astronaut",
    "camera": "camera",
    "hubble": "hubble_deep_field",
    "clock": "clock",
    "coins": "coins",
    "retina": "retina",
    "microscopy": "immunohistochemistry",
}

Box = tuple[float, float, float, float]  # left, top, right, bottom as fractions of the photo


@dataclass(frozen=True)
class Crop:
    name: str
    photo: str
    box: Box


@dataclass(frozen=True)
class Move:
    """A video: the camera glides from one crop box to another over the photo."""

    name: str
    photo: str
    start: Box
    end: Box


QUERY_CROPS = (
    Crop("query_cat_face", "chelsea", (0.25, 0.0, 0.75, 0.75)),
    Crop("query_espresso", "coffee", (0.1, 0.05, 0.75, 0.95)),
)

MOVES = (
    Move("cat_pan", "chelsea", (0.0, 0.0, 0.66, 1.0), (0.34, 0.0, 1.0, 1.0)),
    Move("rocket_zoom", "rocket", (0.0, 0.0, 1.0, 1.0), (0.3, 0.15, 0.7, 0.75)),
    Move("coffee_zoom", "coffee", (0.0, 0.0, 1.0, 1.0), (0.15, 0.1, 0.7, 0.9)),
    Move("clock_pan", "clock", (0.0, 0.0, 0.7, 1.0), (0.3, 0.0, 1.0, 1.0)),
)


def load_photo(loader: str) -> Image.Image:
    from skimage import data

    array = getattr(data, loader)()
    return Image.fromarray(np.asarray(array)).convert("RGB")


def shrink(image: Image.Image, max_side: int = MAX_SIDE) -> Image.Image:
    scale = max_side / max(image.size)
    if scale >= 1.0:
        return image
    return image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)


def crop(image: Image.Image, box: Box) -> Image.Image:
    w, h = image.size
    return image.crop((round(box[0] * w), round(box[1] * h), round(box[2] * w), round(box[3] * h)))


def write_video(path: Path, photo: Image.Image, move: Move) -> None:
    frames = VIDEO_FPS * VIDEO_SECONDS
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=VIDEO_FPS)
        stream.width, stream.height = VIDEO_SIZE
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "24", "preset": "medium", "threads": "1"}
        stream.codec_context.options = {"crf": "24", "preset": "medium", "threads": "1"}
        for index in range(frames):
            t = index / (frames - 1)
            box = tuple(a + (b - a) * t for a, b in zip(move.start, move.end))
            frame = crop(photo, box).resize(VIDEO_SIZE, Image.Resampling.BICUBIC)
            for packet in stream.encode(av.VideoFrame.from_image(frame)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def main(out: Path) -> None:
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    photos = {stem: load_photo(loader) for stem, loader in PHOTOS.items()}
    for stem, photo in photos.items():
        shrink(photo).save(out / "images" / f"{stem}.jpg", quality=JPEG_QUALITY, optimize=True)
    for item in QUERY_CROPS:
        shrink(crop(photos[item.photo], item.box), 256).save(
            out / "images" / f"{item.name}.jpg", quality=JPEG_QUALITY, optimize=True
        )
    for move in MOVES:
        write_video(out / "videos" / f"{move.name}.mp4", photos[move.photo], move)
    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"wrote {out} ({total / 1e6:.2f} MB in all)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "assets" / "examples")
    main(parser.parse_args().out)
