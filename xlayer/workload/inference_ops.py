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
| mxfp8 | 1 + 1/32 | mxfp8 (block-scaled W8A8, Blackwell) | 1 + 1/32 |
| nvfp4 | 0.5 + 1/16 | nvfp4 (block-scaled W4A4, Blackwell: ModelOpt NVFP4 checkpoints) | 0.5 + 1/16 |

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

# block-scaled formats carry their scales: MXFP8 one E8M0 byte per 32 elements, NVFP4 one E4M3
# byte per 16 (xlayer.workload.precision, OCP MX v1.0 / Transformer Engine docs)
WEIGHT_BYTES = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0, "fp4": 0.5, "int4": 0.5,
                "mxfp8": 1.0 + 1.0 / 32.0, "nvfp4": 0.5 + 1.0 / 16.0}
KV_BYTES = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5,
            "nvfp4": 0.5 + 1.0 / 16.0}
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
    if precision in ("mxfp8", "nvfp4"):
        return WEIGHT_BYTES[precision]  # W8A8 / W4A4 with block scales: activations quantized alike
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
                    kv_precision: str, attention: str, *, ep: int = 1,
                    group_tokens=None) -> InferenceLayer:
    """Operators of one layer for a forward pass over the tokens of ``segments``.

    norm1 → QKV GEMM (T × h × (q+2kv)/t) → RoPE + KV-cache append → attention core (per
    segment) → output projection (T × q/t × h) → TP all-reduce → residual add + norm2 →
    FC1 (T × h × f/t, ×2 gated; MoE: T·top_k rows over the experts touched) → activation →
    FC2 (T × f/t × h) → TP all-reduce → residual add. GEMM weights are read once per pass at
    ``weight_bytes_per_param(precision)``. An MoE layer's FFN is :func:`moe_ffn_ops` (``ep``,
    ``group_tokens``: expert parallelism with attention data parallel, see there); its
    all-to-all dispatch and combine are comms of group ``ep``.
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
        ops += moe_ffn_ops(model, T, tp, precision, ep=ep, group_tokens=group_tokens)
    else:
        ops.append(gemm("fc1", T, h, fc1_n, gp, in_bytes=ib, w_bytes=wb))
        ops.append(elementwise("activation", T * fc1_n, T * f / tp, 8.0))
        ops.append(gemm("fc2", T, f / tp, h, gp, in_bytes=ib, w_bytes=wb))
    ops.append(elementwise("add2", 2 * T * h, T * h, 1.0))
    msg = T * h * ACT_BYTES
    comms = [Comm("tp_allreduce_attn", "all_reduce", msg, "tp"),
             Comm("tp_allreduce_mlp", "all_reduce", msg, "tp")]
    if model.is_moe and ep > 1:
        # each routed token copy leaves once (dispatch) and comes back once (combine)
        a2a = T * model.top_k * h * ACT_BYTES
        comms += [Comm("ep_dispatch", "all_to_all", a2a, "ep"), Comm("ep_combine", "all_to_all", a2a, "ep")]
    return InferenceLayer(ops, comms, T, tuple(core))


def expected_experts_touched(experts: float, top_k: float, tokens):
    """Expected number of distinct experts that ``tokens`` tokens route to, each picking
    ``top_k`` of ``experts`` (taken as independent draws of probability k/E per expert and
    token): E·(1 − (1 − k/E)^T). T = 1 gives k, T → ∞ gives E (balls into bins, the
    occupancy expectation)."""
    return experts * (1.0 - np.power(1.0 - top_k / experts, np.maximum(tokens, 0.0)))


def moe_ffn_ops(model: ModelSpec, T, tp: int, precision: str, *, ep: int = 1, group_tokens=None) -> list[Op]:
    """Operators of one MoE FFN at inference for T tokens on this accelerator.

    router GEMM T × h × E (16-bit) → routed experts as grouped GEMMs: the experts held here
    (E/ep, each split over tp) that receive at least one token copy — expected
    (E/ep)·(1 − (1 − k/E)^Tg) of them, Tg the tokens of the whole EP group (``group_tokens``,
    default T: with attention data parallel every rank of the group routes its own T) — with
    Tg·k/ep rows shared among them, every touched expert's weights read once → activation →
    down GEMMs; shared experts as a dense gated FFN of width S·f_e. Decode (T small) reads
    about k·T experts' weights; a large batch reads all of them."""
    m = model.moe
    h, E, k = model.hidden, float(model.experts), float(model.top_k)
    fe = m.ffn_hidden or model.ffn_hidden
    gp = gemm_precision(precision)
    ib = gemm_input_bytes(precision)
    wb = weight_bytes_per_param(precision)
    Tg = T if group_tokens is None else group_tokens
    touched = np.maximum(expected_experts_touched(E, k, Tg) / ep, 1e-9)
    rows = Tg * k / ep
    mrows = rows / touched
    f1 = fe / tp * (2 if model.gated else 1)
    # permute: gather each token copy into its expert's rows (TensorRT-LLM's CUTLASS MoE
    # expandInputRows; vLLM's moe_align/permute), combine: weighted un-permute and sum over k
    ops = [gemm("router", T, h, E, "bf16"),
           elementwise("moe_permute", T * h, rows * h, 1.0),
           gemm("fc1", mrows, h, f1, gp, batch=touched, in_bytes=ib, w_bytes=wb),
           elementwise("activation", rows * f1, rows * fe / tp, 8.0),
           gemm("fc2", mrows, fe / tp, h, gp, batch=touched, in_bytes=ib, w_bytes=wb),
           elementwise("moe_combine", rows * h, T * h, 2.0)]
    if m.shared_experts:
        fs = m.shared_experts * fe / tp
        ops += [gemm("shared_fc1", T, h, fs * (2 if model.gated else 1), gp, in_bytes=ib, w_bytes=wb),
                gemm("shared_fc2", T, fs, h, gp, in_bytes=ib, w_bytes=wb)]
    return ops


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
