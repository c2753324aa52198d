"""The ranking path: build a request's inputs, route it, score it, time it, count it, log it,
and run its shadow copy. RerankService composes one Ranking and delegates rank() and compare()."""
from __future__ import annotations

import hashlib
import logging
import random
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Callable, Sequence, TypeVar

from reranker.cancel import CancelToken
from reranker.clock import Clock
from reranker.content import Content
from reranker.control.livestats import LiveStats
from reranker.control.registry import Registry
from reranker.control.requestlog import RequestLogWriter, RequestRecord
from reranker.control.router import RequestAttributes
from reranker.engine.port import ScoringEngine
from reranker.errors import InputError, NotReady, RequestCancelled, RerankerError
from reranker.media.heap import trim_heap
from reranker.service.agreement import ShadowStats, rank_changes, ranking, spearman, top_k_overlap
from reranker.service.experiments import ScoreHistory
from reranker.service.inputs import InputBuilder, top_results
from reranker.service.metrics import ServiceMetrics
from reranker.service.probes import PairedReplays
from reranker.service.replace import Admission
from reranker.service.types import CompareResult, RankedDocument, RankRequest, RankResult
from reranker.truncation import TokenLimits

log = logging.getLogger(__name__)
SHADOW_TOP_K = 5
T = TypeVar("T")


@dataclass(frozen=True)
class Scored:
    version: str
    scores: list[float]
    seconds: float  # model time of the batches that computed its pairs
    latency_s: float  # the request's latency: arrival to answer, wall clock (reranker.control.measures)
    tokens: int = 0  # tokens the model read for the request (its own tokenizer; cached pairs included)


class Ranking:
    """Thread-safe: any number of request threads call rank() and compare() at once."""

    def __init__(self, registry: Registry[ScoringEngine], inputs: InputBuilder, admission: Admission,
                 probes: PairedReplays, metrics: ServiceMetrics, live: LiveStats, score_history: ScoreHistory,
                 shadow_stats: ShadowStats, request_log: RequestLogWriter, clock: Clock, rng: random.Random) -> None:
        self._registry, self._inputs, self._admission, self._probes = registry, inputs, admission, probes
        self._metrics, self._live, self._score_history = metrics, live, score_history
        self._shadow_stats, self._request_log, self._clock = shadow_stats, request_log, clock
        self._rng = rng
        self._rng_lock = threading.Lock()
        self._shadow_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="shadow")

    def close(self) -> None:
        self._shadow_pool.shutdown(wait=True, cancel_futures=True)

    def rank(self, request: RankRequest, pinned_version: str | None = None,
             cancel: CancelToken | None = None) -> RankResult:
        """Rank one request. Once `cancel` is set (deadline, client gone) the work stops at the next
        media item or frame, its queued pairs are dropped, and RequestCancelled is raised."""
        started = self._clock.monotonic()
        query, documents = self._cancellable(lambda: self._inputs.build(request, cancel), "decode")
        request_id = request.request_id or uuid.uuid4().hex
        with self._admission.admitted():
            if pinned_version is not None:
                scored, shadow = self._score_on(pinned_version, query, documents, request.instruction,
                                                cancel=cancel, started=started, limits=request.limits), None
            else:
                scored, shadow = self._score_routed(request, query, documents, started, cancel)
                self._probes.offer(query, documents, request.instruction)
        result = self._result(request_id, scored, request.top_n, len(documents))
        if any(item.images or item.videos for item in (query, *documents)):
            trim_heap()  # the model's per-request buffers for media are freed: give the pages back
        record = self._record(request, result)
        if shadow is not None:
            self._shadow_pool.submit(self._run_shadow, shadow, query, documents, request.instruction, scored, record,
                                     request.limits)
        else:
            self._request_log.submit(record)
        return result

    def compare(self, request: RankRequest, versions: tuple[str, str],
                cancel: CancelToken | None = None) -> CompareResult:
        if versions[0] == versions[1]:
            raise InputError(f"versions must be two different ids, got {list(versions)}")
        started = self._clock.monotonic()
        query, documents = self._cancellable(lambda: self._inputs.build(request, cancel), "decode")
        results = []
        for version in versions:
            scored = self._score_on(version, query, documents, request.instruction, cancel=cancel, started=started,
                                    limits=request.limits)
            results.append(self._result(uuid.uuid4().hex, scored, request.top_n, len(documents)))
            started = self._clock.monotonic()
        k = request.top_n or min(10, len(documents))
        order_a = [r.index for r in results[0].results] + _rest(results[0], len(documents))
        order_b = [r.index for r in results[1].results] + _rest(results[1], len(documents))
        changes = rank_changes(order_a, order_b, k)
        return CompareResult(a=results[0], b=results[1], changes=tuple(changes))

    def _cancellable(self, work: Callable[[], T], stage: str) -> T:
        try:
            return work()
        except RequestCancelled as exc:
            self._metrics.cancelled.labels(exc.reason, stage).inc()
            raise

    def _score_routed(self, request: RankRequest, query: Content, documents: list[Content],
                      started: float, cancel: CancelToken | None = None) -> tuple[Scored, str | None]:
        caller = request.caller
        with self._rng_lock:
            draw = self._rng.random()
        attributes = RequestAttributes(region=caller.region, client_ip=caller.client_ip)
        with self._registry.acquire_routed(caller.user_key, attributes, draw) as lease:
            scored = self._timed(lease.route.version, lease.engine, query, documents, request.instruction,
                                 started, cancel=cancel, limits=request.limits)
        return scored, lease.route.shadow

    def _score_on(self, version: str, query: Content, documents: list[Content], instruction: str | None,
                  shadow: bool = False, cancel: CancelToken | None = None, started: float | None = None,
                  limits: TokenLimits | None = None) -> Scored:
        with self._registry.acquire(version) as engine:
            return self._timed(version, engine, query, documents, instruction,
                               self._clock.monotonic() if started is None else started, shadow, cancel, limits)

    def _timed(self, version: str, engine: ScoringEngine, query: Content, documents: Sequence[Content],
               instruction: str | None, started: float, shadow: bool = False,
               cancel: CancelToken | None = None, limits: TokenLimits | None = None) -> Scored:
        try:
            scoring = engine.score_counted(query, documents, instruction, cancel, limits)
        except RequestCancelled as exc:  # not a model error: the gates never see it
            self._metrics.cancelled.labels(exc.reason, "scoring").inc()
            self._metrics.cancelled_pairs.inc(exc.unscored_pairs)
            raise
        except RerankerError as exc:
            seconds = self._clock.monotonic() - started
            self._count(version, seconds, ok=False, kind=type(exc).__name__, n_docs=0, shadow=shadow)
            raise
        scores, seconds = scoring.scores, self._clock.monotonic() - started
        self._count(version, seconds, ok=True, kind="", n_docs=len(documents), shadow=shadow)
        self._score_history.add(version, scores)
        return Scored(version, scores, scoring.model_seconds, seconds, scoring.tokens)

    def _count(self, version: str, seconds: float, ok: bool, kind: str, n_docs: int, shadow: bool) -> None:
        """One latency everywhere (reranker.control.measures): the request's wall-clock time from
        arrival to answer feeds the live window (error-rate gate, status), /metrics and the request
        log alike. The latency gate does not read it: two arms of unequal size are not comparable
        per request, so it judges paired replays instead (service/probes.py). Shadow copies are
        counted apart in /metrics."""
        if not shadow:
            self._live.record(version, seconds, ok, self._clock.now())
        if shadow:
            self._metrics.requests.labels(version, "shadow" if ok else "shadow_error").inc()
            return
        self._metrics.requests.labels(version, "ok" if ok else "error").inc()
        self._metrics.latency.labels(version).observe(seconds)
        if ok:
            self._metrics.documents.labels(version).inc(n_docs)
        else:
            self._metrics.errors.labels(version, kind).inc()

    def _result(self, request_id: str, scored: Scored, top_n: int | None, n_docs: int) -> RankResult:
        ranked = tuple(RankedDocument(i, s) for i, s in top_results(scored.scores, top_n))
        latency_ms = scored.latency_s * 1000.0
        usage = {"model_ms": round(scored.seconds * 1000.0, 3), "total_tokens": scored.tokens}
        return RankResult(request_id, scored.version, ranked, latency_ms, n_docs, usage)

    def _record(self, request: RankRequest, result: RankResult) -> RequestRecord:
        key = request.caller.user_key
        return RequestRecord(
            at=self._clock.now(), request_id=result.request_id, version=result.version,
            n_documents=result.n_documents, latency_ms=result.latency_ms, status=200,
            user_hash=hashlib.sha256(key.encode()).hexdigest()[:16] if key else None,
            region=request.caller.region, top_primary=tuple(r.index for r in result.results[:SHADOW_TOP_K]),
        )

    def _run_shadow(self, shadow: str, query: Content, documents: list[Content], instruction: str | None,
                    primary: Scored, record: RequestRecord, limits: TokenLimits | None = None) -> None:
        """Score the same request on the shadow version; record both answers and their agreement."""
        try:
            other = self._score_on(shadow, query, documents, instruction, shadow=True, limits=limits)
        except (RerankerError, NotReady) as exc:
            log.warning("shadow request on %s failed: %s", shadow, exc)
            self._request_log.submit(record)
            return
        order_p, order_s = ranking(primary.scores), ranking(other.scores)
        overlap = top_k_overlap(order_p, order_s, SHADOW_TOP_K)
        self._metrics.shadow_agreement.labels(primary.version, shadow).observe(overlap)
        self._shadow_stats.record(primary.version, shadow, overlap, spearman(primary.scores, other.scores))
        self._request_log.submit(_with_shadow(record, shadow, overlap, tuple(order_s[:SHADOW_TOP_K])))


def _rest(result: RankResult, n: int) -> list[int]:
    seen = {r.index for r in result.results}
    return [i for i in range(n) if i not in seen]


def _with_shadow(record: RequestRecord, shadow: str, overlap: float, top_shadow: tuple[int, ...]) -> RequestRecord:
    return replace(record, shadow_version=shadow, shadow_agreement=overlap, top_shadow=top_shadow)
