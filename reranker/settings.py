"""Every setting in one typed place. Only app.py reads the environment and passes it in here."""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping, Sequence
from urllib.parse import urlsplit

from reranker.errors import InputError


@dataclass(frozen=True)
class Limits:
    """Explicit input limits; a request that breaks one gets a 4xx naming it."""

    max_documents: int = 100
    max_text_chars: int = 20_000
    max_instruction_chars: int = 2_000  # the task instruction of one request
    max_images_per_item: int = 4
    max_videos_per_item: int = 1
    max_image_pixels: int = 40_000_000  # source width x height (from the header), images and video frames
    # Decoded pixels, after scaling to the working resolution (issue 8: bound what a request holds)
    max_decoded_pixels: int = 1_843_200  # one image or video frame (Qwen3-VL's largest image is 1800 x 32 x 32)
    max_video_pixels: int = 16_000_000  # all sampled frames of one video together
    max_request_pixels: int = 64_000_000  # every decoded image and frame of one request
    max_media_bytes: int = 25 * 1024 * 1024  # one image or video, after base64 decoding
    max_request_bytes: int = 64 * 1024 * 1024  # whole HTTP body
    max_video_seconds: float = 600.0
    video_fps: float = 1.0  # sampling rate for video files
    max_video_frames: int = 64  # frames sampled from one video (even, >= 4)
    min_video_frames: int = 4
    max_frame_list_frames: int = 256  # frames in one video sent as a list of images (then sampled)


@dataclass(frozen=True)
class EngineSettings:
    max_batch_pairs: int = 16  # pairs per forward pass
    batch_wait_ms: float = 5.0  # how long the batcher waits to fill a batch
    cache_entries: int = 4096  # per-version score cache entries
    media_cache_entries: int = 256  # decoded media kept, by content hash


@dataclass(frozen=True)
class RaySettings:
    """--engine ray: each loaded version is a Ray Serve deployment of `replicas` replicas."""

    address: str | None = None  # None: start a local Ray; "auto" or "ray://host:10001": join one
    replicas: int = 1
    replica_cpus: float = 1.0
    replica_gpus: float = 0.0
    placement_timeout_s: float = 60.0  # resources for every replica must be free by then, or the load fails
    start_timeout_s: float = 900.0  # placed replicas must be loaded, warm and healthy by then
    request_timeout_s: float = 300.0  # one scoring call on a replica
    graceful_shutdown_s: float = 30.0  # a deleted deployment's replicas finish their work this long


@dataclass(frozen=True)
class ServerSettings:
    """Bounds of the HTTP server: workers, admission queue, deadlines, connections, timeouts."""

    rank_workers: int = 8  # rank/compare requests worked on at once (threads)
    max_queue: int = 64  # admitted requests waiting for a worker; more get 429 with Retry-After
    request_timeout_s: float = 120.0  # per-request deadline; past it the work is cancelled (504)
    max_connections: int = 2000  # open connections; new ones past it are closed at once
    keep_alive_s: float = 5.0  # an idle keep-alive connection is closed after this
    header_timeout_s: float = 10.0  # a request line and headers must arrive within this
    max_header_bytes: int = 64 * 1024  # largest request head (h11_max_incomplete_event_size)
    shutdown_timeout_s: float = 10.0  # after SIGTERM, in-flight requests get this long


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
    allow_media_urls: bool = False  # requests may name https:// media (SSRF-guarded fetch)
    log_format: str = "text"  # "text" | "json": every log line, access log included
    media_url_timeout_s: float = 10.0  # whole fetch of one media URL
    gate_latency_ratio: float = 1.15  # latency gate minimum effect: fails only past ratio x stable (and MWU p < 0.01)
    gate_min_samples: int = 50  # candidate requests (live + mirrored) before the error-rate gate decides
    max_policy_rules: int = 100  # attribute rules in one traffic policy
    golden_set: Path = Path("assets/examples/labelled_set.json")
    limits: Limits = field(default_factory=Limits)
    engine: EngineSettings = field(default_factory=EngineSettings)
    engine_kind: str = "embedded"  # "embedded" (one process) | "ray" (Ray Serve deployments)
    ray: RaySettings = field(default_factory=RaySettings)
    server: ServerSettings = field(default_factory=ServerSettings)

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
    "max_instruction_chars": "RERANKER_MAX_INSTRUCTION_CHARS",
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
    "max_decoded_pixels": "RERANKER_MAX_DECODED_PIXELS",
    "max_video_pixels": "RERANKER_MAX_VIDEO_PIXELS",
    "max_request_pixels": "RERANKER_MAX_REQUEST_PIXELS",
    **{key: f"RERANKER_{key.upper()}" for key in (
        "rank_workers", "max_queue", "request_timeout_s", "max_connections", "keep_alive_s",
        "header_timeout_s", "max_header_bytes", "shutdown_timeout_s")},
    "allow_media_urls": "RERANKER_ALLOW_MEDIA_URLS",
    "log_format": "RERANKER_LOG_FORMAT",
    "engine_kind": "RERANKER_ENGINE",
    "ray_address": "RERANKER_RAY_ADDRESS",
    "replicas": "RERANKER_REPLICAS",
    "replica_cpus": "RERANKER_REPLICA_CPUS",
    "replica_gpus": "RERANKER_REPLICA_GPUS",
}
SERVER_FLAGS: dict[str, tuple[str, type, str]] = {
    "rank_workers": ("--rank-workers", int, "rank/compare requests worked on at once"),
    "max_queue": ("--max-queue", int, "requests waiting for a worker (REST: more get 429 with Retry-After; "
                                   "the console's queue: more are refused as full)"),
    "request_timeout_s": ("--request-timeout", float, "seconds; past it a request's work is cancelled (504)"),
    "max_connections": ("--max-connections", int, "open connections; new ones past it are closed"),
    "keep_alive_s": ("--keep-alive-timeout", float, "seconds an idle keep-alive connection stays open"),
    "header_timeout_s": ("--header-timeout", float, "seconds for a request line and headers to arrive"),
    "max_header_bytes": ("--max-header-bytes", int, "largest request head"),
    "shutdown_timeout_s": ("--shutdown-timeout", float, "seconds in-flight requests get after SIGTERM"),
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
    p.add_argument("--max-instruction-chars", type=int, help=f"[{ENV_NAMES['max_instruction_chars']}]")
    p.add_argument("--max-image-pixels", type=int, help=f"source pixels of an image or frame [{ENV_NAMES['max_image_pixels']}]")
    p.add_argument("--max-decoded-pixels", type=int,
                   help=f"pixels one image or frame is scaled down to [{ENV_NAMES['max_decoded_pixels']}]")
    p.add_argument("--max-video-pixels", type=int,
                   help=f"decoded pixels of all frames of one video [{ENV_NAMES['max_video_pixels']}]")
    p.add_argument("--max-request-pixels", type=int,
                   help=f"decoded pixels of one request [{ENV_NAMES['max_request_pixels']}]")
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
                   help="rollout latency gate: fails when the candidate's paired-replay median is > this x the "
                        f"stable's and Mann-Whitney U says slower [{ENV_NAMES['gate_latency_ratio']}]")
    p.add_argument("--gate-min-samples", type=int,
                   help=f"candidate requests (live + mirrored) before the error-rate gate decides [{ENV_NAMES['gate_min_samples']}]")
    p.add_argument("--allow-downloads", action="store_true", default=None,
                   help=f"let --model or an update name a hub id that is fetched if missing [{ENV_NAMES['allow_downloads']}=1]")
    p.add_argument("--log-format", choices=["text", "json"],
                   help=f"every log line, the access log included, as text or JSON lines [{ENV_NAMES['log_format']}]")
    p.add_argument("--allow-media-urls", action="store_true", default=None,
                   help="let requests name https:// images and videos, fetched with an SSRF guard (public "
                        f"addresses only, max-media-bytes, 10 s) [{ENV_NAMES['allow_media_urls']}=1]")
    for key, (flag, kind, text) in SERVER_FLAGS.items():
        p.add_argument(flag, dest=key, type=kind, help=f"{text} [{ENV_NAMES[key]}]")
    _add_ray_arguments(p)
    return p


def _add_ray_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("scale out on Ray Serve (--engine ray)")
    g.add_argument("--engine", dest="engine_kind", choices=["embedded", "ray"],
                   help=f"embedded: one process (default); ray: every version is a Ray Serve deployment "
                        f"[{ENV_NAMES['engine_kind']}]")
    g.add_argument("--ray-address", help=f"join this Ray cluster ('auto' or ray://host:10001); "
                                         f"default: start a local one [{ENV_NAMES['ray_address']}]")
    g.add_argument("--replicas", type=int, help=f"replicas per version (default 1) [{ENV_NAMES['replicas']}]")
    g.add_argument("--replica-cpus", type=float, help=f"CPUs per replica (default 1) [{ENV_NAMES['replica_cpus']}]")
    g.add_argument("--replica-gpus", type=float, help=f"GPUs per replica (default 0) [{ENV_NAMES['replica_gpus']}]")


def _ray_settings(args: argparse.Namespace, env: Mapping[str, str]) -> RaySettings:
    base = RaySettings()
    replicas = _number(_pick(args, env, "replicas"), "replicas", int)
    cpus = _number(_pick(args, env, "replica_cpus"), "replica_cpus", float)
    gpus_raw = _pick(args, env, "replica_gpus")
    gpus = 0.0 if gpus_raw in (None, 0, "0") else _number(gpus_raw, "replica_gpus", float)
    return replace(base, address=_pick(args, env, "ray_address"),
                   replicas=int(replicas) if replicas is not None else base.replicas,
                   replica_cpus=float(cpus) if cpus is not None else base.replica_cpus,
                   replica_gpus=float(gpus or 0.0))


def _engine_kind(args: argparse.Namespace, env: Mapping[str, str], default: str) -> str:
    kind = _pick(args, env, "engine_kind") or default
    if kind not in ("embedded", "ray"):
        raise InputError(f"setting engine_kind must be 'embedded' or 'ray', got {kind!r}")
    return kind


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


def webhook_url(raw: str | None) -> str | None:
    """The alert webhook: an http:// or https:// URL with a host, or None. urllib would also open
    file:, ftp: and data: URLs, so anything else is refused when the settings are read."""
    if raw is None or not raw.strip():
        return None
    try:
        parts = urlsplit(raw.strip())
        scheme, host, _ = parts.scheme.lower(), parts.hostname, parts.port
    except ValueError:  # e.g. "http://[::1" or a port out of range
        scheme, host = "", None
    if scheme not in ("http", "https") or not host:
        raise InputError(
            f"setting webhook_url must be an http:// or https:// URL with a host, got {raw.strip()[:200]!r}"
        )
    return raw.strip()


def _log_format(raw: str) -> str:
    if raw not in ("text", "json"):
        raise InputError(f"setting log_format must be 'text' or 'json', got {raw!r}")
    return raw


def settings_from(argv: Sequence[str], env: Mapping[str, str]) -> Settings:
    """Build Settings from command-line arguments, then environment variables, then defaults."""
    args = build_parser().parse_args(list(argv))
    base = Settings()
    media_raw = args.media_dir or [d for d in (env.get(ENV_NAMES["media_dirs"]) or "").split(":") if d]
    limit_changes = {}
    for key, kind in (
        ("max_documents", int),
        ("max_instruction_chars", int),
        ("max_image_pixels", int),
        ("max_decoded_pixels", int),
        ("max_video_pixels", int),
        ("max_request_pixels", int),
        ("max_media_bytes", int),
        ("max_request_bytes", int),
        ("max_video_seconds", float),
        ("max_video_frames", int),
    ):
        value = _number(_pick(args, env, key), key, kind)
        if value is not None:
            limit_changes[key] = value
    server_changes = {}
    for key, (_, kind, _) in SERVER_FLAGS.items():
        value = _number(_pick(args, env, key), key, kind)
        if value is not None:
            server_changes[key] = value
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
        webhook_url=webhook_url(_pick(args, env, "webhook_url")),
        request_log_rows=int(log_rows) if log_rows is not None else base.request_log_rows,
        rollout_time_scale=float(time_scale) if time_scale is not None else base.rollout_time_scale,
        gate_latency_ratio=float(ratio) if ratio is not None else base.gate_latency_ratio,
        gate_min_samples=int(samples) if samples is not None else base.gate_min_samples,
        allow_downloads=bool(args.allow_downloads) or env.get(ENV_NAMES["allow_downloads"], "") in ("1", "true", "yes"),
        log_format=_log_format(_pick(args, env, "log_format") or base.log_format),
        allow_media_urls=bool(args.allow_media_urls)
        or env.get(ENV_NAMES["allow_media_urls"], "") in ("1", "true", "yes"),
        limits=replace(base.limits, **limit_changes),
        server=replace(base.server, **server_changes),
        engine_kind=_engine_kind(args, env, base.engine_kind),
        ray=_ray_settings(args, env),
    )
