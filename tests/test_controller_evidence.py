"""Controller timing: idempotent ticks, and stages that hold until their live gates decide."""
from __future__ import annotations

from reranker.control.gates import GateConfig
from reranker.control.plans import parse_plan
from reranker.control.ports import EventLevel
from reranker.control.status import derive_status
from tests.controller_rig import CAND, STABLE, Rig, S


def test_with_evidence_required_a_stage_holds_until_its_gates_decide() -> None:
    rig = Rig(GateConfig(check_interval_s=1.0, require_evidence=True))
    rig.to_traffic(parse_plan([{"share": 5, "seconds": 10}, {"share": 100}]))
    assert rig.at(5) == 5.0
    assert rig.at(60) == 5.0  # past its 10 s, but no request has been seen on either version
    assert rig.ctl.snapshot().state is S.ROLLING_OUT
    assert "awaiting_evidence" in rig.kinds()
    rig.feed_pairs(30, 0.10, 0.10)
    rig.at(62)
    rig.at(63)
    assert rig.ctl.snapshot().state in (S.PROMOTING, S.PROMOTED)


def test_the_last_stage_needs_no_evidence_since_stable_gets_no_traffic() -> None:
    rig = Rig(GateConfig(check_interval_s=1.0, require_evidence=True))
    rig.feed(STABLE, 30, 0.10)
    rig.to_traffic(parse_plan([{"share": 100, "seconds": 5}]))
    rig.at(6)
    rig.at(7)
    assert rig.ctl.snapshot().state in (S.PROMOTING, S.PROMOTED)


def test_tick_is_idempotent() -> None:
    rig = Rig()
    rig.to_traffic()
    first = rig.ctl.tick(rig.t0 + 50)
    calls, events = len(rig.log), len(rig.sink.events)
    second = rig.ctl.tick(rig.t0 + 50)
    assert (len(rig.log), len(rig.sink.events)) == (calls, events)
    assert (second.state, second.share, second.stage_index) == (first.state, first.share, first.stage_index)


def test_waiting_for_evidence_is_logged_once_not_every_tick() -> None:
    rig = Rig(GateConfig(check_interval_s=1.0, require_evidence=True))
    rig.to_traffic(parse_plan([{"share": 5, "seconds": 1}, {"share": 100}]))
    for second in range(2, 30):
        rig.feed(STABLE, 1, 0.1)  # counts change every tick; the undecided gates do not
        rig.at(second)
    assert rig.kinds().count("awaiting_evidence") == 1


def test_a_starved_stage_holds_says_why_and_alerts_once_then_moves_on_when_evidence_arrives() -> None:
    rig = Rig(GateConfig(check_interval_s=1.0, require_evidence=True, error_min_samples=50, latency_min_samples=20))
    rig.to_traffic(parse_plan([{"share": 5, "seconds": 10}, {"share": 100}]))
    rig.feed(CAND, 12, 0.1)
    for second in range(1, 40):  # 10 s stage + 30 s (3x) evidence wait
        rig.at(second)
    snap = rig.ctl.snapshot()
    assert snap.state is S.ROLLING_OUT and snap.holding == ""
    rig.at(41)
    snap = rig.ctl.snapshot()
    assert snap.holding == "holding: 0/20 paired replays, 12/50 candidate requests — not enough traffic", snap.holding
    status = derive_status(snap, model_ready=True)
    assert snap.holding in status.banner and status.holding == snap.holding
    assert [s.state for s in status.steps] == ["holding", "pending"]
    for second in range(42, 60):
        rig.at(second)
    holds = [e for e in rig.sink.events if e.kind == "holding"]
    assert len(holds) == 1 and holds[0].level is EventLevel.ALERT and "12/50 candidate requests" in holds[0].message
    rig.feed_pairs(50, 0.1, 0.1)  # mirrored replays bring the evidence
    rig.at(61)
    rig.at(62)
    assert rig.ctl.snapshot().state in (S.PROMOTING, S.PROMOTED)
    assert "evidence_arrived" in rig.kinds()


def test_evidence_wait_is_a_plan_field() -> None:
    plan = parse_plan([{"share": 5, "seconds": 10, "evidence_wait_s": 5}, {"share": 100}])
    assert plan.stages[0].evidence_wait == 5 and plan.stages[1].evidence_wait == 10.0
    assert parse_plan([{"share": 5, "seconds": 30}, {"share": 100}]).stages[0].evidence_wait == 90.0
    assert plan.scaled(0.5).stages[0].evidence_wait == 2.5
