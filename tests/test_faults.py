"""Faults during hot updates: bad checkpoints, loads that fail, a NaN model, failing gates, low memory.

Whatever goes wrong, the stable version keeps answering. A checkpoint that can be judged bad
before anything changes is refused at once (and audited); one that fails while loading or
on a gate turns the light red, records an alert (store + webhook) and waits for an acknowledge.
One service (mini-v1, a tiny golden set, gates that fail on purpose) serves the whole module.
"""
from __future__ import annotations

import json
import math
import re
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator, Sequence

import pytest

from tests.conftest import MODELS, make_settings
from reranker.clock import SystemClock
from reranker.content import Pair
from reranker.control.gates import GateConfig
from reranker.errors import InsufficientMemory, ModelLoadError
from reranker.models.base import ModelInfo, Placement
from reranker.models.loading import LoadResult, load_model
from reranker.models.memory import GpuMemory, SystemMemoryProbe
from reranker.models.mini import BACKEND as MINI
from reranker.models.qwen3vl.shapes import SHAPES, config_dict
from reranker.models.registry import backends
from reranker.service import RerankService
from tests.test_hot_update import Load, request, wait_for, write_golden_set

V1, V2 = str(MODELS / "mini-v1"), str(MODELS / "mini-v2")
# The golden new-model gate always fails (floor above any NDCG); the live latency gate fails as
# soon as both versions have 3 answers; memory and error-rate gates stay out of the way.
FAILING_GATES = GateConfig(ndcg_tolerance=-1.0, latency_ratio=1e-6, latency_min_samples=3, error_min_samples=10,
                           max_memory_growth=1.0, check_interval_s=0.1, failed_checks_to_rollback=2)


class NanModel:
    """A real mini model whose scores come out NaN (a broken checkpoint that loads)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    @property
    def info(self) -> ModelInfo:
        return self._inner.info

    def score(self, pairs: Sequence[Pair]) -> list[float]:
        return [math.nan] * len(pairs)

    def close(self) -> None:
        self._inner.close()


class NanBackend:
    """The mini backend for directories named mini-nan*, wrapping what it loads in NanModel."""

    name = "mini-nan"

    def matches(self, path: Path) -> bool:
        return path.name.startswith("mini-nan") and MINI.matches(path)

    def estimate_bytes(self, path: Path, dtype: str) -> int:
        return MINI.estimate_bytes(path, dtype)

    def supported_dtypes(self, device: str) -> list[str]:
        return MINI.supported_dtypes(device)

    def load(self, path: Path, placement: Placement, model_id: str) -> NanModel:
        return NanModel(MINI.load(path, placement, model_id))


def loader(path: Path, **options: Any) -> LoadResult:
    """The real loader, plus the NaN backend, and a disk that fails for directories named *-unreadable."""
    if path.name.endswith("-unreadable"):
        raise OSError(5, "Input/output error", str(path / "reranker.json"))
    return load_model(path, backends=[NanBackend(), *backends()], **options)


class Webhook:
    """A loopback HTTP server that keeps every JSON body POSTed to it."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, kind: str, mentioning: str, timeout_s: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = [b for b in self.bodies if b["kind"] == kind and mentioning in b["message"]]
            if found:
                return found[-1]
            time.sleep(0.05)
        raise AssertionError(f"no {kind!r} alert about {mentioning!r} reached the webhook; got {self.bodies}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def webhook() -> Iterator[Webhook]:
    server = Webhook()
    yield server
    server.close()


class HostMemory:
    """A memory probe that reads the real machine until a test makes memory scarce (1 MiB free, no GPU)."""

    def __init__(self) -> None:
        self.scarce = False
        self._real = SystemMemoryProbe()

    def gpus(self) -> list[GpuMemory]:
        return [] if self.scarce else self._real.gpus()

    def host_available_bytes(self) -> int:
        return 2**20 if self.scarce else self._real.host_available_bytes()


@pytest.fixture(scope="module")
def memory() -> HostMemory:
    return HostMemory()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, webhook: Webhook, memory: HostMemory) -> Iterator[RerankService]:
    folder = tmp_path_factory.mktemp("faults")
    settings = make_settings(folder / "data", golden_set=write_golden_set(folder / "golden"),
                             rollout_time_scale=1.0, webhook_url=webhook.url)
    built = RerankService(settings, SystemClock(), "tok", gate_config=FAILING_GATES, loader=loader, host_memory=memory)
    built.start(wait=True)
    yield built
    built.close()


@pytest.fixture(autouse=True)
def stable_keeps_serving(service: RerankService) -> Iterator[None]:
    yield
    assert service.updates.is_idle() and service.admission.is_open
    assert service.usable_versions() == [service.stable_version()]
    assert service.rank(request(1, "after")).version == service.stable_version()


def copy_model(source: str, target: Path, **manifest_changes: Any) -> Path:
    target.mkdir(parents=True)
    manifest = json.loads((Path(source) / "reranker.json").read_text())
    (target / "reranker.json").write_text(json.dumps({**manifest, **manifest_changes}))
    return target


def qwen_dir(target: Path, weights: bytes) -> Path:
    """A directory that claims to be a Qwen3-VL checkpoint: a real tiny config, the given weights file."""
    target.mkdir(parents=True)
    (target / "config.json").write_text(json.dumps(config_dict(SHAPES["tiny"])))
    (target / "model.safetensors").write_bytes(weights)
    return target


def truncated_safetensors() -> bytes:
    """A valid header for 4,000 bytes of float32 data, followed by only 100 of them."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [1000], "data_offsets": [0, 4000]}}).encode()
    return struct.pack("<Q", len(header)) + header + bytes(100)


def bad_checkpoint(kind: str, folder: Path) -> str:
    if kind == "missing":
        return str(folder / "no-such-model")
    if kind == "broken manifest":
        target = copy_model(V2, folder / "mini-broken")
        (target / "reranker.json").write_text('{"backend": "mini", "classifiers": [')
        return str(target)
    if kind == "unknown classifier":
        return str(copy_model(V2, folder / "mini-lite9", classifiers=["efficientnet-lite9"]))
    return str(qwen_dir(folder / "qwen-garbage", b"\xff" * 4096))


@pytest.mark.parametrize(("kind", "message"), [
    ("missing", r"model path '.*no-such-model' not found"),
    ("broken manifest", r"reranker\.json is not readable JSON"),
    ("unknown classifier", r"bad value for 'classifiers': \['efficientnet-lite9'\]"),
    ("garbage weights", r"cannot read the size of qwen-garbage"),
], ids=["missing", "broken-manifest", "unknown-classifier", "garbage-weights"])
def test_checkpoint_that_cannot_be_read_is_refused_before_anything_changes(
        service: RerankService, tmp_path: Path, kind: str, message: str) -> None:
    path = bad_checkpoint(kind, tmp_path)
    rollouts = len(service.store.recent_rollouts())
    with pytest.raises(ModelLoadError, match=message):
        service.submit_update(path, actor="dave")
    status = service.status()
    assert (status.light, status.state) == ("green", "idle")
    assert len(service.store.recent_rollouts()) == rollouts
    entry = service.store.recent_audit(1)[0]
    assert (entry.actor, entry.action, entry.target, entry.outcome) == ("dave", "hot_update", path, "refused")
    assert entry.detail


def failing_load(kind: str, folder: Path) -> str:
    if kind == "disk error":
        return str(copy_model(V2, folder / "mini-unreadable"))
    if kind == "NaN scores":
        return str(copy_model(V2, folder / "mini-nan"))
    return str(qwen_dir(folder / "qwen-truncated", truncated_safetensors()))


@pytest.mark.parametrize(("kind", "reason"), [
    ("disk error", r"Input/output error"),
    ("NaN scores", r"verification score nan is not a finite number"),
    ("truncated weights", r"could not load .*qwen-truncated"),
], ids=["disk-error", "nan-scores", "truncated-weights"])
def test_load_failure_turns_red_alerts_and_keeps_the_stable_serving(
        service: RerankService, webhook: Webhook, tmp_path: Path, kind: str, reason: str) -> None:
    path = failing_load(kind, tmp_path)
    with Load(service, threads=3) as load:
        rollout_id = service.submit_update(path, plan="demo", actor="dave")
        status = wait_for(service, {"failed", "rolling_out", "rolled_back"}, timeout_s=120)
    assert load.errors == [] and load.total > 0, load.errors[:3]
    assert set(v for seen in load.versions.values() for v in seen) == {"mini-v1"}
    assert (status.state, status.light, status.last_outcome) == ("failed", "red", "failed")
    assert status.banner.startswith("Last update failed: loading") and "acknowledge" in status.banner
    assert service.registry.get(Path(path).name).state.value == "failed"
    record = service.store.get_rollout(rollout_id)
    assert record.outcome == "failed"
    assert re.search(reason, record.reason or ""), record.reason
    alerts = [e for e in service.store.recent_events(rollout_id=rollout_id) if e.level == "alert"]
    assert [e.kind for e in alerts] == ["load_failed"]
    sent = webhook.wait_for("load_failed", mentioning=path)
    assert sent["level"] == "alert" and sent["state"] == "failed"
    service.rollout_command("acknowledge", actor="dave")
    assert service.status().light == "green"


def test_golden_gate_failure_rolls_back_before_any_traffic(service: RerankService, webhook: Webhook) -> None:
    rollout_id = service.submit_update(V2, plan="demo", mode="new-model", actor="dave")
    status = wait_for(service, {"rolled_back", "failed", "rolling_out"})
    assert (status.state, status.light) == ("rolled_back", "red")
    assert "golden-set gate failed: golden_new_model" in status.banner
    gate = next(g for g in service.store.gate_results(rollout_id) if g.name == "golden_new_model")
    assert not gate.passed and gate.threshold is not None and gate.observed is not None
    assert gate.observed < gate.threshold
    assert service.registry.get("mini-v2").state.value == "retired"
    assert service.store.get_rollout(rollout_id).outcome == "rolled_back"
    assert webhook.wait_for("rollback", mentioning="rolling back mini-v2: golden-set gate failed")["level"] == "alert"
    assert service.store.recent_events(1)[0].kind == "rolled_back"
    assert service.rank(request(0, "user-7")).version == "mini-v1"
    service.rollout_command("acknowledge", actor="dave")
    assert service.status().light == "green"


def test_live_latency_gate_failure_rolls_back_under_traffic_without_losing_requests(
        service: RerankService, tmp_path: Path) -> None:
    plan = [{"share": 50, "seconds": 60}, {"share": 100}]
    slow = copy_model(V1, tmp_path / "mini-slow", fault_slowdown=2.0)  # same scores, 3x the time
    with Load(service) as load:
        rollout_id = service.submit_update(str(slow), plan=plan, mode="same-model", actor="dave")
        status = wait_for(service, {"rolled_back", "failed", "promoted"}, timeout_s=240)
        load.settle("mini-v1")
    assert load.errors == [], load.errors[:3]
    assert (status.state, status.light) == ("rolled_back", "red")
    candidate = service.store.get_rollout(rollout_id).candidate
    assert candidate == "mini-slow"
    assert any(candidate in seen for seen in load.versions.values()), "the candidate never took traffic"
    gates = service.store.gate_results(rollout_id)
    assert any(g.name == "golden_same_model" and g.passed for g in gates)
    assert any(g.name == "latency" and not g.passed for g in gates)
    assert "live gate failed: latency" in status.banner
    assert service.registry.get(candidate).state.value == "retired"
    service.rollout_command("acknowledge", actor="dave")


@pytest.fixture
def scarce_memory(memory: HostMemory) -> Iterator[None]:
    memory.scarce = True
    yield
    memory.scarce = False


@pytest.mark.usefixtures("scarce_memory")
def test_low_memory_is_refused_unless_replacing_in_place(service: RerankService) -> None:
    with pytest.raises(InsufficientMemory, match="force_replace"):
        service.submit_update(V2, actor="dave")
    assert service.store.recent_audit(1)[0].outcome == "refused"
    assert service.status().light == "green"
    rollout_id = service.submit_update(V2, actor="dave", force_replace=True)
    with Load(service, threads=3) as load:
        deadline = time.monotonic() + 60
        while service.store.get_rollout(rollout_id).outcome is None and time.monotonic() < deadline:
            time.sleep(0.05)
    assert load.errors == [], load.errors[:3]
    assert service.store.get_rollout(rollout_id).outcome == "promoted"
    assert service.stable_version() == "mini-v2"
