"""Scale-out on Ray Serve: requests/s and P95 with 1 vs 2 replicas, and the cost of the Ray hop.

    .venv/bin/python bench/ray_scale.py [--model models/mini-v1] [--seconds 15] [--clients 8]

Starts a local Ray (or joins --address), deploys the version through the same RayEngines
provider the service uses (`--engine ray`), and drives it with concurrent clients sending fresh
10-document text requests (no score-cache hits). Then it times one client's requests in
single-process mode (the embedded Engine) and through Ray, both uncached and cached: a cached
answer does no model work, so its latency is the per-request overhead of each path.
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from reranker.clock import SystemClock  # noqa: E402
from reranker.content import Content  # noqa: E402
from reranker.engine.embedded import EmbeddedEngines  # noqa: E402
from reranker.engine.port import ScoringEngine  # noqa: E402
from reranker.settings import RaySettings, Settings  # noqa: E402

DOCS = 10
WORDS = "red blue green dog cat car truck boat tree house river mountain pizza guitar bird".split()


def request(rng: random.Random, tag: str) -> tuple[Content, list[Content]]:
    docs = [Content(text=" ".join(rng.choice(WORDS) for _ in range(12)) + f" {tag}.{d}") for d in range(DOCS)]
    return Content(text=f"{rng.choice(WORDS)} {rng.choice(WORDS)} {tag}"), docs


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * len(ordered)) - 1))] if ordered else 0.0


def load_run(engine: ScoringEngine, clients: int, seconds: float) -> tuple[float, float, float, int]:
    """(requests/s, p50 ms, p95 ms, requests) with `clients` threads for `seconds`."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    stop = time.monotonic() + seconds

    def client(n: int) -> None:
        rng, serial = random.Random(n), 0
        while time.monotonic() < stop:
            serial += 1
            query, docs = request(rng, f"c{n}-{serial}-{time.monotonic_ns()}")
            started = time.perf_counter()
            engine.score(query, docs)
            latencies[n].append((time.perf_counter() - started) * 1000)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    flat = [x for rows in latencies for x in rows]
    return len(flat) / (time.monotonic() - started), p(flat, 50), p(flat, 95), len(flat)


def one_client(engine: ScoringEngine, runs: int, cached: bool) -> list[float]:
    rng = random.Random(5)
    fixed = request(rng, "fixed")
    engine.score(*fixed)
    out = []
    for i in range(runs):
        query, docs = fixed if cached else request(rng, f"solo-{i}-{time.monotonic_ns()}")
        started = time.perf_counter()
        engine.score(query, docs)
        out.append((time.perf_counter() - started) * 1000)
    return out


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/mini-v1")
    parser.add_argument("--address", default=None, help="join this Ray cluster instead of starting one")
    parser.add_argument("--cpus", type=int, default=os.cpu_count(), help="CPUs of the local Ray (default: all)")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--runs", type=int, default=100, help="single-client requests per overhead row")
    args = parser.parse_args(argv)

    import ray

    from reranker.engine.ray_serve import LOCAL_SYSTEM_CONFIG, RayEngines

    path = Path(args.model).resolve()
    base = Settings(model=str(path), device="cpu", engine_kind="ray")
    if args.address is None:
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False,
                 _system_config=LOCAL_SYSTEM_CONFIG)
    else:
        ray.init(address=args.address, log_to_driver=False)
    cpus = int(ray.cluster_resources().get("CPU", 1))
    rows: list[str] = []
    hop: dict[str, list[float]] = {}
    for replicas in (1, 2):
        settings = base.with_(ray=RaySettings(replicas=replicas, replica_cpus=cpus / 2, start_timeout_s=600))
        provider = RayEngines(settings, SystemClock())
        started = time.perf_counter()
        engine = provider.open(f"{path.name}-r{replicas}", path, threading.Event())
        up_s = time.perf_counter() - started
        load_run(engine, args.clients, 2.0)  # every replica warm
        rps, p50, p95, n = load_run(engine, args.clients, args.seconds)
        rows.append(f"| Ray Serve, {replicas} replica(s) x {cpus / 2:g} CPU | {rps:7.1f} | {p50:8.1f} | {p95:8.1f} |"
                    f" {n:5d} | up in {up_s:.0f} s")
        if replicas == 1:
            hop["ray uncached"] = one_client(engine, args.runs, cached=False)
            hop["ray cached"] = one_client(engine, args.runs, cached=True)
        engine.close()
    ray.shutdown()

    embedded = EmbeddedEngines(base.with_(engine_kind="embedded"), SystemClock()).open(path.name, path, threading.Event())
    load_run(embedded, args.clients, 2.0)
    rps, p50, p95, n = load_run(embedded, args.clients, args.seconds)
    rows.insert(0, f"| single process (embedded)     | {rps:7.1f} | {p50:8.1f} | {p95:8.1f} | {n:5d} |")
    hop["embedded uncached"] = one_client(embedded, args.runs, cached=False)
    hop["embedded cached"] = one_client(embedded, args.runs, cached=True)
    embedded.close()

    print(f"model {path.name}, {os.cpu_count()} CPUs on this machine, Ray cluster CPUs {cpus}, "
          f"{args.clients} clients x {args.seconds:g} s, {DOCS}-document text requests (never cached)")
    print("| engine                        |  req/s  | p50 (ms) | p95 (ms) |     n |")
    print("|-------------------------------|---------|----------|----------|-------|")
    print("\n".join(rows))
    print("\none client, sequential requests (ms):")
    for name, values in hop.items():
        print(f"  {name:<18} p50 {p(values, 50):7.2f}  p95 {p(values, 95):7.2f}")
    overhead = p(hop["ray cached"], 50) - p(hop["embedded cached"], 50)
    print(f"per-request overhead of the Ray hop (cached answers, p50): {overhead:.2f} ms; "
          f"uncached p50 difference: {p(hop['ray uncached'], 50) - p(hop['embedded uncached'], 50):.2f} ms")



if __name__ == "__main__":
    main(sys.argv[1:])
