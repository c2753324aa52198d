"""derive_status: light, banner and progress from a controller snapshot."""
from __future__ import annotations

import pytest

from reranker.control.plans import DEFAULT_PLAN, Mode
from reranker.control.rollout import RolloutState
from reranker.control.runstate import RunState, build_snapshot
from reranker.control.status import Light, derive_status

S = RolloutState
NOW = 5000.0


def snap(state: RolloutState, stage: int = 0, in_stage: float = 0.0, share: float = 0.0, reason: str = "",
         candidate: str | None = "mini-v2", stable: str = "mini-v1", progress: float = 0.0, outcome: str | None = None):
    run = RunState(path="models/mini-v2", plan=DEFAULT_PLAN, mode=Mode.NEW_MODEL, actor="alice", started_at=NOW - 200)
    run.candidate_id, run.stage_index, run.share, run.load_progress = candidate, stage, share, progress
    if state in (S.ROLLING_OUT, S.PAUSED, S.PROMOTING):
        run.stage_started_at, run.elapsed_before = NOW - in_stage, in_stage
    if state is S.PROMOTING:
        run.retiring_id, stable = stable, "mini-v2"
    return build_snapshot(NOW, state, stable, run, (), outcome, reason)


def test_green_when_nothing_is_in_flight() -> None:
    for state in (S.IDLE, S.PROMOTED, S.CANCELLED):
        status = derive_status(snap(state), model_ready=True)
        assert (status.light, status.banner, status.progress) == (Light.GREEN, "", None)
    idle = build_snapshot(NOW, S.IDLE, "mini-v1", None, (), None, "")
    assert derive_status(idle, True).to_dict() == {"light": "green", "banner": "", "state": "idle", "progress": None,
                                                  "holding": "", "steps": []}


def test_loading_and_validating_are_yellow() -> None:
    loading = derive_status(snap(S.LOADING, candidate=None, progress=0.42), True)
    assert (loading.light, loading.banner) == (Light.YELLOW, "Model upgrade: loading mini-v2 (42%)")
    checking = derive_status(snap(S.VALIDATING), True)
    assert checking.light is Light.YELLOW
    assert checking.banner == "Model upgrade: checking mini-v2 on the golden set — answers still come from mini-v1"


def test_validating_counts_the_golden_pairs_scored() -> None:
    run = RunState(path="models/mini-v2", plan=DEFAULT_PLAN, mode=Mode.SAME_MODEL, actor="alice", started_at=NOW)
    run.candidate_id, run.validation_progress = "mini-v2", (412, 1116)
    snapshot = build_snapshot(NOW, S.VALIDATING, "mini-v1", run, (), None, "")
    assert derive_status(snapshot, True).banner == (
        "Model upgrade: checking mini-v2 on the golden set (412/1,116 pairs scored) — answers still come from mini-v1")
    assert snapshot.to_dict()["validation_progress"] == [412, 1116]


def test_rolling_out_shows_stage_k_of_n() -> None:
    status = derive_status(snap(S.ROLLING_OUT, stage=1, in_stage=45.0, share=27.5), True)
    assert status.light is Light.YELLOW
    assert status.banner == "Model upgrade 2/3 — some answers come from mini-v2"
    p = status.progress
    assert p is not None
    assert (p.stage, p.stages, p.share, p.seconds_in_stage, p.stage_seconds) == (2, 3, 27.5, 45.0, 90.0)
    assert p.fraction == pytest.approx(75 / 120)


def test_first_stage_progress_fraction() -> None:
    p = derive_status(snap(S.ROLLING_OUT, stage=0, in_stage=15.0, share=5.0), True).progress
    assert p is not None and p.fraction == pytest.approx(15 / 120) and p.stage == 1


def test_full_share_says_answers_come_from_the_candidate() -> None:
    status = derive_status(snap(S.ROLLING_OUT, stage=2, share=100.0), True)
    assert status.banner == "Model upgrade 3/3 — answers come from mini-v2"
    assert status.progress is not None and status.progress.fraction == 1.0


def test_paused_is_yellow_and_says_so() -> None:
    status = derive_status(snap(S.PAUSED, stage=1, in_stage=10.0, share=10.0), True)
    assert status.light is Light.YELLOW
    assert status.banner == "Model upgrade 2/3 paused — some answers come from mini-v2"


def test_promoting_is_yellow_with_full_progress() -> None:
    status = derive_status(snap(S.PROMOTING, stage=2, share=100.0), True)
    assert status.light is Light.YELLOW
    assert status.banner == "Model upgrade finishing — answers come from mini-v2; unloading mini-v1"
    assert status.progress is not None and (status.progress.stage, status.progress.fraction) == (3, 1.0)


@pytest.mark.parametrize(
    "state,banner",
    [
        (S.ROLLING_BACK, "Rolling back mini-v2: latency too high — answers come from mini-v1"),
        (S.ROLLED_BACK, "Last update rolled back: latency too high — acknowledge in the Operator tab"),
        (S.FAILED, "Last update failed: latency too high — acknowledge in the Operator tab"),
        (S.INTERRUPTED, "Last update was interrupted: latency too high — acknowledge in the Operator tab"),
    ],
)
def test_red_until_acknowledged(state: RolloutState, banner: str) -> None:
    status = derive_status(snap(state, reason="latency too high"), True)
    assert (status.light, status.banner, status.progress) == (Light.RED, banner, None)


def test_no_model_ready_is_red() -> None:
    idle = derive_status(snap(S.IDLE), model_ready=False)
    assert idle.light is Light.RED and "No model is ready" in idle.banner
    loading = derive_status(snap(S.LOADING, progress=0.5), model_ready=False)
    assert loading.light is Light.RED and loading.banner == "Model upgrade: loading mini-v2 (50%)"


def test_the_status_view_sends_progress_once_as_stage_with_the_plan_steps() -> None:
    from reranker.service.status_view import status_view

    view = status_view(snap(S.ROLLING_OUT, stage=1, in_stage=45.0, share=27.5), model_ready=True, rollout_id=7)
    assert (view.light, view.state, view.stable, view.candidate, view.rollout_id) == ("yellow", "rolling_out",
                                                                                       "mini-v1", "mini-v2", 7)
    assert view.stage is not None and (view.stage.stage, view.stage.stages, view.stage.share) == (2, 3, 27.5)
    assert [step.state for step in view.steps] == ["done", "current", "pending"]
    assert view.plan is not None and len(view.plan.stages) == 3
    answer = view.model_dump(mode="json")
    assert "progress" not in answer and answer["stage"]["fraction"] == pytest.approx(75 / 120)
    assert status_view(snap(S.IDLE), model_ready=True, rollout_id=None).stage is None
