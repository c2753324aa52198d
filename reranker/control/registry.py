"""Loaded model versions, their states, and the one routing snapshot requests read.

Readers never lock to route: `snapshot()` is one attribute read of an immutable object. Writers
(`swap`, `add_loading`, `drain_and_unload` ...) serialise on one lock. Each version counts its
in-flight requests under its own condition, so a drain waits without polling and a version
leaves memory only once nobody uses it.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import Any, Generic, Iterator, Mapping, Protocol, TypeVar

from reranker.clock import Clock
from reranker.control.policy import TrafficPolicy, validate
from reranker.control.router import RequestAttributes, Route, RoutingSnapshot, route
from reranker.errors import Conflict, InputError, NotFound, NotReady

ACQUIRE_ATTEMPTS = 3  # a request retries on a fresh snapshot if its version began draining


class Closable(Protocol):
    def close(self) -> None: ...


E = TypeVar("E", bound=Closable)


class VersionState(str, Enum):
    LOADING = "loading"
    READY = "ready"
    SERVING = "serving"
    DRAINING = "draining"
    RETIRED = "retired"
    FAILED = "failed"


USABLE = (VersionState.READY, VersionState.SERVING)


@dataclass(frozen=True)
class VersionView:
    """A plain copy of one registry entry, for display."""

    id: str
    state: VersionState
    info: Any  # the engine's ModelInfo (or similar), None until ready
    loaded_at: float | None
    in_flight: int
    reason: str | None


@dataclass(frozen=True)
class Lease(Generic[E]):
    """What a routed request holds until it finishes."""

    route: Route
    engine: E
    generation: int


class _Entry(Generic[E]):
    def __init__(self, version: str) -> None:
        self.version = version
        self.state = VersionState.LOADING
        self.engine: E | None = None
        self.info: Any = None
        self.loaded_at: float | None = None
        self.reason: str | None = None
        self.in_flight = 0
        self.changed = threading.Condition(threading.Lock())

    def view(self) -> VersionView:
        with self.changed:
            return VersionView(self.version, self.state, self.info, self.loaded_at, self.in_flight, self.reason)


class Registry(Generic[E]):
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._write_lock = threading.Lock()
        self._entries: Mapping[str, _Entry[E]] = MappingProxyType({})
        self._snapshot: RoutingSnapshot | None = None

    def snapshot(self) -> RoutingSnapshot:
        current = self._snapshot
        if current is None:
            raise NotReady("no model version is serving yet")
        return current

    def snapshot_or_none(self) -> RoutingSnapshot | None:
        return self._snapshot

    def add_loading(self, version: str) -> None:
        with self._write_lock:
            existing = self._entries.get(version)
            if existing is not None and existing.state not in (VersionState.RETIRED, VersionState.FAILED):
                raise Conflict(f"version {version!r} is already {existing.state.value}")
            entries = dict(self._entries)
            entries[version] = _Entry(version)
            self._entries = MappingProxyType(entries)

    def mark_ready(self, version: str, engine: E, info: Any) -> None:
        entry = self._entry(version)
        with self._write_lock, entry.changed:
            _require_state(entry, (VersionState.LOADING,), "mark ready")
            entry.engine, entry.info, entry.loaded_at = engine, info, self._clock.now()
            entry.state = VersionState.READY

    def mark_failed(self, version: str, reason: str) -> None:
        entry = self._entry(version)
        with self._write_lock, entry.changed:
            _require_state(entry, (VersionState.LOADING,), "mark failed")
            entry.state, entry.reason = VersionState.FAILED, reason

    def usable_versions(self) -> frozenset[str]:
        return frozenset(v for v, e in self._entries.items() if e.state in USABLE)

    def check_policy(self, policy: TrafficPolicy, primary: str) -> None:
        """What `swap` would refuse, without swapping (to refuse before anything is recorded)."""
        usable = self.usable_versions()
        validate(policy, usable)
        if primary not in usable:
            raise InputError(f"primary version {primary!r} is not a ready version")
        if policy.shadow is not None and policy.shadow == primary:
            raise InputError(f"shadow.version {policy.shadow!r} is the primary version; a shadow must be another one")

    def swap(self, policy: TrafficPolicy, primary: str) -> RoutingSnapshot:
        """Validate `policy` against usable versions and publish it as the next snapshot."""
        with self._write_lock:
            self.check_policy(policy, primary)
            usable = self.usable_versions()
            previous = self._snapshot
            generation = 1 if previous is None else previous.generation + 1
            routed = policy.routed_versions()
            for version in usable:
                entry = self._entries[version]
                with entry.changed:
                    entry.state = VersionState.SERVING if version in routed else VersionState.READY
            self._snapshot = RoutingSnapshot(policy=policy, primary=primary, generation=generation)
            return self._snapshot

    @contextmanager
    def acquire(self, version: str) -> Iterator[E]:
        """Hold `version` for one request: counts it in flight and yields its engine.

        Raises NotFound for an unknown id and NotReady unless the version is ready or serving.
        """
        entry = self._entry(version)
        engine = _hold(entry)
        try:
            yield engine
        finally:
            _release(entry)

    @contextmanager
    def acquire_routed(self, user_key: str | None, attributes: RequestAttributes, draw: float) -> Iterator[Lease[E]]:
        """Route on the current snapshot and hold the chosen version until the block ends.

        A version only drains after a newer snapshot stops routing to it, so a refusal on an
        old snapshot is retried on the new one and the request is never dropped.
        """
        for _ in range(ACQUIRE_ATTEMPTS):
            snap = self.snapshot()
            chosen = route(snap, user_key, attributes, draw)
            entry = self._entry(chosen.version, error=NotReady)
            try:
                engine = _hold(entry)
            except NotReady:
                if self._snapshot is snap:
                    raise
                continue
            try:
                yield Lease(route=chosen, engine=engine, generation=snap.generation)
            finally:
                _release(entry)
            return
        raise NotReady("routing kept changing; try again")

    def check_new(self, version: str) -> None:
        """Conflict when `version` is loaded or loading (what add_loading would refuse)."""
        existing = self._entries.get(version)
        if existing is not None and existing.state not in (VersionState.RETIRED, VersionState.FAILED):
            raise Conflict(f"version {version!r} is already loaded or loading; unload it first")

    def check_unloadable(self, version: str) -> None:
        """What drain_and_unload would refuse (unknown, routed, not loaded), without draining."""
        entry = self._entries.get(version)
        if entry is None:
            raise NotFound(f"version {version!r} is not loaded")
        current = self._snapshot
        if current is not None and (version == current.primary or version in current.policy.routed_versions()):
            raise Conflict(f"version {version!r} still receives traffic; swap it out first")
        _require_state(entry, USABLE + (VersionState.DRAINING,), "unload")

    def drain_and_unload(self, version: str, timeout_s: float, failure: str | None = None) -> bool:
        """Stop new requests to `version`, wait for in-flight ones, then close and forget its engine.

        Returns False (still draining) if requests are in flight after `timeout_s`; call again.
        With `failure`, the version ends FAILED with that reason instead of RETIRED.
        """
        entry = self._entry(version)
        with self._write_lock:
            current = self._snapshot
            if current is not None and (version == current.primary or version in current.policy.routed_versions()):
                raise Conflict(f"version {version!r} still receives traffic; swap it out first")
            with entry.changed:
                _require_state(entry, USABLE + (VersionState.DRAINING,), "unload")
                entry.state = VersionState.DRAINING
        with entry.changed:
            if not entry.changed.wait_for(lambda: entry.in_flight == 0, timeout=timeout_s):
                return False
            if entry.engine is None:  # another drain call took it and is closing it
                return True
            engine, entry.engine = entry.engine, None
        close_error = _close(engine)
        with entry.changed:
            entry.state = VersionState.FAILED if failure or close_error else VersionState.RETIRED
            entry.reason = failure or close_error
        return True

    def get(self, version: str) -> VersionView:
        return self._entry(version).view()

    def list(self) -> list[VersionView]:
        return [entry.view() for entry in self._entries.values()]

    def _entry(self, version: str, error: type[Exception] = NotFound) -> _Entry[E]:
        entry = self._entries.get(version)
        if entry is None:
            raise error(f"unknown version {version!r}")
        return entry


def _hold(entry: _Entry[E]) -> E:
    with entry.changed:
        if entry.state not in USABLE:
            raise NotReady(f"version {entry.version!r} is {entry.state.value}, not serving")
        entry.in_flight += 1
        return entry.engine  # type: ignore[return-value]


def _release(entry: _Entry[Any]) -> None:
    with entry.changed:
        entry.in_flight -= 1
        if entry.in_flight == 0:
            entry.changed.notify_all()


def _require_state(entry: _Entry[Any], allowed: tuple[VersionState, ...], action: str) -> None:
    if entry.state not in allowed:
        raise Conflict(f"cannot {action} version {entry.version!r}: it is {entry.state.value}")


def _close(engine: Closable | None) -> str | None:
    """Close the engine; a failure to close is reported, never raised."""
    if engine is None:
        return None
    try:
        engine.close()
    except Exception as exc:  # noqa: BLE001 - any close failure is recorded on the version
        return f"close failed: {exc}"
    return None
