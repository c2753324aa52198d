"""Load a model directory through the fallback chain, verifying each step with a tiny forward pass."""
from __future__ import annotations

import gc
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from reranker.clock import Clock, SystemClock
from reranker.content import Content, Pair
from reranker.errors import ModelLoadError, RerankerError
from reranker.models.base import Backend, Placement, Reranker
from reranker.models.memory import (
    Headroom,
    MemoryProbe,
    ShardedPlacement,
    SystemMemoryProbe,
    plan_placements,
)
from reranker.models.registry import detect_backend, model_id_for

VERIFY_PAIR = Pair(
    query=Content(text="What is the capital of France?"),
    document=Content(text="Paris is the capital and largest city of France."),
)


class LoadCancelled(RerankerError):
    """The load was cancelled between two steps of the fallback chain."""

    status_code = 409


@dataclass(frozen=True)
class LoadAttempt:
    placement: Placement
    ok: bool
    error: str | None
    seconds: float
    phases: tuple[tuple[str, float], ...] = ()  # e.g. read, to_device, verify, warm_up (seconds)


@dataclass(frozen=True)
class LoadResult:
    model: Reranker
    backend: str
    attempts: tuple[LoadAttempt, ...]
    seconds: float

    @property
    def placement(self) -> Placement:
        """The step that was actually used."""
        return self.attempts[-1].placement


def estimate_footprint(path: Path, dtype: str, backends: Sequence[Backend] | None = None) -> int:
    """Bytes the weights take in dtype, from file headers (no loading)."""
    return detect_backend(path, backends).estimate_bytes(path, dtype)


def load_model(
    path: Path,
    *,
    device_pref: str = "auto",
    probe: MemoryProbe | None = None,
    model_id: str | None = None,
    backends: Sequence[Backend] | None = None,
    cancel: threading.Event | None = None,
    headroom: Headroom = Headroom(),
    clock: Clock | None = None,
) -> LoadResult:
    """Try each placement that fits, best first; the first one that loads and verifies wins."""
    timer = clock or SystemClock()
    started = timer.monotonic()
    backend = detect_backend(path, backends)
    version_id = model_id or model_id_for(path)
    plan = plan_placements(
        lambda dtype: backend.estimate_bytes(path, dtype),
        backend.supported_dtypes,
        probe or SystemMemoryProbe(),
        device_pref,
        headroom,
    )
    attempts: list[LoadAttempt] = []
    for placement in plan:
        if _is_set(cancel):
            raise _cancelled(path, attempts)
        step_started = timer.monotonic()
        phases: list[tuple[str, float]] = []
        model, error = _load_verified(backend, path, placement, version_id, phases, timer)
        attempts.append(
            LoadAttempt(placement, model is not None, error, timer.monotonic() - step_started, tuple(phases))
        )
        if model is not None and _is_set(cancel):
            model.close()
            raise _cancelled(path, attempts)
        if model is not None:
            return LoadResult(model, backend.name, tuple(attempts), timer.monotonic() - started)
        _release_cached_memory()
    reasons = "; ".join(f"{describe(a.placement)}: {a.error}" for a in attempts)
    raise ModelLoadError(f"could not load {path} with backend {backend.name}; tried {reasons}")


def describe(placement: Placement) -> str:
    """'float16 on cuda:0' or 'bfloat16 across cuda:0,cuda:1', for reports and messages."""
    if isinstance(placement, ShardedPlacement):
        gpus = ",".join(f"cuda:{index}" for index in placement.max_memory)
        return f"{placement.dtype} across {gpus}"
    return f"{placement.dtype} on {placement.device}"


def verify_scores(model: Reranker) -> str | None:
    """None when a one-pair forward pass gives one finite score in [0, 1], else why not."""
    scores = model.score([VERIFY_PAIR])
    if len(scores) != 1:
        return f"verification returned {len(scores)} scores for 1 pair"
    score = float(scores[0])
    if not 0.0 <= score <= 1.0:  # also false for NaN and infinities
        return f"verification score {score!r} is not a finite number in [0, 1]"
    return None


def _load_verified(
    backend: Backend, path: Path, placement: Placement, model_id: str,
    phases: list[tuple[str, float]], timer: Clock,
) -> tuple[Reranker | None, str | None]:
    """Load, verify, warm up; the seconds of each phase (the backend's own first) go into phases."""
    started = timer.monotonic()
    try:
        model = backend.load(path, placement, model_id)
    except Exception as exc:  # any failure of one step moves the chain on; the reason is kept
        return None, f"load failed: {type(exc).__name__}: {exc}"
    backend_phases = dict(getattr(model, "load_phases", None) or {})
    phases.extend(backend_phases.items() or [("load", timer.monotonic() - started)])
    started = timer.monotonic()
    try:
        problem = verify_scores(model)
    except Exception as exc:
        problem = f"verification failed: {type(exc).__name__}: {exc}"
    phases.append(("verify", timer.monotonic() - started))
    warm_up = getattr(model, "warm_up", None)
    if problem is None and callable(warm_up):
        started = timer.monotonic()
        try:
            warm_up()
        except Exception as exc:
            problem = f"warm-up failed: {type(exc).__name__}: {exc}"
        phases.append(("warm_up", timer.monotonic() - started))
    if problem is None:
        return model, None
    return None, problem + _close_quietly(model)


def _close_quietly(model: Reranker) -> str:
    try:
        model.close()
    except Exception as exc:
        return f" (and close failed: {type(exc).__name__}: {exc})"
    return ""


def _is_set(cancel: threading.Event | None) -> bool:
    return cancel is not None and cancel.is_set()


def _cancelled(path: Path, attempts: list[LoadAttempt]) -> LoadCancelled:
    tried = ", ".join(describe(a.placement) for a in attempts) or "nothing yet"
    return LoadCancelled(f"loading {path} was cancelled (tried: {tried})")


def _release_cached_memory() -> None:
    """Give memory of a failed step back: collect cycles and, if CUDA is in use, its cache."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
