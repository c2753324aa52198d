"""A hot update under load, over HTTP on loopback: does any request fail, and what does the switch cost?

    .venv/bin/python bench/hot_update_load.py [--scenario promote|golden-fail|latency-fail|all]
        [--clients 16] [--time-scale 0.2] [--image-docs 0] [--warmup-seconds 6] [--phase-seconds 10] [--max-seconds 230]

Each scenario starts `python app.py` (mini-v1, a temp data dir, a free 127.0.0.1 port, the default
rollout plan compressed by --time-scale through RERANKER_ROLLOUT_TIME_SCALE), lets --clients
threads rank continuously (10 documents from a 60-sentence pool and a fresh query each time, so
no answer comes from a score cache), submits a hot update, and waits for its outcome:

- promote:      mini-v2, text requests: expected promoted.
- golden-fail:  a copy of mini-v1 that describes images by colour only (labels weigh nothing):
                its golden-set NDCG@5 is far below mini-v1's, so the pre-traffic gate rolls it back.
- latency-fail: a copy of mini-v1 whose embedding cache holds one entry (a bad config change):
                same golden-set quality, so it passes the pre-traffic gate and takes traffic, but
                it re-embeds every document of every request; its P95 breaks the live 1.15x gate
                and it is rolled back mid-plan.

--image-docs N replaces N of the 10 documents with a never-seen generated PNG (data: URI).

Prints requests sent and failed, P50/P95 after a warm-up, before, during and after the rollout, how long routing
swaps blocked (the reranker_swap_blocked_seconds histogram, and the longest pause between two
completed requests within 1 s of each swap event), and the server's peak RSS against the models'
footprints. Every scenario is bounded by --max-seconds and stops by itself; the server is killed
by its pid.
"""
from __future__ import annotations

import argparse
import base64
import io
import json
import math
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WORDS = ("red blue green dog cat car truck boat tree house river mountain pizza guitar bird coffee rocket "
         "clock camera planet ocean city bread garden").split()
TERMINAL = {"promoted", "rolled_back", "failed", "cancelled"}
SWAP_EVENTS = {"stage", "promote", "rollback"}
VARIANTS = {  # manifest changes over models/mini-v1, written to a temp dir
    "colour-only": {"id": "mini-colour-only", "label_weight": 0.0, "colour_weight": 1.0, "colours_per_image": 5,
                    "min_colour_fraction": 0.0, "description": "Useless on purpose: images described by colour only."},
    "no-cache": {"id": "mini-v1-nocache", "cache_entries": 1, "description": "mini-v1 with a one-entry cache."},
}


@dataclass(frozen=True)
class Scenario:
    name: str
    candidate: str  # a model directory, or a key of VARIANTS
    expect: str


SCENARIOS = {
    "promote": Scenario("promote", "models/mini-v2", "promoted"),
    "golden-fail": Scenario("golden-fail", "colour-only", "rolled_back"),
    "latency-fail": Scenario("latency-fail", "no-cache", "rolled_back"),
}


@dataclass(frozen=True)
class Sample:
    started: float  # time.time()
    ended: float
    ok: bool
    version: str
    detail: str


@dataclass
class Run:
    samples: list[Sample] = field(default_factory=list)
    rss_peak: int = 0
    rss_before: int = 0
    rss_after: int = 0
    measured_from: float = 0.0  # time.time() when the warm-up ended
    footprints: dict[str, int] = field(default_factory=dict)
    states: list[tuple[float, str]] = field(default_factory=list)
    submitted_at: float = 0.0
    finished_at: float = 0.0
    final: dict[str, Any] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def png_data_uri(rng: random.Random, size: int = 160) -> str:
    image = Image.new("RGB", (size, size), tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x, y = rng.randrange(size), rng.randrange(size)
        draw.ellipse((x, y, x + rng.randrange(20, 90), y + rng.randrange(20, 90)),
                     fill=tuple(rng.randrange(256) for _ in range(3)))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode("ascii")


def sentence(rng: random.Random, words: int = 10) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def client(url: str, n: int, image_docs: int, stop: threading.Event, run: Run) -> None:
    rng = random.Random(n)
    pool = [sentence(random.Random(1000 + i)) for i in range(60)]
    with httpx.Client(base_url=url, timeout=120) as http:
        serial = 0
        while not stop.is_set():
            serial += 1
            documents: list[Any] = rng.sample(pool, 10 - image_docs)
            documents += [{"image": png_data_uri(rng)} for _ in range(image_docs)]
            body = {"query": f"{sentence(rng, 4)} (client {n} #{serial})", "documents": documents}
            started = time.time()
            try:
                answer = http.post("/v1/rerank", json=body)
                ok, version, detail = answer.status_code == 200, answer.headers.get("X-Model-Version", ""), ""
                if not ok:
                    detail = f"HTTP {answer.status_code}: {answer.text[:200]}"
            except httpx.HTTPError as exc:
                ok, version, detail = False, "", f"{type(exc).__name__}: {exc}"
            run.samples.append(Sample(started, time.time(), ok, version, detail))


def sample_rss(pid: int, stop: threading.Event, run: Run) -> None:
    process = psutil.Process(pid)
    while not stop.wait(0.1):
        try:
            run.rss_peak = max(run.rss_peak, process.memory_info().rss)
        except psutil.Error:
            return


def start_server(data_dir: Path, time_scale: float, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
           "RERANKER_ROLLOUT_TIME_SCALE": str(time_scale)}
    command = [sys.executable, "app.py", "--port", str(port), "--data-dir", str(data_dir), "--admin-token", TOKEN]
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    return process, f"http://127.0.0.1:{port}"


def wait_ready(http: httpx.Client, process: subprocess.Popen, deadline: float) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"app.py exited with {process.returncode}")
        try:
            if http.get("/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise RuntimeError("app.py did not become ready in time")


def candidate_dir(name: str, folder: Path) -> str:
    if name not in VARIANTS:
        return name
    manifest = json.loads((ROOT / "models" / "mini-v1" / "reranker.json").read_text())
    target = folder / VARIANTS[name]["id"]
    target.mkdir()
    (target / "reranker.json").write_text(json.dumps({**manifest, **VARIANTS[name]}, indent=2))
    return str(target)


def note_footprints(http: httpx.Client, run: Run) -> None:
    for model in http.get("/v1/models").json()["data"]:
        if model.get("bytes_in_memory"):
            run.footprints[model["id"]] = model["bytes_in_memory"]


def drive(scenario: Scenario, args: argparse.Namespace, folder: Path) -> Run:
    run = Run()
    process, url = start_server(folder / "data", args.time_scale, folder / "app.log")
    stop_clients, stop_rss = threading.Event(), threading.Event()
    threads: list[threading.Thread] = []
    deadline = time.monotonic() + args.max_seconds
    try:
        http = httpx.Client(base_url=url, timeout=60, headers=AUTH)
        wait_ready(http, process, deadline)
        run.rss_before = psutil.Process(process.pid).memory_info().rss
        threads.append(threading.Thread(target=sample_rss, args=(process.pid, stop_rss, run), daemon=True))
        threads += [threading.Thread(target=client, args=(url, n, args.image_docs, stop_clients, run), daemon=True)
                    for n in range(args.clients)]
        for thread in threads:
            thread.start()
        time.sleep(args.warmup_seconds)
        run.measured_from = time.time()
        time.sleep(args.phase_seconds)
        note_footprints(http, run)
        candidate = candidate_dir(scenario.candidate, folder)
        run.submitted_at = time.time()
        answer = http.post("/admin/updates", json={"path": candidate})
        if answer.status_code != 202:
            raise RuntimeError(f"submit refused: {answer.status_code} {answer.text}")
        state = ""
        while time.monotonic() < deadline - args.phase_seconds:
            status = http.get("/admin/status").json()
            if status["state"] != state:
                state = status["state"]
                run.states.append((time.time(), state))
            if state in ("rolling_out", "validating", "promoting"):
                note_footprints(http, run)
            if state in TERMINAL:
                break
            time.sleep(0.2)
        run.finished_at = time.time()
        run.final = http.get("/admin/status").json()
        time.sleep(args.phase_seconds)
        stop_clients.set()
        for thread in threads[1:]:
            thread.join(timeout=130)
        run.final["metrics"] = http.get("/metrics").text
        run.rss_after = psutil.Process(process.pid).memory_info().rss
        http.close()
    finally:
        stop_clients.set()
        stop_rss.set()
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
    return run


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(math.ceil(q / 100 * len(ordered)), 1) - 1] if ordered else float("nan")


def swap_histogram(metrics: str) -> tuple[int, float, str]:
    """(swaps, total seconds, smallest bucket bound that holds every swap) from /metrics."""
    buckets = [(float(b.replace("+Inf", "inf")), float(v)) for b, v in
               re.findall(r'reranker_swap_blocked_seconds_bucket\{le="([^"]+)"\} (\S+)', metrics)]
    count = float(re.search(r"reranker_swap_blocked_seconds_count (\S+)", metrics).group(1))
    total = float(re.search(r"reranker_swap_blocked_seconds_sum (\S+)", metrics).group(1))
    bound = next((b for b, v in sorted(buckets) if v >= count), math.inf)
    return int(count), total, f"<= {bound:g} s"


def longest_pause(ends: list[float], at: float, span: float = 1.0) -> float:
    window = [t for t in ends if at - span <= t <= at + span]
    return max((b - a for a, b in zip(window, window[1:])), default=float("nan"))


def report(scenario: Scenario, run: Run) -> bool:
    samples, final = run.samples, run.final
    failed = [s for s in samples if not s.ok]
    phases = {
        "warm-up": [s for s in samples if s.started < run.measured_from],
        "before": [s for s in samples if run.measured_from <= s.started < run.submitted_at],
        "during": [s for s in samples if run.submitted_at <= s.started < run.finished_at],
        "after": [s for s in samples if s.started >= run.finished_at],
    }
    print(f"\n== scenario {scenario.name}: update to {final.get('candidate') or final.get('candidate_path')}")
    print(f"outcome: {final.get('state')} (expected {scenario.expect}); stable now {final.get('stable')}; "
          f"light {final.get('light')}")
    if final.get("reason"):
        print(f"reason: {final['reason']}")
    timeline = ", ".join(f"{state} +{at - run.submitted_at:.1f}s" for at, state in run.states)
    print(f"timeline: {timeline}")
    print(f"requests sent: {len(samples)}   failed: {len(failed)}")
    for sample in failed[:5]:
        print(f"  failed: {sample.detail}")
    for name, chunk in phases.items():
        ms = [(s.ended - s.started) * 1000 for s in chunk if s.ok]
        served = {v: sum(1 for s in chunk if s.version == v) for v in sorted({s.version for s in chunk if s.ok})}
        print(f"{name:>7}: {len(chunk):5d} requests  P50 {percentile(ms, 50):7.1f} ms  P95 {percentile(ms, 95):7.1f} ms"
              f"  answered by {served}")
    swaps, total, bound = swap_histogram(final["metrics"])
    print(f"routing swaps: {swaps}, writer lock held {total * 1e6:.1f} us in all ({total / max(swaps, 1) * 1e6:.1f} us "
          f"mean), every swap {bound}")
    ends = sorted(s.ended for s in samples)
    events = [e for e in final.get("events", []) if e["kind"] in SWAP_EVENTS]
    for event in sorted(events, key=lambda e: e["at"]):
        print(f"  {event['kind']:>8} at +{event['at'] - run.submitted_at:5.1f}s: longest pause between completed "
              f"requests within 1 s: {longest_pause(ends, event['at']) * 1000:.0f} ms")
    calm = [b - a for a, b in zip(ends, ends[1:]) if run.measured_from <= a < run.submitted_at]
    print(f"  (before the update, for comparison: longest pause {max(calm, default=0) * 1000:.0f} ms)")
    mib = 2**20
    footprints = ", ".join(f"{k} {v / mib:.0f} MiB" for k, v in sorted(run.footprints.items()))
    print(f"server RSS: {run.rss_before / mib:.0f} MiB at ready, peak {run.rss_peak / mib:.0f} MiB, "
          f"{run.rss_after / mib:.0f} MiB at the end; "
          f"model footprints (bytes_in_memory): {footprints}")
    return not failed and final.get("state") == scenario.expect


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--time-scale", type=float, default=0.2, help="rollout plan time scale (default plan x this)")
    parser.add_argument("--image-docs", type=int, default=0, help="never-seen images among the 10 documents")
    parser.add_argument("--warmup-seconds", type=float, default=6.0, help="load before measuring (caches fill)")
    parser.add_argument("--phase-seconds", type=float, default=10.0, help="measured load before and after the update")
    parser.add_argument("--max-seconds", type=float, default=230.0, help="bound on one scenario")
    args = parser.parse_args(argv)
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    print(f"{args.clients} clients, default plan x {args.time_scale:g}, {os.cpu_count()} CPUs, loopback only")
    good = True
    for name in names:
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix=f"hot-update-{name}-") as folder:
            try:
                run = drive(SCENARIOS[name], args, Path(folder))
            except RuntimeError as exc:
                print(f"\n== scenario {name}: did not run: {exc}")
                print((Path(folder) / "app.log").read_text()[-2000:])
                good = False
                continue
            good = report(SCENARIOS[name], run) and good
        print(f"(scenario took {time.monotonic() - started:.0f} s)")
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
