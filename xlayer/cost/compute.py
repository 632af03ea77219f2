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
* Decode attention (a FlashDecoding kernel over the KV cache) at the sustained 16-bit GEMM
  rate, streaming the cache from HBM.
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
from typing import Any

import numpy as np

from xlayer.hardware.spec import Accelerator
from xlayer.hardware.variant import power_capped_clock_ratio
from xlayer.workload.precision import LOW_PRECISION, gemm_input_bytes
from xlayer.safe_yaml import package_constants
from xlayer.workload.operators import Num, Op
from xlayer.workload.transformer import DECODE_MAX_NEW

TILE_M, TILE_N = 256, 128
TILES = ((256, 128), (128, 256), (128, 128))
# swap-AB split-K GEMM kernels (wave_utilization): m rows on the MMA's N side (16-row granule,
# blocks of at most one 256-wide Hopper wgmma N tile), n on its M side in 128-row tiles, K
# split over idle SMs in chunks of at least SPLITK_MIN_K. SPLITK_MIN_K from the m = 128 GEMMs
# (hidden >= 4096) of shared/validation/kernels/h200-pytorch-kernels.json: MAPE 17.0 % without
# split, 10.6 % for any chunk of 128-1024 (9.6 % at 2048); 1024 is the largest value of the plateau
SKINNY_MAX_M, SKINNY_GRANULE, SKINNY_TILE_N, SKINNY_MAX_BLOCKS = 256, 16, 128, 4
SPLITK_MIN_K = 1024


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
    fp4_over_bf16_matmul_efficiency: float
    nccl_ctas: int

    def isolated(self) -> "Calibration":
        """The calibration for kernels timed one at a time (eager PyTorch, CUDA events around
        one op, as in the H200 kernel file): burst GEMM rate instead of the power-limited one."""
        return replace(self, sustained_over_best_matmul=self.isolated_over_best_matmul)


def calibration() -> Calibration:
    """The constants of ``xlayer/data/calibration.yaml`` (each with its source there)."""
    return package_constants(Calibration, "calibration.yaml")


def gemm_rate_flops_per_s(acc: Accelerator, precision: str, cal: Calibration | None = None) -> float:
    """Steady-state GEMM rate: peak(precision) · matmul_efficiency · sustained/best (parts
    without a power-capped clock, ``acc.power_limited_matmul`` False: isolated/best)
    (× the measured fp8/bf16 efficiency ratio when the part has a faster 8-bit path, the
    measured fp4/bf16 ratio when it has a native 4-bit one: calibration.yaml)."""
    cal = cal or calibration()
    key = (id(acc), precision, id(cal))
    hit = _RATE_CACHE.get(key)
    if hit is not None and hit[0] is acc and hit[1] is cal:
        return hit[2]
    rate = _gemm_rate(acc, precision, cal)
    if len(_RATE_CACHE) > 512:
        _RATE_CACHE.clear()
    _RATE_CACHE[key] = (acc, cal, rate)
    return rate


_RATE_CACHE: dict[tuple[int, str, int], tuple[Accelerator, Calibration, float]] = {}


def _gemm_rate(acc: Accelerator, precision: str, cal: Calibration) -> float:
    """:func:`gemm_rate_flops_per_s` computed (the public function memoises it per object)."""
    ratio = cal.sustained_over_best_matmul if acc.power_limited_matmul else cal.isolated_over_best_matmul
    rate = acc.peak(precision) * acc.matmul_efficiency * ratio
    if precision in ("nvfp4", "fp4") and acc.peak(precision) > acc.peak("fp8"):
        rate *= cal.fp4_over_bf16_matmul_efficiency  # a native 4-bit tensor-core path (Blackwell)
    elif precision in LOW_PRECISION and acc.peak(precision) > acc.peak("bf16"):
        rate *= cal.fp8_over_bf16_matmul_efficiency
    if acc.power_limit_w is not None:  # a power-capped variant (system.overrides.power_limit_w)
        rate *= power_capped_clock_ratio(acc.power_limit_w, acc.tdp_w)
    return rate


def flash_relative_efficiency(acc: Accelerator, heads_x_batch: Any, seq_q: Any,
                              cal: Calibration | None = None, loop_keys: Any = None) -> Any:
    """ρ = ρ_max · s/(s+s½) · W/(W+W½), W = b·heads·s_q/128/SMs the 128-row query tiles per
    SM and s the keys one tile's loop runs over (``loop_keys``, default s_q: the fit's SDPA
    measurements had s_q = s_kv; a sliding window loops over its w keys, while its query
    tiles are still the sequence's)."""
    cal = cal or calibration()
    s = seq_q if loop_keys is None else loop_keys
    w = heads_x_batch * seq_q / 128.0 / acc.compute_units
    return cal.flash_rel_max * s / (s + cal.flash_seq_half) * w / (w + cal.flash_tiles_half)


def _skinny_fill(tiles: Any, split_max: Any, sms: int) -> Any:
    """Fraction of the SMs a split-K grid of ``tiles`` output tiles keeps busy: below one wave
    (tiles < SMs) K is split into s = min(split_max, ⌊SMs/tiles⌋) chunks, one wave of
    tiles·s blocks; at a wave or more no split (tiles / (⌈tiles/SMs⌉·SMs))."""
    if not (isinstance(tiles, np.ndarray) or isinstance(split_max, np.ndarray)):
        if tiles < sms:
            return tiles * max(1, min(split_max, sms // tiles)) / sms
        return tiles / (math.ceil(tiles / sms) * sms)
    tiles = np.asarray(tiles, dtype=float)
    s = np.maximum(1.0, np.minimum(split_max, np.floor(sms / tiles)))
    return np.where(tiles < sms, tiles * s / sms, tiles / (np.ceil(tiles / sms) * sms))


def _skinny_utilization(m: Any, n: Any, batch: Any, sms: int, split_max: Any) -> Any:
    """Swap-AB split-K kernels (:func:`wave_utilization`): the best over block counts
    nb = ⌈m/256⌉ … ``SKINNY_MAX_BLOCKS`` of m/(nb·w) · n/(128·⌈n/128⌉) · fill, w =
    16·⌈m/(16·nb)⌉ rows per block, tiles = nb·⌈n/128⌉·batch; 0 above 256·SKINNY_MAX_BLOCKS
    rows. The set of block counts shrinks as m grows, so the time never falls with m."""
    vec = any(isinstance(x, np.ndarray) for x in (m, n, batch, split_max))
    ceil = np.ceil if vec else math.ceil
    nb_min = ceil(m / SKINNY_MAX_M)
    cn = ceil(n / SKINNY_TILE_N)
    pad_n = n / (SKINNY_TILE_N * cn)
    best: Any = 0.0
    for nb in range(1, SKINNY_MAX_BLOCKS + 1):
        w = SKINNY_GRANULE * ceil(m / (SKINNY_GRANULE * nb))
        u = m / (nb * w) * pad_n * _skinny_fill(nb * cn * batch, split_max, sms)
        best = np.maximum(best, np.where(nb_min <= nb, u, 0.0)) if vec else (max(best, u) if nb_min <= nb else best)
    return best


def wave_utilization(m: Any, n: Any, batch: Any, sms: int, k: Any = None) -> Any:
    """Fraction of SM time doing useful work, the best of two kernel families:

    * tile kernels: best over ``TILES`` of m·n·batch / (⌈tiles/SMs⌉ · SMs · tm · tn),
      tiles = ⌈m/tm⌉·⌈n/tn⌉·batch (wave quantization, no split);
    * swap-AB split-K kernels (what cuBLAS/TensorRT-LLM run for decoding and short prompts):
      the m rows ride the MMA's N side — blocks of at most 256 rows (one Hopper wgmma N tile)
      in 16-row granules, w = 16·⌈m/(16·⌈m/256⌉)⌉ rows each — and the weight's n its M side
      in 128-row tiles; a grid below one wave splits K over the idle SMs in chunks of at
      least ``SPLITK_MIN_K`` (k unknown: as many chunks as SMs). u = m/(blocks·w) ·
      n/(128·⌈n/128⌉) · fill (:func:`_skinny_fill`).

    For large m (a multiple of 256, at least one wave of tiles) the second family is the
    256×128 tile kernel, so training GEMMs keep their wave quantization. The time (∝ m/u)
    is non-decreasing in m in each family and so in their minimum, and has no jump at
    m = 128 (at m ≤ 256 the m padding is 16 rows, never a whole tile).
    """
    if k is None:
        split_max: Any = float(sms)
    elif isinstance(k, np.ndarray):
        split_max = np.maximum(1.0, np.ceil(k / SPLITK_MIN_K))
    else:
        split_max = max(1.0, math.ceil(k / SPLITK_MIN_K))
    if not (isinstance(m, np.ndarray) or isinstance(n, np.ndarray) or isinstance(batch, np.ndarray)
            or isinstance(k, np.ndarray)):
        b_: float = 0.0
        for tm, tn in TILES:
            tiles = math.ceil(m / tm) * math.ceil(n / tn) * batch
            b_ = max(b_, m * n * batch / (math.ceil(tiles / sms) * sms * tm * tn))
        if m > SKINNY_MAX_M * SKINNY_MAX_BLOCKS:
            return b_  # the split-K family is 0 above (docstring)
        return max(b_, _skinny_utilization(m, n, batch, sms, split_max))
    best: Any = 0.0
    for tm, tn in TILES:
        tiles = np.ceil(m / tm) * np.ceil(n / tn) * batch
        waves = np.ceil(tiles / sms)
        best = np.maximum(best, m * n * batch / (waves * sms * tm * tn))
    if np.any(np.asarray(m) <= SKINNY_MAX_M * SKINNY_MAX_BLOCKS):  # the family is 0 above (docstring)
        best = np.maximum(best, _skinny_utilization(m, n, batch, sms, split_max))
    return best if np.ndim(best) else float(best)


def softmax_exp_time_s(op: Op, acc: Accelerator, cal: Calibration | None = None) -> Any:
    """Time of a flash-attention kernel's exponentials on the special-function units: one exp
    per score forward (4·d MMA FLOPs per score) and one per score backward (recomputing P;
    10·d FLOPs), at ``acc.exp_per_clk_per_sm`` per SM per clock (CUDA C++ Programming Guide,
    arithmetic-instruction throughput: 16 exp2 per clock per SM on compute capability 8.x–10.x;
    Blackwell Ultra doubles the SFU exponential rate, NVIDIA "Blackwell Ultra" technical blog,
    2025), at the sustained clock of a power-limited part. The kernel overlaps them with its
    MMAs (FlashAttention-3/4 ping-pong), so the kernel time is the larger of the two; with a
    small head dimension (64) on Blackwell the exponentials, not the tensor cores, set it."""
    cal = cal or calibration()
    per_score = 10.0 if op.name.endswith(".bwd") else 4.0
    exps = op.flops / (per_score * op.head_dim)
    ratio = cal.sustained_over_best_matmul if acc.power_limited_matmul else cal.isolated_over_best_matmul
    return exps / (acc.compute_units * acc.clock_hz * acc.exp_per_clk_per_sm * ratio)


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


_BW_CACHE: dict[int, tuple[Accelerator, float, float, float]] = {}


def _bandwidths(acc: Accelerator) -> tuple[float, float, float]:
    """(achievable HBM, achievable L2 or 0, HBM bandwidth of a GEMM streaming its weights)
    bytes/s of ``acc`` (memoised per object). The last is the HBM peak times the part's
    ``gemm_stream_efficiency`` (NVIDIA's cuBLAS timings at few rows, benchmarks/gemm_stream.py),
    or the copy bandwidth where the catalog has none."""
    hit = _BW_CACHE.get(id(acc))
    if hit is None or hit[0] is not acc:
        l2 = next((m.achievable_bytes_per_s for m in acc.memory if m.level == "l2"), 0.0)
        hbm = acc.hbm.achievable_bytes_per_s
        g = acc.hbm.bandwidth_bytes_per_s * acc.gemm_stream_efficiency if acc.gemm_stream_efficiency else hbm
        hit = (acc, hbm, l2, g)
        if len(_BW_CACHE) > 256:
            _BW_CACHE.clear()
        _BW_CACHE[id(acc)] = hit
    return hit[1], hit[2], hit[3]


def is_decode_attention(op: Op) -> bool:
    """A decode attention kernel: non-causal over the cache, at most ``DECODE_MAX_NEW``
    queries per sequence (:mod:`xlayer.workload.transformer`)."""
    return op.kind == "attention" and not op.causal and float(np.max(op.seq_q)) <= DECODE_MAX_NEW


# Integer-pipe issue slots per random number of PyTorch's dropout (ATen Dropout.cu
# fused_dropout_kernel_vec: one curand_uniform4 per 4 elements). curand's Philox4x32-10
# (curand_philox4x32_x.h; Salmon et al., SC'11) runs 10 rounds of 2 32x32-bit multiplies kept
# high and low (4 IMAD), 2 three-input XORs (2 LOP3) and a 2-word key bump (2 IADD): 80
# slots per 4 outputs, + ~4 for the counter increment, + 4 integer-to-float conversions at a
# quarter of the integer rate (16 per clock per SM in the same table: 16 slots) = ~100 per 4.
PHILOX_SLOTS_PER_DRAW = 25.0


def rng_time_s(draws: Num, acc: Accelerator) -> Num:
    """Seconds of integer work to draw ``draws`` Philox random numbers on ``acc``: draws ×
    PHILOX_SLOTS_PER_DRAW / (SMs × int32_ops_per_clk_per_sm × clock). Bounds a dropout kernel
    from below where the integer rate is low against the HBM bandwidth (Hopper and later:
    H200 15.5 T slots/s against 4.8 TB/s; on A100 the mask's bytes take longer). A part without
    an integer rate (``int32_ops_per_clk_per_sm`` None) costs none."""
    if acc.int32_ops_per_clk_per_sm is None:
        return 0.0 * draws
    return draws * PHILOX_SLOTS_PER_DRAW / (acc.compute_units * acc.int32_ops_per_clk_per_sm * acc.clock_hz)


def op_time(op: Op, acc: Accelerator, cal: Calibration | None = None,
            kernel_overhead_s: float | None = None) -> OpTime:
    """Roofline time of ``op`` (see module docstring)."""
    cal = cal or calibration()
    overhead = acc.kernel_overhead_s if kernel_overhead_s is None else kernel_overhead_s
    hbm_bw, l2_bw, gemm_bw = _bandwidths(acc)
    l2_s: Any = 0.0
    hbm: Any = None
    if op.kind == "gemm":
        # the B operand (weights) streams at the GEMM kernels' few-row bandwidth, the activations
        # in and out at the copy bandwidth (benchmarks/gemm_stream.py)
        hbm = (op.bytes - op.weight_bytes) / hbm_bw + op.weight_bytes / gemm_bw
        rate = gemm_rate_flops_per_s(acc, op.precision, cal)
        compute = op.flops / (rate * wave_utilization(op.m, op.n, op.batch, acc.compute_units, op.k))
        if l2_bw:
            elem = gemm_input_bytes(op.precision)
            l2_bytes = op.m * op.n * op.k * op.batch * (1.0 / TILE_M + 1.0 / TILE_N) * elem
            l2_s = l2_bytes / l2_bw
    elif op.kind == "attention" and is_decode_attention(op):
        # FlashDecoding: the KV length is split over the SMs, so the QKᵀ/PV work runs at the
        # sustained 16-bit GEMM rate (the flash efficiency fit of long training sequences
        # does not apply); memory-bound at every batch
        compute = op.flops / gemm_rate_flops_per_s(acc, "bf16", cal)
    elif op.kind == "attention":
        # a query tile loops over the keys it sees: the sequence, or the window of a
        # sliding-window layer (short loops pay the tile's fixed work over fewer keys)
        rho = flash_relative_efficiency(acc, op.heads, op.seq_q, cal,
                                        np.minimum(op.seq_q, op.seq_kv) if op.seq_kv else None)
        if op.name.endswith(".bwd"):
            rho = rho * 2.5 / cal.flash_bwd_time_over_fwd
        compute = op.flops / (gemm_rate_flops_per_s(acc, op.precision, cal) * rho)
        if op.head_dim:
            compute = np.maximum(compute, softmax_exp_time_s(op, acc, cal))
    else:
        compute = op.flops / acc.vector_flops_per_s
        if not (np.ndim(op.rng_draws) == 0 and op.rng_draws == 0):
            compute = compute + rng_time_s(op.rng_draws, acc)
    if hbm is None:
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
