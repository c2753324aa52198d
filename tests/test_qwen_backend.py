"""The qwen3-vl backend end to end on a tiny random-weight checkpoint with the real tokenizer (CPU)."""
from __future__ import annotations

import inspect
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from reranker.content import Content, ImageItem, Pair, VideoItem  # noqa: E402
from reranker.errors import MediaError, ModelLoadError, NotReady  # noqa: E402
from reranker.models.base import Placement  # noqa: E402
from reranker.models.qwen3vl import BACKEND  # noqa: E402
from reranker.models.qwen3vl.backend import check_transformers_version  # noqa: E402
from reranker.models.qwen3vl.inputs import PairEncoder, mrope_positions  # noqa: E402
from reranker.models.qwen3vl.scorer import plan_batches  # noqa: E402
from reranker.models.qwen3vl.vision import normalize  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def scorer(tiny_qwen_dir):
    loaded = BACKEND.load(tiny_qwen_dir, Placement(device="cpu", dtype="float32"), "tiny-v1")
    yield loaded
    loaded.close()


def image(height: int, width: int, seed: int) -> ImageItem:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return ImageItem(Image.fromarray(pixels), f"{seed:064x}")


def clip(count: int = 4) -> VideoItem:
    rng = np.random.default_rng(11)
    frames = tuple(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(count))
    return VideoItem(frames, tuple(float(i) for i in range(count)), "e" * 64, float(count), 1.0)


def mixed_pairs() -> list[Pair]:
    query = Content(text="a cat on a mat")
    documents = [
        Content(text="The cat sat on the mat."),
        Content(text="Stock prices fell sharply " * 12),
        Content(images=(image(64, 96, 1),)),
        Content(text="a photo of a cat", images=(image(96, 64, 2), image(32, 32, 3))),
        Content(videos=(clip(),)),
        Content(),
        Content(text="dog"),
    ]
    pairs = [Pair(query, document) for document in documents]
    pairs.append(Pair(Content(images=(image(64, 64, 4),)), Content(text="kitten", videos=(clip(3),))))
    return pairs


def test_matches_only_qwen3vl_config(tiny_qwen_dir, tmp_path):
    assert BACKEND.matches(tiny_qwen_dir)
    assert not BACKEND.matches(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["Qwen2VLForConditionalGeneration"]}))
    assert not BACKEND.matches(tmp_path)
    (tmp_path / "config.json").write_text("not json")
    assert not BACKEND.matches(tmp_path)


def test_supported_dtypes():
    assert BACKEND.supported_dtypes("cpu") == ["float32"]
    assert BACKEND.supported_dtypes("cuda:0") == ["bfloat16", "float16", "float32"]


def test_info_and_estimate(scorer, tiny_qwen_dir):
    info = scorer.info
    assert (info.id, info.version, info.backend, info.dtype, info.device) == (
        "tiny-v1", "tiny-v1", "qwen3-vl", "float32", "cpu"
    )
    assert info.name == tiny_qwen_dir.name and info.path == str(tiny_qwen_dir)
    estimate = BACKEND.estimate_bytes(tiny_qwen_dir, "float32")
    assert abs(estimate - info.bytes_in_memory) <= 0.01 * info.bytes_in_memory
    assert BACKEND.estimate_bytes(tiny_qwen_dir, "bfloat16") * 2 == estimate
    with pytest.raises(ModelLoadError, match="int8"):
        BACKEND.estimate_bytes(tiny_qwen_dir, "int8")


def test_batched_scores_equal_one_by_one_in_document_order(scorer):
    pairs = mixed_pairs()
    scorer.max_batch_size = 8
    batched = scorer.score(pairs)
    one_by_one = [scorer.score([pair])[0] for pair in pairs]
    assert len(batched) == len(pairs)  # the text+image document gets one score
    assert all(0.0 <= s <= 1.0 for s in batched)
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5, rtol=0)
    order = [5, 2, 7, 0, 3, 6, 1, 4]
    assert scorer.score([pairs[i] for i in order]) == pytest.approx([batched[i] for i in order], abs=1e-5)
    assert len(set(round(s, 6) for s in batched)) == len(batched)  # every pair really scored


def test_small_batches_give_the_same_scores(scorer):
    pairs = mixed_pairs()
    scorer.max_batch_size = 8
    reference = scorer.score(pairs)
    scorer.max_batch_size = 3
    try:
        assert scorer.score(pairs) == pytest.approx(reference, abs=1e-5)
    finally:
        scorer.max_batch_size = 8


@pytest.fixture(scope="module")
def hf_model(tiny_qwen_dir):
    """The same checkpoint loaded directly with transformers, for reference computations."""
    from transformers import AutoTokenizer, Qwen3VLForConditionalGeneration

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_qwen_dir))
    model = Qwen3VLForConditionalGeneration.from_pretrained(str(tiny_qwen_dir), dtype=torch.float32).eval()
    return model, tokenizer


def test_score_is_sigmoid_of_yes_minus_no_logits_with_hf_positions(scorer, hf_model):
    """Our positions + hidden-state dot product against the full HF forward (its own rope index)."""
    model, tokenizer = hf_model
    encoder = PairEncoder(tokenizer)
    yes, no = tokenizer.convert_tokens_to_ids(["yes", "no"])
    for pair in mixed_pairs()[2:5] + mixed_pairs()[7:]:
        inputs = encoder.collate([encoder.encode(pair)])
        kwargs = {k: normalize(v) if k.startswith("pixel") else v for k, v in inputs.items() if k != "position_ids"}
        if "mm_token_type_ids" in inspect.signature(model.forward).parameters:
            ids = inputs["input_ids"]
            kwargs["mm_token_type_ids"] = (ids == encoder.image_pad_id).int() + 2 * (ids == encoder.video_pad_id).int()
        with torch.inference_mode():
            logits = model(**kwargs).logits[0, -1]
        expected = torch.sigmoid(logits[yes] - logits[no]).item()
        assert scorer.score([pair])[0] == pytest.approx(expected, abs=1e-5)


def test_positions_equal_hf_rope_index(hf_model):
    model, tokenizer = hf_model
    encoder = PairEncoder(tokenizer)
    batch = [encoder.encode(pair) for pair in mixed_pairs()]
    inputs = encoder.collate(batch)
    kwargs = {k: inputs.get(k) for k in ("input_ids", "image_grid_thw", "video_grid_thw", "attention_mask")}
    if "mm_token_type_ids" in inspect.signature(model.model.get_rope_index).parameters:
        ids = inputs["input_ids"]
        kwargs["mm_token_type_ids"] = (ids == encoder.image_pad_id).int() + 2 * (ids == encoder.video_pad_id).int()
    hf_positions, _ = model.model.get_rope_index(**kwargs)
    mask = inputs["attention_mask"].bool()
    assert torch.equal(hf_positions[:, mask], inputs["position_ids"][:, mask])
    single = mrope_positions(batch[7], encoder.image_pad_id, encoder.video_pad_id)
    assert single.shape == (3, len(batch[7])) and single[0, 0] == 0


def test_plan_batches_groups_by_length_within_limits():
    lengths = [10, 300, 12, 290, 11, 305, 9]
    plan = plan_batches(lengths, max_batch_size=3, max_batch_tokens=10_000)
    assert sorted(i for batch in plan for i in batch) == list(range(7))
    assert plan == [[5, 1, 3], [2, 4, 0], [6]]
    assert plan_batches(lengths, max_batch_size=8, max_batch_tokens=620) == [[5, 1], [3, 2], [4, 0, 6]]
    assert plan_batches([50_000], 4, 1_000) == [[0]]
    assert plan_batches([], 4, 1_000) == []


def test_transformers_version_range():
    check_transformers_version("4.57.3")
    check_transformers_version("5.23.0")
    for bad in ("4.56.2", "6.0.0"):
        with pytest.raises(ModelLoadError, match=bad):
            check_transformers_version(bad)


def test_load_refuses_other_directories(tmp_path):
    with pytest.raises(ModelLoadError, match="Qwen3VLForConditionalGeneration"):
        BACKEND.load(tmp_path, Placement(device="cpu", dtype="float32"), "x")


def test_a_refused_image_names_its_pair(scorer):
    thin = image(4, 900, 5)  # aspect ratio 225 > 200
    pairs = [Pair(Content(text="q"), Content(text="fine")), Pair(Content(text="q"), Content(images=(thin,)))]
    with pytest.raises(MediaError, match="pair 1: image aspect ratio"):
        scorer.score(pairs)


def test_close_frees_the_model(tiny_qwen_dir):
    loaded = BACKEND.load(tiny_qwen_dir, Placement(device="cpu", dtype="float32"), "tiny-close")
    assert loaded.score([Pair(Content(text="a"), Content(text="b"))])[0] > 0
    loaded.close()
    with pytest.raises(NotReady, match="tiny-close"):
        loaded.score([Pair(Content(text="a"), Content(text="b"))])
