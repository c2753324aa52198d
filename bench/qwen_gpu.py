"""Throughput of our Qwen3-VL scorer: one pair per forward pass versus our batching.

Random weights of the real Qwen3-VL-Reranker shapes (config built in code, nothing downloaded),
bf16 + sdpa on the GPU, scored through reranker.models.qwen3vl.QwenScorer end to end
(prompt rendering, preprocessing, tokenisation, forward). Workloads: 64 documents of 256-token
text, and 64 documents that are one 896 x 896 image each (784 visual tokens).

    python bench/qwen_gpu.py --tokenizer DIR [--shapes 2b,8b] [--reps 3]
    python bench/qwen_gpu.py --tokenizer DIR --shapes tiny --device cpu --dtype float32   # smoke test
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from reranker.content import Content, ImageItem, Pair  # noqa: E402
from reranker.models.qwen3vl.scorer import QwenScorer  # noqa: E402
from reranker.models.qwen3vl.shapes import SHAPES, config_dict  # noqa: E402

DOCS = 64
TEXT_TOKENS = 256
IMAGE_SIDE = 896
WORDS = ("river mountain engine protein market violin theory harbour signal forest quantum ledger "
         "glacier cotton silicon orbit canyon lantern pepper marble thunder circuit meadow falcon").split()


def build_model(shape: str, device: str, dtype: torch.dtype):
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    torch.manual_seed(0)
    config = Qwen3VLConfig(**config_dict(SHAPES[shape]))
    with torch.device(device):
        model = Qwen3VLForConditionalGeneration._from_config(config, dtype=dtype, attn_implementation="sdpa")
    return model.eval()


def text_pairs(tokenizer) -> list[Pair]:
    rng = np.random.default_rng(1)
    query = Content(text="which documents talk about glaciers and mountain rivers?")
    pairs = []
    for _ in range(DOCS):
        ids = tokenizer(" ".join(rng.choice(WORDS, size=TEXT_TOKENS * 2)), add_special_tokens=False)["input_ids"]
        pairs.append(Pair(query, Content(text=tokenizer.decode(ids[:TEXT_TOKENS]))))
    return pairs


def image_pairs() -> list[Pair]:
    rng = np.random.default_rng(2)
    query = Content(text="a photo of a red car parked by the sea")
    pairs = []
    for index in range(DOCS):
        pixels = rng.integers(0, 256, (IMAGE_SIDE, IMAGE_SIDE, 3), dtype=np.uint8)
        pairs.append(Pair(query, Content(images=(ImageItem(Image.fromarray(pixels), f"{index:064x}"),))))
    return pairs


def timed(scorer: QwenScorer, pairs: list[Pair], batch: int, reps: int, sync: bool) -> tuple[float, list[float]]:
    """Median pairs/s over reps (after one warm-up pass), and the scores of the last pass."""
    scorer.max_batch_size = batch
    scores = scorer.score(pairs)
    rates = []
    for _ in range(reps):
        if sync:
            torch.cuda.synchronize()
        started = time.perf_counter()
        scores = scorer.score(pairs)
        rates.append(len(pairs) / (time.perf_counter() - started))
    return statistics.median(rates), scores


def run_workload(scorer: QwenScorer, name: str, pairs: list[Pair], batches: list[int], reps: int, sync: bool) -> None:
    started = time.perf_counter()
    encoded = scorer.encode(pairs)
    encode_s = time.perf_counter() - started
    lengths = [len(e) for e in encoded]
    print(f"  {name}: {len(pairs)} docs, {min(lengths)}-{max(lengths)} tokens per pair, "
          f"CPU prompt+preprocess {encode_s:.3f} s for all", flush=True)
    baseline_rate, baseline = timed(scorer, pairs, 1, reps, sync)
    print(f"    one pair per forward : {baseline_rate:8.1f} pairs/s (median of {reps})", flush=True)
    for batch in batches:
        if sync:
            torch.cuda.reset_peak_memory_stats()
        rate, scores = timed(scorer, pairs, batch, reps, sync)
        delta = max(abs(a - b) for a, b in zip(scores, baseline))
        peak = f", peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if sync else ""
        print(f"    batch {batch:3d}            : {rate:8.1f} pairs/s ({rate / baseline_rate:4.1f}x), "
              f"max |score - one-by-one| {delta:.2e}{peak}", flush=True)


def load_check(tokenizer_dir: Path, device: str, dtype: str) -> None:
    """A tiny checkpoint through BACKEND.load on the device; close() must give the memory back."""
    import importlib.util
    import tempfile

    from reranker.models.base import Placement
    from reranker.models.qwen3vl import BACKEND

    spec = importlib.util.spec_from_file_location("make_tiny_qwen", REPO / "scripts" / "make_tiny_qwen.py")
    maker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(maker)
    with tempfile.TemporaryDirectory() as folder:
        path = maker.build(Path(folder) / "tiny-qwen3-vl", tokenizer_source=tokenizer_dir)
        before = _allocated(device)
        scorer = BACKEND.load(path, Placement(device=device, dtype=dtype), "tiny")
        loaded = _allocated(device)
        pixels = np.random.default_rng(3).integers(0, 256, (64, 96, 3), dtype=np.uint8)
        pair = Pair(Content(text="q"), Content(text="d", images=(ImageItem(Image.fromarray(pixels), "0" * 64),)))
        scores = scorer.score([pair, Pair(Content(text="q"), Content(text="d"))])
        info = scorer.info
        scorer.close()
        print(f"load check: {info.dtype} on {info.device}, {info.bytes_in_memory} bytes, scores "
              f"{[round(s, 4) for s in scores]}; allocated {before} -> {loaded} -> {_allocated(device)} after close",
              flush=True)


def _allocated(device: str) -> int:
    return torch.cuda.memory_allocated() if device.startswith("cuda") else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", required=True, help="directory with the Qwen3 tokenizer files")
    parser.add_argument("--shapes", default="2b", help="comma list of: " + ", ".join(SHAPES))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--text-batches", default="8,16,32,64")
    parser.add_argument("--image-batches", default="4,8,16,32")
    args = parser.parse_args()

    import transformers
    from transformers import AutoTokenizer

    sync = args.device.startswith("cuda")
    device_name = torch.cuda.get_device_name() if sync else "cpu"
    dev = "cuda:0" if args.device == "cuda" else args.device
    print(f"device {device_name}; torch {torch.__version__}; transformers {transformers.__version__}; "
          f"{args.dtype}, sdpa, random weights", flush=True)
    load_check(Path(args.tokenizer), dev, args.dtype)
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    workloads = [("text 256 tokens", text_pairs(tokenizer), args.text_batches),
                 (f"image {IMAGE_SIDE}x{IMAGE_SIDE}", image_pairs(), args.image_batches)]
    for shape in args.shapes.split(","):
        started = time.perf_counter()
        model = build_model(shape, dev, getattr(torch, args.dtype))
        scorer = QwenScorer(model, tokenizer, model_id=f"random-{shape}", name=f"Qwen3-VL-Reranker-{shape} shapes",
                            max_batch_tokens=1 << 30)
        del model
        params = sum(p.numel() for p in scorer._model.parameters())  # noqa: SLF001
        print(f"shape {shape}: {params / 1e9:.2f} B parameters, {scorer.info.bytes_in_memory / 2**30:.1f} GiB, "
              f"built in {time.perf_counter() - started:.1f} s", flush=True)
        for name, pairs, batches in workloads:
            run_workload(scorer, name, pairs, [int(b) for b in batches.split(",")], args.reps, sync)
        scorer.close()
        if sync:
            print(f"  after close(): {torch.cuda.memory_allocated() / 2**30:.2f} GiB allocated", flush=True)


if __name__ == "__main__":
    main()
