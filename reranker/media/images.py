"""Image decoding with limits: size checked from the header before any pixel is decoded, and the
pixels kept only at the working resolution (at most `max_decoded_pixels`).

A JPEG is decoded already scaled down (`draft`: the DCT is decoded at 1/2, 1/4 or 1/8); other
formats are decoded once at their size (at most `max_image_pixels`, refused above from the header)
and scaled down at once, before any copy (EXIF rotation, RGB conversion) is made.
"""
from __future__ import annotations

import hashlib
import io
import math

from PIL import Image, ImageOps, UnidentifiedImageError

from reranker.content import ImageItem
from reranker.errors import MediaError
from reranker.settings import Limits

_TRANSPARENT_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_RESIZABLE_MODES = ("RGB", "RGBA", "L", "LA", "RGBa", "La", "I", "F")


def decode_image(data: bytes, limits: Limits, what: str, digest: str | None = None) -> ImageItem:
    """Decode `data` to an RGB ImageItem (EXIF orientation applied, transparency on white).

    `digest` is the sha256 hex of `data` when the caller already has it.
    """
    try:
        opened = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise MediaError(
            f"{what}: image is too large ({_reason(exc)}); limit max_image_pixels={limits.max_image_pixels}"
        ) from None
    except UnidentifiedImageError:
        raise MediaError(f"{what}: not a decodable image (unknown or unsupported format)") from None
    except Exception as exc:  # pillow raises many types on hostile bytes; all mean "undecodable"
        raise MediaError(f"{what}: not a decodable image ({_reason(exc)})") from None
    with opened:
        width, height = opened.size
        if width <= 0 or height <= 0:
            raise MediaError(f"{what}: image has an empty size {width}x{height}")
        if width * height > limits.max_image_pixels:
            raise MediaError(
                f"{what}: image is {width}x{height} = {width * height} pixels, over the limit "
                f"max_image_pixels={limits.max_image_pixels}"
            )
        try:
            rgb = to_rgb(ImageOps.exif_transpose(_load_scaled(opened, limits.max_decoded_pixels)))
        except Exception as exc:  # truncated data, broken EXIF, bad chunks...
            raise MediaError(f"{what}: image data is corrupt or truncated ({_reason(exc)})") from None
    return ImageItem(image=rgb, digest=digest or hashlib.sha256(data).hexdigest())


def fit_within(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """(width, height) scaled down, aspect kept, to at most max_pixels; unchanged if within."""
    if width * height <= max_pixels:
        return width, height
    scale = math.sqrt(max_pixels / (width * height))
    return max(1, math.floor(width * scale)), max(1, math.floor(height * scale))


def _load_scaled(opened: Image.Image, max_pixels: int) -> Image.Image:
    target = fit_within(opened.width, opened.height, max_pixels)
    if target == opened.size:
        opened.load()
        return opened
    opened.draft("RGB", target)  # JPEG only: decode at the smallest DCT scale >= target
    opened.load()
    image = opened
    if image.mode not in _RESIZABLE_MODES:
        image = image.convert("RGBA" if _is_transparent(image) else "RGB")
    # reducing_gap: a fast integer box reduction first, then bicubic on the small image
    return image.resize(target, Image.Resampling.BICUBIC, reducing_gap=3.0)


def _is_transparent(image: Image.Image) -> bool:
    return image.mode in _TRANSPARENT_MODES or "transparency" in image.info


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB copy of `image`; transparent pixels are flattened onto white.

    RGBA is pasted on white with its alpha as the mask, as the Qwen-VL reference (qwen-vl-utils
    `to_rgb`) does; palette, grey+alpha and colour-keyed images are first expanded to RGBA.
    """
    if _is_transparent(image):
        rgba = image.convert("RGBA")
        white = Image.new("RGB", rgba.size, (255, 255, 255))
        white.paste(rgba, mask=rgba.getchannel("A"))
        return white
    return image.convert("RGB")


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."
