"""Can an operator trust the rollout verdicts? N rollouts per scenario under load, on this machine.

    .venv/bin/python bench/rollout_verdicts.py [--runs 3] [--clients 16] [--users many,few]
        [--scenarios identical,identical-new,slower,shifted,erroring] [--time-scale 0.2]
        [--max-seconds 300] [--device cpu] [--model models/mini-v1]

On the GPU (one in-process service, a Qwen3-VL checkpoint of the real 2B shapes, bf16):
    python scripts/make_tiny_qwen.py /tmp/q2b --shape 2b --device cuda
    python bench/rollout_verdicts.py --model /tmp/q2b --device cuda --scenarios identical,identical-new --users many

One in-process service (mini-v1, the example golden set, a temp data dir) serves --clients threads
that rank continuously: a fresh query each time (no answer from a score cache) over 10 documents
drawn from a pool. Users: "many" = every request has a new sticky user key; "few" = 5 sticky users
shared by all clients (at 5% share, typically none of them hashes into the candidate's range).
For each scenario and user mix it runs --runs rollouts with the default plan compressed by
--time-scale and the default gates:

(--model another checkpoint: the identical scenarios only, the candidate a byte-identical copy.)

- identical:     a copy of mini-v1, same-model mode                      expected: promoted
- identical-new: a copy of mini-v1, new-model mode                       expected: promoted
- slower:        mini-v1 with fault_slowdown 0.3 (30% slower per call)   expected: rolled_back
- shifted:       mini-v1 with fault_score_shift 0.01, same-model mode    expected: rolled_back (no traffic)
- erroring:      mini-v1 with fault_error_rate 0.05 (5% of queries fail) expected: rolled_back

Prints a confusion table (promoted / rolled back / held or timed out per scenario), time to
verdict, and the clients' live P95 (wall clock) in steady state before the update, while the
golden set validates, while the candidate takes traffic, and after the verdict. A run that makes
a faulty candidate stable is undone (mini-v1 promoted back) before the next run.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from reranker.clock import SystemClock  # noqa: E402
from reranker.control.measures import percentile  # noqa: E402
from reranker.service import RerankService  # noqa: E402
from reranker.service.types import Caller, RankRequest, RawItem  # noqa: E402
from reranker.settings import Settings  # noqa: E402

WORDS = ("red blue green dog cat car truck boat tree house river mountain pizza guitar bird coffee rocket "
         "clock camera planet ocean city bread garden").split()
TERMINAL = {"promoted", "rolled_back", "failed", "cancelled"}
PHASES = ("before", "loading", "validating", "rolling out", "after")
SCENARIOS: dict[str, tuple[dict[str, Any], str, str]] = {  # manifest changes, mode, expected outcome
    "identical": ({}, "same-model", "promoted"),
    "identical-new": ({}, "new-model", "promoted"),
    "slower": ({"fault_slowdown": 0.3}, "new-model", "rolled_back"),
    "shifted": ({"fault_score_shift": 0.01}, "same-model", "rolled_back"),
    "erroring": ({"fault_error_rate": 0.05}, "new-model", "rolled_back"),
}
FEW_USERS = tuple(f"bench-user-{i}" for i in range(5))


@dataclass
class Clients:
    service: RerankService
    threads: int
    users: str
    samples: list[tuple[float, float, bool]] = field(default_factory=list)  # (end time, latency s, ok)
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        rng = random.Random(7)
        self.pool = [" ".join(rng.choice(WORDS) for _ in range(8)) + f" (sentence {i})" for i in range(60)]
        self._lock = threading.Lock()
        self._workers = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(self.threads)]
        for worker in self._workers:
            worker.start()

    def _run(self, n: int) -> None:
        rng, i = random.Random(n), 0
        while not self.stop.is_set():
            i += 1
            user = f"bench-{n}-{i}" if self.users == "many" else FEW_USERS[n % len(FEW_USERS)]
            request = RankRequest(
                query=RawItem(text=f"{rng.choice(WORDS)} {rng.choice(WORDS)} #{n}-{i}"),
                documents=tuple(RawItem(text=d) for d in rng.sample(self.pool, 10)),
                caller=Caller(user_key=user))
            started = time.monotonic()
            try:
                self.service.rank(request)
                ok = True
            except Exception:  # a failed request is counted, not fatal
                ok = False
            with self._lock:
                self.samples.append((time.monotonic(), time.monotonic() - started, ok))

    def close(self) -> None:
        self.stop.set()
        for worker in self._workers:
            worker.join(timeout=30)


@dataclass
class Run:
    scenario: str
    users: str
    outcome: str
    seconds: float
    reason: str
    phases: dict[str, list[float]]
    failed_requests: int
    held_on_the_way: bool = False  # the banner said "holding: ... not enough traffic" at some point


def model_dir(folder: Path, scenario: str, model: Path) -> str:
    changes = SCENARIOS[scenario][0]
    if (model / "config.json").is_file():  # a checkpoint: the candidate is a byte-identical copy
        directory = folder / f"{model.name}-{scenario}"
        if not directory.exists():
            directory.mkdir(parents=True)
            for item in model.iterdir():
                try:
                    os.link(item, directory / item.name)
                except OSError:
                    shutil.copyfile(item, directory / item.name)
        return str(directory)
    manifest = json.loads((ROOT / "models" / "mini-v1" / "reranker.json").read_text(encoding="utf-8"))
    manifest.update(changes, description=f"bench: mini-v1 with {changes or 'no change'}")
    directory = folder / f"mini-{scenario}"
    if not directory.exists():
        directory.mkdir(parents=True)
        (directory / "reranker.json").write_text(json.dumps(manifest), encoding="utf-8")
    return str(directory)


def one_rollout(service: RerankService, clients: Clients, scenario: str, folder: Path, plan: str,
                max_seconds: float, steady_s: float, model: Path) -> Run:
    time.sleep(steady_s)  # steady state before the update (clients keep ranking)
    states: list[tuple[float, str]] = [(time.monotonic(), "before")]
    started = time.monotonic()
    service.submit_update(model_dir(folder, scenario, model), plan=plan, mode=SCENARIOS[scenario][1], actor="bench")
    status = service.status()
    held = False
    shown = started
    while status.state not in TERMINAL and time.monotonic() - started < max_seconds:
        time.sleep(0.1)
        status = service.status()
        if time.monotonic() - shown >= 15:  # a long run says where it is
            shown = time.monotonic()
            print(f"    {shown - started:5.0f} s: {status.state}: {status.banner[:140]}", flush=True)
        held = held or bool(status.holding)
        phase = {"loading": "loading", "validating": "validating"}.get(status.state, "rolling out")
        states.append((time.monotonic(), phase))
    elapsed = time.monotonic() - started
    outcome = status.state if status.state in TERMINAL else ("held" if status.holding else "timed out")
    reason = status.reason or status.holding or ""
    if outcome not in TERMINAL:
        reason = f"still {status.state} after {max_seconds:g} s; {reason}"
    if outcome not in TERMINAL:
        service.rollout_command("rollback", "bench")
        while service.status().state not in TERMINAL:
            time.sleep(0.1)
    ended = time.monotonic()
    states.append((ended, "after"))
    time.sleep(steady_s)
    phases: dict[str, list[float]] = defaultdict(list)
    failed = 0
    window_start = started - steady_s
    for at, latency, ok in list(clients.samples):
        if at < window_start:
            continue
        if not ok:
            failed += 1
            continue
        phase = "before" if at < started else ("after" if at >= ended else _phase_at(states, at))
        phases[phase].append(latency)
    if status.state in ("rolled_back", "failed"):
        service.rollout_command("acknowledge", "bench")
    return Run(scenario, clients.users, outcome, elapsed, reason, dict(phases), failed, held)


def golden_set(folder: Path, queries: int) -> Path:
    """The example labelled set, or a copy of it with its first `queries` queries only."""
    source = ROOT / "assets" / "examples"
    if queries <= 0:
        return source / "labelled_set.json"
    shutil.copytree(source, folder / "golden")
    path = folder / "golden" / "labelled_set.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["queries"] = data["queries"][:queries]
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def _phase_at(states: list[tuple[float, str]], at: float) -> str:
    phase = "before"
    for when, name in states:
        if when > at:
            break
        phase = name
    return phase


def restore(service: RerankService, max_seconds: float, model: Path) -> None:
    """After a faulty candidate was promoted: put the original model back (promote it at once)."""
    stable = service.store.get_stable()
    if stable is not None and Path(stable.path).resolve() == model.resolve():
        return
    service.submit_update(str(model), plan=[{"share": 100}], mode="new-model", actor="bench")
    deadline = time.monotonic() + max_seconds
    while service.status().state not in TERMINAL and time.monotonic() < deadline:
        time.sleep(0.2)
    if service.status().state in ("rolled_back", "failed"):
        service.rollout_command("acknowledge", "bench")


def p95_ms(values: list[float]) -> str:
    value = percentile(sorted(values), 95)
    return "—" if value is None else f"{value * 1000:.0f}"


def report(runs: list[Run]) -> None:
    print("\n| scenario | users | expected | promoted | rolled back | held / timed out | time to verdict (s, median) "
          "| runs that held on the way |")
    print("|---|---|---|---|---|---|---|---|")
    groups: dict[tuple[str, str], list[Run]] = defaultdict(list)
    for run in runs:
        groups[(run.scenario, run.users)].append(run)
    for (scenario, users), group in groups.items():
        def count(*names: str, runs: list[Run] = group) -> int:
            return sum(1 for r in runs if r.outcome in names)
        seconds = sorted(r.seconds for r in group)
        print(f"| {scenario} | {users} | {SCENARIOS[scenario][2]} | {count('promoted')} | "
              f"{count('rolled_back', 'failed')} | {count('held', 'timed out', 'cancelled')} | "
              f"{seconds[len(seconds) // 2]:.0f} | {sum(1 for r in group if r.held_on_the_way)} |")
    print("\nLive P95 (ms, client wall clock) by phase, all runs of a scenario pooled:")
    print("\n| scenario | users | " + " | ".join(PHASES) + " | validating / before | failed requests |")
    print("|---|---|" + "---|" * (len(PHASES) + 2))
    for (scenario, users), group in groups.items():
        pooled: dict[str, list[float]] = defaultdict(list)
        for run in group:
            for phase, values in run.phases.items():
                pooled[phase].extend(values)
        before, validating = (percentile(sorted(pooled[p]), 95) for p in ("before", "validating"))
        ratio = f"{validating / before:.2f}x" if before and validating else "—"
        print(f"| {scenario} | {users} | " + " | ".join(p95_ms(pooled[p]) for p in PHASES)
              + f" | {ratio} | {sum(r.failed_requests for r in group)} |")
    print("\nReasons:")
    for run in runs:
        print(f"  {run.scenario:14s} {run.users:5s} {run.outcome:12s} {run.seconds:6.1f} s  {run.reason[:150]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--users", default="many,few")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--plan", default="default")
    parser.add_argument("--time-scale", type=float, default=0.2)
    parser.add_argument("--steady-seconds", type=float, default=5.0)
    parser.add_argument("--max-seconds", type=float, default=300.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--golden-queries", type=int, default=0,
                        help="validate on the example set's first N queries only (0: all; the GPU's 2B scores "
                             "the whole set at its 10%% background share in ~2 min)")
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "mini-v1",
                        help="the stable model (a checkpoint directory: identical scenarios only)")
    args = parser.parse_args()
    scenarios = [s for s in args.scenarios.split(",") if s]
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {unknown[0]!r}; choose from {', '.join(SCENARIOS)}")
    model = args.model.resolve()
    faults = [s for s in scenarios if SCENARIOS[s][0]]
    if (model / "config.json").is_file() and faults:
        parser.error(f"{', '.join(faults)}: fault options exist for the mini backend only")
    runs: list[Run] = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="rollout-verdicts-") as tmp:
        folder = Path(tmp)
        settings = Settings(model=str(model), data_dir=folder / "data",
                            models_dir=ROOT / "models", device=args.device, rollout_time_scale=args.time_scale,
                            golden_set=golden_set(folder, args.golden_queries))
        for users in [u for u in args.users.split(",") if u]:
            service = RerankService(settings.with_(data_dir=folder / f"data-{users}"), SystemClock(), "bench")
            service.start(wait=True)
            clients = Clients(service, args.clients, users)
            try:
                for scenario in scenarios:
                    for n in range(args.runs):
                        run = one_rollout(service, clients, scenario, folder, args.plan, args.max_seconds,
                                          args.steady_seconds, model)
                        runs.append(run)
                        p95s = " ".join(f"{phase} {p95_ms(run.phases.get(phase, []))}" for phase in PHASES)
                        print(f"[{users}] {scenario} run {n + 1}/{args.runs}: {run.outcome} in {run.seconds:.1f} s "
                              f"{run.reason[:120]} | P95 ms: {p95s}", flush=True)
                        restore(service, args.max_seconds, model)
            finally:
                clients.close()
                service.close()
    load_after = os.getloadavg()
    print(f"\n{args.clients} clients, plan {args.plan} x{args.time_scale:g}, device {args.device}, "
          f"{os.cpu_count()} CPUs, {args.runs} runs per scenario; load average (1, 5, 15 min) before "
          f"{', '.join(f'{x:.2f}' for x in load_before)}, after {', '.join(f'{x:.2f}' for x in load_after)}; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    report(runs)
    if any(math.isnan(r.seconds) for r in runs):
        sys.exit(1)


if __name__ == "__main__":
    main()
