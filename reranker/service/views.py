"""Typed views the service hands both front ends: rollout status, loaded versions, the experiment
report and the audit log. The same models are the admin routes' response schemas (OpenAPI), so
the Gradio console and the REST clients read one shape, by attribute, field for field."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class View(BaseModel):
    """Immutable, and strict about its fields: a misspelt one is an error, not a silent None."""

    model_config = ConfigDict(frozen=True, extra="forbid")


# ---- rollout status ------------------------------------------------------------------------
class ProgressView(View):
    """Where a staged rollout is while the candidate takes traffic."""

    stage: int = Field(description="1-based stage number.")
    stages: int
    share: float = Field(description="The candidate's traffic share now, percent.")
    seconds_in_stage: float
    stage_seconds: float = Field(description="The stage's minimum time.")
    fraction: float = Field(description="Of the whole plan's time, 0..1.")


class StepView(View):
    """One stage of the plan as the operator sees it."""

    stage: int
    share: float
    seconds: float
    ramp: bool = False
    state: str = Field(default="pending", description="done | current | holding | pending | stopped")


class StageView(View):
    """One stage of a plan as submitted (share, minimum time, ramp, live gates)."""

    share: float
    seconds: float = 0.0
    ramp: bool = False
    gates: list[str] = []
    evidence_wait_s: float | None = None


class PlanView(View):
    name: str
    stages: list[StageView]


class GateView(View):
    """One gate's verdict; observed and threshold are in `unit` when it names one."""

    name: str
    observed: float | None = None
    threshold: float | None = None
    passed: bool = False
    pending: bool = False
    verdict: Literal["pass", "fail", "pending"] = "fail"
    detail: str = ""
    unit: str = ""
    observed_text: str = ""
    threshold_text: str = ""
    have: int | None = Field(default=None, description="Evidence so far, while pending.")
    need: int | None = Field(default=None, description="Evidence needed, while pending.")
    evidence: str = Field(default="", description="What have/need count, e.g. 'candidate requests'.")


class EventView(View):
    at: float
    kind: str
    message: str
    level: Literal["info", "warning", "alert"] = "info"
    actor: str = "controller"
    state: str = ""
    data: dict[str, Any] = {}


Light = Literal["green", "yellow", "red"]


class StatusView(View):
    """The one status both front ends show: light, banner, state, progress, gates, events."""

    light: Light
    banner: str = Field(description="Empty when nothing is in flight and nothing needs attention.")
    state: str = Field(description="The rollout state ('starting' until a version serves).")
    stable: str | None = None
    candidate: str | None = None
    candidate_path: str | None = None
    stage: ProgressView | None = Field(default=None, description="Stage progress while a candidate takes traffic.")
    share: float = Field(default=0.0, description="The candidate's traffic share, percent.")
    holding: str = Field(default="", description="Why the stage holds for lack of evidence ('' when it does not).")
    steps: list[StepView] = []
    mode: str | None = None
    plan: PlanView | None = None
    gates: list[GateView] = []
    events: list[EventView] = Field(default=[], description="Newest first, at most 50.")
    last_outcome: str | None = None
    reason: str = ""
    rollout_id: int | None = None


# ---- versions ------------------------------------------------------------------------------
class VersionView(View):
    """A model version the registry knows (loading, ready, serving, draining, retired, failed)."""

    id: str
    object: Literal["model"] = "model"
    state: str
    share: float = Field(default=0.0, description="Its traffic weight, percent.")
    stable: bool = False
    name: str | None = None
    backend: str | None = None
    dtype: str | None = None
    device: str | None = None
    bytes_in_memory: int | None = None
    path: str | None = None
    follows_instruction: bool = True
    loaded_at: float | None = None
    in_flight: int = 0
    reason: str | None = None


# ---- traffic -------------------------------------------------------------------------------
class RuleView(View):
    """Requests from a region or an address range go to one version."""

    region: str | None = None
    cidr: str | None = None
    version: str


class ShadowView(View):
    version: str = Field(description="Gets a copy of every request; its answers are recorded, never served.")


class TrafficView(View):
    """The traffic policy in force; PUT /admin/traffic takes the same body back."""

    primary: str
    generation: int
    weights: dict[str, float] = Field(description="Version -> percent of traffic; sums to 100.")
    sticky: bool
    rules: list[RuleView] = []
    shadow: ShadowView | None = None
    salt: str = ""


# ---- experiment report ---------------------------------------------------------------------
class VersionStatsView(View):
    """One version's live figures over the report's window."""

    version: str
    requests: int = 0
    errors: int = 0
    error_rate: float = 0.0
    p50_ms: float | None = None
    p95_ms: float | None = None
    observed_share: float = Field(default=0.0, description="Fraction of the window's requests, 0..1.")
    configured_share: float = Field(default=0.0, description="Its traffic weight, percent.")
    bytes_in_memory: int | None = None
    loaded: bool = False


class SeriesPointView(View):
    bucket_start: float
    version: str
    count: int
    errors: int
    p50_ms: float | None = None
    p95_ms: float | None = None


class ShadowLogView(View):
    """Shadow agreement from the request log: the answering version and its shadow."""

    version: str
    shadow_version: str
    count: int
    mean_agreement: float | None = None


class ShadowLiveView(View):
    """Shadow agreement since the service started (top-5 overlap, Spearman rank correlation)."""

    primary: str
    shadow: str
    requests: int
    top_k_overlap: float
    rank_correlation: float


class DecisionRowView(View):
    criterion: str
    observed: float | None = None
    threshold: str = ""
    passed: bool | None = Field(default=None, description="None when it cannot be decided yet.")
    detail: str = ""


class DecisionView(View):
    verdict: Literal["promote", "keep stable", "inconclusive"]
    rows: list[DecisionRowView]
    stable: str
    candidate: str


class ComparisonWindowView(View):
    """The one period every figure of the report covers, for every version alike."""

    start: float
    end: float
    seconds: float
    requested_s: float
    policy_changed_at: float | None = Field(description="When the traffic policy in force took effect.")
    since_policy_change: bool


class ExperimentReport(View):
    """Per-version evidence over one window, shadow agreement and the verdict."""

    window_s: float
    window_start: float
    since_policy_change: bool = Field(description="The window starts at the last traffic-policy change.")
    window: ComparisonWindowView
    bucket_s: float = Field(description="Width of each time-series bucket, seconds.")
    versions: list[VersionStatsView]
    series: list[SeriesPointView]
    latency_definition: str
    scores: dict[str, list[float]] = Field(description="The most recent scores each version returned.")
    shadow: list[ShadowLogView]
    shadow_live: list[ShadowLiveView]
    decision: DecisionView | None = None


# ---- audit ---------------------------------------------------------------------------------
class AuditEntryView(View):
    at: float
    actor: str
    action: str
    target: str
    outcome: str
    detail: str
