"""The Ray Serve engine provider (`--engine ray`): each loaded version is one Serve application
whose deployment runs N replicas of `VersionReplica`; the ingress scores through its handle.

Ray Serve does the replica work: placement, health checks, restarting a dead replica, graceful
shutdown when a deployment is deleted, spreading requests over replicas. This module keeps to
the engine port: open a version (and fail in bounded time if it cannot be placed), score with one
retry when a replica dies, report capacity, delete the deployment on close. Routing policy and
rollout control stay above the port and are the same as in embedded mode.
"""
from __future__ import annotations

import dataclasses
import logging
import re
import threading
import time
from pathlib import Path
from typing import Any, Sequence

import ray
from ray import serve
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError
from ray.util.placement_group import placement_group, remove_placement_group

import reranker
from reranker.cancel import CancelToken, cancelled_error
from reranker.clock import Clock
from reranker.content import Content
from reranker.engine.engine import EngineStats, Scoring
from reranker.engine.ray_replica import ReplicaAnswer, VersionReplica
from reranker.errors import InsufficientMemory, ModelLoadError, NotReady, RerankerError
from reranker.models.base import ModelInfo
from reranker.settings import RaySettings, Settings
from reranker.truncation import TokenLimits

log = logging.getLogger(__name__)
APP_PREFIX = "reranker-"
POLL_S = 0.25
# A Ray we start ourselves: replicas do the model work, so they keep the ingress's priority
# (Ray renices worker processes +15 by default, which starves them on a shared machine).
LOCAL_SYSTEM_CONFIG = {"worker_niceness": 0}
REPO_ROOT = str(Path(reranker.__file__).resolve().parents[1])


def app_name(version: str) -> str:
    """The Serve application of a version ("mini-v1~2" -> "reranker-mini-v1-2")."""
    return APP_PREFIX + re.sub(r"[^A-Za-z0-9_-]", "-", version)


def replica_env(settings: Settings) -> dict[str, str]:
    """What a replica process needs: this package on its path, and the offline switches."""
    env = {"PYTHONPATH": REPO_ROOT, "HF_HUB_DISABLE_PROGRESS_BARS": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    if not settings.allow_downloads:
        env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return env


class RayEngine:
    """ScoringEngine over one version's deployment handle."""

    def __init__(self, app: str, handle: Any, info: ModelInfo, timeout_s: float) -> None:
        self.app = app
        self._handle = handle
        self._info = info
        self._timeout_s = timeout_s
        self._replicas: dict[str, EngineStats] = {}
        self._lock = threading.Lock()
        self._closed = False
        self.retries = 0  # requests that a dead replica failed and another one then answered

    @property
    def info(self) -> ModelInfo:
        return self._info

    def score(self, query: Content, documents: Sequence[Content], instruction: str | None = None) -> list[float]:
        return self.score_counted(query, documents, instruction).scores

    def score_counted(self, query: Content, documents: Sequence[Content],
                      instruction: str | None = None, cancel: CancelToken | None = None,
                      limits: TokenLimits | None = None) -> Scoring:
        if self._closed:
            raise NotReady(f"deployment of model {self._info.id} is deleted; the request was not scored")
        try:
            answer = self._call(query, list(documents), instruction, cancel, limits)
        except RayActorError as exc:  # the replica died with the request: Serve restarts it
            log.warning("a replica of %s died during a request (%s); retrying once", self._info.id, exc)
            with self._lock:
                self.retries += 1
            try:
                answer = self._call(query, list(documents), instruction, cancel, limits)
            except RayActorError as again:
                raise RerankerError(f"two replicas of {self._info.id} died during one request: {again}") from again
        with self._lock:
            self._replicas[answer.replica] = answer.stats
        return answer.scoring

    def _call(self, query: Content, documents: list[Content], instruction: str | None,
              cancel: CancelToken | None, limits: TokenLimits | None = None) -> ReplicaAnswer:
        what = f"model {self._info.id}"
        if cancel is not None:
            cancel.check(what)
        response = self._handle.score.remote(query, documents, instruction, limits)
        forget = cancel.on_cancel(response.cancel) if cancel is not None else None
        try:
            return response.result(timeout_s=self._timeout_s)
        except RayActorError:
            if cancel is not None and cancel.cancelled:
                raise cancelled_error(cancel.reason or "cancelled", what) from None
            raise
        except Exception as exc:
            if cancel is not None and cancel.cancelled:  # Serve cancelled it on the replica too
                raise cancelled_error(cancel.reason or "cancelled", what) from exc
            if isinstance(exc, RayTaskError):  # the replica raised: hand on our own error type
                cause = getattr(exc, "cause", None)
                if isinstance(cause, RerankerError):
                    raise cause from None
                raise RerankerError(f"{what} failed on a replica: {cause or exc}") from exc
            if isinstance(exc, (TimeoutError, GetTimeoutError)):
                raise RerankerError(f"{what} did not answer within {self._timeout_s:.0f} s") from exc
            raise
        finally:
            if forget is not None:
                forget()

    def replicas_seen(self) -> list[str]:
        with self._lock:
            return sorted(self._replicas)

    def stats(self) -> EngineStats:
        """The sum over every replica that has answered (each one's latest counters)."""
        with self._lock:
            rows = list(self._replicas.values())
        batches = sum(r.batches for r in rows)
        failed = sum(r.failed_batches for r in rows)
        pairs = sum(r.pairs_scored for r in rows)
        return EngineStats(
            batches=batches, failed_batches=failed, pairs_scored=pairs,
            cache_hits=sum(r.cache_hits for r in rows), cache_misses=sum(r.cache_misses for r in rows),
            cache_entries=sum(r.cache_entries for r in rows), queue_depth=sum(r.queue_depth for r in rows),
            mean_batch_size=pairs / (batches - failed) if batches > failed else 0.0,
            model_seconds=sum(r.model_seconds for r in rows),
        )

    def close(self) -> None:
        """Delete the deployment; Serve lets each replica finish its requests first."""
        if self._closed:
            return
        self._closed = True
        serve.delete(self.app, _blocking=True)


class RayEngines:
    """EngineProvider: one Serve application per version, on the cluster Ray connects to."""

    kind = "ray"

    def __init__(self, settings: Settings, clock: Clock) -> None:
        self._settings = settings
        self._ray: RaySettings = settings.ray
        self._clock = clock
        if not ray.is_initialized():  # a test or an embedding program may have connected already
            local = {"_system_config": LOCAL_SYSTEM_CONFIG} if self._ray.address is None else {}
            ray.init(address=self._ray.address, include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": replica_env(settings)}, **local)
        serve.start(proxy_location="Disabled")  # the ingress is our FastAPI app, not Serve's proxy
        self._delete_leftovers()

    def _delete_leftovers(self) -> None:
        """Applications of a previous ingress that stopped without deleting them."""
        for name in serve.status().applications:
            if name.startswith(APP_PREFIX):
                log.warning("deleting the leftover Serve application %s", name)
                serve.delete(name, _blocking=True)

    def _bundle(self) -> dict[str, float]:
        bundle = {"CPU": self._ray.replica_cpus}
        if self._ray.replica_gpus:
            bundle["GPU"] = self._ray.replica_gpus
        return bundle

    def _needs(self) -> str:
        r = self._ray
        return f"{r.replicas} replica(s) x {r.replica_cpus:g} CPU" + (f" + {r.replica_gpus:g} GPU" if r.replica_gpus else "")

    def _free(self) -> str:
        free = ray.available_resources()
        total = ray.cluster_resources()
        return ", ".join(f"{free.get(k, 0.0):g} of {total.get(k, 0.0):g} {k}" for k in ("CPU", "GPU"))

    def check_room(self, path: Path) -> None:
        free = ray.available_resources()
        short = [k for k, v in self._bundle().items() if free.get(k, 0.0) < v * self._ray.replicas]
        if short:
            raise InsufficientMemory(
                f"the Ray cluster cannot place {path.name} beside the serving version: it needs {self._needs()}, "
                f"free now: {self._free()}. Add nodes, or re-submit with force_replace=true to replace in place "
                "(requests queue while it loads).")

    def open(self, version: str, path: Path, cancel: threading.Event) -> RayEngine:
        app = app_name(version)
        started = self._clock.monotonic()
        self._wait_for_placement(version, started, cancel)
        log.info("%s: resources for its replicas are free (%.1f s)", version, self._clock.monotonic() - started)
        r = self._ray
        deployment = serve.deployment(VersionReplica, name="replica").options(
            num_replicas=r.replicas,
            ray_actor_options={"num_cpus": r.replica_cpus, "num_gpus": r.replica_gpus,
                               "runtime_env": {"env_vars": replica_env(self._settings)}},
            max_ongoing_requests=4 * self._settings.engine.max_batch_pairs,
            health_check_period_s=2.0, health_check_timeout_s=30.0,
            graceful_shutdown_timeout_s=r.graceful_shutdown_s, graceful_shutdown_wait_loop_s=0.5,
        )
        handle = serve._run(deployment.bind(str(path), version, self._settings), name=app, route_prefix=None,
                            _blocking=False)
        try:
            self._wait_running(app, version, started, cancel)
            info: ModelInfo = handle.info.remote().result(timeout_s=60.0)
        except BaseException:
            serve.delete(app, _blocking=True)
            raise
        info = dataclasses.replace(info, device=f"{info.device} x{r.replicas} (ray)")
        log.info("%s runs as Serve application %s with %d replica(s) (%.1f s)", version, app, r.replicas,
                 self._clock.monotonic() - started)
        return RayEngine(app, handle, info, r.request_timeout_s)

    def _wait_for_placement(self, version: str, started: float, cancel: threading.Event) -> None:
        """Reserve every replica's resources once (a placement group, removed at once) to learn
        in bounded time whether the cluster can hold them; Serve then places the replicas."""
        group = placement_group([self._bundle()] * self._ray.replicas, strategy="PACK")
        try:
            while True:
                ready, _ = ray.wait([group.ready()], timeout=POLL_S)
                if ready:
                    return
                if cancel.is_set():
                    raise ModelLoadError(f"loading {version!r} was cancelled")
                if self._clock.monotonic() - started > self._ray.placement_timeout_s:
                    raise ModelLoadError(
                        f"the replicas of {version} cannot be placed on the Ray cluster: it needs {self._needs()}, "
                        f"free: {self._free()}; waited {self._ray.placement_timeout_s:g} s. "
                        "Nothing was deployed; the serving version is unchanged.")
        finally:
            remove_placement_group(group)

    def _wait_running(self, app: str, version: str, started: float, cancel: threading.Event) -> None:
        while True:
            status = serve.status().applications.get(app)
            state = str(getattr(status, "status", "") or "")
            if state.endswith("RUNNING"):
                return
            if state.endswith("DEPLOY_FAILED") or state.endswith("UNHEALTHY"):
                raise ModelLoadError(f"Ray Serve could not start {version}: {_messages(status)}")
            if cancel.is_set():
                raise ModelLoadError(f"loading {version!r} was cancelled")
            if self._clock.monotonic() - started > self._ray.start_timeout_s:
                raise ModelLoadError(f"the replicas of {version} were not all running after "
                                     f"{self._ray.start_timeout_s:g} s: {_messages(status)}")
            time.sleep(POLL_S)

    def close(self) -> None:
        """Engines delete their own applications; the connection to Ray stays with the process."""


def _messages(status: Any) -> str:
    if status is None:
        return "the application is not known to Serve"
    parts = [status.message] if getattr(status, "message", "") else []
    for name, deployment in getattr(status, "deployments", {}).items():
        if getattr(deployment, "message", ""):
            parts.append(f"{name}: {deployment.message}")
    return "; ".join(parts) or str(status.status)
