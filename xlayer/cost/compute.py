"""Time of one operator on one accelerator: a hierarchical roofline.

For each operator the time is the largest of its compute time and its traffic time at each
memory level, plus a fixed per-kernel overhead:

    t = max(F / R_compute, B_hbm / BW_hbm, B_l2 / BW_l2) + t_kernel

* GEMM compute rate R = peak(precision) · matmul_efficiency · sustained_over_best_matmul · u,
  catalog MAMF (the best, burst matmul rate) × the power-limited steady-state/best ratio
  measured on our H200 (benchmarks/data/h200-sustained-gemm.json: 40 s of back-to-back fp16
  GEMMs hold 0.86 of the best rate at the 700 W cap, SM clock ~1.4 GHz) × wave quantization
  u: the output is cut into tiles (best of 256×128, 128×256, 128×128), tiles run in waves of
  one per SM, u = m·n·batch / (waves · SMs · tile area). A training step or a busy server
  keeps the tensor cores loaded for seconds, so the steady-state rate is the one that
  applies; isolated kernels timed one at a time (the H200 kernel file) run nearer the burst
  rate and are predicted with ``Calibration.isolated()`` (ratio isolated_over_best_matmul).
* Flash attention rate R = R_gemm · ρ, ρ = ρ_max · s/(s+s½) · W/(W+W½), with W the number of
  128-row query tiles per SM (fitted to the H200 SDPA measurements); its backward runs at
  2.5/3.0 of that (measured backward/forward time ratio 3.0 for 2.5× the FLOPs).
* Element-wise kernels: B / (HBM bandwidth · efficiency) or F / vector rate.
* GEMM L2 traffic with 256×128 output tiles: every tile streams its A and B panels from L2,
  B_l2 = m·n·k·(1/256 + 1/128)·bytes_per_element.

Works on scalars and numpy arrays alike.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from xlayer.hardware.spec import Accelerator
from xlayer.workload.operators import Op

TILE_M, TILE_N = 256, 128
TILES = ((256, 128), (128, 256), (128, 128))


@dataclass(frozen=True)
class Calibration:
    sustained_over_best_matmul: float
    isolated_over_best_matmul: float
    eager_isolated_kernel_s: float
    flash_rel_max: float
    flash_seq_half: float
    flash_tiles_half: float
    flash_bwd_time_over_fwd: float
    fp8_over_bf16_matmul_efficiency: float
    nccl_ctas: int

    def isolated(self) -> "Calibration":
        """The calibration for kernels timed one at a time (eager PyTorch, CUDA events around
        one op, as in the H200 kernel file): burst GEMM rate instead of the power-limited one."""
        return replace(self, sustained_over_best_matmul=self.isolated_over_best_matmul)


@lru_cache(maxsize=1)
def calibration() -> Calibration:
    path = Path(__file__).resolve().parent.parent / "data" / "calibration.yaml"
    data = yaml.safe_load(path.read_text())
    data.pop("source", None)
    return Calibration(**data)


def gemm_rate_flops_per_s(acc: Accelerator, precision: str, cal: Calibration | None = None) -> float:
    """Steady-state GEMM rate: peak(precision) · matmul_efficiency · sustained/best (parts
    without a power-capped clock, ``acc.power_limited_matmul`` False: isolated/best)
    (× the measured fp8/bf16 efficiency ratio when the part has a faster 8/4-bit path)."""
    cal = cal or calibration()
    ratio = cal.sustained_over_best_matmul if acc.power_limited_matmul else cal.isolated_over_best_matmul
    rate = acc.peak(precision) * acc.matmul_efficiency * ratio
    if precision in ("fp8", "fp4", "int8", "int4") and acc.peak(precision) > acc.peak("bf16"):
        rate *= cal.fp8_over_bf16_matmul_efficiency
    return rate


def flash_relative_efficiency(acc: Accelerator, heads_x_batch: Any, seq_q: Any,
                              cal: Calibration | None = None) -> Any:
    """ρ = ρ_max · s/(s+s½) · W/(W+W½), W = b·heads·s/128/SMs."""
    cal = cal or calibration()
    w = heads_x_batch * seq_q / 128.0 / acc.compute_units
    return cal.flash_rel_max * seq_q / (seq_q + cal.flash_seq_half) * w / (w + cal.flash_tiles_half)


def wave_utilization(m: Any, n: Any, batch: Any, sms: int) -> Any:
    """Fraction of SM time doing useful tiles: best over ``TILES`` of
    m·n·batch / (⌈tiles/SMs⌉ · SMs · tm · tn), tiles = ⌈m/tm⌉·⌈n/tn⌉·batch.
    Skinny GEMMs (m < 128, e.g. decoding) run split-K/GEMV kernels that fill every SM; only
    the padding of m to the 16-row MMA granule is lost: m / (16·⌈m/16⌉)."""
    if not (isinstance(m, np.ndarray) or isinstance(n, np.ndarray) or isinstance(batch, np.ndarray)):
        if m < 128:
            return m / (16.0 * math.ceil(m / 16.0))
        b_: float = 0.0
        for tm, tn in TILES:
            tiles = math.ceil(m / tm) * math.ceil(n / tn) * batch
            b_ = max(b_, m * n * batch / (math.ceil(tiles / sms) * sms * tm * tn))
        return b_
    best: Any = 0.0
    for tm, tn in TILES:
        tiles = np.ceil(m / tm) * np.ceil(n / tn) * batch
        waves = np.ceil(tiles / sms)
        best = np.maximum(best, m * n * batch / (waves * sms * tm * tn))
    skinny = m / (16.0 * np.ceil(m / 16.0))
    out = np.where(np.asarray(m) < 128, skinny, best)
    return out if np.ndim(out) else float(out)


@dataclass(frozen=True)
class OpTime:
    name: str
    kind: str
    time_s: Any
    compute_s: Any
    hbm_s: Any
    l2_s: Any
    bound: str
    flops: Any
    bytes: Any


_BW_CACHE: dict[int, tuple[Accelerator, float, float]] = {}


def _bandwidths(acc: Accelerator) -> tuple[float, float]:
    """(achievable HBM, achievable L2 or 0) bytes/s of ``acc`` (memoised per object)."""
    hit = _BW_CACHE.get(id(acc))
    if hit is None or hit[0] is not acc:
        l2 = next((m.achievable_bytes_per_s for m in acc.memory if m.level == "l2"), 0.0)
        hit = (acc, acc.hbm.achievable_bytes_per_s, l2)
        if len(_BW_CACHE) > 256:
            _BW_CACHE.clear()
        _BW_CACHE[id(acc)] = hit
    return hit[1], hit[2]


def op_time(op: Op, acc: Accelerator, cal: Calibration | None = None,
            kernel_overhead_s: float | None = None) -> OpTime:
    """Roofline time of ``op`` (see module docstring)."""
    cal = cal or calibration()
    overhead = acc.kernel_overhead_s if kernel_overhead_s is None else kernel_overhead_s
    hbm_bw, l2_bw = _bandwidths(acc)
    l2_s: Any = 0.0
    if op.kind == "gemm":
        rate = gemm_rate_flops_per_s(acc, op.precision, cal)
        compute = op.flops / (rate * wave_utilization(op.m, op.n, op.batch, acc.compute_units))
        if l2_bw:
            elem = 1 if op.precision in ("fp8", "int8", "fp4", "int4") else 2
            l2_bytes = op.m * op.n * op.k * op.batch * (1.0 / TILE_M + 1.0 / TILE_N) * elem
            l2_s = l2_bytes / l2_bw
    elif op.kind == "attention":
        rho = flash_relative_efficiency(acc, op.heads, op.seq_q, cal)
        if op.name.endswith(".bwd"):
            rho = rho * 2.5 / cal.flash_bwd_time_over_fwd
        compute = op.flops / (gemm_rate_flops_per_s(acc, op.precision, cal) * rho)
    else:
        compute = op.flops / acc.vector_flops_per_s
    hbm = op.bytes / hbm_bw
    if not (isinstance(compute, np.ndarray) or isinstance(hbm, np.ndarray) or isinstance(l2_s, np.ndarray)):
        terms = {"compute": compute, "hbm": hbm, "l2": l2_s}
        bound = max(terms, key=terms.get)
        return OpTime(op.name, op.kind, terms[bound] + overhead, compute, hbm, l2_s, bound, op.flops, op.bytes)
    t = np.maximum(np.maximum(compute, hbm), l2_s) + overhead
    if np.ndim(t) == 0:
        terms = {"compute": float(compute), "hbm": float(hbm), "l2": float(l2_s)}
        bound = max(terms, key=terms.get)
        t = float(t)
    else:
        bound = "mixed"
    return OpTime(op.name, op.kind, t, compute, hbm, l2_s, bound, op.flops, op.bytes)


def ops_time_s(ops: list[Op], acc: Accelerator, cal: Calibration | None = None) -> Any:
    """Sum of the roofline times of ``ops`` (they run one after another on one stream)."""
    total: Any = 0.0
    for op in ops:
        total = total + op_time(op, acc, cal).time_s
    return total
