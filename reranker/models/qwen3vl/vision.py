"""Qwen3-VL image and video preprocessing with pillow + numpy (no torchvision).

The reference reranker resizes with qwen-vl-utils (`fetch_image` / `fetch_video`) and then calls
the HF processor with `do_resize=False`, so the math here is:
  smart_resize (factor 32) -> bicubic resize (PIL) -> patchify (uint8) -> (x - 127.5) / 127.5.
`(x - 127.5) / 127.5` is what the HF fast processors compute for rescale 1/255 followed by
normalise with mean = std = 0.5 (they fuse both into one normalise). The patch order is the one
of Qwen2VLImageProcessor / Qwen3VLVideoProcessor: (t, h/2, w/2, 2, 2) patches, each flattened as
(channel, temporal 2, 16, 16).

Videos (qwen-vl-utils >= 0.0.14) are resized by torchvision's tensor resize, which is NOT PIL:
float32 bicubic with antialias, clamped to [0, 255] and rounded (`resize_clip`, the same
`torch.nn.functional.interpolate` call torchvision makes). A video given as a list of frames
first sends every frame through the image rule with PIL bicubic (`fetch_image`), then the clip
through the video rule: 320x240 frames become 320x256, then 416x352.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from reranker.content import ImageItem, VideoItem
from reranker.errors import MediaError

PATCH_SIZE = 16
MERGE_SIZE = 2
TEMPORAL_PATCH = 2
FACTOR = PATCH_SIZE * MERGE_SIZE
MAX_RATIO = 200
IMAGE_MIN_PIXELS = 4 * FACTOR * FACTOR
IMAGE_MAX_PIXELS = 1800 * FACTOR * FACTOR
FRAME_MIN_PIXELS = 128 * FACTOR * FACTOR
FRAME_MAX_PIXELS = 768 * FACTOR * FACTOR
VIDEO_TOTAL_PIXELS = 10 * FRAME_MAX_PIXELS  # 7,864,320
PATCH_DIM = 3 * TEMPORAL_PATCH * PATCH_SIZE * PATCH_SIZE


@dataclass(frozen=True, eq=False)
class VisualInput:
    """One image or video, ready for the vision tower.

    data: a still image's resized (H, W, 3) uint8 frame (still=True; the GPU path cuts it into
    patches on the device), or a video's uint8 patches. pixel_values: the patches either way.
    """

    data: np.ndarray
    grid_thw: tuple[int, int, int]
    timestamps: tuple[float, ...] = ()  # videos: seconds per temporal patch (frame pair)
    still: bool = False

    @property
    def pixel_values(self) -> np.ndarray:
        """(grid_t * grid_h * grid_w, PATCH_DIM) uint8 patches, see normalize()."""
        return patchify_still(self.data)[0] if self.still else self.data

    @property
    def tokens_per_frame(self) -> int:
        """LLM tokens per temporal patch (grid_h * grid_w / 4)."""
        return self.grid_thw[1] * self.grid_thw[2] // (MERGE_SIZE * MERGE_SIZE)

    @property
    def num_tokens(self) -> int:
        return self.grid_thw[0] * self.tokens_per_frame


def smart_resize(
    height: int,
    width: int,
    min_pixels: float = IMAGE_MIN_PIXELS,
    max_pixels: float = IMAGE_MAX_PIXELS,
    factor: int = FACTOR,
) -> tuple[int, int]:
    """Target (height, width): multiples of factor, aspect kept, area within [min, max] pixels.

    qwen-vl-utils' formula; the floor branch keeps HF's max(factor, ...) guard so a very thin
    image never gets a zero side.
    """
    if height <= 0 or width <= 0:
        raise MediaError(f"image size must be positive, got {width}x{height}")
    ratio = max(height, width) / min(height, width)
    if ratio > MAX_RATIO:
        raise MediaError(f"image aspect ratio must be at most {MAX_RATIO}, got {ratio:.1f} ({width}x{height})")
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def video_frame_size(height: int, width: int, num_frames: int) -> tuple[int, int]:
    """Per-frame target size of a clip: qwen-vl-utils fetch_video with total_pixels 7,864,320."""
    max_pixels = max(
        min(FRAME_MAX_PIXELS, VIDEO_TOTAL_PIXELS / num_frames * TEMPORAL_PATCH),
        int(FRAME_MIN_PIXELS * 1.05),
    )
    return smart_resize(height, width, min_pixels=FRAME_MIN_PIXELS, max_pixels=max_pixels)


def resized_rgb(image: Image.Image, height: int, width: int) -> np.ndarray:
    """Bicubic resize to (height, width) as H x W x 3 uint8."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    if rgb.size != (width, height):
        rgb = rgb.resize((width, height), Image.Resampling.BICUBIC)
    return np.asarray(rgb, dtype=np.uint8)


CLIP_CHUNK_FRAMES = 8  # frames resized per interpolate call: bounds the float32 copy


def resize_clip(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T, height, width, 3) uint8 as torchvision's tensor resize does it:
    float32 bicubic with antialias (align_corners=False), clamp to [0, 255], round half to even."""
    if frames.shape[1:3] == (height, width):
        return frames
    out = np.empty((frames.shape[0], height, width, 3), dtype=np.uint8)
    for start in range(0, frames.shape[0], CLIP_CHUNK_FRAMES):
        chunk = torch.from_numpy(frames[start:start + CLIP_CHUNK_FRAMES]).permute(0, 3, 1, 2).float()
        resized = torch.nn.functional.interpolate(
            chunk, size=(height, width), mode="bicubic", align_corners=False, antialias=True
        )
        out[start:start + CLIP_CHUNK_FRAMES] = resized.clamp_(0, 255).round_().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return out


def normalize(patches: torch.Tensor) -> torch.Tensor:
    """uint8 patches -> float32 (x - 127.5) / 127.5, i.e. rescale 1/255 then mean = std = 0.5.

    Runs where the model is, so only a quarter of the bytes travel there.
    """
    return (patches.to(torch.float32) - 127.5) / 127.5


def patchify(frames: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int]]:
    """(T, H, W, 3) uint8 with T even -> uint8 ((T/2 * H/16 * W/16), 1536) patches, grid_thw.

    Patches are (t, h/2, w/2, 2, 2) in HF order, each flattened as (channel, temporal, 16, 16).
    They stay uint8 until normalize(): the same math as HF with a quarter of the copying.
    """
    count, height, width, channels = frames.shape
    grid_t, grid_h, grid_w = count // TEMPORAL_PATCH, height // PATCH_SIZE, width // PATCH_SIZE
    patches = frames.reshape(
        grid_t, TEMPORAL_PATCH,
        grid_h // MERGE_SIZE, MERGE_SIZE, PATCH_SIZE,
        grid_w // MERGE_SIZE, MERGE_SIZE, PATCH_SIZE,
        channels,
    )
    patches = patches.transpose(0, 2, 5, 3, 6, 8, 1, 4, 7)
    flat = np.ascontiguousarray(patches).reshape(grid_t * grid_h * grid_w, PATCH_DIM)
    return flat, (grid_t, grid_h, grid_w)


def patchify_still(frame: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int]]:
    """patchify() of one H x W x 3 frame repeated twice, without copying the repeat beforehand."""
    height, width = frame.shape[:2]
    patches = patchify_stills(torch.from_numpy(np.require(frame, requirements=("C", "W")))[None])
    return patches.numpy(), (1, height // PATCH_SIZE, width // PATCH_SIZE)


def patchify_stills(frames: torch.Tensor) -> torch.Tensor:
    """(n, H, W, 3) uint8 -> (n * H/16 * W/16, 1536): each frame repeated over the temporal patch and
    cut as patchify() does, on whatever device the frames are (the GPU path cuts them there)."""
    n, height, width, channels = frames.shape
    grid_h, grid_w = height // PATCH_SIZE, width // PATCH_SIZE
    patches = frames.reshape(n, grid_h // MERGE_SIZE, MERGE_SIZE, PATCH_SIZE, grid_w // MERGE_SIZE, MERGE_SIZE,
                             PATCH_SIZE, channels)
    patches = patches.permute(0, 1, 4, 2, 5, 7, 3, 6)[:, :, :, :, :, :, None]
    patches = patches.expand(*patches.shape[:6], TEMPORAL_PATCH, PATCH_SIZE, PATCH_SIZE)
    return patches.reshape(n * grid_h * grid_w, PATCH_DIM)


def prepare_image(item: ImageItem) -> VisualInput:
    """An image as one temporal patch (the frame repeated twice)."""
    width, height = item.image.size
    target_h, target_w = smart_resize(height, width)
    frame = resized_rgb(item.image, target_h, target_w)
    return VisualInput(frame, (1, target_h // PATCH_SIZE, target_w // PATCH_SIZE), still=True)


def prepare_video(item: VideoItem) -> VisualInput:
    """A clip: frames padded to an even count (last frame repeated), resized, patchified.

    A frame list (item.from_frames) first goes frame by frame through the image rule (PIL
    bicubic); then every clip goes through the video rule (resize_clip). The timestamp of each
    frame pair is the mean of its two frames' times (transformers 4.57).
    """
    if not item.frames:
        raise MediaError(f"video {item.digest[:12]} has no frames")
    for frame in item.frames:
        _check_frame(frame, item.digest)
    frames = [image_rule(f) for f in item.frames] if item.from_frames else list(item.frames)
    times = list(item.timestamps)
    if len(frames) % TEMPORAL_PATCH:
        frames.append(frames[-1])
        times.append(times[-1])
    height, width = frames[0].shape[:2]
    if any(f.shape[:2] != (height, width) for f in frames):
        raise MediaError(f"video {item.digest[:12]} frames differ in size")
    target_h, target_w = video_frame_size(height, width, len(frames))
    pixel_values, grid = patchify(resize_clip(np.stack(frames), target_h, target_w))
    pair_times = tuple((times[i] + times[i + 1]) / 2 for i in range(0, len(times), TEMPORAL_PATCH))
    return VisualInput(pixel_values, grid, pair_times)


def image_rule(frame: np.ndarray) -> np.ndarray:
    """One frame of a frame list through the image rule (qwen-vl-utils fetch_image): smart_resize
    with the image limits, PIL bicubic."""
    height, width = frame.shape[:2]
    target_h, target_w = smart_resize(height, width)
    return resized_rgb(Image.fromarray(frame), target_h, target_w)


def _check_frame(frame: np.ndarray, digest: str) -> None:
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise MediaError(f"video {digest[:12]} frame must be HxWx3 uint8, got {frame.shape} {frame.dtype}")
