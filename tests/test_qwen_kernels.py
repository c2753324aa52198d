"""The fast path's shared kernels (compiled once per device for every version) and the pipeline's
chunking (media ramps up from small chunks so the GPU starts sooner)."""
from __future__ import annotations

import os
import threading

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from reranker.models.base import Placement  # noqa: E402
from reranker.models.qwen3vl.backend import Qwen3VLBackend  # noqa: E402
from reranker.models.qwen3vl.kernels import Ops, SharedKernels  # noqa: E402
from reranker.models.qwen3vl.layers import causal_layer  # noqa: E402
from reranker.models.qwen3vl.scorer import chunk_ranges  # noqa: E402


def fake_layer(*args, **kwargs):  # stands for a compiled layer
    return causal_layer(*args, **kwargs)


def test_kernels_compile_once_and_serve_every_version_after_exercise():
    release = threading.Event()
    built: list[int] = []
    exercised: list[Ops] = []

    def build() -> Ops:
        built.append(1)
        release.wait(10)
        return Ops(causal_layer=fake_layer)

    kernels = SharedKernels(build)
    assert not kernels.fused
    assert kernels.start(exercised.append) is True
    assert kernels.start(exercised.append) is False  # a second version joins the same compile
    assert not kernels.done.is_set() and not kernels.fused  # eager serves meanwhile
    release.set()
    assert kernels.done.wait(10)
    assert kernels.fused and kernels.ops.causal_layer is fake_layer
    assert built == [1] and len(exercised) == 1 and kernels.failed == ""


def test_failed_compile_keeps_the_eager_kernels_and_says_why():
    def exercise(ops: Ops) -> None:
        raise RuntimeError("no compiler")

    kernels = SharedKernels(lambda: Ops(causal_layer=fake_layer))
    kernels.start(exercise)
    assert kernels.done.wait(10)
    assert not kernels.fused and "no compiler" in kernels.failed


@pytest.mark.parametrize("count, first, step, sizes", [
    (64, 32, 32, [32, 32]),
    (64, 4, 32, [4, 8, 16, 32, 4]),
    (10, 4, 32, [4, 6]),
    (0, 4, 32, []),
])
def test_chunk_ranges(count, first, step, sizes):
    chunks = chunk_ranges(count, first, step)
    assert [len(c) for c in chunks] == sizes
    assert [i for c in chunks for i in c] == list(range(count))


def test_versions_on_one_device_share_the_kernels(tiny_qwen_dir):
    backend = Qwen3VLBackend()
    placement = Placement(device="cpu", dtype="float32")
    first = backend.load(tiny_qwen_dir, placement, "a")
    second = backend.load(tiny_qwen_dir, placement, "b")
    other = Qwen3VLBackend().load(tiny_qwen_dir, placement, "c")
    try:
        assert first._fast is not None and second._fast is not None and other._fast is not None  # noqa: SLF001
        assert first._fast.kernels is second._fast.kernels  # noqa: SLF001
        assert other._fast.kernels is not first._fast.kernels  # noqa: SLF001  another backend: its own
    finally:
        for scorer in (first, second, other):
            scorer.close()
