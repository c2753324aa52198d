"""Every setting in one typed place. Only app.py reads the environment and passes it in here."""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping, Sequence

from reranker.errors import InputError


@dataclass(frozen=True)
class Limits:
    """Explicit input limits; a request that breaks one gets a 4xx naming it."""

    max_documents: int = 100
    max_text_chars: int = 20_000
    max_images_per_item: int = 4
    max_videos_per_item: int = 1
    max_image_pixels: int = 40_000_000  # decoded width x height
    max_media_bytes: int = 25 * 1024 * 1024  # one image or video, after base64 decoding
    max_request_bytes: int = 64 * 1024 * 1024  # whole HTTP body
    max_video_seconds: float = 600.0
    video_fps: float = 1.0  # sampling rate for video files
    max_video_frames: int = 64  # frames sampled from one video (even, >= 4)
    min_video_frames: int = 4


@dataclass(frozen=True)
class EngineSettings:
    max_batch_pairs: int = 16  # pairs per forward pass
    batch_wait_ms: float = 5.0  # how long the batcher waits to fill a batch
    cache_entries: int = 4096  # per-version score cache entries
    media_cache_entries: int = 256  # decoded media kept, by content hash


@dataclass(frozen=True)
class Settings:
    model: str = "models/mini-v1"
    host: str = "127.0.0.1"
    port: int = 7860
    data_dir: Path = Path("data")
    media_dirs: tuple[Path, ...] = ()
    models_dir: Path = Path("models")
    admin_token: str | None = None
    device: str = "auto"  # "auto" | "cpu" | "cuda"
    webhook_url: str | None = None
    request_log_rows: int = 100_000
    request_log_days: float = 30.0
    rollout_time_scale: float = 1.0  # < 1 compresses every plan's stage times (demos, load tests)
    replace_wait_s: float = 300.0  # how long requests queue during a replace-in-place update
    allow_downloads: bool = False  # a hub id not on disk may be fetched (huggingface_hub)
    gate_latency_ratio: float = 1.15  # latency gate minimum effect: fail only if candidate median > ratio x stable (and MWU p < 0.01)
    gate_min_samples: int = 50  # candidate requests (live + mirrored) before the error-rate gate decides
    golden_set: Path = Path("assets/examples/labelled_set.json")
    limits: Limits = field(default_factory=Limits)
    engine: EngineSettings = field(default_factory=EngineSettings)

    def with_(self, **changes: object) -> "Settings":
        return replace(self, **changes)


ENV_NAMES = {
    "model": "RERANKER_MODEL",
    "host": "RERANKER_HOST",
    "port": "RERANKER_PORT",
    "data_dir": "RERANKER_DATA_DIR",
    "media_dirs": "RERANKER_MEDIA_DIRS",
    "admin_token": "RERANKER_ADMIN_TOKEN",
    "device": "RERANKER_DEVICE",
    "webhook_url": "RERANKER_WEBHOOK_URL",
    "max_documents": "RERANKER_MAX_DOCUMENTS",
    "max_image_pixels": "RERANKER_MAX_IMAGE_PIXELS",
    "max_media_bytes": "RERANKER_MAX_MEDIA_BYTES",
    "max_request_bytes": "RERANKER_MAX_REQUEST_BYTES",
    "max_video_seconds": "RERANKER_MAX_VIDEO_SECONDS",
    "max_video_frames": "RERANKER_MAX_VIDEO_FRAMES",
    "request_log_rows": "RERANKER_REQUEST_LOG_ROWS",
    "rollout_time_scale": "RERANKER_ROLLOUT_TIME_SCALE",
    "gate_latency_ratio": "RERANKER_GATE_LATENCY_RATIO",
    "gate_min_samples": "RERANKER_GATE_MIN_SAMPLES",
    "allow_downloads": "RERANKER_ALLOW_DOWNLOADS",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="app.py",
        description="Multimodal reranker console and HTTP API with hot model updates.",
    )
    p.add_argument("--model", help=f"model directory or hub id to serve [{ENV_NAMES['model']}]")
    p.add_argument("--host", help=f"address to bind (default 127.0.0.1) [{ENV_NAMES['host']}]")
    p.add_argument("--port", type=int, help=f"port (default 7860) [{ENV_NAMES['port']}]")
    p.add_argument("--data-dir", help=f"SQLite store and logs [{ENV_NAMES['data_dir']}]")
    p.add_argument(
        "--media-dir",
        action="append",
        help=f"folder requests may name files in; repeatable [{ENV_NAMES['media_dirs']}, ':'-separated]",
    )
    p.add_argument("--admin-token", help=f"bearer token for operator actions [{ENV_NAMES['admin_token']}]")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help=f"[{ENV_NAMES['device']}]")
    p.add_argument("--webhook-url", help=f"alerts are POSTed here [{ENV_NAMES['webhook_url']}]")
    p.add_argument("--max-documents", type=int, help=f"[{ENV_NAMES['max_documents']}]")
    p.add_argument("--max-image-pixels", type=int, help=f"[{ENV_NAMES['max_image_pixels']}]")
    p.add_argument("--max-media-bytes", type=int, help=f"[{ENV_NAMES['max_media_bytes']}]")
    p.add_argument("--max-request-bytes", type=int, help=f"[{ENV_NAMES['max_request_bytes']}]")
    p.add_argument("--max-video-seconds", type=float, help=f"[{ENV_NAMES['max_video_seconds']}]")
    p.add_argument("--max-video-frames", type=int, help=f"[{ENV_NAMES['max_video_frames']}]")
    p.add_argument("--request-log-rows", type=int, help=f"[{ENV_NAMES['request_log_rows']}]")
    p.add_argument(
        "--rollout-time-scale", type=float,
        help=f"multiply every rollout stage's time (0.1 = ten times faster) [{ENV_NAMES['rollout_time_scale']}]",
    )
    p.add_argument("--gate-latency-ratio", type=float,
                   help=f"rollout latency gate: fails when the candidate's paired-replay median is > this x the stable's and Mann-Whitney U says slower [{ENV_NAMES['gate_latency_ratio']}]")
    p.add_argument("--gate-min-samples", type=int,
                   help=f"candidate requests (live + mirrored) before the error-rate gate decides [{ENV_NAMES['gate_min_samples']}]")
    p.add_argument("--allow-downloads", action="store_true", default=None,
                   help=f"let --model or an update name a hub id that is fetched if missing [{ENV_NAMES['allow_downloads']}=1]")
    return p


def _pick(args: argparse.Namespace, env: Mapping[str, str], key: str) -> str | None:
    value = getattr(args, key, None)
    if value is not None:
        return value
    return env.get(ENV_NAMES[key]) or None


def _number(raw: str | int | float | None, key: str, kind: type) -> int | float | None:
    if raw is None:
        return None
    try:
        value = kind(raw)
    except (TypeError, ValueError):
        raise InputError(f"setting {key} must be a {kind.__name__}, got {raw!r}") from None
    if value <= 0:
        raise InputError(f"setting {key} must be positive, got {raw!r}")
    return value


def settings_from(argv: Sequence[str], env: Mapping[str, str]) -> Settings:
    """Build Settings from command-line arguments, then environment variables, then defaults."""
    args = build_parser().parse_args(list(argv))
    base = Settings()
    media_raw = args.media_dir or [d for d in (env.get(ENV_NAMES["media_dirs"]) or "").split(":") if d]
    limit_changes = {}
    for key, kind in (
        ("max_documents", int),
        ("max_image_pixels", int),
        ("max_media_bytes", int),
        ("max_request_bytes", int),
        ("max_video_seconds", float),
        ("max_video_frames", int),
    ):
        value = _number(_pick(args, env, key), key, kind)
        if value is not None:
            limit_changes[key] = value
    port = _number(_pick(args, env, "port"), "port", int)
    log_rows = _number(_pick(args, env, "request_log_rows"), "request_log_rows", int)
    time_scale = _number(_pick(args, env, "rollout_time_scale"), "rollout_time_scale", float)
    ratio = _number(_pick(args, env, "gate_latency_ratio"), "gate_latency_ratio", float)
    samples = _number(_pick(args, env, "gate_min_samples"), "gate_min_samples", int)
    return Settings(
        model=_pick(args, env, "model") or base.model,
        host=_pick(args, env, "host") or base.host,
        port=int(port) if port is not None else base.port,
        data_dir=Path(_pick(args, env, "data_dir") or base.data_dir),
        media_dirs=tuple(Path(d).resolve() for d in media_raw),
        admin_token=_pick(args, env, "admin_token"),
        device=_pick(args, env, "device") or base.device,
        webhook_url=_pick(args, env, "webhook_url"),
        request_log_rows=int(log_rows) if log_rows is not None else base.request_log_rows,
        rollout_time_scale=float(time_scale) if time_scale is not None else base.rollout_time_scale,
        gate_latency_ratio=float(ratio) if ratio is not None else base.gate_latency_ratio,
        gate_min_samples=int(samples) if samples is not None else base.gate_min_samples,
        allow_downloads=bool(args.allow_downloads) or env.get(ENV_NAMES["allow_downloads"], "") in ("1", "true", "yes"),
        limits=replace(base.limits, **limit_changes),
    )
