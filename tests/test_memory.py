"""The placement plan against fake memory figures (pure logic: no GPU needed)."""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from reranker.errors import InputError, InsufficientMemory, ModelLoadError
from reranker.models.base import Placement
from reranker.models.memory import (
    GIB,
    GpuMemory,
    Headroom,
    ShardedPlacement,
    SystemMemoryProbe,
    plan_placements,
)

BYTES_PER_PARAM = {"bfloat16": 2, "float16": 2, "float32": 4}
NO_HEADROOM = Headroom(fraction=0.0, gpu_reserve_bytes=0, host_reserve_bytes=0)


@dataclass
class FakeProbe:
    gpu_free_gib: list[float] = field(default_factory=list)
    host_gib: float = 64.0

    def gpus(self) -> list[GpuMemory]:
        return [
            GpuMemory(index=i, free_bytes=int(free * GIB), total_bytes=80 * GIB)
            for i, free in enumerate(self.gpu_free_gib)
        ]

    def host_available_bytes(self) -> int:
        return int(self.host_gib * GIB)


def model_of(params_billion: float):
    return lambda dtype: int(params_billion * 1e9 * BYTES_PER_PARAM[dtype])


def dtypes(device: str) -> list[str]:
    return ["bfloat16", "float16", "float32"] if device.startswith("cuda") else ["float32"]


def steps(plan: list[Placement]) -> list[tuple[str, str]]:
    return [(p.device, p.dtype) for p in plan]


def test_single_gpu_fits_every_dtype_then_cpu() -> None:
    plan = plan_placements(model_of(2), dtypes, FakeProbe([40.0]), "auto")
    assert steps(plan) == [
        ("cuda:0", "bfloat16"),
        ("cuda:0", "float16"),
        ("cuda:0", "float32"),
        ("cpu", "float32"),
    ]


def test_gpu_too_small_for_fp32_keeps_half_precision() -> None:
    # 2B params: 3.7 GiB in half, 7.5 GiB in fp32; 8 GiB free minus 10% and 1 GiB reserve = 6.2 GiB
    plan = plan_placements(model_of(2), dtypes, FakeProbe([8.0], host_gib=32.0), "auto")
    assert steps(plan) == [("cuda:0", "bfloat16"), ("cuda:0", "float16"), ("cpu", "float32")]


def test_gpu_too_small_falls_back_to_cpu() -> None:
    plan = plan_placements(model_of(2), dtypes, FakeProbe([2.1], host_gib=32.0), "auto")
    assert steps(plan) == [("cpu", "float32")]


def test_headroom_reserve_decides_a_tight_fit() -> None:
    probe = FakeProbe([4.0], host_gib=0.0)  # 2B in bf16 is 3.73 GiB
    assert steps(plan_placements(model_of(2), dtypes, probe, "auto", NO_HEADROOM))[0] == ("cuda:0", "bfloat16")
    with pytest.raises(InsufficientMemory):
        plan_placements(model_of(2), dtypes, probe, "auto")


def test_two_gpus_picks_the_emptier_one() -> None:
    plan = plan_placements(model_of(2), dtypes, FakeProbe([10.0, 30.0]), "auto")
    assert [p.device for p in plan if p.device != "cpu"] == ["cuda:1", "cuda:1", "cuda:1"]
    assert all(type(p) is Placement for p in plan)


def test_too_big_for_one_gpu_is_sharded_with_max_memory_from_free_figures() -> None:
    # 8B in bf16 = 14.9 GiB; each GPU has 12 GiB free -> 9.8 GiB usable each after headroom
    plan = plan_placements(model_of(8), dtypes, FakeProbe([12.0, 12.0], host_gib=4.0), "auto")
    assert len(plan) == 2
    for step, dtype in zip(plan, ["bfloat16", "float16"]):
        assert isinstance(step, ShardedPlacement)
        assert (step.device, step.dtype, step.device_map) == ("auto", dtype, None)
        usable = int(12.0 * GIB * 0.9) - GIB
        assert step.max_memory == {0: usable, 1: usable}


def test_sharding_needs_slack_beyond_the_bare_total() -> None:
    # 2 x 9.5 GiB free -> 2 x 7.55 GiB usable = 15.1 GiB: above 14.9 GiB, below 14.9 x 1.15
    plan = plan_placements(model_of(8), dtypes, FakeProbe([9.5, 9.5], host_gib=64.0), "auto")
    assert steps(plan) == [("cpu", "float32")]
    no_slack = Headroom(shard_slack=0.0)
    assert isinstance(plan_placements(model_of(8), dtypes, FakeProbe([9.5, 9.5]), "auto", no_slack)[0], ShardedPlacement)


def test_sharding_leaves_out_a_gpu_with_no_room() -> None:
    plan = plan_placements(model_of(8), dtypes, FakeProbe([12.0, 12.0, 0.5], host_gib=4.0), "auto")
    assert isinstance(plan[0], ShardedPlacement)
    assert sorted(plan[0].max_memory) == [0, 1]


def test_nothing_fits_names_the_estimate_and_the_free_memory() -> None:
    with pytest.raises(InsufficientMemory) as caught:
        plan_placements(model_of(2.3), dtypes, FakeProbe([2.1], host_gib=1.2), "auto")
    message = str(caught.value)
    assert "~4.3 GiB in bfloat16" in message
    assert "~8.6 GiB in float32" in message
    assert "GPU 0 has 2.1 GiB free" in message
    assert "host has 1.2 GiB available" in message
    assert isinstance(caught.value, ModelLoadError)


def test_cpu_preference_skips_gpus() -> None:
    probe = FakeProbe([40.0, 40.0])
    assert steps(plan_placements(model_of(2), dtypes, probe, "cpu")) == [("cpu", "float32")]


def test_cpu_preference_without_room_does_not_mention_gpus() -> None:
    with pytest.raises(InsufficientMemory) as caught:
        plan_placements(model_of(2), dtypes, FakeProbe([40.0], host_gib=1.0), "cpu")
    assert "GPU" not in str(caught.value)


def test_cuda_preference_never_falls_back_to_cpu() -> None:
    plan = plan_placements(model_of(2), dtypes, FakeProbe([40.0]), "cuda")
    assert all(p.device == "cuda:0" for p in plan)
    with pytest.raises(InsufficientMemory) as caught:
        plan_placements(model_of(2), dtypes, FakeProbe([1.0]), "cuda")
    assert "host" not in str(caught.value)


def test_cuda_preference_without_a_gpu_is_refused() -> None:
    with pytest.raises(ModelLoadError, match="no CUDA GPU"):
        plan_placements(model_of(2), dtypes, FakeProbe([]), "cuda")


def test_unknown_device_preference_is_refused() -> None:
    with pytest.raises(InputError, match="'tpu'"):
        plan_placements(model_of(2), dtypes, FakeProbe([]), "tpu")


def test_system_probe_reads_this_machine() -> None:
    probe = SystemMemoryProbe()
    assert probe.host_available_bytes() > 0
    for gpu in probe.gpus():
        assert 0 <= gpu.free_bytes <= gpu.total_bytes
