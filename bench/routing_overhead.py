"""Per-request overhead of the control layer: route + registry acquire/release + request-log submit.

Run: .venv/bin/python bench/routing_overhead.py [--iterations 20000]
Prints p50/p95/p99 in microseconds for each part and for the whole; the target is p95 < 200 us.
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reranker.clock import SystemClock  # noqa: E402
from reranker.control.policy import TrafficPolicy  # noqa: E402
from reranker.control.registry import Registry  # noqa: E402
from reranker.control.requestlog import RequestLogWriter, RequestRecord  # noqa: E402
from reranker.control.router import RequestAttributes, route  # noqa: E402
from reranker.control.store import Store  # noqa: E402

POLICY = {
    "weights": {"mini-v1": 50, "mini-v2": 50},
    "sticky": True,
    "rules": [{"region": "eu", "version": "mini-v2"}, {"cidr": "10.0.0.0/8", "version": "mini-v1"}],
    "shadow": None,
}


class IdleEngine:
    def close(self) -> None:
        return None


def summarise(name: str, samples_ns: list[int]) -> float:
    us = sorted(s / 1000 for s in samples_ns)
    q = statistics.quantiles(us, n=100, method="inclusive")
    print(f"{name:<34} p50 {q[49]:7.1f} us   p95 {q[94]:7.1f} us   p99 {q[98]:7.1f} us   max {us[-1]:8.1f} us")
    return q[94]


def timed(iterations: int, step: Callable[[int], None]) -> list[int]:
    samples = []
    for i in range(iterations):
        start = time.perf_counter_ns()
        step(i)
        samples.append(time.perf_counter_ns() - start)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=20_000)
    args = parser.parse_args()
    clock = SystemClock()
    registry: Registry[IdleEngine] = Registry(clock)
    for version in ("mini-v1", "mini-v2"):
        registry.add_loading(version)
        registry.mark_ready(version, IdleEngine(), info=None)
    registry.swap(TrafficPolicy.from_dict(POLICY), primary="mini-v1")
    rng = random.Random(0)
    attrs = [RequestAttributes(region=r, client_ip=ip) for r, ip in
             (("us", "192.168.0.7"), ("eu", None), (None, "10.2.3.4"), (None, None))]

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "bench.sqlite3", clock)
        writer = RequestLogWriter(store, max_rows=100_000, max_age_days=7, clock=clock)

        def route_only(i: int) -> None:
            route(registry.snapshot(), f"user-{i}", attrs[i % 4], rng.random())

        def acquire_only(i: int) -> None:
            with registry.acquire("mini-v1"):
                pass

        def submit_only(i: int) -> None:
            writer.submit(RequestRecord(clock.now(), f"req-{i}", "mini-v1", 10, 12.5, 200, top_primary=(3, 1, 2)))

        def whole_request(i: int) -> None:
            with registry.acquire_routed(f"user-{i}", attrs[i % 4], rng.random()) as lease:
                version = lease.route.version
            writer.submit(RequestRecord(clock.now(), f"req-{i}", version, 10, 12.5, 200, user_hash=f"user-{i}",
                                        region=attrs[i % 4].region, top_primary=(3, 1, 2)))

        print(f"{args.iterations} iterations each, Python {sys.version.split()[0]}")
        summarise("route()", timed(args.iterations, route_only))
        summarise("registry acquire+release", timed(args.iterations, acquire_only))
        writer.flush(60)
        summarise("RequestLogWriter.submit", timed(args.iterations, submit_only))
        writer.flush(60)
        p95 = summarise("whole: route+acquire+submit", timed(args.iterations, whole_request))
        writer.flush(60)
        print(f"request log: written {writer.written}, dropped {writer.dropped}, failed batches {writer.failures}")
        writer.close()
        store.close()
    print(f"target p95 < 200 us: {'met' if p95 < 200 else 'MISSED'}")
    return 0 if p95 < 200 else 1


if __name__ == "__main__":
    raise SystemExit(main())
