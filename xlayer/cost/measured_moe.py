"""A fused MoE layer's time from published kernel measurements (a measured compute back-end).

Why a table and not the roofline here. The roofline prices the routed experts as grouped
GEMMs at the part's dense-GEMM rate for the format (:func:`xlayer.cost.compute.op_time`).
NVIDIA's own timings of TensorRT-LLM's fused MoE (the CUTLASS backend, the ``MoeConfig``
default for a gated MoE) agree with that at 16 bits — within −23…+29 % at 512–16,384 tokens on
nine expert shapes on B200 — but not in FP8 or NVFP4 at small expert widths: at Qwen3-30B-A3B's
(h 2048, f 768, 128 experts, top-8) the measured layer is no faster in NVFP4 than in bf16
(666 vs 836 TFLOP/s at 16,384 tokens), 2.0–2.7× the roofline from 2,048 tokens up; at
DeepSeek-V3's shape (7168, 2048, 256, top-8) 1.6–2.0×. No published account of the kernel says
why (its tile shapes and per-expert scheduling are not documented), so where the engine runs
this kernel and the shape was measured, the measurement is the cost.

Tables (made by ``benchmarks/extract_moe_tables.py`` from github.com/ai-dynamo/aiconfigurator
@095f58a5, ``systems/data/<gpu>/moe/<engine>/<ver>/moe_perf.parquet``, Apache-2.0):
``trtllm-moe.csv.gz``, one TensorRT-LLM ``create_moe`` forward (input quantize, permute, fc1,
gated activation, fc2, finalize — not the router GEMM, whose logits the collector passes in),
autotuned, timed under a CUDA graph; ``vllm-moe.csv.gz``, one forward of vLLM's ``FusedMoE``
layer with the backend vLLM selects (triton ``fused_moe`` in bf16/fp8, FlashInfer's TRT-LLM
kernel in nvfp4); ``sglang-moe.csv.gz``, SGLang's MoE layer likewise. Force-balanced
routing; per accelerator, format, shape (hidden, expert width, experts, top-k), MoE tensor-
and expert-parallel size, and the tokens entering the MoE on the rank (with attention data
parallel, the tokens of the whole EP group).

Between measured token counts the time is interpolated linearly in log(tokens); beyond the
largest it grows at the marginal cost per token of the last two points (the kernel is
throughput-bound there); below the smallest it is the smallest's time. A shape, format or
parallel size not in the table, a modified part (``system.overrides``: its name ends in
``*``) or another engine gets None and the roofline.
"""
from __future__ import annotations

import csv
import gzip
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

import numpy as np

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "kernels"
TABLES = {"trtllm-moe": "trtllm-moe.csv.gz", "vllm-moe": "vllm-moe.csv.gz", "sglang-moe": "sglang-moe.csv.gz"}
# what each table timed (benchmarks/extract_moe_tables.py)
KERNELS = {"trtllm-moe": "TensorRT-LLM {version} CUTLASS fused MoE", "vllm-moe": "vLLM {version} FusedMoE",
           "sglang-moe": "SGLang {version} fused MoE"}
# the operators of :func:`xlayer.workload.transformer.moe_ffn_ops` that the fused kernel runs,
# with the NVFP4 block-input quantize of :func:`xlayer.workload.inference_ops.with_block_scaled_casts`
# (the timed forward takes the 16-bit hidden states); the router GEMM and the all-to-alls stay
# priced by the roofline and the collective curves
FUSED_MOE_OPS = ("moe_input.quantize_in", "permute", "expert_fc1", "expert_activation", "expert_fc2",
                 "expert_fc2_bias", "unpermute")
# xlayer precision -> the table's format (16-bit models run the bf16 kernel)
_FORMAT = {"bf16": "bf16", "fp16": "bf16", "fp8": "fp8", "nvfp4": "nvfp4"}


@dataclass(frozen=True)
class MoeKernelCurve:
    """Measured fused-MoE forward times of one (accelerator, format, shape, tp, ep)."""

    table: str
    accelerator: str
    version: str
    precision: str
    tokens: np.ndarray  # increasing
    latency_s: np.ndarray

    @property
    def source(self) -> str:
        kernel = KERNELS[self.table].format(version=self.version)
        return (f"{self.table} table ({kernel} on {self.accelerator}, {self.precision}; "
                f"xlayer/data/kernels/{TABLES[self.table]})")


_Key = tuple[str, str, int, int, int, int, int, int]


@lru_cache(maxsize=4)
def _table(name: str) -> dict[_Key, MoeKernelCurve]:
    path = DATA_DIR / TABLES[name]
    out: dict[_Key, MoeKernelCurve] = {}
    with gzip.open(path, "rt") as f:
        rows = csv.DictReader(line for line in f if not line.startswith("#"))
        for r in rows:
            key = (r["accelerator"], r["precision"], int(r["hidden"]), int(r["ffn_hidden"]), int(r["experts"]),
                   int(r["top_k"]), int(r["tp"]), int(r["ep"]))
            tokens = np.array([float(x) for x in r["tokens"].split(";")])
            lat = np.array([float(x) for x in r["latency_us"].split(";")]) * 1e-6
            order = np.argsort(tokens)
            out[key] = MoeKernelCurve(name, r["accelerator"], r["version"], r["precision"], tokens[order], lat[order])
    return out


def moe_kernel_curve(table: Optional[str], accelerator: str, precision: str, *, hidden: int, ffn_hidden: int,
                     experts: int, top_k: int, tp: int = 1, ep: int = 1) -> Optional[MoeKernelCurve]:
    """The measured curve of this MoE layer on this part, or None (module docstring)."""
    if not table or table not in TABLES or precision not in _FORMAT:
        return None
    return _table(table).get((accelerator, _FORMAT[precision], int(hidden), int(ffn_hidden), int(experts),
                              int(top_k), int(tp), int(ep)))


def moe_layer_curve(table: Optional[str], accelerator: str, precision: str, model: Any, tp: int = 1,
                    ep: int = 1) -> Optional[MoeKernelCurve]:
    """:func:`moe_kernel_curve` for the MoE layer of ``model`` (a ModelSpec; None for a dense one)."""
    if not getattr(model, "is_moe", False) or not table:
        return None
    m = model.moe
    return moe_kernel_curve(table, accelerator, precision, hidden=model.hidden, ffn_hidden=m.ffn_hidden,
                            experts=m.experts, top_k=m.top_k, tp=tp, ep=ep)


def curve_time_s(curve: MoeKernelCurve, tokens: Any) -> Any:
    """Time of the fused MoE forward for ``tokens`` entering it on the rank (scalar or array):
    log-linear between measured points, the last two points' marginal cost per token beyond
    the largest, the smallest point's time below it."""
    t, y = curve.tokens, curve.latency_s
    x = np.maximum(np.asarray(tokens, dtype=float), t[0])
    inside = np.interp(np.log(x), np.log(t), y)
    slope = max((y[-1] - y[-2]) / (t[-1] - t[-2]), 0.0) if len(t) > 1 else y[-1] / t[-1]
    out = np.where(x > t[-1], y[-1] + slope * (x - t[-1]), inside)
    return float(out) if np.ndim(out) == 0 else out
