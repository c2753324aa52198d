"""Defence in depth for issue 8, item 1: a path that reaches a UI callback without passing Gradio's
upload check is still confined to the upload cache (or the shipped examples) before it is read."""
from __future__ import annotations

from pathlib import Path

import pytest

from reranker.errors import ForbiddenPath
from ui import file_guard
from ui.entries import Entry, add_bulk, add_one, entry, raw_item

EXAMPLE = sorted((Path(__file__).resolve().parents[2] / "assets" / "examples" / "images").iterdir())[0]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "gradio"
    folder.mkdir()
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(folder))
    return folder


def test_upload_in_the_cache_and_shipped_examples_are_accepted(cache: Path) -> None:
    upload = cache / "abc" / "photo.png"
    upload.parent.mkdir()
    upload.write_bytes(EXAMPLE.read_bytes())
    assert entry("q", str(upload), None).image == str(upload.resolve())
    assert raw_item(Entry(image=str(EXAMPLE)), "documents[0]").images[0] == EXAMPLE.read_bytes()


@pytest.mark.parametrize("bad", ["/etc/passwd", "/proc/self/environ", "../../etc/passwd", "http://127.0.0.1:1/a.png",
                                 "file:///etc/passwd", "/tmp/x\x00.png"])
def test_paths_outside_are_refused_everywhere(cache: Path, bad: str) -> None:
    with pytest.raises(ForbiddenPath, match="not a file uploaded"):
        entry("q", bad, None)
    with pytest.raises(ForbiddenPath):
        add_one((), "t", None, bad)
    with pytest.raises(ForbiddenPath):
        add_bulk((), "", [bad])
    with pytest.raises(ForbiddenPath):
        raw_item(Entry(video=bad), "documents[0].video")


def test_dotdot_and_symlinks_out_of_the_cache_are_refused(cache: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"TOKEN=1")
    (cache / "link.png").symlink_to(secret)
    for bad in (str(cache / "link.png"), f"{cache}/../secret.png"):
        with pytest.raises(ForbiddenPath):
            entry("q", bad, None)


def test_guard_names_the_bad_field() -> None:
    roots = (Path("/nonexistent-upload-root"),)
    payload = {"data": ["q", {"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}, [{"path": "http://x/y"}]]}
    reason = file_guard.refused_reference(payload, roots)
    assert reason is not None and reason.startswith("data[1].path")
    assert file_guard.refused_reference({"data": ["q", None, 3]}, roots) is None
