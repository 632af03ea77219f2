"""A transformer layer at inference time as a list of operators (prefill, decode, mixed steps).

Per accelerator, one layer, one forward pass over T tokens (no backward). Megatron tensor
parallelism over t ranks as in :mod:`xlayer.workload.operators`; the same operator names are
used (norm1, qkv, proj, fc1, activation, fc2) so that a number can be traced across training
and inference.

Precision of a case (``precision``) sets the **weight** bytes and the GEMM arithmetic:

| precision | weight bytes | GEMM arithmetic | GEMM input bytes |
|---|---|---|---|
| fp32 | 4 | fp32 | 4 |
| bf16 / fp16 | 2 | bf16 / fp16 | 2 |
| fp8 | 1 | fp8 (W8A8, activations quantized per tensor) | 1 |
| fp4 | 0.5 | fp4 (falls back to the next precision the part has) | 1 |
| int8 | 1 | 16-bit (weight-only W8A16, as gpt-fast int8 and TRT-LLM's weight-only mode) | 2 |
| int4 | 0.5 | 16-bit (weight-only W4A16: AWQ/GPTQ, gpt-fast int4) | 2 |

The KV cache has its own precision (``kv_precision``, default 16-bit). The embedding and
the output layer stay 16-bit (ModelOpt/TRT-LLM and AWQ keep ``lm_head`` unquantized).

Attention:

* **decode** (one new token per sequence): FlashDecoding-style kernel reading the K and V of
  every cached token once: 2·b·(g/t)·s_kv·d·kv_bytes, doing 4·b·(a/t)·s_kv·d FLOPs (QKᵀ and
  PV), i.e. a/g FLOP per KV element — memory-bound at every batch size.
* **prefill, flash**: one kernel, 4·b·(a/t)·d·n·(c + n/2) FLOPs for n new tokens after c
  cached ones (causal blocks skipped; with c = 0 this is the training formula's s²/2).
* **prefill, classic**: QKᵀ and PV batched GEMMs with the n × s_kv score matrix written and
  read by a softmax kernel (materialised scores).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from xlayer.workload.model import ModelSpec
from xlayer.workload.operators import ACT_BYTES, Comm, Op, elementwise, gemm

WEIGHT_BYTES = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0, "fp4": 0.5, "int4": 0.5}
KV_BYTES = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5}
DECODE_MAX_NEW = 16  # attention with at most this many new tokens per sequence runs as a decode kernel


def weight_bytes_per_param(precision: str) -> float:
    """Bytes per weight of the transformer layers for a case precision (table above)."""
    return WEIGHT_BYTES[precision]


def kv_bytes_per_element(kv_precision: str) -> float:
    """Bytes per cached K or V element."""
    return KV_BYTES[kv_precision]


def gemm_precision(precision: str) -> str:
    """Arithmetic the layer GEMMs run in (weight-only int8/int4 dequantize to 16-bit)."""
    if precision in ("int8", "int4"):
        return "bf16"
    return precision


def gemm_input_bytes(precision: str) -> float:
    """Bytes per activation element fed to a layer GEMM (fp8/fp4 GEMMs take 8-bit inputs)."""
    if precision == "fp32":
        return 4.0
    return 1.0 if precision in ("fp8", "fp4") else float(ACT_BYTES)


@dataclass(frozen=True)
class AttentionSegment:
    """Sequences that attend together in one pass: ``seqs`` sequences, each with ``new``
    tokens processed now after ``cached`` tokens already in the KV cache."""

    seqs: float
    new: float
    cached: float

    @property
    def tokens(self) -> float:
        return self.seqs * self.new


@dataclass(frozen=True)
class InferenceLayer:
    """One layer of one forward pass on one accelerator."""

    ops: list[Op]
    comms: list[Comm]
    tokens: float
    attention_ops: tuple[str, ...] = field(default=())


def attention_ops(model: ModelSpec, seg: AttentionSegment, tp: int, kv_precision: str,
                  attention: str, tag: str = "") -> list[Op]:
    """Attention core of one segment (see the module docstring for the formulas)."""
    d = model.head_dim
    a_t = model.heads / tp
    kv_t = model.kv_dim / tp
    kvb = kv_bytes_per_element(kv_precision)
    b, n, c = seg.seqs, seg.new, seg.cached
    s_kv = c + n
    T = b * n
    qo_bytes = 2.0 * T * a_t * d * ACT_BYTES  # read Q, write O
    if n <= DECODE_MAX_NEW:
        flops = 4.0 * b * a_t * d * n * s_kv
        nbytes = 2.0 * b * kv_t * s_kv * kvb + qo_bytes
        return [Op("attn_decode" + tag, "attention", flops, nbytes, precision="bf16", causal=False,
                   heads=b * a_t, seq_q=n, seq_kv=s_kv)]
    if attention == "classic":
        scores = b * a_t * n * s_kv
        return [gemm("attn_scores" + tag, n, d, s_kv, "bf16", batch=b * a_t),
                elementwise("attn_softmax" + tag, scores, scores, 5.0),
                gemm("attn_context" + tag, n, s_kv, d, "bf16", batch=b * a_t)]
    flops = 4.0 * b * a_t * d * n * (c + n / 2.0)
    nbytes = qo_bytes + 2.0 * b * kv_t * s_kv * kvb
    return [Op("flash_attn" + tag, "attention", flops, nbytes, precision="bf16", causal=True,
               heads=b * a_t, seq_q=n, seq_kv=s_kv)]


def inference_layer(model: ModelSpec, segments: list[AttentionSegment], tp: int, precision: str,
                    kv_precision: str, attention: str) -> InferenceLayer:
    """Operators of one layer for a forward pass over the tokens of ``segments``.

    norm1 → QKV GEMM (T × h × (q+2kv)/t) → RoPE + KV-cache append → attention core (per
    segment) → output projection (T × q/t × h) → TP all-reduce → residual add + norm2 →
    FC1 (T × h × f/t, ×2 gated; MoE: T·top_k rows over the experts touched) → activation →
    FC2 (T × f/t × h) → TP all-reduce → residual add. GEMM weights are read once per pass at
    ``weight_bytes_per_param(precision)``.
    """
    h, f = model.hidden, model.ffn_hidden
    T = sum(s.tokens for s in segments)
    q_n, kv_n = model.q_dim / tp, model.kv_dim / tp
    gp = gemm_precision(precision)
    ib = gemm_input_bytes(precision)
    wb = weight_bytes_per_param(precision)
    kvb = kv_bytes_per_element(kv_precision)

    ops: list[Op] = [elementwise("norm1", T * h, T * h, 5.0),
                     gemm("qkv", T, h, q_n + 2 * kv_n, gp, in_bytes=ib, w_bytes=wb),
                     elementwise("rope_kv_append", T * (q_n + 2 * kv_n), T * q_n, 6.0,
                                 extra_bytes=T * 2 * kv_n * kvb)]
    core: list[str] = []
    for i, seg in enumerate(segments):
        tag = "" if len(segments) == 1 else (".decode" if seg.new <= DECODE_MAX_NEW else ".prefill")
        if len(segments) > 1 and any(o.name.endswith(tag) for o in ops):
            tag = f"{tag}{i}"
        for op in attention_ops(model, seg, tp, kv_precision, attention, tag):
            ops.append(op)
            core.append(op.name)
    ops.append(gemm("proj", T, q_n, h, gp, in_bytes=ib, w_bytes=wb))
    ops.append(elementwise("add_norm2", 2 * T * h, 2 * T * h, 6.0))
    fc1_n = f / tp * (2 if model.gated else 1)
    if model.is_moe:
        rows = T * model.top_k
        touched = np.minimum(float(model.experts), np.maximum(1.0, rows))  # experts whose weights are read
        m = rows / touched
        ops.append(gemm("fc1", m, h, fc1_n, gp, batch=touched, in_bytes=ib, w_bytes=wb))
        ops.append(elementwise("activation", rows * fc1_n, rows * f / tp, 8.0))
        ops.append(gemm("fc2", m, f / tp, h, gp, batch=touched, in_bytes=ib, w_bytes=wb))
    else:
        ops.append(gemm("fc1", T, h, fc1_n, gp, in_bytes=ib, w_bytes=wb))
        ops.append(elementwise("activation", T * fc1_n, T * f / tp, 8.0))
        ops.append(gemm("fc2", T, f / tp, h, gp, in_bytes=ib, w_bytes=wb))
    ops.append(elementwise("add2", 2 * T * h, T * h, 1.0))
    msg = T * h * ACT_BYTES
    comms = [Comm("tp_allreduce_attn", "all_reduce", msg, "tp"),
             Comm("tp_allreduce_mlp", "all_reduce", msg, "tp")]
    return InferenceLayer(ops, comms, T, tuple(core))


def embedding_ops(model: ModelSpec, tokens: float) -> list[Op]:
    """Token embedding lookup (first pipeline stage): reads and writes T·h 16-bit values."""
    return [elementwise("embedding", tokens * model.hidden, tokens * model.hidden, 1.0)]


def output_ops(model: ModelSpec, rows: float, tp: int) -> tuple[list[Op], list[Comm]]:
    """Last stage: final norm and the 16-bit output layer for the ``rows`` tokens whose next
    token is sampled (the last token of each sequence: inference engines do not compute
    prompt logits), vocabulary split over TP, then the logits all-gathered for sampling."""
    h, V = model.hidden, model.vocab
    ops = [elementwise("final_norm", rows * h, rows * h, 5.0),
           gemm("logits", rows, h, V / tp, "bf16")]
    comms = [Comm("logits_allgather", "all_gather", rows * V * ACT_BYTES, "tp")]
    return ops, comms
