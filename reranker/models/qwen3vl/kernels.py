"""The fast path's kernels: the decoder layer and the vision tower's pieces, eager or
torch.compile'd, and SharedKernels, which compiles them once per device for every loaded version.

Sharing matters beyond compile time: two versions that score the same batch with the same
kernels give the same bf16 scores, so a same-model golden check is exact only when candidate and
stable run one kernel set. Every version waits for them in its warm-up, the first one included
(QwenScorer.warm_up says why); the eager kernels serve only if compiling fails or takes too long.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable

import torch

from reranker.models.qwen3vl.layers import causal_layer, document_layer
from reranker.models.qwen3vl.visiontower import VisionOps, compile_vision_ops


@dataclass(frozen=True)
class Ops:
    """A whole decoder layer (matrix products included), eager or compiled: compiled, one call
    launches a handful of fused kernels instead of ~30 eager operations, which matters most where
    the GPU work is small (the batch-1 prefix pass is bound by Python launching kernels)."""

    causal_layer: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = causal_layer
    document_layer: Callable[..., torch.Tensor] = document_layer
    vision: VisionOps = VisionOps()


log = logging.getLogger(__name__)

RECOMPILE_LIMIT = 64  # per function: (batch 1 | batch n) x dtypes x model sizes resident in one process


def compiled_ops(backend: str = "inductor") -> Ops:
    """torch.compile'd Ops (dynamic shapes; weights are arguments, so one compiled graph serves every
    layer of every loaded version). Dynamo keeps its compiled variants per function; the default
    limit (8) is too low once two sizes and dtypes are resident. `backend`: "eager" captures one
    graph without generating kernels (what the CPU tests check, in seconds)."""
    import torch._dynamo

    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    setattr(config, name, max(getattr(config, name), RECOMPILE_LIMIT))
    options: dict[str, Any] = {"dynamic": True, "fullgraph": True, "backend": backend}
    return Ops(torch.compile(causal_layer, **options), torch.compile(document_layer, **options),
               compile_vision_ops(options))


class SharedKernels:
    """The kernels that every version on one device uses (ops: eager until compiled). start()
    compiles them once, in a thread, and exercises them (exercise(ops)) before they serve."""

    def __init__(self, build: Callable[[], Ops] = compiled_ops) -> None:
        self.ops = Ops()
        self.done = threading.Event()
        self.failed = ""  # why compiling failed (the eager kernels then stay)
        self._build = build
        self._lock = threading.Lock()
        self._started = False

    @property
    def fused(self) -> bool:
        return self.ops.causal_layer is not causal_layer

    def start(self, exercise: Callable[[Ops], None]) -> bool:
        """Begin compiling unless already begun; True if this call began it."""
        with self._lock:
            if self._started:
                return False
            self._started = True

        def build() -> None:
            try:
                ops = self._build()
                exercise(ops)
                self.ops = ops
            except Exception as exc:  # no compiler toolchain or an unsupported case: eager stays
                self.failed = f"{type(exc).__name__}: {exc}"
                log.warning("compiling the fast path's kernels failed; the eager kernels serve: %s", self.failed)
            finally:
                self.done.set()

        threading.Thread(target=build, name="qwen-compile", daemon=True).start()
        return True
