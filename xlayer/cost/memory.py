"""Memory footprint per accelerator of a training job (scalars or numpy arrays).

Sources: Rajbhandari et al. 2020 (ZeRO) for model states; Korthikanti et al. 2022 §4 for
activations; Megatron-LM's interleaved schedule for the number of micro-batches in flight.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from xlayer.workload.model import ModelSpec
from xlayer.workload.precision import LOW_PRECISION, gemm_input_bytes
from xlayer.workload.recompute import recompute_modules
from xlayer.workload.training_ops import op_sac_split
from xlayer.workload.transformer import moe_load_factor

WEIGHT_BYTES = 2  # 16-bit working weights
GRAD_BYTES = 4  # fp32 main gradients (Megatron-LM accumulates and reduces in fp32)
OPTIMIZER_BYTES = 12  # fp32 master weights + Adam first and second moments
FP32_OPTIMIZER_BYTES = 8  # fp32 training: Adam's two moments, no separate master copy


def model_state_bytes(params: Any, dp: Any, zero: int, precision: str = "bf16",
                      grad_bytes: float = GRAD_BYTES) -> dict[str, Any]:
    """Mixed precision: weights 2 B, gradients 4 B, optimizer 12 B per parameter (18 B in all,
    Korthikanti 2022 Fig. 1). fp32 training: weights 4 B, gradients 4 B, Adam moments 8 B (no
    separate master copy): 16 B. ZeRO-1 shards the optimizer over dp, ZeRO-2 also the
    gradients, ZeRO-3 (FSDP) also the weights (Rajbhandari 2020, Fig. 1)."""
    w, o = (4.0, float(FP32_OPTIMIZER_BYTES)) if precision == "fp32" \
        else (float(WEIGHT_BYTES), float(OPTIMIZER_BYTES))
    return {
        "weights": params * w / (dp if zero >= 3 else 1),
        "gradients": params * grad_bytes / (dp if zero >= 2 else 1),
        "optimizer": params * o / (dp if zero >= 1 else 1),
    }


def layer_activation_bytes(model: ModelSpec, b: Any, tp: Any, cp: Any, sp: bool, recompute: str,
                           attention: str, dropout: float, ffn: str = "dense", etp: Any = 1,
                           precision: str = "bf16", ep: Any = 1, saved: Any = None) -> Any:
    """Bytes one layer keeps for its backward pass, per accelerator and micro-batch.

    Generalises Korthikanti 2022 eq. (1)–(5) (which is s·b·h·(34 + 5·a·s/h) for GPT with
    dropout) term by term, T = b·s/cp tokens, rows = T/t with SP else T:
      norm1 in 2·rows·h, QKV in 2·rows·h, Q/K/V 2·T·(q+2kv)/t, classic attention
      2·b·a·s_q·s_kv/t (softmax out) + (1 + 2)·b·a·s_q·s_kv/t (dropout mask + out) if dropout,
      flash 4·b·a·s_q/t (log-sum-exp), proj in 2·T·q/t, dropout mask rows·h, norm2 in
      2·rows·h, FC1 in 2·rows·h, activation in 2·T·f₁/t, FC2 in 2·T·f/t, dropout mask rows·h.
    selective: drops the s² terms (the attention core is recomputed);
    full: keeps only the layer input 2·rows·h;
    a module set (:mod:`xlayer.workload.recompute`) drops what its modules re-run: layernorm
    the two norm outputs (the attention's input GEMM operand and the FFN's input), moe_act the
    routed experts' activation output (their FC2 input), mla_up_proj q, k, v after the up
    projections, mlp a dense FFN's FC1 output, activation output and FC2 input (its input
    stays), shared_experts the same terms of the shared experts.
    ``ffn="moe"``: the FFN part is the MoE layer's (router, permuted copies, experts; the
    formula is in the code, term by term).
    Low-precision GEMMs (fp8, mxfp8, nvfp4): Transformer Engine saves each GEMM's input for the
    weight gradient in its quantized (column-wise) form, not in 16 bit (te.Linear /
    LayerNormLinear save ``inputmat`` / ``ln_out`` as the quantized tensor), so the QKV, proj,
    FC1 and FC2 inputs count q bytes per element (:func:`gemm_input_bytes`) instead of 2.
    ``saved``: the stack's :class:`xlayer.mapping.profiles.SavedActivations` (None: fused
    kernels as above). Unfused modules change three terms: an RMSNorm keeps
    ``rmsnorm_input_bytes`` per input element instead of 2 (both norms), an ``act(gate) * up``
    FFN also keeps act's output (2·T·f/t; routed experts 2·k·R·f_e), and a non-gated
    activation keeps ``gelu_input_bytes`` per FC1-output element instead of 2.
    """
    h, s = model.hidden, model.seq_len
    T = b * s / cp
    rows = T / tp if sp else T
    if recompute == "full":
        return 2.0 * rows * h
    a = model.heads / tp
    s_q, s_kv = s / cp, s
    drop = 1.0 if dropout > 0 else 0.0
    f = model.ffn_hidden
    f1 = f * (2 if model.gated else 1)
    gi = gemm_input_bytes(precision) if precision in LOW_PRECISION else 2.0  # a saved GEMM input
    if model.mla is not None:  # latents before and after their norms, q/k/v after the up projections
        ml = model.mla
        lat = (ml.q_lora_rank or 0) + ml.kv_lora_rank + ml.qk_rope_head_dim
        qk = ml.qk_nope_head_dim + ml.qk_rope_head_dim
        qkv_b = 4 * T * lat + 2 * T * model.heads * (2 * qk + ml.v_head_dim) / tp
        proj_in = T * model.heads * ml.v_head_dim / tp
    else:
        qkv_b = 2 * T * (model.q_dim + 2 * model.kv_dim) / tp
        proj_in = T * model.q_dim / tp
    # unfused modules of the stack (None: fused kernels): norm input, gated act output, GELU input
    norm_in = (saved.rmsnorm_input_bytes if saved is not None and model.norm == "rmsnorm" else 2.0)
    glu_out = 2.0 if saved is not None and saved.glu_unfused and model.gated else 0.0
    act_in = saved.gelu_input_bytes if saved is not None and model.activation == "gelu" else 2.0
    mods = recompute_modules(recompute)
    norm_out = 0.0 if "layernorm" in mods else 1.0  # layernorm: the norm outputs are re-run
    if "mla_up_proj" in mods and model.mla is not None:
        ml = model.mla
        qkv_b = qkv_b - 2 * T * model.heads * (2 * (ml.qk_nope_head_dim + ml.qk_rope_head_dim) + ml.v_head_dim) / tp
    attn = (norm_in * rows * h + norm_out * gi * rows * h + qkv_b + gi * proj_in + drop * rows * h
            + norm_in * rows * h + drop * rows * h)
    if ffn == "moe":
        m = model.moe
        R = T / tp  # the rank's sequence-parallel tokens
        fe, fe1 = m.ffn_hidden / etp, m.ffn_hidden * (2 if model.gated else 1) / etp
        act_out = 0.0 if "moe_act" in mods else gi * fe
        # norm2 out (router and permute input), fp32 router logits and probabilities, the
        # R·k permuted token copies (expert FC1 input), FC1 out, activation out, expert outputs
        # before the weighted combine; shared experts as a dense MLP of width S·f_e
        # the busiest EP rank holds β times the mean expert rows (moe_load_factor)
        beta = moe_load_factor(model, ep)
        ffn_b = norm_out * 2 * rows * h + 8 * R * m.experts + beta * R * m.top_k * (
            gi * h + 2 * fe1 + act_out + glu_out * fe + 2 * h)
        if m.shared_experts and "shared_experts" not in mods:
            fs = m.shared_experts * m.ffn_hidden
            ffn_b = ffn_b + 2 * T * fs * (2 if model.gated else 1) / tp + (gi + glu_out) * T * fs / tp
    elif "mlp" in mods:  # the checkpointed MLP keeps its input only
        ffn_b = norm_out * gi * rows * h
    else:
        fc1_out = 2 * T * f1 / tp if model.gated else act_in * T * f1 / tp
        ffn_b = norm_out * gi * rows * h + fc1_out + (gi + glu_out) * T * f / tp
    total = attn + ffn_b
    if attention == "classic":
        if recompute != "selective":
            total = total + (2 + 3 * drop) * b * a * s_q * s_kv
    else:
        total = total + 4.0 * b * a * s_q
    return total


def op_sac_activation_bytes(work: Any, rows: Any, hidden: Any) -> Any:
    """Bytes one layer keeps for its backward under PyTorch selective activation checkpointing
    with torchtitan's per-op policy (:func:`xlayer.workload.training_ops.op_sac_split`): the
    block's input (2·rows·h, the checkpoint's input) and the outputs the policy saves — every
    saved GEMM's 16-bit output (2·m·n·batch), each attention kernel's output and log-sum-exp
    (2·heads·s_q·d + 4·heads·s_q) and the outputs of the saved collectives (an all-to-all's
    received tokens, a reduce-scatter's 2·rows·h). The re-run operators' outputs exist only
    while their layer's backward runs (one layer's full set, added at the step's peak)."""
    _, saved = op_sac_split(work)
    out = 2.0 * rows * hidden
    for op in saved:
        if op.kind == "attention":
            out = out + 2.0 * op.heads * op.seq_q * op.head_dim + 4.0 * op.heads * op.seq_q
        else:
            out = out + 2.0 * op.m * op.n * op.batch
    for c in work.fwd_comms:
        if c.collective == "all_to_all":
            out = out + c.bytes
        elif c.collective == "reduce_scatter":
            out = out + 2.0 * rows * hidden
    return out


def inflight_chunks(pp: Any, vp: Any, microbatches: Any) -> Any:
    """Model chunks whose activations pipeline rank 0 holds at its peak.

    1F1B: min(m, p) micro-batches of L/p layers. Interleaved (v > 1): Megatron-LM warms up
    2(p−1) + (v−1)·p chunks, then holds one more: min(m·v, v·p + p − 1) chunks of L/(p·v)
    layers (Korthikanti 2022 §4.2.3: the factor 1 + (p−1)/(p·v))."""
    one_f_one_b = np.minimum(microbatches, pp)
    interleaved = np.minimum(microbatches * vp, vp * pp + pp - 1)
    out = np.where(vp > 1, interleaved, one_f_one_b)
    return out if np.ndim(out) else int(out)


def inflight_chunks_on_rank(pp: Any, vp: Any, microbatches: Any, rank: Any) -> Any:
    """Model chunks whose activations pipeline rank ``rank`` holds at its peak (Megatron-LM
    schedules): 1F1B min(m, p − r) micro-batches (of one chunk = all its layers);
    interleaved min(m·v, 2(p − r − 1) + (v − 1)·p + 1) chunks — rank 0 holds v·p + p − 1,
    the last rank (v − 1)·p + 1."""
    one_f_one_b = np.minimum(microbatches, pp - rank) * vp  # in chunk units (v = 1: one chunk)
    interleaved = np.minimum(microbatches * vp, 2 * (pp - rank - 1) + (vp - 1) * pp + 1)
    out = np.where(vp > 1, interleaved, one_f_one_b)
    return out if np.ndim(out) else int(out)


def logits_activation_bytes(model: ModelSpec, b: Any, tp: Any, cp: Any, saved: Any = None) -> Any:
    """Last stage, one micro-batch: the cross entropy's bytes per logit at the loss-backward
    peak times T·V/t: 4 for fused kernels (Megatron's vocab-parallel cross entropy keeps the
    fp32 softmax and writes the gradient into it), ``saved.logits_peak_bytes`` for the stack
    (:class:`xlayer.mapping.profiles.SavedActivations`; eager PyTorch 14)."""
    per_logit = 4.0 if saved is None else saved.logits_peak_bytes
    return per_logit * b * model.seq_len / cp * model.vocab / tp


def communication_buffer_bytes(model: ModelSpec, b: Any, tp: Any, cp: Any, sp: bool, dp: Any) -> Any:
    """Gathered SP activation (2·T·h when SP) plus one 40 MB data-parallel bucket
    (Megatron-LM's default ``bucket_size``) when dp > 1."""
    T = b * model.seq_len / cp
    gather = 2.0 * T * model.hidden if sp else 0.0
    bucket = np.where(dp > 1, 40e6, 0.0)
    out = gather + bucket
    return out if np.ndim(out) else float(out)
