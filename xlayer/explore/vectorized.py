"""Vectorized evaluation: many layouts at once with numpy.

The numeric layout fields (tp, pp, dp, cp, vp, micro) are arrays; the categorical ones (sp,
recompute, zero) are fixed per call, so a search loops over a handful of categorical groups
and evaluates each group's numeric combinations in one call of the same
:func:`~xlayer.predict.training.evaluate_training` the scalar path uses.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from xlayer.hardware.spec import System
from xlayer.predict.training import Recipe, evaluate_training
from xlayer.workload.model import ModelSpec

NUMERIC = ("tp", "pp", "dp", "cp", "vp", "micro")


def valid_mask(model: ModelSpec, count: int, global_batch: int, tp, pp, dp, cp, vp, micro) -> np.ndarray:
    """The rules of :func:`xlayer.mapping.layout.check_layout`, as a boolean mask."""
    ok = (model.heads % tp == 0) & (model.kv_heads % tp == 0) & (model.ffn_hidden % tp == 0)
    ok &= tp * pp * dp * cp == count
    ok &= pp * vp <= model.layers
    ok &= ~((vp > 1) & (pp == 1))
    ok &= np.where(cp > 1, model.seq_len % (2 * cp) == 0, True)
    ok &= global_batch % (micro * dp) == 0
    m = global_batch // np.maximum(micro * dp, 1)
    ok &= ~((vp > 1) & (m % pp != 0))
    return ok


def evaluate_layouts(model: ModelSpec, system: System, precision: str, global_batch: int,
                     layouts: dict[str, np.ndarray], sp: bool, recompute: str, zero: int,
                     recipe: Recipe, dp_overlap: bool = False, tp_overlap: bool = True,
                     keys: tuple[str, ...] = ("iteration_time_s", "memory_bytes", "mfu")) -> dict[str, np.ndarray]:
    """Iteration time, memory, MFU for arrays of layouts (invalid entries give NaN).

    ``keys`` names the entries of :func:`evaluate_training`'s result to return (default: time,
    memory, MFU); ``tp_overlap`` and ``dp_overlap`` are passed through unchanged."""
    arrs = {k: np.asarray(layouts[k], dtype=np.int64) for k in NUMERIC}
    mask = valid_mask(model, system.count, global_batch, **arrs)
    n = mask.size
    out = {"valid": mask}
    out.update({k: np.full(n, np.nan) for k in keys})
    if not mask.any():
        return out
    sub = {k: v[mask] for k, v in arrs.items()}
    with np.errstate(divide="ignore", invalid="ignore"):
        r = evaluate_training(model, system, precision, global_batch, sub["tp"], sub["pp"], sub["dp"],
                              sub["cp"], sub["vp"], sub["micro"], sp, recompute, zero, dp_overlap, recipe,
                              tp_overlap=tp_overlap)
    for key in keys:
        out[key][mask] = np.broadcast_to(np.asarray(r[key], dtype=float), (int(mask.sum()),))
    return out


def layout_grid(model: ModelSpec, count: int, global_batch: int, scale_up_size: int,
                tp_beyond_domain: bool = False, max_vp: int = 8, max_cp: int = 8) -> dict[str, np.ndarray]:
    """Every divisor-based combination of tp, pp, cp, vp, micro with dp = count/(tp·pp·cp)."""
    def divisors(x: int) -> list[int]:
        return [d for d in range(1, x + 1) if x % d == 0]
    tps = [t for t in divisors(count) if model.heads % t == 0 and (tp_beyond_domain or t <= scale_up_size)]
    rows = []
    for tp in tps:
        for pp in divisors(count // tp):
            if pp > model.layers:
                continue
            for cp in divisors(count // (tp * pp)):
                if cp > max_cp:
                    continue
                dp = count // (tp * pp * cp)
                if global_batch % dp:
                    continue
                for micro in divisors(global_batch // dp):
                    for vp in range(1, max_vp + 1) if pp > 1 else [1]:
                        rows.append((tp, pp, dp, cp, vp, micro))
    arr = np.array(rows, dtype=np.int64).reshape(-1, 6)
    return {k: arr[:, i] for i, k in enumerate(("tp", "pp", "dp", "cp", "vp", "micro"))}


_ = Any
