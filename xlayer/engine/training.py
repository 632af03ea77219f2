"""One training iteration: time and memory per accelerator, with a breakdown.

``evaluate_training`` is the single composition of the cost model. It accepts the numeric
layout fields (tp, pp, dp, cp, vp, micro) as Python ints *or* numpy arrays of equal length,
so the scalar path (``predict_training``: one layout, rich result) and the vectorized path
(``xlayer.explore``: many layouts) share every formula.

Iteration time = pipeline (steady state + bubble) + exposed data-parallel communication +
optimizer step. Every term is named after the function that computed it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from xlayer.cost.collectives import collective_time_s, ranks_in_domain
from xlayer.cost.compute import calibration, op_time
from xlayer.cost.memory import (FP32_OPTIMIZER_BYTES, OPTIMIZER_BYTES, WEIGHT_BYTES, communication_buffer_bytes,
                                inflight_chunks, inflight_chunks_on_rank, layer_activation_bytes, op_sac_activation_bytes,
                                logits_activation_bytes, model_state_bytes)
from xlayer.cost.pipeline import pipeline_time_s
from xlayer.engine.result import CostDetail, IterationCost, LayerKind, LayerTimes, MemoryTerms, StageTimes
from xlayer.hardware.spec import System
from xlayer.mapping.layout import layers_on_first_rank, layers_on_last_rank, layers_on_middle_rank
from xlayer.workload.model import ModelSpec
from xlayer.workload.precision import gemm_precision
from xlayer.workload.operators import ACT_BYTES, gemm
from xlayer.workload.training_ops import (_gemm_bwd, embedding_work, layer_work, logits_work,
                                          model_flops_per_iteration, recompute_ops)


def optimizer_step_bytes_per_param(precision: str, stack_bytes: float | None = None) -> float:
    """HBM bytes per parameter of a Megatron-LM mixed-precision Adam step (fp32 main grads
    and master weights), kernel by kernel: unscale + inf check 4 r + 4 w (fp16 loss scaling
    only), grad-norm 4 r, fused Adam 28 (grad 4 r, master 4 r/w, m 4 r/w, v 4 r/w), copy to
    16-bit weights 4 r + 2 w, zero the grad buffer 4 w: 50 B (fp16) or 42 B (bf16/fp8).
    ``stack_bytes``: the stack profile's optimizer step instead of the 42 B (plain PyTorch's
    ``torch.optim.AdamW``: 80 B, :class:`xlayer.mapping.profiles.StackProfile`), fp16 loss
    scaling's unscale still added."""
    base = 42.0 if stack_bytes is None else float(stack_bytes)
    return base + (8.0 if precision == "fp16" else 0.0)




@dataclass(frozen=True)
class Recipe:
    """Choices the case may leave open, with the reason each default was taken.

    ``grad_bytes``: bytes per element of the gradient buffer and of the data-parallel
    reduction (4: fp32 accumulation; 2: bf16, Megatron-Core ``grad_reduce_in_fp32=False``).
    The stack-profile terms (:mod:`xlayer.mapping.profiles`): ``kernel_floor_s`` per kernel
    (None: the part's catalog ``kernel_overhead_s``), ``host_dispatch_s`` per kernel in eager
    mode (None: the host never bounds the step), ``p2p_per_microbatch`` blocking pipeline
    transfers per micro-batch and chunk."""

    attention: str
    dropout: float
    notes: tuple[str, ...] = ()
    grad_bytes: float = 4.0
    profile: str = "megatron-lm"
    kernel_floor_s: float | None = None
    host_dispatch_s: float | None = None
    p2p_per_microbatch: float = 2.0
    fused_bias_grad: bool = False
    tp_comm_overlap: bool = False
    # MoE communication overlap (Megatron-Core; off unless the case turns it on):
    # ``ep_overlap`` = --overlap-moe-expert-parallel-comm (combined 1F1B: one micro-batch's
    # dispatch/combine all-to-alls under the adjacent micro-batch's compute);
    # ``shared_expert_overlap`` = --moe-shared-expert-overlap (the shared experts run during the
    # dispatch and combine of their own layer)
    ep_overlap: bool = False
    shared_expert_overlap: bool = False
    moe_host: Any = None  # the profile's MoEHostCost (xlayer.mapping.profiles), None: not modelled
    saved: Any = None  # the profile's SavedActivations (xlayer.mapping.profiles), None: fused kernels
    eager_modules: bool = False  # the profile's eager_llama_elementwise
    optimizer_bytes: float | None = None  # the profile's optimizer_step_bytes_per_param (None: Megatron's)
    eager_gelu_new: bool = False  # the profile's eager_gelu_new
    step_memory: Any = None  # the profile's StepMemory (xlayer.mapping.profiles), None: persistent states
    eager_loss: bool = False  # the profile's eager_cross_entropy
    autograd_ops: Any = None  # the profile's eager_autograd_ops_per_layer, None: one per fused operator
    param_gather_in_forward: bool = False  # the profile's (Megatron-Core overlap_param_gather)
    dp_bucket: tuple[float, float] | None = None  # the profile's (min params, params per rank) of a bucket
    selective_policy: str = "core_attention"  # the profile's: what recompute=selective re-runs
    default_recompute: str = "none"  # the profile's recompute (None there: none)


def recipe_for(model: ModelSpec, precision: str, framework: Any = None, version: str | None = None,
               mode: str | None = None, ep_overlap: bool = False, shared_expert_overlap: bool = False) -> Recipe:
    """Attention kernel, dropout, gradient dtype and the stack profile's kernel terms when the
    case does not state them. ``framework`` is a framework name or a case's ``software``
    section (its framework, version and mode are then used).

    fp16 mixed precision (loss scaling) is the Megatron-LM/DeepSpeed recipe of 2020–22,
    which used the fused-softmax ("classic") attention and dropout 0.1; bf16/fp8 recipes
    use flash attention and, like Llama, no dropout."""
    from xlayer.mapping.profiles import FUSED_SAVED, profile_for

    if framework is not None and not isinstance(framework, str):
        framework, version, mode = framework.framework, framework.version, framework.mode
    prof, why = profile_for(framework, version, mode)
    notes = [why]
    fw = (framework or "").lower()
    grad_bytes = prof.grad_reduce_bytes if precision != "fp32" else 4.0
    if grad_bytes == 2.0:
        notes.append(f"gradients reduced in 16 bits ({fw or prof.name}: {prof.file}, grad_reduce_bytes)")
    # the fp16 recipe of 2020-22 (fused-softmax attention, dropout 0.1) is Megatron-LM's and
    # DeepSpeed's; plain PyTorch stacks run F.scaled_dot_product_attention, whose flash kernel
    # takes fp16 as it takes bf16 (torch/nn/functional.py, sdp_utils.cpp: fp16 and bf16 inputs)
    from xlayer.mapping.stack import family
    legacy = precision == "fp16" and family(prof.frameworks[0]) != "other"
    attention = model.attention
    if attention is None:
        attention = "classic" if legacy else "flash"
        why_attn = "fp16 recipe of 2020-22" if legacy else (
            "scaled_dot_product_attention's flash kernel" if precision == "fp16" else "bf16/fp8 recipe")
        notes.append(f"model.attention={attention} ({why_attn})")
    dropout = model.dropout
    if dropout is None:
        dropout = 0.1 if legacy else 0.0
        notes.append(f"model.dropout={dropout} ({'GPT-3/Megatron recipe' if legacy else 'no dropout, as Llama'})")
    tp_ub = prof.tp_comm_overlap and precision not in prof.tp_comm_overlap_off
    if tp_ub:
        notes.append(f"tensor-parallel collectives overlapped with their GEMMs when sp ({prof.name}: {prof.file}, "
                     "tp_comm_overlap)")
    if prof.saved_activations != FUSED_SAVED:
        notes.append(f"saved activations as the {prof.name} modules keep them ({prof.file}, saved_activations: "
                     f"loss {prof.saved_activations.logits_peak_bytes:g} B per logit)")
    if prof.selective_policy == "op_sac":
        notes.append(f"recompute=selective means {prof.name}'s per-op selective checkpointing: every second matmul "
                     f"and the element-wise kernels re-run ({prof.file}, selective_policy)")
    if ep_overlap:
        notes.append("parallel.ep_overlap: EP all-to-alls under the adjacent micro-batch's compute (Megatron-Core "
                     "combined 1F1B, --overlap-moe-expert-parallel-comm)")
    if shared_expert_overlap:
        notes.append("parallel.shared_expert_overlap: shared experts run during their layer's dispatch and combine "
                     "(Megatron-Core --moe-shared-expert-overlap)")
    return Recipe(attention, dropout, tuple(notes), grad_bytes, prof.name, prof.kernel_floor_s,
                  prof.host_dispatch_s, prof.p2p_per_microbatch, prof.fused_bias_grad, tp_ub,
                  bool(ep_overlap), bool(shared_expert_overlap), prof.moe_host, prof.saved_activations,
                  prof.eager_llama_elementwise, prof.optimizer_step_bytes_per_param, prof.eager_gelu_new,
                  prof.step_memory, prof.eager_cross_entropy, prof.eager_autograd_ops_per_layer,
                  prof.param_gather_in_forward,
                  (prof.dp_bucket_min_params, prof.dp_bucket_params_per_rank)
                  if prof.dp_bucket_min_params else None,
                  prof.selective_policy, prof.recompute or "none")


@dataclass(frozen=True)
class StepPeak:
    """The two candidate peaks of :func:`step_peak_bytes` and the terms only they have."""

    total: Any
    backward_start: Any
    optimizer_step: Any
    optimizer_temp: Any = 0.0
    head_grad: Any = 0.0
    workspace: float = 0.0
    per_step: bool = False  # states allocated per step (StepMemory), else persistent all step
    weights_transient: bool = False  # the weights term is per-step copies (autocast)
    ddp_buckets: Any = 0.0  # DDP's persistent all-reduce buckets (a copy of the gradients)


def step_peak_bytes(states: dict[str, Any], held: Any, has_loss: Any, head_params: Any, precision: str,
                    recipe: Recipe, ddp: Any = False) -> StepPeak:
    """Peak bytes of a training step on one rank: model ``states`` (weights, gradients,
    optimizer: :func:`xlayer.cost.memory.model_state_bytes`) and the ``held`` activations and
    buffers at the backward's start.

    Megatron-style stacks (``recipe.step_memory`` None) keep every state all step: the sum.
    A stack that allocates them per step (:class:`xlayer.mapping.profiles.StepMemory`) peaks
    either at the backward's start — persistent states, the per-step weight copies, every
    activation, and the output layer's gradient, the first one autograd allocates (on the rank
    with the loss, ``head_params`` = V·h/t) — or in the optimizer step — persistent states,
    every gradient, the optimizer's temporary (sharded as its states are), no activation. In
    between, each layer's backward frees its activations and allocates its gradients, so the
    live total moves monotonically between the two ends; the BLAS workspace is added once, and
    under unsharded data parallelism (``ddp``: dp > 1, zero 0) DDP's persistent buckets, a
    copy of every gradient."""
    sm = recipe.step_memory
    w, g, o = states["weights"], states["gradients"], states["optimizer"]
    ws = sm.library_workspace_bytes if sm is not None else 0.0
    if sm is None or not sm.grads_freed_each_step:
        total = w + g + o + held + ws
        return StepPeak(total, total, total, workspace=ws)
    o_per_param = float(FP32_OPTIMIZER_BYTES if precision == "fp32" else OPTIMIZER_BYTES)  # model_state_bytes'
    temp = o * sm.optimizer_temp_bytes_per_param / o_per_param
    transient = sm.working_weights_transient and precision != "fp32"  # no autocast copies in fp32
    buckets = _where(ddp, g, 0.0) * float(sm.ddp_bucket_copy)
    persistent = o + (0.0 if transient else w) + buckets
    head_grad = _where(has_loss, head_params * recipe.grad_bytes, 0.0)
    backward_start = persistent + (w if transient else 0.0) + held + head_grad + ws
    optimizer_step = persistent + g + temp + ws
    return StepPeak(np.maximum(backward_start, optimizer_step), backward_start, optimizer_step, temp, head_grad,
                    ws, per_step=True, weights_transient=transient, ddp_buckets=buckets)


def host_bounded_s(gpu_s, kernels, recipe: Recipe):
    """Time of ``kernels`` kernels issued by an eager host: the GPU runs ahead of the host
    (CUDA launches are asynchronous), so a run of kernels takes max(GPU time, kernels ×
    host_dispatch_s). Applied per layer and direction (forward, backward, recompute): a
    backward cannot be issued before the forward of the same micro-batch has been."""
    if not recipe.host_dispatch_s:
        return gpu_s
    return np.maximum(gpu_s, kernels * recipe.host_dispatch_s)


def eager_host_ops(work, model: ModelSpec, recompute: str, autograd_ops=None,
                   rc_ops: list | None = None, selective_policy: str = "core_attention") -> tuple[float, float, float]:
    """Host dispatches of one layer's forward, backward and recomputed forward in eager mode.
    Counted per fused operator, or where the profile traced the layer family
    (``autograd_ops``: ``eager_autograd_ops_per_layer``, dense layers) as the aten ops autograd issues: every op
    of a forward with grad recording, views included, and of its backward. Under full
    recompute (``torch.utils.checkpoint``) the first forward runs without grad — its kernels
    only — and the forward re-run inside the backward records the graph. ``rc_ops``: the
    recomputed operators when the caller has them (default: :func:`recompute_ops`). Selective
    checkpointing with the ``op_sac`` policy (torchtitan) records the graph in the first forward
    and replays the whole block forward, with grad, in the backward (``early_stop=False``): the
    traced forward count twice."""
    if rc_ops is None:
        rc_ops, _ = recompute_ops(work, recompute, selective_policy)
    counts = (autograd_ops or {}).get("gated" if model.gated else "plain")
    if counts is None or any(op.name == "permute" for op in work.fwd):
        return float(len(work.fwd)), float(len(work.bwd)), float(len(rc_ops))
    fwd, bwd = float(counts[0]), float(counts[1])
    if recompute == "full":
        return float(len(work.fwd)), bwd, fwd
    if recompute == "selective" and selective_policy == "op_sac":
        return fwd, bwd, fwd
    return fwd, bwd, float(len(rc_ops))


def _where(cond, a, b):
    if not (isinstance(cond, np.ndarray) or isinstance(a, np.ndarray) or isinstance(b, np.ndarray)):
        return float(a if cond else b)  # the scalar path (one layout)
    out = np.where(cond, a, b)
    return out if np.ndim(out) else float(out)


def overlapped_exposed_s(comm_s, compute_s, acc):
    """Time a collective adds when it runs concurrently with ``compute_s`` of kernels.

    The part longer than the compute is exposed; during the overlap the collective's NCCL
    kernels occupy ``nccl_ctas`` SMs (one CTA per channel; 24 seen on an H100 in an Nsight
    trace, calibration.yaml), so the concurrent compute runs on the other SMs and stretches
    by overlap · ctas/SMs:  max(0, c − t) + min(c, t) · ctas / SMs."""
    ctas = calibration().nccl_ctas if acc.comm_compute_units is None else acc.comm_compute_units
    frac = min(1.0, ctas / acc.compute_units)
    return np.maximum(0.0, comm_s - compute_s) + np.minimum(comm_s, compute_s) * frac


def moe_host_exposed_s(host, g_before, g_after, g_bwd, local_experts, precision: str, grace: bool,
                       biased: bool = False):
    """Host time an MoE layer adds to one micro-batch (forward, backward) when the host issues
    its operations one by one (``host``: the profile's MoEHostCost, counts and time per op).

    The dispatcher waits for the GPU once per layer forward, before the dispatch all-to-all
    (Megatron-Core MoEAlltoAllTokenDispatcher), so forward issue restarts from an idle GPU
    each layer. With the forward split there into A (attention, router, preprocess; GPU time
    g_A, host h_A) and B (all-to-alls, experts, combine; g_B, h_B), a period of the two-stage
    host → GPU pipeline is max(g_A + max(h_B, g_B), h_A + h_B): after the wait the GPU runs B
    as fast as the host issues it, and the next layer's A is issued while B finishes. The
    backward has no wait, so the host runs ahead and bounds it only when slower:
    max(g_bwd, h_bwd). Returned: the two excesses over the GPU time (≥ 0).

    h = op_s · ops; ops: fwd_before_sync; fwd_after_sync + 2·(GroupedLinear fixed + L ·
    per-expert ops of the GEMM precision); backward bwd_fixed + 2·(fixed + L · per-expert) +
    L · hooks (L = local experts = E/ep); ``biased`` experts add the fc2-bias loop after the
    sync (bias_fwd_fixed + L · bias_fwd_per_expert, and its autograd backward likewise). Not
    counted: operators a recompute re-issues."""
    op_s = host.op_s["grace" if grace else "x86"]
    pf = host.grouped_linear_fwd_per_expert.get(precision, host.grouped_linear_fwd_per_expert["bf16"])
    pb = host.grouped_linear_bwd_per_expert.get(precision, host.grouped_linear_bwd_per_expert["bf16"])
    h_a = op_s * host.fwd_before_sync
    h_b = op_s * (host.fwd_after_sync + 2.0 * (host.grouped_linear_fwd_fixed + local_experts * pf))
    h_bwd = op_s * (host.bwd_fixed + 2.0 * (host.grouped_linear_bwd_fixed + local_experts * pb)
                    + local_experts * host.bwd_hooks_per_expert)
    if biased:
        h_b = h_b + op_s * (host.bias_fwd_fixed + local_experts * host.bias_fwd_per_expert)
        h_bwd = h_bwd + op_s * (host.bias_bwd_fixed + local_experts * host.bias_bwd_per_expert)
    period = np.maximum(g_before + np.maximum(h_b, g_after), h_a + h_b)
    fwd_extra = period - (g_before + g_after)
    bwd_extra = np.maximum(0.0, h_bwd - g_bwd)
    return fwd_extra, bwd_extra


def combined_1f1b_fraction(m, pp, vp):
    """Share of a rank's forward/backward layer passes that Megatron-Core's combined 1F1B
    schedule pairs (the forward of one micro-batch co-scheduled with the backward of another,
    megatron/core/pipeline_parallel/combined_1f1b.py): without pipelining every pass but the
    first forward and the last backward, (m − 1)/m; interleaved, the steady-state chunks of
    rank 0, max(0, m·v − w)/(m·v) with w = 2(p − 1) + (v − 1)·p warm-up chunks (the schedule
    needs vp > 1 when pp > 1; 1F1B without interleaving is not paired: 0)."""
    warm = 2.0 * (pp - 1) + (vp - 1) * pp
    inter = np.maximum(0.0, m * vp - warm) / np.maximum(m * vp, 1.0)
    f = np.where(pp == 1, (m - 1.0) / np.maximum(m, 1.0), np.where(vp > 1, inter, 0.0))
    return f if np.ndim(f) else float(f)


def combined_1f1b_saving_s(ep_s, compute_s, m, pp, vp, ep, recompute, acc):
    """Time per layer and micro-batch that combined 1F1B hides: in a paired pass the
    dispatch/combine all-to-alls of both directions (``ep_s``) run under the other
    micro-batch's compute (``compute_s``, forward + backward of the layer), exposed only by
    :func:`overlapped_exposed_s`; the unpaired passes keep them. Not with ep = 1 or full
    recompute (Megatron-Bridge refuses the combination; xlayer.prediction.case checks it)."""
    f = combined_1f1b_fraction(m, pp, vp)
    ok = (ep > 1) & (recompute != "full") if np.ndim(ep) else (ep > 1 and recompute != "full")
    saving = f * (ep_s - overlapped_exposed_s(ep_s, compute_s, acc))
    return np.where(ok, saving, 0.0) if np.ndim(saving) or np.ndim(ok) else (saving if ok else 0.0)


def layer_kinds(model: ModelSpec) -> list[tuple[float, str, Any]]:
    """(fraction of the layers, FFN kind, attention window or None) of the model's layer kinds:
    dense or MoE FFN (``moe.dense_layers`` leading dense layers) × full or sliding-window
    attention (``sliding_window.layers`` of them), taken as independent (GPT-OSS alternates
    window and full layers, all MoE)."""
    f_dense = 1.0 if model.moe is None else model.moe.dense_layers / model.layers
    sw = model.sliding_window
    f_win = 0.0 if sw is None else sw.layers / model.layers
    out = []
    for ffn, f in (("dense", f_dense), ("moe", 1.0 - f_dense)):
        for window, g in ((None, 1.0 - f_win), (None if sw is None else sw.size, f_win)):
            if f * g > 0:
                out.append((f * g, ffn, window))
    return out


def layer_params_rank(model: ModelSpec, tp, ep=1, etp=1):
    """(non-expert, expert) parameters of an average layer on one rank: attention and dense
    FFN matrices split over tp, norms replicated; an MoE layer's router replicated, shared
    experts split over tp, routed experts over ep·etp (each rank holds E/ep experts, each
    split over etp)."""
    norms = model.norm_params()
    attn = model.attention_params_rank(tp)
    if model.moe is None:
        return attn + model.expert_params() / tp + norms, 0.0
    m = model.moe
    f_moe = model.moe_layers / model.layers
    dense_ffn = (1.0 - f_moe) * model.expert_params() / tp
    moe_dense = f_moe * (model.hidden * m.experts + m.shared_experts * model.expert_params(m.ffn_hidden) / tp)
    expert = f_moe * m.experts * model.expert_params(m.ffn_hidden) / (ep * etp)
    return attn + norms + dense_ffn + moe_dense, expert


def params_per_rank(model: ModelSpec, tp, pp, vp, rank: str, ep=1, etp=1):
    """Parameters held by the first or the last pipeline rank.

    Layer matrices and their biases are split over tp, norms are replicated. The first rank
    holds the token embedding V·h/t (+ learned positions s·h); the last rank holds the final
    norm and the output layer V·h/t (Megatron keeps a copy of a tied embedding there); with
    pp = 1 one rank holds both (a tied output layer adds nothing)."""
    n_layers = layers_on_first_rank(model.layers, pp, vp) if rank == "first" else \
        layers_on_last_rank(model.layers, pp, vp)
    per_layer = sum(layer_params_rank(model, tp, ep, etp))
    tok = model.vocab * model.hidden / tp
    pos = model.seq_len * model.hidden if model.position == "learned" else 0
    final_norm = model.output_params() - (0 if model.tied_embeddings else model.vocab * model.hidden)
    head = final_norm + tok
    if rank == "first":
        single = final_norm + (0 if model.tied_embeddings else tok)
        return n_layers * per_layer + tok + pos + _where(pp == 1, single, 0.0)
    return n_layers * per_layer + _where(pp > 1, head, 0.0)


# The operators of a layer kind and their times depend only on these inputs, not on pp, dp, vp,
# the recompute mode or the ZeRO stage; a search evaluates the same rows under several of those,
# so the last few results are kept (keyed by value: arrays by their bytes).
_OPS_CACHE: dict = {}


def _ops_key(model, acc, micro, tp, sp, cp, gp, recipe, ffn, ep, etp, window, floor):
    def arr(x):
        return (x.dtype.str, x.shape, x.tobytes()) if isinstance(x, np.ndarray) else x
    if not any(isinstance(x, np.ndarray) for x in (micro, tp, cp, ep, etp)):
        return None  # scalar calls are cheap; keep them free of the cache
    return (id(model), id(acc), arr(micro), arr(tp), bool(sp), arr(cp), gp, recipe.attention,
            recipe.dropout, recipe.fused_bias_grad, recipe.tp_comm_overlap, recipe.eager_modules, recipe.eager_gelu_new, ffn, arr(ep), arr(etp), window, floor, id(calibration()))


def evaluate_training(model: ModelSpec, system: System, precision: str, global_batch: int,
                      tp, pp, dp, cp, vp, micro, sp: bool, recompute: str, zero: int,
                      dp_overlap: bool, recipe: Recipe, detail: bool = False,
                      tp_overlap: bool = True, algorithm: str = "backprop",
                      backlink_layers: int = 0, offload_layers: int = 0, ep=1, etp=1) -> IterationCost:
    """Time and memory of one iteration (formulas in the module docstrings of xlayer.cost).

    ``algorithm="local"`` treats each pipeline stage as a local module (local learning,
    Belilovsky 2020 / Wang 2021; BackLink, Guo 2022): every stage but the last gets an
    auxiliary LM head (final norm + logits + loss, the cost of ``logits_work``), runs its
    backward right after its forward (no backward locking), and so holds the activations of
    one micro-batch; the pipeline only fills through the forward chain:
    T = m·R_max + (p−1)·F_mean. ``backlink_layers`` = p > 0 adds BackLink: the gradient of
    stage k+1's loss runs back through the last p layers of stage k (one more backward of p
    layers per micro-batch, a gradient send back, and those p layers' activations held for a
    second micro-batch)."""
    local = algorithm == "local"
    acc = system.accelerator
    D = system.job_domain_size
    up, out = system.scale_up, system.scale_out
    gp = gemm_precision(precision)
    m = global_batch // (micro * dp)

    tp_in = ranks_in_domain(tp, 1, D)
    # expert rank order (Megatron-Core): etp fastest, then ep, then expert data parallel
    floor = recipe.kernel_floor_s  # the stack profile's per-kernel floor (None: the catalog's)
    groups = {"tp": (tp, tp_in), "ep": (ep, ranks_in_domain(ep, etp, D)), "etp": (etp, ranks_in_domain(etp, 1, D))}

    def comm_s(c):
        n, n_in = groups[c.group]
        return collective_time_s(c.collective, c.bytes, n, n_in, up, out)

    # context parallelism: K/V of the other cp ranks gathered (forward) and their gradients
    # reduce-scattered (backward), overlapped with the attention kernels
    cp_in = ranks_in_domain(cp, tp, D)
    T = micro * model.seq_len / cp
    kv_bytes = 2.0 * T * model.kv_dim / tp * ACT_BYTES * cp
    cp_f_raw = collective_time_s("all_gather", kv_bytes, cp, cp_in, up, out)
    cp_b_raw = 2.0 * cp_f_raw
    dpc = dp * cp
    dpc_in = ranks_in_domain(dpc, tp, D)
    dense_w, expert_w = layer_params_rank(model, tp, ep, etp)
    layer_w = dense_w + expert_w

    def layer_terms(work, times):
        """Per-layer times of one kind of layer (one micro-batch on one rank)."""
        rc_ops, rc_comms = recompute_ops(work, recompute, recipe.selective_policy)
        host_f_ops, host_b_ops, host_rc_ops = eager_host_ops(work, model, recompute, recipe.autograd_ops, rc_ops,
                                                             recipe.selective_policy)
        fwd_s = host_bounded_s(sum(times[op.name].time_s for op in work.fwd), host_f_ops, recipe)
        bwd_s = host_bounded_s(sum(times[op.name].time_s for op in work.bwd), host_b_ops, recipe)

        def tp_exposed(c):
            """A TP collective's exposed time: all of it, or what its paired GEMM does not hide."""
            x = comm_s(c)
            if c.overlap is not None and tp_overlap:
                x = overlapped_exposed_s(x, times[c.overlap].time_s, acc)
            return x

        def ep_exposed(comms, ops):
            """The layer's expert-parallel collectives; with shared-expert overlap they run
            beside the shared experts' kernels of the same direction (overlapped_exposed_s)."""
            raw = sum(comm_s(c) for c in comms if c.group != "tp")
            if not recipe.shared_expert_overlap:
                return raw
            shared = sum(times[op.name].time_s for op in ops if op.name.startswith("shared_"))
            return overlapped_exposed_s(raw, shared, acc)

        ep_f, ep_b = ep_exposed(work.fwd_comms, work.fwd), ep_exposed(work.bwd_comms, work.bwd)
        host_f = host_b = 0.0
        names = [op.name for op in work.fwd]
        if recipe.moe_host is not None and "permute" in names:  # an MoE layer under Megatron-Core
            i = names.index("permute")
            g_a = sum(times[op.name].time_s for op in work.fwd[:i])
            g_b = sum(times[op.name].time_s for op in work.fwd[i:]) + ep_f
            host_f, host_b = moe_host_exposed_s(recipe.moe_host, g_a, g_b, bwd_s + ep_b, model.moe.experts / ep, gp,
                                                acc.host_cpu == "grace", "expert_fc2_bias" in names)

        t = {"compute_fwd_s": fwd_s, "compute_bwd_s": bwd_s, "host_fwd_s": host_f, "host_bwd_s": host_b,
             "recompute_s": host_bounded_s(sum(times[op.name].time_s for op in rc_ops), host_rc_ops, recipe)
             if rc_ops else 0.0,
             "tp_fwd_s": sum(tp_exposed(c) for c in work.fwd_comms if c.group == "tp"),
             "ep_fwd_s": ep_f,
             "tp_bwd_s": sum(tp_exposed(c) for c in work.bwd_comms if c.group == "tp"),
             "ep_bwd_s": ep_b,
             "tp_recompute_s": sum(tp_exposed(c) for c in rc_comms) if rc_comms else 0.0,
             "rc_flops": sum(op.flops for op in rc_ops) if rc_ops else 0.0,
             "fwd_flops": sum(op.flops for op in work.fwd)}
        attn_f = sum(times[n].time_s for n in work.attention_core)
        attn_b = sum(times[o.name].time_s for o in work.bwd if o.name.split(".")[0] in work.attention_core)
        t["cp_fwd_s"] = _where(cp > 1, overlapped_exposed_s(cp_f_raw, attn_f, acc), 0.0)
        t["cp_bwd_s"] = _where(cp > 1, overlapped_exposed_s(cp_b_raw, attn_b, acc), 0.0)
        return times, rc_ops, t

    kinds = []
    for frac, ffn, window in layer_kinds(model):
        key = _ops_key(model, acc, micro, tp, sp, cp, gp, recipe, ffn, ep, etp, window, floor)
        hit = _OPS_CACHE.get(key) if key is not None else None
        if hit is not None and (hit[0] is not model or hit[1] is not acc):
            hit = None  # ids are only unique among live objects: the entry holds its own
        if hit is None:
            work = layer_work(model, micro, tp, sp, cp, gp, recipe.attention, recipe.dropout, ffn=ffn, ep=ep,
                              etp=etp, window=window, fused_bias_grad=recipe.fused_bias_grad,
                              tp_comm_overlap=recipe.tp_comm_overlap, eager_modules=recipe.eager_modules,
                              eager_gelu_new=recipe.eager_gelu_new)
            op_times = {op.name: op_time(op, acc, kernel_overhead_s=floor) for op in work.fwd + work.bwd}
            if key is not None:
                if len(_OPS_CACHE) >= 8:
                    _OPS_CACHE.pop(next(iter(_OPS_CACHE)))
                _OPS_CACHE[key] = (model, acc, work, op_times)
        else:
            work, op_times = hit[2], hit[3]
        times, rc_ops, t = layer_terms(work, op_times)
        kinds.append((frac, work, times, rc_ops, t))
    # the layer of the model: the layer kinds weighted by how many layers they are
    lay = {k: sum(frac * t[k] for frac, _, _, _, t in kinds) for k in kinds[0][4]}
    main = max(kinds, key=lambda x: x[0])
    work, times, rc_ops = main[1], main[2], main[3]
    fwd_s, bwd_s, recompute_s = lay["compute_fwd_s"], lay["compute_bwd_s"], lay["recompute_s"]

    # ZeRO-3 / FSDP: per layer, all-gather the 16-bit weights before forward and backward,
    # reduce-scatter the gradients after backward, each prefetched under the layer's compute
    if zero >= 3:
        ag = collective_time_s("all_gather", layer_w * WEIGHT_BYTES, dpc, dpc_in, up, out)
        rs = collective_time_s("reduce_scatter", layer_w * recipe.grad_bytes, dpc, dpc_in, up, out)
        fsdp_fwd_s = _where(dpc > 1, overlapped_exposed_s(ag, fwd_s, acc), 0.0)
        fsdp_bwd_s = _where(dpc > 1, overlapped_exposed_s(ag + rs, bwd_s, acc), 0.0)
    else:
        fsdp_fwd_s = fsdp_bwd_s = 0.0
    lay["fsdp_fwd_s"], lay["fsdp_bwd_s"] = fsdp_fwd_s, fsdp_bwd_s
    tp_fwd_s, tp_bwd_s, tp_rc_s = lay["tp_fwd_s"], lay["tp_bwd_s"], lay["tp_recompute_s"]
    cp_fwd_s, cp_bwd_s = lay["cp_fwd_s"], lay["cp_bwd_s"]
    ep_fwd_s, ep_bwd_s = lay["ep_fwd_s"], lay["ep_bwd_s"]
    if recipe.ep_overlap and model.is_moe:
        # combined 1F1B: what stays exposed of both directions' all-to-alls, split between them
        ep_both = ep_fwd_s + ep_bwd_s
        others = fwd_s + bwd_s + tp_fwd_s + tp_bwd_s + recompute_s + tp_rc_s + cp_fwd_s + cp_bwd_s
        keep = 1.0 - combined_1f1b_saving_s(ep_both, others, m, pp, vp, ep, recompute, acc) / np.maximum(ep_both, 1e-30)
        ep_fwd_s, ep_bwd_s = ep_fwd_s * keep, ep_bwd_s * keep
        lay["ep_fwd_s"], lay["ep_bwd_s"] = ep_fwd_s, ep_bwd_s

    host_fwd_s, host_bwd_s = lay["host_fwd_s"], lay["host_bwd_s"]
    layer_fwd_total = fwd_s + tp_fwd_s + cp_fwd_s + fsdp_fwd_s + ep_fwd_s + host_fwd_s
    layer_bwd_total = bwd_s + tp_bwd_s + recompute_s + tp_rc_s + cp_bwd_s + fsdp_bwd_s + ep_bwd_s + host_bwd_s

    # first/last stage extras
    emb_ops = embedding_work(model, micro, tp, cp)
    emb_s = host_bounded_s(sum(op_time(o, acc, kernel_overhead_s=floor).time_s for o in emb_ops), len(emb_ops), recipe)
    lf, lb = logits_work(model, micro, tp, cp, gp, recipe.eager_loss)
    logit_f = host_bounded_s(sum(op_time(o, acc, kernel_overhead_s=floor).time_s for o in lf), len(lf), recipe)
    logit_b = host_bounded_s(sum(op_time(o, acc, kernel_overhead_s=floor).time_s for o in lb), len(lb), recipe)
    # the vocab-parallel output layer all-reduces its loss statistics; the input-embedding
    # all-reduce over tp (sum of vocab shards) costs one activation all-reduce
    emb_comm = collective_time_s("all_reduce", T * model.hidden * ACT_BYTES, tp, tp_in, up, out)

    n_first = layers_on_first_rank(model.layers, pp, vp)
    n_last = layers_on_last_rank(model.layers, pp, vp)
    n_mid = layers_on_middle_rank(model.layers, pp, vp)
    per_layer = layer_fwd_total + layer_bwd_total
    extra_first = emb_s + emb_comm
    extra_last = logit_f + logit_b
    if model.mtp_layers:
        # multi-token prediction (DeepSeek-V3 §2.2): each MTP module on the last stage runs a
        # 2h → h projection, one transformer layer (the model's last kind) and the shared
        # output head with its loss, forward and backward
        proj = gemm("mtp_proj", T, 2 * model.hidden, model.hidden / tp, gp)
        proj_s = sum(op_time(o, acc, kernel_overhead_s=floor).time_s for o in [proj, *_gemm_bwd(proj)])
        last = kinds[-1][4]
        mtp_layer_s = sum(last[k] for k in ("compute_fwd_s", "compute_bwd_s", "tp_fwd_s", "tp_bwd_s",
                                            "ep_fwd_s", "ep_bwd_s", "cp_fwd_s", "cp_bwd_s", "host_fwd_s",
                                            "host_bwd_s"))
        extra_last = extra_last + model.mtp_layers * (proj_s + mtp_layer_s + logit_f + logit_b)
    # pipeline point-to-point: Megatron's scatter/gather sends 1/t of the activation per
    # tensor rank over its own link, then all-gathers it inside the TP group
    p2p_stride = tp * cp * dp
    p2p_in = ranks_in_domain(2, p2p_stride, D)
    act_bytes = T * model.hidden * ACT_BYTES
    p2p_one = collective_time_s("send_recv", act_bytes / tp, 2, p2p_in, up, out) + \
        (0.0 if sp else collective_time_s("all_gather", act_bytes, tp, tp_in, up, out))
    # blocking transfers per micro-batch and chunk: the stack profile's (Megatron 2, DeepSpeed 4)
    p2p_s = _where(pp > 1, recipe.p2p_per_microbatch * vp * p2p_one, 0.0)

    if local:  # forward sends only (+ BackLink's gradient send), an auxiliary head per stage
        p2p_s = _where(pp > 1, (2.0 if backlink_layers else 1.0) * p2p_one, 0.0)
        backlink_s = _where(pp > 1, backlink_layers * layer_bwd_total, 0.0)
        aux = _where(pp > 1, extra_last, 0.0) + backlink_s
    else:
        aux = backlink_s = 0.0
    # activation offloading (pp = 1): each offloaded layer's saved activations go to host memory
    # after its forward and come back before its backward, overlapped with that layer's own
    # compute; only the part longer than the compute is exposed
    # fp32 training keeps 4-byte activations (the formulas count 16-bit ones)
    act_scale = 2.0 if precision == "fp32" else 1.0
    sac = recompute == "selective" and recipe.selective_policy == "op_sac"
    rows_in = T / tp if sp else T
    act_layer = act_scale * sum(frac * (op_sac_activation_bytes(kind[1], rows_in, model.hidden) if sac else
                                        layer_activation_bytes(model, micro, tp, cp, sp, recompute, recipe.attention,
                                                               recipe.dropout, ffn, etp, gp, ep, recipe.saved))
                                for (frac, ffn, _), kind in zip(layer_kinds(model), kinds))
    if offload_layers:
        if acc.host_link_bytes_per_s is None:
            raise ValueError(f"{acc.name} has no host link in the catalog: activation offloading is not modelled")
        move_s = act_layer / acc.host_link_bytes_per_s
        offload_s = offload_layers * (np.maximum(0.0, move_s - layer_fwd_total) + np.maximum(0.0, move_s - layer_bwd_total))
    else:
        offload_s = 0.0
    r_first = n_first * per_layer + extra_first + _where(pp == 1, extra_last, 0.0) + p2p_s + aux + offload_s
    r_last = n_last * per_layer + _where(pp > 1, extra_last, 0.0) + p2p_s
    r_mid = _where(pp > 2, n_mid * per_layer + p2p_s + aux, 0.0)
    r_max = np.maximum(np.maximum(r_first, r_last), r_mid)
    r_mean = model.layers / pp * per_layer + (extra_first + extra_last) / pp + p2p_s + aux * (pp - 1) / pp
    if local:
        f_mean = model.layers / pp * layer_fwd_total + p2p_one
        pipe = pipeline_time_s(m, pp, 1, r_max, f_mean)
    else:
        pipe = pipeline_time_s(m, pp, vp, r_max, r_mean)

    # data-parallel gradient reduction and optimizer step on the busiest rank. Gradients are
    # reduced and ZeRO shards kept over dp·cp (Megatron-Core's data-parallel group "with
    # context parallel": the cp ranks see different tokens of the same sequences)
    p_first = params_per_rank(model, tp, pp, vp, "first", ep, etp)
    if local:  # the auxiliary head: its own V·h/t output layer and final norm
        p_first = p_first + _where(pp > 1, model.vocab * model.hidden / tp + 2 * model.hidden, 0.0)
    p_last = params_per_rank(model, tp, pp, vp, "last", ep, etp)
    p_mid = n_mid * layer_w
    p_rank = np.maximum(np.maximum(p_first, p_last), p_mid)
    # routed-expert parameters of the busiest rank reduce over the expert-data-parallel group
    # (tp·dp·cp/(ep·etp) ranks, stride ep·etp), the rest over dp·cp
    n_busy_layers = np.maximum(np.maximum(n_first, n_last), n_mid)
    p_expert = n_busy_layers * expert_w
    p_dense = p_rank - p_expert
    edp = tp * dp * cp // (ep * etp)
    edp_in = ranks_in_domain(edp, ep * etp, D)
    gb = recipe.grad_bytes

    bucket = recipe.dp_bucket if dp_overlap else None

    def bucketed_s(kind, nbytes, params, n, n_in):
        """One collective over the buffer, or (overlapped, bucketed stacks) one per bucket of
        max(min, per_rank·dp) parameters, each with the latency of its own size (Megatron-Core:
        bucket_size = max(4e7, 1e6·dp_group.size()), one size for the dense and the expert
        buffers, distributed_data_parallel.py L131-134 @d98e8a6)."""
        if bucket is None:
            return collective_time_s(kind, nbytes, n, n_in, up, out)
        nb = np.maximum(1.0, np.ceil(params / np.maximum(bucket[0], bucket[1] * dp)))
        return nb * collective_time_s(kind, nbytes / nb, n, n_in, up, out)

    def dp_sync_s(params, n, n_in, part="both"):
        if zero == 0:
            return bucketed_s("all_reduce", params * gb, params, n, n_in) if part != "gather" else 0.0
        if zero == 1:
            rs = bucketed_s("reduce_scatter", params * gb, params, n, n_in)
            ag = bucketed_s("all_gather", params * WEIGHT_BYTES, params, n, n_in)
            return {"both": rs + ag, "reduce": rs, "gather": ag}[part]
        if zero == 2:
            # partitioned gradients: no full gradient buffer to accumulate into, so every
            # micro-batch's gradients are reduce-scattered (DeepSpeed stage 2, Rajbhandari 2020 §5.2)
            return m * collective_time_s("reduce_scatter", params * gb, n, n_in, up, out) + \
                collective_time_s("all_gather", params * WEIGHT_BYTES, n, n_in, up, out)
        return 0.0 * params  # already paid per layer

    def dp_all_s(part="both"):
        return dp_sync_s(p_dense, dpc, dpc_in, part) + (dp_sync_s(p_expert, edp, edp_in, part) if model.is_moe else 0.0)

    dp_raw = dp_all_s()
    # overlapped: the reduce runs under the last micro-batch's backward (Megatron-Core
    # overlap_grad_reduce: a bucket is reduced once every micro-batch has added to it); with
    # param_gather_in_forward and ZeRO-1 the weight all-gather runs under the next iteration's
    # first forward instead (overlap_param_gather: distributed_data_parallel.py
    # _make_forward_pre_hook waits for a module's bucket and dispatches the next, Megatron-LM
    # @d98e8a6). One micro-batch's window each, also interleaved: the schedule launches a chunk's
    # reduce after that chunk's last backward, but NVIDIA's weak-scaling step times grow with dp
    # as if little more were hidden (docs/training-model.md, benchmarks/dgxc_weak_scaling.py)
    bwd_window = r_max - n_first * layer_fwd_total
    if dp_overlap and zero == 1 and recipe.param_gather_in_forward:
        dp_exposed = overlapped_exposed_s(dp_all_s("reduce"), bwd_window, acc) + \
            overlapped_exposed_s(dp_all_s("gather"), n_first * layer_fwd_total, acc)
    else:
        dp_exposed = overlapped_exposed_s(dp_raw, bwd_window, acc) if dp_overlap else dp_raw
    dp_exposed = _where(dpc > 1, dp_exposed, 0.0)
    # ZeRO-3: the embedding and output layer are gathered and their gradients reduce-scattered
    # once per micro-batch as well (on the rank that holds them; pp = 1: both)
    if zero >= 3:
        emb_w = model.vocab * model.hidden / tp * _where(pp == 1, 2.0 - model.tied_embeddings, 1.0)
        emb_g = collective_time_s("all_gather", emb_w * WEIGHT_BYTES, dpc, dpc_in, up, out) + \
            collective_time_s("reduce_scatter", emb_w * gb, dpc, dpc_in, up, out)
        fsdp_edges_s = _where(dpc > 1, m * emb_g, 0.0)
    else:
        fsdp_edges_s = 0.0 * pp
    # tied embeddings with pp > 1: the first and last stage hold copies of the word embedding
    # and all-reduce its fp32 gradient after the flush (Megatron-LM allreduce_word_embedding_grads)
    if model.tied_embeddings and not local:
        emb_bytes = model.vocab * model.hidden / tp * 4.0
        emb_sync = collective_time_s("all_reduce", emb_bytes, 2, p2p_in, up, out)
        embedding_sync_s = _where(pp > 1, emb_sync, 0.0)
    else:
        embedding_sync_s = 0.0 * pp
    opt_params = p_dense / (dpc if zero >= 1 else 1) + p_expert / (edp if zero >= 1 else 1)
    optimizer_s = opt_params * optimizer_step_bytes_per_param(precision, recipe.optimizer_bytes) \
        / acc.hbm.achievable_bytes_per_s

    iteration_s = pipe.steady_s + pipe.bubble_s + dp_exposed + fsdp_edges_s + embedding_sync_s + optimizer_s

    # memory of the first, a middle and the last pipeline rank; the largest is reported.
    # In flight (Megatron-LM schedules): 1F1B rank r holds min(m, p−r) micro-batches of its
    # layers; interleaved, rank r warms up 2(p−r−1) + (v−1)·p chunks and holds one more.
    logits_b = logits_activation_bytes(model, micro, tp, cp, recipe.saved)

    def held(rank, n_layers):
        if local:  # backward follows forward on the same stage: one micro-batch in flight
            return n_layers * act_layer
        chunks = inflight_chunks_on_rank(pp, vp, m, rank)
        return chunks * n_layers / vp * act_layer

    act_first = held(0, n_first - offload_layers)
    act_mid = _where(pp > 2, held(1, n_mid), 0.0)
    act_last = _where(pp > 1, held(pp - 1, n_last) + logits_b, 0.0)
    act_first = act_first + _where(pp == 1, logits_b, 0.0)
    if local:
        act_first = act_first + _where(pp > 1, logits_b + backlink_layers * act_layer, 0.0)
    act = np.maximum(np.maximum(act_first, act_mid), act_last)
    # the loss's share of the busiest rank's activations (shown as its own memory term)
    has_loss = (pp == 1) | (act_last >= act) | ((act_first >= act) & bool(local))
    logits_held = _where(has_loss, logits_b, 0.0)
    if recompute == "full" or sac:  # one layer's full set is alive while it is recomputed
        full_sets = [layer_activation_bytes(model, micro, tp, cp, sp, "none", recipe.attention, recipe.dropout,
                                            ffn, etp, gp, ep, recipe.saved) for _, ffn, _ in layer_kinds(model)]
        act = act + act_scale * np.maximum.reduce(np.broadcast_arrays(*full_sets)) if len(full_sets) > 1 \
            else act + act_scale * full_sets[0]
    chunks = inflight_chunks(pp, vp, m)
    states = model_state_bytes(p_dense, dpc, zero, precision, recipe.grad_bytes)
    if model.is_moe:
        st_e = model_state_bytes(p_expert, edp, zero, precision, recipe.grad_bytes)
        states = {k: states[k] + st_e[k] for k in states}
    if zero >= 3:  # the layer in flight and the prefetched one gathered, the layer's gradient unsharded
        # (layer_w: one layer of this rank, experts already split over ep·etp)
        emb_w = model.vocab * model.hidden / tp
        states["weights"] = states["weights"] + _where(dpc > 1, 2.0 * np.maximum(layer_w, emb_w) * WEIGHT_BYTES
                                                       + np.maximum(layer_w, emb_w) * gb, 0.0)
    buffers = communication_buffer_bytes(model, micro, tp, cp, sp, dpc)
    peak_mem = step_peak_bytes(states, act + buffers, logits_held > 0, model.vocab * model.hidden / tp, precision,
                               recipe, ddp=(dpc > 1) & (zero == 0))
    mem = peak_mem.total

    flops_model = model_flops_per_iteration(model, global_batch)
    world = tp * pp * dp * cp
    peak = acc.peak(gp)
    mfu = flops_model / (iteration_s * world * peak)
    # hardware FLOPs add the recomputed forward work (full: the whole layer forward, selective:
    # the classic attention core) to the model FLOPs, per layer, as the kernels run it
    hfu = mfu * (1.0 + lay["rc_flops"] / (3.0 * lay["fwd_flops"]))

    cost_detail = None
    if detail:
        edge_params = np.maximum(p_rank - n_busy_layers * layer_w, 0.0)
        edge = model_state_bytes(edge_params, dpc, zero, precision, recipe.grad_bytes)
        cost_detail = CostDetail(
            ops=times, work=work, recompute_ops=rc_ops,
            layer=LayerTimes(compute_fwd_s=fwd_s, compute_bwd_s=bwd_s, recompute_s=recompute_s,
                             tp_fwd_s=tp_fwd_s, tp_bwd_s=tp_bwd_s, tp_recompute_s=tp_rc_s,
                             cp_fwd_s=cp_fwd_s, cp_bwd_s=cp_bwd_s, ep_fwd_s=ep_fwd_s, ep_bwd_s=ep_bwd_s,
                             fsdp_fwd_s=fsdp_fwd_s, fsdp_bwd_s=fsdp_bwd_s, rc_flops=lay["rc_flops"],
                             fwd_flops=lay["fwd_flops"], host_fwd_s=host_fwd_s, host_bwd_s=host_bwd_s),
            kinds=tuple(LayerKind(frac, w, t) for frac, w, t, _, _ in kinds),
            stages=StageTimes(layers_first=n_first, layers_mid=n_mid, layers_last=n_last, rank_first_s=r_first,
                              rank_mid_s=r_mid, rank_last_s=r_last, rank_mean_s=r_mean, p2p_s=p2p_s,
                              embedding_s=extra_first, logits_s=extra_last, local_aux_s=aux, backlink_s=backlink_s),
            memory=MemoryTerms(weights=states["weights"], gradients=states["gradients"],
                               optimizer=states["optimizer"], activations=act, activations_first_rank=act_first,
                               activation_per_layer=act_layer, inflight_chunks=chunks, comm_buffers=buffers,
                               edge_states=edge["weights"] + edge["gradients"] + edge["optimizer"],
                               logits=logits_held, step=peak_mem),
            offload_s=offload_s, dp_raw_s=dp_raw, params_rank=p_rank,
            params_layers_rank=n_busy_layers * layer_w, flops_model=flops_model)
    return IterationCost(
        iteration_time_s=iteration_s, memory_bytes=mem, mfu=mfu, hfu=hfu, microbatches=m,
        layer_forward_time_s=layer_fwd_total, layer_backward_time_s=layer_bwd_total,
        layer_fwd_bwd_time_s=layer_fwd_total + layer_bwd_total, steady_s=pipe.steady_s,
        bubble_s=pipe.bubble_s, dp_exposed_s=dp_exposed, optimizer_s=optimizer_s,
        embedding_sync_s=embedding_sync_s, fsdp_edges_s=fsdp_edges_s, detail=cost_detail)

