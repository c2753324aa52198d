"""The GPU fast path on a CUDA device: compiled decoder layers and CUDA-graphed prefixes score as
one-by-one HF scoring does (float32, within 1e-5). Skipped without CUDA; run on the device machine:

    QWEN_TOKENIZER=DIR python -m pytest -q tests/gpu
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from reranker.content import Content, ImageItem, Pair, VideoItem  # noqa: E402

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (the device machine)")


def tokenizer_path() -> Path:
    if os.environ.get("QWEN_TOKENIZER"):
        return Path(os.environ["QWEN_TOKENIZER"])
    import importlib.util
    import sys

    root = Path(__file__).resolve().parents[2]
    sys.path.insert(0, str(root / "scripts"))
    spec = importlib.util.spec_from_file_location("make_tiny_qwen", root / "scripts" / "make_tiny_qwen.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.tokenizer_dir()


@pytest.fixture(scope="module")
def scorer():
    from transformers import AutoTokenizer, Qwen3VLConfig, Qwen3VLForConditionalGeneration

    from reranker.models.qwen3vl.scorer import QwenScorer
    from reranker.models.qwen3vl.shapes import SHAPES, config_dict

    torch.manual_seed(0)
    config = Qwen3VLConfig(**config_dict(SHAPES["tiny"]))
    with torch.device("cuda"):
        model = Qwen3VLForConditionalGeneration._from_config(config, dtype=torch.float32, attn_implementation="sdpa")
    loaded = QwenScorer(model.eval(), AutoTokenizer.from_pretrained(str(tokenizer_path())), model_id="t", name="t")
    assert loaded.prefix_reuse
    loaded.warm_up()
    assert loaded.compiled.wait(600)
    assert loaded._fast.fused  # noqa: SLF001
    yield loaded
    loaded.close()


def image(seed: int, height: int = 64, width: int = 96) -> ImageItem:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return ImageItem(Image.fromarray(pixels), f"{seed:064x}")


def clip(count: int, seed: int) -> VideoItem:
    rng = np.random.default_rng(seed)
    frames = tuple(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(count))
    return VideoItem(frames, tuple(float(i) for i in range(count)), f"{seed:064x}", float(count), 1.0)


def pairs() -> list[Pair]:
    """Documents of every kind: text, equal-size images (one batched vision attention call), a
    different-size image (reordered and restored), a video with an image."""
    documents = [Content(text="The cat sat on the mat."), Content(text="Stock prices fell " * 20),
                 Content(images=(image(1),)), Content(text="dog", images=(image(2),)), Content(text="x"),
                 Content(images=(image(4, 96, 64),)), Content(text="clip", videos=(clip(4, 5),), images=(image(6),))]
    queries = [Content(text="a cat"),  # prefix in the smallest bucket
               Content(text="which documents talk about cats " * 12),  # a larger bucket
               Content(text="long query " * 300),  # past the largest bucket: layer by layer
               Content(text="this picture", images=(image(3),))]  # a prefix with an image: layer by layer
    return [Pair(q, d) for q in queries for d in documents]


def test_compiled_layers_and_prefix_graphs_equal_one_by_one(scorer):
    items = pairs()
    expected = [scorer.score_plain([pair])[0] for pair in items]
    for chunk in (32, 3):
        scorer.pipeline_chunk = chunk
        got = scorer.score(items)
        assert np.max(np.abs(np.array(got) - np.array(expected))) < 1e-5, chunk
    assert scorer._fast.vision is not None  # noqa: SLF001  our vision tower served the images
    graphs = scorer._fast.graphs  # noqa: SLF001
    assert not graphs.failed
    assert len(graphs._graphs) >= 2  # noqa: SLF001


def test_a_replayed_graph_serves_a_new_prefix_of_the_same_bucket(scorer):
    """The second query reuses the first one's graph: its inputs, not the captured ones, are scored."""
    documents = [Content(text="glaciers and rivers"), Content(text="stock markets")]
    first = [Pair(Content(text="mountain water"), d) for d in documents]
    second = [Pair(Content(text="money and trading"), d) for d in documents]
    scorer.score(first)
    got = scorer.score(second)
    expected = [scorer.score_plain([pair])[0] for pair in second]
    assert np.max(np.abs(np.array(got) - np.array(expected))) < 1e-5
