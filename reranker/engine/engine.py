"""One engine per loaded model version: a score cache in front of one batching worker thread."""
from __future__ import annotations

import enum
import hashlib
import io
import math
import threading
from dataclasses import dataclass
from typing import Sequence

from PIL import Image

from reranker.cancel import CancelToken, cancelled_error
from reranker.clock import Clock
from reranker.content import Content, ImageItem, Pair
from reranker.engine.batcher import BatchQueue, Job, Slot
from reranker.engine.cache import ScoreCache, ScoreKey, score_key
from reranker.engine.devicegate import DeviceGate
from reranker.errors import ModelLoadError, NotReady, RequestCancelled, RerankerError
from reranker.models.base import ModelInfo, Reranker, TokenCounter
from reranker.settings import EngineSettings
from reranker.truncation import TokenLimits, fit_documents


class EngineState(enum.Enum):
    STARTING = "starting"  # worker running, warm-up not yet passed
    READY = "ready"
    CLOSED = "closed"


@dataclass(frozen=True)
class EngineStats:
    batches: int
    failed_batches: int
    pairs_scored: int
    cache_hits: int
    cache_misses: int
    cache_entries: int
    queue_depth: int
    mean_batch_size: float  # distinct pairs per successful model call
    model_seconds: float
    dropped_pairs: int = 0  # queued pairs dropped unscored because their request was cancelled


@dataclass(frozen=True)
class Scoring:
    scores: list[float]
    computed: int  # distinct pairs the model scored for this call (0 = all from the cache)
    model_seconds: float  # model time of the batches that scored them
    tokens: int = 0  # tokens the model reads for these pairs (cached pairs included); 0 = not counted


class Engine:
    """Thread-safe, blocking scoring front for one Reranker.

    Concurrent callers' pairs are merged by a single worker into batches of at most
    `settings.max_batch_pairs`; the model is only ever called from that worker.
    """

    def __init__(self, model: Reranker, settings: EngineSettings, clock: Clock,
                 gate: DeviceGate | None = None) -> None:
        self._model = model
        # Engines on one device share this gate: forward passes of two versions never overlap,
        # and background work (golden set, latency probes) yields to live batches.
        self._gate = gate or DeviceGate(clock=clock.monotonic)
        self._info = model.info
        self._clock = clock
        self._cache = ScoreCache(settings.cache_entries)
        self._token_cache = ScoreCache(settings.cache_entries)  # token count per cached pair
        self._queue = BatchQueue(settings.max_batch_pairs, settings.batch_wait_ms / 1000.0)
        self._state = EngineState.STARTING
        self._state_lock = threading.Lock()
        self._counts_lock = threading.Lock()
        self._batches = 0
        self._failed_batches = 0
        self._pairs_scored = 0
        self._model_seconds = 0.0
        self._worker = threading.Thread(target=self._run, name=f"engine-{self._info.id}", daemon=True)
        self._worker.start()

    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def state(self) -> EngineState:
        with self._state_lock:
            return self._state

    @property
    def ready(self) -> bool:
        return self.state is EngineState.READY

    def score(self, query: Content, documents: Sequence[Content], instruction: str | None = None) -> list[float]:
        """Scores in [0, 1] for each document, in document order. Blocks until they are known."""
        return self.score_counted(query, documents, instruction).scores

    def score_counted(self, query: Content, documents: Sequence[Content],
                      instruction: str | None = None, cancel: CancelToken | None = None,
                      limits: TokenLimits | None = None) -> "Scoring":
        """Like score(), plus how many distinct pairs the model computed (0 = all from the cache)
        and the model time of the batches that computed them. `limits` (the request's token
        limits) cut documents with this version's tokenizer before anything else, or refuse them.

        Once `cancel` is set the call raises RequestCancelled at once and the pairs still queued
        are dropped, never scored."""
        if self.state is EngineState.CLOSED:
            raise NotReady(f"engine for model {self._info.id} is closed; the request was not scored")
        if limits is not None:
            documents = fit_documents(self._model, self._info.id, query, documents, limits)
        keys = [score_key(self._info.id, instruction, query, doc) for doc in documents]
        results: list[float | None] = [None] * len(documents)
        missing: dict[ScoreKey, list[int]] = {}
        tokens = 0
        for i, key in enumerate(keys):
            if key in missing:
                missing[key].append(i)
                continue
            cached = self._cache.get(key)
            if cached is None:
                missing[key] = [i]
            else:
                results[i] = cached
                tokens += int(self._token_cache.get(key) or 0)
        model_seconds = 0.0
        if missing:
            firsts = [positions[0] for positions in missing.values()]
            scores, model_seconds, counts = self._submit(
                [Pair(query, documents[i], instruction) for i in firsts],
                list(missing),
                [f"documents[{i}]" for i in firsts],
                cancel,
            )
            for positions, value, count in zip(missing.values(), scores, counts):
                tokens += count * len(positions)
                for i in positions:
                    results[i] = value
        return Scoring([value for value in results if value is not None], len(missing), model_seconds, tokens)

    def score_isolated(self, pairs: Sequence[Pair], session: dict | None = None,
                       share: float | None = None) -> tuple[list[float], float]:
        """Score exactly these pairs in one forward pass of their own, at background priority.

        Never mixed with live requests and never read from or written to the cache, so two
        versions given the same pairs run the same batch (composition, padding, dtype path).
        `session` (a dict the caller keeps for one isolated run) goes to a model's own
        score_isolated(). A model with prepare()/score_prepared() (Qwen3-VL) does its CPU work
        before taking the device gate, so background work holds the device only for its pass
        (on a busy GPU host the CPU part, starved by request threads, took seconds). Returns the
        scores and the model seconds of the whole (prepare included; the wait for the gate not)."""
        if self.state is EngineState.CLOSED:
            raise NotReady(f"engine for model {self._info.id} is closed; the pairs were not scored")
        prepare = getattr(self._model, "prepare", None)
        score_prepared = getattr(self._model, "score_prepared", None)
        if score_prepared is None:
            prepare = None
        started = self._clock.monotonic()
        try:  # a model's CPU work (prompts, tokens, media) outside the gate: the gate guards the device
            prepared = prepare(list(pairs)) if prepare is not None else None
        except Exception as exc:
            raise self._batch_error(exc, len(pairs)) from exc
        elapsed = self._clock.monotonic() - started
        with self._gate.background(share):
            started = self._clock.monotonic()
            try:
                if prepared is not None and score_prepared is not None:
                    raw = score_prepared(prepared)
                else:
                    isolated = getattr(self._model, "score_isolated", None)
                    raw = isolated(list(pairs), session) if isolated is not None else self._model.score(list(pairs))
                scores = [float(value) for value in raw]
            except Exception as exc:
                raise self._batch_error(exc, len(pairs)) from exc
            elapsed += self._clock.monotonic() - started
        if len(scores) != len(pairs):
            raise RerankerError(f"model returned {len(scores)} scores for {len(pairs)} pairs")
        if not all(math.isfinite(value) for value in scores):
            raise RerankerError(f"model {self._info.id} returned a non-finite score on an isolated batch")
        return scores, elapsed

    def warm_up(self) -> None:
        """Score a tiny text pair and a tiny image pair (bypassing the cache); then report ready."""
        pairs = [
            Pair(Content(text="warm-up query"), Content(text="warm-up document")),
            Pair(Content(text="warm-up query"), Content(images=(_warm_up_image(),))),
        ]
        try:
            for pair in pairs:
                self._submit([pair], [("warm-up", "", pair.query.digest, pair.document.digest)], ["warm-up"])
        except RerankerError as exc:
            raise ModelLoadError(f"warm-up of model {self._info.id} failed: {exc}") from exc
        with self._state_lock:
            if self._state is EngineState.STARTING:
                self._state = EngineState.READY

    def stats(self) -> EngineStats:
        cache = self._cache.stats()
        with self._counts_lock:
            good_batches = self._batches - self._failed_batches
            mean = self._pairs_scored / good_batches if good_batches else 0.0
            return EngineStats(
                batches=self._batches,
                failed_batches=self._failed_batches,
                pairs_scored=self._pairs_scored,
                cache_hits=cache.hits,
                cache_misses=cache.misses,
                cache_entries=cache.entries,
                queue_depth=self._queue.depth(),
                mean_batch_size=mean,
                model_seconds=self._model_seconds,
                dropped_pairs=self._queue.dropped(),
            )

    def close(self) -> None:
        """Stop the worker (waiting requests fail with NotReady) and release the model."""
        with self._state_lock:
            if self._state is EngineState.CLOSED:
                return
            self._state = EngineState.CLOSED
        for job in self._queue.close():
            job.fail(NotReady(f"engine for model {self._info.id} closed before the request was scored"))
        self._worker.join()
        self._model.close()

    def _submit(self, pairs: list[Pair], keys: list[ScoreKey], labels: list[str],
                cancel: CancelToken | None = None) -> tuple[list[float], float, list[int]]:
        job = Job(pairs=pairs, keys=keys, labels=labels)
        if cancel is None:
            self._queue.put(job, self._info.id)
            return job.wait(), job.model_seconds, list(job.tokens)
        cancel.check(f"model {self._info.id}")
        forget = cancel.on_cancel(lambda: self._cancel(job, cancel))
        try:
            self._queue.put(job, self._info.id)
            return job.wait(), job.model_seconds, list(job.tokens)
        finally:
            forget()

    def _cancel(self, job: Job, cancel: CancelToken) -> None:
        error: RequestCancelled = cancelled_error(cancel.reason or "cancelled", f"model {self._info.id}")
        if job.fail(error):
            error.unscored_pairs = job.unscored

    def _run(self) -> None:
        while True:
            batch = self._queue.take()
            if batch is None:
                return
            try:
                self._run_batch(batch)
            except Exception as exc:  # the worker must outlive any failure
                self._fail(batch, RerankerError(f"engine for model {self._info.id} failed: {exc!r}"))

    def _run_batch(self, batch: list[Slot]) -> None:
        """Score one batch; if it fails and holds several jobs, retry each job on its own so a
        bad input fails only the request that sent it."""
        error = self._score_slots(batch)
        if error is None:
            return
        jobs: dict[int, list[Slot]] = {}
        for slot in batch:
            jobs.setdefault(id(slot.job), []).append(slot)
        if len(jobs) == 1:
            self._fail(batch, error)
            return
        for slots in jobs.values():
            retry_error = self._score_slots(slots)
            if retry_error is not None:
                self._fail(slots, retry_error)

    def _score_slots(self, batch: list[Slot]) -> RerankerError | None:
        """One model call for the batch's distinct pairs; resolves the slots, or returns the error."""
        groups: dict[ScoreKey, list[Slot]] = {}
        for slot in batch:
            groups.setdefault(slot.key, []).append(slot)
        if not groups:
            return None
        pairs = [slots[0].pair for slots in groups.values()]
        with self._gate.live():
            started = self._clock.monotonic()
            try:
                scores = [float(value) for value in self._model.score(pairs)]
                if len(scores) != len(pairs):
                    raise RerankerError(f"model returned {len(scores)} scores for {len(pairs)} pairs")
            except Exception as exc:
                self._count(0, self._clock.monotonic() - started, failed=True)
                return self._batch_error(exc, len(pairs))
            elapsed = self._clock.monotonic() - started
            counts = self._token_counts(pairs)
        self._count(len(pairs), elapsed, failed=False)
        for job in {id(slot.job): slot.job for slot in batch}.values():
            job.add_model_time(elapsed)
        for (key, slots), value, count in zip(groups.items(), scores, counts):
            if not math.isfinite(value):
                self._fail(slots, RerankerError(
                    f"model {self._info.id} returned a non-finite score ({value}) for {slots[0].label}"
                ))
                continue
            self._cache.put(key, value)
            self._token_cache.put(key, float(count))
            for slot in slots:
                slot.job.set_tokens(slot.index, count)
                slot.job.resolve(slot.index, value)
        return None

    def _token_counts(self, pairs: list[Pair]) -> list[int]:
        """Tokens the model read per pair, from a backend that counts them (TokenCounter);
        zeros otherwise. Called right after score() on the worker thread, so a backend may reuse
        what score() just encoded. Counting never fails a request."""
        if not isinstance(self._model, TokenCounter):
            return [0] * len(pairs)
        try:
            counts = [int(n) for n in self._model.count_tokens(pairs)]
        except Exception:  # noqa: BLE001 - a usage figure is not worth a failed request
            return [0] * len(pairs)
        return counts if len(counts) == len(pairs) else [0] * len(pairs)

    def _batch_error(self, exc: Exception, size: int) -> RerankerError:
        if isinstance(exc, RerankerError):
            return exc
        error = RerankerError(
            f"model {self._info.id} failed on a batch of {size} pairs: {type(exc).__name__}: {exc}"
        )
        error.__cause__ = exc
        return error

    def _fail(self, slots: list[Slot], error: RerankerError) -> None:
        for slot in slots:
            slot.job.fail(error)

    def _count(self, pairs: int, seconds: float, failed: bool) -> None:
        with self._counts_lock:
            self._batches += 1
            self._failed_batches += int(failed)
            self._pairs_scored += pairs
            self._model_seconds += seconds


def _warm_up_image() -> ImageItem:
    image = Image.new("RGB", (32, 32), (200, 60, 40))
    encoded = io.BytesIO()
    image.save(encoded, format="PNG")
    return ImageItem(image=image, digest=hashlib.sha256(encoded.getvalue()).hexdigest())
