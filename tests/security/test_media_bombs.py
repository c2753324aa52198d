"""Issue 8, item 3: one small request must not allocate gigabytes.

A 6000 x 6000 PNG (a few hundred KB) and a 3072 x 3072 H.264 clip are decoded straight to the
working resolution: the kept pixels obey max_decoded_pixels / max_video_pixels, the peak memory of
a decode (measured as peak RSS growth in a fresh subprocess) stays far below full-size RGB, a
request whose media decode past max_request_pixels gets a 413, and a decode stops when its
request is cancelled.
"""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from reranker.cancel import DEADLINE, CancelToken
from reranker.errors import MediaError, PayloadTooLarge, RequestCancelled
from reranker.media import MediaDecoder, MediaResolver, decode_image, decode_video
from reranker.service.inputs import InputBuilder
from reranker.service.types import RankRequest, RawItem
from reranker.settings import Limits
from tests.security.media_fixtures import png_bomb, video_bomb

ROOT = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024
LIMITS = Limits(video_fps=4.0, max_video_frames=16)  # sample every frame of the 16-frame clip


@pytest.fixture(scope="module")
def bombs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bombs")
    png, video = folder / "bomb.png", folder / "bomb.mp4"
    png.write_bytes(png_bomb())
    video.write_bytes(video_bomb())
    return {"png": png, "video": video}


def test_fixtures_are_small(bombs: dict[str, Path]) -> None:
    assert bombs["png"].stat().st_size < 1 * MiB
    assert bombs["video"].stat().st_size < 2 * MiB


def test_png_bomb_is_kept_at_the_working_resolution(bombs: dict[str, Path]) -> None:
    item = decode_image(bombs["png"].read_bytes(), LIMITS, "documents[0].image")
    width, height = item.size
    assert width * height <= LIMITS.max_decoded_pixels
    assert abs(width / height - 1.0) < 0.01  # aspect kept


def test_png_over_the_source_limit_is_refused_from_its_header(bombs: dict[str, Path]) -> None:
    with pytest.raises(MediaError, match="max_image_pixels=20000000"):
        decode_image(bombs["png"].read_bytes(), replace(LIMITS, max_image_pixels=20_000_000), "query.image")


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_video_bomb_frames_are_scaled_in_the_decoder(bombs: dict[str, Path], backend: str) -> None:
    video = decode_video(bombs["video"].read_bytes(), LIMITS, "documents[0].video", backends=(backend,))
    assert len(video.frames) == 12
    per_frame = min(LIMITS.max_decoded_pixels, LIMITS.max_video_pixels // 12)
    for frame in video.frames:
        assert frame.shape[0] * frame.shape[1] <= per_frame
        assert frame.shape[2] == 3
    assert sum(f.shape[0] * f.shape[1] for f in video.frames) <= LIMITS.max_video_pixels


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_cancelled_video_decode_stops(bombs: dict[str, Path], backend: str) -> None:
    calls = []

    def check() -> None:
        calls.append(1)
        if len(calls) >= 2:
            raise RequestCancelled("documents[0].video: cancelled", DEADLINE)

    with pytest.raises(RequestCancelled):
        decode_video(bombs["video"].read_bytes(), LIMITS, "v", backends=(backend,), check=check)
    assert len(calls) == 2  # pyav checks per frame, decord per chunk of frames


PEAK_SCRIPT = """
import json, resource, sys
sys.path.insert(0, {root!r})
from reranker.media import MediaDecoder
from reranker.settings import Limits
decoder = MediaDecoder(Limits(video_fps=4.0, max_video_frames=16), cache_entries=0)
data = open(sys.argv[2], "rb").read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
getattr(decoder, sys.argv[1])(data, "bomb")
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"growth_mib": (peak - before) / 1024}}))
"""


def peak_growth_mib(kind: str, path: Path) -> float:
    """Peak RSS growth of one decode, in a fresh process (libraries imported before measuring)."""
    out = subprocess.run(
        [sys.executable, "-c", PEAK_SCRIPT.format(root=str(ROOT)), kind, str(path)],
        capture_output=True, text=True, timeout=300, check=False, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return float(json.loads(out.stdout.strip().splitlines()[-1])["growth_mib"])


def test_png_bomb_peak_memory_is_bounded(bombs: dict[str, Path]) -> None:
    # Pillow holds RGB as 4 bytes a pixel: 137 MiB at full size, decoded once (a PNG has no
    # draft mode); the old decoder made two more full-size copies (+413 MiB measured)
    assert peak_growth_mib("image", bombs["png"]) < 250


def test_video_bomb_peak_memory_is_bounded(bombs: dict[str, Path]) -> None:
    # 12 full-size RGB frames would be 324 MiB (the old decoder's peak: +1000 MiB measured); scaled frames are
    # 12 x 4 MiB, plus the decoder's own full-size YUV reference frames
    assert peak_growth_mib("video", bombs["video"]) < 250


def test_request_over_the_decoded_pixel_budget_gets_413(bombs: dict[str, Path]) -> None:
    limits = replace(LIMITS, max_request_pixels=3_000_000)  # one decoded PNG fits, two do not
    builder = InputBuilder(limits, MediaResolver((), limits), MediaDecoder(limits, cache_entries=0))
    uri = "data:image/png;base64," + base64.b64encode(bombs["png"].read_bytes()).decode()
    request = RankRequest(query=RawItem(text="a blue square"),
                          documents=(RawItem(images=(uri,)), RawItem(images=(uri,))))
    with pytest.raises(PayloadTooLarge, match=r"documents\[1\]\.image.*max_request_pixels=3000000"):
        builder.build(request)


def test_cancelled_request_stops_before_the_next_item(bombs: dict[str, Path]) -> None:
    limits = LIMITS
    builder = InputBuilder(limits, MediaResolver((), limits), MediaDecoder(limits, cache_entries=0))
    token = CancelToken()
    token.cancel(DEADLINE)
    request = RankRequest(query=RawItem(text="q"), documents=(RawItem(images=(bombs["png"].read_bytes(),)),))
    with pytest.raises(RequestCancelled, match="deadline"):
        builder.build(request, token)
