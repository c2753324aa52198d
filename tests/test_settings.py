from pathlib import Path

import pytest

from reranker.errors import InputError
from reranker.settings import Settings, settings_from


def test_defaults_bind_loopback_and_serve_mini_v1() -> None:
    s = settings_from([], {})
    assert (s.host, s.port, s.model, s.data_dir, s.media_dirs) == ("127.0.0.1", 7860, "models/mini-v1", Path("data"), ())
    assert s.admin_token is None


def test_environment_then_command_line_wins(tmp_path: Path) -> None:
    env = {"RERANKER_PORT": "9001", "RERANKER_MODEL": "models/mini-v2", "RERANKER_MEDIA_DIRS": f"{tmp_path}:/srv",
           "RERANKER_MAX_DOCUMENTS": "7", "RERANKER_ROLLOUT_TIME_SCALE": "0.5"}
    s = settings_from(["--port", "9002"], env)
    assert s.port == 9002 and s.model == "models/mini-v2"
    assert s.media_dirs == (tmp_path.resolve(), Path("/srv"))
    assert s.limits.max_documents == 7 and s.rollout_time_scale == 0.5


def test_media_dir_flag_is_repeatable(tmp_path: Path) -> None:
    s = settings_from(["--media-dir", str(tmp_path), "--media-dir", "/tmp"], {"RERANKER_MEDIA_DIRS": "/ignored"})
    assert s.media_dirs == (tmp_path.resolve(), Path("/tmp").resolve())


@pytest.mark.parametrize("env", [{"RERANKER_PORT": "eighty"}, {"RERANKER_MAX_DOCUMENTS": "0"},
                                 {"RERANKER_MAX_VIDEO_SECONDS": "-3"}])
def test_bad_values_name_the_setting(env: dict[str, str]) -> None:
    key = next(iter(env)).removeprefix("RERANKER_").lower()
    with pytest.raises(InputError, match=key):
        settings_from([], env)


def test_with_returns_a_changed_copy() -> None:
    s = Settings()
    assert s.with_(port=1).port == 1 and s.port == 7860


def test_downloads_are_off_unless_allowed() -> None:
    assert settings_from([], {}).allow_downloads is False
    assert settings_from(["--allow-downloads"], {}).allow_downloads is True
    assert settings_from([], {"RERANKER_ALLOW_DOWNLOADS": "1"}).allow_downloads is True
