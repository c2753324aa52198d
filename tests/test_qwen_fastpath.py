"""Prefix reuse: scores equal one-by-one HF scoring within 1e-5 in float32 (tiny checkpoint, CPU)."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from reranker.content import Content, ImageItem, Pair, VideoItem  # noqa: E402
from reranker.models.base import Placement  # noqa: E402
from reranker.models.qwen3vl import BACKEND  # noqa: E402
from reranker.models.qwen3vl.scorer import shared_prefix_length  # noqa: E402


@pytest.fixture(scope="module")
def scorer(tiny_qwen_dir):
    loaded = BACKEND.load(tiny_qwen_dir, Placement(device="cpu", dtype="float32"), "tiny-v1")
    assert not loaded.prefix_reuse  # off by default on the CPU: the CPU path stays as it was
    loaded.prefix_reuse = True
    yield loaded
    loaded.close()


def image(height: int, width: int, seed: int) -> ImageItem:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return ImageItem(Image.fromarray(pixels), f"{seed:064x}")


def clip(count: int, seed: int) -> VideoItem:
    rng = np.random.default_rng(seed)
    frames = tuple(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(count))
    return VideoItem(frames, tuple(float(i) for i in range(count)), f"{seed:064x}", float(count), 1.0)


def pairs() -> list[Pair]:
    text_query = Content(text="a cat on a mat")
    image_query = Content(text="this picture", images=(image(64, 64, 4),))
    documents = [
        Content(text="The cat sat on the mat."),
        Content(text="Stock prices fell sharply " * 12),
        Content(images=(image(64, 96, 1),)),
        Content(text="a photo of a cat", images=(image(96, 64, 2), image(32, 32, 3))),
        Content(videos=(clip(4, 11),)),
        Content(),
        Content(text="dog"),
        Content(text="Thermal", videos=(clip(3, 12),), images=(image(32, 64, 5),)),
    ]
    out = [Pair(text_query, d) for d in documents]
    out += [Pair(image_query, d) for d in documents[::2]]
    out += [Pair(text_query, d, instruction="Find pets.") for d in documents[:3]]
    out.append(Pair(Content(videos=(clip(4, 13),)), Content(text="kitten", images=(image(32, 32, 6),))))
    return out


def one_by_one(scorer, items: list[Pair]) -> list[float]:
    return [scorer.score_plain([pair])[0] for pair in items]


def test_prefix_reuse_equals_one_by_one_in_float32(scorer):
    items = pairs()
    expected = one_by_one(scorer, items)
    for batch_size in (1, 3, 32):
        scorer.max_batch_size = batch_size
        got = scorer.score(items)
        assert np.max(np.abs(np.array(got) - np.array(expected))) < 1e-5, batch_size
    scorer.max_batch_size = 32


def test_prefix_reuse_matches_plain_batching(scorer):
    items = pairs()
    assert np.allclose(scorer.score(items), scorer.score_plain(items), atol=1e-5)


def test_prefix_is_shared_and_stops_before_document_vision(scorer):
    items = pairs()
    encoded = scorer.encode(items[:8])
    length = shared_prefix_length(encoded)
    ids = encoded[0].input_ids
    assert length >= 40  # system prompt, instruction and query
    assert all(np.array_equal(e.input_ids[:length], ids[:length]) for e in encoded)
    vision = np.flatnonzero(encoded[2].input_ids == scorer._encoder.image_pad_id)  # noqa: SLF001
    assert length <= vision[0]
    with_query_image = scorer.encode(items[8:12])
    pads = int((with_query_image[0].input_ids == scorer._encoder.image_pad_id).sum())  # noqa: SLF001
    assert shared_prefix_length(with_query_image) > np.flatnonzero(
        with_query_image[0].input_ids == scorer._encoder.image_pad_id)[pads - 1]


def test_documents_with_identical_leading_images_do_not_share_them(scorer):
    """Two documents whose first image has the same grid have equal pad ids: the prefix must stop."""
    query = Content(text="which?")
    docs = [Content(images=(image(64, 64, 21),), text="a"), Content(images=(image(64, 64, 22),), text="a")]
    items = [Pair(query, d) for d in docs]
    assert np.allclose(scorer.score(items), one_by_one(scorer, items), atol=1e-5)


def test_cpu_scoring_stays_on_the_plain_path_when_switched_off(scorer):
    items = pairs()[:4]
    scorer.prefix_reuse = False
    try:
        assert np.allclose(scorer.score(items), one_by_one(scorer, items), atol=1e-6)
    finally:
        scorer.prefix_reuse = True


def test_bf16_difference_is_reported_small(tiny_qwen_dir):
    """bf16 (CPU) against float32: the largest difference stays small (printed for the record)."""
    fp32 = BACKEND.load(tiny_qwen_dir, Placement(device="cpu", dtype="float32"), "a")
    reference = fp32.score_plain(pairs())
    fp32.close()
    from reranker.models.qwen3vl.scorer import QwenScorer
    from transformers import AutoTokenizer, Qwen3VLForConditionalGeneration

    model = Qwen3VLForConditionalGeneration.from_pretrained(str(tiny_qwen_dir), dtype=torch.bfloat16).eval()
    bf16 = QwenScorer(model, AutoTokenizer.from_pretrained(str(tiny_qwen_dir)), model_id="b", name="b")
    bf16.prefix_reuse = True
    difference = float(np.max(np.abs(np.array(bf16.score(pairs())) - np.array(reference))))
    print(f"bf16 vs fp32 max |score difference| (tiny checkpoint, CPU): {difference:.2e}")
    assert difference < 0.05


def test_token_counts_after_prefix_scoring(scorer):
    items = pairs()[:5]
    scorer.score(items)
    assert scorer.count_tokens(items) == [len(e) for e in scorer.encode(items)]


def test_compiled_layers_equal_the_eager_layers(scorer):
    """The decoder layer traced by torch.compile as one graph (fullgraph: a graph break fails)
    computes what the eager one does, with and without a prefix. Dynamo's "eager" backend (the
    captured graph run as is): Inductor's kernels take a minute to build on this CPU; tests/gpu
    checks them on the GPU."""
    from reranker.models.qwen3vl.fastpath import causal_layer, compiled_ops, document_layer

    fast = scorer._fast  # noqa: SLF001
    weights = fast._weights[0]  # noqa: SLF001
    constants = (fast._eps, fast._head_dim, fast._scaling)  # noqa: SLF001
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(3, 9, weights[0].shape[0], generator=generator)
    cos, sin = torch.randn(2, 3, 9, fast._head_dim, generator=generator)  # noqa: SLF001
    ops = compiled_ops(backend="eager")
    expected = causal_layer(hidden, cos, sin, weights, *constants)
    got = ops.causal_layer(hidden, cos, sin, weights, *constants)
    for a, b in zip(got, expected):
        assert torch.allclose(a, b, atol=1e-5)
    past_key, past_value = expected[1][:1, :, :5], expected[2][:1, :, :5]
    mask = torch.ones((9, 14), dtype=torch.bool).tril(5)
    eager = document_layer(hidden, cos, sin, weights, past_key, past_value, mask, *constants)
    compiled = ops.document_layer(hidden, cos, sin, weights, past_key, past_value, mask, *constants)
    assert torch.allclose(compiled, eager, atol=1e-5)



def test_prepared_pairs_score_as_score_does(scorer):
    """prepare() (CPU work, taken outside the device gate by the isolated lane) then score_prepared()
    gives score()'s numbers exactly: the same batches, the same passes."""
    items = pairs()
    prepared = scorer.prepare(items)
    assert prepared is not None and prepared.count == len(items)
    assert scorer.score_prepared(prepared) == scorer.score(items)


def test_prepare_defers_to_score_without_prefix_reuse(tiny_qwen_dir):
    plain = BACKEND.load(tiny_qwen_dir, Placement(device="cpu", dtype="float32"), "tiny-plain")
    try:
        assert plain.prepare(pairs()[:2]) is None  # the engine then calls score() inside the gate
    finally:
        plain.close()
