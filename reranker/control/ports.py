"""What the rollout controller needs from the rest of the service, as Protocols.

Every method is expected to return quickly: long work (loading, golden-set scoring, draining)
runs in the collaborator's own thread and is polled by the controller's tick.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol, Sequence

from reranker.control.gates import GateResult
from reranker.control.livestats import PairedWindow, WindowStats
from reranker.control.plans import Mode


class LoadPhase(str, Enum):
    LOADING = "loading"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class LoadStatus:
    phase: LoadPhase
    progress: float = 0.0  # 0..1
    version_id: str | None = None  # set once DONE: the registered, ready candidate
    error: str | None = None  # set once FAILED


class CandidateLoader(Protocol):
    def start_load(self, path: str) -> None:
        """Begin loading the model directory in the background; raise an InputError/Conflict at once if refused."""

    def poll_load(self) -> LoadStatus: ...

    def cancel_load(self) -> None:
        """Stop the current load; a model it already produced is discarded by the loader."""


class GoldenValidator(Protocol):
    def start_validation(self, stable_id: str, candidate_id: str, mode: Mode) -> None:
        """Begin the pre-traffic golden-set gate in the background."""

    def poll_validation(self) -> Sequence[GateResult] | None:
        """The gate results once finished, None while running; raises if the run itself broke."""

    def validation_progress(self) -> tuple[int, int]:
        """(golden pairs scored, pairs to score) of the current run, all versions counted;
        (0, 0) while the total is not known yet."""

    def cancel_validation(self) -> None: ...


class TrafficSetter(Protocol):
    def set_candidate_share(self, stable_id: str, candidate_id: str | None, percent: float) -> None:
        """Route percent% of requests to the candidate and the rest to stable.

        candidate_id None (percent 0) means: stable only, the candidate leaves the routing snapshot.
        """


class LiveStatsSource(Protocol):
    def window(self, version: str, since: float) -> WindowStats: ...

    def pairs(self, stable: str, candidate: str, since: float) -> PairedWindow:
        """Paired replays of the same requests on both versions (see EvidenceSampler)."""


class EvidenceSampler(Protocol):
    def watch(self, stable_id: str, candidate_id: str | None) -> None:
        """Replay a sample of live requests on both versions in the background lane (answers are
        never changed), mirroring to the candidate whatever its share does not bring;
        candidate None stops."""


class MemoryProbe(Protocol):
    def rss_bytes(self) -> int: ...


class Unloader(Protocol):
    def start_unload(self, version_id: str) -> None:
        """Mark the version draining; it leaves memory once its in-flight requests finish."""

    def is_unloaded(self, version_id: str) -> bool: ...


class EventLevel(str, Enum):
    INFO = "info"
    WARNING = "warning"
    ALERT = "alert"  # a sink also forwards these to the webhook when one is configured


@dataclass(frozen=True)
class Event:
    at: float
    kind: str  # e.g. "start", "gate_failed", "rolled_back"
    message: str
    level: EventLevel = EventLevel.INFO
    actor: str = "controller"
    state: str = ""  # the rollout state after the event
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "kind": self.kind,
            "message": self.message,
            "level": self.level.value,
            "actor": self.actor,
            "state": self.state,
            "data": dict(self.data),
        }


class EventSink(Protocol):
    def emit(self, event: Event) -> None:
        """Persist the event; alerts may also go to a webhook (the sink decides, without blocking)."""


@dataclass(frozen=True)
class InterruptedRollout:
    """What the store knew of a rollout that was still in flight when the process stopped."""

    candidate_path: str
    state: str
    started_at: float
    actor: str = "unknown"
    candidate_id: str | None = None
