"""Memory probing and the placement plan: which (device, dtype) steps fit, in fallback order."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

from reranker.errors import InputError, InsufficientMemory, ModelLoadError
from reranker.models.base import Placement

GIB = 1024**3
DEVICE_PREFS = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class GpuMemory:
    index: int
    free_bytes: int
    total_bytes: int


class MemoryProbe(Protocol):
    def gpus(self) -> list[GpuMemory]:
        """Free and total memory of every visible GPU (empty without CUDA)."""
        ...

    def host_available_bytes(self) -> int:
        """RAM the process can still use without swapping."""
        ...


class SystemMemoryProbe:
    """Reads the real machine: torch.cuda.mem_get_info per device, psutil for the host."""

    def gpus(self) -> list[GpuMemory]:
        import torch

        if not torch.cuda.is_available():
            return []
        found = []
        for index in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(index)
            found.append(GpuMemory(index=index, free_bytes=int(free), total_bytes=int(total)))
        return found

    def host_available_bytes(self) -> int:
        import psutil

        return int(psutil.virtual_memory().available)


@dataclass(frozen=True)
class ShardedPlacement(Placement):
    """Spread over several GPUs: load with device_map="auto" and this max_memory (bytes per GPU)."""

    max_memory: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Headroom:
    """Room kept free: a fraction of free memory plus a fixed reserve for activations.

    A sharded load also needs shard_slack x the model on top: accelerate keeps the largest
    layer's size free on the first GPU and balances layers unevenly (on 2 H200s a 320 MB model
    with a 66 MB lm_head spilled to disk below ~1.3x its size in total max_memory).
    """

    fraction: float = 0.10
    gpu_reserve_bytes: int = 1 * GIB
    host_reserve_bytes: int = GIB // 2
    shard_slack: float = 0.15

    def usable(self, free_bytes: int, reserve_bytes: int) -> int:
        return max(0, int(free_bytes * (1.0 - self.fraction)) - reserve_bytes)


def format_gib(n_bytes: int) -> str:
    return f"{n_bytes / GIB:.1f} GiB"


def plan_placements(
    estimate_bytes_for: Callable[[str], int],
    dtypes_for_device: Callable[[str], list[str]],
    probe: MemoryProbe,
    device_pref: str = "auto",
    headroom: Headroom = Headroom(),
) -> list[Placement]:
    """The fallback chain that fits: GPU dtypes best first (one GPU, else sharded), then CPU."""
    if device_pref not in DEVICE_PREFS:
        raise InputError(f"device must be one of {', '.join(DEVICE_PREFS)}, got {device_pref!r}")
    gpus = probe.gpus() if device_pref != "cpu" else []
    if device_pref == "cuda" and not gpus:
        raise ModelLoadError("device 'cuda' was requested but no CUDA GPU is available")
    estimates: dict[str, int] = {}

    def estimate(dtype: str) -> int:
        if dtype not in estimates:
            estimates[dtype] = estimate_bytes_for(dtype)
        return estimates[dtype]

    plan: list[Placement] = []
    if gpus:
        for dtype in dtypes_for_device("cuda"):
            step = _gpu_step(dtype, estimate(dtype), gpus, headroom)
            if step is not None:
                plan.append(step)
    host_free = probe.host_available_bytes() if device_pref != "cuda" else None
    if host_free is not None:
        usable = headroom.usable(host_free, headroom.host_reserve_bytes)
        for dtype in dtypes_for_device("cpu"):
            if estimate(dtype) <= usable:
                plan.append(Placement(device="cpu", dtype=dtype))
    if not plan:
        raise InsufficientMemory(_shortfall_message(estimates, gpus, host_free))
    return plan


def _gpu_step(dtype: str, needed: int, gpus: list[GpuMemory], headroom: Headroom) -> Placement | None:
    usable = {gpu.index: headroom.usable(gpu.free_bytes, headroom.gpu_reserve_bytes) for gpu in gpus}
    roomiest = max(gpus, key=lambda gpu: (usable[gpu.index], -gpu.index))
    if needed <= usable[roomiest.index]:
        return Placement(device=f"cuda:{roomiest.index}", dtype=dtype)
    shares = {index: room for index, room in usable.items() if room > 0}
    if len(shares) > 1 and needed * (1.0 + headroom.shard_slack) <= sum(shares.values()):
        return ShardedPlacement(device="auto", dtype=dtype, max_memory=shares)
    return None


def _shortfall_message(
    estimates: dict[str, int], gpus: list[GpuMemory], host_free: int | None
) -> str:
    needs = ", ".join(f"~{format_gib(n)} in {dtype}" for dtype, n in estimates.items())
    rooms = [f"GPU {gpu.index} has {format_gib(gpu.free_bytes)} free" for gpu in gpus]
    if host_free is not None:
        rooms.append(f"host has {format_gib(host_free)} available")
    return f"model needs {needs} (plus headroom); {', '.join(rooms)}"


def return_freed_memory() -> None:
    """After a model is dropped: collect it, empty the CUDA cache, and hand freed heap pages back
    to the OS (glibc's malloc_trim), so the process RSS really falls after an unload."""
    import ctypes
    import ctypes.util
    import gc
    import sys

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
    libc_name = ctypes.util.find_library("c")
    if libc_name and sys.platform.startswith("linux"):
        libc = ctypes.CDLL(libc_name)
        if hasattr(libc, "malloc_trim"):
            libc.malloc_trim(0)
