"""RerankService: the one facade both front ends (REST and Gradio) call."""
from __future__ import annotations

import logging
import random
import threading
from typing import Any, Mapping, Sequence

from reranker.cancel import CancelToken
from reranker.clock import Clock
from reranker.control.controller import RolloutController
from reranker.control.gates import GateConfig
from reranker.control.livestats import LiveStats
from reranker.control.policy import TrafficPolicy, validate
from reranker.control.ports import MemoryProbe as ProcessMemoryProbe
from reranker.control.registry import Registry, VersionState
from reranker.control.requestlog import RequestLogWriter
from reranker.control.store import Store
from reranker.control.storehealth import StoreHealth
from reranker.engine.factory import make_engines
from reranker.engine.port import ScoringEngine
from reranker.evaluation import Decoders
from reranker.errors import ModelLoadError, NotReady, RerankerError, StoreUnavailable
from reranker.media import MediaDecoder, MediaResolver
from reranker.media.urls import UrlFetcher
from reranker.models.loading import load_model
from reranker.models.memory import MemoryProbe
from reranker.service.authlog import AdminAuth, AuthFailureLog
from reranker.service.agreement import ShadowStats
from reranker.service.catalog import VersionCatalog
from reranker.service.inputs import InputBuilder
from reranker.service.experiments import PolicyEpoch, ScoreHistory
from reranker.service.metrics import ServiceMetrics
from reranker.service.operator import VersionOperations, audit_refusal
from reranker.service.report import ExperimentReports
from reranker.service.types import CompareResult, RankRequest, RankResult
from reranker.service.ranking import Ranking
from reranker.service.replace import Admission, InPlaceReplacer
from reranker.service.rollout_ports import (
    DrainingUnloader, GoldenSetValidator, ProcessMemory, RegistryTraffic, VersionLoader, default_golden,
)
from reranker.service.probes import PairedReplays
from reranker.service.updates import StoreSink, UpdateManager
from reranker.service.workpool import WorkPool
from reranker.service.versions import LoadJob, Loader, VersionManager
from reranker.service.views import AuditEntryView, ExperimentReport, StatusView, TrafficView, VersionView
from reranker.settings import Settings

log = logging.getLogger(__name__)


class RerankService:
    """Owns the registry, store, engines and logs; every method is safe to call from any thread.

    Operator actions (VersionOperations), the experiment report (ExperimentReports) and the admin
    token (AdminAuth) are services of their own, composed here; the methods below delegate to them.
    The model loader and both memory probes are injected (tests pass fakes)."""

    def __init__(self, settings: Settings, clock: Clock, admin_token: str, rng: random.Random | None = None,
                 gate_config: GateConfig | None = None, *, loader: Loader = load_model,
                 host_memory: MemoryProbe | None = None, process_memory: ProcessMemoryProbe | None = None) -> None:
        self.settings = settings
        self.gate_config = gate_config or GateConfig(  # paired replays: GateConfig's own minimum (20)
            latency_ratio=settings.gate_latency_ratio,
            error_min_samples=settings.gate_min_samples,
        )
        self.clock = clock
        self.store = Store(settings.data_dir / "reranker.sqlite3", clock)  # StoreUnavailable: one line
        self.registry: Registry[ScoringEngine] = Registry(clock)
        self.metrics = ServiceMetrics()
        self.store_health = StoreHealth(self.store, clock, self._store_alert)
        self._watch_stop = threading.Event()
        self._watch: threading.Thread | None = None
        self.auth = AdminAuth(admin_token, AuthFailureLog(clock, self.store.record_audit,
                                                         lambda source: self.metrics.auth_failures.labels(source).inc()))
        self._process_memory = process_memory or ProcessMemory()
        self.live = LiveStats()
        self.request_log = RequestLogWriter(self.store, settings.request_log_rows, settings.request_log_days, clock)
        self.versions_manager = VersionManager(settings, self.registry, self.store, clock,
                                               download=hub_download if settings.allow_downloads else None,
                                               engines=make_engines(settings, clock, loader, host_memory))
        self.catalog = VersionCatalog(self.registry)
        self.decoder = MediaDecoder(settings.limits, settings.engine.media_cache_entries)
        fetcher = (UrlFetcher(settings.limits.max_media_bytes, settings.media_url_timeout_s)
                   if settings.allow_media_urls else None)
        self.inputs = InputBuilder(settings.limits, MediaResolver(settings.media_dirs, settings.limits, fetcher),
                                   self.decoder)
        self.shadow_stats = ShadowStats()
        self.score_history = ScoreHistory()
        self.admission = Admission(settings.replace_wait_s)
        self.work = WorkPool(settings.server.rank_workers, settings.server.max_queue, clock)
        self.probes = PairedReplays(self.registry, self.live, clock)
        self.ranking = Ranking(self.registry, self.inputs, self.admission, self.probes, self.metrics, self.live,
                               self.score_history, self.shadow_stats, self.request_log, clock, rng or random.Random())
        self.policy_epoch = PolicyEpoch()  # when the traffic policy in force took effect
        self.updates = UpdateManager(self.store, self.metrics, clock, self._make_controller,
                                     settings.webhook_url, settings.rollout_time_scale)
        self.metrics.watch_request_log(lambda: self.request_log.lost_counts())
        self.replacer = InPlaceReplacer(self.registry, self.store, self.versions_manager, self.catalog, self.updates,
                                        self.admission)
        self.operations = VersionOperations(settings.models_dir, self.registry, self.store, self.versions_manager,
                                            self.catalog, self.updates, self.replacer.start, self.is_ready)
        self.reports = ExperimentReports(self.store, self.request_log, self.registry, self.catalog, clock,
                                         settings.golden_set, self._golden_decoders(), self.score_history,
                                         self.shadow_stats, lambda: self.policy_epoch.since, self.gate_config)

    def _make_controller(self, stable_id: str, sink: StoreSink) -> RolloutController:
        return RolloutController(
            stable_id=stable_id,
            loader=VersionLoader(self.versions_manager),
            validator=GoldenSetValidator(self.registry, default_golden(self.settings.golden_set, self._golden_decoders()),
                                         self.gate_config),
            traffic=RegistryTraffic(lambda policy, primary: self._swap(policy, primary, stepwise=True)),
            stats=self.live,
            memory=self._process_memory,
            unloader=DrainingUnloader(self.registry, self.versions_manager),
            sink=sink,
            clock=self.clock,
            gate_config=self.gate_config,
            sampler=self.probes,
        )

    def _golden_decoders(self) -> Decoders:
        return Decoders(image=lambda data: self.decoder.image(data, "golden set image"),
                        video=lambda data: self.decoder.video(data, "golden set video"))

    # ---- start-up ------------------------------------------------------------------------
    CONFIGURED_KEY = "configured_model"

    def boot_ref(self) -> str:
        """The version to serve at start: the last stable one, unless --model changed since."""
        configured = self.settings.model
        stable = self.store.get_stable()
        if stable is not None and self.store.get_setting(self.CONFIGURED_KEY) == configured:
            return stable.path
        return configured

    def start(self, wait: bool = False) -> None:
        """Load the boot version in the background; the API answers /readyz 503 until it serves."""
        ref = self.boot_ref()
        log.info("loading %s", ref)
        if self._watch is None:
            self._watch = threading.Thread(target=self._watch_store, name="store-watch", daemon=True)
            self._watch.start()
        job = self.versions_manager.start_load(ref, on_done=self._on_boot_loaded)
        if wait:
            job.done.wait()
            if job.error:
                raise ModelLoadError(f"could not load {ref}: {job.error}")

    def _on_boot_loaded(self, job: LoadJob) -> None:
        try:
            if job.error:
                self.store.record_event("error", "boot_failed", f"loading {job.path} failed: {job.error}")
                return
            self._swap(TrafficPolicy.single(job.version), job.version)
            with self.store.transaction():
                self.store.set_stable(job.version, str(job.path))
                self.store.set_setting(self.CONFIGURED_KEY, self.settings.model)
                self.store.record_event("info", "serving", f"serving {job.version} from {job.path}")
        except StoreUnavailable as exc:  # serve anyway; readiness reports the data directory
            log.error("%s", exc)
        self.updates.attach(job.version)

    def _watch_store(self, interval_s: float = 1.0) -> None:
        """Probe the store now and then, so a lost or full data directory is noticed (and alerted)
        even when nobody asks /readyz."""
        while not self._watch_stop.wait(interval_s):
            try:
                self.metrics.store_writable.set(0 if self.store_health.problem() else 1)
            except Exception:  # noqa: BLE001 - the watcher must outlive anything the probe throws
                log.exception("store health check failed")

    def _store_alert(self, kind: str, message: str) -> None:
        self.updates.alert(kind, message)

    # ---- reading state -------------------------------------------------------------------
    def admin_token(self) -> str:
        return self.auth.token

    def check_admin(self, token: str | None) -> bool:
        return self.auth.check(token)

    def check_console_token(self, token: str | None) -> bool:
        return self.auth.check_console(token)

    def auth_failed(self, source: str, client: str | None, target: str, reason: str) -> None:
        self.auth.failed(source, client, target, reason)

    def is_ready(self) -> bool:
        return self.registry.snapshot_or_none() is not None

    def readiness(self) -> str | None:
        """None when the service can take requests and record them; otherwise why not. Cheap: the
        store's write probe runs in the store-watch thread."""
        problem = self.store_health.problem(probe=False)  # no SQLite I/O: /readyz runs on the event loop
        self.metrics.store_writable.set(0 if problem else 1)
        if problem is not None:
            return problem
        return None if self.is_ready() else "no model version is serving yet"

    def stable_version(self) -> str | None:
        return self.catalog.stable_version()

    def metrics_text(self, accept: str = "") -> bytes:
        """/metrics in the format `accept` negotiates (ServiceMetrics.content_type names it)."""
        pool = self.work.stats()
        self.metrics.work_running.set(pool.running)
        self.metrics.work_queued.set(pool.queued)
        snap = self.registry.snapshot_or_none()
        for view in self.registry.list():
            if view.state in (VersionState.RETIRED, VersionState.FAILED):  # unloaded: not exported
                self.metrics.forget_version(view.id)
                continue
            share = snap.policy.weight_of(view.id) / 100.0 if snap else 0.0
            self.metrics.share.labels(view.id).set(share)
            if view.info is not None:
                self.metrics.model_bytes.labels(view.id).set(view.info.bytes_in_memory)
        return self.metrics.render(accept)

    def versions(self) -> list[VersionView]:
        return self.catalog.versions()

    def follows_instruction(self, version: str) -> bool:
        """False when the version's backend ignores a request's instruction (the mini model does)."""
        view = self.catalog.get(version)
        return view is None or view.follows_instruction

    def usable_versions(self) -> list[str]:
        return self.catalog.usable_versions()

    def status(self) -> StatusView:
        return self.operations.status()

    def known_model_dirs(self) -> list[str]:
        return self.operations.known_model_dirs()

    # ---- operator actions (VersionOperations) ---------------------------------------------
    def submit_update(self, path: str, plan: str | Sequence[Any] | None = None, mode: str | None = None,
                      actor: str = "operator", force_replace: bool = False) -> int:
        return self.operations.submit_update(path, plan, mode, actor, force_replace)

    def check_room(self, ref: str) -> None:
        self.operations.check_room(ref)

    def rollout_command(self, command: str, actor: str = "operator") -> None:
        self.operations.rollout_command(command, actor)

    def load_version(self, path: str, actor: str = "operator") -> str:
        return self.operations.load_version(path, actor)

    def unload_version(self, version: str, actor: str = "operator") -> None:
        self.operations.unload_version(version, actor)

    def start_rollout_of(self, version: str, actor: str = "operator", plan: str | None = "default") -> int:
        return self.operations.start_rollout_of(version, actor, plan)

    # ---- experiments (ExperimentReports) ---------------------------------------------------
    def quality(self, version: str) -> float:
        return self.reports.quality(version)

    def experiment_report(self, window_s: float = 600.0, candidate: str | None = None) -> ExperimentReport:
        return self.reports.report(window_s, candidate)

    # ---- ranking -------------------------------------------------------------------------
    def rank(self, request: RankRequest, pinned_version: str | None = None,
             cancel: CancelToken | None = None) -> RankResult:
        """Rank one request (reranker.service.ranking.Ranking.rank)."""
        return self.ranking.rank(request, pinned_version, cancel)

    def compare(self, request: RankRequest, versions: tuple[str, str],
                cancel: CancelToken | None = None) -> CompareResult:
        return self.ranking.compare(request, versions, cancel)

    # ---- traffic -------------------------------------------------------------------------
    def traffic(self) -> TrafficView:
        snap = self.registry.snapshot_or_none()
        if snap is None:
            raise NotReady("no model version is serving yet")
        return TrafficView.model_validate({"primary": snap.primary, "generation": snap.generation,
                                           **snap.policy.to_dict()})

    def set_traffic(self, raw: Mapping[str, Any], actor: str) -> TrafficView:
        """Validate, record (policy and audit in one transaction), then apply; a policy that
        cannot be recorded is not applied (StoreUnavailable, HTTP 503)."""
        try:
            # "primary" and "generation" are what traffic() adds: a GET body can be PUT back
            policy = validate({k: v for k, v in raw.items() if k not in ("primary", "generation")},
                              self.registry.usable_versions(), self.settings.max_policy_rules)
            primary = str(raw.get("primary") or self._primary_for(policy))
            self.registry.check_policy(policy, primary)
        except RerankerError as exc:
            audit_refusal(self.store, actor, "set_traffic", "policy", exc)
            raise
        previous = self.store.load_policy()
        with self.store.transaction():
            self.store.save_policy(policy)
            self.store.record_audit(actor, "set_traffic", "policy", "ok", str(policy.to_dict()))
        try:
            self._swap(policy, primary)
        except RerankerError as exc:  # a version left between the check and the swap
            audit_refusal(self.store, actor, "set_traffic", "policy", exc)
            try:
                if previous is not None:
                    self.store.save_policy(previous)
            except StoreUnavailable as lost:
                log.error("could not restore the recorded traffic policy: %s", lost)
            raise
        return self.traffic()

    def _primary_for(self, policy: TrafficPolicy) -> str:
        current = self.stable_version()
        if current is not None and current in policy.routed_versions():
            return current
        return max(policy.routed_versions(), key=policy.weight_of)

    def _swap(self, policy: TrafficPolicy, primary: str, stepwise: bool = False) -> None:
        t0 = self.clock.monotonic()
        self.registry.swap(policy, primary)
        self.policy_epoch.changed(self.clock.now(), stepwise)
        self.metrics.swap_blocked.observe(self.clock.monotonic() - t0)

    def audit(self, limit: int = 100) -> list[AuditEntryView]:
        return [AuditEntryView.model_validate(vars(e)) for e in self.store.recent_audit(limit)]

    def close(self) -> None:
        self._watch_stop.set()
        self.work.close()
        self.updates.close()
        self.probes.close()
        self.ranking.close()
        self.request_log.close()
        self.versions_manager.close_all()
        self.store.close()


def hub_download(hub_id: str, revision: str) -> str:
    """Fetch one pinned revision of a model from the Hugging Face hub (only with --allow-downloads)."""
    from huggingface_hub import snapshot_download

    return snapshot_download(hub_id, revision=revision)

