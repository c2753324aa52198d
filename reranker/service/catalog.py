"""Read-only views of the registry: which versions exist, which one is stable, who takes traffic."""
from __future__ import annotations

from reranker.control.registry import Registry
from reranker.engine.port import ScoringEngine
from reranker.service.views import VersionView


class VersionCatalog:
    """Turns the registry's entries and routing snapshot into VersionView rows."""

    def __init__(self, registry: Registry[ScoringEngine]) -> None:
        self._registry = registry

    def versions(self) -> list[VersionView]:
        snap = self._registry.snapshot_or_none()
        out = []
        for entry in self._registry.list():
            info = entry.info
            out.append(VersionView(
                id=entry.id,
                state=entry.state.value,
                share=snap.policy.weight_of(entry.id) if snap else 0.0,
                stable=bool(snap and snap.primary == entry.id),
                name=getattr(info, "name", None),
                backend=getattr(info, "backend", None),
                dtype=getattr(info, "dtype", None),
                device=getattr(info, "device", None),
                bytes_in_memory=getattr(info, "bytes_in_memory", None),
                path=_text(getattr(info, "path", None)),
                follows_instruction=getattr(info, "follows_instruction", True),
                loaded_at=entry.loaded_at,
                in_flight=entry.in_flight,
                reason=entry.reason,
            ))
        return out

    def get(self, version: str) -> VersionView | None:
        return next((v for v in self.versions() if v.id == version), None)

    def stable_version(self) -> str | None:
        snap = self._registry.snapshot_or_none()
        return snap.primary if snap else None

    def usable_versions(self) -> list[str]:
        return sorted(self._registry.usable_versions())


def _text(value: object) -> str | None:
    return None if value is None else str(value)
