"""Controller timing: idempotent ticks, and stages that hold until their live gates decide."""
from __future__ import annotations

from reranker.control.gates import GateConfig
from reranker.control.plans import parse_plan
from tests.test_controller import CAND, STABLE, Rig, S


def test_with_evidence_required_a_stage_holds_until_its_gates_decide() -> None:
    rig = Rig(GateConfig(check_interval_s=1.0, require_evidence=True))
    rig.to_traffic(parse_plan([{"share": 5, "seconds": 10}, {"share": 100}]))
    assert rig.at(5) == 5.0
    assert rig.at(60) == 5.0  # past its 10 s, but no request has been seen on either version
    assert rig.ctl.snapshot().state is S.ROLLING_OUT
    assert "awaiting_evidence" in rig.kinds()
    rig.feed(STABLE, 30, 0.10)
    rig.feed(CAND, 30, 0.10)
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
