"""The transformer layer's forward pass as operators: the one builder that training and
inference (prefill, decode, mixed serving steps) share.

Per accelerator, one layer, one forward pass over the tokens of its attention segments.
Training (:mod:`xlayer.workload.training_ops`) derives the backward, the casts of its
low-precision recipe and the recompute from this list; inference
(:mod:`xlayer.workload.inference_ops`) prices it as it is. The two differ only in what
their stacks really run, stated as arguments:

* tokens and keys: training's segment is b sequences of s/c queries over s keys (context
  parallelism: c ranks share a sequence, Megatron's load-balanced causal split, each query
  sees s/2 keys on average); inference's segments have n new tokens after c cached ones;
* :class:`LayerKernels`: inference engines append K/V to the paged cache in the RoPE kernel
  and fuse the residual add with the next RMSNorm (TensorRT-LLM / vLLM ``fused_add_rms_norm``);
  Megatron-Core runs its bias-dropout-add and the norm as separate kernels;
* MoE token placement: Megatron-Core routes each rank's sequence-parallel share T/t (tensor
  parallelism with MoE requires SP) with experts split over ``etp``; an inference engine
  routes all T tokens on every tensor-parallel rank with each expert's width split over t
  (TensorRT-LLM's MoE tensor parallelism), so the MLP keeps its all-reduce;
* routing: a training benchmark's router is balanced (Megatron-Bridge performance recipes;
  every expert gets k·T/E tokens); a served model's routes are taken as independent draws,
  so a small batch touches fewer experts (:func:`expected_experts_touched`).

Notation: b sequences, n new tokens, c cached, h hidden, a heads, g kv heads, d head dim,
f FFN width, t tensor-parallel size, T tokens of the pass on this rank. A GEMM [m,k]x[k,n]
costs 2mkn FLOPs (Narayanan 2021); its weights are read once per pass.

Attention core of a segment:

* **decode** (at most ``DECODE_MAX_NEW`` new tokens, no explicit key geometry): a
  FlashDecoding kernel reading every cached K and V once, 2·b·(g/t)·s_kv·d·kv_bytes, doing
  4·b·(a/t)·n·s_kv·d FLOPs — memory-bound at every batch;
* **flash**: one kernel, 4·b·(a/t)·d·n·s̄ FLOPs, s̄ the mean keys a query sees (causal
  c + n/2; a sliding window of w keys w − w²/(2s)), reading Q and writing O (2·T·q·2 bytes)
  and reading the K/V of the s_kv keys (2·b·kv·s_kv·kv_bytes);
* **classic**: QKᵀ and PV batched GEMMs with the n × s_kv score matrix written and read by
  a softmax kernel (and, in training, a dropout kernel).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from xlayer.workload.model import ModelSpec
from xlayer.workload.operators import ACT_BYTES, Comm, Op, elementwise, gemm
from xlayer.workload.precision import NumberFormats

Num = Any  # float or numpy array

DECODE_MAX_NEW = 16  # attention with at most this many new tokens per sequence runs as a decode kernel
MASK_BYTES = 1  # bytes per element of a dropout mask


@dataclass(frozen=True)
class AttentionSegment:
    """Sequences that attend together in one pass: ``seqs`` sequences, each with ``new``
    tokens processed now after ``cached`` tokens already in the KV cache. ``keys`` (keys
    a sequence's queries attend over) and ``seen`` (mean keys a query sees) default to
    cached + new and the causal cached + new/2; training states them (context parallelism,
    sliding windows) and is then always a flash/classic prefill-shaped pass."""

    seqs: Num
    new: Num
    cached: Num = 0.0
    keys: Num = None
    seen: Num = None
    window: Num = None  # a sliding-window layer: each query's loop covers at most this many keys

    @property
    def tokens(self) -> Num:
        return self.seqs * self.new

    @property
    def kv_len(self) -> Num:
        return self.cached + self.new if self.keys is None else self.keys

    @property
    def mean_seen(self) -> Num:
        return self.cached + self.new / 2.0 if self.seen is None else self.seen

    @property
    def is_decode(self) -> bool:
        return self.seen is None and np.ndim(self.new) == 0 and self.new <= DECODE_MAX_NEW


def windowed_segment(seg: AttentionSegment, window: float) -> AttentionSegment:
    """``seg`` as a sliding-window layer of ``window`` = w keys sees it (inference): a decode
    reads the K/V of the last min(c + n, w) positions; a prefill chunk reads min(c, w) cached
    keys plus its own n, and its query at position p sees min(p, w) keys, a mean over the
    chunk of (1/n)·∫_c^{c+n} min(p, w) dp (c + n/2 when the window covers it all). A segment
    with stated key geometry (training) already accounts for its window."""
    if seg.seen is not None:
        return seg
    c, n, w = seg.cached, seg.new, float(window)
    if seg.is_decode:
        return AttentionSegment(seg.seqs, n, c, keys=np.minimum(c + n, w))
    lo, hi = c, c + n
    split = np.clip(w, lo, hi)
    seen = ((split * split - lo * lo) / 2.0 + w * (hi - split)) / n
    return AttentionSegment(seg.seqs, n, c, keys=np.minimum(c, w) + n, seen=seen, window=w)


def training_segment(seqs: Num, seq_len: float, cp: Num, window: Num = None) -> AttentionSegment:
    """One micro-batch of training: b sequences of s/c queries over s keys; a query sees s/2
    keys on average (causal), w − w²/(2s) in a sliding-window layer (the first w queries see
    fewer)."""
    s = seq_len
    seen = s / 2.0 if window is None else window - window * window / (2.0 * s)
    return AttentionSegment(seqs, s / cp, 0.0, keys=s, seen=seen, window=window)


@dataclass(frozen=True)
class LayerKernels:
    """Kernel boundaries a software stack draws (module docstring)."""

    kv_cache_append: bool  # RoPE + paged KV-cache append as one kernel (inference)
    fused_add_norm: bool  # residual add fused with the next RMSNorm (inference engines)
    fused_gate_up: bool = True  # a gated MLP's gate and up projections as one GEMM of width 2f/t
    # a biased MoE's fc2 bias added per expert outside the grouped GEMM (Megatron-Core
    # TEGroupedMLP: linear_fc2 with skip_bias_add, then _apply_bias)
    expert_bias_loop: bool = False


MEGATRON_KERNELS = LayerKernels(kv_cache_append=False, fused_add_norm=False, expert_bias_loop=True)
INFERENCE_KERNELS = LayerKernels(kv_cache_append=True, fused_add_norm=True)


@dataclass(frozen=True)
class LayerForward:
    """The forward operators of one layer on one rank and the collectives of its MoE FFN."""

    ops: list[Op]
    moe_comms: list[Comm]
    tokens: Num
    attention_core: tuple[str, ...] = field(default=())


def attention_ops(model: ModelSpec, seg: AttentionSegment, tp: Num, kv_bytes: float, attention: str,
                  tag: str = "", dropout: bool = False, head_dim: Num = None, q_n: Num = None,
                  kv_n: Num = None) -> list[Op]:
    """Attention core of one segment (module docstring). ``head_dim``/``q_n``/``kv_n``
    override the model's (multi-head latent attention's mixed head sizes)."""
    d = model.head_dim if head_dim is None else head_dim
    a_t = model.heads / tp
    q_n = model.q_dim / tp if q_n is None else q_n
    kv_t = model.kv_dim / tp if kv_n is None else kv_n
    b, n = seg.seqs, seg.new
    s_kv = seg.kv_len
    T = b * n
    qo_bytes = 2.0 * T * q_n * ACT_BYTES  # read Q, write O
    if seg.is_decode:
        flops = 4.0 * b * a_t * d * n * s_kv
        nbytes = 2.0 * b * kv_t * s_kv * kv_bytes + qo_bytes
        return [Op("attn_decode" + tag, "attention", flops, nbytes, precision="bf16", causal=False,
                   heads=b * a_t, seq_q=n, seq_kv=s_kv, head_dim=d)]
    if attention == "classic":
        scores = b * a_t * n * s_kv
        ops = [gemm("attn_scores" + tag, n, d, s_kv, "bf16", batch=b * a_t),
               elementwise("attn_softmax" + tag, scores, scores, 5.0)]
        if dropout:
            ops.append(elementwise("attn_dropout" + tag, scores, scores, 2.0, extra_bytes=MASK_BYTES * scores,
                                   rng_draws=scores))
        ops.append(gemm("attn_context" + tag, n, s_kv, d, "bf16", batch=b * a_t))
        return ops
    flops = 4.0 * b * a_t * d * n * seg.mean_seen
    nbytes = qo_bytes + 2.0 * b * kv_t * s_kv * kv_bytes
    return [Op("flash_attn" + tag, "attention", flops, nbytes, precision="bf16", causal=True,
               heads=b * a_t, seq_q=n, seq_kv=s_kv if seg.window is None else seg.window, head_dim=d)]


def mla_projection_ops(model: ModelSpec, T: Num, tp: Num, fm: NumberFormats, kv_up: bool = True) -> list[Op]:
    """Multi-head latent attention projections of one layer on one rank (DeepSeek-V2 §2.1;
    Megatron-Core MLASelfAttention, training path without weight absorption): the down
    projections of the query (h → r_q) and of the compressed KV plus the shared RoPE key
    (h → r_kv + d_rope) are replicated on every tensor-parallel rank; RMSNorm of both latents;
    the up projections r_q → H/t·(d_nope + d_rope) and r_kv → H/t·(d_nope + d_v) are column-
    parallel. Without a query rank the query is one h → H/t·(d_nope + d_rope) GEMM. ``kv_up``
    False: the KV up projection is left to the attention of each segment
    (:func:`mla_segment_ops`, inference)."""
    a = model.mla
    H = model.heads / tp
    qk = a.qk_nope_head_dim + a.qk_rope_head_dim
    g = dict(in_bytes=fm.input_bytes, w_bytes=fm.weight_bytes)
    ops: list[Op] = []
    if a.q_lora_rank:
        ops += [gemm("q_down", T, model.hidden, a.q_lora_rank, fm.gemm, **g),
                elementwise("q_norm", T * a.q_lora_rank, T * a.q_lora_rank, 5.0),
                gemm("q_up", T, a.q_lora_rank, H * qk, fm.gemm, **g)]
    else:
        ops.append(gemm("q_proj", T, model.hidden, H * qk, fm.gemm, **g))
    ops += [gemm("kv_down", T, model.hidden, a.kv_lora_rank + a.qk_rope_head_dim, fm.gemm, **g),
            elementwise("kv_norm", T * a.kv_lora_rank, T * a.kv_lora_rank, 5.0)]
    if kv_up:
        ops.append(gemm("kv_up", T, a.kv_lora_rank, H * (a.qk_nope_head_dim + a.v_head_dim), fm.gemm, **g))
    ops += [elementwise("mla_rope", T * (H * a.qk_rope_head_dim + a.qk_rope_head_dim),
                        T * (H * a.qk_rope_head_dim + a.qk_rope_head_dim), 6.0)]
    return ops


def mla_latent_elements(model: ModelSpec) -> int:
    """Cached elements per token and layer of multi-head latent attention: the compressed KV
    and the shared RoPE key, r_kv + d_rope (DeepSeek-V2 §2.1.2), one copy for all heads."""
    return model.mla.kv_lora_rank + model.mla.qk_rope_head_dim


def mla_segment_ops(model: ModelSpec, seg: AttentionSegment, tp: Num, fm: NumberFormats, attention: str,
                    tag: str = "") -> list[Op]:
    """Attention of one segment under multi-head latent attention at inference (H = a/t heads
    per rank, r = kv_lora_rank, d_r = rope dim, d_n = nope dim, d_v = value dim):

    * **decode**, weight-absorbed (DeepSeek-V2 §2.1.2; vLLM's MLA backends and FlashMLA):
      the query's nope part is absorbed into the latent space by a per-head batched GEMM
      (T × d_n × r, W_UK), attention then runs as multi-query attention over the cached latent
      — 2·T·H·s_kv·(r + d_r) FLOPs for QKᵀ and 2·T·H·s_kv·r for PV, reading the
      s_kv·(r + d_r) cached elements once per sequence — and the per-head output leaves the
      latent space by a second batched GEMM (T × r × d_v, W_UV). The absorbed matrices are
      kept in 16-bit (vLLM's MLA ``process_weights_after_loading`` dequantizes ``kv_b_proj``
      into ``W_UK_T``/``W_UV`` in the compute dtype).
    * **prefill**: the keys of the sequences (cached and new, b·s_kv rows) are up-projected
      (kv_up, r → H·(d_n + d_v)) and attention runs as in training (a flash kernel with
      d_qk = d_n + d_r, d_v; 16-bit K and V)."""
    a = model.mla
    H = model.heads / tp
    r, dr, dn, dv = a.kv_lora_rank, a.qk_rope_head_dim, a.qk_nope_head_dim, a.v_head_dim
    b, n, s_kv = seg.seqs, seg.new, seg.kv_len
    T = b * n
    if seg.is_decode:
        qk = 2.0 * T * H * s_kv * (r + dr)
        pv = 2.0 * T * H * s_kv * r
        nbytes = b * s_kv * (r + dr) * fm.kv_bytes + T * H * (2 * r + dr) * ACT_BYTES
        return [gemm("q_absorb" + tag, T, dn, r, "bf16", batch=H),
                Op("attn_decode" + tag, "attention", qk + pv, nbytes, precision="bf16", causal=False,
                   heads=b * H, seq_q=n, seq_kv=s_kv, head_dim=r + dr),
                gemm("o_absorb" + tag, T, r, dv, "bf16", batch=H)]
    g = dict(in_bytes=fm.input_bytes, w_bytes=fm.weight_bytes)
    up = gemm("kv_up" + tag, b * s_kv, r, H * (dn + dv), fm.gemm, **g)
    return [up, *attention_ops(model, seg, tp, float(ACT_BYTES), attention, tag, head_dim=(dn + dr + dv) / 2.0,
                               q_n=H * (dn + dr), kv_n=H * (dn + dr + dv) / 2.0)]


def expected_experts_touched(experts: float, top_k: float, tokens):
    """Expected number of distinct experts that ``tokens`` tokens route to, each picking
    ``top_k`` of ``experts`` (taken as independent draws of probability k/E per expert and
    token): E·(1 − (1 − k/E)^T). T = 1 gives k, T → ∞ gives E (balls into bins, the
    occupancy expectation)."""
    return experts * (1.0 - np.power(1.0 - top_k / experts, np.maximum(tokens, 0.0)))


def moe_ffn_ops(model: ModelSpec, R: Num, *, ep: Num, etp: Num, fm: NumberFormats,
                routing: Literal["balanced", "independent"], group_tokens: Num = None,
                etp_comms: bool = True, expert_bias_loop: bool = False) -> tuple[list[Op], list[Comm]]:
    """Forward operators of an MoE FFN on one rank and its all-to-alls (Megatron-Core
    MoELayer with the alltoall dispatcher; TensorRT-LLM's CUTLASS MoE: the same steps).

    R tokens are routed from this rank; the EP group routes ``group_tokens`` Tg (default
    R·ep: every rank its own). Router GEMM R×h×E in 16-bit (Transformer Engine keeps the
    router out of FP8: a plain torch linear in Megatron-Core's TopKRouter; TensorRT-LLM keeps
    it unquantized too); permute: gather of the R·k token copies (reads and writes R·k·h,
    8-byte routing indices per copy); all-to-all dispatch over ep of R·k·h 16-bit values; the
    experts held here that receive tokens — E/ep of them under ``balanced`` routing (at most
    Tg·k/ep), (E/ep)·(1 − (1 − k/E)^Tg) under ``independent`` routing — as grouped GEMMs of
    Tg·k/ep rows shared among them (h × f_e·(2 gated)/etp and f_e/etp × h), each touched
    expert's weights read once; all-to-all combine; unpermute (weighted sum of the k copies,
    4-byte probabilities per copy). Shared experts are a dense MLP of :func:`layer_forward`.

    ``expert_bias_loop``: the experts' fc2 bias is added outside the grouped GEMM, weighted by
    the routing probability, one expert at a time (Megatron-Core TEGroupedMLP ``_apply_bias``:
    ``cat([t + b·p for each local expert])``, megatron/core/transformer/moe/experts.py @d7288711):
    b·p written, t + b·p read twice and written, the cat read and written — 6 passes of
    rows·h 16-bit values (fc1's bias is fused into Transformer Engine's grouped GEMM).

    ``etp_comms``: expert tensor parallelism over sequence-parallel tokens all-gathers and
    reduce-scatters the dispatched tokens inside the etp group (Megatron-Core); with tokens
    replicated over the tensor-parallel ranks (inference) nothing moves."""
    m = model.moe
    h, E, k, fe = model.hidden, float(m.experts), float(m.top_k), m.ffn_hidden
    gated = 2 if model.gated else 1
    Tg = R * ep if group_tokens is None else group_tokens
    beta = moe_load_factor(model, ep)
    rows_here = beta * Tg * k / ep  # token copies this (the busiest) rank's experts process
    if routing == "balanced":
        touched = np.minimum(E / ep, rows_here)
    else:
        touched = np.maximum(expected_experts_touched(E, k, Tg) / ep, 1e-9)
    mrows = rows_here / touched
    routed = R * k
    g = dict(in_bytes=fm.input_bytes, w_bytes=fm.weight_bytes)
    ops = [gemm("router", R, h, E, "bf16"),
           elementwise("permute", routed * h, routed * h, 0.0, extra_bytes=8.0 * routed),
           gemm("expert_fc1", mrows, h, fe * gated / etp, fm.gemm, batch=touched, **g),
           elementwise("expert_activation", rows_here * fe * gated / etp, rows_here * fe / etp, 8.0),
           gemm("expert_fc2", mrows, fe / etp, h, fm.gemm, batch=touched, **g)]
    if expert_bias_loop:
        ops.append(elementwise("expert_fc2_bias", 3.0 * rows_here * h, 3.0 * rows_here * h, 2.0 / 3.0))
    ops.append(elementwise("unpermute", routed * h, R * h, 2.0, extra_bytes=4.0 * routed))
    return ops, _moe_comms(beta * routed * h * ACT_BYTES, ep, etp, etp_comms)


def moe_load_factor(model: ModelSpec, ep: Num) -> Num:
    """β = routed rows of the busiest EP rank / the mean (``model.moe.imbalance``, 1 when not
    stated: force-balanced routing), at most ep (one rank cannot receive more than every copy
    of its group). All ranks meet at every all-to-all, so the busiest sets the pace: its expert
    GEMMs, activation and bias work on β·Tg·k/ep rows, it receives β times the mean dispatch
    (and sends β times the mean combine), and it keeps β times the mean routed activations."""
    beta = model.moe.load_factor
    if beta == 1.0:
        return 1.0
    return np.minimum(beta, ep) if np.ndim(ep) else min(beta, float(ep))


def _moe_comms(a2a: Num, ep: Num, etp: Num, etp_comms: bool) -> list[Comm]:
    comms = [Comm("ep_dispatch", "all_to_all", a2a, "ep"), Comm("ep_combine", "all_to_all", a2a, "ep")]
    if etp_comms and not (isinstance(etp, (int, float)) and etp == 1):
        comms += [Comm("etp_allgather", "all_gather", a2a * etp, "etp"),
                  Comm("etp_reducescatter", "reduce_scatter", a2a * etp, "etp")]
    return comms


def _dense_mlp(name: str, T: Num, h: float, width_t: Num, gated: bool, fm: NumberFormats,
               fused_gate_up: bool = True) -> list[Op]:
    """FC1 (T × h × w/t, ×2 for a gated FFN: one GEMM, or gate and up as two) → activation →
    FC2 (T × w/t × h)."""
    fc1_n = width_t * (2 if gated else 1)
    g = dict(in_bytes=fm.input_bytes, w_bytes=fm.weight_bytes)
    if gated and not fused_gate_up:
        fc1 = [gemm(f"{name}fc1", T, h, width_t, fm.gemm, **g), gemm(f"{name}fc1_gate", T, h, width_t, fm.gemm, **g)]
    else:
        fc1 = [gemm(f"{name}fc1", T, h, fc1_n, fm.gemm, **g)]
    return [*fc1, elementwise(f"{name}activation", T * fc1_n, T * width_t, 8.0),
            gemm(f"{name}fc2", T, width_t, h, fm.gemm, **g)]


def layer_forward(model: ModelSpec, segments: list[AttentionSegment], *, tp: Num, fm: NumberFormats,
                  attention: str, kernels: LayerKernels, sp: bool = False, dropout: float = 0.0,
                  ffn: str = "dense", ep: Num = 1, etp: Num = 1, moe_tokens: str = "sequence_parallel",
                  routing: str = "balanced", group_tokens: Num = None) -> LayerForward:
    """Forward operators of one transformer layer on one rank (Megatron tensor parallelism,
    Shoeybi et al. 2019):

    norm1 → QKV GEMM (T × h × (q+2kv)/t; MLA: its projections) → [RoPE + KV-cache append] →
    attention core per segment → output projection (T × q/t × h) → residual add (+ dropout)
    and norm2 (one fused kernel or two) → FFN: dense FC1 → activation → FC2, or the MoE FFN
    (:func:`moe_ffn_ops`) and its shared experts → residual add (+ dropout).

    Element-wise kernels in the sequence-parallel region (``sp``) work on T/t rows. MoE
    tokens: ``moe_tokens="sequence_parallel"`` routes T/t per rank with experts over etp,
    ``"replicated"`` routes all T with each expert's width over t (module docstring).
    """
    h = model.hidden
    T = sum(seg.tokens for seg in segments)
    rows = T / tp if sp else T
    heads = model.heads / tp
    q_n = model.q_dim / tp
    kv_n = model.kv_dim / tp
    drop = dropout > 0
    g = dict(in_bytes=fm.input_bytes, w_bytes=fm.weight_bytes)

    ops: list[Op] = [elementwise("norm1", rows * h, rows * h, 5.0)]
    d = None
    latent = model.mla is not None and kernels.kv_cache_append  # inference: attention per segment over the latent
    if model.mla is not None:
        a = model.mla
        ops += mla_projection_ops(model, T, tp, fm, kv_up=not latent)
        d = (a.qk_nope_head_dim + a.qk_rope_head_dim + a.v_head_dim) / 2.0
        q_n = heads * (a.qk_nope_head_dim + a.qk_rope_head_dim)
        kv_n = (q_n + heads * a.v_head_dim) / 2.0
    else:
        ops.append(gemm("qkv", T, h, q_n + 2 * kv_n, fm.gemm, **g))
    if latent:  # the compressed KV and the RoPE key appended to the paged cache
        e = mla_latent_elements(model)
        ops.append(elementwise("kv_append", T * e, 0.0, 1.0, extra_bytes=T * e * fm.kv_bytes))
    elif kernels.kv_cache_append:
        ops.append(elementwise("rope_kv_append", T * (q_n + 2 * kv_n), T * q_n, 6.0,
                               extra_bytes=T * 2 * kv_n * fm.kv_bytes))
    core: list[str] = []
    for i, seg in enumerate(segments):
        tag = "" if len(segments) == 1 else (".decode" if seg.is_decode else ".prefill")
        if len(segments) > 1 and any(o.name.endswith(tag) for o in ops):
            tag = f"{tag}{i}"
        seg_ops = mla_segment_ops(model, seg, tp, fm, attention, tag) if latent else \
            attention_ops(model, seg, tp, fm.kv_bytes, attention, tag, dropout=drop, head_dim=d,
                          q_n=q_n if d is not None else None, kv_n=kv_n if d is not None else None)
        for op in seg_ops:
            ops.append(op)
            core.append(op.name)
    ops.append(gemm("proj", T, heads * model.mla.v_head_dim if model.mla is not None else q_n, h, fm.gemm, **g))
    mask = MASK_BYTES * rows * h if drop else 0
    draws = rows * h if drop else 0  # one random number per masked element
    if kernels.fused_add_norm:
        ops.append(elementwise("add_norm2", 2 * rows * h, 2 * rows * h, 6.0, extra_bytes=mask, rng_draws=draws))
    else:
        ops += [elementwise("dropout_add1", 2 * rows * h, rows * h, 2.0, extra_bytes=mask, rng_draws=draws),
                elementwise("norm2", rows * h, rows * h, 5.0)]
    moe_comms: list[Comm] = []
    if ffn == "moe":
        m = model.moe
        replicated = moe_tokens == "replicated"
        R = T if replicated else T / tp
        moe, moe_comms = moe_ffn_ops(model, R, ep=ep, etp=tp if replicated else etp, fm=fm, routing=routing,
                                     group_tokens=group_tokens, etp_comms=not replicated,
                                     expert_bias_loop=kernels.expert_bias_loop and bool(model.bias))
        ops += moe
        if m.shared_experts:
            ops += _dense_mlp("shared_", T, h, m.shared_experts * m.ffn_hidden / tp, model.gated, fm)
    else:
        ops += _dense_mlp("", T, h, model.ffn_hidden / tp, model.gated, fm, kernels.fused_gate_up)
    ops.append(elementwise("dropout_add2" if not kernels.fused_add_norm else "add2", 2 * rows * h, rows * h,
                           2.0 if drop or not kernels.fused_add_norm else 1.0, extra_bytes=mask, rng_draws=draws))
    return LayerForward(ops, moe_comms, T, tuple(core))


def tp_forward_comms(msg: Num, sp: bool, mlp_tp: bool = True) -> list[Comm]:
    """Forward collectives of tensor parallelism for a layer whose activation is ``msg``
    bytes: an all-reduce after the attention and after the MLP (row-parallel outputs), or
    with sequence parallelism an all-gather before and a reduce-scatter after each
    (Korthikanti 2022 §4.2.2). ``mlp_tp`` False: the MLP has no tensor-parallel part (MoE
    routed experts on sequence-parallel tokens)."""
    if sp:
        comms = [Comm("sp_allgather_attn", "all_gather", msg, "tp"),
                 Comm("sp_reducescatter_attn", "reduce_scatter", msg, "tp"),
                 Comm("sp_allgather_mlp", "all_gather", msg, "tp"),
                 Comm("sp_reducescatter_mlp", "reduce_scatter", msg, "tp")]
    else:
        comms = [Comm("tp_allreduce_attn", "all_reduce", msg, "tp"),
                 Comm("tp_allreduce_mlp", "all_reduce", msg, "tp")]
    return comms if mlp_tp else [c for c in comms if "mlp" not in c.name]


def embedding_ops(model: ModelSpec, tokens: Num) -> list[Op]:
    """Token (+ learned position) embedding lookup on the first stage: reads T·h (2·T·h with
    learned positions) 16-bit values, writes T·h."""
    h = model.hidden
    return [elementwise("embedding", tokens * h * (2 if model.position == "learned" else 1), tokens * h, 1.0)]


def output_layer_ops(model: ModelSpec, rows: Num, tp: Num, precision: str) -> list[Op]:
    """Final norm and the output layer (rows × h × V/t GEMM, vocabulary split over TP) in
    ``precision`` (16-bit under every low-precision recipe: Megatron-Core's ``output_layer``
    is a plain ColumnParallelLinear that Transformer Engine's autocast does not reach;
    inference engines keep ``lm_head`` unquantized)."""
    h = model.hidden
    return [elementwise("final_norm", rows * h, rows * h, 5.0), gemm("logits", rows, h, model.vocab / tp, precision)]


def segment_attention_ops(model: ModelSpec, seg: AttentionSegment, tp: Num, fm: NumberFormats,
                          attention: str) -> list[Op]:
    """The attention core of one inference segment (the serving step timer prices it per
    segment): :func:`mla_segment_ops` for latent attention, else :func:`attention_ops`."""
    if model.mla is not None:
        return mla_segment_ops(model, seg, tp, fm, attention)
    return attention_ops(model, seg, tp, fm.kv_bytes, attention)
