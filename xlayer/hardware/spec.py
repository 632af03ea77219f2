"""Typed, frozen hardware specs: an accelerator, its memory levels and links, and a system.

Every number is in SI base units (bytes, bytes per second, FLOP per second, seconds, watts).
Catalog files (``catalog/*.yaml``) are parsed into these models; each file carries a
``sources`` map saying where each number comes from.
"""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, model_validator

Precision = Literal["fp32", "tf32", "bf16", "fp16", "fp8", "mxfp8", "nvfp4", "fp4", "int8", "int4"]
PRECISIONS: tuple[str, ...] = ("fp32", "tf32", "bf16", "fp16", "fp8", "mxfp8", "nvfp4", "fp4", "int8", "int4")
MemoryLevelName = Literal["register", "l1", "l2", "hbm"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MemoryLevel(_Frozen):
    """One level of the memory hierarchy, totals for the whole chip.

    ``bandwidth_bytes_per_s`` is the datasheet (or microbenchmark) peak; ``efficiency`` the
    fraction of it a streaming kernel achieves (measured, see the catalog's sources).
    """

    level: MemoryLevelName
    capacity_bytes: PositiveFloat
    bandwidth_bytes_per_s: PositiveFloat
    latency_s: PositiveFloat
    efficiency: float = Field(1.0, gt=0.0, le=1.0)

    @property
    def achievable_bytes_per_s(self) -> float:
        return self.bandwidth_bytes_per_s * self.efficiency


class BusBandwidthCurve(_Frozen):
    """Measured NCCL bus bandwidth of one collective against its message size (nccl-tests
    ``busbw``: algbw · 2(n−1)/n for all-reduce, · (n−1)/n for all-gather and reduce-scatter;
    size = the whole buffer), on ``ranks`` accelerators of one scale-up domain."""

    sizes_bytes: tuple[PositiveFloat, ...]
    busbw_bytes_per_s: tuple[PositiveFloat, ...]
    ranks: PositiveInt = 8

    @model_validator(mode="after")
    def _check(self) -> "BusBandwidthCurve":
        if len(self.sizes_bytes) < 2 or len(self.sizes_bytes) != len(self.busbw_bytes_per_s):
            raise ValueError("a curve needs >= 2 points and one busbw per size")
        if any(b <= a for a, b in zip(self.sizes_bytes, self.sizes_bytes[1:])):
            raise ValueError("sizes_bytes must increase")
        return self


class Link(_Frozen):
    """A network attachment of one accelerator.

    ``bandwidth_bytes_per_s`` is per direction per accelerator (NVLink: all links together;
    InfiniBand: the accelerator's own NIC). ``efficiency`` is the fraction of it a large
    collective achieves (NCCL bus bandwidth / link bandwidth, from published measurements);
    ``latency_s`` is the per-step latency α of a ring/tree algorithm. ``measured`` holds
    nccl-tests curves per collective (all_reduce, all_gather, reduce_scatter) where published
    runs exist; a collective with a curve is timed from it (xlayer.cost.collectives).
    """

    name: str
    bandwidth_bytes_per_s: PositiveFloat
    latency_s: PositiveFloat
    efficiency: float = Field(gt=0.0, le=1.0)
    measured: dict[Literal["all_reduce", "all_gather", "reduce_scatter"], BusBandwidthCurve] = {}


class Accelerator(_Frozen):
    """One accelerator (one GPU of a rack for rack-scale parts such as GB200 NVL72)."""

    name: str
    aliases: tuple[str, ...] = ()
    vendor: str
    year: int
    compute_units: PositiveInt
    clock_hz: PositiveFloat
    tdp_w: PositiveFloat
    peak_flops_per_s: dict[Precision, Optional[PositiveFloat]]
    matmul_efficiency: float = Field(gt=0.0, le=1.0)
    # True for parts whose clock is capped by board power under sustained tensor-core load
    # (every GPU): the steady-state GEMM rate is calibration.yaml's sustained_over_best_matmul
    # of the best (burst) rate; False runs at the burst rate (isolated_over_best_matmul)
    power_limited_matmul: bool = True
    vector_flops_per_s: PositiveFloat
    kernel_overhead_s: PositiveFloat
    # compute units a running collective occupies (NCCL/RCCL: one CTA per channel); None =
    # the calibration default (calibration.yaml: nccl_ctas); 0 for dedicated comm engines
    comm_compute_units: Optional[int] = Field(None, ge=0)
    memory: tuple[MemoryLevel, ...]
    scale_up: Link
    scale_up_domain: PositiveInt
    scale_out: Link
    sources: dict[str, str]
    # a board power limit below the TDP (a power-capped part, system.overrides.power_limit_w)
    power_limit_w: Optional[PositiveFloat] = None
    # special-function-unit exponentials per clock per SM (flash-attention softmax)
    exp_per_clk_per_sm: PositiveFloat = 16.0
    # 32-bit integer multiply-add / add / logical results per clock per SM (CUDA C++ Programming
    # Guide, "Arithmetic Instructions" throughput table: 64 for compute capability 7.x-10.x);
    # the integer work of a random-number generator (dropout masks) runs at this rate; None for
    # a part with no such figure (the superconducting concept): its draws are not costed
    int32_ops_per_clk_per_sm: Optional[PositiveFloat] = 64.0
    # fraction of the HBM peak a GEMM with few rows reaches while it streams its weights (NVIDIA's
    # published cuBLAS timings at m <= 16: benchmarks/gemm_stream.py); None: the HBM level's copy
    # efficiency. Prices the memory term of every GEMM (it binds only when the GEMM is memory-bound)
    gemm_stream_efficiency: Optional[float] = Field(None, gt=0.0, le=1.0)
    # accelerator <-> host memory bandwidth per direction (activation offloading); None: not modelled
    host_link_bytes_per_s: Optional[PositiveFloat] = None
    # the host CPU that runs the serving engine's Python loop: "grace" (GB200/GB300 superchips)
    # or None (x86 HGX/DGX hosts); xlayer/data/serving.yaml grace_host_slowdown
    host_cpu: Optional[str] = None

    @model_validator(mode="after")
    def _check(self) -> "Accelerator":
        levels = [m.level for m in self.memory]
        if "hbm" not in levels:
            raise ValueError("memory must contain an 'hbm' level")
        if len(set(levels)) != len(levels):
            raise ValueError(f"memory levels repeat: {levels}")
        if self.peak_flops_per_s.get("bf16") is None and self.peak_flops_per_s.get("fp16") is None:
            raise ValueError("peak_flops_per_s needs bf16 or fp16")
        return self

    def level(self, name: str) -> MemoryLevel:
        for m in self.memory:
            if m.level == name:
                return m
        raise KeyError(name)

    @property
    def hbm(self) -> MemoryLevel:
        return self.level("hbm")

    def peak(self, precision: str) -> float:
        """Dense peak FLOP/s for ``precision``; lower precisions fall back to the next wider
        one the part supports (fp8 on A100 runs as 16-bit)."""
        order = {"fp4": ["fp4", "fp8", "bf16", "fp16"], "fp8": ["fp8", "bf16", "fp16"],
                 "mxfp8": ["mxfp8"], "nvfp4": ["nvfp4"],
                 "int8": ["int8", "fp8", "bf16"], "int4": ["int4", "int8", "fp8", "bf16"],
                 "bf16": ["bf16", "fp16"], "fp16": ["fp16", "bf16"], "tf32": ["tf32", "fp32"],
                 "fp32": ["fp32"]}[precision]
        for p in order:
            v = self.peak_flops_per_s.get(p)
            if v:
                return v
        raise KeyError(precision)


class System(_Frozen):
    """How many accelerators, how they are grouped into scale-up domains, and the network."""

    accelerator: Accelerator
    count: PositiveInt
    scale_up_size: PositiveInt

    @property
    def job_domain_size(self) -> int:
        """Accelerators of the job in one scale-up domain: the job is spread evenly over its
        domains, so the largest divisor of ``count`` not above ``scale_up_size`` (256 GPUs on
        72-GPU NVL72 racks run as 4 x 64, as NVIDIA's NVL72 benchmarks allocate whole trays;
        144 as 2 x 72; a job smaller than a domain has it whole)."""
        if self.count <= self.scale_up_size:
            return self.count
        return max(d for d in range(1, self.scale_up_size + 1) if self.count % d == 0)

    @property
    def scale_up(self) -> Link:
        return self.accelerator.scale_up

    @property
    def scale_out(self) -> Link:
        return self.accelerator.scale_out
