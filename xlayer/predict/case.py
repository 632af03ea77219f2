"""A case: model + system + layout + batch (+ what was measured), in the format of
``shared/validation`` (see its README). Loading turns every user mistake into an
:class:`~xlayer.errors.InputError` whose field is the dotted path in the YAML file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt, ValidationError

from xlayer.errors import InputError
from xlayer.hardware.catalog import get_accelerator
from xlayer.hardware.spec import System
from xlayer.workload.model import ModelSpec


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SystemSection(_Strict):
    accelerator: str
    count: PositiveInt
    scale_up_size: Optional[PositiveInt] = None
    notes: Optional[str] = None


class ParallelSection(_Strict):
    tp: PositiveInt = 1
    pp: PositiveInt = 1
    dp: Optional[PositiveInt] = None
    cp: Optional[PositiveInt] = 1
    vp: Optional[PositiveInt] = 1
    ep: Optional[PositiveInt] = 1
    sp: Optional[bool] = None
    recompute: Optional[Literal["none", "selective", "full"]] = None
    zero: Optional[int] = Field(None, ge=0, le=3)
    dp_overlap: Optional[bool] = None
    tp_overlap: Optional[bool] = None
    algorithm: Literal["backprop", "local"] = "backprop"
    backlink_layers: NonNegativeInt = 0


class BatchSection(_Strict):
    global_: PositiveInt = Field(alias="global")
    micro: Optional[PositiveInt] = None

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class RequestSection(_Strict):
    batch: PositiveInt = 1
    prompt_len: NonNegativeInt = 0
    context_len: NonNegativeInt = 0
    output_len: Optional[NonNegativeInt] = None


MEASURED_KEYS = ("iteration_time_s", "layer_forward_time_s", "layer_backward_time_s",
                 "layer_fwd_bwd_time_s", "model_tflops_per_gpu", "peak_memory_gib",
                 "prefill_time_s", "decode_step_time_s", "decode_tokens_per_s",
                 "output_tokens_per_s_per_gpu")


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
    precision: Literal["fp32", "bf16", "fp16", "fp8", "fp4", "int8", "int4"] = "bf16"
    kv_precision: Optional[Literal["bf16", "fp16", "fp8", "int8", "int4"]] = None
    optimizer: Optional[str] = "adamw"
    measured: dict[str, Optional[float]] = {}
    notes: Optional[str] = None

    def system_spec(self) -> System:
        acc = get_accelerator(self.system.accelerator, "system.accelerator")
        up = self.system.scale_up_size or acc.scale_up_domain
        return System(accelerator=acc, count=self.system.count, scale_up_size=up)


def _field_path(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc if not isinstance(p, int) or True).replace("global_", "global")


def case_from_dict(data: Any, origin: str = "case") -> Case:
    """Validate a parsed YAML mapping into a :class:`Case` (errors name the field)."""
    if not isinstance(data, dict):
        raise InputError(origin, type(data).__name__, "a case must be a YAML mapping with model/system/...")
    try:
        case = Case.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = _field_path(err["loc"]) or origin
        value = err.get("input")
        if err["type"] == "extra_forbidden":
            raise InputError(field, value, "unknown field; check the spelling against the case format") from None
        if err["type"] == "missing":
            raise InputError(field, None, "this field is required") from None
        msg = err["msg"].removeprefix("Value error, ")
        if isinstance(value, dict):
            value = "{...}"
        raise InputError(field, value, msg) from None
    for key in case.measured:
        if key not in MEASURED_KEYS:
            raise InputError(f"measured.{key}", case.measured[key],
                             f"unknown metric; valid: {', '.join(MEASURED_KEYS)}")
    if case.kind == "training" and case.batch is None:
        raise InputError("batch", None, "a training case needs batch.global (and batch.micro or null)")
    if case.kind == "inference" and case.request is None:
        raise InputError("request", None, "an inference case needs a request block (batch, prompt_len, ...)")
    case.system_spec()  # resolves the accelerator name now, with suggestions if unknown
    return case


def load_case(path: str | Path) -> Case:
    """Read one case file."""
    p = Path(path)
    if not p.exists():
        raise InputError("CASE", str(path), "file not found")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "?"
        raise InputError(f"{p.name}", where, f"malformed YAML ({getattr(exc, 'problem', exc)})") from None
    return case_from_dict(data, p.name)
