"""Ranking latency and throughput of one model version through the Engine (no HTTP).

    .venv/bin/python bench/rank_bench.py [--model models/mini-v1] [--seconds 10]

Prints p50/p95 latency of a 10-document text request and of a 10-document image request
(cold: images never seen before, decoded and scored; cached: the same request repeated), and
requests/s with 8 concurrent clients sending 10-document text requests. Bounded to ~2 minutes.
"""
from __future__ import annotations

import argparse
import io
import os
import random
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may download at run time

from reranker.clock import SystemClock  # noqa: E402
from reranker.content import Content  # noqa: E402
from reranker.engine import Engine  # noqa: E402
from reranker.media import MediaDecoder  # noqa: E402
from reranker.models.base import Placement  # noqa: E402
from reranker.models.mini import BACKEND  # noqa: E402
from reranker.settings import EngineSettings, Limits  # noqa: E402

DOCS = 10
WORDS = "red blue green dog cat car truck boat tree house river mountain pizza guitar bird".split()


def sentence(rng: random.Random, serial: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(12)) + f" #{serial}"


def random_png(rng: random.Random, size: int = 256) -> bytes:
    image = Image.new("RGB", (size, size), tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x, y = rng.randrange(size), rng.randrange(size)
        draw.ellipse((x, y, x + rng.randrange(20, 120), y + rng.randrange(20, 120)),
                     fill=tuple(rng.randrange(256) for _ in range(3)))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def timed(runs: int, budget_s: float, request: Callable[[int], None]) -> list[float]:
    """Latencies in ms of up to `runs` calls, stopping early when the time budget is spent."""
    latencies: list[float] = []
    stop = time.monotonic() + budget_s
    for i in range(runs):
        started = time.perf_counter()
        request(i)
        latencies.append((time.perf_counter() - started) * 1000)
        if time.monotonic() > stop:
            break
    return latencies


def throughput(engine: Engine, clients: int, seconds: float) -> tuple[float, int]:
    counts = [0] * clients
    stop = time.monotonic() + seconds

    def client(n: int) -> None:
        rng = random.Random(1000 + n)
        serial = 0
        while time.monotonic() < stop:
            serial += 1
            docs = [Content(text=sentence(rng, serial * 100 + d)) for d in range(DOCS)]
            engine.score(Content(text=f"client {n} query {serial} {rng.choice(WORDS)}"), docs)
            counts[n] += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.monotonic() - started), sum(counts)


def row(name: str, latencies: list[float]) -> str:
    p50, p95 = np.percentile(latencies, [50, 95])
    return f"| {name:<32} | {len(latencies):>4} | {p50:>9.1f} | {p95:>9.1f} |"


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/mini-v1")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of the throughput run")
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args(argv)

    path = Path(args.model)
    load_started = time.perf_counter()
    model = BACKEND.load(path, Placement(device="cpu", dtype="float32"), path.name)
    settings = EngineSettings()
    engine = Engine(model, settings, SystemClock())
    engine.warm_up()
    load_s = time.perf_counter() - load_started
    decoder = MediaDecoder(Limits(), settings.media_cache_entries)
    rng = random.Random(7)

    def text_request(i: int) -> None:
        docs = [Content(text=sentence(rng, i * 100 + d)) for d in range(DOCS)]
        engine.score(Content(text=f"query {i} {rng.choice(WORDS)}"), docs)

    def image_request(images: list[bytes], query: str) -> None:
        docs = [Content(images=(decoder.image(data, f"documents[{d}].image"),)) for d, data in enumerate(images)]
        engine.score(Content(text=query), docs)

    fresh_sets = [[random_png(rng) for _ in range(DOCS)] for _ in range(args.runs)]
    repeated = fresh_sets[0]
    rows = [
        row("text, 10 docs (uncached)", timed(args.runs, 20, text_request)),
        row("image, 10 docs (cold)", timed(args.runs, 40, lambda i: image_request(fresh_sets[i], "a red ball"))),
        row("image, 10 docs (cached)", timed(args.runs, 10, lambda i: image_request(repeated, "a red ball"))),
    ]
    rps, total = throughput(engine, args.clients, args.seconds)
    stats = engine.stats()
    engine.close()

    print(f"model {model.info.id} ({model.info.backend}, {model.info.dtype}, {model.info.device}), "
          f"load+warm-up {load_s:.1f} s, {os.cpu_count()} CPUs, torch threads {_torch_threads()}")
    print(f"engine: max_batch_pairs={settings.max_batch_pairs}, batch_wait_ms={settings.batch_wait_ms}")
    print("| request                          |    n |  p50 (ms) |  p95 (ms) |")
    print("|----------------------------------|------|-----------|-----------|")
    print("\n".join(rows))
    print(f"\nthroughput: {rps:.1f} requests/s ({rps * DOCS:.0f} pairs/s) with {args.clients} concurrent "
          f"clients, 10-doc text requests, {total} requests in {args.seconds:.0f} s")
    print(f"engine stats: batches={stats.batches}, mean batch={stats.mean_batch_size:.1f} pairs, "
          f"cache hits={stats.cache_hits}, misses={stats.cache_misses}, model time={stats.model_seconds:.1f} s")


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    main(sys.argv[1:])
