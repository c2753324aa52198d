"""The rollout state machine: states, triggers, one transition table, and a pure next_state().

Whatever the state, the stable version keeps enough of itself loaded to take 100% of traffic:
only PROMOTING unloads the old stable, and only after the candidate already serves everything.
"""
from __future__ import annotations

from enum import Enum
from types import MappingProxyType
from typing import Mapping

from reranker.errors import Conflict


class RolloutState(str, Enum):
    IDLE = "idle"  # one stable version, nothing in flight
    LOADING = "loading"  # candidate loading in the background; no traffic
    VALIDATING = "validating"  # golden-set gate before traffic
    ROLLING_OUT = "rolling_out"  # candidate takes the plan's share, live gates watched
    PAUSED = "paused"  # share frozen, live gates still watched
    PROMOTING = "promoting"  # candidate serves everything; old stable draining
    ROLLING_BACK = "rolling_back"  # candidate at 0%; draining and unloading
    REPLACING = "replacing"  # replace in place: requests queue while the old version unloads and the new one loads
    PROMOTED = "promoted"
    CANCELLED = "cancelled"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"  # the candidate never loaded
    INTERRUPTED = "interrupted"  # a rollout was cut short by a restart


class Trigger(str, Enum):
    START = "start"
    LOAD_OK = "load_ok"
    LOAD_FAILED = "load_failed"
    VALIDATION_PASSED = "validation_passed"
    VALIDATION_FAILED = "validation_failed"
    STAGE_COMPLETE = "stage_complete"  # a stage before the last one ended
    PLAN_COMPLETE = "plan_complete"  # the last stage ended with its gates passing
    GATE_FAILED = "gate_failed"
    PAUSE = "pause"
    RESUME = "resume"
    PROMOTE_NOW = "promote_now"
    ROLLBACK_NOW = "rollback_now"
    CANCEL = "cancel"
    DRAINED = "drained"
    ERROR = "error"  # an exception inside a tick
    ACKNOWLEDGE = "acknowledge"
    FOUND_INTERRUPTED = "found_interrupted"  # at start-up, the store shows an unfinished rollout
    REPLACE = "replace"  # start a replace-in-place update (no room for both versions)
    REPLACED = "replaced"  # the new version serves in place of the old one
    REPLACE_FAILED = "replace_failed"  # the new version did not load; the old one serves again


S, T = RolloutState, Trigger

TERMINAL: frozenset[RolloutState] = frozenset({S.PROMOTED, S.CANCELLED, S.ROLLED_BACK, S.FAILED, S.INTERRUPTED})
IN_FLIGHT: frozenset[RolloutState] = frozenset(
    {S.LOADING, S.VALIDATING, S.ROLLING_OUT, S.PAUSED, S.PROMOTING, S.ROLLING_BACK, S.REPLACING}
)
NEEDS_ACKNOWLEDGE: frozenset[RolloutState] = frozenset({S.ROLLED_BACK, S.FAILED, S.INTERRUPTED})
_CAN_START = (S.IDLE, *sorted(TERMINAL))

_TABLE: dict[tuple[RolloutState, Trigger], RolloutState] = {
    **{(state, T.START): S.LOADING for state in _CAN_START},
    **{(state, T.REPLACE): S.REPLACING for state in _CAN_START},
    **{(state, T.ACKNOWLEDGE): S.IDLE for state in TERMINAL},
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
    (S.REPLACING, T.REPLACED): S.PROMOTED,
    (S.REPLACING, T.REPLACE_FAILED): S.ROLLED_BACK,
    (S.REPLACING, T.ERROR): S.FAILED,
}
TRANSITIONS: Mapping[tuple[RolloutState, Trigger], RolloutState] = MappingProxyType(_TABLE)


def can(state: RolloutState, trigger: Trigger) -> bool:
    return (state, trigger) in TRANSITIONS


def next_state(state: RolloutState, trigger: Trigger) -> RolloutState:
    """The state after `trigger` fires in `state`; Conflict when the table has no such move."""
    try:
        return TRANSITIONS[(state, trigger)]
    except KeyError:
        allowed = sorted(t.value for (s, t) in TRANSITIONS if s == state)
        raise Conflict(
            f"rollout cannot {trigger.value} while {state.value} (allowed now: {', '.join(allowed)})"
        ) from None
