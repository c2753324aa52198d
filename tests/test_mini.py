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
from reranker.models.mini.interaction import PhraseVectors, late_interaction
from reranker.models.mini.manifest import load_config
from reranker.models.mini.phrases import split_clauses, with_head_nouns
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


def variant(directory: Path, **options: object) -> Path:
    """A model directory: v1's manifest with some options changed."""
    manifest = json.loads((V1 / "reranker.json").read_text(encoding="utf-8"))
    manifest.update(options)
    (directory / "reranker.json").write_text(json.dumps(manifest), encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def late(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MiniReranker]:
    """v1 with late interaction only: the same phrases, compared phrase by phrase."""
    model = BACKEND.load(variant(tmp_path_factory.mktemp("late"), interaction="late"), CPU, "mini-late")
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
    for key, bad in (("interaction", "max"), ("text_units", "words"), ("late_weight_power", -1), ("head_nouns", 1)):
        (tmp_path / "reranker.json").write_text(json.dumps({"backend": "mini", key: bad}))
        with pytest.raises(ModelLoadError, match=key):
            load_config(tmp_path)


def test_new_options_default_to_v1_behaviour() -> None:
    v1 = load_config(V1)
    assert (v1.interaction, v1.head_nouns, v1.text_units) == ("mean", False, "whole")
    v2 = load_config(ROOT / "models" / "mini-v2")
    assert (v2.interaction, v2.head_nouns, v2.text_units) == ("late", True, "clauses")


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


def test_late_interaction_keeps_one_strong_match_undiluted() -> None:
    query = PhraseVectors(np.array([[1.0, 0.0]]), np.array([1.0]))
    document = PhraseVectors(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([1.0, 1.0]))
    assert late_interaction(query, document, 0.5) == pytest.approx(1.0)  # the mean vector: 0.707
    faint = PhraseVectors(document.vectors, np.array([0.25, 1.0]))  # the match is a 0.25 label
    assert late_interaction(query, faint, 0.5) == pytest.approx(0.5)
    assert late_interaction(query, faint, 0.0) == pytest.approx(1.0)
    absent = PhraseVectors(document.vectors, np.array([0.0, 1.0]))
    assert late_interaction(query, absent, 0.0) == pytest.approx(0.0)
    two = PhraseVectors(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([3.0, 1.0]))
    lone = PhraseVectors(np.array([[1.0, 0.0]]), np.array([1.0]))
    assert late_interaction(two, lone, 0.5) == pytest.approx(0.75)  # weighted mean over the query


def test_late_interaction_changes_real_scores(v1: MiniReranker, late: MiniReranker) -> None:
    coffee = Content(images=(image_item("coffee.jpg"),))  # labelled espresso, consomme, cup + colours
    pairs = [Pair(Content(text="a cup"), coffee), Pair(Content(text="a cat"), Content(text="A cat sleeps."))]
    mean_scores, late_scores = v1.score(pairs), late.score(pairs)
    assert late.describe(coffee) == v1.describe(coffee)  # same phrases, compared differently
    assert "cup" in dict(late.describe(coffee).phrases)
    print(f"\n'a cup' vs the coffee photo: mean {mean_scores[0]:.3f}, late {late_scores[0]:.3f}")
    assert late_scores[0] > mean_scores[0] + 0.05  # the other labels and colours no longer dilute "cup"
    assert late_scores[1] == pytest.approx(mean_scores[1], abs=1e-6)  # one phrase a side: the same cosine


def test_batch_of_new_texts_takes_one_forward(late: MiniReranker) -> None:
    encoder = late.text_encoder
    forwards: list[int] = []
    hook = encoder.model.register_forward_pre_hook(lambda module, args: forwards.append(1))
    try:
        texts = [f"batched text number {i} about gardening and rain" for i in range(24)]
        pairs = [Pair(Content(text=f"batched query {i}"), Content(text=texts[i])) for i in range(24)]
        batched = late.score(pairs)
        assert len(forwards) == 1  # 48 new texts
        encoder.cache.clear()
        one_by_one = [late.score([pair])[0] for pair in pairs]
        assert len(forwards) == 1 + 24
    finally:
        hook.remove()
    assert batched == pytest.approx(one_by_one, abs=1e-5)


def test_head_nouns_and_clauses(tmp_path: Path) -> None:
    labels = [("Egyptian cat", 0.5), ("tiger cat", 0.3), ("tabby", 0.2)]
    assert with_head_nouns(labels) == labels + [("cat", 0.8)]
    assert with_head_nouns([("wall clock", 0.6), ("clock", 0.4)]) == [("wall clock", 0.6), ("clock", 0.4)]
    assert split_clauses(" Caring for a kitten: feed it. Give it a tray!  ") == [
        "Caring for a kitten:", "feed it.", "Give it a tray!"]
    assert split_clauses("3.5 kg, no break") == ["3.5 kg, no break"]
    model = BACKEND.load(variant(tmp_path, head_nouns=True, text_units="clauses"), CPU, "mini-heads")
    try:
        phrases = dict(model.describe(Content(images=(image_item("chelsea.jpg"),))).phrases)
        cats = [word for word in phrases if word.endswith(" cat")]
        assert cats and phrases["cat"] == pytest.approx(sum(phrases[word] for word in cats))
        assert sum(weight for word, weight in phrases.items() if word in ("cat", *cats, "tabby")) == pytest.approx(1.0)
        text = model.describe(Content(text="Caring for a kitten: feed it. Give it a tray!"))
        assert [weight for _, weight in text.phrases] == [1.0, 1.0, 1.0]
    finally:
        model.close()
