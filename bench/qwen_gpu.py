"""Qwen3-VL on the GPU: one by one vs plain batching vs ours (prefix reuse + overlap), in one run.

Random weights of the real Qwen3-VL-Reranker shapes (config built in code, nothing downloaded),
bf16 + sdpa. Workloads: 64 documents per query of 256-token pairs (full prompt length), and 64
documents that are one 896 x 896 image each (784 visual tokens).

- one by one: the reference's way, one pair per forward pass (QwenScorer.score_plain, batch 1).
- plain: a minimal plain-batching script: prompts tokenized as one left-padded batch by the
  tokenizer, the HF model's forward (use_cache=False), last hidden state; images through
  QwenScorer.score_plain (our preprocessing, left-padded HF forward, no overlap).
- ours: QwenScorer.score (prefix reuse, right-padded documents against the cached prefix,
  encoding of the next chunk overlapped with the GPU).
Also: tokens/s and the fraction of the bf16 roofline (full-prompt FLOPs at 790 TFLOP/s), the
fp32 check (ours vs one by one) and bf16-vs-fp32 difference, cold-load phases (read, to GPU,
verify, warm-up) against the raw read time, and GPU memory with one and two versions resident.

    python bench/qwen_gpu.py --tokenizer DIR [--shapes 2b,8b] [--load-shape 8b]
    python bench/qwen_gpu.py --tokenizer DIR --shapes tiny --device cpu --dtype float32 --load-shape none
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
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
from reranker.models.qwen3vl.prompt import render_prompt  # noqa: E402
from reranker.models.qwen3vl.prompt import SideVisuals  # noqa: E402
from reranker.models.qwen3vl.scorer import QwenScorer  # noqa: E402
from reranker.models.qwen3vl.shapes import SHAPES, config_dict  # noqa: E402

DOCS = 64
PAIR_TOKENS = 256
IMAGE_SIDE = 896
PEAK_TFLOPS = 790.0
WORDS = ("river mountain engine protein market violin theory harbour signal forest quantum ledger "
         "glacier cotton silicon orbit canyon lantern pepper marble thunder circuit meadow falcon").split()
RESULTS: dict = {}


def log(text: str) -> None:
    print(text, flush=True)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def build_model(shape: str, device: str, dtype: torch.dtype):
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    torch.manual_seed(0)
    config = Qwen3VLConfig(**config_dict(SHAPES[shape]))
    with torch.device(device):
        model = Qwen3VLForConditionalGeneration._from_config(config, dtype=dtype, attn_implementation="sdpa")
    return model.eval()


def text_pairs(scorer: QwenScorer, tokenizer) -> list[Pair]:
    """64 documents whose full prompts are PAIR_TOKENS tokens long."""
    rng = np.random.default_rng(1)
    query = Content(text="which documents talk about glaciers and mountain rivers?")
    pairs = []
    for _ in range(DOCS):
        words = list(rng.choice(WORDS, size=PAIR_TOKENS))
        while True:
            pair = Pair(query, Content(text=" ".join(words)))
            length = len(scorer.encode([pair])[0])
            if length <= PAIR_TOKENS:
                break
            words = words[: max(1, len(words) - max(1, (length - PAIR_TOKENS) // 2))]
        pairs.append(pair)
    return pairs


def image_pairs() -> list[Pair]:
    rng = np.random.default_rng(2)
    query = Content(text="a photo of a red car parked by the sea")
    pairs = []
    for index in range(DOCS):
        pixels = rng.integers(0, 256, (IMAGE_SIDE, IMAGE_SIDE, 3), dtype=np.uint8)
        pairs.append(Pair(query, Content(images=(ImageItem(Image.fromarray(pixels), f"{index:064x}"),))))
    return pairs


class PlainBatching:
    """The minimal plain-batching script: tokenizer padding (left), HF forward, last hidden state."""

    def __init__(self, scorer: QwenScorer, tokenizer) -> None:
        self._inner = scorer._inner  # noqa: SLF001
        self._direction = scorer._direction  # noqa: SLF001
        self._tokenizer = tokenizer
        self._tokenizer.padding_side = "left"
        self.batch = 64

    @torch.inference_mode()
    def score(self, pairs: list[Pair]) -> list[float]:
        prompts = [render_prompt(p, SideVisuals(), SideVisuals()) for p in pairs]
        device = self._inner.get_input_embeddings().weight.device
        out = []
        for start in range(0, len(prompts), self.batch):
            inputs = self._tokenizer(prompts[start:start + self.batch], padding=True, return_tensors="pt",
                                     add_special_tokens=False).to(device)
            hidden = self._inner(**inputs, use_cache=False).last_hidden_state[:, -1].float()
            out.append(torch.sigmoid(hidden @ self._direction.to(device)))
        return torch.cat(out).cpu().tolist()


def rate(fn, pairs: list[Pair], reps: int, device: str) -> tuple[float, list[float]]:
    """Median pairs/s over reps after one warm-up call, and the last scores."""
    scores = fn(pairs)
    rates = []
    for _ in range(reps):
        sync(device)
        started = time.perf_counter()
        scores = fn(pairs)
        sync(device)
        rates.append(len(pairs) / (time.perf_counter() - started))
    return statistics.median(rates), scores


def text_flops_per_token(model, context: int) -> float:
    """2 x non-embedding text parameters + causal attention at the given context (per token)."""
    text = model.model.language_model
    params = sum(p.numel() for name, p in text.named_parameters() if "embed_tokens" not in name)
    cfg = text.config
    attention = 2 * 2 * cfg.num_hidden_layers * cfg.num_attention_heads * cfg.head_dim * context / 2
    return 2 * params + attention


def run_workload(scorer: QwenScorer, plain, name: str, pairs: list[Pair], batches: list[int], reps: int,
                 device: str, flops_per_token: float | None, compare_eager: bool = False) -> dict:
    started = time.perf_counter()
    encoded = scorer.encode(pairs)
    encode_s = time.perf_counter() - started
    lengths = [len(e) for e in encoded]
    tokens = sum(lengths)
    log(f"  {name}: {len(pairs)} docs, {min(lengths)}-{max(lengths)} tokens per pair, "
        f"CPU prompt+preprocess {encode_s:.3f} s for all")
    few = pairs[:16]
    one_rate, one_scores = rate(lambda p: [scorer.score_plain([x])[0] for x in p], few, 1, device)
    row: dict = {"one_by_one": one_rate, "tokens_per_pair": statistics.mean(lengths)}
    log(f"    one by one      : {one_rate:8.1f} pairs/s")
    contenders = [("plain", plain), ("ours", scorer)]
    if compare_eager and scorer._fast is not None:  # noqa: SLF001
        contenders.append(("ours_eager_layers", _EagerLayers(scorer)))
    for label, fn in contenders:
        best = (0.0, 0, None)
        for batch in batches:
            if label == "plain" and hasattr(fn, "batch"):
                fn.batch = batch
            else:
                fn.max_batch_size = batch
                fn.pipeline_chunk = batch  # batch 32: two chunks, the second encoded during the first
            if device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            value, scores = rate(fn.score, pairs, reps, device)
            peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else 0.0
            delta = max(abs(a - b) for a, b in zip(scores[:16], one_scores))
            log(f"    {label:5s} batch {batch:3d} : {value:8.1f} pairs/s, {value * tokens / len(pairs):10.0f} tok/s, "
                f"max |score - one by one| {delta:.2e}, peak {peak:.1f} GiB")
            if value > best[0]:
                best = (value, batch, delta)
        row[label] = best[0]
        row[f"{label}_batch"] = best[1]
        row[f"{label}_delta_vs_one_by_one"] = best[2]
    row["ours_over_plain"] = row["ours"] / row["plain"]
    if "ours_eager_layers" in row:
        log(f"    ours (compiled layers) / ours (eager layers) = {row['ours'] / row['ours_eager_layers']:.2f}x")
    if flops_per_token:
        roofline = PEAK_TFLOPS * 1e12 / (flops_per_token * statistics.mean(lengths))
        row["roofline_pairs_s"] = roofline
        row["ours_fraction_of_roofline"] = row["ours"] / roofline
        row["plain_fraction_of_roofline"] = row["plain"] / roofline
        log(f"    roofline {roofline:.0f} pairs/s: plain {row['plain'] / roofline:.2f}, ours {row['ours'] / roofline:.2f}"
            f"; ours / plain = {row['ours_over_plain']:.2f}x")
    else:
        log(f"    ours / plain = {row['ours_over_plain']:.2f}x")
    return row


def fp32_check(model, tokenizer, pairs: list[Pair], bf16_scores: list[float]) -> dict:
    """The same weights in float32: ours vs one by one (want <= 1e-5), and bf16 vs float32."""
    model.float()
    scorer = QwenScorer(model, tokenizer, model_id="fp32", name="fp32", max_batch_tokens=1 << 30)
    scorer.warm_up()
    scorer.compiled.wait(300)
    scorer.max_batch_size = 64
    ours = scorer.score(pairs)
    one = [scorer.score_plain([p])[0] for p in pairs]
    result = {
        "fp32_ours_vs_one_by_one": max(abs(a - b) for a, b in zip(ours, one)),
        "bf16_vs_fp32": max(abs(a - b) for a, b in zip(bf16_scores, one)),
    }
    log(f"  float32: ours vs one by one {result['fp32_ours_vs_one_by_one']:.2e}; "
        f"bf16 ours vs float32 {result['bf16_vs_fp32']:.2e}")
    return result


def drop_caches() -> bool:
    try:
        subprocess.run(["sync"], check=False)
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def raw_read_seconds(folder: Path) -> float:
    started = time.perf_counter()
    for file in sorted(folder.glob("*.safetensors")):
        with file.open("rb", buffering=0) as handle:
            while handle.read(64 << 20):
                pass
    return time.perf_counter() - started


def load_bench(shape: str, tokenizer_dir: Path, dtype: str, work: Path) -> dict:
    """Cold load through reranker.models.loading (read ahead, to GPU, verify, warm-up) vs raw read."""
    from reranker.models.loading import load_model
    from reranker.models.memory import Headroom
    from reranker.models.qwen3vl import BACKEND

    folder = work / f"qwen-{shape}"
    model = build_model(shape, "cuda", getattr(torch, dtype))
    model.save_pretrained(str(folder))
    (folder / "config.json").write_text(json.dumps(config_dict(SHAPES[shape])))
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt"):
        shutil.copyfile(tokenizer_dir / name, folder / name)
    del model
    torch.cuda.empty_cache()
    size = sum(f.stat().st_size for f in folder.glob("*.safetensors"))
    dropped = drop_caches()
    raw = raw_read_seconds(folder)
    log(f"load {shape}: {size / 1e9:.2f} GB of safetensors; page cache dropped: {dropped}; "
        f"raw sequential read {raw:.2f} s ({size / raw / 1e9:.2f} GB/s)")
    drop_caches()
    base = torch.cuda.memory_allocated()
    first = load_model(folder, device_pref="cuda", model_id=f"{shape}-a", headroom=Headroom(),
                       backends=[BACKEND])
    phases = dict(first.attempts[-1].phases)
    one = torch.cuda.memory_allocated() - base
    log(f"  cold load {first.seconds:.2f} s = {first.seconds / raw:.2f}x raw read; phases "
        + ", ".join(f"{k} {v:.2f} s" for k, v in phases.items()) + f"; {first.placement.dtype} on {first.placement.device}")
    second = load_model(folder, device_pref="cuda", model_id=f"{shape}-b", headroom=Headroom(),
                        backends=[BACKEND])
    two = torch.cuda.memory_allocated() - base
    log(f"  GPU memory allocated: one version {one / 2**30:.2f} GiB, two versions {two / 2**30:.2f} GiB "
        f"(reserved {torch.cuda.memory_reserved() / 2**30:.2f} GiB)")
    second.model.close()
    first.model.close()
    shutil.rmtree(folder, ignore_errors=True)
    return {"bytes": size, "raw_read_s": raw, "load_s": first.seconds, "ratio": first.seconds / raw,
            "phases": phases, "one_version_gib": one / 2**30, "two_versions_gib": two / 2**30,
            "page_cache_dropped": dropped}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", required=True, help="directory with the Qwen3 tokenizer files")
    parser.add_argument("--shapes", default="2b,8b", help="comma list of: " + ", ".join(SHAPES))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--text-batches", default="32,64")
    parser.add_argument("--image-batches", default="8,16")
    parser.add_argument("--workloads", default="text,image")
    parser.add_argument("--fp32-check", default="2b", help="shape whose fp32 check runs ('none' to skip)")
    parser.add_argument("--load-shape", default="8b", help="shape for the cold-load bench ('none' to skip)")
    parser.add_argument("--work-dir", default=tempfile.gettempdir())
    parser.add_argument("--json", default="", help="write the results here")
    parser.add_argument("--compare-eager", action="store_true",
                        help="also time ours with the eager (uncompiled) decoder layer")
    args = parser.parse_args()

    import transformers
    from transformers import AutoTokenizer

    device = "cuda:0" if args.device == "cuda" else args.device
    name = torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"
    log(f"device {name}; torch {torch.__version__}; transformers {transformers.__version__}; "
        f"{args.dtype}, sdpa, random weights")
    RESULTS["env"] = {"device": name, "torch": torch.__version__, "transformers": transformers.__version__}
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    for shape in [s for s in args.shapes.split(",") if s]:
        started = time.perf_counter()
        model = build_model(shape, device, getattr(torch, args.dtype))
        scorer = QwenScorer(model, tokenizer, model_id=f"random-{shape}", name=shape, max_batch_tokens=1 << 30)
        plain = PlainBatching(scorer, AutoTokenizer.from_pretrained(args.tokenizer))
        log(f"shape {shape}: {scorer.info.bytes_in_memory / 2**30:.1f} GiB, built in {time.perf_counter() - started:.1f} s")
        RESULTS[shape] = {}
        started = time.perf_counter()
        scorer.warm_up()
        compiled = scorer.compiled.wait(300)
        log(f"  warm-up + fused kernels compiled ({compiled}, fused in use: "
            f"{scorer._fast is not None and scorer._fast.fused}) in "  # noqa: SLF001
            f"{time.perf_counter() - started:.1f} s")
        texts = text_pairs(scorer, tokenizer)
        if "text" in args.workloads:
            RESULTS[shape]["text"] = run_workload(
                scorer, plain, f"text {PAIR_TOKENS} tokens", texts, [int(b) for b in args.text_batches.split(",")],
                args.reps, device, text_flops_per_token(model, PAIR_TOKENS), args.compare_eager)
        if "image" in args.workloads:
            images = image_pairs()
            plain_images = _PlainScorer(scorer)
            RESULTS[shape]["image"] = run_workload(
                scorer, plain_images, f"image {IMAGE_SIDE}x{IMAGE_SIDE}", images,
                [int(b) for b in args.image_batches.split(",")], max(1, args.reps - 1), device, None)
        if shape == args.fp32_check:
            scorer.max_batch_size = 64
            bf16 = scorer.score(texts)
            RESULTS[shape]["fp32"] = fp32_check(model, tokenizer, texts, bf16)
        scorer.close()
        del model, scorer, plain
        torch.cuda.empty_cache() if device.startswith("cuda") else None
    if args.load_shape != "none" and device.startswith("cuda"):
        RESULTS["load"] = load_bench(args.load_shape, Path(args.tokenizer), args.dtype, Path(args.work_dir))
    if args.json:
        Path(args.json).write_text(json.dumps(RESULTS, indent=2, default=str))


class _EagerLayers:
    """QwenScorer.score with the eager decoder layer (what serves until the compiled one is built)."""

    def __init__(self, scorer: QwenScorer) -> None:
        self._scorer = scorer

    def __setattr__(self, name: str, value) -> None:
        if name == "_scorer":
            object.__setattr__(self, name, value)
        else:
            setattr(self._scorer, name, value)

    def score(self, pairs: list[Pair]) -> list[float]:
        from reranker.models.qwen3vl.fastpath import Ops

        fast = self._scorer._fast  # noqa: SLF001
        compiled, fast.kernels.ops = fast.kernels.ops, Ops()
        try:
            return self._scorer.score(pairs)
        finally:
            fast.kernels.ops = compiled


class _PlainScorer:
    """QwenScorer's plain path (left-padded HF forward, no reuse, no overlap) under the bench's knobs."""

    def __init__(self, scorer: QwenScorer) -> None:
        self._scorer = scorer
        self.batch = 8

    def score(self, pairs: list[Pair]) -> list[float]:
        saved = self._scorer.max_batch_size
        self._scorer.max_batch_size = self.batch
        try:
            return self._scorer.score_plain(pairs)
        finally:
            self._scorer.max_batch_size = saved


if __name__ == "__main__":
    main()
