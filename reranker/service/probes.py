"""Paired replays: rollout evidence that arrives whatever the share and stickiness bring.

While a candidate takes traffic, a sample of live requests (served by either version) is copied
to a background thread that scores the same pairs on both versions in isolated forward passes of
the background lane, alternating which goes first. The answer the user got is never changed.
This gives the latency gate matched work under the same conditions (pairwise, per pair), and the
error gate candidate runs even when no sticky user hashes into the candidate's share (mirroring).
A budget caps the extra device time (default 10 %: after a replay that kept the device busy for
t seconds, the next is taken no sooner than 9t later), so the replays do not move live latency
much. The budget counts device seconds, not wall time: waiting for the device behind live batches
is not charged (charged on wall time, evidence took 60-80 s and more under 16 clients). In the
device gate they may take up to REPLAY_SHARE of the time from waiting live batches (more than the
golden set's 10 %, so that the budget, not the gate, sets their pace).

A model may keep caches of its own (the mini model keeps text embeddings and image words), and
the version that served the request has it cached while the other has not: each chunk therefore
runs once untimed on both versions, then timed on both (through the model's score_isolated()
where it has one, which embeds the texts afresh), so both are measured in the same state.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Sequence

from reranker.clock import Clock
from reranker.content import Content, Pair
from reranker.control.livestats import LiveStats
from reranker.control.registry import Registry
from reranker.engine.port import ScoringEngine
from reranker.errors import NotReady
from reranker.service.golden import CHUNK_PAIRS, score_isolated

log = logging.getLogger(__name__)
REPLAY_SHARE = 0.25


@dataclass(frozen=True)
class Replay:
    query: Content
    documents: tuple[Content, ...]
    instruction: str | None


class PairedReplays:
    """EvidenceSampler: one pending replay at most; a worker thread runs them within a budget."""

    def __init__(self, registry: Registry[ScoringEngine], live: LiveStats, clock: Clock, budget: float = 0.1,
                 max_pairs: int = CHUNK_PAIRS) -> None:
        self._registry, self._live, self._clock = registry, live, clock
        self._budget = min(max(budget, 0.01), 1.0)
        self._max_pairs = max_pairs
        self._cond = threading.Condition()
        self._pair: tuple[str, str] | None = None
        self._pending: Replay | None = None
        self._not_before = 0.0  # monotonic time before which no new replay is taken (the budget)
        self._closed = False
        self._flip = False
        self._thread = threading.Thread(target=self._loop, name="paired-replays", daemon=True)
        self._thread.start()

    def watch(self, stable_id: str, candidate_id: str | None) -> None:
        with self._cond:
            self._pair = (stable_id, candidate_id) if candidate_id else None
            self._pending = None
            self._cond.notify_all()

    def offer(self, query: Content, documents: Sequence[Content], instruction: str | None) -> None:
        """Called for every answered request; cheap when nothing is watched or a replay waits."""
        if self._pair is None or not documents:
            return
        with self._cond:
            if self._pair is None or self._pending is not None or self._clock.monotonic() < self._not_before:
                return
            self._pending = Replay(query, tuple(documents[: self._max_pairs]), instruction)
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closed or (self._pending is not None and self._pair is not None))
                if self._closed:
                    return
                replay, pair, self._pending = self._pending, self._pair, None
            assert replay is not None and pair is not None
            try:
                spent = self._replay(replay, *pair)
            except Exception:  # the sampler must outlive anything; a lost replay is only less evidence
                log.exception("paired replay failed")
                spent = 0.0
            with self._cond:
                self._not_before = self._clock.monotonic() + min(spent * (1.0 / self._budget - 1.0), 5.0)

    def _replay(self, replay: Replay, stable: str, candidate: str) -> float:
        """Score the replay on both versions and record the pair; the device seconds it took."""
        pairs = [Pair(replay.query, document, replay.instruction) for document in replay.documents]
        chunks = [pairs[i:i + CHUNK_PAIRS] for i in range(0, len(pairs), CHUNK_PAIRS)]
        seconds = {stable: 0.0, candidate: 0.0}
        warm_up = 0.0
        self._flip = not self._flip
        order = (candidate, stable) if self._flip else (stable, candidate)
        sessions: dict[str, dict] = {stable: {}, candidate: {}}  # each version's texts embedded afresh
        try:
            for chunk in chunks:
                for version in order:  # untimed: both versions' image words are now cached
                    warm_up += self._score(version, chunk, candidate, {})
                for version in order:
                    seconds[version] += self._score(version, chunk, candidate, sessions[version])
        except _StableFailed:
            return warm_up + sum(seconds.values())  # the request or the stable: no evidence either way
        except _CandidateFailed:
            self._live.record_pair(stable, candidate, None, None, False, self._clock.now())
            return warm_up + sum(seconds.values())
        n = len(pairs)
        self._live.record_pair(stable, candidate, seconds[stable] / n, seconds[candidate] / n, True, self._clock.now())
        return warm_up + sum(seconds.values())

    def _score(self, version: str, chunk: list[Pair], candidate: str, session: dict) -> float:
        try:
            lease = self._registry.acquire(version)
            engine = lease.__enter__()
        except Exception as exc:  # a version leaving (rollback, promotion) is nobody's error
            raise _StableFailed(str(exc)) from exc
        try:
            return score_isolated(engine, chunk, session, share=REPLAY_SHARE)[1]
        except NotReady as exc:
            raise _StableFailed(str(exc)) from exc
        except Exception as exc:
            raise (_CandidateFailed if version == candidate else _StableFailed)(str(exc)) from exc
        finally:
            lease.__exit__(None, None, None)


class _StableFailed(Exception):
    pass


class _CandidateFailed(Exception):
    pass
