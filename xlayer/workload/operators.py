"""A transformer layer as a list of operators, each declaring its FLOPs and HBM bytes.

All sizes are per accelerator and per micro-batch. Arguments may be Python numbers or numpy
arrays (one entry per layout): the same formulas serve the scalar path (one layout, rich
breakdown) and the vectorized path (thousands of layouts at once).

Notation: b micro-batch, s sequence, h hidden, a heads, g kv_heads, d head_dim, f ffn
hidden, t tensor-parallel size, c context-parallel size. T = b·s/c tokens per accelerator.
FLOP counts follow Narayanan et al. 2021 / Korthikanti et al. 2022: a GEMM [m,k]x[k,n] costs
2mkn; its backward costs two such GEMMs (data gradient and weight gradient).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xlayer.workload.model import ModelSpec
from xlayer.workload.precision import LOW_PRECISION, gemm_input_bytes

Num = Any  # float or numpy array

ACT_BYTES = 2  # 16-bit activations (fp16/bf16); fp8 recipes keep activations 16-bit too


@dataclass(frozen=True)
class Op:
    """One kernel (or a fused group) of work on one accelerator.

    ``kind``: gemm | attention | elementwise. For a gemm, m/n/k/batch give its shape.
    ``precision``: the arithmetic it runs in (GEMMs follow the case; the rest is 16-bit).
    """

    name: str
    kind: str
    flops: Num
    bytes: Num
    m: Num = 0
    n: Num = 0
    k: Num = 0
    batch: Num = 1
    precision: str = "bf16"
    causal: bool = False
    heads: Num = 0
    seq_q: Num = 0
    seq_kv: Num = 0


@dataclass(frozen=True)
class Comm:
    """A collective the layer issues. ``group`` names the parallel dimension (tp, cp, ...);
    ``overlap`` names the op it runs concurrently with (None: exposed)."""

    name: str
    collective: str  # all_reduce | all_gather | reduce_scatter | send_recv
    bytes: Num
    group: str
    overlap: str | None = None


@dataclass(frozen=True)
class LayerWork:
    """Everything one transformer layer does for one micro-batch on one accelerator."""

    fwd: list[Op]
    bwd: list[Op]
    fwd_comms: list[Comm]
    bwd_comms: list[Comm]
    attention_core: tuple[str, ...] = field(default=())


def gemm(name: str, m: Num, k: Num, n: Num, precision: str, batch: Num = 1,
         in_bytes: int = ACT_BYTES, w_bytes: int | None = None) -> Op:
    """GEMM C[m,n] = A[m,k]·B[k,n] (``batch`` independent ones): 2·m·k·n FLOPs; reads A and B,
    writes C once (tiles stay on chip)."""
    w_bytes = in_bytes if w_bytes is None else w_bytes
    flops = 2.0 * m * k * n * batch
    nbytes = batch * (m * k * in_bytes + k * n * w_bytes + m * n * ACT_BYTES)
    return Op(name, "gemm", flops, nbytes, m=m, n=n, k=k, batch=batch, precision=precision)


def elementwise(name: str, elements_read: Num, elements_written: Num, flops_per_element: float = 1.0,
                extra_bytes: Num = 0) -> Op:
    """A memory-bound kernel: bytes = 2·(read + written) elements (+ masks etc.)."""
    nbytes = ACT_BYTES * (elements_read + elements_written) + extra_bytes
    return Op(name, "elementwise", flops_per_element * elements_written, nbytes)


def _gemm_bwd(op: Op) -> list[Op]:
    """Backward of a GEMM: data gradient dA = dC·Bᵀ ([m,n]x[n,k]) and weight gradient
    dB = Aᵀ·dC ([k,m]x[m,n]); each 2·m·k·n FLOPs."""
    dgrad = gemm(op.name + ".dgrad", op.m, op.n, op.k, op.precision, op.batch)
    wgrad = gemm(op.name + ".wgrad", op.k, op.m, op.n, op.precision, op.batch)
    return [dgrad, wgrad]


def layer_work(model: ModelSpec, b: Num, tp: Num, sp: bool, cp: Num, precision: str,
               attention: str, dropout: float) -> LayerWork:
    """Operators and collectives of one transformer layer (forward and backward).

    Forward, per accelerator (Megatron tensor parallelism, Shoeybi et al. 2019):
    norm → [all-gather if SP] → QKV GEMM (T×h×(q+2kv)/t) → attention core → output
    projection (T×q/t×h) → all-reduce (reduce-scatter with SP) → dropout+residual → norm →
    [all-gather] → FC1 (T×h×f/t, ×2 for a gated FFN) → activation → FC2 (T×f/t×h) →
    all-reduce/reduce-scatter → dropout+residual.
    Attention core, classic: QKᵀ batched GEMM (2·b·a/t·s_q·s_kv·d), fused scale-mask-softmax,
    dropout, P·V batched GEMM; flash: one kernel doing 4·b·a/t·s_q·s_kv·d FLOPs (half with a
    causal mask, which flash kernels skip) without writing the s² scores.
    Element-wise kernels in the SP region work on T/t rows.
    """
    h, d, f = model.hidden, model.head_dim, model.ffn_hidden
    s = model.seq_len
    T = b * s / cp
    rows = T / tp if sp else T
    heads = model.heads / tp
    q_n = model.q_dim / tp
    kv_n = model.kv_dim / tp
    gp = precision  # GEMM precision
    in_b = gemm_input_bytes(precision) if precision in LOW_PRECISION else ACT_BYTES
    drop = dropout > 0
    mask = 1  # bytes per element of a dropout mask

    fwd: list[Op] = []
    fwd.append(elementwise("norm1", rows * h, rows * h, 5.0))
    fwd.append(gemm("qkv", T, h, q_n + 2 * kv_n, gp, in_bytes=in_b))
    s_q, s_kv = s / cp, s
    core: list[str] = []
    if attention == "classic":
        scores = b * heads * s_q * s_kv
        fwd.append(gemm("attn_scores", s_q, d, s_kv, "bf16", batch=b * heads))
        fwd.append(elementwise("attn_softmax", scores, scores, 5.0))
        core += ["attn_scores", "attn_softmax"]
        if drop:
            fwd.append(elementwise("attn_dropout", scores, scores, 2.0, extra_bytes=mask * scores))
            core.append("attn_dropout")
        fwd.append(gemm("attn_context", s_q, s_kv, d, "bf16", batch=b * heads))
        core.append("attn_context")
    else:
        causal_frac = 0.5
        flops = 4.0 * b * heads * s_q * s_kv * d * causal_frac
        nbytes = ACT_BYTES * T * (2 * q_n + 2 * kv_n)
        fwd.append(Op("flash_attn", "attention", flops, nbytes, precision="bf16", causal=True,
                      heads=b * heads, seq_q=s_q, seq_kv=s_kv))
        core.append("flash_attn")
    fwd.append(gemm("proj", T, q_n, h, gp, in_bytes=in_b))
    fwd.append(elementwise("dropout_add1", 2 * rows * h, rows * h, 2.0,
                           extra_bytes=(mask * rows * h if drop else 0)))
    fwd.append(elementwise("norm2", rows * h, rows * h, 5.0))
    fc1_n = f / tp * (2 if model.gated else 1)
    moe_scale = model.top_k if model.is_moe else 1
    fwd.append(gemm("fc1", T * moe_scale, h, fc1_n, gp, in_bytes=in_b))
    fwd.append(elementwise("activation", T * moe_scale * fc1_n, T * moe_scale * f / tp, 8.0))
    fwd.append(gemm("fc2", T * moe_scale, f / tp, h, gp, in_bytes=in_b))
    fwd.append(elementwise("dropout_add2", 2 * rows * h, rows * h, 2.0,
                           extra_bytes=(mask * rows * h if drop else 0)))

    bwd: list[Op] = []
    for op in reversed(fwd):
        if op.kind == "gemm":
            bwd.extend(_gemm_bwd(op))
        elif op.kind == "attention":
            # flash backward: 5 GEMMs of the forward's size vs 2 forward (Dao 2023) → 2.5×
            bwd.append(Op(op.name + ".bwd", "attention", 2.5 * op.flops, 2.0 * op.bytes,
                          precision=op.precision, causal=op.causal, heads=op.heads,
                          seq_q=op.seq_q, seq_kv=op.seq_kv))
        else:
            # element-wise backward: reads the saved input and the incoming gradient, writes
            # the outgoing gradient (1.5× the forward traffic)
            bwd.append(Op(op.name + ".bwd", "elementwise", 2.0 * op.flops, 1.5 * op.bytes))

    act = ACT_BYTES
    msg = T * h * act  # the full activation of the layer, all ranks together
    fwd_comms: list[Comm] = []
    bwd_comms: list[Comm] = []
    if sp:
        fwd_comms += [Comm("sp_allgather_attn", "all_gather", msg, "tp"),
                      Comm("sp_reducescatter_attn", "reduce_scatter", msg, "tp"),
                      Comm("sp_allgather_mlp", "all_gather", msg, "tp"),
                      Comm("sp_reducescatter_mlp", "reduce_scatter", msg, "tp")]
        # backward (Korthikanti 2022 §4.2.2): all-gather of the output gradient is exposed;
        # the reduce-scatter of the input gradient overlaps the weight-gradient GEMM; the
        # re-gather of the saved 1/t input overlaps the data-gradient GEMM.
        bwd_comms += [Comm("sp_allgather_grad_mlp", "all_gather", msg, "tp"),
                      Comm("sp_regather_mlp", "all_gather", msg, "tp", overlap="fc1.dgrad"),
                      Comm("sp_reducescatter_grad_mlp", "reduce_scatter", msg, "tp", overlap="fc1.wgrad"),
                      Comm("sp_allgather_grad_attn", "all_gather", msg, "tp"),
                      Comm("sp_regather_attn", "all_gather", msg, "tp", overlap="qkv.dgrad"),
                      Comm("sp_reducescatter_grad_attn", "reduce_scatter", msg, "tp", overlap="qkv.wgrad")]
    else:
        fwd_comms += [Comm("tp_allreduce_attn", "all_reduce", msg, "tp"),
                      Comm("tp_allreduce_mlp", "all_reduce", msg, "tp")]
        # backward: the all-reduce of the input gradient of each column-parallel GEMM runs
        # asynchronously with its weight-gradient GEMM (Megatron-LM async TP all-reduce)
        bwd_comms += [Comm("tp_allreduce_grad_mlp", "all_reduce", msg, "tp", overlap="fc1.wgrad"),
                      Comm("tp_allreduce_grad_attn", "all_reduce", msg, "tp", overlap="qkv.wgrad")]
    return LayerWork(fwd, bwd, fwd_comms, bwd_comms, tuple(core))


def recompute_ops(work: LayerWork, mode: str) -> tuple[list[Op], list[Comm]]:
    """Work redone in the backward pass. ``selective`` re-runs the attention core
    (Korthikanti 2022 §5: QKᵀ, softmax, dropout, PV); a flash kernel already recomputes
    internally, so selective adds nothing there. ``full`` re-runs the whole forward,
    collectives included."""
    if mode == "none":
        return [], []
    if mode == "selective":
        return [op for op in work.fwd if op.name in work.attention_core and op.kind != "attention"], []
    if mode == "full":
        return list(work.fwd), list(work.fwd_comms)
    raise ValueError(mode)


def embedding_work(model: ModelSpec, b: Num, tp: Num, cp: Num) -> list[Op]:
    """Token (+ position) embedding lookup on the first stage: writes T·h activations."""
    T = b * model.seq_len / cp
    return [elementwise("embedding", T * model.hidden * (2 if model.position == "learned" else 1),
                        T * model.hidden, 1.0)]


def logits_work(model: ModelSpec, b: Num, tp: Num, cp: Num, precision: str) -> tuple[list[Op], list[Op]]:
    """Final norm, output layer (T×h×V/t GEMM, vocabulary split over TP) and the fused
    vocab-parallel cross-entropy (reads the T×V/t logits twice in fp32). Forward and backward.

    The output layer stays 16-bit under FP8/FP4 recipes: Megatron-Core's ``output_layer`` is a
    plain ``tensor_parallel.ColumnParallelLinear``, not a Transformer Engine module, so TE's
    fp8/fp4 autocast does not reach it (megatron/core/models/gpt/gpt_model.py)."""
    T = b * model.seq_len / cp
    h, V = model.hidden, model.vocab
    norm = elementwise("final_norm", T * h, T * h, 5.0)
    out = gemm("logits", T, h, V / tp, "fp32" if precision == "fp32" else "bf16")
    loss = Op("cross_entropy", "elementwise", 5.0 * T * V / tp, 4.0 * 2 * T * V / tp)
    fwd = [norm, out, loss]
    bwd = [Op("cross_entropy.bwd", "elementwise", 2.0 * T * V / tp, (4.0 + ACT_BYTES) * T * V / tp),
           *_gemm_bwd(out), Op("final_norm.bwd", "elementwise", 2 * norm.flops, 1.5 * norm.bytes)]
    return fwd, bwd


def layer_flops_model(model: ModelSpec, tokens: Num) -> Num:
    """Model FLOPs of one layer's forward for ``tokens`` tokens (no recompute):
    2·T·(h·(q+2kv) + q·h + m·h·f·top_k) + 2·T·s·q. The attention term is the causal half of
    the 4·T·s·q of full attention — what a causal (flash) kernel does, so that MFU and HFU
    count the same work the kernel times do and never exceed 100 % (Megatron-LM's and PaLM's
    reported figures count the full 4·T·s·q; at long sequences they are higher than ours)."""
    h, f, s = model.hidden, model.ffn_hidden, model.seq_len
    dense = h * (model.q_dim + 2 * model.kv_dim) + model.q_dim * h + model.ffn_matrices * h * f * model.top_k
    return 2.0 * tokens * dense + 2.0 * tokens * s * model.q_dim


def model_flops_per_iteration(model: ModelSpec, sequences: Num) -> Num:
    """Model FLOPs per iteration: 3 × forward (forward + backward), layers + logits
    (Narayanan 2021 eq. 3 generalised to GQA / gated FFN): 3·(L·F_layer + 2·T·h·V)."""
    T = sequences * model.seq_len
    return 3.0 * (model.layers * layer_flops_model(model, T) + 2.0 * T * model.hidden * model.vocab)


_ = np  # numpy used by callers passing arrays
