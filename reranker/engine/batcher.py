"""The batching queue: callers' jobs in, batches of at most `max_pairs` pairs out."""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

from reranker.content import Pair
from reranker.engine.cache import ScoreKey
from reranker.errors import NotReady


@dataclass(eq=False)
class Job:
    """One caller's pairs (already deduplicated and missing from the cache) waiting for scores.

    The first outcome wins: a job that failed ignores scores that arrive later.
    """

    pairs: list[Pair]
    keys: list[ScoreKey]
    labels: list[str]  # how errors name each pair, e.g. "documents[3]"
    scores: list[float | None] = field(init=False)
    error: BaseException | None = field(default=None, init=False)
    model_seconds: float = field(default=0.0, init=False)  # model time spent on batches holding this job
    unscored: int = field(default=0, init=False)  # pairs without a score when the job failed
    tokens: list[int] = field(init=False)  # per pair: tokens the model read for it (0 = not counted)
    _remaining: int = field(init=False)
    _done: threading.Event = field(default_factory=threading.Event, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        self.scores = [None] * len(self.pairs)
        self.tokens = [0] * len(self.pairs)
        self._remaining = len(self.pairs)
        if not self.pairs:
            self._done.set()

    @property
    def failed(self) -> bool:
        return self.error is not None

    def resolve(self, index: int, score: float) -> None:
        with self._lock:
            if self._done.is_set() or self.scores[index] is not None:
                return
            self.scores[index] = score
            self._remaining -= 1
            if self._remaining == 0:
                self._done.set()

    def set_tokens(self, index: int, count: int) -> None:
        with self._lock:
            self.tokens[index] = count

    def add_model_time(self, seconds: float) -> None:
        with self._lock:
            self.model_seconds += seconds

    def fail(self, error: BaseException) -> bool:
        """Fail the job unless it already has an outcome; True if this call decided it."""
        with self._lock:
            if self._done.is_set():
                return False
            self.error = error
            self.unscored = self._remaining
            self._done.set()
            return True

    def wait(self) -> list[float]:
        """Block until every pair is scored; raise the job's error if it failed."""
        self._done.wait()
        if self.error is not None:
            raise self.error
        return [score for score in self.scores if score is not None]


@dataclass(frozen=True)
class Slot:
    """One pair of one job, as it travels in a batch."""

    job: Job
    index: int

    @property
    def pair(self) -> Pair:
        return self.job.pairs[self.index]

    @property
    def key(self) -> ScoreKey:
        return self.job.keys[self.index]

    @property
    def label(self) -> str:
        return self.job.labels[self.index]


class BatchQueue:
    """FIFO of jobs; `take()` hands the worker up to `max_pairs` pairs, possibly from many jobs.

    A big job is split over several batches; small concurrent jobs share one batch.
    """

    def __init__(self, max_pairs: int, wait_seconds: float) -> None:
        self._max_pairs = max(1, max_pairs)
        self._wait_seconds = max(0.0, wait_seconds)
        self._entries: deque[list] = deque()  # [job, next pair index]
        self._pending_pairs = 0
        self._dropped_pairs = 0
        self._closed = False
        self._cond = threading.Condition()

    def depth(self) -> int:
        """Pairs waiting, not yet handed to the worker."""
        with self._cond:
            return self._pending_pairs

    def dropped(self) -> int:
        """Pairs taken off the queue unscored because their job had already failed or was cancelled."""
        with self._cond:
            return self._dropped_pairs

    def put(self, job: Job, owner: str) -> None:
        with self._cond:
            if self._closed:
                raise NotReady(f"engine for model {owner} is closed; the request was not scored")
            self._entries.append([job, 0])
            self._pending_pairs += len(job.pairs)
            self._cond.notify_all()

    def take(self) -> list[Slot] | None:
        """The next batch; waits up to wait_seconds for it to fill. None once the queue is closed."""
        with self._cond:
            self._cond.wait_for(lambda: self._pending_pairs > 0 or self._closed)
            if self._pending_pairs < self._max_pairs and self._wait_seconds > 0:
                self._cond.wait_for(
                    lambda: self._pending_pairs >= self._max_pairs or self._closed, self._wait_seconds
                )
            if self._closed:
                return None
            return self._pop_batch()

    def close(self) -> list[Job]:
        """Stop the queue; returns the jobs that still had pairs waiting."""
        with self._cond:
            self._closed = True
            left = [entry[0] for entry in self._entries]
            self._entries.clear()
            self._pending_pairs = 0
            self._cond.notify_all()
            return left

    def _pop_batch(self) -> list[Slot]:
        batch: list[Slot] = []
        while self._entries and len(batch) < self._max_pairs:
            entry = self._entries[0]
            job, start = entry
            stop = min(len(job.pairs), start + self._max_pairs - len(batch))
            if job.failed:
                self._dropped_pairs += stop - start
            else:
                batch.extend(Slot(job, i) for i in range(start, stop))
            self._pending_pairs -= stop - start
            if stop == len(job.pairs):
                self._entries.popleft()
            else:
                entry[1] = stop
        return batch
