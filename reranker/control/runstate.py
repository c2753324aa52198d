"""The mutable facts of one rollout, and the read-only snapshot the controller hands out."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from reranker.control.gates import GateResult
from reranker.control.plans import Mode, Plan
from reranker.control.ports import Event
from reranker.control.rollout import NEEDS_ACKNOWLEDGE, RolloutState


@dataclass
class RunState:
    """The mutable facts of the current (or last) rollout; only touched under the controller's lock."""

    path: str
    plan: Plan
    mode: Mode
    actor: str
    started_at: float
    kind: str = "rollout"  # "rollout" (staged, beside the stable) or "replace" (in place)
    candidate_id: str | None = None
    retiring_id: str | None = None
    load_progress: float = 0.0
    validation_progress: tuple[int, int] = (0, 0)  # golden pairs scored, pairs to score
    baseline_rss: int = 0
    stage_index: int = 0
    stage_started_at: float | None = None
    elapsed_before: float = 0.0  # seconds the stage ran before the current run (pauses split it)
    running_since: float | None = None  # None while paused
    share: float = 0.0
    traffic_started_at: float = 0.0
    gates: dict[str, GateResult] = field(default_factory=dict)
    last_check_at: float = -math.inf
    failed_checks: int = 0
    held: bool = False  # a failing check, or missing evidence, kept the stage past its minimum time
    gates_checked: bool = False  # at least one live check has run since traffic started
    awaiting: tuple[str, ...] = ()  # the gates the stage waits on for evidence (() when it does not)
    holding: str = ""  # set once the stage waited past its evidence_wait: "holding: 12/20 candidate requests — ..."
    traffic_reverted: bool = False
    unload_requested: bool = False

    def seconds_in_stage(self, now: float) -> float:
        running = now - self.running_since if self.running_since is not None else 0.0
        return self.elapsed_before + max(running, 0.0)

    def freeze_stage(self, now: float) -> None:
        self.elapsed_before, self.running_since = self.seconds_in_stage(now), None


@dataclass(frozen=True)
class ControllerSnapshot:
    at: float
    state: RolloutState
    stable_id: str | None
    candidate_id: str | None
    retiring_id: str | None  # the old stable while a promotion drains it
    candidate_path: str | None
    mode: Mode | None
    plan: Plan | None
    actor: str | None
    started_at: float | None
    stage_index: int
    stage_started_at: float | None
    seconds_in_stage: float
    share: float  # candidate traffic percent now
    load_progress: float
    validation_progress: tuple[int, int]  # golden pairs scored, pairs to score ((0, 0): not known yet)
    gates: tuple[GateResult, ...]
    events: tuple[Event, ...]
    last_outcome: str | None  # promoted | rolled_back | failed | cancelled | interrupted
    reason: str  # why the current or last rollout is rolling back, failed or was interrupted
    acknowledged: bool
    kind: str = "rollout"  # "rollout" or "replace" (replace in place)
    holding: str = ""  # why the stage holds for lack of evidence ("" when it does not)

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "state": self.state.value,
            "stable_id": self.stable_id,
            "candidate_id": self.candidate_id,
            "retiring_id": self.retiring_id,
            "candidate_path": self.candidate_path,
            "mode": self.mode.value if self.mode else None,
            "plan": {"name": self.plan.name, "stages": self.plan.to_list()} if self.plan else None,
            "actor": self.actor,
            "started_at": self.started_at,
            "stage_index": self.stage_index,
            "stage_started_at": self.stage_started_at,
            "seconds_in_stage": self.seconds_in_stage,
            "share": self.share,
            "load_progress": self.load_progress,
            "validation_progress": list(self.validation_progress),
            "gates": [g.to_dict() for g in self.gates],
            "events": [e.to_dict() for e in self.events],
            "last_outcome": self.last_outcome,
            "reason": self.reason,
            "acknowledged": self.acknowledged,
            "kind": self.kind,
            "holding": self.holding,
        }


def build_snapshot(
    now: float,
    state: RolloutState,
    stable_id: str | None,
    run: RunState | None,
    events: tuple[Event, ...],
    last_outcome: str | None,
    reason: str,
) -> ControllerSnapshot:
    return ControllerSnapshot(
        at=now,
        state=state,
        stable_id=stable_id,
        candidate_id=run.candidate_id if run else None,
        retiring_id=run.retiring_id if run else None,
        candidate_path=run.path if run else None,
        mode=run.mode if run else None,
        plan=run.plan if run else None,
        actor=run.actor if run else None,
        started_at=run.started_at if run else None,
        stage_index=run.stage_index if run else 0,
        stage_started_at=run.stage_started_at if run else None,
        seconds_in_stage=run.seconds_in_stage(now) if run and run.stage_started_at is not None else 0.0,
        share=run.share if run else 0.0,
        load_progress=run.load_progress if run else 0.0,
        validation_progress=run.validation_progress if run else (0, 0),
        gates=tuple(run.gates.values()) if run else (),
        events=events,
        last_outcome=last_outcome,
        reason=reason,
        acknowledged=state not in NEEDS_ACKNOWLEDGE,
        kind=run.kind if run else "rollout",
        holding=run.holding if run else "",
    )
