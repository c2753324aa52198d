"""One function turns the controller's snapshot into the light, banner and progress everyone shows."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import PurePath
from typing import Any

from reranker.control.rollout import RolloutState
from reranker.control.runstate import ControllerSnapshot

S = RolloutState
ACK_HINT = "acknowledge in the Operator tab"


class Light(str, Enum):
    GREEN = "green"
    YELLOW = "yellow"
    RED = "red"


@dataclass(frozen=True)
class Progress:
    stage: int  # 1-based
    stages: int
    share: float  # candidate traffic percent now
    seconds_in_stage: float
    stage_seconds: float
    fraction: float  # of the whole plan's time, 0..1

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "stages": self.stages,
            "share": self.share,
            "seconds_in_stage": self.seconds_in_stage,
            "stage_seconds": self.stage_seconds,
            "fraction": self.fraction,
        }


@dataclass(frozen=True)
class Step:
    """One stage of the plan as the operator sees it."""

    stage: int  # 1-based
    share: float
    seconds: float
    ramp: bool
    state: str  # "done" | "current" | "holding" | "pending"

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "share": self.share, "seconds": self.seconds, "ramp": self.ramp, "state": self.state}


@dataclass(frozen=True)
class Status:
    light: Light
    banner: str  # empty when nothing is in flight and nothing needs attention
    state: str
    progress: Progress | None  # while a candidate takes traffic
    holding: str = ""  # "holding: 12/20 candidate requests — not enough traffic" while a stage starves
    steps: tuple[Step, ...] = ()  # the plan's stages with done/current/holding/pending

    def to_dict(self) -> dict[str, Any]:
        return {
            "light": self.light.value,
            "banner": self.banner,
            "state": self.state,
            "progress": self.progress.to_dict() if self.progress else None,
            "holding": self.holding,
            "steps": [step.to_dict() for step in self.steps],
        }


def _steps(snap: ControllerSnapshot) -> tuple[Step, ...]:
    plan = snap.plan
    if plan is None or snap.kind != "rollout":
        return ()
    if snap.state in (S.PROMOTING, S.PROMOTED):
        current = len(plan.stages)
    elif snap.state in (S.ROLLING_OUT, S.PAUSED, S.ROLLING_BACK, S.ROLLED_BACK):
        current = snap.stage_index
    else:
        current = -1
    out = []
    for i, stage in enumerate(plan.stages):
        if current < 0 or i > current or (i == current and snap.state not in (S.ROLLING_OUT, S.PAUSED)):
            state = "pending" if current < 0 or i > current else "stopped"
        elif i < current:
            state = "done"
        else:
            state = "holding" if snap.holding else "current"
        out.append(Step(i + 1, stage.share, stage.seconds, stage.ramp, state))
    return tuple(out)


def _progress(snap: ControllerSnapshot) -> Progress | None:
    plan = snap.plan
    if plan is None or snap.state not in (S.ROLLING_OUT, S.PAUSED, S.PROMOTING):
        return None
    if snap.state is S.PROMOTING:
        last = plan.stages[-1]
        return Progress(len(plan.stages), len(plan.stages), 100.0, snap.seconds_in_stage, last.seconds, 1.0)
    stage = plan.stages[snap.stage_index]
    in_stage = min(snap.seconds_in_stage, stage.seconds)
    done = sum(s.seconds for s in plan.stages[: snap.stage_index]) + in_stage
    total = plan.total_seconds
    fraction = done / total if total > 0 else snap.stage_index / len(plan.stages)
    return Progress(
        stage=snap.stage_index + 1,
        stages=len(plan.stages),
        share=snap.share,
        seconds_in_stage=snap.seconds_in_stage,
        stage_seconds=stage.seconds,
        fraction=min(fraction, 1.0),
    )


def _candidate_name(snap: ControllerSnapshot) -> str:
    if snap.candidate_id:
        return snap.candidate_id
    return PurePath(snap.candidate_path).name if snap.candidate_path else "the new model"


def _banner(snap: ControllerSnapshot, progress: Progress | None) -> str:
    name, state = _candidate_name(snap), snap.state
    if state is S.LOADING:
        return f"Model upgrade: loading {name} ({snap.load_progress:.0%})"
    if state is S.VALIDATING:
        done, total = snap.validation_progress
        counted = f" ({done:,}/{total:,} pairs scored)" if total else ""
        return f"Model upgrade: checking {name} on the golden set{counted} — answers still come from {snap.stable_id}"
    if state is S.REPLACING:
        return (f"Model upgrade in place: unloading {snap.stable_id} and loading {name} — "
                "new requests wait until it serves")
    if state is S.PROMOTING:
        return f"Model upgrade finishing — answers come from {snap.stable_id}; unloading {snap.retiring_id}"
    if progress is not None and snap.holding:
        return f"Model upgrade {progress.stage}/{progress.stages} {snap.holding} — answers still come from {snap.stable_id}"[:400]
    if progress is not None:
        paused = " paused" if state is S.PAUSED else ""
        some = "answers" if progress.share >= 100 else "some answers"
        return f"Model upgrade {progress.stage}/{progress.stages}{paused} — {some} come from {name}"
    if state is S.ROLLING_BACK:
        return f"Rolling back {name}: {snap.reason} — answers come from {snap.stable_id}"
    if state is S.ROLLED_BACK:
        return f"Last update rolled back: {snap.reason} — {ACK_HINT}"
    if state is S.FAILED:
        return f"Last update failed: {snap.reason} — {ACK_HINT}"
    if state is S.INTERRUPTED:
        return f"Last update was interrupted: {snap.reason} — {ACK_HINT}"
    return ""


def _light(state: RolloutState) -> Light:
    if state in (S.ROLLING_BACK, S.ROLLED_BACK, S.FAILED, S.INTERRUPTED):
        return Light.RED
    if state in (S.LOADING, S.VALIDATING, S.ROLLING_OUT, S.PAUSED, S.PROMOTING, S.REPLACING):
        return Light.YELLOW
    return Light.GREEN


def derive_status(snap: ControllerSnapshot, model_ready: bool) -> Status:
    """green: one stable version, nothing in flight; yellow: an update in flight; red: the last
    update failed or rolled back (until acknowledged), or no model can serve."""
    progress = _progress(snap)
    banner = _banner(snap, progress)
    steps = _steps(snap)
    if not model_ready:
        return Status(Light.RED, banner or "No model is ready to serve — load one in the Operator tab", snap.state.value,
                      progress, snap.holding, steps)
    return Status(_light(snap.state), banner, snap.state.value, progress, snap.holding, steps)
