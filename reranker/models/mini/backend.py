"""The mini backend: detects a mini model directory, estimates its footprint, loads it."""
from __future__ import annotations

from pathlib import Path

import torch

from reranker.errors import ModelLoadError
from reranker.models.base import ModelInfo, Placement
from reranker.models.mini.manifest import BACKEND_NAME, MANIFEST_NAME, load_config, read_manifest
from reranker.models.mini.scorer import MiniReranker
from reranker.models.mini.textbag import TextEncoder, minilm_path
from reranker.models.mini.vision import ImageNetClassifier, weights_file

DTYPE = "float32"
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
STORED_BYTES = 4  # the shipped weights are float32


class MiniBackend:
    """Loads a directory whose reranker.json says "backend": "mini". Weights come from packages."""

    name = BACKEND_NAME

    def matches(self, path: Path) -> bool:
        if not (path / MANIFEST_NAME).is_file():
            return False
        try:
            return read_manifest(path).get("backend") == BACKEND_NAME
        except ModelLoadError:
            return False

    def estimate_bytes(self, path: Path, dtype: str) -> int:
        if dtype not in DTYPE_BYTES:
            raise ModelLoadError(f"dtype: unknown precision {dtype!r}")
        config = load_config(path)
        stored = (minilm_path() / "model.safetensors").stat().st_size
        stored += sum(weights_file(name).stat().st_size for name in config.classifiers)
        return stored * DTYPE_BYTES[dtype] // STORED_BYTES

    def supported_dtypes(self, device: str) -> list[str]:
        return [DTYPE]

    def load(self, path: Path, placement: Placement, model_id: str) -> MiniReranker:
        config = load_config(path)
        if placement.dtype != DTYPE:
            raise ModelLoadError(f"dtype: the mini backend runs in {DTYPE} only, got {placement.dtype!r}")
        if placement.device_map is not None:
            raise ModelLoadError(f"device_map: the mini backend loads on one device, got {placement.device_map!r}")
        device = _device(placement.device)
        encoder = TextEncoder(device, config.max_text_tokens, config.cache_entries)
        classifier = ImageNetClassifier(config.classifiers, device)
        info = ModelInfo(
            id=model_id or config.id or path.name,
            name=config.name,
            version=config.version,
            backend=BACKEND_NAME,
            dtype=DTYPE,
            device=str(device),
            bytes_in_memory=encoder.parameter_bytes() + classifier.parameter_bytes(),
            path=str(path),
            follows_instruction=False,
        )
        return MiniReranker(config, info, encoder, classifier)


def _device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ModelLoadError(f"device: not a device name: {name!r}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"device: {name!r} asked for but CUDA is not available")
    if device.type not in ("cpu", "cuda"):
        raise ModelLoadError(f"device: the mini backend runs on cpu or cuda, got {name!r}")
    return device


BACKEND = MiniBackend()
