"""Video decoding and frame sampling as the Qwen3-VL reference does it.

From a file (qwen-vl-utils `smart_nframes` + `torch.linspace(0, total - 1, n).round()`):
n = total / native_fps * fps, clamped to [min_frames rounded up to even, max_frames and the
file's frame count rounded down to even], then rounded down to even. Timestamps are
index / native_fps. decord 0.6.0 decodes first; PyAV is the fallback (it also decodes AV1).
Both scale in the decoder: each sampled frame is converted straight to at most
`frame_pixels()` RGB pixels (working resolution), so a 4096 x 4096 clip never holds full-size
RGB frames; only the sampled frames are converted, and `check` (cancellation) runs per frame.

From a list of frames (the reference's `sample_frames`): evenly sample max_frames with
`np.linspace(0, n - 1, max_frames, dtype=int)` (truncating, as the reference does), pad to an
even count by repeating the last frame, and time the frames as 2 fps.
"""
from __future__ import annotations

import hashlib
import io
import logging
import math
import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Sequence

import av
import numpy as np
import torch
from av.container import InputContainer
from av.video.stream import VideoStream

from reranker.content import ImageItem, VideoItem
from reranker.errors import MediaError, RerankerError
from reranker.media.images import fit_within
from reranker.settings import Limits

try:
    import decord
except ImportError:  # decord has no wheel for some platforms; PyAV then does all the work
    decord = None

FRAME_FACTOR = 2
FRAME_LIST_FPS = 2.0
DEFAULT_BACKENDS = ("decord", "pyav")
DECORD_CHUNK = 8
DECODER_THREADS = 2  # each decoding thread holds full-size frames of its own
_DECORD_LOG_PREFIX = re.compile(r"^\[[0-9:]+\] \S+:[0-9]+: ")

_log = logging.getLogger(__name__)


class _ReaderFailed(Exception):
    """One decoder could not read the file; the next one may."""


@dataclass(frozen=True)
class SamplePlan:
    total_frames: int
    native_fps: float
    indices: tuple[int, ...]

    @property
    def duration(self) -> float:
        return self.total_frames / self.native_fps

    @property
    def timestamps(self) -> tuple[float, ...]:
        return tuple(i / self.native_fps for i in self.indices)


def sample_count(total_frames: int, native_fps: float, limits: Limits) -> int:
    """How many frames to sample (qwen-vl-utils `smart_nframes` with fps/min/max from limits)."""
    min_frames = math.ceil(limits.min_video_frames / FRAME_FACTOR) * FRAME_FACTOR
    max_frames = math.floor(min(limits.max_video_frames, total_frames) / FRAME_FACTOR) * FRAME_FACTOR
    wanted = total_frames / native_fps * limits.video_fps
    wanted = min(min(max(wanted, min_frames), max_frames), total_frames)
    return math.floor(wanted / FRAME_FACTOR) * FRAME_FACTOR


def sample_indices(total_frames: int, count: int) -> tuple[int, ...]:
    """Evenly spaced frame indices over the clip, rounded as torch rounds (half to even)."""
    return tuple(torch.linspace(0, total_frames - 1, count).round().long().tolist())


def plan_sampling(total_frames: int, native_fps: float, limits: Limits, what: str) -> SamplePlan:
    """Check the clip against the limits and choose the frames to decode."""
    if not (native_fps > 0 and math.isfinite(native_fps)):
        raise _ReaderFailed(f"unknown frame rate {native_fps!r}")
    duration = total_frames / native_fps
    if duration > limits.max_video_seconds:
        raise MediaError(
            f"{what}: video lasts {duration:.1f} s, over the limit max_video_seconds={limits.max_video_seconds:g}"
        )
    count = sample_count(total_frames, native_fps, limits)
    if count < FRAME_FACTOR:
        raise MediaError(f"{what}: video has {total_frames} frame(s); at least {FRAME_FACTOR} are needed")
    return SamplePlan(total_frames, native_fps, sample_indices(total_frames, count))


def frame_pixels(count: int, limits: Limits) -> int:
    """Decoded pixels of one sampled frame when `count` are sampled."""
    return max(1, min(limits.max_decoded_pixels, limits.max_video_pixels // max(1, count)))


def _no_check() -> None:
    return None


def decode_video(
    data: bytes,
    limits: Limits,
    what: str,
    digest: str | None = None,
    backends: Sequence[str] = DEFAULT_BACKENDS,
    check: Callable[[], None] = _no_check,
) -> VideoItem:
    """Decode `data` and sample its frames; the first backend that can read it wins.

    `check` is called before each frame is decoded and may raise to stop the work."""
    digest = digest or hashlib.sha256(data).hexdigest()
    failures = []
    for name in backends:
        reader = _READERS.get(name)
        if reader is None:
            raise MediaError(f"{what}: unknown video backend {name!r}; known: {', '.join(_READERS)}")
        try:
            plan, frames = reader(data, limits, what, check)
        except RerankerError:  # a limit, or the request was cancelled: no other decoder is tried
            raise
        except Exception as exc:  # any failure on untrusted bytes: the next decoder may do better
            failures.append(f"{name}: {_first_line(exc)}")
            continue
        return VideoItem(
            frames=tuple(frames),
            timestamps=plan.timestamps,
            digest=digest,
            duration=plan.duration,
            source_fps=plan.native_fps,
        )
    _log.info("%s: no decoder could read the video: %s", what, "; ".join(failures))  # internals stay in the log
    raise MediaError(f"{what}: not a decodable video: the file is damaged, truncated or not a video"
                     " (MP4, WebM, MOV, MKV and AVI are read)")


def video_from_frames(frames: Sequence[ImageItem], limits: Limits, what: str) -> VideoItem:
    """A video made of already decoded images, sampled and timed as the reference does."""
    if not frames:
        raise MediaError(f"{what}: a video given as frames needs at least one frame")
    sizes = {item.size for item in frames}
    if len(sizes) > 1:
        raise MediaError(f"{what}: all frames of a video must have one size, got {sorted(sizes)}")
    chosen = list(frames)
    if len(chosen) > limits.max_video_frames:
        picks = np.linspace(0, len(chosen) - 1, limits.max_video_frames, dtype=int).tolist()
        chosen = [chosen[i] for i in picks]
    padded = math.ceil(len(chosen) / FRAME_FACTOR) * FRAME_FACTOR
    chosen += [chosen[-1]] * (padded - len(chosen))
    digest = hashlib.sha256(b"frames:" + ",".join(item.digest for item in frames).encode("ascii"))
    return VideoItem(
        frames=tuple(np.asarray(item.image, dtype=np.uint8) for item in chosen),
        timestamps=tuple(i / FRAME_LIST_FPS for i in range(len(chosen))),
        digest=digest.hexdigest(),
        duration=len(chosen) / FRAME_LIST_FPS,
        source_fps=FRAME_LIST_FPS,
        from_frames=True,
    )


def _check_frame_size(width: int, height: int, limits: Limits, what: str) -> None:
    if width * height > limits.max_image_pixels:
        raise MediaError(
            f"{what}: video frames are {width}x{height} = {width * height} pixels, over the limit "
            f"max_image_pixels={limits.max_image_pixels}"
        )


def _read_with_decord(data: bytes, limits: Limits, what: str,
                      check: Callable[[], None]) -> tuple[SamplePlan, list[np.ndarray]]:
    if decord is None:
        raise _ReaderFailed("decord is not installed")
    width, height = _probe_size(data)
    _check_frame_size(width, height, limits, what)
    reader = decord.VideoReader(io.BytesIO(data), ctx=decord.cpu(0), num_threads=DECODER_THREADS)
    plan = plan_sampling(len(reader), float(reader.get_avg_fps()), limits, what)
    target_w, target_h = fit_within(width, height, frame_pixels(len(plan.indices), limits))
    if (target_w, target_h) != (width, height):
        del reader
        reader = decord.VideoReader(io.BytesIO(data), ctx=decord.cpu(0), width=target_w, height=target_h,
                                    num_threads=DECODER_THREADS)
    frames: list[np.ndarray] = []
    indices = list(plan.indices)
    for start in range(0, len(indices), DECORD_CHUNK):  # cancellation is seen between chunks
        check()
        batch = reader.get_batch(indices[start:start + DECORD_CHUNK]).asnumpy()
        frames.extend(np.ascontiguousarray(frame) for frame in batch)
    return plan, frames


def _probe_size(data: bytes) -> tuple[int, int]:
    """(width, height) of the first video stream, from the container headers (no decoding)."""
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if container.streams.video:
                context = container.streams.video[0].codec_context
                if context.width > 0 and context.height > 0:
                    return context.width, context.height
    except Exception as exc:  # unreadable headers: the frame size, hence the memory, is unknown
        raise _ReaderFailed(f"frame size unknown ({_first_line(exc)})") from None
    raise _ReaderFailed("frame size unknown from the container headers")


def _read_with_pyav(data: bytes, limits: Limits, what: str,
                    check: Callable[[], None]) -> tuple[SamplePlan, list[np.ndarray]]:
    with av.open(io.BytesIO(data), mode="r") as container:
        if not container.streams.video:
            raise _ReaderFailed("no video stream")
        stream = container.streams.video[0]
        total = stream.frames or sum(1 for packet in container.demux(stream) if packet.size)
        plan = plan_sampling(total, _pyav_fps(stream, total), limits, what)
        width, height = stream.codec_context.width, stream.codec_context.height
        _check_frame_size(width, height, limits, what)
    target = fit_within(width, height, frame_pixels(len(plan.indices), limits))
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.thread_count = DECODER_THREADS
        return plan, _decode_selected(container, plan, target, check)


def _pyav_fps(stream: VideoStream, total: int) -> float:
    rate = stream.average_rate or stream.guessed_rate
    if rate:
        return float(rate)
    if stream.duration and stream.time_base:
        return total / float(stream.duration * stream.time_base)
    return 0.0


def _decode_selected(container: InputContainer, plan: SamplePlan, target: tuple[int, int],
                     check: Callable[[], None]) -> list[np.ndarray]:
    wanted: dict[int, int] = {}
    for index in plan.indices:
        wanted[index] = wanted.get(index, 0) + 1
    frames: list[np.ndarray] = []
    last_needed = plan.indices[-1]
    width, height = target
    for ordinal, frame in enumerate(container.decode(video=0)):
        check()
        if ordinal in wanted:
            if (frame.width, frame.height) == target:
                array = frame.to_ndarray(format="rgb24")
            else:  # swscale converts and scales in one pass: no full-size RGB frame exists
                array = frame.to_ndarray(format="rgb24", width=width, height=height, interpolation="AREA")
            frames.extend([array] * wanted[ordinal])
        if ordinal >= last_needed:
            return frames
    raise _ReaderFailed(
        f"only {len(frames)} of {len(plan.indices)} sampled frames could be decoded "
        f"(the file claims {plan.total_frames} frames; truncated or corrupt)"
    )


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    text = _DECORD_LOG_PREFIX.sub("", lines[0]) if lines else type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


_Reader = Callable[[bytes, Limits, str, Callable[[], None]], tuple[SamplePlan, list[np.ndarray]]]
_READERS: MappingProxyType[str, _Reader] = MappingProxyType(
    {"decord": _read_with_decord, "pyav": _read_with_pyav}
)
