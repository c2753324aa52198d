"""The mini model's manifest (reranker.json): which classifier, how many labels, which weights."""
from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from reranker.errors import ModelLoadError

MANIFEST_NAME = "reranker.json"
BACKEND_NAME = "mini"
CLASSIFIERS = ("efficientnet-lite0", "efficientnet-lite2")
LABEL_WEIGHTINGS = ("uniform", "probability")
INTERACTIONS = ("mean", "late")
TEXT_UNITS = ("whole", "clauses")


@dataclass(frozen=True)
class MiniConfig:
    """Every option of a mini model version; the manifest overrides these defaults."""

    backend: str = BACKEND_NAME
    id: str | None = None
    name: str = "mini"
    version: str = "0"
    description: str = ""
    classifiers: tuple[str, ...] = ("efficientnet-lite0",)  # several: an averaged ensemble
    labels_per_image: int = 3
    label_weighting: str = "uniform"  # how top labels share label_weight: equally or by probability
    min_label_probability: float = 0.0
    flip_average: bool = False  # average the classifier over the image and its mirror
    frames_per_video: int = 2
    colours_per_image: int = 2
    min_colour_fraction: float = 0.15
    text_weight: float = 1.0
    label_weight: float = 1.0
    colour_weight: float = 0.25
    # "mean": cosine of each side's weighted-mean vector; "late": every query phrase takes its best
    # match among the document's phrases, and the query's phrases are averaged by weight
    interaction: str = "mean"
    late_weight_power: float = 0.5  # late: a match counts (phrase weight / heaviest weight) ** this
    head_nouns: bool = False  # also a multi-word label's last word ("tiger cat" -> "cat")
    text_units: str = "whole"  # "clauses": texts split at . ! ? ; : into separately matched phrases
    score_center: float = 0.35  # cosine mapped to 0.5
    score_scale: float = 8.0  # logistic slope of the cosine -> [0, 1] mapping
    cache_entries: int = 2048
    max_text_tokens: int = 256
    # Fault injection, for rollout tests and bench/rollout_verdicts.py (all off by default):
    fault_slowdown: float = 0.0  # every score() call takes (1 + this) x its time (0.3 = 30 % slower)
    fault_score_shift: float = 0.0  # added to every score (clamped to [0, 1])
    fault_error_rate: float = 0.0  # share of queries (by a hash of the query) whose scoring raises

    def __post_init__(self) -> None:
        _require(self.backend == BACKEND_NAME, "backend", self.backend)
        _require(
            bool(self.classifiers)
            and len(set(self.classifiers)) == len(self.classifiers)
            and all(name in CLASSIFIERS for name in self.classifiers),
            "classifiers",
            list(self.classifiers),
        )
        _require(self.label_weighting in LABEL_WEIGHTINGS, "label_weighting", self.label_weighting)
        _require(self.interaction in INTERACTIONS, "interaction", self.interaction)
        _require(self.text_units in TEXT_UNITS, "text_units", self.text_units)
        _require(0.0 <= self.late_weight_power <= 4.0, "late_weight_power", self.late_weight_power)
        _require(1 <= self.labels_per_image <= 20, "labels_per_image", self.labels_per_image)
        _require(0.0 <= self.min_label_probability < 1.0, "min_label_probability", self.min_label_probability)
        _require(1 <= self.frames_per_video <= 16, "frames_per_video", self.frames_per_video)
        _require(0 <= self.colours_per_image <= 5, "colours_per_image", self.colours_per_image)
        _require(0.0 <= self.min_colour_fraction <= 1.0, "min_colour_fraction", self.min_colour_fraction)
        for key in ("text_weight", "label_weight", "colour_weight"):
            _require(getattr(self, key) >= 0.0, key, getattr(self, key))
        _require(self.score_scale > 0.0, "score_scale", self.score_scale)
        _require(self.cache_entries >= 1, "cache_entries", self.cache_entries)
        _require(8 <= self.max_text_tokens <= 512, "max_text_tokens", self.max_text_tokens)
        _require(0.0 <= self.fault_slowdown <= 100.0, "fault_slowdown", self.fault_slowdown)
        _require(-1.0 <= self.fault_score_shift <= 1.0, "fault_score_shift", self.fault_score_shift)
        _require(0.0 <= self.fault_error_rate <= 1.0, "fault_error_rate", self.fault_error_rate)


def _require(ok: bool, key: str, value: object) -> None:
    if not ok:
        raise ModelLoadError(f"{MANIFEST_NAME}: bad value for {key!r}: {value!r}")


def read_manifest(directory: Path) -> dict[str, Any]:
    """The manifest as a dict; ModelLoadError when missing or not a JSON object."""
    path = directory / MANIFEST_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{path}: cannot read the manifest: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path}: the manifest must be a JSON object, got {type(data).__name__}")
    return data


def load_config(directory: Path) -> MiniConfig:
    """Parse and validate a mini manifest; unknown keys and wrong types are errors."""
    data = read_manifest(directory)
    known = {f.name: f for f in fields(MiniConfig)}
    defaults = MiniConfig()
    for key, value in data.items():
        if key not in known:
            raise ModelLoadError(f"{MANIFEST_NAME}: unknown key {key!r}")
        expected = getattr(defaults, key)
        if expected is None:
            _require(isinstance(value, str), key, value)
        elif isinstance(expected, tuple):
            _require(isinstance(value, list) and all(isinstance(v, str) for v in value), key, value)
        elif isinstance(expected, bool):
            _require(isinstance(value, bool), key, value)
        elif isinstance(expected, float):
            _require(isinstance(value, (int, float)) and not isinstance(value, bool), key, value)
        else:
            _require(type(value) is type(expected), key, value)
    return MiniConfig(**{key: _convert(getattr(defaults, key), value) for key, value in data.items()})


def _convert(default: object, value: Any) -> Any:
    if isinstance(default, float):
        return float(value)
    if isinstance(default, tuple):
        return tuple(value)
    return value
