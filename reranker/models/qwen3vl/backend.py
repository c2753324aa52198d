"""The qwen3-vl backend: detects, sizes and loads a Qwen3-VL-Reranker checkpoint directory.

Supported transformers: >= 4.57, < 6 (checked at load time). Loads the published layout
unchanged (config.json, safetensors shards, tokenizer files) with sdpa attention.
"""
from __future__ import annotations

import gc
import json
import math
import os
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from packaging.version import Version

from reranker.errors import InsufficientMemory, ModelLoadError
from reranker.models.base import Placement
from reranker.models.qwen3vl.kernels import SharedKernels
from reranker.models.qwen3vl.scorer import (
    BACKEND_NAME, DEFAULT_MAX_BATCH_SIZE, DEFAULT_MAX_BATCH_TOKENS, QwenScorer,
)

ARCHITECTURE = "Qwen3VLForConditionalGeneration"
MIN_TRANSFORMERS = Version("4.57")
MAX_TRANSFORMERS = Version("6")  # exclusive
DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}
READ_CHUNK = 64 << 20
READ_THREADS = 4


def read_ahead(path: Path, budget_bytes: int) -> int:
    """Read every *.safetensors file of the directory once, in large chunks on a few threads, so
    the loader that follows finds it in the page cache: the disk is read sequentially at full
    speed instead of by page faults in tensor order. Skipped (returns 0) when the files exceed
    budget_bytes (the page cache would not keep them). Returns the bytes read."""
    files = sorted(Path(path).glob("*.safetensors"))
    total = sum(f.stat().st_size for f in files)
    if not files or total > budget_bytes:
        return 0
    ranges = [(f, start) for f in files for start in range(0, f.stat().st_size, READ_CHUNK)]

    def read(item: tuple[Path, int]) -> int:
        file, start = item
        with file.open("rb", buffering=0) as handle:
            handle.seek(start)
            return len(handle.read(READ_CHUNK))

    with ThreadPoolExecutor(max_workers=READ_THREADS, thread_name_prefix="qwen-read") as pool:
        return sum(pool.map(read, ranges))


def _page_cache_budget() -> int:
    """Half of the host's available memory (0 when it cannot be read)."""
    try:
        import psutil

        return int(psutil.virtual_memory().available) // 2
    except Exception:  # no psutil or no /proc: do not read ahead
        return 0


def check_transformers_version(installed: str) -> None:
    """Raise ModelLoadError unless MIN_TRANSFORMERS <= installed < MAX_TRANSFORMERS."""
    version = Version(installed)
    if not MIN_TRANSFORMERS <= version < MAX_TRANSFORMERS:
        raise ModelLoadError(
            f"transformers {installed} is not supported by the {BACKEND_NAME} backend "
            f"(need >={MIN_TRANSFORMERS},<{MAX_TRANSFORMERS})"
        )


def safetensors_parameter_count(path: Path) -> int:
    """Number of tensor elements in every *.safetensors file of the directory (headers only)."""
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise ModelLoadError(f"no *.safetensors files in {str(path)!r}")
    total = 0
    for file in files:
        with file.open("rb") as handle:
            (header_size,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(header_size))
        total += sum(math.prod(entry["shape"]) for key, entry in header.items() if key != "__metadata__")
    return total


class Qwen3VLBackend:
    """Backend protocol implementation for Qwen3VLForConditionalGeneration checkpoints."""

    name = BACKEND_NAME

    def __init__(
        self,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
    ) -> None:
        self.max_batch_size = max_batch_size
        self.max_batch_tokens = max_batch_tokens
        self._kernels: dict[str, SharedKernels] = {}  # per device: compiled once, used by every version

    def matches(self, path: Path) -> bool:
        config = Path(path) / "config.json"
        if not config.is_file():
            return False
        try:
            architectures = json.loads(config.read_text(encoding="utf-8")).get("architectures") or []
        except (OSError, ValueError, AttributeError):
            return False
        return ARCHITECTURE in architectures

    def estimate_bytes(self, path: Path, dtype: str) -> int:
        if dtype not in DTYPE_BYTES:
            raise ModelLoadError(f"dtype {dtype!r} is not one of {sorted(DTYPE_BYTES)}")
        return safetensors_parameter_count(Path(path)) * DTYPE_BYTES[dtype]

    def supported_dtypes(self, device: str) -> list[str]:
        if device == "cpu":
            return ["float32"]
        return ["bfloat16", "float16", "float32"]

    def load(self, path: Path, placement: Placement, model_id: str) -> QwenScorer:
        path = Path(path)
        if not self.matches(path):
            raise ModelLoadError(f"{str(path)!r} has no config.json with architecture {ARCHITECTURE}")
        if placement.dtype not in DTYPE_BYTES:
            raise ModelLoadError(f"dtype {placement.dtype!r} is not one of {sorted(DTYPE_BYTES)}")
        import transformers

        check_transformers_version(transformers.__version__)
        phases: dict[str, float] = {}
        try:
            started = time.perf_counter()
            if placement.device != "cpu" and not os.environ.get("RERANKER_NO_READ_AHEAD"):
                read_ahead(path, _page_cache_budget())
            phases["read"] = time.perf_counter() - started
            started = time.perf_counter()
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(path))
            model = _load_model(transformers, path, placement)
            _synchronize(placement.device)
            phases["to_device"] = time.perf_counter() - started
        except Exception as exc:  # any failure inside transformers means "this directory did not load"
            _release_memory()
            if _is_out_of_memory(exc):
                raise InsufficientMemory(f"out of memory loading {str(path)!r} on {placement.device}: {exc}") from exc
            raise ModelLoadError(f"could not load {str(path)!r}: {type(exc).__name__}: {exc}") from exc
        scorer = QwenScorer(
            model,
            tokenizer,
            model_id=model_id,
            name=path.name,
            path=str(path),
            max_batch_size=self.max_batch_size,
            max_batch_tokens=self.max_batch_tokens,
            kernels=self._kernels.setdefault(str(next(model.parameters()).device), SharedKernels()),
        )
        scorer.load_phases = phases
        return scorer


def _synchronize(device: str) -> None:
    import torch

    if device != "cpu" and torch.cuda.is_available():
        torch.cuda.synchronize()


def _load_model(transformers: Any, path: Path, placement: Placement) -> Any:
    import torch

    options: dict[str, Any] = {"dtype": getattr(torch, placement.dtype), "attn_implementation": "sdpa"}
    if placement.device_map is not None:
        options["device_map"] = placement.device_map
    elif placement.device == "auto":
        options["device_map"] = "auto"
    elif placement.device != "cpu":
        options["device_map"] = {"": placement.device}
    max_memory = getattr(placement, "max_memory", None)  # set by memory.ShardedPlacement
    if max_memory:
        options["max_memory"] = dict(max_memory)
    model = transformers.Qwen3VLForConditionalGeneration.from_pretrained(str(path), **options)
    return model.eval()


def _is_out_of_memory(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError)) or "out of memory" in str(exc).lower()


def _release_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


BACKEND = Qwen3VLBackend()
