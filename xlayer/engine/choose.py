"""The one layout chooser: every valid parallel layout of a model on a system, evaluated on
the vectorized path and ranked (xlayer.explore.search, predict's open fields, the studies
and the SCD commands all choose here, each passing its search space).

The space is the divisor grid of :func:`~xlayer.engine.vectorized.layout_grid` (tp, pp, cp,
vp, micro; dp = count/(tp·pp·cp)) crossed with the categorical fields sp, recompute and ZeRO
stage. Each categorical group is evaluated in one call of
:func:`~xlayer.engine.vectorized.evaluate_layouts`, i.e. the same
:func:`~xlayer.engine.training.evaluate_training` the scalar path uses, on numpy arrays.

Counts reported: *considered* = every enumerated combination; *valid* = those that pass the
rules of :func:`~xlayer.mapping.layout.check_layout`; *fitting* = valid and
``memory_bytes <= HBM capacity``. Each distinct layout is listed once: combinations that are
the same layout as another one, or that the model gives exactly the same numbers, are not
enumerated (said in ``notes``): ``sp`` with ``tp = 1`` (nothing to shard; Megatron-LM also
requires tp > 1 for SP), ``recompute: selective`` with flash attention (the kernel already
recomputes its core, so selective = none, see
:func:`~xlayer.workload.operators.recompute_ops`) and ZeRO stages 1-3 at dp·cp = 1 (nothing
to shard over: the same layout as ZeRO 0, the simplest, which is kept).

The training algorithm (``algorithm``: backprop | local, ``backlink_layers``) is not searched:
it is the case's (``parallel.algorithm``), and every enumerated layout is evaluated with it.
Local learning treats each pipeline stage as one module, so vp > 1 is not enumerated for it.

The grid is bounded (:data:`~xlayer.engine.vectorized.MAX_SEARCH_COUNT` accelerators,
:data:`~xlayer.engine.vectorized.MAX_SEARCH_GLOBAL_BATCH` sequences,
:data:`~xlayer.engine.vectorized.MAX_GRID_ROWS` combinations); beyond, the search refuses
at once with an :class:`~xlayer.errors.InputError`.

Ranking metrics (all per iteration of the given global batch):
``time`` = iteration_time_s (ascending); ``tokens_per_s_per_gpu`` = global·seq/(time·count)
(descending); ``cost`` = accelerator-hours per million tokens = count·time/3600/(global·seq/10⁶)
(ascending). For one case (fixed count and batch) all three give the same order; they differ
across the points of a sweep.
"""
from __future__ import annotations

import time as _time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Optional

import numpy as np

from xlayer.errors import InputError
from xlayer.engine.vectorized import NUMERIC, check_grid_bounds, evaluate_layouts, layout_grid, valid_mask
from xlayer.hardware.spec import System
from xlayer.mapping.layout import Layout
from xlayer.engine.training import Recipe, recipe_for
from xlayer.units import GIB
from xlayer.workload.model import ModelSpec
from xlayer.workload.recompute import model_modules

RANKS = ("time", "tokens_per_s_per_gpu", "cost")
RECOMPUTE = ("none", "selective", "full")
# stack profiles whose framework recomputes named submodules (Megatron-Core recompute_modules)
MODULE_PROFILES = ("megatron-lm", "megatron-bridge")
ZERO = (0, 1, 2, 3)
LAYOUT_FIELDS = ("tp", "pp", "dp", "cp", "vp", "micro", "ep", "sp", "recompute", "zero")
DEFAULT_MAX_VP = 8
DEFAULT_MAX_CP = 8
ALGORITHMS = ("backprop", "local")


def rank_key(table: Mapping[str, np.ndarray], rank: str) -> np.ndarray:
    """The value sorted ascending for ``rank`` (tokens/s/GPU is negated: larger is better)."""
    if rank == "time":
        return np.asarray(table["iteration_time_s"], dtype=float)
    if rank == "tokens_per_s_per_gpu":
        return -np.asarray(table["tokens_per_s_per_gpu"], dtype=float)
    if rank == "cost":
        return np.asarray(table["gpu_hours_per_mtok"], dtype=float)
    raise InputError("--rank", rank, f"valid: {', '.join(RANKS)}")


def pareto_front(x: Iterable[float], y: Iterable[float]) -> np.ndarray:
    """Indices of the points not dominated when both x and y are minimised, sorted by x.

    A point is on the front when no other point has x ≤ its x and y < its y (ties in x keep
    the lowest y only)."""
    x = np.asarray(list(x) if not isinstance(x, np.ndarray) else x, dtype=float)
    y = np.asarray(list(y) if not isinstance(y, np.ndarray) else y, dtype=float)
    ok = np.flatnonzero(np.isfinite(x) & np.isfinite(y))
    order = ok[np.lexsort((y[ok], x[ok]))]
    keep = []
    best = np.inf
    for i in order:
        if y[i] < best:
            keep.append(i)
            best = y[i]
    return np.asarray(keep, dtype=np.int64)


@dataclass
class SearchResult:
    """Every valid layout of a search, sorted: fitting ones first, by the rank metric."""

    considered: int
    valid: int
    fitting: int
    capacity_bytes: float
    rank: str
    table: dict[str, np.ndarray]
    notes: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    dp_overlap: bool = False
    tp_overlap: bool = True
    algorithm: str = "backprop"
    backlink_layers: int = 0

    def __len__(self) -> int:
        return int(self.table["tp"].size)

    def layout(self, i: int) -> Layout:
        t = self.table
        return Layout(tp=int(t["tp"][i]), pp=int(t["pp"][i]), dp=int(t["dp"][i]), cp=int(t["cp"][i]),
                      vp=int(t["vp"][i]), micro=int(t["micro"][i]), sp=bool(t["sp"][i]),
                      ep=int(t["ep"][i]) if "ep" in t else 1,
                      recompute=str(t["recompute"][i]), zero=int(t["zero"][i]),
                      dp_overlap=self.dp_overlap, tp_overlap=self.tp_overlap,
                      algorithm=self.algorithm, backlink_layers=self.backlink_layers)

    def row(self, i: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in self.table.items():
            x = v[i]
            out[k] = x.item() if hasattr(x, "item") else x
        out["memory_gib"] = out["memory_bytes"] / GIB
        return out

    def best_index(self) -> Optional[int]:
        """Index of the best fitting layout (None when nothing fits)."""
        return 0 if self.fitting else None

    def position_of(self, metric_value: float) -> int:
        """1-based rank a layout with this metric value would take among the fitting ones."""
        key = rank_key(self.table, self.rank)[: self.fitting]
        return int(np.sum(key < metric_value - 1e-12 * abs(metric_value))) + 1

    def pareto(self, x: str = "memory_bytes", y: str = "iteration_time_s", fitting_only: bool = True) -> np.ndarray:
        n = self.fitting if fitting_only else len(self)
        return pareto_front(self.table[x][:n], self.table[y][:n])


def _fixed_dict(fixed: Optional[Mapping[str, Any]]) -> dict[str, Any]:
    out = {}
    for k, v in (fixed or {}).items():
        if v is None:
            continue
        if k not in LAYOUT_FIELDS:
            raise InputError(f"fixed.{k}", v, f"valid layout fields: {', '.join(LAYOUT_FIELDS)}")
        out[k] = v
    for k in ("tp", "pp", "dp", "cp", "vp", "micro", "zero"):
        if k in out and (isinstance(out[k], bool) or not isinstance(out[k], (int, np.integer)) or out[k] < 0):
            raise InputError(f"parallel.{k}" if k != "micro" else "batch.micro", out[k], "a positive integer")
    return out


def candidate_grid(model: ModelSpec, system: System, global_batch: int, fixed: Optional[Mapping[str, Any]] = None,
                   tp_beyond_domain: bool = False, max_vp: int = DEFAULT_MAX_VP,
                   max_cp: int = DEFAULT_MAX_CP, algorithm: str = "backprop") -> dict[str, np.ndarray]:
    """The numeric grid (tp, pp, dp, cp, vp, micro) with the fixed numeric fields applied.

    A fixed tp beyond the scale-up domain, vp above ``max_vp`` or cp above ``max_cp`` widens
    the grid so that the fixed value is enumerated. Local learning enumerates vp = 1 only."""
    fx = _fixed_dict(fixed)
    if "tp" in fx and fx["tp"] > system.scale_up_size:
        tp_beyond_domain = True
    if algorithm == "local":
        max_vp = 1
    # a fixed vp beyond layers or cp beyond count is no layout: nothing wider to enumerate
    max_vp = max(max_vp, min(int(fx.get("vp", 1)), int(model.layers)))
    max_cp = max(max_cp, min(int(fx.get("cp", 1)), int(system.count)))
    grid = layout_grid(model, system.count, global_batch, system.scale_up_size, tp_beyond_domain, max_vp, max_cp)
    keep = np.ones(grid["tp"].size, dtype=bool)
    for k in NUMERIC:
        if k in fx:
            keep &= grid[k] == int(fx[k])
    return {k: v[keep] for k, v in grid.items()}


def _categories(fixed: Mapping[str, Any], recipe: Recipe, zero_stages: tuple[int, ...] = ZERO,
                recompute: Optional[tuple[str, ...]] = None,
                model: Optional[ModelSpec] = None) -> tuple[list[bool], list[str], list[int], list[str]]:
    notes = []
    sps = [bool(fixed["sp"])] if "sp" in fixed else [False, True]
    if "recompute" in fixed:
        rcs = [str(fixed["recompute"])]
    elif recompute is not None:
        rcs = list(recompute)
    elif recipe.attention == "flash" and recipe.selective_policy != "op_sac":
        rcs = ["none", "full"]
        notes.append("recompute=selective not enumerated: with flash attention it equals none in the model")
    else:
        rcs = list(RECOMPUTE)
    if "recompute" not in fixed and recompute is None and model is not None and recipe.profile in MODULE_PROFILES:
        # Megatron-Core's module recompute, all of the model's modules at once (one more group;
        # the fixed-layout chooser, prediction.training.resolve_layout, tries every subset)
        every = "+".join(model_modules(model))
        rcs.insert(1, every)
        notes.append(f"recompute={every} (Megatron-Core recompute_modules) enumerated between none and full")
    zeros = [int(fixed["zero"])] if "zero" in fixed else list(zero_stages)
    if "sp" not in fixed:
        notes.append("sp=on enumerated only with tp > 1")
    if "zero" not in fixed:
        notes.append("zero 1-3 enumerated only with dp*cp > 1 (at dp*cp = 1 they are zero 0)")
    return sps, rcs, zeros, notes


def search_layouts(model: ModelSpec, system: System, precision: str, global_batch: int, *,
                   recipe: Optional[Recipe] = None, rank: str = "time",
                   fixed: Optional[Mapping[str, Any]] = None, tp_beyond_domain: bool = False,
                   max_vp: int = DEFAULT_MAX_VP, max_cp: int = DEFAULT_MAX_CP,
                   dp_overlap: bool = False, tp_overlap: bool = True,
                   capacity_bytes: Optional[float] = None,
                   progress: Optional[Callable[[int, int], None]] = None,
                   algorithm: str = "backprop", backlink_layers: int = 0,
                   zero_stages: tuple[int, ...] = ZERO, recompute: Optional[tuple[str, ...]] = None,
                   max_micro: Optional[int] = None) -> SearchResult:
    """Enumerate, evaluate (vectorized), filter by memory and rank every layout.

    ``fixed`` holds layout fields that may not change (e.g. a sweep that pins ``tp``).
    ``capacity_bytes`` defaults to the accelerator's HBM capacity. ``progress(done, total)``
    is called after each categorical group (sp, recompute, ZeRO) has been evaluated.
    ``algorithm`` (backprop | local) and ``backlink_layers`` are the training algorithm every
    layout is evaluated with (see :func:`~xlayer.engine.training.evaluate_training`)."""
    t0 = _time.perf_counter()
    if rank not in RANKS:
        raise InputError("--rank", rank, f"valid: {', '.join(RANKS)}")
    if algorithm not in ALGORITHMS:
        raise InputError("parallel.algorithm", algorithm, f"valid: {', '.join(ALGORITHMS)}")
    if isinstance(backlink_layers, bool) or not isinstance(backlink_layers, (int, np.integer)) or backlink_layers < 0:
        raise InputError("parallel.backlink_layers", backlink_layers, "a non-negative integer")
    if backlink_layers and algorithm != "local":
        raise InputError("parallel.backlink_layers", backlink_layers, "BackLink needs algorithm: local")
    check_grid_bounds(int(system.count), int(global_batch))
    recipe = recipe or recipe_for(model, precision)
    fx = _fixed_dict(fixed)
    capacity = float(system.accelerator.hbm.capacity_bytes if capacity_bytes is None else capacity_bytes)
    grid = candidate_grid(model, system, global_batch, fx, tp_beyond_domain, max_vp, max_cp, algorithm)
    ok = valid_mask(model, system.count, global_batch, **grid, algorithm=algorithm,
                    backlink_layers=backlink_layers) if grid["tp"].size else np.zeros(0, bool)
    if max_micro is not None:
        keep = grid["micro"] <= max_micro
        grid = {k: v[keep] for k, v in grid.items()}
        ok = ok[keep]
    sps, rcs, zeros, notes = _categories(fx, recipe, zero_stages, recompute, model)
    if tuple(zero_stages) != ZERO and "zero" not in fx:
        notes.append(f"ZeRO stages {'/'.join(map(str, zero_stages))} (what the software stack has)")
    if algorithm == "local":
        notes.insert(0, "algorithm=local (the case's): every stage a local module"
                     + (f" with BackLink over {backlink_layers} layers" if backlink_layers else "")
                     + "; vp > 1 not enumerated (each stage is one module)")
    has_tp = grid["tp"] > 1
    sharded = grid["dp"] * grid["cp"] > 1  # ZeRO 1-3 differ from ZeRO 0 only here
    considered = valid = 0
    parts: list[dict[str, np.ndarray]] = []
    n_groups, done = len(sps) * len(rcs) * len(zeros), 0
    for sp in sps:
        rows = ok & has_tp if (sp and "sp" not in fx) else ok
        n_enum = int(has_tp.sum()) if (sp and "sp" not in fx) else int(grid["tp"].size)
        sub = {k: v[rows] for k, v in grid.items()}
        n = int(rows.sum())
        for rc in rcs:
            for z in zeros:
                done += 1
                if z > 0 and "zero" not in fx:  # at dp*cp = 1 this is the zero-0 layout again
                    zrows = rows & sharded
                    n_z = int(zrows.sum())
                    n_enum_z = int((has_tp & sharded).sum()) if (sp and "sp" not in fx) else int(sharded.sum())
                    zsub = {k: v[zrows] for k, v in grid.items()}
                else:
                    n_z, n_enum_z, zsub = n, n_enum, sub
                considered += n_enum_z
                valid += n_z
                if n_z == 0:
                    if progress:
                        progress(done, n_groups)
                    continue
                r = evaluate_layouts(model, system, precision, global_batch, zsub, sp, rc, z, recipe,
                                     dp_overlap=dp_overlap, tp_overlap=tp_overlap, algorithm=algorithm,
                                     backlink_layers=backlink_layers)
                part = dict(zsub)
                part["sp"] = np.full(n_z, sp)
                part["recompute"] = np.full(n_z, rc, dtype=object)
                part["zero"] = np.full(n_z, z, dtype=np.int64)
                part["iteration_time_s"] = r["iteration_time_s"]
                part["memory_bytes"] = r["memory_bytes"]
                part["mfu"] = r["mfu"]
                parts.append(part)
                if progress:
                    progress(done, n_groups)
    cols = list(NUMERIC) + ["sp", "recompute", "zero", "iteration_time_s", "memory_bytes", "mfu"]
    if parts:
        table = {k: np.concatenate([p[k] for p in parts]) for k in cols}
    else:
        table = {k: np.zeros(0, dtype=object if k == "recompute" else (bool if k == "sp" else float))
                 for k in cols}
        for k in NUMERIC + ("zero",):
            table[k] = table[k].astype(np.int64)
    tokens = float(global_batch * model.seq_len)
    t = table["iteration_time_s"]
    table["fits"] = table["memory_bytes"] <= capacity
    table["tokens_per_s_per_gpu"] = tokens / (t * system.count)
    table["gpu_hours_per_mtok"] = system.count * t / 3600.0 / (tokens / 1e6)
    table["energy_j"] = system.accelerator.tdp_w * system.count * t
    rc_code = np.array([RECOMPUTE.index(x) if x in RECOMPUTE else 1 for x in table["recompute"]], dtype=np.int64)
    order = np.lexsort((table["micro"], table["tp"], table["pp"], table["cp"], table["vp"],
                        table["sp"].astype(np.int64), rc_code, table["zero"], rank_key(table, rank),
                        ~table["fits"]))
    table = {k: v[order] for k, v in table.items()}
    fitting = int(table["fits"].sum())
    return SearchResult(considered=considered, valid=valid, fitting=fitting, capacity_bytes=capacity, rank=rank,
                        table=table, notes=notes, elapsed_s=_time.perf_counter() - t0,
                        dp_overlap=dp_overlap, tp_overlap=tp_overlap, algorithm=algorithm,
                        backlink_layers=int(backlink_layers))



def fastest_fitting(model: ModelSpec, system: System, precision: str, global_batch: int,
                    **space: Any) -> tuple[Optional[Layout], SearchResult]:
    """The fastest layout that fits memory in the search space ``space`` (the keyword
    arguments of :func:`search_layouts`), or None when none fits; with the whole result."""
    res = search_layouts(model, system, precision, global_batch, **space)
    i = res.best_index()
    return (None if i is None else res.layout(i)), res
