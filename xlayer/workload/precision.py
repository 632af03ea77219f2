"""Number formats: the case's precision names, their spellings in the frameworks, and the
bytes and arithmetic each implies.

A case's ``precision`` is the format of its GEMMs; everything else stays 16-bit (validation
README). The formats:

| name  | GEMM inputs | bytes per element (with scales) | tensor-core rate |
|---|---|---|---|
| fp32  | fp32 | 4 | fp32 (or tf32 where stated) |
| fp16, bf16 | 16-bit | 2 | bf16/fp16 |
| fp8   | E4M3/E5M2, one fp32 scale per tensor (delayed or current scaling) | 1 | fp8 |
| mxfp8 | E4M3, one E8M0 scale per 32 elements (OCP MX v1.0) | 1 + 1/32 | fp8 (Blackwell) |
| nvfp4 | E2M1, one E4M3 scale per 16 elements + a per-tensor fp32 scale | 0.5 + 1/16 | fp4 (Blackwell) |
| fp4   | E2M1 without block scales (speculative studies only) | 0.5 | fp4 |

Sources: OCP Microscaling Formats (MX) v1.0 specification (block of 32, E8M0 scale);
NVIDIA Transformer Engine documentation, "Using FP8 and FP4 with Transformer Engine"
(NVFP4: 16-element blocks with E4M3 scales and a second-level fp32 scale; MXFP8 on Blackwell).

Framework spellings mapped here (the mapping is said in the prediction's assumptions):
Megatron-Bridge performance tables ``FP8-CS`` (current scaling), ``FP8-DS`` (delayed),
``FP8-MX``, ``NVFP4``; Megatron-Bridge mixed-precision recipe names
``bf16_with_fp8_current_scaling_mixed``, ``bf16_with_fp8_delayed_scaling_mixed``,
``bf16_with_mxfp8_mixed``, ``bf16_with_nvfp4_mixed``, ``bf16_mixed``, ``fp16_mixed``; and
upper-case names.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from xlayer.errors import InputError

Precision = Literal["fp32", "bf16", "fp16", "fp8", "mxfp8", "nvfp4", "fp4", "int8", "int4"]
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16", "fp8", "mxfp8", "nvfp4", "fp4", "int8", "int4")
KVPrecision = Literal["fp32", "bf16", "fp16", "fp8", "nvfp4", "int8", "int4"]
KV_PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16", "fp8", "nvfp4", "int8", "int4")
# integer formats are weight formats of inference engines; no training recipe uses them
TRAINING_REFUSED = ("int8", "int4")
LOW_PRECISION = ("fp8", "mxfp8", "nvfp4", "fp4", "int8", "int4")
BLOCK_SCALED = ("mxfp8", "nvfp4")

_SPELLINGS = {
    "fp8cs": "fp8", "fp8ds": "fp8", "fp8currentscaling": "fp8", "fp8delayedscaling": "fp8",
    "bf16withfp8currentscalingmixed": "fp8", "bf16withfp8delayedscalingmixed": "fp8",
    "bf16withfp8subchannelscalingmixed": "fp8", "fp8sc": "fp8", "fp8hybrid": "fp8", "e4m3": "fp8",
    "fp8mx": "mxfp8", "mxfp8": "mxfp8", "bf16withmxfp8mixed": "mxfp8",
    "nvfp4": "nvfp4", "fp4nv": "nvfp4", "bf16withnvfp4mixed": "nvfp4",
    "bf16mixed": "bf16", "bfloat16": "bf16", "fp16mixed": "fp16", "float16": "fp16", "half": "fp16",
    "float32": "fp32", "tf32": "fp32", "32": "fp32", "16mixed": "fp16", "bf16true": "bf16",
}


def _key(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def normalize_precision(value: Any, field: str = "precision") -> tuple[str, str | None]:
    """(format name, note) for a precision as a case or a framework spells it; the note says
    what a framework spelling was taken to mean (None when the name was already canonical)."""
    if not isinstance(value, str) or not value.strip():
        raise InputError(field, value, f"give one of {', '.join(PRECISIONS)}")
    low = value.strip().lower()
    if low in PRECISIONS:
        return low, None
    hit = _SPELLINGS.get(_key(value))
    if hit is None:
        raise InputError(field, value, f"unknown precision; valid: {', '.join(PRECISIONS)} (or a Megatron-Bridge "
                                       f"recipe name such as FP8-CS, FP8-MX, bf16_with_mxfp8_mixed)")
    return hit, f"{field}={hit} (from the framework spelling {value!r})"


def normalize_kv_precision(value: Any, field: str = "kv_precision") -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InputError(field, value, f"give one of {', '.join(KV_PRECISIONS)}")
    name = value.strip().lower()
    name = {"bfloat16": "bf16", "float16": "fp16", "e4m3": "fp8"}.get(name, name)
    if name not in KV_PRECISIONS:
        raise InputError(field, value, f"valid: {', '.join(KV_PRECISIONS)}")
    return name


def gemm_precision(precision: str) -> str:
    """The arithmetic a case's GEMMs run in: low-precision formats as themselves, fp32 as
    fp32, fp16 and bf16 as 16-bit ("bf16": the two have the same tensor-core rate)."""
    if precision in LOW_PRECISION:
        return precision
    return "fp32" if precision == "fp32" else "bf16"


def gemm_input_bytes(precision: str) -> float:
    """HBM bytes per GEMM input element, block scales included (table in the module docstring)."""
    return {"fp32": 4.0, "fp8": 1.0, "mxfp8": 1.0 + 1.0 / 32.0, "nvfp4": 0.5 + 1.0 / 16.0, "fp4": 0.5,
            "int8": 1.0, "int4": 0.5}.get(precision, 2.0)


def check_precision_supported(precision: str, acc: Any, field: str = "precision") -> None:
    """Block-scaled formats need tensor cores that read block scales (Blackwell): refuse them
    on parts whose datasheet has no rate for them, rather than running them silently as
    another format."""
    if precision in BLOCK_SCALED and not acc.peak_flops_per_s.get(precision):
        have = [p for p in ("fp8", "fp4") if acc.peak_flops_per_s.get(p)]
        raise InputError(field, precision, f"{acc.name} has no {precision} tensor cores (block-scaled formats need "
                                           f"Blackwell); it supports {', '.join(have + ['bf16'])}")


@dataclass(frozen=True)
class NumberFormats:
    """What a case's precision means for the operators of one pass: the arithmetic of the
    layer GEMMs, the bytes per element of their activation inputs and of their weights as
    read from HBM, of a cached K or V element, and whether the stack casts every GEMM input
    (Transformer Engine's training recipes, :func:`xlayer.workload.training_ops.quantize`)."""

    gemm: str
    input_bytes: float
    weight_bytes: float
    kv_bytes: float
    casts_inputs: bool


# bytes per stored layer weight of an inference engine: block-scaled formats carry their
# scales (MXFP8 one E8M0 byte per 32 elements, NVFP4 one E4M3 byte per 16)
_WEIGHT_BYTES = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0, "fp4": 0.5, "int4": 0.5,
                 "mxfp8": 1.0 + 1.0 / 32.0, "nvfp4": 0.5 + 1.0 / 16.0}
_KV_BYTES = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5,
             "nvfp4": 0.5 + 1.0 / 16.0}


def weight_bytes_per_param(precision: str) -> float:
    """Bytes per weight of the transformer layers of a served model (inference table of
    :func:`inference_formats`)."""
    return _WEIGHT_BYTES[precision]


def kv_bytes_per_element(kv_precision: str) -> float:
    """Bytes per cached K or V element."""
    return _KV_BYTES[kv_precision]


def training_formats(precision: str) -> NumberFormats:
    """A training recipe: GEMMs in the case's format with inputs and weights cast to it
    (``gemm_input_bytes``, scales included), 16-bit K/V in the attention kernel; low-precision
    recipes cast every GEMM input (row- and column-wise copies)."""
    q = gemm_input_bytes(gemm_precision(precision))
    return NumberFormats(gemm_precision(precision), q, q, 2.0, precision in LOW_PRECISION)


def inference_formats(precision: str, kv_precision: str) -> NumberFormats:
    """A served model (TensorRT-LLM / vLLM / gpt-fast conventions):

    | precision | weight bytes | GEMM arithmetic | GEMM input bytes |
    |---|---|---|---|
    | fp32 | 4 | fp32 | 4 |
    | bf16 / fp16 | 2 | 16-bit | 2 |
    | fp8 | 1 | fp8 (W8A8, activations quantized per tensor) | 1 |
    | fp4 | 0.5 | fp4 (W4A8) | 1 |
    | int8 | 1 | 16-bit (weight-only W8A16: gpt-fast int8, TRT-LLM weight-only) | 2 |
    | int4 | 0.5 | 16-bit (weight-only W4A16: AWQ/GPTQ, gpt-fast int4) | 2 |
    | mxfp8 | 1 + 1/32 | mxfp8 (block-scaled W8A8, Blackwell) | 1 + 1/32 |
    | nvfp4 | 0.5 + 1/16 | nvfp4 (block-scaled W4A4: ModelOpt NVFP4 checkpoints) | 0.5 + 1/16 |

    The KV cache has its own precision; the embedding and the output layer stay 16-bit
    (ModelOpt/TRT-LLM and AWQ keep ``lm_head`` unquantized). Activation quantization is part
    of the producing kernel (no separate casts)."""
    if precision in ("int8", "int4"):
        gemm, inp = "bf16", 2.0
    elif precision in ("mxfp8", "nvfp4"):
        gemm, inp = precision, _WEIGHT_BYTES[precision]
    elif precision in ("fp8", "fp4"):
        gemm, inp = precision, 1.0
    else:
        gemm, inp = precision, gemm_input_bytes(precision)
    return NumberFormats(gemm, inp, _WEIGHT_BYTES[precision], _KV_BYTES[kv_precision], False)
