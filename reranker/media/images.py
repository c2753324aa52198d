"""Image decoding with limits: size checked from the header before any pixel is decoded."""
from __future__ import annotations

import hashlib
import io

from PIL import Image, ImageOps, UnidentifiedImageError

from reranker.content import ImageItem
from reranker.errors import MediaError
from reranker.settings import Limits

_TRANSPARENT_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


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
            opened.load()
            rgb = to_rgb(ImageOps.exif_transpose(opened))
        except Exception as exc:  # truncated data, broken EXIF, bad chunks...
            raise MediaError(f"{what}: image data is corrupt or truncated ({_reason(exc)})") from None
    return ImageItem(image=rgb, digest=digest or hashlib.sha256(data).hexdigest())


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB copy of `image`; transparent pixels are flattened onto white.

    RGBA is pasted on white with its alpha as the mask, as the Qwen-VL reference (qwen-vl-utils
    `to_rgb`) does; palette, grey+alpha and colour-keyed images are first expanded to RGBA.
    """
    if image.mode in _TRANSPARENT_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGB", rgba.size, (255, 255, 255))
        white.paste(rgba, mask=rgba.getchannel("A"))
        return white
    return image.convert("RGB")


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."
