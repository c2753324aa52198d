"""Operator tab decisions (issue 11): commands that cannot apply, confirmations that say what is
pending, a hot update naming a version already loaded, and the document limit on add."""
from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest  # noqa: E402

from reranker.errors import InputError  # noqa: E402
from reranker.service.views import StatusView, VersionView  # noqa: E402
from ui.entries import add_bulk, add_one  # noqa: E402
from ui.media import is_image  # noqa: E402
from ui.operator_actions import applies, confirmation, loaded_version_at, not_applicable  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "assets" / "examples"


def test_commands_apply_only_where_the_state_table_allows() -> None:
    assert not any(applies(c, "idle") for c in ("pause", "resume", "promote", "rollback", "cancel", "acknowledge"))
    assert applies("pause", "rolling_out") and applies("promote", "rolling_out") and not applies("resume", "rolling_out")
    assert applies("resume", "paused") and applies("acknowledge", "rolled_back")
    assert not applies("pause", "starting") and not applies("nonsense", "rolling_out")
    message = not_applicable("pause", "idle")
    assert "no update running" in message and "allowed now" not in message and "rollback_now" not in message


def test_a_destructive_command_says_what_it_cuts_short() -> None:
    status = StatusView.model_validate({"light": "yellow", "banner": "", "state": "rolling_out", "stable": "mini-v1",
                                        "candidate": "mini-v2", "gates": [
                                            {"name": "latency_p95", "pending": True}, {"name": "error_rate", "passed": True}]})
    text = confirmation("promote", status)
    assert "Promote mini-v2 now" in text and "mini-v1 is unloaded" in text
    assert "Candidate P95 latency: waiting for evidence" in text and "error rate" not in text.lower()
    assert "all traffic returns to mini-v1" in confirmation("rollback", status)


def test_a_hot_update_to_a_loaded_version_is_recognised(tmp_path: Path) -> None:
    models = tmp_path / "models"
    (models / "mini-v2").mkdir(parents=True)
    versions = [VersionView(id="mini-v1", state="serving", path=str(models / "mini-v1")),
                VersionView(id="mini-v2", state="ready", path=str(models / "mini-v2"))]
    assert loaded_version_at("mini-v2", versions, models) == "mini-v2"
    assert loaded_version_at(str(models / "mini-v2"), versions, models) == "mini-v2"
    assert loaded_version_at("mini-v3", versions, models) is None and loaded_version_at("", versions, models) is None
    retired = [versions[1].model_copy(update={"state": "retired"})]
    assert loaded_version_at("mini-v2", retired, models) is None


def test_more_documents_than_the_limit_are_refused_when_added() -> None:
    full = add_bulk((), "\n".join(f"doc {i}" for i in range(100)), None, limit=100)
    assert len(full) == 100
    with pytest.raises(InputError, match="limit is 100"):
        add_one(full, "one more", None, None, limit=100)
    with pytest.raises(InputError, match="limit is 3"):
        add_bulk((), "a\nb\nc\nd", None, limit=3)


def test_only_readable_images_pass_the_upload_check(tmp_path: Path) -> None:
    assert is_image(str(EXAMPLES / "images" / "chelsea.jpg"))
    fake = tmp_path / "notes.png"
    fake.write_text("not an image")
    assert not is_image(str(fake)) and not is_image(str(tmp_path / "missing.png"))
