"""RolloutController: drives one rollout at a time through the state machine with an idempotent tick.

One lock guards the controller's fields; collaborators only get quick calls (start a background
job, poll it, swap the routing snapshot). Events are handed to the sink after the lock is released.
"""
from __future__ import annotations

import functools
import logging
import threading
from collections import deque
from typing import Any, Callable

from reranker.clock import Clock
from reranker.control.gates import GateConfig, live_gates
from reranker.control.plans import REPLACE_PLAN, Mode, Plan, share_at
from reranker.control.ports import (
    CandidateLoader,
    Event,
    EventLevel,
    EventSink,
    EvidenceSampler,
    GoldenValidator,
    InterruptedRollout,
    LiveStatsSource,
    LoadPhase,
    MemoryProbe,
    TrafficSetter,
    Unloader,
)
from reranker.control.rollout import RolloutState, Trigger, can, next_state
from reranker.control.runstate import ControllerSnapshot, RunState, build_snapshot
from reranker.errors import Conflict

logger = logging.getLogger(__name__)
S, T = RolloutState, Trigger


def _publishing(method: Callable[..., ControllerSnapshot]) -> Callable[..., ControllerSnapshot]:
    """Run a state-changing method and hand its events to the sink as one step."""

    @functools.wraps(method)
    def publishing(self: "RolloutController", *args: Any, **kwargs: Any) -> ControllerSnapshot:
        with self._emit_lock:
            return method(self, *args, **kwargs)

    return publishing


class RolloutController:
    def __init__(
        self,
        *,
        stable_id: str | None,
        loader: CandidateLoader,
        validator: GoldenValidator,
        traffic: TrafficSetter,
        stats: LiveStatsSource,
        memory: MemoryProbe,
        unloader: Unloader,
        sink: EventSink,
        clock: Clock,
        gate_config: GateConfig = GateConfig(),
        max_events: int = 200,
        sampler: EvidenceSampler | None = None,
    ) -> None:
        self._sampler = sampler
        self._loader, self._validator, self._traffic = loader, validator, traffic
        self._stats, self._memory, self._unloader, self._sink = stats, memory, unloader, sink
        self._clock = clock
        self._cfg = gate_config
        self._lock = threading.Lock()
        self._state = S.IDLE
        self._stable_id = stable_id
        self._run: RunState | None = None
        self._last_outcome: str | None = None
        self._reason = ""
        self._last_error = ""
        self._events: deque[Event] = deque(maxlen=max_events)
        self._outbox: list[Event] = []
        # Held by every state change until its events reach the sink, and by snapshot():
        # a reader never sees a state whose events are not recorded yet.
        self._emit_lock = threading.RLock()

    # ----- operator commands -------------------------------------------------------------
    def check(self, trigger: Trigger) -> None:
        """Raise the Conflict the command for `trigger` would raise now, changing nothing: the
        service records an operator action before applying it, and refuses first when it can."""
        with self._lock:
            if trigger in (T.START, T.REPLACE):
                self._check_start(trigger)
            else:
                next_state(self._state, trigger)

    def _check_start(self, trigger: Trigger = T.START) -> None:
        if not can(self._state, trigger):
            run = self._run
            raise Conflict(
                f"an update is already {self._state.value} (candidate {run.path if run else '?'}, "
                f"started by {run.actor if run else '?'}); wait for it to finish or roll it back first"
            )
        if self._stable_id is None:
            raise Conflict("no stable version is serving; an update needs one to fall back on")

    @_publishing
    def start(self, path: str, plan: Plan, mode: Mode, actor: str) -> ControllerSnapshot:
        with self._lock:
            now = self._clock.now()
            self._check_start()
            self._loader.start_load(path)
            self._run = RunState(path=path, plan=plan, mode=mode, actor=actor, started_at=now)
            self._reason, self._last_error = "", ""
            self._move(now, T.START, "start", f"{actor} started an update to {path} (plan {plan.name}, {mode.value})", actor=actor)
        return self._after_command()

    @_publishing
    def begin_replace(self, path: str, actor: str) -> ControllerSnapshot:
        """Replace in place (no room for both versions): the caller unloads the stable version,
        loads `path` and reports back through finish_replace(). Conflict while anything is in flight."""
        with self._lock:
            now = self._clock.now()
            if not can(self._state, T.REPLACE):
                run = self._run
                raise Conflict(
                    f"an update is already {self._state.value} (candidate {run.path if run else '?'}, "
                    f"started by {run.actor if run else '?'}); wait for it to finish or roll it back first"
                )
            if self._stable_id is None:
                raise Conflict("no stable version is serving; there is nothing to replace")
            self._run = RunState(path=path, plan=REPLACE_PLAN, mode=Mode.NEW_MODEL, actor=actor, started_at=now,
                                 kind="replace")
            self._reason, self._last_error = "", ""
            self._move(now, T.REPLACE, "replace",
                       f"{actor} started replacing {self._stable_id} in place with {path}; new requests wait", actor=actor)
        return self._after_command()

    @_publishing
    def finish_replace(self, version_id: str | None, loaded_new: bool, reason: str = "") -> ControllerSnapshot:
        """The replace-in-place run ended: `version_id` now serves (the new version when
        loaded_new, else the old one loaded again); None when nothing could be loaded."""
        with self._lock:
            now = self._clock.now()
            run = self._require(T.REPLACED)
            old = self._stable_id
            run.retiring_id = old
            if version_id is not None:
                self._stable_id = version_id
            if version_id is not None and loaded_new:
                run.candidate_id, run.share = version_id, 100.0
                self._last_outcome = "promoted"
                self._move(now, T.REPLACED, "replaced", f"{version_id} now serves (replaced {old} in place)")
            elif version_id is not None:
                self._reason, self._last_outcome = reason or f"loading {run.path} failed", "rolled_back"
                self._move(now, T.REPLACE_FAILED, "replace_failed",
                           f"{self._reason}; {version_id} serves again", EventLevel.ALERT)
            else:
                self._reason, self._last_outcome = reason or "replace in place failed", "failed"
                self._move(now, T.ERROR, "replace_failed", f"replace in place failed: {self._reason}", EventLevel.ALERT)
        return self._after_command()

    @_publishing
    def pause(self, actor: str) -> ControllerSnapshot:
        with self._lock:
            now = self._clock.now()
            run = self._require(T.PAUSE)
            run.freeze_stage(now)
            self._move(now, T.PAUSE, "pause", f"{actor} paused the rollout at {run.share:.1f}%", actor=actor)
        return self._after_command()

    @_publishing
    def resume(self, actor: str) -> ControllerSnapshot:
        with self._lock:
            now = self._clock.now()
            run = self._require(T.RESUME)
            run.running_since = now
            self._move(now, T.RESUME, "resume", f"{actor} resumed the rollout", actor=actor)
        return self._after_command()

    @_publishing
    def promote_now(self, actor: str) -> ControllerSnapshot:
        with self._lock:
            now = self._clock.now()
            self._require(T.PROMOTE_NOW)
            self._promote(now, T.PROMOTE_NOW, f"{actor} promoted the candidate now", actor)
        return self._after_command()

    @_publishing
    def rollback_now(self, actor: str) -> ControllerSnapshot:
        with self._lock:
            now = self._clock.now()
            self._require(T.ROLLBACK_NOW)
            self._rollback(now, T.ROLLBACK_NOW, f"rolled back by {actor}", EventLevel.WARNING, actor)
        return self._after_command()

    @_publishing
    def cancel(self, actor: str) -> ControllerSnapshot:
        with self._lock:
            now = self._clock.now()
            run = self._require(T.CANCEL)
            self._loader.cancel_load()
            self._last_outcome = "cancelled"
            self._move(now, T.CANCEL, "cancelled", f"{actor} cancelled loading {run.path}", actor=actor)
        return self._after_command()

    @_publishing
    def acknowledge(self, actor: str) -> ControllerSnapshot:
        with self._lock:
            now = self._clock.now()
            next_state(self._state, T.ACKNOWLEDGE)
            self._move(now, T.ACKNOWLEDGE, "acknowledge", f"{actor} acknowledged: {self._last_outcome}", actor=actor)
        return self._after_command()

    @_publishing
    def recover(self, interrupted: InterruptedRollout) -> ControllerSnapshot:
        """At start-up: record a rollout the previous process left unfinished (red until acknowledged)."""
        with self._lock:
            now = self._clock.now()
            next_state(self._state, T.FOUND_INTERRUPTED)
            self._last_outcome = "interrupted"
            self._reason = (
                f"the service restarted while updating to {interrupted.candidate_path} "
                f"(state {interrupted.state}); serving {self._stable_id} again"
            )
            self._move(now, T.FOUND_INTERRUPTED, "interrupted", self._reason, EventLevel.ALERT, interrupted.actor,
                       {"candidate_path": interrupted.candidate_path, "started_at": interrupted.started_at})
        return self._after_command()

    # ----- the loop ------------------------------------------------------------------------
    @_publishing
    def tick(self, now: float | None = None) -> ControllerSnapshot:
        """Move the rollout as far as the evidence allows at `now`. Never raises."""
        with self._lock:
            at = self._clock.now() if now is None else now
            try:
                for _ in range(len(self._run.plan.stages) + 4 if self._run else 1):
                    if not self._step(at):
                        break
            except Exception as exc:  # the loop must survive anything a collaborator throws
                self._on_tick_error(at, exc)
        return self._after_command()

    def snapshot(self) -> ControllerSnapshot:
        with self._emit_lock, self._lock:
            return self._snapshot(self._clock.now())

    # ----- steps (under the lock) ------------------------------------------------------------
    def _step(self, now: float) -> bool:
        """One reconciliation step; True when it changed state or stage."""
        run = self._run
        if run is None:
            return False
        if self._state is S.LOADING:
            return self._poll_load(now, run)
        if self._state is S.VALIDATING:
            return self._poll_validation(now, run)
        if self._state is S.ROLLING_OUT:
            return self._check_gates(now, run) or self._advance(now, run)
        if self._state is S.PAUSED:
            return self._check_gates(now, run)
        if self._state is S.PROMOTING:
            return self._drain(now, run, run.retiring_id, "promoted")
        if self._state is S.ROLLING_BACK:
            return self._drain(now, run, run.candidate_id, "rolled_back")
        return False

    def _poll_load(self, now: float, run: RunState) -> bool:
        status = self._loader.poll_load()
        run.load_progress = status.progress
        if status.phase is LoadPhase.LOADING:
            return False
        if status.phase is LoadPhase.FAILED or not status.version_id or status.version_id == self._stable_id:
            why = status.error or f"loader returned version id {status.version_id!r} (must be new and not the stable's)"
            self._reason, self._last_outcome = f"loading {run.path} failed: {why}", "failed"
            self._move(now, T.LOAD_FAILED, "load_failed", self._reason, EventLevel.ALERT)
            return True
        run.candidate_id = status.version_id
        self._validator.start_validation(self._stable_id or "", run.candidate_id, run.mode)
        self._move(now, T.LOAD_OK, "load_ok", f"{run.candidate_id} loaded; checking it on the golden set")
        return True

    def _poll_validation(self, now: float, run: RunState) -> bool:
        run.validation_progress = self._validator.validation_progress()
        results = self._validator.poll_validation()
        if results is None:
            return False
        run.gates = {r.name: r for r in results}
        failed = [r for r in results if r.failed]
        if failed or not results:
            why = "; ".join(f"{r.name}: {r.detail}" for r in failed) or "the validator returned no gate results"
            self._rollback(now, T.VALIDATION_FAILED, f"golden-set gate failed: {why}", EventLevel.ALERT)
            return True
        self._move(now, T.VALIDATION_PASSED, "validation_passed", "golden-set gate passed; sending traffic")
        # Memory growth is watched from the start of traffic: loading and the golden-set run
        # (decoded media, caches) are over by then, so growth from here on is the candidate's.
        run.baseline_rss = self._memory.rss_bytes()
        run.traffic_started_at = now
        self._watch(now, run.candidate_id)
        self._enter_stage(now, run, 0)
        return True

    def _watch(self, now: float, candidate_id: str | None) -> None:
        sampler = self._sampler
        if sampler is not None:
            self._safely(now, lambda: sampler.watch(self._stable_id or "", candidate_id))

    def _advance(self, now: float, run: RunState) -> bool:
        stage = run.plan.stages[run.stage_index]
        elapsed = run.seconds_in_stage(now)
        waiting = self._undecided(run) if elapsed >= stage.seconds else {}
        if elapsed < stage.seconds or run.failed_checks or waiting:
            run.held = run.held or elapsed >= stage.seconds
            self._set_share(run, share_at(run.plan, run.stage_index, elapsed))
            if waiting and tuple(waiting) != run.awaiting:  # once per set of undecided gates
                why = "; ".join(f"{name}: {detail}" for name, detail in waiting.items())
                self._event(now, "awaiting_evidence", f"stage {run.stage_index + 1} holds until its gates decide: {why}")
            run.awaiting = tuple(waiting)
            self._hold_if_starved(now, run, bool(waiting) and elapsed >= stage.seconds + stage.evidence_wait)
            return False
        run.awaiting = ()
        self._hold_if_starved(now, run, False)
        if run.stage_index + 1 == len(run.plan.stages):
            self._promote(now, T.PLAN_COMPLETE, "every stage passed its gates", "controller")
            return True
        self._move(now, T.STAGE_COMPLETE, "stage_complete", f"stage {run.stage_index + 1} complete")
        # The plan keeps its own schedule however late the tick came, unless a failing check held the stage.
        self._enter_stage(now, run, run.stage_index + 1, 0.0 if run.held else elapsed - stage.seconds)
        return True

    def _hold_if_starved(self, now: float, run: RunState, starved: bool) -> None:
        """Past the stage's evidence wait with gates still undecided: hold, say why, alert once."""
        if not starved:
            if run.holding:
                run.holding = ""
                self._event(now, "evidence_arrived", f"stage {run.stage_index + 1}: enough evidence arrived; holding ends")
            return
        counts = [f"{g.have}/{g.need} {g.evidence}" if g.need else f"{g.name} {g.have} {g.evidence}"
                  for g in run.gates.values() if g.pending and g.have is not None]
        message = f"holding: {', '.join(counts) or 'no live check has run'} — not enough traffic"
        if not run.holding:
            self._event(now, "holding", f"stage {run.stage_index + 1} {message}", EventLevel.ALERT)
        run.holding = message

    def _undecided(self, run: RunState) -> dict[str, str]:
        """The live gates that still lack evidence, by name ({} when the stage may end).

        The last stage (100%) is exempt: the stable version gets no traffic there to compare with.
        """
        stage = run.plan.stages[run.stage_index]
        if not self._cfg.require_evidence or stage.share >= 100:
            return {}
        if not run.gates_checked:
            return {"live checks": "none has run yet"}
        return {g.name: g.detail for g in run.gates.values() if g.pending}

    def _enter_stage(self, now: float, run: RunState, index: int, carried: float = 0.0) -> None:
        run.stage_index, run.stage_started_at, run.held = index, now - carried, False
        run.elapsed_before, run.running_since = carried, now
        stage = run.plan.stages[index]
        self._set_share(run, share_at(run.plan, index, carried))
        how = f"ramp to {stage.share:g}% over {stage.seconds:g} s" if stage.ramp else f"{stage.share:g}% for {stage.seconds:g} s"
        self._event(now, "stage", f"stage {index + 1}/{len(run.plan.stages)}: {how}")

    def _set_share(self, run: RunState, share: float) -> None:
        if share != run.share:
            self._traffic.set_candidate_share(self._stable_id or "", run.candidate_id, share)
            run.share = share

    def _check_gates(self, now: float, run: RunState) -> bool:
        if now - run.last_check_at < self._cfg.check_interval_s:
            return False
        run.last_check_at = now
        names = run.plan.stages[run.stage_index].gates
        since = max(run.traffic_started_at, now - self._cfg.window_seconds)
        results = live_gates(
            names,
            self._stats.window(run.candidate_id or "", since),
            self._stats.pairs(self._stable_id or "", run.candidate_id or "", since),
            run.baseline_rss,
            self._memory.rss_bytes() if "memory" in names else 0,
            self._cfg,
            self._stats.window(self._stable_id or "", since),
        )
        run.gates.update((r.name, r) for r in results)
        run.gates_checked = True
        failed = [r for r in results if r.failed]
        run.failed_checks = run.failed_checks + 1 if failed else 0
        if not failed:
            return False
        why = "; ".join(f"{r.name}: {r.detail}" for r in failed)
        if run.failed_checks < self._cfg.failed_checks_to_rollback:
            self._event(now, "gate_check_failed",
                        f"check {run.failed_checks}/{self._cfg.failed_checks_to_rollback} failed: {why}", EventLevel.WARNING)
            return False
        self._rollback(now, T.GATE_FAILED, f"live gate failed: {why}", EventLevel.ALERT)
        return True

    def _promote(self, now: float, trigger: Trigger, why: str, actor: str) -> None:
        run = self._run
        assert run is not None and run.candidate_id is not None
        self._traffic.set_candidate_share(run.candidate_id, None, 0.0)
        self._watch(now, None)
        run.freeze_stage(now)
        run.holding = ""
        run.retiring_id, self._stable_id = self._stable_id, run.candidate_id
        run.share, run.unload_requested = 100.0, False
        self._move(now, trigger, "promote", f"{why}: {run.candidate_id} is now stable; unloading {run.retiring_id}", actor=actor)
        self._drain_request(now, run, run.retiring_id or "")

    def _rollback(self, now: float, trigger: Trigger, why: str, level: EventLevel, actor: str = "controller") -> None:
        """Traffic to the stable first, then the state change, then drain and unload the candidate."""
        run = self._run
        assert run is not None
        run.traffic_reverted = self._revert_traffic(now, run)
        self._watch(now, None)
        run.freeze_stage(now)
        run.holding = ""
        if self._state is S.VALIDATING:
            self._safely(now, self._validator.cancel_validation)
        self._reason = why
        run.unload_requested = False
        self._move(now, trigger, "rollback", f"rolling back {run.candidate_id}: {why}", level, actor)
        if run.traffic_reverted:
            self._drain_request(now, run, run.candidate_id or "")

    def _revert_traffic(self, now: float, run: RunState) -> bool:
        ok = self._safely(now, lambda: self._traffic.set_candidate_share(self._stable_id or "", None, 0.0))
        if ok:
            run.share = 0.0
        return ok

    def _drain_request(self, now: float, run: RunState, version: str) -> None:
        run.unload_requested = self._safely(now, lambda: self._unloader.start_unload(version))

    def _drain(self, now: float, run: RunState, version: str | None, outcome: str) -> bool:
        assert version is not None
        if self._state is S.ROLLING_BACK and not run.traffic_reverted:
            run.traffic_reverted = self._revert_traffic(now, run)
            if not run.traffic_reverted:
                return False
        if not run.unload_requested:
            self._drain_request(now, run, version)
        if not (run.unload_requested and self._unloader.is_unloaded(version)):
            return False
        self._last_outcome = outcome
        self._move(now, T.DRAINED, outcome, f"{version} drained and unloaded; {self._stable_id} serves everything")
        return True

    def _on_tick_error(self, now: float, exc: Exception) -> None:
        logger.exception("rollout tick failed in state %s", self._state.value)
        why = f"tick failed while {self._state.value}: {type(exc).__name__}: {exc}"
        if not can(self._state, T.ERROR) or self._state is S.REPLACING:  # the replace thread reports its own end
            self._error_event(now, why)
            return
        if self._state is S.LOADING:
            self._safely(now, self._loader.cancel_load)
            self._reason, self._last_outcome = why, "failed"
            self._move(now, T.ERROR, "error", why, EventLevel.ALERT)
            return
        self._rollback(now, T.ERROR, why, EventLevel.ALERT)

    def _safely(self, now: float, action: Any) -> bool:
        """Run a collaborator call that must not stop a rollback; log and report failure."""
        try:
            action()
            return True
        except Exception as exc:
            logger.exception("rollout collaborator call failed")
            self._error_event(now, f"{type(exc).__name__}: {exc} (will retry)")
            return False

    def _error_event(self, now: float, why: str) -> None:
        """An alert for an error, once per distinct message in a row (a retried step may fail every tick)."""
        if why != self._last_error:
            self._event(now, "error", why, EventLevel.ALERT)
        self._last_error = why

    # ----- bookkeeping ---------------------------------------------------------------------
    def _require(self, trigger: Trigger) -> RunState:
        next_state(self._state, trigger)
        assert self._run is not None
        return self._run

    def _move(self, now: float, trigger: Trigger, kind: str, message: str,
              level: EventLevel = EventLevel.INFO, actor: str = "controller", data: dict[str, Any] | None = None) -> None:
        self._state = next_state(self._state, trigger)
        self._event(now, kind, message, level, actor, data)

    def _event(self, now: float, kind: str, message: str, level: EventLevel = EventLevel.INFO,
               actor: str = "controller", data: dict[str, Any] | None = None) -> None:
        event = Event(at=now, kind=kind, message=message, level=level, actor=actor, state=self._state.value, data=data or {})
        self._events.append(event)
        self._outbox.append(event)

    def _after_command(self) -> ControllerSnapshot:
        with self._emit_lock:
            with self._lock:
                outbox, self._outbox = self._outbox, []
                snap = self._snapshot(self._clock.now())
            for event in outbox:
                try:
                    self._sink.emit(event)
                except Exception:
                    logger.exception("event sink failed for %s", event.kind)
        return snap

    def _snapshot(self, now: float) -> ControllerSnapshot:
        return build_snapshot(now, self._state, self._stable_id, self._run, tuple(self._events), self._last_outcome, self._reason)
