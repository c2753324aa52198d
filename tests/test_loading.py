"""Backend detection, model references and the verified fallback chain.

The chain's logic runs against a fake backend (pure logic); one test loads the real mini model.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pytest

from reranker.clock import FakeClock
from reranker.content import Content, Pair
from reranker.errors import InputError, InsufficientMemory, ModelLoadError, NotFound
from reranker.models.base import ModelInfo, Placement, Reranker
from reranker.models.loading import LoadCancelled, describe, estimate_footprint, load_model
from reranker.models.memory import GIB, GpuMemory, ShardedPlacement
from reranker.models.registry import (
    LOOKED_FOR,
    backend_named,
    detect_backend,
    model_id_for,
    resolve_model_ref,
)

REPO = Path(__file__).resolve().parent.parent
BYTES_PER_ELEMENT = {"bfloat16": 2, "float16": 2, "float32": 4}


@dataclass
class OneGpuProbe:
    gpu_free_bytes: int = 40 * GIB
    host_bytes: int = 64 * GIB

    def gpus(self) -> list[GpuMemory]:
        return [GpuMemory(index=0, free_bytes=self.gpu_free_bytes, total_bytes=80 * GIB)]

    def host_available_bytes(self) -> int:
        return self.host_bytes


class FakeReranker:
    def __init__(self, placement: Placement, score_value: float, closed: list[Placement]) -> None:
        self._placement = placement
        self._score_value = score_value
        self._closed = closed

    @property
    def info(self) -> ModelInfo:
        return ModelInfo("fake-id", "fake", "1", "fake", self._placement.dtype, self._placement.device, 0, "")

    def score(self, pairs: Sequence[Pair]) -> list[float]:
        return [self._score_value for _ in pairs]

    def close(self) -> None:
        self._closed.append(self._placement)


@dataclass
class FakeBackend:
    """Fails or misbehaves on the (device, dtype) steps it is told to; scores 0.75 otherwise."""

    outcomes: dict[tuple[str, str], str] = field(default_factory=dict)  # "raise" | a score value
    clock: FakeClock | None = None
    on_load: threading.Event | None = None  # set while loading (to cancel mid-step)
    name: str = "fake"
    loaded: list[Placement] = field(default_factory=list)
    model_ids: list[str] = field(default_factory=list)
    closed: list[Placement] = field(default_factory=list)

    def matches(self, path: Path) -> bool:
        return (path / "fake.json").is_file()

    def estimate_bytes(self, path: Path, dtype: str) -> int:
        return 1_000_000 * BYTES_PER_ELEMENT[dtype]

    def supported_dtypes(self, device: str) -> list[str]:
        return ["bfloat16", "float16", "float32"] if device.startswith("cuda") else ["float32"]

    def load(self, path: Path, placement: Placement, model_id: str) -> Reranker:
        self.loaded.append(placement)
        self.model_ids.append(model_id)
        if self.clock is not None:
            self.clock.advance(2.0)
        if self.on_load is not None:
            self.on_load.set()
        outcome = self.outcomes.get((placement.device, placement.dtype), "0.75")
        if outcome == "raise":
            raise RuntimeError(f"CUDA out of memory loading {placement.dtype}")
        return FakeReranker(placement, float(outcome), self.closed)


@pytest.fixture
def fake_dir(tmp_path: Path) -> Path:
    model_dir = tmp_path / "fake-v3"
    model_dir.mkdir()
    (model_dir / "fake.json").write_text("{}")
    return model_dir


def steps(placements: Sequence[Placement]) -> list[tuple[str, str]]:
    return [(p.device, p.dtype) for p in placements]


# --- registry ----------------------------------------------------------------------------


def test_detect_backend_by_directory_contents(fake_dir: Path) -> None:
    backend = FakeBackend()
    assert detect_backend(fake_dir, [backend]) is backend


def test_detect_backend_names_the_directory_and_what_was_looked_for(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError) as caught:
        detect_backend(tmp_path, [FakeBackend()])
    assert str(tmp_path) in str(caught.value)
    assert LOOKED_FOR in str(caught.value)


def test_detect_backend_refuses_a_missing_directory_or_a_file(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist") as caught:
        detect_backend(tmp_path / "nope", [FakeBackend()])
    assert str(tmp_path / "nope") in str(caught.value)
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="not a directory"):
        detect_backend(tmp_path / "weights.bin", [FakeBackend()])


def test_backend_named() -> None:
    backend = FakeBackend()
    assert backend_named("fake", [backend]) is backend
    with pytest.raises(NotFound, match="'gguf'.*fake"):
        backend_named("gguf", [backend])


def test_model_id_from_manifest_else_directory_name(fake_dir: Path) -> None:
    assert model_id_for(fake_dir) == "fake-v3"
    (fake_dir / "reranker.json").write_text(json.dumps({"name": "mini"}))
    assert model_id_for(fake_dir) == "fake-v3"
    (fake_dir / "reranker.json").write_text(json.dumps({"id": "mini-2024-06"}))
    assert model_id_for(fake_dir) == "mini-2024-06"
    (fake_dir / "reranker.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="reranker.json"):
        model_id_for(fake_dir)


def test_resolve_paths_and_bare_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    models_dir = tmp_path / "models"
    (models_dir / "mini-v1").mkdir(parents=True)
    assert resolve_model_ref(str(models_dir / "mini-v1"), tmp_path / "elsewhere") == models_dir / "mini-v1"
    assert resolve_model_ref("mini-v1", models_dir) == models_dir / "mini-v1"
    monkeypatch.chdir(tmp_path)
    assert resolve_model_ref("models/mini-v1", tmp_path / "elsewhere") == models_dir / "mini-v1"
    with pytest.raises(ModelLoadError, match="'mini-v9' not found"):
        resolve_model_ref("mini-v9", models_dir)
    with pytest.raises(InputError):
        resolve_model_ref("  ", models_dir)


def test_hub_id_is_refused_unless_on_disk(tmp_path: Path) -> None:
    models_dir, cache = tmp_path / "models", tmp_path / "hf-cache"
    models_dir.mkdir()
    cache.mkdir()
    with pytest.raises(ModelLoadError) as caught:
        resolve_model_ref("Qwen/Qwen3-VL-Reranker-2B", models_dir, hub_cache=cache)
    assert "hub id" in str(caught.value) and "nothing is downloaded" in str(caught.value)
    (models_dir / "Qwen3-VL-Reranker-2B").mkdir()
    assert resolve_model_ref("Qwen/Qwen3-VL-Reranker-2B", models_dir, hub_cache=cache) == (
        models_dir / "Qwen3-VL-Reranker-2B"
    )


def test_hub_id_is_downloaded_only_when_allowed_and_pinned(tmp_path: Path) -> None:
    models_dir, cache, fetched = tmp_path / "models", tmp_path / "hf-cache", tmp_path / "fetched"
    models_dir.mkdir()
    cache.mkdir()
    fetched.mkdir()
    asked: list[tuple[str, str]] = []
    commit = "0123456789abcdef0123456789abcdef01234567"

    def download(hub_id: str, revision: str) -> str:
        asked.append((hub_id, revision))
        return str(fetched)

    pinned = f"Qwen/Qwen3-VL-Reranker-2B@{commit}"
    assert resolve_model_ref(pinned, models_dir, hub_cache=cache, download=download) == fetched
    assert asked == [("Qwen/Qwen3-VL-Reranker-2B", commit)]
    # Issue 8: --allow-downloads pulled whatever the repo's head was; only a pinned commit is fetched.
    for unpinned in ("Qwen/Qwen3-VL-Reranker-2B", "Qwen/Qwen3-VL-Reranker-2B@main", "Qwen/Qwen3-VL-Reranker-2B@v1.0"):
        with pytest.raises(ModelLoadError, match="pinned"):
            resolve_model_ref(unpinned, models_dir, hub_cache=cache, download=download)
    assert len(asked) == 1

    def offline(hub_id: str, revision: str) -> str:
        raise OSError("network unreachable")

    with pytest.raises(ModelLoadError, match="could not download 'Qwen/Qwen3-VL-Reranker-2B'.*unreachable"):
        resolve_model_ref(pinned, models_dir, hub_cache=cache, download=offline)
    with pytest.raises(ModelLoadError, match="--allow-downloads"):
        resolve_model_ref("Qwen/Qwen3-VL-Reranker-2B", models_dir, hub_cache=cache)


def test_hub_id_found_in_the_hugging_face_cache(tmp_path: Path) -> None:
    repo = tmp_path / "hub" / "models--Qwen--Qwen3-VL-Reranker-8B"
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    found = resolve_model_ref("Qwen/Qwen3-VL-Reranker-8B", tmp_path / "models", hub_cache=tmp_path / "hub")
    assert found == snapshot


def test_importing_the_model_layer_does_not_import_transformers() -> None:
    code = (
        "import sys, reranker.models.registry, reranker.models.loading\n"
        "assert 'transformers' not in sys.modules, 'transformers imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)


# --- the fallback chain -----------------------------------------------------------------


def test_first_step_that_loads_and_verifies_is_used(fake_dir: Path) -> None:
    clock = FakeClock()
    backend = FakeBackend(clock=clock)
    result = load_model(fake_dir, probe=OneGpuProbe(), backends=[backend], clock=clock)
    assert steps([result.placement]) == [("cuda:0", "bfloat16")]
    assert result.backend == "fake" and result.model.info.dtype == "bfloat16"
    assert [(a.ok, a.error, a.seconds) for a in result.attempts] == [(True, None, 2.0)]
    assert result.seconds == 2.0
    assert backend.closed == []


def test_falls_back_when_the_first_step_raises(fake_dir: Path) -> None:
    backend = FakeBackend(outcomes={("cuda:0", "bfloat16"): "raise"})
    result = load_model(fake_dir, probe=OneGpuProbe(), backends=[backend])
    assert steps(a.placement for a in result.attempts) == [("cuda:0", "bfloat16"), ("cuda:0", "float16")]
    first, second = result.attempts
    assert not first.ok and "CUDA out of memory" in (first.error or "")
    assert second.ok and result.model.info.dtype == "float16"


@pytest.mark.parametrize("bad_score", ["nan", "inf", "1.5", "-0.1"])
def test_falls_back_and_closes_when_verification_fails(fake_dir: Path, bad_score: str) -> None:
    backend = FakeBackend(outcomes={("cuda:0", "bfloat16"): bad_score, ("cuda:0", "float16"): bad_score})
    result = load_model(fake_dir, probe=OneGpuProbe(), backends=[backend])
    assert steps([result.placement]) == [("cuda:0", "float32")]
    assert steps(backend.closed) == [("cuda:0", "bfloat16"), ("cuda:0", "float16")]
    assert "not a finite number in [0, 1]" in (result.attempts[0].error or "")
    assert math.isfinite(result.model.score([Pair(Content(text="q"), Content(text="d"))])[0])


def test_all_steps_failing_lists_every_reason(fake_dir: Path) -> None:
    backend = FakeBackend(
        outcomes={
            ("cuda:0", "bfloat16"): "raise",
            ("cuda:0", "float16"): "nan",
            ("cuda:0", "float32"): "raise",
            ("cpu", "float32"): "2.0",
        }
    )
    with pytest.raises(ModelLoadError) as caught:
        load_model(fake_dir, probe=OneGpuProbe(), backends=[backend])
    message = str(caught.value)
    for expected in (
        "bfloat16 on cuda:0: load failed: RuntimeError",
        "float16 on cuda:0: verification score nan",
        "float32 on cuda:0: load failed",
        "float32 on cpu: verification score 2.0",
    ):
        assert expected in message
    assert len(backend.closed) == 2


def test_device_pref_cpu_and_memory_shortfall(fake_dir: Path) -> None:
    backend = FakeBackend()
    result = load_model(fake_dir, device_pref="cpu", probe=OneGpuProbe(), backends=[backend])
    assert steps(backend.loaded) == [("cpu", "float32")] and result.placement.device == "cpu"
    with pytest.raises(InsufficientMemory):
        load_model(fake_dir, probe=OneGpuProbe(gpu_free_bytes=0, host_bytes=0), backends=[backend])


def test_cancel_before_loading_loads_nothing(fake_dir: Path) -> None:
    backend, cancel = FakeBackend(), threading.Event()
    cancel.set()
    with pytest.raises(LoadCancelled, match="nothing yet"):
        load_model(fake_dir, probe=OneGpuProbe(), backends=[backend], cancel=cancel)
    assert backend.loaded == []


def test_cancel_during_a_failing_step_stops_the_chain(fake_dir: Path) -> None:
    cancel = threading.Event()
    backend = FakeBackend(outcomes={("cuda:0", "bfloat16"): "raise"}, on_load=cancel)
    with pytest.raises(LoadCancelled, match="bfloat16 on cuda:0"):
        load_model(fake_dir, probe=OneGpuProbe(), backends=[backend], cancel=cancel)
    assert steps(backend.loaded) == [("cuda:0", "bfloat16")]


def test_cancel_during_a_successful_step_closes_the_model(fake_dir: Path) -> None:
    cancel = threading.Event()
    backend = FakeBackend(on_load=cancel)
    with pytest.raises(LoadCancelled):
        load_model(fake_dir, probe=OneGpuProbe(), backends=[backend], cancel=cancel)
    assert steps(backend.closed) == [("cuda:0", "bfloat16")]


def test_model_id_is_the_directory_name_unless_given(fake_dir: Path) -> None:
    backend = FakeBackend()
    load_model(fake_dir, probe=OneGpuProbe(), backends=[backend])
    load_model(fake_dir, probe=OneGpuProbe(), backends=[backend], model_id="canary-7")
    assert backend.model_ids == ["fake-v3", "canary-7"]


def test_footprint_comes_from_the_detected_backend(fake_dir: Path) -> None:
    backend = FakeBackend()
    assert estimate_footprint(fake_dir, "float32", [backend]) == 4_000_000


def test_describe_names_every_gpu_of_a_sharded_placement() -> None:
    sharded = ShardedPlacement(device="auto", dtype="bfloat16", max_memory={0: GIB, 1: GIB})
    assert describe(sharded) == "bfloat16 across cuda:0,cuda:1"
    assert describe(Placement(device="cpu", dtype="float32")) == "float32 on cpu"


# --- the real registry and the real mini model --------------------------------------------


def test_shipped_registry_detects_the_mini_directories() -> None:
    for name in ("mini-v1", "mini-v2"):
        assert detect_backend(REPO / "models" / name).name == "mini"
        assert model_id_for(REPO / "models" / name) == name


def test_load_the_real_mini_model() -> None:
    result = load_model(REPO / "models" / "mini-v1")
    try:
        assert result.backend == "mini"
        assert (result.placement.device, result.placement.dtype) == ("cpu", "float32")
        assert [a.ok for a in result.attempts] == [True]
        info = result.model.info
        assert (info.id, info.backend, info.device, info.dtype) == ("mini-v1", "mini", "cpu", "float32")
        query = Content(text="a red sports car")
        relevant, unrelated = result.model.score(
            [Pair(query, Content(text="a crimson automobile")), Pair(query, Content(text="a lecture on tax law"))]
        )
        assert 0.0 <= unrelated < relevant <= 1.0
    finally:
        result.model.close()


def test_a_missing_local_folder_is_not_taken_for_a_hub_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 11: "models/does-not-exist" names a folder under ./models, so no `huggingface-cli` hint."""
    (tmp_path / "models").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelLoadError) as caught:
        resolve_model_ref("models/does-not-exist", tmp_path / "models", hub_cache=tmp_path / "hub")
    assert "no directory" in str(caught.value) and "huggingface-cli" not in str(caught.value)
