"""Thumbnails (a data: URI) for images and the first frame of videos."""
from __future__ import annotations

import base64
import io

import av
from PIL import Image, UnidentifiedImageError

from ui.entries import Entry
from ui.render import Preview

THUMB_PIXELS = 96
LABEL_CHARS = 80


def _uri(image: Image.Image) -> str:
    image = image.convert("RGB")
    image.thumbnail((THUMB_PIXELS, THUMB_PIXELS))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def is_image(path: str) -> bool:
    """True when Pillow can identify the file as an image (its header only; no full decode)."""
    try:
        with Image.open(path) as image:
            image.verify()
        return True
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError, SyntaxError, ValueError):
        return False


def image_thumbnail(path: str) -> str | None:
    try:
        with Image.open(path) as image:
            return _uri(image)
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError):
        return None


def video_thumbnail(path: str) -> str | None:
    try:
        with av.open(path) as container:
            frame = next(container.decode(video=0))
            return _uri(frame.to_image())
    except (OSError, av.FFmpegError, StopIteration):
        return None


def _name(path: str) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1]


def preview(item: Entry) -> Preview:
    """Label (text, else file names) and thumbnail (image first, else a video frame)."""
    parts = [item.text] if item.text else []
    parts += [f"[image {_name(item.image)}]"] if item.image else []
    parts += [f"[video {_name(item.video)}]"] if item.video else []
    label = " ".join(parts)
    label = label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "…"
    thumb = image_thumbnail(item.image) if item.image else (video_thumbnail(item.video) if item.video else None)
    return Preview(label=label, thumb=thumb, kind=item.kind)
