"""Dominant colour words of a picture: the basic colour names covering most of its pixels."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

THUMB_SIDE = 48
GREY_SATURATION = 0.18  # below this a pixel counts as black, grey or white
MONOCHROME_SHARE = 0.97  # share of grey among the lit pixels that makes a black-and-white picture
HUE_NAMES = (  # (upper hue bound in degrees, name), hue measured on the 0..360 circle
    (15.0, "red"),
    (40.0, "orange"),
    (70.0, "yellow"),
    (165.0, "green"),
    (255.0, "blue"),
    (290.0, "purple"),
    (340.0, "pink"),
    (360.0, "red"),
)


@dataclass(frozen=True)
class ColourProfile:
    shares: dict[str, float]  # share of pixels per colour name; the shares sum to 1
    monochrome: bool


def colour_profile(image: Image.Image) -> ColourProfile:
    """Colour names of a small thumbnail's pixels, and whether the picture has no colour."""
    thumb = image.convert("RGB").resize((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BILINEAR)
    hsv = np.asarray(thumb.convert("HSV"), dtype=np.float32).reshape(-1, 3) / 255.0
    hue, saturation, value = hsv[:, 0] * 360.0, hsv[:, 1], hsv[:, 2]
    names = np.empty(len(hsv), dtype=object)
    grey = saturation < GREY_SATURATION
    names[grey & (value < 0.25)] = "black"
    names[grey & (value >= 0.25) & (value < 0.8)] = "grey"
    names[grey & (value >= 0.8)] = "white"
    chromatic = ~grey
    names[chromatic & (value < 0.2)] = "black"
    lit = chromatic & (value >= 0.2)
    bounds = np.array([bound for bound, _ in HUE_NAMES])
    hue_names = np.array([name for _, name in HUE_NAMES], dtype=object)
    names[lit] = hue_names[np.searchsorted(bounds, hue[lit], side="right").clip(max=len(bounds) - 1)]
    brownish = lit & (hue < 45.0) & (value < 0.6)
    names[brownish] = "brown"
    words, counts = np.unique(names.astype(str), return_counts=True)
    shares = {str(w): float(c) / len(hsv) for w, c in zip(words, counts)}
    visible = value >= 0.25
    grey_share = float(grey[visible].mean()) if visible.any() else 1.0
    return ColourProfile(shares=shares, monochrome=grey_share >= MONOCHROME_SHARE)


def colour_words(profile: ColourProfile, count: int, min_share: float) -> list[tuple[str, float]]:
    """The `count` most common colours with at least `min_share` (weights: pixel shares);
    a picture without colour is described as "black and white" instead."""
    if count and profile.monochrome:
        return [("black and white", 1.0)]
    ranked = sorted(profile.shares.items(), key=lambda kv: (-kv[1], kv[0]))
    return [(name, share) for name, share in ranked[:count] if share >= min_share]
