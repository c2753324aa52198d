"""Hot updates: the rollout controller, its tick loop, and what it records in the store."""
from __future__ import annotations

import json
import logging
import threading
import urllib.request
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

from reranker.clock import Clock
from reranker.control.controller import RolloutController
from reranker.control.plans import Mode, parse_mode, resolve_plan
from reranker.control.ports import Event, EventLevel, InterruptedRollout
from reranker.control.rollout import TERMINAL, RolloutState, Trigger
from reranker.control.runstate import ControllerSnapshot
from reranker.control.store import Store
from reranker.errors import Conflict, InputError, NotReady, RerankerError, StoreUnavailable
from reranker.service.metrics import ServiceMetrics
from reranker.service.status_view import status_view
from reranker.service.views import StatusView
from reranker.settings import webhook_url as checked_webhook

log = logging.getLogger(__name__)
COMMANDS = ("pause", "resume", "promote", "rollback", "acknowledge", "cancel")


class StoreSink:
    """EventSink: every event goes to the store; alerts also go to the webhook (in a thread)."""

    def __init__(self, store: Store, webhook_url: str | None, rollout_id: Callable[[], int | None]) -> None:
        self._store = store
        self._webhook_url = checked_webhook(webhook_url)
        self._rollout_id = rollout_id
        self._held: list[Event] | None = None
        self._held_lock = threading.Lock()

    @contextmanager
    def held(self) -> Iterator[None]:
        """Keep events back until the block ends (a new rollout's id is known only after its start)."""
        with self._held_lock:
            self._held = []
        try:
            yield
        finally:
            with self._held_lock:
                events, self._held = self._held or [], None
            for event in events:
                self._write(event)

    def emit(self, event: Event) -> None:
        with self._held_lock:
            if self._held is not None:
                self._held.append(event)
                return
        self._write(event)

    def _write(self, event: Event) -> None:
        try:
            self._store.record_event(event.level.value, event.kind, event.message, self._rollout_id())
        except StoreUnavailable as exc:  # the alert below must still go out
            log.error("event %s not recorded: %s", event.kind, exc)
        if event.level is EventLevel.ALERT:
            log.warning("ALERT %s: %s", event.kind, event.message)
            if self._webhook_url:
                threading.Thread(target=_post_json, args=(self._webhook_url, event.to_dict()), daemon=True).start()

    def alert(self, kind: str, message: str, at: float) -> None:
        """An alert from outside a rollout (e.g. the data directory): recorded when possible, logged,
        and sent to the webhook."""
        self.emit(Event(at=at, kind=kind, message=message, level=EventLevel.ALERT, actor="service"))


def _post_json(url: str, body: dict[str, Any]) -> None:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        urllib.request.urlopen(request, timeout=5).close()
    except OSError as exc:
        log.warning("alert webhook %s failed: %s", url, exc)


class UpdateManager:
    """Owns the controller once a stable version serves; drives tick(); persists what happens."""

    def __init__(self, store: Store, metrics: ServiceMetrics, clock: Clock,
                 make_controller: Callable[[str, StoreSink], RolloutController],
                 webhook_url: str | None, time_scale: float = 1.0, tick_s: float = 0.25) -> None:
        self._store = store
        self._metrics = metrics
        self._clock = clock
        self._make_controller = make_controller
        self._sink = StoreSink(store, webhook_url, lambda: self._rollout_id)
        self._time_scale = time_scale
        self._tick_s = tick_s
        self._controller: RolloutController | None = None
        self._rollout_id: int | None = None
        self._seen_state: RolloutState | None = None
        self._seen_gates: set[tuple] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- lifecycle -----------------------------------------------------------------------
    def attach(self, stable_id: str) -> None:
        """Create the controller for the serving version; record rollouts a crash interrupted."""
        controller = self._make_controller(stable_id, self._sink)
        interrupted = self._store.open_rollouts()
        for record in interrupted:
            self._store.finish_rollout(record.id, "interrupted", "interrupted",
                                       f"the service stopped while the rollout was {record.state}")
        if interrupted:
            last = interrupted[-1]
            self._rollout_id = last.id
            controller.recover(InterruptedRollout(last.candidate_path, last.state, last.started_at,
                                                  last.actor, last.candidate))
        self._controller = controller
        self._seen_state = controller.snapshot().state
        self._thread = threading.Thread(target=self._loop, name="rollout-tick", daemon=True)
        self._thread.start()

    def is_idle(self) -> bool:
        snap = self.snapshot()
        return snap is None or snap.state is RolloutState.IDLE or snap.state in TERMINAL

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        """Tick until closed. Nothing a tick raises (a store error while recording, say) ends
        the loop: it is logged, alerted once per distinct message, and the next tick retries."""
        last_error = ""
        while not self._stop.wait(self._tick_s):
            try:
                self.tick()
                last_error = ""
            except Exception as exc:
                why = f"{type(exc).__name__}: {exc}"
                if why != last_error:
                    log.exception("rollout tick failed; retrying every %.2f s", self._tick_s)
                last_error = why

    def alert(self, kind: str, message: str) -> None:
        self._sink.alert(kind, message, self._clock.now())

    def tick(self) -> ControllerSnapshot:
        controller = self._require()
        snap = controller.tick(self._clock.now())
        self._observe(snap)
        return snap

    # ---- commands --------------------------------------------------------------------------
    def submit(self, path: str, plan: str | Sequence[Any] | None, mode: str | None, actor: str) -> int:
        """Check, record (rollout row and audit in one transaction), then start the load. A
        rollout that cannot be recorded does not start (StoreUnavailable, HTTP 503)."""
        controller = self._require()
        with self._lock:
            try:
                parsed_plan = resolve_plan(plan if plan is not None else "default", self._time_scale)
                parsed_mode = parse_mode(mode) if mode else Mode.NEW_MODEL
                controller.check(Trigger.START)
            except RerankerError as exc:
                self._audit_refusal(actor, "hot_update", path, exc)
                raise
            stable = controller.snapshot().stable_id or ""
            with self._store.transaction():
                rollout_id = self._store.start_rollout(
                    path, stable, {"name": parsed_plan.name, "stages": parsed_plan.to_list()},
                    parsed_mode.value, RolloutState.LOADING.value, actor)
                self._store.record_audit(actor, "hot_update", path, "started",
                                         f"rollout {rollout_id}, plan {parsed_plan.name}, mode {parsed_mode.value}")
            previous, self._rollout_id, self._seen_gates = self._rollout_id, rollout_id, set()
            try:
                snap = controller.start(path, parsed_plan, parsed_mode, actor)
            except RerankerError as exc:  # lost a race after the check: the record says so
                self._rollout_id = previous
                self._audit_refusal(actor, "hot_update", path, exc)
                why = str(exc)
                self._best_effort(lambda: self._store.finish_rollout(rollout_id, "failed", "refused", why))
                raise
        self._metrics.rollout_state.set(1)
        self._observe_quietly(snap)
        return rollout_id

    def submit_replace(self, path: str, actor: str) -> int:
        """Check, record, then enter a replace-in-place run; Conflict (409) while any update is in
        flight, StoreUnavailable (503, nothing started) when it cannot be recorded."""
        controller = self._require()
        with self._lock:
            try:
                controller.check(Trigger.REPLACE)
            except RerankerError as exc:
                self._audit_refusal(actor, "hot_update", path, exc)
                raise
            stable = controller.snapshot().stable_id or ""
            with self._store.transaction():
                rollout_id = self._store.start_rollout(
                    path, stable, {"name": "replace-in-place", "stages": []}, "replace-in-place",
                    RolloutState.REPLACING.value, actor)
                self._store.record_audit(actor, "hot_update", path, "started", f"replace in place, rollout {rollout_id}")
            previous, self._rollout_id, self._seen_gates = self._rollout_id, rollout_id, set()
            try:
                snap = controller.begin_replace(path, actor)
            except RerankerError as exc:  # lost a race after the check: the record says so
                self._rollout_id = previous
                self._audit_refusal(actor, "hot_update", path, exc)
                why = str(exc)
                self._best_effort(lambda: self._store.finish_rollout(rollout_id, "failed", "refused", why))
                raise
        self._metrics.rollout_state.set(1)
        self._observe_quietly(snap)
        return rollout_id

    def finish_replace(self, version_id: str | None, loaded_new: bool, reason: str = "") -> None:
        snap = self._require().finish_replace(version_id, loaded_new, reason)
        self._observe_quietly(snap)

    def command(self, name: str, actor: str) -> None:
        """Check, record the command in the audit log, then apply it; a command that cannot be
        recorded is not applied (StoreUnavailable, HTTP 503)."""
        controller = self._require()
        actions = {
            "pause": (controller.pause, Trigger.PAUSE), "resume": (controller.resume, Trigger.RESUME),
            "promote": (controller.promote_now, Trigger.PROMOTE_NOW),
            "rollback": (controller.rollback_now, Trigger.ROLLBACK_NOW),
            "acknowledge": (controller.acknowledge, Trigger.ACKNOWLEDGE), "cancel": (controller.cancel, Trigger.CANCEL),
        }
        if name not in actions:
            raise InputError(f"rollout command must be one of {', '.join(COMMANDS)}, got {name!r}")
        action, trigger = actions[name]
        target = self._target()
        try:
            controller.check(trigger)
        except Conflict as exc:
            self._audit_refusal(actor, name, target, exc)
            raise
        self._store.record_audit(actor, name, target, "ok", f"requested while {controller.snapshot().state.value}")
        try:
            snap = action(actor)
        except Conflict as exc:  # the state moved between the check and the command
            self._audit_refusal(actor, name, target, exc)
            raise
        self._observe_quietly(snap)

    def _audit_refusal(self, actor: str, action: str, target: str, exc: Exception) -> None:
        self._best_effort(lambda: self._store.record_audit(actor, action, target, "refused", str(exc)))

    @staticmethod
    def _best_effort(write: Callable[[], Any]) -> None:
        """A write that records what did not happen: it must not hide the reason from the caller."""
        try:
            write()
        except StoreUnavailable as exc:
            log.warning("not recorded: %s", exc)

    def _target(self) -> str:
        snap = self._require().snapshot()
        return snap.candidate_id or snap.candidate_path or "rollout"

    # ---- reading -------------------------------------------------------------------------
    def snapshot(self) -> ControllerSnapshot | None:
        return self._controller.snapshot() if self._controller else None

    def status(self, model_ready: bool) -> StatusView:
        snap = self.snapshot()
        if snap is None:
            return StatusView(light="red" if not model_ready else "yellow", state="starting",
                              banner="Loading the first model version…")
        return status_view(snap, model_ready, self._rollout_id)

    def _require(self) -> RolloutController:
        if self._controller is None:
            raise NotReady("no stable model version is serving yet; hot updates start once one does")
        return self._controller

    # ---- persistence ---------------------------------------------------------------------
    def _observe_quietly(self, snap: ControllerSnapshot) -> None:
        """_observe after a change was applied: a failed write is retried by the next tick and
        shows in readiness; it must not turn the answer into an error."""
        try:
            self._observe(snap)
        except StoreUnavailable as exc:
            log.error("rollout state not recorded yet: %s", exc)

    def _observe(self, snap: ControllerSnapshot) -> None:
        """Record state changes, new gate results and the outcome of the current rollout.

        A fact counts as recorded only once its write succeeded: after a store error the next
        call (the next tick) writes it again."""
        with self._lock:
            rollout_id = self._rollout_id
            if rollout_id is None:
                return
            for gate in snap.gates:
                key = (gate.name, gate.observed, gate.passed, gate.pending)
                if key not in self._seen_gates and not gate.pending:
                    self._store.record_gate(rollout_id, gate.name, gate.observed, gate.threshold, gate.passed, gate.detail)
                    self._seen_gates.add(key)
            if snap.state is self._seen_state:
                return
            if snap.state in TERMINAL and snap.state is not RolloutState.INTERRUPTED:
                outcome = snap.last_outcome or snap.state.value
                self._store.finish_rollout(rollout_id, snap.state.value, outcome, snap.reason or None)
                if snap.state is RolloutState.PROMOTED and snap.candidate_path:
                    self._store.set_stable(snap.stable_id or "", snap.candidate_path)
                self._metrics.rollouts.labels(outcome).inc()
                self._metrics.rollout_state.set(0)
            elif snap.state is not RolloutState.IDLE:
                self._store.update_rollout_state(rollout_id, snap.state.value, snap.candidate_id)
            self._seen_state = snap.state
