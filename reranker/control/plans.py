"""Rollout plans as data: stages of candidate traffic share, minimum time, ramps and gates."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any, Sequence

from reranker.errors import InputError

LIVE_GATES: tuple[str, ...] = ("latency", "error_rate", "memory")
MAX_STAGE_SECONDS = 7 * 86_400.0  # one stage may hold at most a week
MAX_STAGES = 20


class Mode(str, Enum):
    """How the candidate is judged before it takes traffic."""

    SAME_MODEL = "same-model"  # same weights reloaded: golden scores must match the stable's
    NEW_MODEL = "new-model"  # new weights: golden ranking quality must not be worse


def parse_mode(text: str) -> Mode:
    try:
        return Mode(text)
    except ValueError:
        choices = ", ".join(m.value for m in Mode)
        raise InputError(f"rollout mode must be one of {choices}, got {text!r}") from None


@dataclass(frozen=True)
class Stage:
    """Candidate share (percent) held for at least `seconds`; a ramp climbs linearly from the
    previous stage's share to this one over `seconds`."""

    share: float
    seconds: float = 0.0
    ramp: bool = False
    gates: tuple[str, ...] = LIVE_GATES
    evidence_wait_s: float | None = None  # past its minimum time, wait this long for evidence, then hold

    @property
    def evidence_wait(self) -> float:
        """Seconds past the stage's minimum time it waits for its gates' evidence before holding
        and alerting (default: 3x the stage time, at least 10 s)."""
        return self.evidence_wait_s if self.evidence_wait_s is not None else max(3.0 * self.seconds, 10.0)

    def to_dict(self) -> dict[str, Any]:
        out = {"share": self.share, "seconds": self.seconds, "ramp": self.ramp, "gates": list(self.gates)}
        if self.evidence_wait_s is not None:
            out["evidence_wait_s"] = self.evidence_wait_s
        return out


@dataclass(frozen=True)
class Plan:
    name: str
    stages: tuple[Stage, ...]

    @property
    def total_seconds(self) -> float:
        return sum(stage.seconds for stage in self.stages)

    def scaled(self, time_scale: float) -> "Plan":
        """The same plan with every stage's seconds multiplied by time_scale (0.1 = ten times faster)."""
        if not isinstance(time_scale, (int, float)) or not math.isfinite(time_scale) or time_scale <= 0:
            raise InputError(f"time_scale must be a positive number, got {time_scale!r}")
        if time_scale == 1:
            return self
        stages = tuple(replace(stage, seconds=stage.seconds * time_scale,
                               evidence_wait_s=None if stage.evidence_wait_s is None else stage.evidence_wait_s * time_scale)
                       for stage in self.stages)
        return Plan(name=f"{self.name} x{time_scale:g}", stages=stages)

    def to_list(self) -> list[dict[str, Any]]:
        return [stage.to_dict() for stage in self.stages]


DEFAULT_PLAN = Plan(
    "default",
    (Stage(share=5, seconds=30), Stage(share=50, seconds=90, ramp=True), Stage(share=100)),
)
DEMO_PLAN = Plan(
    "demo",
    (Stage(share=5, seconds=10), Stage(share=50, seconds=20, ramp=True), Stage(share=100)),
)
PLAN_NAMES: tuple[str, ...] = ("default", "demo")
REPLACE_PLAN = Plan("replace-in-place", ())  # no stages: the new version takes all traffic at once


def named_plan(name: str) -> Plan:
    for plan in (DEFAULT_PLAN, DEMO_PLAN):
        if plan.name == name:
            return plan
    raise InputError(f"plan must be one of {', '.join(PLAN_NAMES)} or a JSON list of stages, got {name!r}")


def share_at(plan: Plan, stage_index: int, seconds_in_stage: float) -> float:
    """Candidate share (percent) at a moment of a stage; ramps interpolate linearly."""
    stage = plan.stages[stage_index]
    if not stage.ramp or stage.seconds <= 0:
        return float(stage.share)
    start = plan.stages[stage_index - 1].share if stage_index > 0 else 0.0
    fraction = min(max(seconds_in_stage / stage.seconds, 0.0), 1.0)
    return float(start + (stage.share - start) * fraction)


def _number(raw: Any, where: str, key: str) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
        raise InputError(f"plan {where}: {key} must be a number, got {raw!r}")
    return float(raw)


def _stage(raw: Any, where: str) -> Stage:
    if not isinstance(raw, dict):
        raise InputError(f"plan {where}: must be an object like {{\"share\": 5, \"seconds\": 30}}, got {raw!r}")
    unknown = sorted(set(raw) - {"share", "seconds", "ramp", "gates", "evidence_wait_s"})
    if unknown:
        raise InputError(f"plan {where}: unknown field {unknown[0]!r}")
    if "share" not in raw:
        raise InputError(f"plan {where}: share is required")
    share = _number(raw["share"], where, "share")
    if not 0 < share <= 100:
        raise InputError(f"plan {where}: share must be in (0, 100], got {raw['share']!r}")
    seconds = _number(raw.get("seconds", 0), where, "seconds")
    if seconds < 0:
        raise InputError(f"plan {where}: seconds must be >= 0, got {raw['seconds']!r}")
    if seconds > MAX_STAGE_SECONDS:
        raise InputError(f"plan {where}: seconds must be at most {MAX_STAGE_SECONDS:g} (7 days), got {raw['seconds']!r}")
    ramp = raw.get("ramp", False)
    if not isinstance(ramp, bool):
        raise InputError(f"plan {where}: ramp must be true or false, got {ramp!r}")
    gates = raw.get("gates", list(LIVE_GATES))
    if not isinstance(gates, list) or any(g not in LIVE_GATES for g in gates):
        raise InputError(f"plan {where}: gates must be a list drawn from {list(LIVE_GATES)}, got {gates!r}")
    wait = raw.get("evidence_wait_s")
    if wait is not None and (_number(wait, where, "evidence_wait_s") < 0):
        raise InputError(f"plan {where}: evidence_wait_s must be >= 0, got {wait!r}")
    return Stage(share=share, seconds=seconds, ramp=ramp, gates=tuple(gates),
                 evidence_wait_s=None if wait is None else float(wait))


def parse_plan(raw: str | Sequence[Any], name: str = "custom") -> Plan:
    """A plan from a JSON list (text or already decoded); InputError names the bad stage and field."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InputError(f"plan is not valid JSON: {exc.msg} at position {exc.pos}") from None
    if not isinstance(raw, (list, tuple)) or not raw:
        raise InputError(f"plan must be a non-empty list of stages, got {raw!r}")
    if len(raw) > MAX_STAGES:
        raise InputError(f"plan has {len(raw)} stages; the limit is {MAX_STAGES}")
    stages = tuple(_stage(item, f"stage {i + 1}") for i, item in enumerate(raw))
    for i in range(1, len(stages)):
        if stages[i].share < stages[i - 1].share:
            raise InputError(
                f"plan stage {i + 1}: share must not decrease, got {stages[i].share:g} after {stages[i - 1].share:g}"
            )
    if stages[-1].share != 100:
        raise InputError(f"plan stage {len(stages)}: share of the last stage must be 100, got {stages[-1].share:g}")
    return Plan(name=name, stages=stages)


def resolve_plan(spec: str | Sequence[Any], time_scale: float = 1.0) -> Plan:
    """A named plan ("default", "demo") or an inline JSON list, compressed by time_scale."""
    is_name = isinstance(spec, str) and not spec.lstrip().startswith("[")
    plan = named_plan(spec.strip()) if is_name else parse_plan(spec)
    return plan.scaled(time_scale)
