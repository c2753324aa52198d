"""What the Operator tab may offer now: which commands apply in a state, what a destructive one
would cut short (for its confirmation), and whether a hot update names a version already loaded."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from reranker.control.rollout import RolloutState, Trigger, can
from reranker.service.views import StatusView, VersionView
from ui.render_status import OUTCOME_WORDS, gate_outcome, gate_words, state_words

COMMAND_TRIGGERS = {"pause": Trigger.PAUSE, "resume": Trigger.RESUME, "promote": Trigger.PROMOTE_NOW,
                    "rollback": Trigger.ROLLBACK_NOW, "acknowledge": Trigger.ACKNOWLEDGE, "cancel": Trigger.CANCEL}
CONFIRM = frozenset({"promote", "rollback", "cancel"})
COMMAND_LABELS = {"pause": "Pause", "resume": "Resume", "promote": "Promote now", "rollback": "Roll back now",
                  "acknowledge": "Acknowledge", "cancel": "Cancel"}


def applies(command: str, state: str) -> bool:
    """True when the rollout's state table has a move for this command from `state`."""
    try:
        return can(RolloutState(state), COMMAND_TRIGGERS[command])
    except (ValueError, KeyError):
        return False


def not_applicable(command: str, state: str) -> str:
    return f"{COMMAND_LABELS.get(command, command)} does not apply now: the update is {state_words(state)}."


def pending_checks(status: StatusView) -> list[str]:
    return [f"{gate_words(g.name)}: {OUTCOME_WORDS[gate_outcome(g, status.state)]}"
            for g in status.gates if gate_outcome(g, status.state) != "passed"]


def confirmation(command: str, status: StatusView) -> str:
    """What the operator is about to do, in plain words, with what is still undecided."""
    candidate = status.candidate or "the new version"
    stable = status.stable or "the stable version"
    what = {"promote": f"Promote {candidate} now: it takes all traffic and {stable} is unloaded.",
            "rollback": f"Roll back {candidate}: all traffic returns to {stable} and {candidate} is unloaded.",
            "cancel": f"Cancel the update of {candidate}: it is unloaded; {stable} keeps serving."}[command]
    pending = pending_checks(status)
    if pending:
        what += " Checks not passed yet — " + "; ".join(pending) + "."
    return what


def loaded_version_at(path: str, versions: Sequence[VersionView], models_dir: Path) -> str | None:
    """The id of a version already in memory from the directory `path` names (relative paths are
    tried as given and under the models folder), else None."""
    text = (path or "").strip()
    if not text:
        return None
    wanted = {p.resolve() for p in (Path(text), models_dir / text) if p.is_dir()}
    for version in versions:
        if version.path and version.state in ("ready", "serving") and Path(version.path).resolve() in wanted:
            return version.id
    return None
