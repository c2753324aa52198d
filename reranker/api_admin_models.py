"""Response schemas of the admin routes and of /v1/models (OpenAPI).

They describe the service's status, traffic, experiment and audit answers field by field at the
top level and accept extra fields, so the schema stays true while those answers grow.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class StatusView(_Open):
    light: Literal["green", "yellow", "red"]
    banner: str
    state: str
    stable: str | None = None
    candidate: str | None = None
    stage: dict[str, Any] | None = Field(default=None, description="Stage progress while a candidate takes traffic.")
    share: float = Field(description="The candidate's traffic share, percent.")
    gates: list[dict[str, Any]]
    events: list[dict[str, Any]]
    rollout_id: int | None = None


class UpdateAccepted(BaseModel):
    id: int = Field(description="The rollout id.")
    status: StatusView


class VersionAccepted(BaseModel):
    id: str = Field(description="The version id; GET /v1/models shows it loading, then ready.")


class VersionRetired(BaseModel):
    id: str
    state: Literal["retired"]


class ModelView(_Open):
    id: str
    object: Literal["model"]
    state: str
    share: float
    stable: bool
    name: str | None = None
    backend: str | None = None
    dtype: str | None = None
    device: str | None = None
    bytes_in_memory: int | None = None
    path: str | None = None
    loaded_at: float | None = None
    in_flight: int
    reason: str | None = None


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelView]


class TrafficView(_Open):
    primary: str
    generation: int
    weights: dict[str, float]
    sticky: bool
    rules: list[dict[str, Any]]
    shadow: dict[str, Any] | None = None


class ExperimentReport(_Open):
    window_s: float
    versions: list[dict[str, Any]]
    series: list[dict[str, Any]]
    scores: Any = None
    shadow: list[dict[str, Any]]
    shadow_live: Any = None
    decision: dict[str, Any] | None = None


class AuditEntryView(_Open):
    at: float
    actor: str
    action: str
    target: str
    outcome: str
    detail: str


class AuditLog(BaseModel):
    entries: list[AuditEntryView]
