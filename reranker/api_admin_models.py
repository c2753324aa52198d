"""Response schemas of the admin routes and of /v1/models (OpenAPI).

The service's own views (reranker.service.views) are the answers: the routes return them as they
are. Only the envelopes that exist for HTTP alone (lists, acknowledgements) are defined here.
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from reranker.service.views import (
    AuditEntryView, ExperimentReport, StatusView, TrafficView, VersionView,
)

__all__ = ["AuditLog", "ExperimentReport", "ModelList", "StatusView", "TrafficView", "UpdateAccepted",
           "VersionAccepted", "VersionRetired", "VersionView"]


class UpdateAccepted(BaseModel):
    id: int = Field(description="The rollout id.")
    status: StatusView


class VersionAccepted(BaseModel):
    id: str = Field(description="The version id; GET /v1/models shows it loading, then ready.")


class VersionRetired(BaseModel):
    id: str
    state: Literal["retired"]


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[VersionView]


class AuditLog(BaseModel):
    entries: list[AuditEntryView]
