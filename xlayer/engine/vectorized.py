"""Vectorized evaluation: many layouts at once with numpy.

The numeric layout fields (tp, pp, dp, cp, vp, micro) are arrays; the categorical ones (sp,
recompute, zero) are fixed per call, so a search loops over a handful of categorical groups
and evaluates each group's numeric combinations in one call of the same
:func:`~xlayer.engine.training.evaluate_training` the scalar path uses.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from xlayer.errors import InputError
from xlayer.hardware.spec import System
from xlayer.mapping.layout import edges_as_stages, rules_mask
from xlayer.engine.training import Recipe, evaluate_training
from xlayer.workload.model import ModelSpec

NUMERIC = ("tp", "pp", "dp", "cp", "vp", "micro", "ep")
# Bounds of the divisor grid (so that a search on absurd input refuses at once instead of
# hanging): the accelerator count and global batch whose divisors are enumerated, and the
# number of numeric combinations one search evaluates per categorical group (at the
# vectorized path's ~200,000 layouts/s about 0.5 s per group, so at most ~15 s for the 24
# groups of sp x recompute x ZeRO; GPT-3 175B on 1024 A100s has 6,202 combinations).
MAX_SEARCH_COUNT = 1 << 22            # 4,194,304 accelerators
MAX_SEARCH_GLOBAL_BATCH = 1 << 32     # sequences per iteration
MAX_GRID_ROWS = 100_000
MAX_MODEL_INT = 1 << 53               # model sizes exact in float64 and far from int64 overflow


@dataclass(frozen=True)
class _Fields:
    tp: Any
    pp: Any
    dp: Any
    cp: Any
    vp: Any
    micro: Any
    ep: Any = 1
    etp: Any = 1
    sp: Any = True
    algorithm: str = "backprop"
    backlink_layers: int = 0
    offload_layers: int = 0


def valid_mask(model: ModelSpec, count: int, global_batch: int, tp, pp, dp, cp, vp, micro, ep=1,
               algorithm: str = "backprop", backlink_layers: int = 0, sp=None) -> np.ndarray:
    """The rules of :func:`xlayer.mapping.layout.check_layout` (:data:`~xlayer.mapping.layout.RULES`,
    written once), as a boolean mask over arrays of layouts. ``sp=None``: either way (the sp
    rule is then left to the caller's categorical group)."""
    f = _Fields(tp=tp, pp=pp, dp=dp, cp=cp, vp=vp, micro=micro, ep=ep, sp=True if sp is None else sp,
                algorithm=algorithm, backlink_layers=backlink_layers)
    ok = rules_mask(model, count, global_batch, f)
    return np.broadcast_to(np.asarray(ok, dtype=bool), np.shape(np.asarray(tp))).copy()


def evaluate_layouts(model: ModelSpec, system: System, precision: str, global_batch: int,
                     layouts: dict[str, np.ndarray], sp: bool, recompute: str, zero: int,
                     recipe: Recipe, dp_overlap: bool = False, tp_overlap: bool = True,
                     keys: tuple[str, ...] = ("iteration_time_s", "memory_bytes", "mfu"),
                     algorithm: str = "backprop", backlink_layers: int = 0) -> dict[str, np.ndarray]:
    """Iteration time, memory, MFU for arrays of layouts (invalid entries give NaN).

    ``keys`` names the entries of :func:`evaluate_training`'s result to return (default: time,
    memory, MFU); ``tp_overlap``, ``dp_overlap``, ``algorithm`` (backprop | local) and
    ``backlink_layers`` are passed through unchanged."""
    arrs = {k: np.asarray(layouts[k], dtype=np.int64) for k in NUMERIC if k in layouts}
    if "ep" not in layouts:
        arrs["ep"] = np.ones_like(arrs["tp"])
    mask = valid_mask(model, system.count, global_batch, **arrs, algorithm=algorithm,
                      backlink_layers=backlink_layers, sp=sp)
    n = mask.size
    out = {"valid": mask}
    out.update({k: np.full(n, np.nan) for k in keys})
    if not mask.any():
        return out
    sub = {k: v[mask] for k, v in arrs.items()}
    with np.errstate(divide="ignore", invalid="ignore"):
        r = evaluate_training(model, system, precision, global_batch, sub["tp"], sub["pp"], sub["dp"],
                              sub["cp"], sub["vp"], sub["micro"], sp, recompute, zero, dp_overlap, recipe,
                              tp_overlap=tp_overlap, algorithm=algorithm, backlink_layers=backlink_layers,
                              ep=sub["ep"])
    for key in keys:
        out[key][mask] = np.broadcast_to(np.asarray(r.value(key), dtype=float), (int(mask.sum()),))
    return out


@lru_cache(maxsize=1024)
def divisors(x: int) -> tuple[int, ...]:
    """The divisors of a positive integer, ascending (trial division up to √x)."""
    x = int(x)
    if x < 1:
        return ()
    small, large = [], []
    for d in range(1, math.isqrt(x) + 1):
        if x % d == 0:
            small.append(d)
            if d != x // d:
                large.append(x // d)
    return tuple(small + large[::-1])


def check_grid_bounds(count: int, global_batch: int) -> None:
    """Refuse (at once) a search whose divisor grid is beyond :data:`MAX_SEARCH_COUNT` or
    :data:`MAX_SEARCH_GLOBAL_BATCH`."""
    if not 1 <= count <= MAX_SEARCH_COUNT:
        raise InputError("system.count", count,
                         f"a layout search enumerates the divisors of 1 to {MAX_SEARCH_COUNT:,} accelerators")
    if not 1 <= global_batch <= MAX_SEARCH_GLOBAL_BATCH:
        raise InputError("batch.global", global_batch,
                         f"a layout search enumerates micro-batches of 1 to {MAX_SEARCH_GLOBAL_BATCH:,} sequences")


def check_model_bounds(model: ModelSpec) -> None:
    """Refuse model sizes the numpy (int64/float64) arithmetic of a search cannot hold."""
    for k in ("layers", "hidden", "heads", "kv_heads", "ffn_hidden", "vocab", "seq_len"):
        v = getattr(model, k, None)
        if isinstance(v, int) and not 1 <= v <= MAX_MODEL_INT:
            raise InputError(f"model.{k}", v, f"a layout search handles 1 to {MAX_MODEL_INT:,}")


def layout_grid(model: ModelSpec, count: int, global_batch: int, scale_up_size: int,
                tp_beyond_domain: bool = False, max_vp: int = 8, max_cp: int = 8,
                max_rows: int = MAX_GRID_ROWS) -> dict[str, np.ndarray]:
    """Every divisor-based combination of tp, pp, cp, vp, micro with dp = count/(tp·pp·cp).

    tp divides count and heads (and stays inside the scale-up domain unless
    ``tp_beyond_domain``), pp ≤ layers, cp ≤ ``max_cp``, dp divides the global batch, micro
    divides global/dp, vp ≤ min(``max_vp``, layers/pp) when pp > 1. Raises
    :class:`~xlayer.errors.InputError` (before building anything) when count or the global
    batch is beyond the bounds of :func:`check_grid_bounds` or the grid would hold more than
    ``max_rows`` combinations."""
    count, global_batch = int(count), int(global_batch)
    check_grid_bounds(count, global_batch)
    check_model_bounds(model)
    layers = int(model.layers)
    batch_divs = divisors(global_batch)
    tps = [t for t in divisors(count) if model.heads % t == 0 and (tp_beyond_domain or t <= scale_up_size)]
    combos = []
    n_rows = 0
    for tp in tps:
        for pp in divisors(count // tp):
            if pp > layers:
                break
            vps = [v for v in range(1, min(int(max_vp), (layers + 2) // pp) + 1)
                   if v * pp <= layers or edges_as_stages(layers, pp, v)] if pp > 1 else [1]
            for cp in divisors(count // (tp * pp)):
                if cp > max_cp:
                    break
                dp = count // (tp * pp * cp)
                if global_batch % dp:
                    continue
                micros = [b for b in batch_divs if (global_batch // dp) % b == 0]
                eps = [e for e in divisors(model.moe.experts) if (tp * dp * cp) % e == 0] \
                    if model.moe is not None else [1]
                combos.append((tp, pp, dp, cp, vps, micros, eps))
                n_rows += len(vps) * len(micros) * len(eps)
                if n_rows > max_rows:
                    raise InputError("search", f"more than {max_rows:,} layouts",
                                     f"a search evaluates at most {max_rows:,} combinations of tp, pp, cp, vp "
                                     f"and micro (system.count={count:,}, batch.global={global_batch:,}); "
                                     "lower --max-vp or --max-cp, or fix batch.micro")
    rows = [(tp, pp, dp, cp, vp, micro, ep) for tp, pp, dp, cp, vps, micros, eps in combos
            for micro in micros for vp in vps for ep in eps]
    arr = np.array(rows, dtype=np.int64).reshape(-1, 7)
    return {k: arr[:, i] for i, k in enumerate(NUMERIC)}


_ = Any
