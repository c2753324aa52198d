"""Video preprocessing matches the Qwen3-VL reference (qwen-vl-utils >= 0.0.14) pixel for pixel.

Frame lists: each frame through the image rule (PIL bicubic), then the clip through the video
rule (torchvision's tensor resize = float32 bicubic with antialias, clamp, round). File videos:
the video rule only. Pixels and tiny-checkpoint scores are pinned; a single PIL resize (the old
path) changes both.
"""
from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest
import torch
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from reranker.content import Content, ImageItem, Pair, VideoItem  # noqa: E402
from reranker.media.video import video_from_frames  # noqa: E402
from reranker.models.base import Placement  # noqa: E402
from reranker.models.qwen3vl import BACKEND  # noqa: E402
from reranker.models.qwen3vl.vision import prepare_video, resize_clip  # noqa: E402
from reranker.settings import Limits  # noqa: E402


def frame_list() -> VideoItem:
    rng = np.random.default_rng(5)
    frames = [
        ImageItem(Image.fromarray(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)), f"{i:064x}")
        for i in range(3)
    ]
    return video_from_frames(frames, Limits(), "documents[0].video")


def file_video() -> VideoItem:
    rng = np.random.default_rng(6)
    frames = tuple(rng.integers(0, 256, (180, 240, 3), dtype=np.uint8) for _ in range(4))
    return VideoItem(frames, (0.0, 1.0, 2.0, 3.0), "f" * 64, 4.0, 1.0)


def torchvision_resize(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """What torchvision.transforms.functional.resize does to a uint8 (T, C, H, W) tensor with
    BICUBIC and antialias=True: cast to float32, interpolate, clamp, round, cast back."""
    tensor = torch.from_numpy(frames).permute(0, 3, 1, 2).to(torch.float32)
    out = torch.nn.functional.interpolate(tensor, size=[height, width], mode="bicubic", align_corners=False,
                                          antialias=True)
    return out.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def unpatchify(pixel_values: np.ndarray, grid: tuple[int, int, int]) -> np.ndarray:
    """(T, H, W, 3) frames back from Qwen patches (inverse of vision.patchify)."""
    t, h, w = grid
    patches = pixel_values.reshape(t, h // 2, w // 2, 2, 2, 3, 2, 16, 16)
    frames = patches.transpose(0, 6, 1, 3, 7, 2, 4, 8, 5)
    return frames.reshape(t * 2, h * 16, w * 16, 3)


def digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]


def test_frame_list_goes_through_the_image_rule_then_the_video_rule():
    video = frame_list()
    visual = prepare_video(video)
    assert visual.grid_thw == (2, 22, 26)  # 320x240 -> 320x256 (image rule) -> 416x352 (video rule)
    frames = unpatchify(visual.pixel_values, visual.grid_thw)
    image_rule = np.stack([np.asarray(Image.fromarray(f).resize((320, 256), Image.Resampling.BICUBIC))
                           for f in video.frames])
    assert np.array_equal(frames, torchvision_resize(image_rule, 352, 416))
    assert digest(visual.pixel_values) == "250d267102ee90b8"
    assert int(visual.pixel_values.astype(np.int64).sum()) == 224044941


def test_file_video_uses_the_tensor_resize_not_pil():
    visual = prepare_video(file_video())
    height, width = visual.grid_thw[1] * 16, visual.grid_thw[2] * 16
    frames = unpatchify(visual.pixel_values, visual.grid_thw)
    expected = torchvision_resize(np.stack(file_video().frames), height, width)
    assert np.array_equal(frames, expected)
    pil = np.stack([np.asarray(Image.fromarray(f).resize((width, height), Image.Resampling.BICUBIC))
                    for f in file_video().frames])
    assert not np.array_equal(frames, pil)  # the two filters do differ on this clip


def test_resize_clip_in_chunks_equals_one_call():
    frames = np.random.default_rng(7).integers(0, 256, (19, 30, 40, 3), dtype=np.uint8)
    assert np.array_equal(resize_clip(frames, 64, 96), torchvision_resize(frames, 64, 96))
    assert resize_clip(frames, 30, 40) is frames


@pytest.fixture(scope="module")
def scorer(tiny_qwen_dir):
    loaded = BACKEND.load(tiny_qwen_dir, Placement(device="cpu", dtype="float32"), "tiny-v1")
    yield loaded
    loaded.close()


def test_video_scores_are_pinned(scorer):
    query = Content(text="a clip of noise")
    scores = scorer.score([Pair(query, Content(videos=(frame_list(),))), Pair(query, Content(videos=(file_video(),)))])
    assert scores == pytest.approx(PINNED_SCORES, abs=1e-6)


PINNED_SCORES = [0.599358320236206, 0.61017245054245]  # this code, float32, CPU; the old PIL path differs
