"""Our vision tower pass equals HF's (float32, tiny checkpoint, CPU): stills cut into patches on the
device are byte-identical to the CPU patchify; merged and deepstack features match
get_image_features / get_video_features for mixed sizes (reordered for batched attention and
restored), equal sizes (one batched call) and video frame pairs; the compiled pieces trace as
one graph each (Dynamo's eager backend: graph breaks fail)."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from reranker.content import ImageItem, VideoItem  # noqa: E402
from reranker.models.qwen3vl.fastpath import _visual_features, compiled_ops  # noqa: E402
from reranker.models.qwen3vl.vision import patchify_stills, prepare_image, prepare_video  # noqa: E402
from reranker.models.qwen3vl.visiontower import (  # noqa: E402
    VisionOps, VisionTower, _runs, device_patches, stacked_visuals,
)


@pytest.fixture(scope="module")
def model(tiny_qwen_dir):
    from transformers import Qwen3VLForConditionalGeneration

    loaded = Qwen3VLForConditionalGeneration.from_pretrained(str(tiny_qwen_dir), dtype=torch.float32,
                                                           attn_implementation="sdpa")
    return loaded.eval()


def still(height: int, width: int, seed: int):
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return prepare_image(ImageItem(Image.fromarray(pixels), f"{seed:064x}"))


def video(count: int, seed: int):
    rng = np.random.default_rng(seed)
    frames = tuple(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8) for _ in range(count))
    return prepare_video(VideoItem(frames, tuple(float(i) for i in range(count)), f"{seed:064x}", float(count), 1.0))


def test_device_patches_equal_cpu_patchify():
    visuals = [still(64, 96, 1), still(64, 96, 2), still(96, 64, 3), video(4, 4), still(64, 96, 5)]
    flat = stacked_visuals(visuals, pin=False)
    assert flat is not None and flat.dtype == torch.uint8
    expected = np.concatenate([v.pixel_values for v in visuals])
    assert torch.equal(device_patches(flat, visuals), torch.from_numpy(expected))
    frames = torch.from_numpy(np.stack([visuals[0].data, visuals[1].data]))
    assert torch.equal(patchify_stills(frames), torch.from_numpy(np.concatenate([v.pixel_values for v in visuals[:2]])))


def test_runs_group_equal_consecutive_units():
    assert _runs([4, 4, 6, 6, 6, 4]) == [(0, 2, 4), (8, 3, 6), (26, 1, 4)]
    assert _runs([]) == []


@pytest.mark.parametrize("kind", ["mixed", "equal", "video"])
def test_tower_equals_hf(model, kind):
    visuals = {
        "mixed": [still(96, 64, 1), still(64, 64, 2), still(64, 96, 3), still(64, 64, 4)],
        "equal": [still(64, 96, n) for n in range(4)],
        "video": [video(4, 5), video(3, 6)],
    }[kind]
    features = model.model.get_video_features if kind == "video" else model.model.get_image_features
    flat = stacked_visuals(visuals, pin=False)
    assert flat is not None
    patches = device_patches(flat, visuals)
    with torch.inference_mode():
        hf_embeds, hf_deep = _visual_features(features, visuals, patches)
        tower = VisionTower(model.model.visual)
        ours, deep = tower.features(patches, [v.grid_thw for v in visuals], VisionOps())
    assert ours.shape == hf_embeds.shape
    assert (ours - hf_embeds).abs().max().item() < 1e-5
    assert len(deep) == len(hf_deep) == 2
    for mine, theirs in zip(deep, hf_deep):
        assert (mine - theirs).abs().max().item() < 1e-5


def test_compiled_tower_traces_as_one_graph_per_piece(model):
    visuals = [still(64, 96, 7), still(96, 64, 8)]
    flat = stacked_visuals(visuals, pin=False)
    assert flat is not None
    patches = device_patches(flat, visuals)
    tower = VisionTower(model.model.visual)
    grids = [v.grid_thw for v in visuals]
    with torch.inference_mode():
        eager, _ = tower.features(patches, grids, VisionOps())
        compiled, _ = tower.features(patches, grids, compiled_ops(backend="eager").vision)
    assert (compiled - eager).abs().max().item() < 1e-6
