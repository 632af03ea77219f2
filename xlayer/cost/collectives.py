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

Where the link carries a measured nccl-tests curve for the collective (``Link.measured``:
bus bandwidth against message size on 8 GPUs of the domain, xlayer/hardware/nccl_curves.yaml)
the measurement sets the time (`curve_time_s`, `ring_time_s`):

    t_curve(S, n) = f(n)/f(8) · t_8(max(S, S_min)),  f = 2(n−1)/n (all-reduce), (n−1)/n (else)
    t = max(t_formula, t_curve − h),  h = t_curve(S_min) − t_formula(S_min)

t_8 = f(8)·S/busbw is the measured time on 8 GPUs, interpolated linearly in log t – log S
between the measured sizes, extended above the largest size at its bandwidth. nccl-tests
launches every collective from the host without a CUDA graph, and below ~1 MiB its times are
a flat 28–41 µs whatever the size (lower with one process per GPU than with one process
driving 8): host launch cost, which a training step (the host runs ahead of the GPU) or a
graph-captured decode step does not wait for. h is that
host share, taken at the smallest measured size (64 KiB), where the kernel itself is
latency-bound and the α–β formula stands for it; it is removed at every size. Above a few MiB
the curve carries what the formula misses: NCCL's protocol switches (LL/LL128/Simple) and
their lower bandwidth at medium sizes, synchronisation cost, and NVLink SHARP on Hopper.

Arguments may be numpy arrays.
"""
from __future__ import annotations

import bisect
import math
from typing import Any

import numpy as np

from xlayer.hardware.spec import Link


def _bw(link: Link) -> float:
    return link.bandwidth_bytes_per_s * link.efficiency


_LOG_CACHE: dict[tuple[int, str], tuple] = {}
_HOST_CACHE: dict[tuple[int, str, Any], tuple] = {}   # (link id, collective, n) -> (link, host share s)


def _factor(collective: str, n: Any) -> Any:
    """nccl-tests busbw factor: 2(n−1)/n for all-reduce, (n−1)/n otherwise."""
    return (2.0 if collective == "all_reduce" else 1.0) * (n - 1.0) / n


def _curve_arrays(curve, collective: str) -> tuple:
    """(curve, log sizes, log times on ``curve.ranks`` ranks) with the times made
    non-decreasing (a larger message never takes less time; measured noise can say otherwise
    by a fraction of a percent)."""
    key = (id(curve), collective)
    hit = _LOG_CACHE.get(key)
    if hit is None or hit[0] is not curve:
        f = _factor(collective, float(curve.ranks))
        times = [f * sz / bw for sz, bw in zip(curve.sizes_bytes, curve.busbw_bytes_per_s)]
        for i in range(1, len(times)):
            times[i] = max(times[i], times[i - 1])
        logs = tuple(math.log(x) for x in curve.sizes_bytes)
        logt = tuple(math.log(t) for t in times)
        hit = (curve, logs, logt, np.asarray(logs), np.asarray(logt))
        _LOG_CACHE[key] = hit
    return hit


def curve_time_s(collective: str, size_bytes: Any, n: Any, curve) -> Any:
    """Time of a collective on ``n`` ranks from a measured curve: the measured time on
    ``curve.ranks`` ranks, interpolated linearly in log–log between the measured sizes
    (held at the smallest size's below it, at the largest size's bandwidth above it),
    scaled by f(n)/f(ranks) (see module docstring)."""
    _, logs, logt, logs_a, logt_a = _curve_arrays(curve, collective)
    f_ref = _factor(collective, float(curve.ranks))
    if not isinstance(n, np.ndarray) and not isinstance(size_bytes, np.ndarray):
        if n <= 1:
            return 0.0
        x = math.log(max(float(size_bytes), curve.sizes_bytes[0]))
        if x >= logs[-1]:
            lt = logt[-1] + x - logs[-1]
        else:
            i = bisect.bisect_right(logs, x) - 1
            lt = logt[i] + (x - logs[i]) * (logt[i + 1] - logt[i]) / (logs[i + 1] - logs[i])
        return _factor(collective, float(n)) / f_ref * math.exp(lt)
    x = np.log(np.maximum(np.asarray(size_bytes, dtype=float), curve.sizes_bytes[0]))
    lt = np.where(x >= logs_a[-1], logt_a[-1] + x - logs_a[-1], np.interp(x, logs_a, logt_a))
    n = np.asarray(n, dtype=float) if np.ndim(n) else float(n)
    t = _factor(collective, np.maximum(n, 1.0)) / f_ref * np.exp(lt)
    return np.where(n > 1, t, 0.0) if np.ndim(t) else float(t)


def ring_time_s(collective: str, size_bytes: Any, n: Any, link: Link) -> Any:
    """Flat collective over one kind of link: the measured curve where the link has one for
    ``collective``, else ring (and tree for all-reduce) with latency (module docstring)."""
    curve = link.measured.get(collective) if link.measured else None
    if curve is None:
        return _formula_time_s(collective, size_bytes, n, link)
    s_min = curve.sizes_bytes[0]
    if not isinstance(n, np.ndarray) and not isinstance(size_bytes, np.ndarray):
        if n <= 1:
            return 0.0
        key = (id(link), collective, n)
        hit = _HOST_CACHE.get(key)
        if hit is None or hit[0] is not link:
            host = curve_time_s(collective, s_min, n, curve) - _ring_scalar(collective, s_min, float(n), link)
            hit = (link, max(host, 0.0))
            _HOST_CACHE[key] = hit
        t_curve = curve_time_s(collective, size_bytes, n, curve) - hit[1]
        return max(_ring_scalar(collective, float(size_bytes), float(n), link), t_curve)
    host = curve_time_s(collective, s_min, n, curve) - _formula_time_s(collective, s_min, n, link)
    t_curve = curve_time_s(collective, size_bytes, n, curve) - np.maximum(host, 0.0)
    t = np.maximum(_formula_time_s(collective, size_bytes, n, link), t_curve)
    return t if np.ndim(t) else float(t)


def _formula_time_s(collective: str, size_bytes: Any, n: Any, link: Link) -> Any:
    """Ring (and tree for all-reduce) with per-step latency (module docstring)."""
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
    if collective == "all_to_all":
        return all_to_all_time_s(size_bytes, n, n_in, scale_up, scale_out)
    if collective in ("all_gather", "reduce_scatter"):
        outer = ring_time_s(collective, size_bytes / n_in, n_out, scale_out)
        return inner + outer
    if collective == "send_recv":
        return np.where(n_out > 1, ring_time_s("send_recv", size_bytes, 2, scale_out),
                        ring_time_s("send_recv", size_bytes, 2, scale_up)) if np.ndim(n_out) else \
            (ring_time_s("send_recv", size_bytes, 2, scale_out) if n_out > 1
             else ring_time_s("send_recv", size_bytes, 2, scale_up))
    raise ValueError(collective)


def all_to_all_time_s(size_bytes: Any, n: Any, n_in: Any, scale_up: Link, scale_out: Link) -> Any:
    """All-to-all of ``size_bytes`` per rank, spread evenly over the n ranks of the group
    (MoE token dispatch/combine: NCCL all-to-all is one send and one receive per peer, all
    posted at once). Of each rank's S bytes, (n_in−1)/n go to peers in its scale-up domain and
    (n−n_in)/n to peers outside over its own NIC, the two at the same time:

        t = max(S·(n_in−1)/n / B_up, S·(n−n_in)/n / B_out) + α_up + [n > n_in]·α_out

    (B = link bandwidth · efficiency, per direction)."""
    S = size_bytes
    up_s = S * (n_in - 1) / np.maximum(n, 1) / _bw(scale_up)
    out_s = S * (n - n_in) / np.maximum(n, 1) / _bw(scale_out)
    t = np.maximum(up_s, out_s) + scale_up.latency_s + np.where(n > n_in, scale_out.latency_s, 0.0)
    t = np.where(n > 1, t, 0.0)
    return t if np.ndim(t) else float(t)


def _half(collective: str) -> str:
    return {"all_reduce": "reduce_scatter", "all_gather": "all_gather",
            "reduce_scatter": "reduce_scatter", "all_to_all": "all_to_all",
            "send_recv": "send_recv"}[collective]


def ranks_in_domain(group_size: Any, stride: Any, scale_up_size: int) -> Any:
    """How many ranks of a group (ranks ``stride`` apart) share one scale-up domain, for the
    worst-placed group.

    Rank order is tp (fastest), cp, dp, pp (Megatron-LM's order): groups of n ranks with
    stride s occupy blocks of n·s consecutive ranks, domains blocks of D (D = the job's part
    of a domain when the job is smaller). The boundaries of both fall on multiples of
    g = gcd(n·s, D), so the worst group has max(1, min(n, g // s)) members in one domain:
    n when n·s divides D (or D divides into whole groups), fewer when a group straddles two
    domains (tp 16 on 72-GPU NVL72 racks: 8 and 8)."""
    if np.ndim(group_size) or np.ndim(stride):
        n = np.asarray(group_size, dtype=np.int64)
        st = np.maximum(np.asarray(stride, dtype=np.int64), 1)
        g = np.gcd(n * st, int(scale_up_size))
        return np.maximum(1, np.minimum(n, g // st))
    st = max(int(stride), 1)
    g = math.gcd(int(group_size) * st, int(scale_up_size))
    return max(1, min(int(group_size), g // st))
