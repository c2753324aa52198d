"""The controller's snapshot as the StatusView both front ends show."""
from __future__ import annotations

from reranker.control.runstate import ControllerSnapshot
from reranker.control.status import Progress, derive_status
from reranker.service.views import EventView, GateView, PlanView, ProgressView, StageView, StatusView, StepView

MAX_EVENTS = 50


def status_view(snap: ControllerSnapshot, model_ready: bool, rollout_id: int | None) -> StatusView:
    """Light, banner and progress from derive_status; the rest from the snapshot."""
    status = derive_status(snap, model_ready)
    return StatusView(
        light=status.light.value,
        banner=status.banner,
        state=status.state,
        stable=snap.stable_id,
        candidate=snap.candidate_id,
        candidate_path=snap.candidate_path,
        stage=_progress(status.progress),
        share=snap.share,
        holding=status.holding,
        steps=[StepView(stage=s.stage, share=s.share, seconds=s.seconds, ramp=s.ramp, state=s.state)
               for s in status.steps],
        mode=snap.mode.value if snap.mode else None,
        plan=PlanView(name=snap.plan.name, stages=[StageView.model_validate(s) for s in snap.plan.to_list()])
        if snap.plan else None,
        gates=[GateView.model_validate(g.to_dict()) for g in snap.gates],
        events=[EventView.model_validate(e.to_dict()) for e in list(reversed(snap.events))[:MAX_EVENTS]],
        last_outcome=snap.last_outcome,
        reason=snap.reason,
        rollout_id=rollout_id,
    )


def _progress(progress: Progress | None) -> ProgressView | None:
    if progress is None:
        return None
    return ProgressView(stage=progress.stage, stages=progress.stages, share=progress.share,
                        seconds_in_stage=progress.seconds_in_stage, stage_seconds=progress.stage_seconds,
                        fraction=progress.fraction)
