"""The mini backend with its real shipped weights, on CPU."""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch
from PIL import Image

from reranker.content import Content, ImageItem, Pair, VideoItem
from reranker.errors import InputError, ModelLoadError, NotReady
from reranker.models.base import Placement, Reranker
from reranker.models.mini import BACKEND, MiniReranker
from reranker.models.mini.cache import LruCache
from reranker.models.mini.colours import colour_profile, colour_words
from reranker.models.mini.manifest import load_config
from reranker.models.mini.scorer import subsample

ROOT = Path(__file__).resolve().parents[1]
V1 = ROOT / "models" / "mini-v1"
EXAMPLES = ROOT / "assets" / "examples"
CPU = Placement(device="cpu", dtype="float32")


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Two cores shared with other test processes: one intra-op thread is several times faster."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def image_item(name: str) -> ImageItem:
    data = (EXAMPLES / "images" / name).read_bytes()
    with Image.open(EXAMPLES / "images" / name) as opened:
        return ImageItem(opened.convert("RGB"), hashlib.sha256(data).hexdigest())


def video_item(name: str, frames: int = 8) -> VideoItem:
    import av

    data = (EXAMPLES / "videos" / name).read_bytes()
    with av.open(str(EXAMPLES / "videos" / name)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        rate = float(container.streams.video[0].average_rate)
    picks = subsample(len(decoded), frames)
    return VideoItem(
        frames=tuple(decoded[i] for i in picks),
        timestamps=tuple(i / rate for i in picks),
        digest=hashlib.sha256(data).hexdigest(),
        duration=len(decoded) / rate,
        source_fps=rate,
    )


@pytest.fixture(scope="module")
def v1() -> Iterator[MiniReranker]:
    started = time.perf_counter()
    model = BACKEND.load(V1, CPU, "mini-v1")
    print(f"\nmini-v1 loaded in {time.perf_counter() - started:.2f} s")
    yield model
    model.close()


def test_backend_detects_mini_directories(tmp_path: Path) -> None:
    assert BACKEND.matches(V1)
    assert not BACKEND.matches(tmp_path)
    (tmp_path / "reranker.json").write_text(json.dumps({"backend": "qwen3-vl"}))
    assert not BACKEND.matches(tmp_path)
    (tmp_path / "reranker.json").write_text("{not json")
    assert not BACKEND.matches(tmp_path)


def test_manifest_errors_name_the_key(tmp_path: Path) -> None:
    (tmp_path / "reranker.json").write_text(json.dumps({"backend": "mini", "labels_per_image": 0}))
    with pytest.raises(ModelLoadError, match="labels_per_image"):
        load_config(tmp_path)
    (tmp_path / "reranker.json").write_text(json.dumps({"backend": "mini", "colour": 1}))
    with pytest.raises(ModelLoadError, match="'colour'"):
        load_config(tmp_path)
    (tmp_path / "reranker.json").write_text(json.dumps({"backend": "mini", "classifiers": ["resnet"]}))
    with pytest.raises(ModelLoadError, match="classifiers"):
        load_config(tmp_path)


def test_estimate_and_dtypes() -> None:
    assert BACKEND.supported_dtypes("cpu") == ["float32"]
    estimate = BACKEND.estimate_bytes(V1, "float32")
    assert 100_000_000 < estimate < 120_000_000  # MiniLM 91 MB + Lite0 19 MB of float32
    assert BACKEND.estimate_bytes(ROOT / "models" / "mini-v2", "float32") > estimate
    with pytest.raises(ModelLoadError, match="float16"):
        BACKEND.load(V1, Placement(device="cpu", dtype="float16"), "x")


def test_info(v1: MiniReranker) -> None:
    assert isinstance(v1, Reranker)
    info = v1.info
    assert (info.id, info.name, info.version, info.backend) == ("mini-v1", "mini", "1.0", "mini")
    assert (info.dtype, info.device, info.path) == ("float32", "cpu", str(V1))
    assert abs(info.bytes_in_memory - BACKEND.estimate_bytes(V1, "float32")) < 2_000_000


def test_cat_photo_beats_unrelated_text(v1: MiniReranker) -> None:
    query = Content(text="a cat")
    cat = Content(images=(image_item("chelsea.jpg"),))
    stocks = Content(text="Stock markets fell sharply as investors worried about interest rates.")
    started = time.perf_counter()
    scores = v1.score([Pair(query, stocks), Pair(query, cat)])
    print(f"\n2 pairs (one new image) in {1000 * (time.perf_counter() - started):.0f} ms")
    assert scores[1] > scores[0] + 0.3
    assert all(0.0 <= s <= 1.0 for s in scores)


def test_video_document_scores_and_matches_its_topic(v1: MiniReranker) -> None:
    video = Content(videos=(video_item("coffee_zoom.mp4"),))
    scores = v1.score([Pair(Content(text="espresso coffee"), video), Pair(Content(text="football"), video)])
    assert 0.0 <= scores[1] < scores[0] <= 1.0


def test_scores_are_deterministic_and_in_document_order(v1: MiniReranker) -> None:
    query = Content(text="a rocket launch")
    docs = [Content(text="The rocket lifted off at dawn."), Content(images=(image_item("coffee.jpg"),))]
    forward = v1.score([Pair(query, d) for d in docs])
    backward = v1.score([Pair(query, d) for d in reversed(docs)])
    assert forward == list(reversed(backward))
    assert forward == v1.score([Pair(query, d) for d in docs])


def test_feature_cache_hits(v1: MiniReranker) -> None:
    item = image_item("rocket.jpg")
    cache = v1.visual_cache
    v1.score([Pair(Content(text="rocket"), Content(images=(item,)))])
    hits = cache.hits
    v1.score([Pair(Content(text="space"), Content(images=(item,)))])
    assert cache.hits == hits + 1
    text_hits = v1.text_cache.hits
    v1.score([Pair(Content(text="space"), Content(text="rocket"))])
    assert v1.text_cache.hits >= text_hits + 2


def test_empty_side_is_refused(v1: MiniReranker) -> None:
    with pytest.raises(InputError, match=r"pairs\[0\].document"):
        v1.score([Pair(Content(text="a cat"), Content(text="   "))])


def test_closed_model_refuses_to_score() -> None:
    model = BACKEND.load(V1, CPU, "closing")
    model.close()
    with pytest.raises(NotReady, match="closing"):
        model.score([Pair(Content(text="a"), Content(text="b"))])


def test_colour_words_of_real_photos() -> None:
    clock = colour_profile(image_item("clock.jpg").image)
    assert colour_words(clock, 2, 0.15) == [("black and white", 1.0)]
    rocket = colour_words(colour_profile(image_item("rocket.jpg").image), 2, 0.15)
    assert rocket[0][0] == "blue"


def test_lru_cache_evicts_least_recently_used() -> None:
    cache: LruCache[str, int] = LruCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1
    cache.put("c", 3)
    assert "b" not in cache and "a" in cache and len(cache) == 2
    assert (cache.hits, cache.misses) == (1, 0)


def test_subsample_spreads_evenly() -> None:
    assert subsample(8, 2) == [2, 6]
    assert subsample(3, 8) == [0, 1, 2]
    assert np.all(np.diff(subsample(64, 4)) == 16)
