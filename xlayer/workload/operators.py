"""Operators: units of work on one accelerator, each declaring its FLOPs and HBM bytes.

All sizes are per accelerator. Arguments may be Python numbers or numpy arrays (one entry per
layout): the same formulas serve the scalar path (one layout, rich breakdown) and the
vectorized path (thousands of layouts at once). A GEMM [m,k]x[k,n] costs 2mkn FLOPs
(Narayanan et al. 2021). The transformer layer built from them is
:mod:`xlayer.workload.transformer`; training's backward, casts and recompute are
:mod:`xlayer.workload.training_ops`, inference's pass :mod:`xlayer.workload.inference_ops`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Num = Any  # float or numpy array

ACT_BYTES = 2  # 16-bit activations (fp16/bf16); fp8 recipes keep activations 16-bit too


@dataclass(frozen=True)
class Op:
    """One kernel (or a fused group) of work on one accelerator.

    ``kind``: gemm | attention | elementwise. For a gemm, m/n/k/batch give its shape.
    ``precision``: the arithmetic it runs in (GEMMs follow the case; the rest is 16-bit).
    ``rng_draws``: random numbers the kernel draws (a dropout mask: one per element), costed
    on the integer pipes by :func:`xlayer.cost.compute.rng_time_s`. ``weight_bytes``: the
    part of a GEMM's ``bytes`` that is its B operand, streamed at the part's GEMM streaming
    bandwidth (:func:`xlayer.cost.compute.op_time`).
    """

    name: str
    kind: str
    flops: Num
    bytes: Num
    m: Num = 0
    n: Num = 0
    k: Num = 0
    batch: Num = 1
    precision: str = "bf16"
    causal: bool = False
    heads: Num = 0
    seq_q: Num = 0
    seq_kv: Num = 0
    head_dim: Num = 0
    rng_draws: Num = 0
    weight_bytes: Num = 0  # a GEMM's B operand (its weights), part of ``bytes``


@dataclass(frozen=True)
class Comm:
    """A collective the layer issues. ``group`` names the parallel dimension (tp, cp, ...);
    ``overlap`` names the op it runs concurrently with (None: exposed)."""

    name: str
    collective: str  # all_reduce | all_gather | reduce_scatter | send_recv
    bytes: Num
    group: str
    overlap: str | None = None


def gemm(name: str, m: Num, k: Num, n: Num, precision: str, batch: Num = 1,
         in_bytes: int = ACT_BYTES, w_bytes: int | None = None) -> Op:
    """GEMM C[m,n] = A[m,k]·B[k,n] (``batch`` independent ones): 2·m·k·n FLOPs; reads A and B,
    writes C once (tiles stay on chip)."""
    w_bytes = in_bytes if w_bytes is None else w_bytes
    flops = 2.0 * m * k * n * batch
    weights = batch * k * n * w_bytes
    nbytes = batch * (m * k * in_bytes + m * n * ACT_BYTES) + weights
    return Op(name, "gemm", flops, nbytes, m=m, n=n, k=k, batch=batch, precision=precision, weight_bytes=weights)


def elementwise(name: str, elements_read: Num, elements_written: Num, flops_per_element: float = 1.0,
                extra_bytes: Num = 0, rng_draws: Num = 0) -> Op:
    """A memory-bound kernel: bytes = 2·(read + written) elements (+ masks etc.); ``rng_draws``
    random numbers drawn (a dropout's mask)."""
    nbytes = ACT_BYTES * (elements_read + elements_written) + extra_bytes
    return Op(name, "elementwise", flops_per_element * elements_written, nbytes, rng_draws=rng_draws)
