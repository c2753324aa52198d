"""Adapters that give the rollout controller the real loader, validator, traffic and unloader."""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Callable, Sequence

import psutil

from reranker.control.gates import GateConfig, GateResult, golden_new_model, golden_same_model
from reranker.control.plans import Mode
from reranker.control.policy import TrafficPolicy
from reranker.control.ports import LoadPhase, LoadStatus
from reranker.control.registry import Registry, VersionState
from reranker.engine.port import ScoringEngine
from reranker.evaluation import Decoders, LabelledSet
from reranker.service.golden import DecodedSet
from reranker.service.versions import LoadJob, VersionManager

log = logging.getLogger(__name__)


class VersionLoader:
    """CandidateLoader: one background load at a time through the VersionManager. A directory
    already loaded beside the stable version (no traffic, or an experiment's share) is adopted as
    the candidate instead of being loaded a second time (no `mini-v2~2`); the stable version's own
    directory still loads a fresh copy (a same-model update)."""

    def __init__(self, versions: VersionManager) -> None:
        self._versions = versions
        self._job: LoadJob | None = None
        self._adopted: str | None = None

    def start_load(self, path: str) -> None:
        _, resolved = self._versions.resolve(path)
        self._adopted = self._versions.loaded_beside(resolved)
        if self._adopted is not None:
            log.info("hot update to %s: adopting %s, already loaded beside", path, self._adopted)
            self._job = None
            return
        self._job = self._versions.start_load(path, unique=True)

    def poll_load(self) -> LoadStatus:
        if self._adopted is not None:
            return LoadStatus(LoadPhase.DONE, progress=1.0, version_id=self._adopted)
        job = self._job
        if job is None or not job.done.is_set():
            return LoadStatus(LoadPhase.LOADING, progress=0.5 if job else 0.0)
        if job.error:
            return LoadStatus(LoadPhase.FAILED, error=job.error)
        return LoadStatus(LoadPhase.DONE, progress=1.0, version_id=job.version)

    def cancel_load(self) -> None:
        """Cancel the load; a candidate that finished loading before the cancel is unloaded. An
        adopted version was loaded before the update began: it stays, as it was."""
        if self._adopted is not None:
            return
        job = self._job
        if job is not None:
            self._versions.cancel_job(job)


class GoldenSetValidator:
    """GoldenValidator: scores the labelled set on stable and candidate engines in a thread."""

    def __init__(self, registry: Registry[ScoringEngine], golden: Callable[[], tuple[LabelledSet, Decoders]],
                 config: GateConfig) -> None:
        self._registry = registry
        self._golden = golden
        self._config = config
        self._results: list[GateResult] | None = None
        self._error: Exception | None = None
        self._done = threading.Event()
        self._progress = (0, 0)

    def start_validation(self, stable_id: str, candidate_id: str, mode: Mode) -> None:
        self._results, self._error, self._progress = None, None, (0, 0)
        self._done.clear()
        threading.Thread(target=self._run, args=(stable_id, candidate_id, mode),
                         name="golden-set", daemon=True).start()

    def poll_validation(self) -> Sequence[GateResult] | None:
        if not self._done.is_set():
            return None
        if self._error is not None:
            raise self._error
        return self._results

    def validation_progress(self) -> tuple[int, int]:
        return self._progress

    def cancel_validation(self) -> None:
        """The run is short and read-only; its result is simply ignored."""

    def _count(self, done: int, total: int) -> None:
        self._progress = (done, total)  # one tuple: readers see a consistent pair

    def _run(self, stable_id: str, candidate_id: str, mode: Mode) -> None:
        try:
            golden = DecodedSet.build(*self._golden())
            stable, candidate = golden.paired_scores(self._registry, (stable_id, candidate_id), self._count)
            if mode is Mode.SAME_MODEL:
                flat_s = [s for row in stable for s in row]
                flat_c = [s for row in candidate for s in row]
                self._results = [golden_same_model(flat_s, flat_c, self._config)]
            else:
                self._results = [golden_new_model(golden.mean_ndcg(stable), golden.mean_ndcg(candidate), self._config)]
        except Exception as exc:  # reported through poll_validation, which the controller handles
            self._error = exc
        finally:
            self._done.set()


class RegistryTraffic:
    """TrafficSetter: maps (stable, candidate, percent) onto one routing-snapshot swap."""

    def __init__(self, swap: Callable[[TrafficPolicy, str], None]) -> None:
        self._swap = swap

    def set_candidate_share(self, stable_id: str, candidate_id: str | None, percent: float) -> None:
        if candidate_id is None or percent <= 0:
            self._swap(TrafficPolicy.single(stable_id), stable_id)
        elif percent >= 100:
            self._swap(TrafficPolicy.canary(stable_id, candidate_id, 100.0), stable_id)
        else:
            self._swap(TrafficPolicy.canary(stable_id, candidate_id, percent), stable_id)


class ProcessMemory:
    """MemoryProbe: resident memory of this process."""

    def __init__(self) -> None:
        self._process = psutil.Process()

    def rss_bytes(self) -> int:
        return int(self._process.memory_info().rss)


class DrainingUnloader:
    """Unloader: drains and unloads a version in a background thread."""

    def __init__(self, registry: Registry[ScoringEngine], versions: VersionManager, timeout_s: float = 120.0) -> None:
        self._registry = registry
        self._versions = versions
        self._timeout_s = timeout_s

    def start_unload(self, version_id: str) -> None:
        threading.Thread(target=self._run, args=(version_id,), name=f"unload-{version_id}", daemon=True).start()

    def _run(self, version_id: str) -> None:
        try:
            self._versions.unload(version_id, self._timeout_s)
        except Exception as exc:  # the controller polls is_unloaded and reports a stuck drain
            log.warning("unloading %s failed: %s", version_id, exc)

    def is_unloaded(self, version_id: str) -> bool:
        try:
            state = self._registry.get(version_id).state
        except Exception:
            return True
        return state in (VersionState.RETIRED, VersionState.FAILED)


def default_golden(path: Path, decoders: Decoders) -> Callable[[], tuple[LabelledSet, Decoders]]:
    from reranker.evaluation import load_labelled_set

    return lambda: (load_labelled_set(path), decoders)
