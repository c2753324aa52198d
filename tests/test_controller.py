"""RolloutController with a fake clock and fake collaborators (pure control logic, no models)."""
from __future__ import annotations

import threading

import pytest

from reranker.control.plans import DEFAULT_PLAN, DEMO_PLAN, Mode, parse_plan
from reranker.control.ports import EventLevel, InterruptedRollout, LoadPhase, LoadStatus
from reranker.control.status import Light, derive_status
from reranker.errors import Conflict, InputError
from reranker.control.controller import RolloutController
from reranker.control.ports import Event
from tests.controller_rig import CAND, FAIL, STABLE, Rig, S


@pytest.fixture
def rig() -> Rig:
    return Rig()


def test_happy_path_through_the_default_plan(rig: Rig) -> None:
    rig.to_traffic()
    assert rig.validator.started == [(STABLE, CAND, Mode.SAME_MODEL)]
    assert rig.traffic_calls() == [(STABLE, CAND, 5.0)]
    assert rig.at(10) == 5.0
    assert rig.at(29.9) == 5.0
    assert rig.at(30) == 5.0  # the ramp starts at the previous stage's share
    assert rig.at(70) == pytest.approx(25.0)
    rig.feed_pairs(30, 0.10, 0.10)
    assert rig.at(75) == pytest.approx(27.5)
    snap = rig.ctl.snapshot()
    assert (snap.stage_index, snap.seconds_in_stage) == (1, pytest.approx(45.0))
    assert {g.name: g.verdict for g in snap.gates} == {
        "golden_same_model": "pass", "latency": "pass", "error_rate": "pass", "memory_growth": "pass",
    }
    assert rig.at(119) == pytest.approx(49.5)
    final = rig.ctl.tick(rig.t0 + 120)
    assert final.state is S.PROMOTED and final.last_outcome == "promoted"
    assert (final.stable_id, final.retiring_id, final.share) == (CAND, STABLE, 100.0)
    calls = rig.traffic_calls()
    assert calls[-2:] == [(STABLE, CAND, 100.0), (CAND, None, 0.0)]
    assert [c[2] for c in calls[:-1]] == sorted(c[2] for c in calls[:-1])  # share only grows
    assert [e for e in rig.log if e[0] == "unload"] == [("unload", STABLE)]
    assert derive_status(final, model_ready=True).light is Light.GREEN
    assert rig.kinds()[:3] == ["start", "load_ok", "validation_passed"] and rig.kinds()[-1] == "promoted"


def test_a_late_tick_keeps_the_plans_schedule(rig: Rig) -> None:
    rig.to_traffic()
    snap = rig.ctl.tick(rig.t0 + 40)  # no tick at 30 s: the ramp still began at 30 s
    assert (snap.stage_index, snap.share, snap.stage_started_at) == (1, pytest.approx(10.0), rig.t0 + 30)


def test_pause_freezes_the_clock_in_stage(rig: Rig) -> None:
    rig.to_traffic()
    assert rig.at(40) == pytest.approx(10.0)
    paused = rig.ctl.pause("bob")
    assert paused.state is S.PAUSED
    assert rig.at(400) == pytest.approx(10.0)
    assert rig.ctl.snapshot().seconds_in_stage == pytest.approx(10.0)
    with pytest.raises(Conflict, match="cannot pause while paused"):
        rig.ctl.pause("bob")
    rig.ctl.resume("bob")
    assert rig.at(445) == pytest.approx(32.5)  # 55 s into the ramp
    assert ("pause", "bob") in [(e.kind, e.actor) for e in rig.sink.events]


def test_promote_now(rig: Rig) -> None:
    rig.to_traffic()
    rig.at(5)
    snap = rig.ctl.promote_now("carol")
    assert snap.state is S.PROMOTING and snap.stable_id == CAND
    assert rig.traffic_calls()[-1] == (CAND, None, 0.0)
    assert rig.ctl.tick().state is S.PROMOTED
    assert rig.log[-1] == ("unload", STABLE)


def test_promotion_waits_for_the_old_stable_to_drain(rig: Rig) -> None:
    rig.unloader.instant = False
    rig.to_traffic(parse_plan([{"share": 50, "seconds": 10}, {"share": 100}]))
    snap = rig.ctl.tick(rig.t0 + 10)
    assert snap.state is S.PROMOTING
    assert derive_status(snap, True).banner == f"Model upgrade finishing — answers come from {CAND}; unloading {STABLE}"
    rig.unloader.unloaded.add(STABLE)
    assert rig.ctl.tick().state is S.PROMOTED


def test_rollback_now_turns_red_until_acknowledged(rig: Rig) -> None:
    rig.to_traffic()
    rig.at(60)
    snap = rig.ctl.rollback_now("dave")
    assert snap.state is S.ROLLING_BACK and snap.share == 0.0
    assert rig.log[-2:] == [("traffic", STABLE, None, 0.0), ("unload", CAND)]
    done = rig.ctl.tick()
    assert done.state is S.ROLLED_BACK and not done.acknowledged
    status = derive_status(done, model_ready=True)
    assert status.light is Light.RED
    assert status.banner == "Last update rolled back: rolled back by dave — acknowledge in the Operator tab"
    cleared = rig.ctl.acknowledge("dave")
    assert cleared.state is S.IDLE and cleared.acknowledged and cleared.last_outcome == "rolled_back"
    assert derive_status(cleared, model_ready=True) .light is Light.GREEN
    with pytest.raises(Conflict, match="cannot acknowledge while idle"):
        rig.ctl.acknowledge("dave")


def test_failed_golden_gate_rolls_back_without_traffic(rig: Rig) -> None:
    rig.ctl.start("models/mini-v2", DEFAULT_PLAN, Mode.SAME_MODEL, "alice")
    rig.loader.status = LoadStatus(LoadPhase.DONE, 1.0, CAND)
    rig.ctl.tick()
    rig.validator.results = [FAIL]
    snap = rig.ctl.tick()
    assert snap.state is S.ROLLED_BACK
    assert all(call[1] is None and call[2] == 0.0 for call in rig.traffic_calls())
    assert ("unload", CAND) in rig.log
    assert "golden-set gate failed" in snap.reason and snap.gates == (FAIL,)
    alerts = [e for e in rig.sink.events if e.level is EventLevel.ALERT]
    assert [e.kind for e in alerts] == ["rollback"]


def test_failed_latency_gate_mid_stage_rolls_back(rig: Rig) -> None:
    rig.to_traffic()
    rig.at(5)
    rig.feed_pairs(40, 0.10, 0.30)
    assert rig.at(6) == 5.0  # first failing check: a warning, traffic held
    assert rig.kinds()[-1] == "gate_check_failed"
    snap = rig.ctl.tick(rig.t0 + 7)
    assert snap.state is S.ROLLED_BACK
    assert rig.log[-2:] == [("traffic", STABLE, None, 0.0), ("unload", CAND)]
    alert = next(e for e in rig.sink.events if e.kind == "rollback")
    assert alert.level is EventLevel.ALERT and "latency" in alert.message
    assert next(g for g in snap.gates if g.name == "latency").failed


def test_a_failing_check_holds_the_stage(rig: Rig) -> None:
    rig.to_traffic()
    rig.feed_pairs(40, 0.10, 0.30)
    snap = rig.ctl.tick(rig.t0 + 30)  # stage time is up, but the check failed
    assert (snap.state, snap.stage_index) == (S.ROLLING_OUT, 0)
    rig.feed_pairs(1000, 0.10, 0.10)  # the candidate recovers
    assert rig.ctl.tick(rig.t0 + 31).stage_index == 1


def test_memory_growth_rolls_back(rig: Rig) -> None:
    rig.to_traffic()
    rig.memory.rss = 1_000_000_000 + 300 * 2**20  # +300 MiB: past 5% (48 MiB) and the 256 MiB floor
    rig.at(1)
    assert rig.ctl.tick(rig.t0 + 2).state is S.ROLLED_BACK
    assert "memory_growth" in rig.ctl.snapshot().reason


def test_load_failure(rig: Rig) -> None:
    rig.ctl.start("models/huge", DEFAULT_PLAN, Mode.NEW_MODEL, "alice")
    rig.loader.status = LoadStatus(LoadPhase.FAILED, 0.3, error="not enough memory: needs 40 GiB")
    snap = rig.ctl.tick()
    assert snap.state is S.FAILED and snap.last_outcome == "failed"
    assert rig.traffic_calls() == [] and not any(e[0] == "unload" for e in rig.log)
    status = derive_status(snap, model_ready=True)
    assert status.light is Light.RED and "needs 40 GiB" in status.banner


def test_loader_reusing_the_stable_id_fails_safely(rig: Rig) -> None:
    rig.ctl.start("models/mini-v1", DEFAULT_PLAN, Mode.SAME_MODEL, "alice")
    rig.loader.status = LoadStatus(LoadPhase.DONE, 1.0, STABLE)
    assert rig.ctl.tick().state is S.FAILED
    assert not any(e[0] == "unload" for e in rig.log)


def test_cancel_during_load(rig: Rig) -> None:
    rig.ctl.start("models/mini-v2", DEFAULT_PLAN, Mode.SAME_MODEL, "alice")
    rig.loader.status = LoadStatus(LoadPhase.LOADING, 0.4)
    assert derive_status(rig.ctl.tick(), True).banner == "Model upgrade: loading mini-v2 (40%)"
    snap = rig.ctl.cancel("alice")
    assert snap.state is S.CANCELLED and rig.loader.cancelled
    assert derive_status(snap, True).light is Light.GREEN
    rig.ctl.start("models/mini-v2", DEFAULT_PLAN, Mode.SAME_MODEL, "alice")
    rig.loader.status = LoadStatus(LoadPhase.DONE, 1.0, CAND)
    assert rig.ctl.tick().state is S.VALIDATING
    with pytest.raises(Conflict, match="cannot cancel while validating"):
        rig.ctl.cancel("alice")


def test_second_start_is_refused(rig: Rig) -> None:
    rig.ctl.start("models/mini-v2", DEFAULT_PLAN, Mode.SAME_MODEL, "alice")
    with pytest.raises(Conflict, match="already loading .*models/mini-v2.*alice"):
        rig.ctl.start("models/mini-v3", DEMO_PLAN, Mode.SAME_MODEL, "bob")
    assert [e for e in rig.log if e[0] == "load"] == [("load", "models/mini-v2")]


def test_a_refused_load_leaves_the_controller_idle(rig: Rig) -> None:
    rig.loader.refuse = InputError("model path 'nope' does not exist")
    with pytest.raises(InputError):
        rig.ctl.start("nope", DEFAULT_PLAN, Mode.SAME_MODEL, "alice")
    assert rig.ctl.snapshot().state is S.IDLE and rig.sink.events == []


def test_tick_exception_rolls_back_and_the_loop_lives_on(rig: Rig) -> None:
    rig.to_traffic()
    rig.at(3)
    rig.stats.failures = 1
    snap = rig.ctl.tick(rig.t0 + 4)  # must not raise
    assert snap.state is S.ROLLING_BACK
    assert "RuntimeError: stats exploded" in snap.reason
    assert rig.log[-2:] == [("traffic", STABLE, None, 0.0), ("unload", CAND)]
    assert rig.ctl.tick(rig.t0 + 5).state is S.ROLLED_BACK
    rig.ctl.acknowledge("ops")
    rig.to_traffic()
    assert rig.at(10) == 5.0


def test_errors_while_draining_are_logged_once_and_retried(rig: Rig) -> None:
    rig.to_traffic()
    rig.unloader.broken = True
    for second in range(1, 6):
        assert rig.ctl.tick(rig.t0 + 30 * second).state in (S.ROLLING_OUT, S.PROMOTING)
    assert rig.ctl.snapshot().state is S.PROMOTING
    assert rig.kinds().count("error") == 1
    rig.unloader.broken = False
    assert rig.ctl.tick().state is S.PROMOTED


def test_rollback_reverts_traffic_before_unloading_even_if_the_setter_fails(rig: Rig) -> None:
    rig.to_traffic()
    rig.at(2)
    rig.traffic.fail_next = 1
    snap = rig.ctl.rollback_now("erin")
    assert snap.state is S.ROLLING_BACK and not any(e == ("unload", CAND) for e in rig.log)
    snap = rig.ctl.tick()
    assert snap.state is S.ROLLED_BACK
    assert rig.log[-2:] == [("traffic", STABLE, None, 0.0), ("unload", CAND)]


def test_stable_is_never_unloaded_before_promotion(rig: Rig) -> None:
    rig.to_traffic()
    for second in range(0, 120, 7):
        rig.at(second)
        assert ("unload", STABLE) not in rig.log
    rig.at(120)
    assert ("unload", STABLE) in rig.log


def test_start_needs_a_stable_version() -> None:
    rig = Rig()
    rig.ctl = RolloutController(
        stable_id=None, loader=rig.loader, validator=rig.validator, traffic=rig.traffic, stats=rig.live,
        memory=rig.memory, unloader=rig.unloader, sink=rig.sink, clock=rig.clock,
    )
    with pytest.raises(Conflict, match="no stable version"):
        rig.ctl.start("models/mini-v2", DEFAULT_PLAN, Mode.SAME_MODEL, "alice")


def test_recover_from_an_interrupted_rollout(rig: Rig) -> None:
    snap = rig.ctl.recover(InterruptedRollout("models/mini-v2", "rolling_out", started_at=900.0, actor="alice"))
    assert snap.state is S.INTERRUPTED and snap.last_outcome == "interrupted" and not snap.acknowledged
    status = derive_status(snap, model_ready=True)
    assert status.light is Light.RED and "interrupted" in status.banner and "models/mini-v2" in status.banner
    assert rig.sink.events[-1].level is EventLevel.ALERT
    with pytest.raises(Conflict):
        rig.ctl.recover(InterruptedRollout("models/mini-v3", "loading", started_at=901.0))
    assert derive_status(rig.ctl.acknowledge("alice"), True).light is Light.GREEN


def test_sink_failure_does_not_break_commands(rig: Rig) -> None:
    def broken(event: Event) -> None:
        raise OSError("disk full")

    rig.sink.emit = broken  # type: ignore[method-assign]
    assert rig.ctl.start("models/mini-v2", DEFAULT_PLAN, Mode.SAME_MODEL, "alice").state is S.LOADING
    assert rig.ctl.snapshot().events[-1].kind == "start"


def test_commands_and_ticks_from_several_threads(rig: Rig) -> None:
    rig.to_traffic()
    errors: list[BaseException] = []

    def ticker() -> None:
        try:
            for _ in range(300):
                rig.clock.advance(0.01)
                rig.ctl.tick()
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=ticker) for _ in range(2)]
    for t in threads:
        t.start()
    for _ in range(50):
        try:
            rig.ctl.pause("ops")
            rig.ctl.resume("ops")
        except Conflict:
            pass
    for t in threads:
        t.join()
    assert errors == []
    assert rig.ctl.snapshot().state is S.ROLLING_OUT



# ----- replace in place: its own states in the same machine -----------------------------------
def test_replace_in_place_runs_through_the_state_machine(rig: Rig) -> None:
    snap = rig.ctl.begin_replace("models/mini-v2", "alice")
    assert snap.state is S.REPLACING and snap.kind == "replace"
    status = derive_status(snap, model_ready=True)
    assert status.light is Light.YELLOW and "wait" in status.banner
    with pytest.raises(Conflict, match="already replacing"):
        rig.ctl.start("models/mini-v3", DEFAULT_PLAN, Mode.NEW_MODEL, "bob")
    with pytest.raises(Conflict, match="already replacing"):
        rig.ctl.begin_replace("models/mini-v3", "bob")
    assert rig.ctl.tick().state is S.REPLACING  # the tick leaves it to the replace thread
    snap = rig.ctl.finish_replace(CAND, loaded_new=True)
    assert (snap.state, snap.stable_id, snap.last_outcome) == (S.PROMOTED, CAND, "promoted")
    assert derive_status(snap, True).light is Light.GREEN
    assert rig.kinds() == ["replace", "replaced"]


def test_replace_that_falls_back_to_the_old_version_is_red(rig: Rig) -> None:
    rig.ctl.begin_replace("models/broken", "alice")
    snap = rig.ctl.finish_replace("mini-v1~2", loaded_new=False, reason="loading models/broken failed: no weights")
    assert (snap.state, snap.stable_id, snap.last_outcome) == (S.ROLLED_BACK, "mini-v1~2", "rolled_back")
    assert derive_status(snap, True).light is Light.RED and "no weights" in snap.reason
    assert rig.sink.events[-1].level is EventLevel.ALERT
    rig.ctl.acknowledge("alice")
    assert rig.ctl.start("models/mini-v2", DEFAULT_PLAN, Mode.NEW_MODEL, "bob").state is S.LOADING


def test_replace_is_refused_while_a_rollout_is_in_flight(rig: Rig) -> None:
    rig.to_traffic()
    with pytest.raises(Conflict, match="already rolling_out"):
        rig.ctl.begin_replace("models/mini-v3", "bob")


def test_validation_progress_reaches_the_snapshot(rig: Rig) -> None:
    rig.validator.results = None
    rig.ctl.start("models/mini-v2", DEFAULT_PLAN, Mode.SAME_MODEL, "alice")
    rig.loader.status = LoadStatus(LoadPhase.DONE, 1.0, CAND)
    assert rig.ctl.tick().state is S.VALIDATING
    rig.validator.progress = (48, 1116)
    snap = rig.ctl.tick()
    assert (snap.state, snap.validation_progress) == (S.VALIDATING, (48, 1116))
