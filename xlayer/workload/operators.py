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
    head_dim: Num = 0


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


# GEMM inputs quantized inside the preceding norm kernel (Transformer Engine LayerNormLinear /
# LayerNormMLP fuse the norm and the cast: Megatron-Core's TE spec uses them for qkv and fc1)
NORM_FUSED = ("qkv", "fc1", "shared_fc1")


def quantize(name: str, elements: Num, precision: str, read: bool = True) -> Op:
    """Cast of a 16-bit tensor to a low-precision GEMM format for training (Transformer
    Engine): both a row-wise and a column-wise (transposed) copy are written, since the
    forward GEMM and the weight-gradient GEMM contract the tensor along different dimensions
    (TE cast_transpose for per-tensor fp8; separate row/column block scales for MXFP8 and
    NVFP4), so bytes = 2·N read + 2·N·q written, q = bytes per element with its scales
    (:func:`xlayer.workload.precision.gemm_input_bytes`); per-tensor current scaling (fp8)
    reads the tensor once more for its amax first. ``read=False``: the cast is fused into the
    kernel that produced the tensor (only the writes remain)."""
    q = gemm_input_bytes(precision)
    reads = (2.0 * ACT_BYTES if precision == "fp8" else ACT_BYTES) if read else 0.0
    return Op(name, "elementwise", 2.0 * elements, elements * (reads + 2.0 * q), precision=precision)


def _with_input_quantize(fwd: list[Op], gp: str) -> list[Op]:
    """Insert the input cast before every low-precision GEMM of a forward list (the router and
    the attention core stay 16-bit)."""
    out: list[Op] = []
    for op in fwd:
        if op.kind == "gemm" and op.precision == gp:
            out.append(quantize(op.name + ".quantize_in", op.m * op.k * op.batch, gp,
                                read=op.name not in NORM_FUSED))
        out.append(op)
    return out


def _gemm_bwd(op: Op) -> list[Op]:
    """Backward of a GEMM: data gradient dA = dC·Bᵀ ([m,n]x[n,k]) and weight gradient
    dB = Aᵀ·dC ([k,m]x[m,n]); each 2·m·k·n FLOPs."""
    dgrad = gemm(op.name + ".dgrad", op.m, op.n, op.k, op.precision, op.batch)
    wgrad = gemm(op.name + ".wgrad", op.k, op.m, op.n, op.precision, op.batch)
    return [dgrad, wgrad]


def layer_work(model: ModelSpec, b: Num, tp: Num, sp: bool, cp: Num, precision: str,
               attention: str, dropout: float, ffn: str = "dense", ep: Num = 1, etp: Num = 1,
               window: Num = None) -> LayerWork:
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

    ``ffn="moe"``: the FFN is a mixture of experts (:func:`moe_ffn_ops`); ``window``: a
    sliding-window layer whose queries see at most ``window`` keys.
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
    if model.mla is not None:
        fwd += mla_projection_ops(model, T, tp, gp, in_b)
        d = (model.mla.qk_nope_head_dim + model.mla.qk_rope_head_dim + model.mla.v_head_dim) / 2.0
        q_n = heads * (model.mla.qk_nope_head_dim + model.mla.qk_rope_head_dim)
        kv_n = (q_n + heads * model.mla.v_head_dim) / 2.0
    else:
        fwd.append(gemm("qkv", T, h, q_n + 2 * kv_n, gp, in_bytes=in_b))
    s_q, s_kv = s / cp, s
    # keys a query sees on average: causal full attention s/2 (the kernels skip the masked
    # half); a sliding window of w keys w − w²/(2s) (the first w queries see fewer)
    seen_frac = 0.5 if window is None else (window - window * window / (2.0 * s)) / s
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
        flops = 4.0 * b * heads * s_q * s_kv * d * seen_frac
        nbytes = ACT_BYTES * T * (2 * q_n + 2 * kv_n)
        fwd.append(Op("flash_attn", "attention", flops, nbytes, precision="bf16", causal=True,
                      heads=b * heads, seq_q=s_q, seq_kv=s_kv if window is None else window, head_dim=d))
        core.append("flash_attn")
    fwd.append(gemm("proj", T, heads * model.mla.v_head_dim if model.mla is not None else q_n, h, gp, in_bytes=in_b))
    fwd.append(elementwise("dropout_add1", 2 * rows * h, rows * h, 2.0,
                           extra_bytes=(mask * rows * h if drop else 0)))
    fwd.append(elementwise("norm2", rows * h, rows * h, 5.0))
    moe_comms: list[Comm] = []
    if ffn == "moe":
        ops, moe_comms = moe_ffn_ops(model, T, tp, sp, ep, etp, gp, in_b)
        fwd += ops
    else:
        fc1_n = f / tp * (2 if model.gated else 1)
        fwd.append(gemm("fc1", T, h, fc1_n, gp, in_bytes=in_b))
        fwd.append(elementwise("activation", T * fc1_n, T * f / tp, 8.0))
        fwd.append(gemm("fc2", T, f / tp, h, gp, in_bytes=in_b))
    fwd.append(elementwise("dropout_add2", 2 * rows * h, rows * h, 2.0,
                           extra_bytes=(mask * rows * h if drop else 0)))

    if gp in LOW_PRECISION:
        fwd = _with_input_quantize(fwd, gp)
    bwd: list[Op] = []
    for op in reversed(fwd):
        if op.name.endswith(".quantize_in"):
            continue  # a cast has no backward of its own
        if op.kind == "gemm":
            if op.precision in LOW_PRECISION:
                bwd.append(quantize(op.name + ".quantize_grad", op.m * op.n * op.batch, op.precision))
            bwd.extend(_gemm_bwd(op))
        elif op.kind == "attention":
            # flash backward: 5 GEMMs of the forward's size vs 2 forward (Dao 2023) → 2.5×
            bwd.append(Op(op.name + ".bwd", "attention", 2.5 * op.flops, 2.0 * op.bytes,
                          precision=op.precision, causal=op.causal, heads=op.heads,
                          seq_q=op.seq_q, seq_kv=op.seq_kv, head_dim=op.head_dim))
        else:
            # element-wise backward: reads the saved input and the incoming gradient, writes
            # the outgoing gradient (1.5× the forward traffic)
            bwd.append(Op(op.name + ".bwd", "elementwise", 2.0 * op.flops, 1.5 * op.bytes))

    act = ACT_BYTES
    msg = T * h * act  # the full activation of the layer, all ranks together
    fwd_comms: list[Comm] = []
    bwd_comms: list[Comm] = []
    # an MoE layer's routed experts work on each rank's own (sequence-parallel) tokens: the
    # MLP's tensor-parallel gather/reduce remains only for shared experts
    mlp_tp = ffn != "moe" or (model.moe is not None and model.moe.shared_experts > 0)
    # the column-parallel GEMM at the attention's input (the backward collectives overlap it)
    attn_in = "qkv" if model.mla is None else ("q_up" if model.mla.q_lora_rank else "q_proj")
    mlp_in = "fc1" if ffn != "moe" else "shared_fc1"
    if sp:
        fwd_comms += [Comm("sp_allgather_attn", "all_gather", msg, "tp"),
                      Comm("sp_reducescatter_attn", "reduce_scatter", msg, "tp"),
                      Comm("sp_allgather_mlp", "all_gather", msg, "tp"),
                      Comm("sp_reducescatter_mlp", "reduce_scatter", msg, "tp")]
        # backward (Korthikanti 2022 §4.2.2): all-gather of the output gradient is exposed;
        # the reduce-scatter of the input gradient overlaps the weight-gradient GEMM; the
        # re-gather of the saved 1/t input overlaps the data-gradient GEMM.
        bwd_comms += [Comm("sp_allgather_grad_mlp", "all_gather", msg, "tp"),
                      Comm("sp_regather_mlp", "all_gather", msg, "tp", overlap=mlp_in + ".dgrad"),
                      Comm("sp_reducescatter_grad_mlp", "reduce_scatter", msg, "tp", overlap=mlp_in + ".wgrad"),
                      Comm("sp_allgather_grad_attn", "all_gather", msg, "tp"),
                      Comm("sp_regather_attn", "all_gather", msg, "tp", overlap=attn_in + ".dgrad"),
                      Comm("sp_reducescatter_grad_attn", "reduce_scatter", msg, "tp", overlap=attn_in + ".wgrad")]
    else:
        fwd_comms += [Comm("tp_allreduce_attn", "all_reduce", msg, "tp"),
                      Comm("tp_allreduce_mlp", "all_reduce", msg, "tp")]
        # backward: the all-reduce of the input gradient of each column-parallel GEMM runs
        # asynchronously with its weight-gradient GEMM (Megatron-LM async TP all-reduce)
        bwd_comms += [Comm("tp_allreduce_grad_mlp", "all_reduce", msg, "tp", overlap=mlp_in + ".wgrad"),
                      Comm("tp_allreduce_grad_attn", "all_reduce", msg, "tp", overlap=attn_in + ".wgrad")]
    if not mlp_tp:
        fwd_comms = [c for c in fwd_comms if "mlp" not in c.name]
        bwd_comms = [c for c in bwd_comms if "mlp" not in c.name]
    # expert-parallel all-to-all: dispatch and combine forward, the same two backward
    fwd_comms += moe_comms
    bwd_comms += [Comm(c.name + ".bwd", c.collective, c.bytes, c.group) for c in moe_comms]
    return LayerWork(fwd, bwd, fwd_comms, bwd_comms, tuple(core))


def mla_projection_ops(model: ModelSpec, T: Num, tp: Num, gp: str, in_b: float) -> list[Op]:
    """Multi-head latent attention projections of one layer on one rank (DeepSeek-V2 §2.1;
    Megatron-Core MLASelfAttention, training path without weight absorption): the down
    projections of the query (h → r_q) and of the compressed KV plus the shared RoPE key
    (h → r_kv + d_rope) are replicated on every tensor-parallel rank; RMSNorm of both latents;
    the up projections r_q → H/t·(d_nope + d_rope) and r_kv → H/t·(d_nope + d_v) are column-
    parallel. Without a query rank the query is one h → H/t·(d_nope + d_rope) GEMM."""
    a = model.mla
    H = model.heads / tp
    qk = a.qk_nope_head_dim + a.qk_rope_head_dim
    ops: list[Op] = []
    if a.q_lora_rank:
        ops += [gemm("q_down", T, model.hidden, a.q_lora_rank, gp, in_bytes=in_b),
                elementwise("q_norm", T * a.q_lora_rank, T * a.q_lora_rank, 5.0),
                gemm("q_up", T, a.q_lora_rank, H * qk, gp, in_bytes=in_b)]
    else:
        ops.append(gemm("q_proj", T, model.hidden, H * qk, gp, in_bytes=in_b))
    ops += [gemm("kv_down", T, model.hidden, a.kv_lora_rank + a.qk_rope_head_dim, gp, in_bytes=in_b),
            elementwise("kv_norm", T * a.kv_lora_rank, T * a.kv_lora_rank, 5.0),
            gemm("kv_up", T, a.kv_lora_rank, H * (a.qk_nope_head_dim + a.v_head_dim), gp, in_bytes=in_b),
            elementwise("mla_rope", T * (H * a.qk_rope_head_dim + a.qk_rope_head_dim),
                        T * (H * a.qk_rope_head_dim + a.qk_rope_head_dim), 6.0)]
    return ops


def moe_ffn_ops(model: ModelSpec, T: Num, tp: Num, sp: bool, ep: Num, etp: Num, gp: str,
                in_b: float) -> tuple[list[Op], list[Comm]]:
    """Forward operators of an MoE FFN on one rank (Megatron-Core MoELayer, alltoall dispatcher;
    force-balanced, dropless routing: every expert gets top_k·tokens/experts tokens).

    The rank's tokens are its sequence-parallel share R = T/t (tensor parallelism with MoE
    requires SP in Megatron-Core). Router GEMM R×h×E in 16-bit (Transformer Engine keeps the
    router out of FP8: it is a plain torch linear in Megatron-Core's TopKRouter); permute
    (gather of R·k token copies); all-to-all dispatch over the ep group of R·k·h 16-bit values;
    the E/ep local experts as grouped GEMMs of ep·R·k/E rows each (h × f_e·(2 gated)/etp and
    f_e/etp × h); all-to-all combine; unpermute (weighted sum of the k copies). Shared experts:
    a dense MLP of width S·f_e on the tensor-parallel layer's T rows. Expert tensor parallelism
    (etp > 1) splits the expert width and all-gathers / reduce-scatters the dispatched tokens
    inside the etp group."""
    m = model.moe
    h, E, k, fe = model.hidden, m.experts, m.top_k, m.ffn_hidden
    R = T / tp
    routed = R * k
    gated = 2 if model.gated else 1
    local = E / ep
    rows = ep * routed / E  # tokens per local expert (balanced)
    ops = [gemm("router", R, h, E, "bf16"),
           elementwise("permute", routed * h, routed * h, 0.0, extra_bytes=8.0 * routed),
           gemm("expert_fc1", rows, h, fe * gated / etp, gp, batch=local, in_bytes=in_b),
           elementwise("expert_activation", routed * fe * gated / etp, routed * fe / etp, 8.0),
           gemm("expert_fc2", rows, fe / etp, h, gp, batch=local, in_bytes=in_b),
           elementwise("unpermute", routed * h, R * h, 2.0, extra_bytes=4.0 * routed)]
    if m.shared_experts:
        fs = m.shared_experts * fe
        ops += [gemm("shared_fc1", T, h, fs * gated / tp, gp, in_bytes=in_b),
                elementwise("shared_activation", T * fs * gated / tp, T * fs / tp, 8.0),
                gemm("shared_fc2", T, fs / tp, h, gp, in_bytes=in_b)]
    a2a = routed * h * ACT_BYTES
    comms = [Comm("ep_dispatch", "all_to_all", a2a, "ep"), Comm("ep_combine", "all_to_all", a2a, "ep")]
    if not (isinstance(etp, (int, float)) and etp == 1):
        comms += [Comm("etp_allgather", "all_gather", a2a * etp, "etp"),
                  Comm("etp_reducescatter", "reduce_scatter", a2a * etp, "etp")]
    return ops, comms


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
    attn = h * (model.q_dim + 2 * model.kv_dim) + model.q_dim * h
    if model.moe is None:
        ffn = model.ffn_matrices * h * f
    else:  # averaged over the layers: dense layers, MoE layers (router + top_k + shared experts)
        m = model.moe
        moe_ffn = h * m.experts + (m.top_k + m.shared_experts) * model.ffn_matrices * h * m.ffn_hidden
        ffn = (m.dense_layers * model.ffn_matrices * h * f + model.moe_layers * moe_ffn) / model.layers
    seen = s / 2.0
    if model.sliding_window is not None:  # window layers see w − w²/(2s) keys per query
        w, n = model.sliding_window.size, model.sliding_window.layers
        seen = ((model.layers - n) * s / 2.0 + n * (w - w * w / (2.0 * s))) / model.layers
    return 2.0 * tokens * (attn + ffn) + 4.0 * tokens * seen * model.q_dim


def model_flops_per_iteration(model: ModelSpec, sequences: Num) -> Num:
    """Model FLOPs per iteration: 3 × forward (forward + backward), layers + logits
    (Narayanan 2021 eq. 3 generalised to GQA / gated FFN): 3·(L·F_layer + 2·T·h·V)."""
    T = sequences * model.seq_len
    return 3.0 * (model.layers * layer_flops_model(model, T) + 2.0 * T * model.hidden * model.vocab)


_ = np  # numpy used by callers passing arrays
