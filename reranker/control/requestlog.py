"""The request log: one row per ranked request, written by a background thread.

`RequestLogWriter.submit` never blocks the request path: when the bounded queue is full the
record is dropped and counted. The writer thread inserts in batches and applies retention
(by row count and by age).
"""
from __future__ import annotations

import json
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Sequence

from reranker.clock import Clock
from reranker.control.store import Store
from reranker.errors import InputError

log = logging.getLogger(__name__)
DAY_S = 86_400.0
_STOP = object()


@dataclass(frozen=True)
class RequestRecord:
    at: float
    request_id: str
    version: str
    n_documents: int
    latency_ms: float
    status: int  # HTTP-style status: >= 500 counts as an error of the model version
    user_hash: str | None = None
    region: str | None = None
    shadow_version: str | None = None
    shadow_agreement: float | None = None  # e.g. top-k overlap between primary and shadow
    top_primary: tuple[int, ...] = ()  # document indices, best first
    top_shadow: tuple[int, ...] | None = None

    def row(self) -> tuple[object, ...]:
        return (
            self.at, self.request_id, self.version, self.user_hash, self.region, self.n_documents,
            self.latency_ms, self.status, self.shadow_version, self.shadow_agreement,
            json.dumps(list(self.top_primary)),
            None if self.top_shadow is None else json.dumps(list(self.top_shadow)),
        )


COLUMNS = ("at, request_id, version, user_hash, region, n_documents, latency_ms, status, "
           "shadow_version, shadow_agreement, top_primary, top_shadow")


def insert_requests(store: Store, records: Sequence[RequestRecord]) -> None:
    store.write_many(f"INSERT INTO request_log ({COLUMNS}) VALUES ({', '.join('?' * 12)})",
                     [r.row() for r in records])


def prune_requests(store: Store, max_rows: int, older_than: float) -> None:
    """Delete rows before `older_than`, then all but the newest `max_rows`."""
    store.write("DELETE FROM request_log WHERE at < ?", (older_than,))
    store.write(
        "DELETE FROM request_log WHERE id <= (SELECT id FROM request_log ORDER BY id DESC LIMIT 1 OFFSET ?)",
        (max_rows,),
    )


def recent_requests(store: Store, limit: int = 100) -> list[RequestRecord]:
    rows = store.query(f"SELECT {COLUMNS} FROM request_log ORDER BY id DESC LIMIT ?", (limit,))
    return [
        RequestRecord(
            at=r["at"], request_id=r["request_id"], version=r["version"], n_documents=r["n_documents"],
            latency_ms=r["latency_ms"], status=r["status"], user_hash=r["user_hash"], region=r["region"],
            shadow_version=r["shadow_version"], shadow_agreement=r["shadow_agreement"],
            top_primary=tuple(json.loads(r["top_primary"])),
            top_shadow=None if r["top_shadow"] is None else tuple(json.loads(r["top_shadow"])),
        )
        for r in rows
    ]


def count_requests(store: Store) -> int:
    return int(store.query("SELECT COUNT(*) AS n FROM request_log")[0]["n"])


@dataclass
class _Flush:
    done: threading.Event = field(default_factory=threading.Event)


class RequestLogWriter:
    """Background batch writer for the request log, with retention by rows and by days."""

    def __init__(self, store: Store, max_rows: int, max_age_days: float, clock: Clock,
                 queue_size: int = 10_000, batch_size: int = 500, wait_s: float = 0.5) -> None:
        if max_rows <= 0 or max_age_days <= 0 or queue_size <= 0 or batch_size <= 0:
            raise InputError(
                f"request log limits must be positive, got max_rows={max_rows!r}, max_age_days={max_age_days!r}, "
                f"queue_size={queue_size!r}, batch_size={batch_size!r}"
            )
        self._store = store
        self._max_rows = max_rows
        self._max_age_s = max_age_days * DAY_S
        self._clock = clock
        self._batch_size = batch_size
        self._wait_s = wait_s
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._counts_lock = threading.Lock()
        self._dropped = 0
        self._written = 0
        self._failures = 0
        self._lost_in_writes = 0  # records of batches the store refused
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="request-log-writer", daemon=True)
        self._thread.start()

    @property
    def dropped(self) -> int:
        return self._dropped

    @property
    def written(self) -> int:
        return self._written

    @property
    def failures(self) -> int:
        """Batches that could not be written (the records are lost, the thread carries on)."""
        return self._failures

    def lost_counts(self) -> dict[str, int]:
        """Records that never reached the store, by reason (for /metrics)."""
        with self._counts_lock:
            return {"queue_full": self._dropped, "write_failed": self._lost_in_writes}

    def submit(self, record: RequestRecord) -> bool:
        """Queue one record; never blocks. False (and counted) when the queue is full or closed."""
        if not self._closed:
            try:
                self._queue.put_nowait(record)
                return True
            except queue.Full:
                pass
        with self._counts_lock:
            self._dropped += 1
        return False

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until everything submitted so far is written and retention applied."""
        marker = _Flush()
        self._queue.put(marker, timeout=timeout_s)
        return marker.done.wait(timeout_s)

    def close(self, timeout_s: float = 10.0) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP, timeout=timeout_s)
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            batch, markers, stop = self._collect()
            if batch:
                self._write(batch)
            if markers or stop or batch:
                self._prune()
            for marker in markers:
                marker.done.set()
            if stop:
                return

    def _collect(self) -> tuple[list[RequestRecord], list[_Flush], bool]:
        """Block for the first item, then gather more for up to `wait_s`, at most a batch."""
        batch: list[RequestRecord] = []
        markers: list[_Flush] = []
        item = self._queue.get()
        deadline = time.monotonic() + self._wait_s  # real time: only bounds how long a batch fills
        while True:
            if item is _STOP:
                return batch, markers, True
            if isinstance(item, _Flush):
                markers.append(item)
            else:
                batch.append(item)  # type: ignore[arg-type]
            if len(batch) >= self._batch_size:
                return batch, markers, False
            try:
                left = deadline - time.monotonic()
                item = self._queue.get(timeout=left) if left > 0 and not markers else self._queue.get_nowait()
            except queue.Empty:
                return batch, markers, False

    def _write(self, batch: list[RequestRecord]) -> None:
        try:
            insert_requests(self._store, batch)
        except Exception as exc:  # noqa: BLE001 - a failed write must never kill the writer thread
            with self._counts_lock:
                first = self._failures == 0 or self._lost_in_writes == 0
                self._failures += 1
                self._lost_in_writes += len(batch)
            if first or self._failures % 100 == 0:
                log.error("request log: %d records not written (%d batches so far): %s", len(batch), self._failures, exc)
            return
        with self._counts_lock:
            self._written += len(batch)

    def _prune(self) -> None:
        try:
            prune_requests(self._store, self._max_rows, self._clock.now() - self._max_age_s)
        except Exception:  # noqa: BLE001 - retention is retried after the next batch
            with self._counts_lock:
                self._failures += 1
