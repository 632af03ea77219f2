"""Roofline view of an inference pass: each operator's terms and bound, crossovers, SVG.

* ``op_cost``: :func:`xlayer.cost.compute.op_time` (t = max(F/R, B_hbm/BW_hbm, B_l2/BW_l2)
  + t_kernel, decode attention included) as a scalar record with the bound each operator
  hits: ``compute``, ``hbm``, ``l2``, or ``interconnect`` (collectives). The fixed
  per-kernel cost is not a roof: it is reported as its own share (``kernel overhead``), and
  an operator whose overhead exceeds its roofline term is flagged ``overhead_dominated``
  (tiny kernels at batch 1).
* ``tp_collective_time_s``: a collective of a tensor-parallel group, ``collective_time_s``
  (inside one scale-up domain it takes the faster of NCCL's ring and tree). Small decode
  messages are latency-bound: 2·⌈log₂ t⌉·α (tree) instead of 2·(t−1)·α (ring).
* ``crossover``: the smallest batch (decode) or token count (prefill) at which an operator
  stops being memory-bound, scanning the same formulas over numpy arrays.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from xlayer.cost.collectives import collective_time_s, ranks_in_domain
from xlayer.cost.compute import gemm_rate_flops_per_s, op_time
from xlayer.hardware.spec import Accelerator, System
from xlayer.workload.operators import Comm, Op


@dataclass(frozen=True)
class OpCost:
    """One operator (or collective) of an inference pass with its roofline terms."""

    name: str
    kind: str
    time_s: float
    compute_s: float
    hbm_s: float
    l2_s: float
    comm_s: float
    overhead_s: float
    flops: float
    bytes: float
    bound: str

    @property
    def overhead_dominated(self) -> bool:
        return self.overhead_s > self.time_s - self.overhead_s

    @property
    def intensity(self) -> float:
        """Arithmetic intensity against HBM, FLOP per byte."""
        return self.flops / self.bytes if self.bytes else math.inf


def op_cost(op: Op, acc: Accelerator, overhead_s: float | None = None) -> OpCost:
    """:func:`xlayer.cost.compute.op_time` of ``op`` as a scalar record with its bound
    (``overhead_s``: the per-kernel cost, None for the accelerator's own)."""
    t = op_time(op, acc, kernel_overhead_s=overhead_s)
    terms = {"compute": float(t.compute_s), "hbm": float(t.hbm_s), "l2": float(t.l2_s)}
    ov = acc.kernel_overhead_s if overhead_s is None else overhead_s
    return OpCost(op.name, op.kind, float(t.time_s), terms["compute"], terms["hbm"], terms["l2"], 0.0, float(ov),
                  float(op.flops), float(op.bytes), max(terms, key=terms.get))


def blend_costs(a: OpCost, b: OpCost, share_b: float) -> OpCost:
    """The same operator in two kinds of layer, ``share_b`` of the layers of kind b: every
    term the layer-weighted mean, the bound that of the mean roofline terms."""
    def mix(x: float, y: float) -> float:
        return (1.0 - share_b) * x + share_b * y
    if a.name != b.name:
        raise ValueError(f"blend_costs: {a.name} vs {b.name}")
    terms = {"compute": mix(a.compute_s, b.compute_s), "hbm": mix(a.hbm_s, b.hbm_s), "l2": mix(a.l2_s, b.l2_s)}
    bound = a.bound if a.kind == "collective" else max(terms, key=terms.get)
    return OpCost(a.name, a.kind, mix(a.time_s, b.time_s), terms["compute"], terms["hbm"], terms["l2"],
                  mix(a.comm_s, b.comm_s), mix(a.overhead_s, b.overhead_s), mix(a.flops, b.flops),
                  mix(a.bytes, b.bytes), bound)


def tp_collective_time_s(collective: str, size_bytes: float, tp: int, system: System) -> float:
    """A collective over the tensor-parallel group (see module docstring)."""
    if tp <= 1:
        return 0.0
    n_in = ranks_in_domain(tp, 1, system.scale_up_size)
    return float(collective_time_s(collective, size_bytes, tp, n_in, system.scale_up, system.scale_out))


def comm_cost(c: Comm, tp: int, system: System) -> OpCost:
    t = tp_collective_time_s(c.collective, c.bytes, tp, system)
    return OpCost(c.name, "collective", t, 0.0, 0.0, 0.0, t, 0.0, 0.0, float(c.bytes), "interconnect")


def crossover(build: Callable[[Any], list[Op]], acc: Accelerator, hi: int = 1 << 16) -> dict[str, int | None]:
    """For every GEMM/attention operator of ``build(x)`` (x a numpy array of batch sizes or
    token counts), the smallest x in 1..hi where compute time ≥ memory time (HBM and L2);
    None when it stays memory-bound up to ``hi``."""
    xs = np.unique(np.round(np.geomspace(1, hi, 400)).astype(float))
    xs = np.unique(np.concatenate([xs, np.arange(1, 1025, dtype=float)]))
    ops = build(xs)
    out: dict[str, int | None] = {}
    for op in ops:
        if op.kind not in ("gemm", "attention"):
            continue
        t = op_time(op, acc, kernel_overhead_s=0.0)
        compute = np.broadcast_to(np.asarray(t.compute_s, dtype=float), xs.shape)
        mem = np.broadcast_to(np.maximum(np.asarray(t.hbm_s, dtype=float), np.asarray(t.l2_s, dtype=float)),
                              xs.shape)
        hit = np.nonzero(compute >= mem)[0]
        out[op.name] = int(xs[hit[0]]) if hit.size else None
    return out


# ---------------------------------------------------------------------------------------
# SVG roofline (no plotting dependency: plain SVG text)

_COLORS = {"gemm": "#1f77b4", "attention": "#d62728", "elementwise": "#2ca02c"}


def roofline_svg(acc: Accelerator, points: list[dict[str, Any]], precision: str, title: str) -> str:
    """A log-log roofline of ``acc`` (HBM and L2 slopes, GEMM compute roof for ``precision``,
    16-bit GEMM and vector roofs) with ``points`` placed on it. Each point: name, phase,
    kind, intensity (FLOP/B), attained (FLOP/s), bound."""
    W, H, L, R, T, B = 900, 600, 80, 220, 50, 60
    x_lo, x_hi = 1e-2, 1e5
    peak = gemm_rate_flops_per_s(acc, precision)
    y_hi = 10 ** math.ceil(math.log10(peak * 1.5))
    y_lo = y_hi / 1e7

    def X(v: float) -> float:
        v = min(max(v, x_lo), x_hi)
        return L + (math.log10(v) - math.log10(x_lo)) / (math.log10(x_hi) - math.log10(x_lo)) * (W - L - R)

    def Y(v: float) -> float:
        v = min(max(v, y_lo), y_hi)
        return H - B - (math.log10(v) - math.log10(y_lo)) / (math.log10(y_hi) - math.log10(y_lo)) * (H - T - B)

    s = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<text x="{W / 2 - R / 2}" y="22" text-anchor="middle" font-size="14">{_esc(title)}</text>']
    # grid and axes
    for e in range(int(math.log10(x_lo)), int(math.log10(x_hi)) + 1):
        x = X(10.0 ** e)
        s.append(f'<line x1="{x:.1f}" y1="{T}" x2="{x:.1f}" y2="{H - B}" stroke="#eee"/>')
        s.append(f'<text x="{x:.1f}" y="{H - B + 16}" text-anchor="middle">1e{e}</text>')
    for e in range(int(math.log10(y_lo)), int(math.log10(y_hi)) + 1):
        y = Y(10.0 ** e)
        s.append(f'<line x1="{L}" y1="{y:.1f}" x2="{W - R}" y2="{y:.1f}" stroke="#eee"/>')
        s.append(f'<text x="{L - 6}" y="{y + 4:.1f}" text-anchor="end">{10.0 ** e / 1e12:g} T</text>')
    s.append(f'<text x="{(L + W - R) / 2}" y="{H - 20}" text-anchor="middle">arithmetic intensity (FLOP per HBM byte)</text>')
    s.append(f'<text transform="translate(20,{(T + H - B) / 2}) rotate(-90)" text-anchor="middle">attained FLOP/s</text>')
    roofs = [("HBM " + f"{acc.hbm.achievable_bytes_per_s / 1e12:.2f} TB/s", acc.hbm.achievable_bytes_per_s, "#444")]
    if acc.gemm_stream_efficiency:  # the bandwidth a few-row GEMM streams its weights at (op_time)
        g = acc.hbm.bandwidth_bytes_per_s * acc.gemm_stream_efficiency
        roofs.append((f"GEMM weights {g / 1e12:.2f} TB/s", g, "#777"))
    try:
        l2 = acc.level("l2")
        roofs.append((f"L2 {l2.achievable_bytes_per_s / 1e12:.1f} TB/s", l2.achievable_bytes_per_s, "#999"))
    except KeyError:
        pass
    ceilings = [(f"{precision} GEMM {peak / 1e12:.0f} TFLOP/s", peak, "#000")]
    if precision not in ("bf16", "fp16"):
        r16 = gemm_rate_flops_per_s(acc, "bf16")
        ceilings.append((f"bf16 GEMM {r16 / 1e12:.0f} TFLOP/s", r16, "#666"))
    ceilings.append((f"vector {acc.vector_flops_per_s / 1e12:.0f} TFLOP/s", acc.vector_flops_per_s, "#aaa"))
    for label, bw, color in roofs:
        knee = peak / bw
        xs = [x_lo, knee]
        s.append(f'<line x1="{X(xs[0]):.1f}" y1="{Y(bw * xs[0]):.1f}" x2="{X(xs[1]):.1f}" y2="{Y(bw * xs[1]):.1f}" '
                 f'stroke="{color}" stroke-width="2"/>')
        s.append(f'<text x="{X(x_lo * 3):.1f}" y="{Y(bw * x_lo * 3) - 6:.1f}" fill="{color}" '
                 f'transform="rotate(-28 {X(x_lo * 3):.1f} {Y(bw * x_lo * 3) - 6:.1f})">{_esc(label)}</text>')
    for label, rate, color in ceilings:
        knee = rate / acc.hbm.achievable_bytes_per_s
        s.append(f'<line x1="{X(knee):.1f}" y1="{Y(rate):.1f}" x2="{W - R}" y2="{Y(rate):.1f}" stroke="{color}" '
                 f'stroke-width="2" stroke-dasharray="{"" if color == "#000" else "5,3"}"/>')
        s.append(f'<text x="{W - R - 4}" y="{Y(rate) - 5:.1f}" text-anchor="end" fill="{color}">{_esc(label)}</text>')
    # points
    legend_y = T + 10
    for i, p in enumerate(points):
        color = _COLORS.get(p["kind"], "#9467bd")
        x, y = X(p["intensity"]), Y(p["attained"])
        shape = (f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{color}" fill-opacity="0.8"/>' if p["phase"] == "prefill"
                 else f'<rect x="{x - 4.5:.1f}" y="{y - 4.5:.1f}" width="9" height="9" fill="{color}" fill-opacity="0.8"/>')
        s.append(shape)
        s.append(f'<text x="{x + 6:.1f}" y="{y - 4:.1f}" font-size="9">{i + 1}</text>')
        s.append(f'<text x="{W - R + 10}" y="{legend_y + 13 * i:.1f}" font-size="10">{i + 1} {p["phase"]} '
                 f'{_esc(p["name"])}: {p["bound"]}</text>')
    ly = legend_y + 13 * len(points) + 14
    s.append(f'<text x="{W - R + 10}" y="{ly}" font-size="10">circle prefill, square decode</text>')
    for j, (k, c) in enumerate(_COLORS.items()):
        s.append(f'<rect x="{W - R + 10}" y="{ly + 8 + 14 * j}" width="9" height="9" fill="{c}"/>'
                 f'<text x="{W - R + 24}" y="{ly + 16 + 14 * j}" font-size="10">{k}</text>')
    s.append("</svg>")
    return "\n".join(s)


def _esc(t: str) -> str:
    return t.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
