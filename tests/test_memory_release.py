"""An unloaded version really leaves memory: the process RSS falls back after the unload."""
from __future__ import annotations

import time
from pathlib import Path

import psutil

from reranker.service.types import RankRequest, RawItem
from tests.conftest import CANDIDATE, build_service, make_settings


def test_unloading_a_version_returns_its_memory(tmp_path: Path) -> None:
    service = build_service(make_settings(tmp_path / "data"))
    process = psutil.Process()
    try:
        before = process.memory_info().rss
        version = service.load_version(CANDIDATE, actor="test")
        deadline = time.monotonic() + 120
        while version not in service.usable_versions() and time.monotonic() < deadline:
            time.sleep(0.1)
        service.rank(RankRequest(RawItem("a cat"), (RawItem("a tabby cat"),)), pinned_version=version)
        loaded = process.memory_info().rss
        service.unload_version(version, actor="test")
        after = process.memory_info().rss
    finally:
        service.close()
    grown = loaded - before
    assert grown > 50 * 2**20, f"loading {version} grew RSS by only {grown / 2**20:.0f} MiB"
    assert after - before < 0.25 * grown, (
        f"RSS {before / 2**20:.0f} -> {loaded / 2**20:.0f} -> {after / 2**20:.0f} MiB: the unload kept most of it")
