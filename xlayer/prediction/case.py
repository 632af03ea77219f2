"""A case: model + system + layout + batch (+ what was measured), in the format of
``shared/validation`` (see its README). Loading turns every user mistake into an
:class:`~xlayer.errors.InputError` whose field is the dotted path in the YAML file.
"""
from __future__ import annotations

import re

from pathlib import Path
from typing import Any, Literal, Optional

import math

from pydantic import ConfigDict, Field, PrivateAttr, StrictBool, ValidationError, field_validator

from xlayer.errors import InputError
from xlayer.hardware.catalog import get_accelerator
from xlayer.hardware.spec import System
from xlayer.hardware.variant import HardwareOverrides
from xlayer.specs import Count, NonNegativeCount, NullMeansDefault
from xlayer.workload.model import ModelSpec
from xlayer.workload.precision import (TRAINING_REFUSED, KVPrecision, Precision, check_precision_supported,
                                      normalize_kv_precision, normalize_precision)
from xlayer.workload.recompute import MODULES, check_recompute


class _Strict(NullMeansDefault):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SoftwareSection(_Strict):
    """The stack that produced a measurement (validation README: ``software``)."""

    framework: Optional[str] = None
    version: Optional[str] = None
    mode: Optional[Literal["eager", "cuda-graph", "compiled"]] = None

    @field_validator("framework", "version", mode="before")
    @classmethod
    def _text(cls, v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, (str, int, float)):
            raise ValueError("give a name or release as text")
        return str(v).strip().lower() if not isinstance(v, str) else v.strip()

    @field_validator("mode", mode="before")
    @classmethod
    def _mode(cls, v: Any) -> Any:
        if isinstance(v, str):
            return v.strip().lower().replace("_", "-").replace("cudagraph", "cuda-graph")
        return v


class SystemSection(_Strict):
    accelerator: str
    count: Count
    scale_up_size: Optional[Count] = None
    overrides: Optional[HardwareOverrides] = None
    notes: Optional[str] = None


class ParallelSection(_Strict):
    tp: Optional[Count] = None
    pp: Optional[Count] = None
    dp: Optional[Count] = None
    cp: Optional[Count] = None
    vp: Optional[Count] = None
    ep: Optional[Count] = None
    etp: Optional[Count] = None
    sp: Optional[StrictBool] = None
    # none | selective | full, or Megatron-Core recompute_modules joined by '+' (layernorm+moe_act)
    recompute: Optional[str] = None
    zero: Optional[int] = Field(None, ge=0, le=3)
    dp_overlap: Optional[StrictBool] = None
    tp_overlap: Optional[StrictBool] = None
    # Megatron-Core MoE communication overlap (xlayer extensions; null = off, the default):
    # --overlap-moe-expert-parallel-comm and --moe-shared-expert-overlap
    ep_overlap: Optional[StrictBool] = None
    shared_expert_overlap: Optional[StrictBool] = None
    algorithm: Literal["backprop", "local"] = "backprop"
    backlink_layers: NonNegativeCount = 0

    @field_validator("zero", mode="before")
    @classmethod
    def _zero(cls, v: Any) -> Any:
        if isinstance(v, bool) or (isinstance(v, float) and (not math.isfinite(v) or v != int(v))):
            raise ValueError("give a ZeRO stage 0, 1, 2 or 3")
        return v

    @field_validator("recompute", mode="before")
    @classmethod
    def _recompute(cls, v: Any) -> Any:
        if v is False:  # YAML `recompute: no` / `false`
            return "none"
        if v is None:
            return v
        if isinstance(v, (list, tuple)) and v and all(isinstance(x, str) for x in v):
            v = "+".join(v)  # recompute: [layernorm, moe_act]
        if not isinstance(v, str):
            raise ValueError("give none, selective, full or '+'-joined modules of " + ", ".join(MODULES))
        try:
            return check_recompute(v.strip().lower())
        except InputError as e:
            raise ValueError(e.valid) from None


class BatchSection(_Strict):
    global_: Count = Field(alias="global")
    micro: Optional[Count] = None

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class RequestSection(_Strict):
    mode: Literal["static", "serving"] = "static"
    batch: Optional[Count] = None
    prompt_len: NonNegativeCount = 0
    context_len: NonNegativeCount = 0
    output_len: Optional[NonNegativeCount] = None
    requests: Optional[Count] = None
    kv_precision: Optional[str] = None


MEASURED_KEYS = ("iteration_time_s", "layer_forward_time_s", "layer_backward_time_s",
                 "layer_fwd_bwd_time_s", "model_tflops_per_gpu", "peak_memory_gib",
                 "prefill_time_s", "decode_step_time_s", "decode_tokens_per_s",
                 "output_tokens_per_s_per_gpu", "ttft_s", "tpot_s")


class Case(_Strict):
    id: str = "case"
    kind: Literal["training", "inference"]
    source: Optional[str] = None
    source_url: Optional[str] = None
    model: ModelSpec
    system: SystemSection
    parallel: ParallelSection = ParallelSection()
    batch: Optional[BatchSection] = None
    request: Optional[RequestSection] = None
    precision: Precision = "bf16"
    kv_precision: Optional[KVPrecision] = None
    optimizer: Optional[str] = "adamw"
    software: SoftwareSection = SoftwareSection()
    measured: dict[str, float] = {}
    notes: Optional[str] = None
    _taken: list = PrivateAttr(default_factory=list)

    @field_validator("precision", mode="before")
    @classmethod
    def _precision(cls, v: Any, info) -> Any:
        try:
            return normalize_precision(v, "precision")[0]
        except InputError as exc:
            raise ValueError(exc.valid) from None

    @field_validator("kv_precision", mode="before")
    @classmethod
    def _kv(cls, v: Any) -> Any:
        try:
            return normalize_kv_precision(v, "kv_precision")
        except InputError as exc:
            raise ValueError(exc.valid) from None

    @field_validator("measured", mode="before")
    @classmethod
    def _measured(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            raise ValueError("give a mapping of metric names to measured values")
        out = {}
        for key, val in v.items():
            if key not in MEASURED_KEYS:
                raise ValueError(f"unknown metric {str(key)[:60]!r}; valid: {', '.join(MEASURED_KEYS)}")
            if val is None:
                continue  # not measured
            if isinstance(val, bool) or not isinstance(val, (int, float)) or not math.isfinite(val) or val <= 0:
                raise ValueError(f"{key}: {val!r} is not a finite number > 0")
            out[key] = float(val)
        return out

    @property
    def assumptions(self) -> list[str]:
        """What loading the case decided for the user (spelling maps, defaults of the contract)."""
        return list(self._taken)

    def system_spec(self) -> System:
        acc = get_accelerator(self.system.accelerator, "system.accelerator")
        if self.system.overrides is not None:
            acc = self.system.overrides.apply(acc)
        up = self.system.scale_up_size or acc.scale_up_domain
        return System(accelerator=acc, count=self.system.count, scale_up_size=up)


def _field_path(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc if not isinstance(p, int) or True).replace("global_", "global")


def _validation_error(exc: ValidationError, origin: str) -> InputError:
    err = exc.errors()[0]
    field = _field_path(err["loc"]) or origin
    value = err.get("input")
    if err["type"] == "extra_forbidden":
        return InputError(field, value, "unknown field; check the spelling against the case format")
    if err["type"] == "missing":
        return InputError(field, None, "this field is required")
    msg = err["msg"].removeprefix("Value error, ")
    if isinstance(value, (dict, list)):
        value = "{...}" if isinstance(value, dict) else "[...]"
    return InputError(field, value, msg)


def case_from_dict(data: Any, origin: str = "case") -> Case:
    """Validate a parsed YAML mapping into a :class:`Case` (errors name the field).

    After the schema, the contract's defaults are applied and said in ``case.assumptions``:
    Megatron-Bridge / Transformer Engine precision spellings become their format;
    ``request.kv_precision`` is the case's KV-cache precision; an inference case without
    ``model.seq_len`` gets prompt + context + output; an inference case without ``tp``/``pp``
    runs on one accelerator per replica stage (tp = pp = 1)."""
    if not isinstance(data, dict):
        raise InputError(origin, type(data).__name__, "a case must be a YAML mapping with model/system/...")
    meas = data.get("measured")
    if isinstance(meas, dict):  # name the metric in the error
        for key, val in meas.items():
            if key not in MEASURED_KEYS:
                raise InputError(f"measured.{str(key)[:60]}", val, f"unknown metric; valid: {', '.join(MEASURED_KEYS)}")
            if val is not None and (isinstance(val, bool) or not isinstance(val, (int, float))
                                    or not math.isfinite(val) or val <= 0):
                raise InputError(f"measured.{key}", val, "a measured value is a finite number > 0")
    try:
        case = Case.model_validate(data)
    except ValidationError as exc:
        raise _validation_error(exc, origin) from None
    taken: list[str] = []
    _name, note = normalize_precision(data.get("precision"), "precision") if data.get("precision") is not None \
        else ("bf16", "precision=bf16 (not stated)")
    if note:
        taken.append(note)
    upd: dict[str, Any] = {}
    if case.kind == "training":
        if case.batch is None:
            raise InputError("batch", None, "a training case needs batch.global (and batch.micro or null)")
        if case.model.seq_len is None:
            raise InputError("model.seq_len", None, "a training case needs the training sequence length")
        if case.precision in TRAINING_REFUSED:
            raise InputError("precision", case.precision,
                             "integer formats are inference weight formats; train in fp32, bf16, fp16, fp8, "
                             "mxfp8 or nvfp4")
    else:
        r = case.request
        if r is None:
            raise InputError("request", None, "an inference case needs a request block (batch, prompt_len, ...)")
        if r.mode == "static" and r.batch is None:
            upd["request"] = r.model_copy(update={"batch": 1})
            taken.append("request.batch=1 (not stated)")
        if r.kv_precision is not None:
            kv = normalize_kv_precision(r.kv_precision, "request.kv_precision")
            if case.kv_precision is not None and case.kv_precision != kv:
                raise InputError("request.kv_precision", r.kv_precision,
                                 f"disagrees with kv_precision={case.kv_precision}; give one")
            upd["kv_precision"] = kv
        if case.model.seq_len is None:
            total = r.context_len + r.prompt_len + (r.output_len or 0)
            if total < 1:
                raise InputError("request", "{...}", "give prompt_len, context_len or output_len > 0")
            upd["model"] = case.model.model_copy(update={"seq_len": total})
            taken.append(f"model.seq_len={total} (context_len + prompt_len + output_len of the request)")
        P = case.parallel
        fill = {k: 1 for k in ("tp", "pp") if getattr(P, k) is None}
        if fill:
            upd["parallel"] = P.model_copy(update=fill)
            taken += [f"parallel.{k}=1 (not stated; inference on one accelerator per replica)" for k in fill]
    if upd:
        case = case.model_copy(update=upd)
    system = case.system_spec()  # resolves the accelerator name now, with suggestions if unknown
    acc = system.accelerator
    if case.system.scale_up_size is not None and case.system.scale_up_size > acc.scale_up_domain:
        raise InputError("system.scale_up_size", case.system.scale_up_size,
                         f"{acc.name} has scale-up domains of at most {acc.scale_up_domain} accelerators")
    if system.count > system.scale_up_size and system.count % system.scale_up_size:
        taken.append(f"system.count={system.count} is not a multiple of scale_up_size={system.scale_up_size}: "
                     f"the last domain is partly filled")
    check_precision_supported(case.precision, acc, "precision")
    case._taken.extend(taken)
    return case


def load_case(path: str | Path) -> Case:
    """Read one case file (bounded: see :mod:`xlayer.safe_yaml` — size, UTF-8, depth, alias
    bombs and duplicate keys are refused with an InputError naming the file)."""
    from xlayer.safe_yaml import load_yaml
    data = load_yaml(path, "CASE", "a case YAML file")
    return case_from_dict(data, Path(str(path)).name)


def unmodelled_reasons(case: Case) -> list[str]:
    """Features of ``case`` that the cost model does not cover yet (each becomes the
    ``reason: "not modelled yet: ..."`` of a validation row; nothing is silently ignored)."""
    out = list(case.model.unmodelled_features(case.kind))
    return out


class NotModelledYet(InputError, NotImplementedError):
    """A case uses a feature the model does not cover yet: an input error naming the field
    (the CLI exits 2 with its one line, ``model.mla: set is not valid; not modelled yet:
    ...``); :attr:`reason` (``not modelled yet: ...``) is what validate lists."""

    def __init__(self, features: list[str], case: Any = None):
        self.features = features
        hit = re.search(r"\(([\w.]+)\)\s*$", features[0])
        field = hit.group(1) if hit else "model"
        value: Any = "{...}"
        if case is not None:
            obj: Any = case
            for part in field.split("."):
                obj = getattr(obj, part, None)
            if isinstance(obj, (int, float, str)):
                value = obj
        InputError.__init__(self, field, value, self.reason)

    @property
    def reason(self) -> str:
        return "not modelled yet: " + "; ".join(self.features)


def require_modelled(case: Case) -> None:
    reasons = unmodelled_reasons(case)
    if reasons:
        raise NotModelledYet(reasons, case)
