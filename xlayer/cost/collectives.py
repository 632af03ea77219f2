"""Collective communication over a two-level network (scale-up domain, scale-out fabric).

Ring algorithms (Patarasuk & Yuan 2009; NCCL), n ranks, message S bytes (the full buffer),
achieved bandwidth B = link bandwidth · efficiency (per direction, per accelerator), per-step
latency α:

    all-reduce      2(n−1)/n · S/B + 2(n−1)·α
    reduce-scatter   (n−1)/n · S/B +  (n−1)·α        (all-gather the same)
    tree all-reduce  2·S/B + 2·⌈log2 n⌉·α             (NCCL double binary tree)

A group of n ranks of which n_in share a scale-up domain runs hierarchically: reduce-scatter
inside the domain, all-reduce of S/n_in across the n/n_in domains on each accelerator's own
NIC, all-gather inside. The achieved bandwidth therefore depends on the message size through
the latency terms; the algorithm is the faster of ring and tree (as NCCL's tuner picks).

Arguments may be numpy arrays.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from xlayer.hardware.spec import Link


def _bw(link: Link) -> float:
    return link.bandwidth_bytes_per_s * link.efficiency


def ring_time_s(collective: str, size_bytes: Any, n: Any, link: Link) -> Any:
    """Flat ring over one kind of link (see module docstring)."""
    if not isinstance(n, np.ndarray) and not isinstance(size_bytes, np.ndarray):
        return _ring_scalar(collective, float(size_bytes), float(n), link)
    n = np.asarray(n, dtype=float) if np.ndim(n) else float(n)
    frac = (n - 1.0) / np.maximum(n, 1.0)
    if collective == "all_reduce":
        t = 2.0 * frac * size_bytes / _bw(link) + 2.0 * (n - 1.0) * link.latency_s
        tree = 2.0 * size_bytes / _bw(link) + 2.0 * np.ceil(np.log2(np.maximum(n, 1.0))) * link.latency_s
        t = np.minimum(t, tree)
    elif collective in ("all_gather", "reduce_scatter"):
        t = frac * size_bytes / _bw(link) + (n - 1.0) * link.latency_s
    elif collective == "all_to_all":
        t = frac * size_bytes / _bw(link) + (n - 1.0) * link.latency_s
    elif collective == "send_recv":
        t = size_bytes / _bw(link) + link.latency_s
    else:
        raise ValueError(collective)
    return np.where(n > 1, t, 0.0) if np.ndim(t) else (float(t) if n > 1 else 0.0)


def _ring_scalar(collective: str, size: float, n: float, link: Link) -> float:
    """Scalar twin of :func:`ring_time_s` (same formulas, plain floats: fast)."""
    if n <= 1:
        return 0.0
    bw = _bw(link)
    if collective == "all_reduce":
        ring = 2.0 * (n - 1.0) / n * size / bw + 2.0 * (n - 1.0) * link.latency_s
        tree = 2.0 * size / bw + 2.0 * math.ceil(math.log2(n)) * link.latency_s
        return min(ring, tree)
    if collective in ("all_gather", "reduce_scatter", "all_to_all"):
        return (n - 1.0) / n * size / bw + (n - 1.0) * link.latency_s
    if collective == "send_recv":
        return size / bw + link.latency_s
    raise ValueError(collective)


def collective_time_s(collective: str, size_bytes: Any, n: Any, n_in: Any,
                      scale_up: Link, scale_out: Link) -> Any:
    """Hierarchical collective for a group of ``n`` ranks, ``n_in`` of them per scale-up
    domain (1 ≤ n_in ≤ n, n_in divides n)."""
    n_out = n / n_in
    inner = ring_time_s(_half(collective), size_bytes, n_in, scale_up)
    if collective == "all_reduce":
        outer = ring_time_s("all_reduce", size_bytes / n_in, n_out, scale_out)
        # a group inside one domain runs NCCL's flat ring or tree, whichever is faster
        flat = ring_time_s("all_reduce", size_bytes, n_in, scale_up)
        if isinstance(n_out, np.ndarray):
            return np.where(n_out == 1, flat, 2.0 * inner + outer)
        return flat if n_out == 1 else 2.0 * inner + outer
    if collective in ("all_gather", "reduce_scatter", "all_to_all"):
        outer = ring_time_s(collective, size_bytes / n_in, n_out, scale_out)
        return inner + outer
    if collective == "send_recv":
        return np.where(n_out > 1, ring_time_s("send_recv", size_bytes, 2, scale_out),
                        ring_time_s("send_recv", size_bytes, 2, scale_up)) if np.ndim(n_out) else \
            (ring_time_s("send_recv", size_bytes, 2, scale_out) if n_out > 1
             else ring_time_s("send_recv", size_bytes, 2, scale_up))
    raise ValueError(collective)


def _half(collective: str) -> str:
    return {"all_reduce": "reduce_scatter", "all_gather": "all_gather",
            "reduce_scatter": "reduce_scatter", "all_to_all": "all_to_all",
            "send_recv": "send_recv"}[collective]


def ranks_in_domain(group_size: Any, stride: Any, scale_up_size: int) -> Any:
    """How many ranks of a group (ranks ``stride`` apart) share one scale-up domain.

    Rank order is tp (fastest), cp, dp, pp (Megatron-LM's order): a group with stride s has
    max(1, min(n, D // s)) members inside a domain of D accelerators."""
    if np.ndim(group_size) or np.ndim(stride):
        inside = np.maximum(1, np.minimum(group_size, scale_up_size // np.maximum(stride, 1)))
        return inside
    return max(1, min(group_size, scale_up_size // max(stride, 1)))
