"""The rollout state machine (every state x trigger) and rollout plans as data."""
from __future__ import annotations

import itertools

import pytest

from reranker.control.plans import (
    DEFAULT_PLAN,
    DEMO_PLAN,
    Mode,
    Stage,
    parse_mode,
    parse_plan,
    resolve_plan,
    share_at,
)
from reranker.control.rollout import IN_FLIGHT, NEEDS_ACKNOWLEDGE, TERMINAL, TRANSITIONS, RolloutState, Trigger, next_state
from reranker.errors import Conflict, InputError

S, T = RolloutState, Trigger

# The whole table written out independently of the module, so a changed edge fails here.
EXPECTED = {
    (S.IDLE, T.START): S.LOADING,
    (S.IDLE, T.FOUND_INTERRUPTED): S.INTERRUPTED,
    (S.LOADING, T.LOAD_OK): S.VALIDATING,
    (S.LOADING, T.LOAD_FAILED): S.FAILED,
    (S.LOADING, T.CANCEL): S.CANCELLED,
    (S.LOADING, T.ERROR): S.FAILED,
    (S.VALIDATING, T.VALIDATION_PASSED): S.ROLLING_OUT,
    (S.VALIDATING, T.VALIDATION_FAILED): S.ROLLING_BACK,
    (S.VALIDATING, T.ROLLBACK_NOW): S.ROLLING_BACK,
    (S.VALIDATING, T.ERROR): S.ROLLING_BACK,
    (S.ROLLING_OUT, T.STAGE_COMPLETE): S.ROLLING_OUT,
    (S.ROLLING_OUT, T.PLAN_COMPLETE): S.PROMOTING,
    (S.ROLLING_OUT, T.GATE_FAILED): S.ROLLING_BACK,
    (S.ROLLING_OUT, T.PAUSE): S.PAUSED,
    (S.ROLLING_OUT, T.PROMOTE_NOW): S.PROMOTING,
    (S.ROLLING_OUT, T.ROLLBACK_NOW): S.ROLLING_BACK,
    (S.ROLLING_OUT, T.ERROR): S.ROLLING_BACK,
    (S.PAUSED, T.RESUME): S.ROLLING_OUT,
    (S.PAUSED, T.GATE_FAILED): S.ROLLING_BACK,
    (S.PAUSED, T.PROMOTE_NOW): S.PROMOTING,
    (S.PAUSED, T.ROLLBACK_NOW): S.ROLLING_BACK,
    (S.PAUSED, T.ERROR): S.ROLLING_BACK,
    (S.PROMOTING, T.DRAINED): S.PROMOTED,
    (S.ROLLING_BACK, T.DRAINED): S.ROLLED_BACK,
    **{(s, T.START): S.LOADING for s in (S.PROMOTED, S.CANCELLED, S.ROLLED_BACK, S.FAILED, S.INTERRUPTED)},
    # replace in place: its own states and triggers, startable from exactly where a rollout is
    **{(s, T.REPLACE): S.REPLACING for s in (S.IDLE, S.PROMOTED, S.CANCELLED, S.ROLLED_BACK, S.FAILED, S.INTERRUPTED)},
    (S.REPLACING, T.REPLACED): S.PROMOTED,
    (S.REPLACING, T.REPLACE_FAILED): S.ROLLED_BACK,
    (S.REPLACING, T.ERROR): S.FAILED,
    **{(s, T.ACKNOWLEDGE): S.IDLE for s in (S.PROMOTED, S.CANCELLED, S.ROLLED_BACK, S.FAILED, S.INTERRUPTED)},
}


@pytest.mark.parametrize("state,trigger", list(itertools.product(RolloutState, Trigger)))
def test_every_state_and_trigger(state: RolloutState, trigger: Trigger) -> None:
    if (state, trigger) in EXPECTED:
        assert next_state(state, trigger) is EXPECTED[(state, trigger)]
    else:
        with pytest.raises(Conflict) as info:
            next_state(state, trigger)
        assert trigger.value in str(info.value) and state.value in str(info.value)


def test_table_has_no_edges_beyond_the_expected_ones() -> None:
    assert dict(TRANSITIONS) == EXPECTED


def test_stable_is_only_retired_after_the_candidate_serves_everything() -> None:
    """Only PROMOTING unloads the old stable, and it is only reached from states with traffic flowing."""
    into_promoting = {s for (s, _), to in TRANSITIONS.items() if to is S.PROMOTING}
    assert into_promoting == {S.ROLLING_OUT, S.PAUSED}


def test_every_in_flight_state_can_end() -> None:
    for state in IN_FLIGHT:
        reachable, frontier = {state}, [state]
        while frontier:
            current = frontier.pop()
            for (s, _), to in TRANSITIONS.items():
                if s is current and to not in reachable:
                    reachable.add(to)
                    frontier.append(to)
        assert reachable & TERMINAL, state


def test_no_second_start_of_any_kind_while_one_is_in_flight() -> None:
    for state in IN_FLIGHT:
        for trigger in (T.START, T.REPLACE):
            with pytest.raises(Conflict):
                next_state(state, trigger)


def test_red_states_are_terminal_and_acknowledgeable() -> None:
    assert NEEDS_ACKNOWLEDGE <= TERMINAL
    assert all(next_state(s, T.ACKNOWLEDGE) is S.IDLE for s in NEEDS_ACKNOWLEDGE)


# ----- plans ---------------------------------------------------------------------------------
def test_default_plan_is_the_fields() -> None:
    assert [(s.share, s.seconds, s.ramp) for s in DEFAULT_PLAN.stages] == [(5, 30, False), (50, 90, True), (100, 0, False)]
    assert DEFAULT_PLAN.stages[0].seconds + DEFAULT_PLAN.stages[1].seconds == 120


def test_demo_plan_completes_within_a_minute() -> None:
    assert 0 < DEMO_PLAN.total_seconds <= 60
    assert DEMO_PLAN.stages[-1].share == 100


@pytest.mark.parametrize(
    "stage,seconds,expected",
    [(0, 0, 5.0), (0, 29, 5.0), (1, 0, 5.0), (1, 45, 27.5), (1, 90, 50.0), (1, 500, 50.0), (2, 0, 100.0)],
)
def test_share_at_ramps_linearly(stage: int, seconds: float, expected: float) -> None:
    assert share_at(DEFAULT_PLAN, stage, seconds) == pytest.approx(expected)


def test_ramp_as_first_stage_starts_from_zero() -> None:
    plan = parse_plan([{"share": 40, "seconds": 10, "ramp": True}, {"share": 100}])
    assert share_at(plan, 0, 5) == pytest.approx(20.0)


def test_inline_plan_from_json_text() -> None:
    plan = parse_plan('[{"share": 5, "seconds": 30}, {"share": 50, "seconds": 90, "ramp": true}, {"share": 100}]')
    assert plan.stages == DEFAULT_PLAN.stages
    assert plan.name == "custom"


def test_inline_plan_keeps_stage_gates() -> None:
    plan = parse_plan([{"share": 10, "seconds": 5, "gates": ["latency"]}, {"share": 100, "gates": []}])
    assert plan.stages[0].gates == ("latency",) and plan.stages[1].gates == ()
    assert plan.to_list()[0] == {"share": 10.0, "seconds": 5.0, "ramp": False, "gates": ["latency"]}


@pytest.mark.parametrize(
    "raw,message",
    [
        ("[", "not valid JSON"),
        ("{}", "non-empty list"),
        ("[]", "non-empty list"),
        ('["x"]', "stage 1: must be an object"),
        ('[{"seconds": 3}, {"share": 100}]', "stage 1: share is required"),
        ('[{"share": 0}, {"share": 100}]', "stage 1: share must be in (0, 100]"),
        ('[{"share": 5}, {"share": 120}]', "stage 2: share must be in (0, 100]"),
        ('[{"share": "5"}, {"share": 100}]', "stage 1: share must be a number"),
        ('[{"share": true}, {"share": 100}]', "stage 1: share must be a number"),
        ('[{"share": 5, "seconds": -1}, {"share": 100}]', "stage 1: seconds must be >= 0"),
        ('[{"share": 50}, {"share": 10}, {"share": 100}]', "stage 2: share must not decrease"),
        ('[{"share": 5}, {"share": 60}]', "stage 2: share of the last stage must be 100"),
        ('[{"share": 5, "ramp": "yes"}, {"share": 100}]', "stage 1: ramp must be true or false"),
        ('[{"share": 5, "gates": ["speed"]}, {"share": 100}]', "stage 1: gates must be a list"),
        ('[{"share": 5, "wait": 3}, {"share": 100}]', "stage 1: unknown field 'wait'"),
    ],
)
def test_bad_plans_name_the_stage_and_field(raw: str, message: str) -> None:
    with pytest.raises(InputError) as info:
        parse_plan(raw)
    assert message in str(info.value)


def test_time_scale_compresses_every_stage() -> None:
    fast = resolve_plan("default", time_scale=0.1)
    assert [s.seconds for s in fast.stages] == pytest.approx([3.0, 9.0, 0.0])
    assert [s.share for s in fast.stages] == [5, 50, 100]
    assert resolve_plan("default") is DEFAULT_PLAN


@pytest.mark.parametrize("scale", [0, -1, float("nan"), float("inf")])
def test_bad_time_scale_is_refused(scale: float) -> None:
    with pytest.raises(InputError, match="time_scale"):
        DEFAULT_PLAN.scaled(scale)


def test_resolve_plan_by_name_or_inline() -> None:
    assert resolve_plan("demo") is DEMO_PLAN
    assert resolve_plan(' [{"share": 100}]').stages == (Stage(share=100),)
    with pytest.raises(InputError, match="'fast'"):
        resolve_plan("fast")


def test_parse_mode() -> None:
    assert parse_mode("same-model") is Mode.SAME_MODEL and parse_mode("new-model") is Mode.NEW_MODEL
    with pytest.raises(InputError, match="'newer'"):
        parse_mode("newer")
