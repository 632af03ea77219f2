"""Sweeps: a base case, parameters varied over Cartesian grids or random samples, each point
evaluated (optionally searched for its best layout), results streamed to a Parquet dataset.

Sweep file (YAML)::

    name: gpt3-hbm                      # optional
    base: ../examples/gpt3-175b-1024xa100.yaml   # a case file (relative to this file) or an inline case
    mode: grid                          # grid (Cartesian product, default) | random
    samples: 20                         # random only: number of points
    seed: 0                             # random only
    search: true                        # true (default): each point searched for its best layout;
                                        # false: the base case's layout (open fields searched)
    rank: time                          # time | tokens_per_s_per_gpu | cost
    tp_beyond_domain: false
    chunk_size: 4                       # points per task and per Parquet file
    parameters:
      hardware.hbm_bandwidth_scale: [0.5, 1, 2]          # a list of values
      system.count: {start: 256, stop: 1024, step: 256}  # inclusive arithmetic range
      hardware.peak_flops_scale: {start: 0.5, stop: 2, num: 3, scale: log}  # num points, lin or log
      model.layers: {low: 48, high: 96, int: true}       # random mode only: uniform (log: true)

Parameters (``PARAMETERS``): ``model.<field>`` (any ModelSpec field), ``system.count``,
``system.accelerator``, ``system.scale_up_size``, ``parallel.<field>``, ``batch.global``,
``batch.micro``, ``precision`` and the hardware overrides ``hardware.*`` applied to the
catalog accelerator with ``model_copy(update=...)`` (see :func:`apply_hardware`).
Layout fields given as parameters are held fixed at each point, also when ``search: true``.

Everything that can be checked is checked before any point is evaluated
(:func:`load_sweep`/:func:`plan`): unknown parameters, empty ranges, values the case format
refuses and points that have no valid layout raise :class:`~xlayer.errors.InputError` naming
the entry.

Output: a folder that is a Parquet dataset (``pandas.read_parquet(folder)`` and
``pyarrow.dataset.dataset(folder)`` read it): one ``part-<chunk>.parquet`` per finished chunk,
all with the schema of :func:`result_schema`, written to a hidden temporary name and renamed,
so a file exists only when complete; the bookkeeping files are named so that Parquet readers
skip them (a leading underscore): ``_sweep.yaml`` (the definition, base case inlined) and
``_sweep.json`` (hash, points, chunk size). ``resume`` reads the finished point ids from the
part files and evaluates only the others: a SIGKILL loses at most the chunks in flight and
recomputes no finished point. Local worker processes die with the driver (see
:func:`_worker_init`), so a killed sweep leaves no process behind.
"""
from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import os
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import yaml

from xlayer.errors import InputError, closest
from xlayer.explore.search import (DEFAULT_MAX_CP, DEFAULT_MAX_VP, LAYOUT_FIELDS, RANKS, ZERO, candidate_grid,
                                   search_layouts)
from xlayer.engine.vectorized import valid_mask
from xlayer.hardware.spec import Accelerator, System
from xlayer.prediction.case import Case, ParallelSection, case_from_dict
from xlayer.units import GIB
from xlayer.workload.model import ModelSpec

SWEEP_KEYS = ("name", "base", "mode", "samples", "seed", "search", "rank", "tp_beyond_domain", "max_vp", "max_cp",
              "chunk_size", "parameters", "notes")

# hardware overrides: name -> what it changes (applied by apply_hardware)
HARDWARE = {
    "hardware.peak_flops_scale": "multiplies every dense peak in peak_flops_per_s",
    "hardware.hbm_bandwidth_bytes_per_s": "sets the HBM bandwidth",
    "hardware.hbm_bandwidth_scale": "multiplies the HBM bandwidth",
    "hardware.hbm_capacity_bytes": "sets the HBM capacity",
    "hardware.hbm_capacity_gib": "sets the HBM capacity in GiB",
    "hardware.scale_up_bandwidth_bytes_per_s": "sets the scale-up (NVLink) bandwidth per accelerator",
    "hardware.scale_up_bandwidth_scale": "multiplies the scale-up bandwidth",
    "hardware.scale_out_bandwidth_bytes_per_s": "sets the scale-out (NIC) bandwidth per accelerator",
    "hardware.scale_out_bandwidth_scale": "multiplies the scale-out bandwidth",
    "hardware.scale_up_domain": "sets the scale-up domain size (accelerator and system)",
    "hardware.count": "sets the accelerator count (same as system.count)",
}
CASE_SCALARS = ("system.count", "system.accelerator", "system.scale_up_size", "batch.global", "batch.micro",
                "precision")
MODEL_FIELDS = tuple(k for k in ModelSpec.model_fields if k not in ("defaults_taken",))
PARALLEL_FIELDS = tuple(ParallelSection.model_fields)
PARAMETERS = (tuple(f"model.{k}" for k in MODEL_FIELDS) + CASE_SCALARS +
              tuple(f"parallel.{k}" for k in PARALLEL_FIELDS) + tuple(HARDWARE))
ALIASES = {"hardware.count": "system.count"}
# sweep parameter -> layout field held fixed at the point
LAYOUT_PARAMS = {f"parallel.{k}": k for k in LAYOUT_FIELDS if k in PARALLEL_FIELDS}
LAYOUT_PARAMS["batch.micro"] = "micro"
# a sweep is checked point by point before any work: bound the number of points (and so the
# values of one range) so that a typo in a range refuses at once instead of hanging
MAX_SWEEP_POINTS = 100_000


# ---- the definition ------------------------------------------------------------------------

def _err(entry: str, value: Any, valid: str) -> InputError:
    return InputError(entry, value, valid)


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _finite(*xs: Any) -> bool:
    return all(_is_num(x) and math.isfinite(x) for x in xs)


def _too_many(entry: str, spec: Any, n: float) -> InputError:
    return _err(entry, spec, f"{n:,.0f} values; a sweep takes at most {MAX_SWEEP_POINTS:,} points")


def _num(x: Any) -> Any:
    """YAML 1.1 reads ``12.5e9`` (no sign in the exponent) as a string: accept it as a number."""
    if isinstance(x, str):
        try:
            v = float(x)
        except ValueError:
            return x
        return int(v) if v.is_integer() and "." not in x and "e" not in x.lower() else v
    return x


def expand_values(name: str, spec: Any, mode: str) -> list[Any] | dict[str, Any]:
    """A parameter's value list (grid) or its sampling spec (random: a list or {low, high})."""
    entry = f"parameters.{name}"
    if isinstance(spec, dict):
        spec = {k: (_num(v) if k in ("low", "high", "start", "stop", "step") else v) for k, v in spec.items()}
    if name.startswith("hardware."):
        spec = [_num(v) for v in spec] if isinstance(spec, list) else (_num(spec) if not isinstance(spec, dict)
                                                                          else spec)
    if isinstance(spec, list):
        if not spec:
            raise _err(entry, spec, "empty list; give at least one value")
        return list(spec)
    if not isinstance(spec, dict):
        return [spec]
    keys = set(spec)
    if keys <= {"low", "high", "log", "int"} and {"low", "high"} <= keys:
        if mode != "random":
            raise _err(entry, spec, "{low, high} is a random-mode distribution; use mode: random or "
                                    "{start, stop, step|num}")
        lo, hi = spec["low"], spec["high"]
        if not _finite(lo, hi) or hi < lo:
            raise _err(entry, spec, "empty range: need finite numbers low <= high")
        if spec.get("log") and lo <= 0:
            raise _err(entry, spec, "log sampling needs low > 0")
        if spec.get("int") and math.floor(hi) < math.ceil(lo):
            raise _err(entry, spec, "empty range: no integer between low and high")
        return dict(spec)
    if keys <= {"start", "stop", "step", "num", "scale"} and {"start", "stop"} <= keys:
        start, stop = spec["start"], spec["stop"]
        if not _finite(start, stop):
            raise _err(entry, spec, "start and stop must be finite numbers")
        scale = spec.get("scale", "linear")
        if scale not in ("linear", "log"):
            raise _err(entry, spec, "scale must be linear or log")
        if "step" in spec and "num" not in spec:
            step = spec["step"]
            if not _finite(step) or step == 0:
                raise _err(entry, spec, "step must be a finite non-zero number")
            if scale == "log":
                if start <= 0 or stop <= 0 or step <= 1:
                    raise _err(entry, spec, "scale: log with step multiplies: need start, stop > 0 and step > 1")
                n_log = math.log(stop / start) / math.log(step) + 1 if stop >= start else 0
                if n_log > MAX_SWEEP_POINTS:
                    raise _too_many(entry, spec, n_log)
                vals, v = [], start
                while v <= stop * (1 + 1e-12):
                    vals.append(v)
                    v *= step
            else:
                n_f = (stop - start) / step
                if not math.isfinite(n_f) or n_f + 1 > MAX_SWEEP_POINTS:
                    raise _too_many(entry, spec, n_f + 1 if math.isfinite(n_f) else float("inf"))
                n = math.floor(n_f + 1e-9) + 1
                vals = [start + i * step for i in range(max(n, 0))]
            if all(isinstance(x, int) for x in (start, stop, step)):
                vals = [int(round(v)) for v in vals]
        elif "num" in spec and "step" not in spec:
            num = spec["num"]
            if not isinstance(num, int) or isinstance(num, bool) or num < 1:
                raise _err(entry, spec, "num must be a positive integer")
            if num > MAX_SWEEP_POINTS:
                raise _too_many(entry, spec, num)
            if scale == "log":
                if start <= 0 or stop <= 0:
                    raise _err(entry, spec, "scale: log needs start, stop > 0")
                vals = [float(v) for v in np.geomspace(start, stop, num)]
            else:
                vals = [float(v) for v in np.linspace(start, stop, num)]
        else:
            raise _err(entry, spec, "give exactly one of step or num")
        if not vals:
            raise _err(entry, spec, "empty range: no value between start and stop with this step")
        return vals
    raise _err(entry, spec, "a list, a scalar, {start, stop, step|num[, scale]} or (random) {low, high[, log, int]}")


@dataclass
class Sweep:
    """A validated sweep definition and its points (deterministic: same file, same points)."""

    name: str
    base: dict[str, Any]
    mode: str
    search: bool
    rank: str
    tp_beyond_domain: bool
    max_vp: int
    max_cp: int
    chunk_size: int
    parameters: dict[str, Any]
    points: list[dict[str, Any]]
    seed: int = 0
    samples: Optional[int] = None
    origin: str = "sweep"

    def definition(self) -> dict[str, Any]:
        d = {"name": self.name, "base": self.base, "mode": self.mode, "search": self.search, "rank": self.rank,
             "tp_beyond_domain": self.tp_beyond_domain, "max_vp": self.max_vp, "max_cp": self.max_cp,
             "chunk_size": self.chunk_size, "parameters": self.parameters}
        if self.mode == "random":
            d.update(samples=self.samples, seed=self.seed)
        return d

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.definition(), sort_keys=True, default=str).encode()).hexdigest()[:16]

    def chunks(self) -> list[list[int]]:
        n = len(self.points)
        return [list(range(i, min(i + self.chunk_size, n))) for i in range(0, n, self.chunk_size)]

    def spec(self) -> dict[str, Any]:
        """What a worker needs (plain data, picklable)."""
        return {"base": self.base, "search": self.search, "rank": self.rank, "tp_beyond_domain": self.tp_beyond_domain,
                "max_vp": self.max_vp, "max_cp": self.max_cp, "param_names": list(self.parameters)}


def _sample(name: str, spec: Any, rng: np.random.Generator) -> Any:
    if isinstance(spec, list):
        return spec[int(rng.integers(len(spec)))]
    lo, hi = float(spec["low"]), float(spec["high"])
    if spec.get("log"):
        v = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    else:
        v = float(rng.uniform(lo, hi))
    if spec.get("int"):
        v = int(min(max(round(v), math.ceil(lo)), math.floor(hi)))
    return v


def _check_name(name: str) -> None:
    if name in PARAMETERS:
        return
    hint = closest(name, PARAMETERS)
    raise _err(f"parameters.{name}", "unknown parameter",
               (f"did you mean {', '.join(hint)}? " if hint else "") +
               "valid: model.<field>, system.count|accelerator|scale_up_size, parallel.<field>, batch.global|micro, "
               "precision, " + ", ".join(HARDWARE))


def sweep_from_dict(data: Any, origin: str = "sweep", base_dir: Optional[Path] = None,
                    progress: Optional[Callable[[int, int], None]] = None) -> Sweep:
    """Validate a parsed sweep file and expand its points; every point is checked (see :func:`plan`,
    which calls ``progress``)."""
    if not isinstance(data, dict):
        raise _err(origin, type(data).__name__, "a sweep file must be a YAML mapping with base and parameters")
    for k in data:
        if k not in SWEEP_KEYS:
            hint = closest(str(k), SWEEP_KEYS)
            raise _err(str(k), data[k], "unknown key" + (f"; did you mean {hint[0]}?" if hint else "") +
                       f" valid: {', '.join(SWEEP_KEYS)}")
    if "base" not in data:
        raise _err("base", None, "a sweep needs a base case: a file path or an inline case mapping")
    base = data["base"]
    if isinstance(base, str):
        p = Path(base)
        if not p.is_absolute() and base_dir is not None:
            p = base_dir / p
        if not p.exists():
            raise _err("base", base, "file not found")
        try:
            base = yaml.safe_load(p.read_text())
        except yaml.YAMLError as exc:
            raise _err("base", str(p), f"malformed YAML ({exc})") from None
    if not isinstance(base, dict):
        raise _err("base", type(base).__name__, "a case mapping or a path to a case file")
    try:
        base_case = case_from_dict(copy.deepcopy(base), "base")
    except InputError as exc:
        raise _err(f"base.{exc.field}", exc.value, exc.valid) from None
    if base_case.kind != "training":
        raise _err("base.kind", base_case.kind, "sweeps evaluate training cases")
    mode = data.get("mode", "grid")
    if mode not in ("grid", "random"):
        raise _err("mode", mode, "grid or random")
    rank = data.get("rank", "time")
    if rank not in RANKS:
        raise _err("rank", rank, f"valid: {', '.join(RANKS)}")
    search = data.get("search", True)
    if not isinstance(search, bool):
        raise _err("search", search, "true or false")
    chunk_size = data.get("chunk_size", 4)
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise _err("chunk_size", chunk_size, "a positive integer")
    params = data.get("parameters") or {}
    if not isinstance(params, dict):
        raise _err("parameters", type(params).__name__, "a mapping from parameter name to values")
    expanded: dict[str, Any] = {}
    for name, spec in params.items():
        _check_name(str(name))
        expanded[str(name)] = expand_values(str(name), spec, mode)
    seed = data.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise _err("seed", seed, "a non-negative integer")
    for key, default in (("max_vp", DEFAULT_MAX_VP), ("max_cp", DEFAULT_MAX_CP)):
        v = data.get(key, default)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise _err(key, v, "a positive integer")
    if not isinstance(data.get("tp_beyond_domain", False), bool):
        raise _err("tp_beyond_domain", data.get("tp_beyond_domain"), "true or false")
    samples = data.get("samples")
    if mode == "random":
        if not isinstance(samples, int) or isinstance(samples, bool) or samples < 1:
            raise _err("samples", samples, "random mode needs samples: a positive integer")
        if samples > MAX_SWEEP_POINTS:
            raise _err("samples", samples, f"a sweep takes at most {MAX_SWEEP_POINTS:,} points")
        rng = np.random.default_rng(seed)
        points = [{n: _sample(n, s, rng) for n, s in expanded.items()} for _ in range(samples)]
    else:
        if samples is not None:
            raise _err("samples", samples, "only for mode: random")
        names = list(expanded)
        n_points = math.prod(len(expanded[n]) for n in names)
        if n_points > MAX_SWEEP_POINTS:
            raise _err("parameters", f"{n_points:,} points",
                       f"the grid (product of the value lists) may hold at most {MAX_SWEEP_POINTS:,} points")
        points = [dict(zip(names, combo)) for combo in itertools.product(*(expanded[n] for n in names))]
    sw = Sweep(name=str(data.get("name") or origin), base=base, mode=mode, search=search, rank=rank,
               tp_beyond_domain=bool(data.get("tp_beyond_domain", False)),
               max_vp=int(data.get("max_vp", DEFAULT_MAX_VP)), max_cp=int(data.get("max_cp", DEFAULT_MAX_CP)),
               chunk_size=chunk_size, parameters={k: params[k] for k in params}, points=points, seed=seed,
               samples=samples, origin=origin)
    plan(sw, progress)
    return sw


def load_sweep(path: str | Path, progress: Optional[Callable[[int, int], None]] = None) -> Sweep:
    p = Path(path)
    if not p.exists():
        raise _err("SWEEP", str(path), "file not found")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "?"
        raise _err(p.name, where, f"malformed YAML ({getattr(exc, 'problem', exc)})") from None
    return sweep_from_dict(data, p.stem, p.parent, progress)


# ---- one point --------------------------------------------------------------------------------

def _set(d: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    for p in parts[:-1]:
        if d.get(p) is None:
            d[p] = {}
        d = d[p]
    d[parts[-1]] = value


def _point_label(i: int, point: dict[str, Any]) -> str:
    return f"points[{i}] (" + ", ".join(f"{k}={v}" for k, v in point.items()) + ")"


def apply_hardware(acc: Accelerator, overrides: dict[str, Any]) -> Accelerator:
    """A modified frozen accelerator: the sweep's ``hardware.*`` parameters are the case
    format's ``system.overrides`` keys (one implementation: :class:`~xlayer.hardware.variant.HardwareOverrides`)."""
    from pydantic import ValidationError

    from xlayer.hardware.variant import HardwareOverrides
    keys = {k.removeprefix("hardware."): v for k, v in overrides.items()
            if k.startswith("hardware.") and k != "hardware.count"}
    if not keys:
        return acc
    try:
        return HardwareOverrides(**keys).apply(acc)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise InputError("hardware", keys, err["msg"].removeprefix("Value error, ")) from None


def _check_hardware(entry: str, name: str, value: Any) -> None:
    if name == "hardware.scale_up_domain":
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
        want = "a positive integer"
    elif name == "hardware.count":
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
        want = "a positive integer"
    else:
        ok = _is_num(value) and value > 0 and math.isfinite(value)
        want = "a positive number"
    if not ok:
        raise _err(entry, value, f"{name} must be {want}")


@dataclass
class Point:
    case: Case
    system: System
    fixed: dict[str, Any]
    dp_overlap: bool
    tp_overlap: bool
    algorithm: str = "backprop"
    backlink_layers: int = 0


def build_point(spec: dict[str, Any], point: dict[str, Any], index: int = 0) -> Point:
    """The case, system and fixed layout fields of one point (errors name the point)."""
    label = _point_label(index, point)
    data = copy.deepcopy(spec["base"])
    hw = {}
    for name, value in point.items():
        name = ALIASES.get(name, name)
        if name.startswith("hardware."):
            _check_hardware(label, name, value)
            hw[name] = value
            if name == "hardware.scale_up_domain":
                _set(data, "system.scale_up_size", int(value))
            continue
        _set(data, name, value)
    if spec["search"]:
        # the base layout is not a constraint; only layout parameters of the sweep are
        par = {k: v for k, v in (data.get("parallel") or {}).items()
               if k in ("dp_overlap", "tp_overlap", "ep", "algorithm", "backlink_layers", "ep_overlap",
                        "shared_expert_overlap")}
        for name, value in point.items():
            if name.startswith("parallel."):
                par[name.split(".", 1)[1]] = value
        data["parallel"] = par
        if "batch.micro" not in point and isinstance(data.get("batch"), dict):
            data["batch"]["micro"] = None
    try:
        case = case_from_dict(data, label)
    except InputError as exc:
        raise _err(f"{label}: {exc.field}", exc.value, exc.valid) from None
    system = case.system_spec()
    if hw:
        acc = apply_hardware(system.accelerator, hw)
        system = System(accelerator=acc, count=system.count, scale_up_size=system.scale_up_size)
    P = case.parallel
    fixed: dict[str, Any] = {}
    for k in ("tp", "pp", "dp", "cp", "vp", "sp", "recompute", "zero"):
        v = getattr(P, k)
        if v is None:
            continue
        if spec["search"] and f"parallel.{k}" not in point:
            continue
        fixed[k] = v
    if case.batch.micro is not None:
        fixed["micro"] = case.batch.micro
    if not spec["search"]:
        # a stated layout without dp: dp follows from count (as resolve_layout does)
        fixed.setdefault("cp", 1)
        fixed.setdefault("vp", 1)
    return Point(case=case, system=system, fixed=fixed,
                 dp_overlap=bool(P.dp_overlap) if P.dp_overlap is not None else False,
                 tp_overlap=bool(P.tp_overlap) if P.tp_overlap is not None else True,
                 algorithm=getattr(P, "algorithm", None) or "backprop",
                 backlink_layers=int(getattr(P, "backlink_layers", None) or 0))


@lru_cache(maxsize=256)
def _has_valid(model_json: str, count: int, global_batch: int, scale_up: int, fixed_json: str,
               tp_beyond: bool, max_vp: int, max_cp: int, algorithm: str = "backprop",
               backlink_layers: int = 0) -> bool:
    model = ModelSpec.model_validate_json(model_json)
    fixed = json.loads(fixed_json)
    system_stub = _Stub(count=count, scale_up_size=scale_up)
    grid = candidate_grid(model, system_stub, global_batch, fixed, tp_beyond, max_vp, max_cp, algorithm)
    if grid["tp"].size == 0:
        return False
    return bool(valid_mask(model, count, global_batch, **grid, algorithm=algorithm,
                           backlink_layers=backlink_layers).any())


@dataclass(frozen=True)
class _Stub:
    count: int
    scale_up_size: int


def _why_invalid(pt: Point) -> str:
    """The first rule a point breaks, in check_layout's words when the layout is explicit."""
    from xlayer.mapping.layout import Layout, check_layout
    f = pt.fixed
    count = pt.case.system.count
    tp, pp, cp = int(f.get("tp", 1)), int(f.get("pp", 1)), int(f.get("cp", 1))
    if "dp" not in f and count % (tp * pp * cp):
        return f"tp*pp*cp={tp * pp * cp} does not divide system.count={count}"
    dp = int(f.get("dp", max(count // (tp * pp * cp), 1)))
    lay = Layout(tp=tp, pp=pp, dp=dp, cp=cp, vp=int(f.get("vp", 1)), micro=int(f.get("micro", 1)),
                 algorithm=pt.algorithm, backlink_layers=pt.backlink_layers)
    explicit = all(k in f for k in ("tp", "pp", "dp", "cp", "vp", "micro"))
    try:
        check_layout(lay, pt.case.model, count, pt.case.batch.global_)
    except InputError as exc:
        if explicit:
            return f"{exc.field}: {exc.valid}"
        return f"no layout passes the layout rules, e.g. {lay.describe()}: {exc.field}: {exc.valid}"
    return ("no divisor-based layout (tp, pp, dp, cp, vp, micro) of this model on system.count="
            f"{count} at batch.global={pt.case.batch.global_} passes the layout rules")


def check_point(spec: dict[str, Any], point: dict[str, Any], index: int) -> Point:
    pt = build_point(spec, point, index)
    try:
        ok = _has_valid(pt.case.model.model_dump_json(), pt.system.count, pt.case.batch.global_,
                        pt.system.scale_up_size, json.dumps(pt.fixed, sort_keys=True), bool(spec["tp_beyond_domain"]),
                        int(spec["max_vp"]), int(spec["max_cp"]), pt.algorithm, pt.backlink_layers)
    except InputError as exc:  # e.g. a count beyond what a search enumerates
        raise _err(f"{_point_label(index, point)}: {exc.field}", exc.value, exc.valid) from None
    if not ok:
        raise _err(_point_label(index, point), "no valid layout", _why_invalid(pt))
    return pt


def plan(sw: Sweep, progress: Optional[Callable[[int, int], None]] = None) -> None:
    """Check every point before any work: the case it makes and that it has a valid layout.
    ``progress(done, total)`` is called after each point."""
    spec = sw.spec()
    for i, point in enumerate(sw.points):
        check_point(spec, point, i)
        if progress:
            progress(i + 1, len(sw.points))


def evaluate_point(spec: dict[str, Any], point: dict[str, Any], index: int) -> dict[str, Any]:
    """One result row: the point's parameters, its best (or only) layout and its numbers."""
    t0 = time.perf_counter()
    from xlayer.mapping.stack import allowed_zero
    from xlayer.prediction.training import case_recipe
    pt = build_point(spec, point, index)
    case, system = pt.case, pt.system
    fw = case.software.framework
    # the case's software block and MoE switches select the stack profile, as predict and search do
    res = search_layouts(case.model, system, case.precision, case.batch.global_, rank=spec["rank"],
                         fixed=pt.fixed, tp_beyond_domain=spec["tp_beyond_domain"], max_vp=spec["max_vp"],
                         max_cp=spec["max_cp"], dp_overlap=pt.dp_overlap, tp_overlap=pt.tp_overlap,
                         algorithm=pt.algorithm, backlink_layers=pt.backlink_layers, recipe=case_recipe(case),
                         zero_stages=allowed_zero(fw, 2) if fw else ZERO)
    row: dict[str, Any] = {"point_id": index}
    for k in spec["param_names"]:
        row[k] = point[k]
    row.update(accelerator=system.accelerator.name, accelerators=system.count, scale_up_size=system.scale_up_size,
               global_batch=case.batch.global_, seq_len=case.model.seq_len, precision=case.precision,
               considered=res.considered, valid=res.valid, fitting=res.fitting,
               capacity_gib=res.capacity_bytes / GIB, algorithm=pt.algorithm, backlink_layers=pt.backlink_layers)
    if len(res) == 0:
        status, i = "no_valid", None
    elif res.fitting:
        status, i = "ok", 0
    else:  # nothing fits: report the layout that needs least memory
        status, i = "no_fit", int(np.nanargmin(res.table["memory_bytes"]))
    row["status"] = status
    for k in LAYOUT_FIELDS:
        row[k] = None if i is None else res.table[k][i].item() if hasattr(res.table[k][i], "item") \
            else res.table[k][i]
    for k in ("iteration_time_s", "memory_bytes", "mfu", "tokens_per_s_per_gpu", "gpu_hours_per_mtok", "energy_j"):
        row[k] = float("nan") if i is None else float(res.table[k][i])
    row["memory_gib"] = row.pop("memory_bytes") / GIB
    row["fits"] = bool(i is not None and res.table["fits"][i])
    row["eval_s"] = time.perf_counter() - t0
    return row


def evaluate_chunk(spec: dict[str, Any], items: list[tuple[int, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Evaluate a chunk of (point id, parameters); runs in a worker process or a Ray task."""
    return [evaluate_point(spec, p, i) for i, p in items]


# ---- output -------------------------------------------------------------------------------------

RESULT_COLUMNS = ("point_id", "chunk", "run", "accelerator", "accelerators", "scale_up_size", "global_batch",
                  "seq_len", "precision", "status", "tp", "pp", "dp", "cp", "vp", "micro", "sp", "recompute", "zero",
                  "algorithm", "backlink_layers", "iteration_time_s", "memory_gib", "capacity_gib", "fits", "mfu", "tokens_per_s_per_gpu",
                  "gpu_hours_per_mtok", "energy_j", "considered", "valid", "fitting", "eval_s")


def _arrow_type(values: list[Any]):
    import pyarrow as pa
    vals = [v for v in values if v is not None]
    if vals and all(isinstance(v, bool) for v in vals):
        return pa.bool_()
    if vals and all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
        return pa.int64()
    if vals and all(_is_num(v) for v in vals):
        return pa.float64()
    return pa.string()


def result_schema(sw: Sweep):
    import pyarrow as pa
    fields = [pa.field("point_id", pa.int64()), pa.field("chunk", pa.int64()), pa.field("run", pa.string())]
    for name in sw.parameters:
        fields.append(pa.field(name, _arrow_type([p[name] for p in sw.points])))
    types = {"accelerator": pa.string(), "accelerators": pa.int64(), "scale_up_size": pa.int64(),
             "global_batch": pa.int64(), "seq_len": pa.int64(), "precision": pa.string(), "status": pa.string(),
             "tp": pa.int64(), "pp": pa.int64(), "dp": pa.int64(), "cp": pa.int64(), "vp": pa.int64(),
             "micro": pa.int64(), "sp": pa.bool_(), "recompute": pa.string(), "zero": pa.int64(),
             "algorithm": pa.string(), "backlink_layers": pa.int64(),
             "fits": pa.bool_(), "considered": pa.int64(), "valid": pa.int64(), "fitting": pa.int64()}
    for c in RESULT_COLUMNS[3:]:
        if c in sw.parameters:  # e.g. precision: the parameter column already holds it
            continue
        fields.append(pa.field(c, types.get(c, pa.float64())))
    return pa.schema(fields)


def _coerce(v: Any, typ) -> Any:
    import pyarrow as pa
    if v is None:
        return None
    if typ == pa.string():
        return str(v)
    if typ == pa.float64():
        return float(v)
    return v


def write_part(out: Path, chunk: int, rows: list[dict[str, Any]], schema, run: str) -> Path:
    """Write one chunk's rows atomically (hidden temporary file, fsync, rename)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    cols = {}
    for f in schema:
        if f.name == "chunk":
            cols[f.name] = [chunk] * len(rows)
        elif f.name == "run":
            cols[f.name] = [run] * len(rows)
        else:
            cols[f.name] = [_coerce(r.get(f.name), f.type) for r in rows]
    table = pa.table(cols, schema=schema)
    final = out / f"part-{chunk:06d}.parquet"
    if final.exists():  # a chunk finished only in part before (chunk size changed): keep both
        final = out / f"part-{chunk:06d}-{uuid.uuid4().hex[:8]}.parquet"
    tmp = out / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    pq.write_table(table, tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    return final


DEFINITION_FILE = "_sweep.yaml"   # leading underscore: Parquet dataset readers skip it
META_FILE = "_sweep.json"
LEGACY_FILES = ("sweep.yaml", "sweep.json")  # names before the folder was a Parquet dataset


def part_files(out: Path) -> list[Path]:
    return sorted(p for p in Path(out).glob("part-*.parquet"))


def meta_path(out: str | Path) -> Optional[Path]:
    """The folder's ``_sweep.json`` (or the legacy ``sweep.json``), None when there is none."""
    for name in (META_FILE, "sweep.json"):
        p = Path(out) / name
        if p.is_file():
            return p
    return None


def read_meta(out: str | Path) -> dict[str, Any]:
    """The sweep folder's metadata (name, digest, points, chunk size, parameter names); {} if none."""
    p = meta_path(out)
    if p is None:
        return {}
    try:
        meta = json.loads(p.read_text())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def is_sweep_folder(path: str | Path) -> bool:
    """True for a folder written by ``xlayer sweep`` (metadata or part files present)."""
    p = Path(path)
    return p.is_dir() and (meta_path(p) is not None or bool(part_files(p)))


def read_results(out: str | Path):
    """All finished rows of a sweep folder as a pandas DataFrame, sorted by point_id."""
    import pandas as pd
    import pyarrow.parquet as pq
    files = part_files(Path(out))
    if not files:
        return pd.DataFrame()
    df = pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)
    return df.sort_values("point_id", kind="stable").reset_index(drop=True)


def finished_points(out: Path) -> set[int]:
    import pyarrow.parquet as pq
    done: set[int] = set()
    for f in part_files(out):
        done.update(int(x) for x in pq.read_table(f, columns=["point_id"]).column("point_id").to_pylist())
    return done


def _write_definition(out: Path, sw: Sweep) -> None:
    meta = {"version": 1, "name": sw.name, "digest": sw.digest(), "points": len(sw.points),
            "chunk_size": sw.chunk_size, "chunks": len(sw.chunks()), "parameters": list(sw.parameters),
            "point_values": sw.points}
    for name, text in ((DEFINITION_FILE, yaml.safe_dump(sw.definition(), sort_keys=False)),
                       (META_FILE, json.dumps(meta, indent=1, default=str))):
        tmp = out / f".tmp-{name}"
        tmp.write_text(text)
        os.replace(tmp, out / name)
    for name in LEGACY_FILES:  # a folder written before: its old names would break Parquet readers
        (out / name).unlink(missing_ok=True)


def _check_schema(out: Path, schema) -> None:
    """Every part file already in the folder has ``schema`` (one schema in the dataset)."""
    import pyarrow.parquet as pq
    for f in part_files(out):
        try:
            got = pq.read_schema(f)
        except Exception as exc:  # noqa: BLE001 - a damaged file is reported, not raised through
            raise _err("--resume", str(f), f"not a readable Parquet file ({type(exc).__name__}); "
                                           "delete it to recompute its points, or use a new --out") from None
        if not got.remove_metadata().equals(schema):
            raise _err("--resume", str(out), f"{f.name} was written with other result columns (by another "
                                             "version of xlayer); use a new --out")


def prepare_output(out: Path, sw: Sweep, resume: bool) -> set[int]:
    """Create or check the output folder; return the finished point ids (resume)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise _err("--out", str(out), "exists and is not a folder (a sweep writes a Parquet dataset folder)")
    if out.exists() and is_sweep_folder(out):
        if not resume:
            raise _err("--out", str(out), "already holds a sweep; pass --resume to continue it or choose another "
                                          "--out")
        if meta_path(out) is not None:
            meta = read_meta(out)
            if meta.get("digest") != sw.digest():
                raise _err("--resume", str(out), "the sweep definition changed since this folder was written "
                                                  f"(digest {meta.get('digest')} != {sw.digest()}); use a new --out")
        _check_schema(out, result_schema(sw))
    out.mkdir(parents=True, exist_ok=True)
    for tmp in out.glob(".tmp-*"):  # left by a killed run
        tmp.unlink()
    _write_definition(out, sw)
    return finished_points(out) if resume else set()


# ---- running ------------------------------------------------------------------------------------

@dataclass
class RunSummary:
    out: Path
    points: int
    skipped: int
    evaluated: int
    chunks_written: int
    elapsed_s: float
    backend: str
    files: list[Path] = field(default_factory=list)


def _pending(sw: Sweep, done: set[int]) -> list[tuple[int, list[tuple[int, dict]]]]:
    todo = []
    for k, ids in enumerate(sw.chunks()):
        items = [(i, sw.points[i]) for i in ids if i not in done]
        if items:
            todo.append((k, items))
    return todo


def run_sweep(sw: Sweep, out: str | Path, backend: str = "local", resume: bool = False,
              workers: Optional[int] = None, address: Optional[str] = None,
              progress: Optional[Callable[[int, int], None]] = None,
              started: Optional[Callable[[int, int], None]] = None) -> RunSummary:
    """Evaluate every unfinished point, writing one Parquet file per finished chunk.

    ``started(skipped, to_evaluate)`` is called once the output folder is ready (``skipped``:
    points already written, with ``resume``); ``progress(points, to_evaluate)`` after each
    chunk is written, with the number of points in that chunk."""
    t0 = time.perf_counter()
    out = Path(out)
    if backend not in ("local", "ray"):
        raise _err("--backend", backend, "local or ray")
    done = prepare_output(out, sw, resume)
    todo = _pending(sw, done)
    schema = result_schema(sw)
    run = uuid.uuid4().hex[:12]
    spec = sw.spec()
    files: list[Path] = []
    n_todo = sum(len(items) for _, items in todo)
    if started:
        started(len(done & set(range(len(sw.points)))), n_todo)

    def finished(k: int, rows: list[dict]) -> None:
        files.append(write_part(out, k, rows, schema, run))
        if progress:
            progress(len(rows), n_todo)

    if todo:
        if backend == "local":
            _run_local(spec, todo, finished, workers)
        else:
            _run_ray(spec, todo, finished, address, workers)
    return RunSummary(out=out, points=len(sw.points), skipped=len(done & set(range(len(sw.points)))),
                      evaluated=n_todo, chunks_written=len(files), elapsed_s=time.perf_counter() - t0,
                      backend=backend, files=files)


PR_SET_PDEATHSIG = 1          # <linux/prctl.h>
PARENT_POLL_S = 0.25          # how often a worker checks that the driver is alive


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (a SIGKILLed driver stays a zombie
    until its own parent reaps it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc: os.kill said it exists
    return state not in (b"Z", b"X")


def _watch_parent(driver: int) -> None:
    while True:
        time.sleep(PARENT_POLL_S)
        if not _alive(driver):
            os._exit(1)


def _worker_init(driver: int) -> None:
    """Initializer of each local worker: die with the driver.

    On Linux the kernel sends SIGKILL when the worker's parent dies (``prctl(PR_SET_PDEATHSIG)``;
    the parent is the driver, or the fork server, which exits with the driver); everywhere, a
    daemon thread polls the driver's pid every ``PARENT_POLL_S`` and exits the worker when it is
    gone (or a zombie). Either way no worker outlives a killed sweep by more than about a second."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):  # no prctl: the watchdog below still runs
            pass
    if not _alive(driver):  # the driver died before prctl took effect
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(driver,), name="xlayer-driver-watch", daemon=True).start()


def _run_local(spec, todo, finished, workers: Optional[int]) -> None:
    workers = workers or min(os.cpu_count() or 1, len(todo))
    if workers <= 1:
        for k, items in todo:
            finished(k, evaluate_chunk(spec, items))
        return
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    with ProcessPoolExecutor(max_workers=workers, initializer=_worker_init, initargs=(os.getpid(),)) as ex:
        futs = {ex.submit(evaluate_chunk, spec, items): k for k, items in todo}
        pending = set(futs)
        while pending:
            ready, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in sorted(ready, key=lambda f: futs[f]):
                finished(futs[f], f.result())


RAY_CONNECT_TIMEOUT_S = 6.0
_RAY_PROBED: set[str] = set()   # addresses that answered (a second probe would cost seconds)


def _probe_ray(address: str, timeout_s: float = RAY_CONNECT_TIMEOUT_S) -> None:
    """Connect to the Ray cluster at ``address`` in a child process that is killed after
    ``timeout_s``: ``ray.init`` to an address where no Ray head answers retries for minutes,
    so an unreachable cluster becomes one InputError within seconds instead of a hang."""
    import subprocess
    import sys
    if address in _RAY_PROBED:
        return
    code = ("import logging, sys, ray\n"
            "ray.init(address=sys.argv[1], logging_level=logging.ERROR, log_to_driver=False)\n"
            "ray.shutdown()\n")
    try:
        r = subprocess.run([sys.executable, "-c", code, address], capture_output=True, text=True,
                           timeout=timeout_s, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise _err("--address", address, f"no Ray cluster answered within {timeout_s:g} s; start one with "
                                         "`ray start --head` or leave --address out") from None
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["ray.init failed"])[-1]
        raise _err("--address", address, f"cannot connect to a Ray cluster there ({last[:200]})")
    _RAY_PROBED.add(address)


def _run_ray(spec, todo, finished, address: Optional[str], workers: Optional[int]) -> None:
    import logging

    import ray
    started = False
    if not ray.is_initialized():
        if address:
            _probe_ray(address)
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        else:
            ray.init(num_cpus=workers or 2, include_dashboard=False, logging_level=logging.WARNING,
                     log_to_driver=False)
        started = True
    try:
        task = ray.remote(num_cpus=1)(evaluate_chunk)
        spec_ref = ray.put(spec)
        refs = {task.remote(spec_ref, items): k for k, items in todo}
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for r in ready:
                finished(refs[r], ray.get(r))
    finally:
        if started:
            ray.shutdown()
