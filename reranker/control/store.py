"""SQLite persistence (stdlib sqlite3, one file, WAL): versions, rollouts, gates, audit, events, settings.

One connection guarded by a lock, so any thread may call any method. The request log lives in
the same file; see `requestlog.py` for its background writer and `requeststats.py` for queries.
"""
from __future__ import annotations

import json
import os
import sqlite3
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from reranker.clock import Clock
from reranker.control.policy import TrafficPolicy
from reranker.errors import Conflict, NotFound, StoreUnavailable

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE versions (id TEXT PRIMARY KEY, path TEXT NOT NULL, backend TEXT NOT NULL,
        dtype TEXT NOT NULL, device TEXT NOT NULL, bytes INTEGER NOT NULL, state TEXT NOT NULL,
        created_at REAL NOT NULL);
    CREATE TABLE rollouts (id INTEGER PRIMARY KEY AUTOINCREMENT, candidate TEXT,
        candidate_path TEXT NOT NULL, stable TEXT NOT NULL, plan TEXT NOT NULL, mode TEXT NOT NULL,
        state TEXT NOT NULL, actor TEXT NOT NULL, outcome TEXT, started_at REAL NOT NULL,
        ended_at REAL, reason TEXT);
    CREATE TABLE gate_results (id INTEGER PRIMARY KEY AUTOINCREMENT, rollout_id INTEGER NOT NULL,
        name TEXT NOT NULL, observed REAL, threshold REAL, passed INTEGER NOT NULL,
        detail TEXT NOT NULL, at REAL NOT NULL);
    CREATE INDEX gate_results_rollout ON gate_results(rollout_id);
    CREATE TABLE audit_log (id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL,
        actor TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL, outcome TEXT NOT NULL,
        detail TEXT NOT NULL);
    CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL,
        level TEXT NOT NULL, kind TEXT NOT NULL, message TEXT NOT NULL, rollout_id INTEGER);
    CREATE INDEX events_rollout ON events(rollout_id);
    CREATE TABLE request_log (id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL,
        request_id TEXT NOT NULL, version TEXT NOT NULL, user_hash TEXT, region TEXT,
        n_documents INTEGER NOT NULL, latency_ms REAL NOT NULL, status INTEGER NOT NULL,
        shadow_version TEXT, shadow_agreement REAL, top_primary TEXT NOT NULL, top_shadow TEXT);
    CREATE INDEX request_log_at ON request_log(at);
    CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at REAL NOT NULL);
    """,
)
STABLE_KEY = "stable_version"
POLICY_KEY = "traffic_policy"
PROBE_KEY = "write_probe"


@dataclass(frozen=True)
class VersionRecord:
    id: str
    path: str
    backend: str
    dtype: str
    device: str
    bytes: int
    state: str
    created_at: float


@dataclass(frozen=True)
class RolloutRecord:
    id: int
    candidate: str | None  # the candidate's version id, once it is loaded
    candidate_path: str
    stable: str
    plan: dict[str, Any]
    mode: str
    state: str
    actor: str
    outcome: str | None
    started_at: float
    ended_at: float | None
    reason: str | None


@dataclass(frozen=True)
class GateRecord:
    rollout_id: int
    name: str
    observed: float | None
    threshold: float | None
    passed: bool
    detail: str
    at: float


@dataclass(frozen=True)
class AuditEntry:
    at: float
    actor: str
    action: str
    target: str
    outcome: str
    detail: str


@dataclass(frozen=True)
class EventRecord:
    at: float
    level: str
    kind: str
    message: str
    rollout_id: int | None


@dataclass(frozen=True)
class StableRef:
    version: str
    path: str


class Store:
    """The service's SQLite file. Open once at start; `close()` at shutdown.

    Every SQLite failure surfaces as StoreUnavailable (HTTP 503) naming the data directory, and
    the last write failure is kept for the readiness check (`write_error`).
    """

    def __init__(self, path: Path, clock: Clock) -> None:
        self.path = path
        self.clock = clock
        self._lock = threading.RLock()
        self._write_error: str | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=path.parent):  # SQLite would only say "unable to open"
                pass
            self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            self._conn.row_factory = sqlite3.Row
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
            self._probe_write()
            self._identity = _identity(path)
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(self.unwritable(exc, "cannot open the store")) from None

    @property
    def directory(self) -> Path:
        return self.path.parent

    def unwritable(self, exc: BaseException | str, what: str = "cannot write to the store") -> str:
        """A one-line message naming the data directory and the cause."""
        why = exc if isinstance(exc, str) else (getattr(exc, "strerror", None) or str(exc) or type(exc).__name__)
        return (f"{what} {self.path.name} in the data directory {self.directory.resolve()} ({why}); "
                "check that it exists, is writable and its disk is not full")

    @property
    def write_error(self) -> str | None:
        """Why the last write failed, until a later write succeeds (None when healthy)."""
        return self._write_error

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- low level, shared with requestlog.py / requeststats.py --------------------------------
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StoreUnavailable(self.unwritable(exc, "cannot read the store")) from None

    def write(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement (in its own transaction unless inside `transaction()`); returns the
        last inserted row id."""
        return self._written(lambda: self._conn.execute(sql, params).lastrowid or 0)

    def write_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement for many rows in a single transaction."""
        with self.transaction():
            self._written(lambda: self._conn.executemany(sql, rows))

    def changed_rows(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one UPDATE/DELETE; returns how many rows it changed."""
        return self._written(lambda: self._conn.execute(sql, params).rowcount)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Everything written inside is committed together, or not at all (StoreUnavailable)."""
        with self._lock:
            if self._conn.in_transaction:  # nested: the outer block commits
                yield
                return
            self._written(lambda: self._conn.execute("BEGIN IMMEDIATE"))
            try:
                yield
                self._written(lambda: self._conn.execute("COMMIT"))
            except BaseException:
                if self._conn.in_transaction:
                    try:
                        self._conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                raise

    def _written(self, action: Any) -> Any:
        with self._lock:
            try:
                result = action()
            except sqlite3.Error as exc:
                self._write_error = str(exc) or type(exc).__name__
                raise StoreUnavailable(self.unwritable(exc)) from None
            if not self._conn.in_transaction:
                self._write_error = None
            return result

    def check_writable(self) -> str | None:
        """A cheap write probe: None when the store file is in place and takes a write, else why not.

        Notices the file being deleted or replaced under the running service (SQLite would go on
        writing into the unlinked file, and everything written would be lost).
        """
        problem = self.check_file()
        if problem is not None:
            return problem
        try:
            self._probe_write()
        except StoreUnavailable as exc:
            return str(exc)
        return None

    def check_file(self) -> str | None:
        """None while the file opened at start is still the one at `path`, else why not (one stat)."""
        try:
            identity = _identity(self.path)
        except OSError as exc:
            return self.unwritable(f"the file is gone: {exc.strerror or exc}; restart the service", "the store")
        if identity != self._identity:
            return self.unwritable("the file was replaced while the service runs; restart the service", "the store")
        return None

    def _probe_write(self) -> None:
        self.write("INSERT OR REPLACE INTO kv (key, value, updated_at) VALUES (?, ?, ?)",
                   (PROBE_KEY, "ok", self.clock.now()))

    def schema_version(self) -> int:
        return int(self.query("SELECT version FROM schema_version")[0]["version"])

    def _migrate(self) -> None:
        with self._lock:
            self._conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            rows = self._conn.execute("SELECT version FROM schema_version").fetchall()
            if not rows:
                self._conn.execute("INSERT INTO schema_version VALUES (0)")
            current = int(rows[0][0]) if rows else 0
            if current > len(MIGRATIONS):
                raise Conflict(f"store {self.path} has schema version {current}, newer than {len(MIGRATIONS)}")
            for number, script in enumerate(MIGRATIONS[current:], start=current + 1):
                self._conn.executescript(f"BEGIN; {script}; UPDATE schema_version SET version = {number}; COMMIT;")

    # -- versions -------------------------------------------------------------------------------
    def save_version(self, record: VersionRecord) -> None:
        self.write(
            "INSERT OR REPLACE INTO versions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (record.id, record.path, record.backend, record.dtype, record.device, record.bytes,
             record.state, record.created_at),
        )

    def set_version_state(self, version: str, state: str) -> None:
        if not self.changed_rows("UPDATE versions SET state = ? WHERE id = ?", (state, version)):
            raise NotFound(f"unknown version {version!r}")

    def get_version(self, version: str) -> VersionRecord | None:
        rows = self.query("SELECT * FROM versions WHERE id = ?", (version,))
        return VersionRecord(**dict(rows[0])) if rows else None

    def list_versions(self) -> list[VersionRecord]:
        return [VersionRecord(**dict(r)) for r in self.query("SELECT * FROM versions ORDER BY created_at, id")]

    # -- rollouts and gates ---------------------------------------------------------------------
    def start_rollout(self, candidate_path: str, stable: str, plan: Mapping[str, Any], mode: str, state: str,
                      actor: str, candidate: str | None = None) -> int:
        """Record a new rollout; returns its id."""
        return self.write(
            "INSERT INTO rollouts (candidate, candidate_path, stable, plan, mode, state, actor, started_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (candidate, candidate_path, stable, json.dumps(plan), mode, state, actor, self.clock.now()),
        )

    def update_rollout_state(self, rollout_id: int, state: str, candidate: str | None = None) -> None:
        """Move the rollout to `state`; also record the candidate's version id once known."""
        if candidate is None:
            self._update_rollout(rollout_id, "state = ?", (state,))
        else:
            self._update_rollout(rollout_id, "state = ?, candidate = ?", (state, candidate))

    def finish_rollout(self, rollout_id: int, state: str, outcome: str, reason: str | None = None) -> None:
        self._update_rollout(
            rollout_id, "state = ?, outcome = ?, reason = ?, ended_at = ?", (state, outcome, reason, self.clock.now())
        )

    def get_rollout(self, rollout_id: int) -> RolloutRecord:
        rows = self.query("SELECT * FROM rollouts WHERE id = ?", (rollout_id,))
        if not rows:
            raise NotFound(f"unknown rollout {rollout_id!r}")
        return _rollout(rows[0])

    def recent_rollouts(self, limit: int = 20) -> list[RolloutRecord]:
        return [_rollout(r) for r in self.query("SELECT * FROM rollouts ORDER BY id DESC LIMIT ?", (limit,))]

    def open_rollouts(self) -> list[RolloutRecord]:
        """Rollouts that never ended: after a crash, each is recorded as interrupted."""
        return [_rollout(r) for r in self.query("SELECT * FROM rollouts WHERE ended_at IS NULL ORDER BY id")]

    def record_gate(self, rollout_id: int, name: str, observed: float | None, threshold: float | None,
                    passed: bool, detail: str = "") -> None:
        self.write(
            "INSERT INTO gate_results (rollout_id, name, observed, threshold, passed, detail, at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (rollout_id, name, observed, threshold, int(passed), detail, self.clock.now()),
        )

    def gate_results(self, rollout_id: int) -> list[GateRecord]:
        rows = self.query("SELECT * FROM gate_results WHERE rollout_id = ? ORDER BY id", (rollout_id,))
        return [
            GateRecord(r["rollout_id"], r["name"], r["observed"], r["threshold"], bool(r["passed"]), r["detail"],
                       r["at"])
            for r in rows
        ]

    def _update_rollout(self, rollout_id: int, assignments: str, params: tuple[Any, ...]) -> None:
        if not self.changed_rows(f"UPDATE rollouts SET {assignments} WHERE id = ?", (*params, rollout_id)):
            raise NotFound(f"unknown rollout {rollout_id!r}")

    # -- audit log and events -------------------------------------------------------------------
    def record_audit(self, actor: str, action: str, target: str, outcome: str, detail: str = "") -> int:
        """One operator action; returns its row id. Client text is cut to size and made valid UTF-8."""
        return self.write(
            "INSERT INTO audit_log (at, actor, action, target, outcome, detail) VALUES (?, ?, ?, ?, ?, ?)",
            (self.clock.now(), _clean(actor, 200), action, _clean(target, 1000), outcome, _clean(detail, 4000)),
        )

    def recent_audit(self, limit: int = 50) -> list[AuditEntry]:
        rows = self.query("SELECT at, actor, action, target, outcome, detail FROM audit_log ORDER BY id DESC LIMIT ?",
                          (limit,))
        return [AuditEntry(**dict(r)) for r in rows]

    def record_event(self, level: str, kind: str, message: str, rollout_id: int | None = None) -> None:
        self.write(
            "INSERT INTO events (at, level, kind, message, rollout_id) VALUES (?, ?, ?, ?, ?)",
            (self.clock.now(), level, kind, message, rollout_id),
        )

    def recent_events(self, limit: int = 50, rollout_id: int | None = None) -> list[EventRecord]:
        where, params = ("WHERE rollout_id = ?", (rollout_id, limit)) if rollout_id is not None else ("", (limit,))
        rows = self.query(f"SELECT at, level, kind, message, rollout_id FROM events {where} ORDER BY id DESC LIMIT ?",
                          params)
        return [EventRecord(**dict(r)) for r in rows]

    # -- settings -------------------------------------------------------------------------------
    def set_setting(self, key: str, value: str) -> None:
        self.write("INSERT OR REPLACE INTO kv (key, value, updated_at) VALUES (?, ?, ?)",
                   (key, value, self.clock.now()))

    def get_setting(self, key: str) -> str | None:
        rows = self.query("SELECT value FROM kv WHERE key = ?", (key,))
        return rows[0]["value"] if rows else None

    def set_stable(self, version: str, path: str) -> None:
        self.set_setting(STABLE_KEY, json.dumps({"version": version, "path": path}))

    def get_stable(self) -> StableRef | None:
        raw = self.get_setting(STABLE_KEY)
        return None if raw is None else StableRef(**json.loads(raw))

    def save_policy(self, policy: TrafficPolicy) -> None:
        self.set_setting(POLICY_KEY, json.dumps(policy.to_dict()))

    def load_policy(self) -> TrafficPolicy | None:
        raw = self.get_setting(POLICY_KEY)
        return None if raw is None else TrafficPolicy.from_dict(json.loads(raw))


def _identity(path: Path) -> tuple[int, int]:
    stat = os.stat(path)
    return stat.st_dev, stat.st_ino


def _clean(text: str, limit: int) -> str:
    """Text a client chose, safe to store: lone surrogates escaped, at most `limit` characters."""
    safe = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return safe if len(safe) <= limit else f"{safe[:limit]}... ({len(safe)} characters)"


def _rollout(row: sqlite3.Row) -> RolloutRecord:
    values = dict(row)
    values["plan"] = json.loads(values["plan"])
    return RolloutRecord(**values)
