"""Software-stack profiles: what a framework runs and chooses, as data
(``xlayer/data/stacks/*.yaml``, one file per framework family; docs/stacks.md lists every
number with its source).

A profile is selected by the case's ``software: {framework, version, mode}``
(:func:`profile_for`): the entries whose ``frameworks`` name the framework, then the one of
the stated ``mode`` (else the first), then the one whose ``versions`` contain the version
(entries without ``versions`` match any). A case without a ``software`` block, or with a
framework no file names, gets :data:`DEFAULT_PROFILE` (``megatron-lm``: the operator lists of
``xlayer.workload.operators`` are Megatron's fused layer), and the selection says so.

Fields (all per accelerator):

* ``host_dispatch_s``: host time to issue one kernel in eager mode (None: the host runs ahead
  of the GPU and never bounds the step — fused stacks at training shapes, or CUDA graphs);
* ``kernel_floor_s``: GPU-side fixed time per kernel added to its roofline time (None: the
  part's catalog ``kernel_overhead_s``);
* ``grad_reduce_bytes``: bytes per element of the gradient buffer and its data-parallel
  reduction (16-bit recipes; fp32 training always 4);
* ``dp_overlap``: the gradient reduce / parameter gather overlap compute by default;
* ``param_gather_in_forward``: with dp overlap and ZeRO-1, the 16-bit weights are all-gathered
  under the next iteration's forward (Megatron-Core ``overlap_param_gather``: a module's
  forward pre-hook waits for its bucket and dispatches the next one), not under the backward;
* ``dp_bucket_min_params`` / ``dp_bucket_params_per_rank``: the overlapped data-parallel
  collectives run per bucket of max(min, per_rank x group) parameters (Megatron-Core
  DistributedDataParallel's default bucket_size), each with its own per-step latency;
* ``optimizer_sharding``: the ZeRO stage taken when the case leaves it open and dp·cp > 1
  (None: no documented default, the fastest fitting stage is chosen);
* ``recompute``: the default activation recompute (None: the fastest fitting);
* ``low_precision_gemms``: GEMM classes that run in the case's FP8/FP4 format (the rest —
  the output layer, the router, the attention core — stay 16-bit);
* ``moe_kernel_table``: the framework's fused MoE layer timed from published measurements of
  its kernel (:mod:`xlayer.cost.measured_moe`) where the shape was measured;
* ``p2p_per_microbatch``: blocking pipeline transfers per micro-batch on a stage's critical
  path (Megatron batches send+recv: 2; DeepSpeed's TrainSchedule issues them one by one: 4);
* ``moe_host``: host-issued operations of a Megatron-Core MoE layer and the host time of one
  (:class:`MoEHostCost`): the dispatcher's once-per-layer wait for the GPU keeps the host from
  running ahead of an MoE layer's forward;
* ``logits_every_position``: a prompt's forward runs the output layer over every position
  (T rows, 16-bit logits) instead of the last one per sequence;
* ``eager_llama_elementwise``: a dense Llama-style layer's element-wise kernels are the Hugging
  Face modules' (RMSNorm's fp32 chain, RoPE by rotate_half, silu and mul) as counted on them;
* ``kv_cache``: how an eager-module layer (``eager_llama_elementwise``) updates its KV cache at
  inference: ``dynamic`` = transformers' DynamicCache, a ``torch.cat`` of the cached and the new
  tokens per layer and step (the whole cache read and written); ``static`` = a preallocated
  cache written in place at the new positions (transformers StaticCache ``index_copy_``,
  gpt-fast ``KVCache.update``), which a CUDA graph needs (captured shapes are fixed);
* ``eager_gelu_new``: a GELU layer's activation is Hugging Face's written-out tanh GELU (8
  kernels forward, 11 backward);
* ``eager_cross_entropy``: the loss runs as eager ``F.cross_entropy(logits.float(), y)`` (six
  kernels, 14 / 22 B per logit) instead of the fused vocab-parallel cross entropy;
* ``optimizer_step_bytes_per_param``: HBM bytes one optimizer step moves per parameter
  (None: Megatron's fused Adam, 42 B);
* ``saved_activations``: what the stack's modules keep for the backward where that differs
  from fused kernels (:class:`SavedActivations`: unfused RMSNorm and gated activation, the
  written-out tanh GELU, the cross-entropy's bytes per logit at the loss-backward peak);
* ``step_memory``: how a training step's model states live over the step where they are not
  Megatron's persistent buffers (:class:`StepMemory`: gradients freed by ``zero_grad``, the
  autocast weight copies, the optimizer's temporary, the BLAS workspace) — the allocator's peak.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, PositiveFloat, PositiveInt

from xlayer.safe_yaml import loads

STACKS_DIR = Path(__file__).resolve().parent.parent / "data" / "stacks"
DEFAULT_PROFILE = "megatron-lm"


class MoEHostCost(BaseModel):
    """Host-issued operations of one Megatron-Core MoE layer (alltoall dispatcher, TE
    GroupedLinear experts) and the host time of one: the dispatcher waits for the GPU once per
    MoE layer forward (the split sizes of its all-to-all), so the host cannot run ahead of it
    there (:func:`xlayer.engine.training.moe_host_exposed_s`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    op_s: dict[Literal["x86", "grace"], PositiveFloat]     # host time of one op, by host CPU
    fwd_before_sync: PositiveFloat     # attention block, pre-MLP norm, router, dispatcher preprocess, permute
    fwd_after_sync: PositiveFloat      # all-to-alls, chunk sorts, activation, unpermute, residual
    bwd_fixed: PositiveFloat           # the layer's backward outside the experts
    grouped_linear_fwd_fixed: NonNegativeFloat
    grouped_linear_bwd_fixed: NonNegativeFloat
    # per local expert and GroupedLinear call, by GEMM precision
    grouped_linear_fwd_per_expert: dict[str, PositiveFloat]
    grouped_linear_bwd_per_expert: dict[str, PositiveFloat]
    bwd_hooks_per_expert: NonNegativeFloat   # gradient hooks of the per-expert weights (backward)
    # biased experts (add_bias_linear): TEGroupedMLP._apply_bias adds the fc2 bias after the
    # experts' token-count sync in a Python loop over the local experts (split, t + b * p, cat,
    # to), aten ops forward and backward, fixed and per local expert
    bias_fwd_fixed: NonNegativeFloat = 0.0
    bias_fwd_per_expert: NonNegativeFloat = 0.0
    bias_bwd_fixed: NonNegativeFloat = 0.0
    bias_bwd_per_expert: NonNegativeFloat = 0.0


class SavedActivations(BaseModel):
    """What a stack's modules keep for the backward pass where it differs from fused kernels
    (Megatron-LM / Transformer Engine, the defaults; Korthikanti 2022 eq. 1-5 term by term).
    Bytes per element, per token (``xlayer.cost.memory.layer_activation_bytes``).

    * ``rmsnorm_input_bytes``: an RMSNorm keeps of its input; fused kernels keep the 16-bit
      input (2); the Hugging Face / Meta reference module ``x.float()``, ``pow``, ``mean``,
      ``rsqrt``, ``mul``, ``.to(bf16)``, ``weight *`` keeps the fp32 copy (4) and the 16-bit
      normalized tensor (2): 6.
    * ``glu_unfused``: a gated FFN as ``act(gate) * up`` (two ops) also keeps ``act``'s output
      (2·f more); fused SwiGLU kernels keep only the FC1 output.
    * ``gelu_input_bytes``: a non-gated activation keeps of its f-wide input: one op
      (``F.gelu``, fused bias-GELU) 2; the tanh formula written out (Hugging Face ``gelu_new``:
      pow, tanh, 0.5·x, 1 + tanh) 8.
    * ``logits_peak_bytes``: bytes per logit alive at the loss-backward peak of the last stage
      (Megatron's vocab-parallel cross entropy keeps its fp32 softmax and computes the
      gradient in place: 4; eager ``F.cross_entropy(logits.float(), y)`` with the 16-bit logits
      held by the caller: 2 + 4 (saved log-softmax) + 4 (its output gradient) + 4 (its input
      gradient) = 14)."""
    model_config = ConfigDict(frozen=True, extra="forbid")

    rmsnorm_input_bytes: float = Field(2.0, ge=2.0, le=8.0)
    glu_unfused: bool = False
    gelu_input_bytes: float = Field(2.0, ge=2.0, le=16.0)
    logits_peak_bytes: float = Field(4.0, ge=2.0, le=32.0)
    source: str = ""


FUSED_SAVED = SavedActivations()


class StepMemory(BaseModel):
    """The lifetime of a training step's model states in a stack that allocates them per step
    (None on a profile: Megatron's persistent main-gradient buffers and 16-bit weights, every
    state alive all step). The allocator's peak is then the larger of the backward's start —
    the forward's activations and the loss's logits still alive, the output layer's gradient
    the first one allocated — and the optimizer step — every gradient, no activation, the
    optimizer's temporary (``xlayer.engine.training``; checked on real modules by
    ``benchmarks/eager_memory.py: step_peak_bytes``).

    * ``grads_freed_each_step``: gradients exist from the backward to the optimizer step
      (``Optimizer.zero_grad(set_to_none=True)``, PyTorch's default since 2.0, frees them and
      autograd allocates each ``.grad`` as its layer's backward runs, while that layer's saved
      activations are freed);
    * ``working_weights_transient``: the 16-bit weights are per-step copies (``torch.autocast``
      casts each fp32 parameter for its op and autograd keeps the copy until that op's backward)
      and the persistent fp32 parameters are counted with the optimizer's states;
    * ``optimizer_temp_bytes_per_param``: a parameter-sized temporary of the optimizer step
      (``torch.optim.AdamW`` foreach: ``exp_avg_sq_sqrt = torch._foreach_sqrt(exp_avg_sqs)`` over
      every parameter at once, in the states' dtype: 4 B over fp32 parameters; torch 2.13
      ``optim/adam.py: _multi_tensor_adam``);
    * ``library_workspace_bytes``: BLAS workspaces the framework allocates through its caching
      allocator (PyTorch's cuBLAS workspace, ``CublasHandlePool.cpp``: 32 MiB on Hopper and
      Blackwell, pytorch/pytorch#89027 and #175344);
    * ``ddp_bucket_copy``: data parallelism without sharding (zero 0) keeps its all-reduce
      buckets as a persistent copy of every gradient (``DistributedDataParallel``'s default
      ``gradient_as_bucket_view=False``: "the saved memory size will be equal to the total
      gradients size" when it is True, torch/nn/parallel/distributed.py)."""
    model_config = ConfigDict(frozen=True, extra="forbid")

    grads_freed_each_step: bool = False
    working_weights_transient: bool = False
    optimizer_temp_bytes_per_param: NonNegativeFloat = 0.0
    library_workspace_bytes: NonNegativeFloat = 0.0
    ddp_bucket_copy: bool = False
    source: str = ""


class StackProfile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    frameworks: tuple[str, ...]
    mode: Literal["eager", "cuda-graph", "compiled"]
    versions: Optional[tuple[str, ...]] = None
    host_dispatch_s: Optional[PositiveFloat] = None
    kernel_floor_s: Optional[NonNegativeFloat] = None
    grad_reduce_bytes: float = Field(4.0, ge=2.0, le=4.0)
    dp_overlap: bool = False
    param_gather_in_forward: bool = False
    # with dp overlap, the data-parallel collectives run per bucket of
    # max(dp_bucket_min_params, dp_bucket_params_per_rank x group size) parameters, each paying
    # its own per-step latency (None: one collective over the whole buffer)
    dp_bucket_min_params: Optional[PositiveFloat] = None
    dp_bucket_params_per_rank: NonNegativeFloat = 0.0
    optimizer_sharding: Optional[int] = Field(None, ge=0, le=3)
    recompute: Optional[Literal["none", "selective", "full"]] = None
    # what ``recompute: selective`` re-runs in this stack: ``core_attention`` = Megatron's
    # (Korthikanti 2022 §5: QK^T, softmax, dropout, PV; nothing more under a flash kernel);
    # ``op_sac`` = PyTorch selective activation checkpointing with torchtitan's per-op policy
    # (xlayer.workload.training_ops.op_sac_split): the outputs of compute-intensive ops are
    # saved except every second plain matmul, everything else is re-run in the backward
    selective_policy: Literal["core_attention", "op_sac"] = "core_attention"
    low_precision_gemms: tuple[str, ...] = ()
    p2p_per_microbatch: PositiveFloat = 2.0
    # kernels an eager framework launches per decoder layer forward, by layer family (gated FFN
    # with RMSNorm and RoPE: Llama-style; plain FFN with LayerNorm: GPT-style); None: count the
    # model's fused operators
    eager_kernels_per_layer: Optional[dict[Literal["gated", "plain"], int]] = None
    # aten ops (views included) a decoder layer's forward and backward issue under autograd,
    # by layer family: with grad recording every op, a view too, costs the host a dispatch
    # (autograd builds a node and tracks the view), so a host-bound training layer takes
    # ops x host_dispatch_s per direction; None: one per fused operator
    eager_autograd_ops_per_layer: Optional[dict[Literal["gated", "plain"], tuple[PositiveInt, PositiveInt]]] = None
    # a gated MLP's gate and up projections run as one GEMM of width 2f/t (False: two GEMMs of
    # f/t each, e.g. TensorRT-LLM v0.5 engines built without --use_fused_mlp)
    fused_gated_mlp: bool = True
    # a forward over a prompt computes the output layer on every position (a module call:
    # Hugging Face ``logits_to_keep=0``, gpt-fast's ``prefill``), not only on the sampled last one
    logits_every_position: bool = False
    # a biased linear layer's bias gradient is computed inside its weight-gradient GEMM
    # (Transformer Engine: cuBLASLt bgrad epilogue); False: a separate reduction kernel
    # (torch.nn.functional.linear under autograd, Megatron-LM's own linear layers)
    fused_bias_grad: bool = False
    # every tensor-parallel collective overlapped with the GEMM beside it (Transformer Engine
    # userbuffers, with sequence parallelism), except in the listed precisions
    tp_comm_overlap: bool = False
    tp_comm_overlap_off: tuple[str, ...] = ()
    # the framework's fused MoE priced from published measurements of its kernel where the
    # shape was measured (a table name of xlayer.cost.measured_moe.TABLES; None: the roofline)
    moe_kernel_table: Optional[str] = None
    # host cost of a Megatron-Core MoE layer (None: the host never bounds an MoE layer)
    moe_host: Optional[MoEHostCost] = None
    # a dense Llama-style layer runs the Hugging Face modules' element-wise kernels
    # (xlayer.workload.training_ops.eager_llama_ops) instead of fused ones
    eager_llama_elementwise: bool = False
    # the KV-cache update of such a layer at inference: DynamicCache's torch.cat (the whole
    # cache copied per step) or a static cache's in-place write of the new tokens only
    kv_cache: Literal["dynamic", "static"] = "dynamic"
    # a GELU layer's activation is Hugging Face's written-out tanh GELU (gelu_new, GPT-2):
    # xlayer.workload.training_ops.eager_gelu_new_ops instead of one fused kernel
    eager_gelu_new: bool = False
    # the loss is eager F.cross_entropy(logits.float(), y): six kernels, 14 / 22 B per logit
    # forward / backward (xlayer.workload.training_ops.eager_cross_entropy_ops), not the fused
    # vocab-parallel cross entropy (8 / 6)
    eager_cross_entropy: bool = False
    # HBM bytes per parameter of one optimizer step (None: Megatron's fused Adam with fp32 main
    # grads and master weights, 42 B: xlayer.engine.training.optimizer_step_bytes_per_param)
    optimizer_step_bytes_per_param: Optional[PositiveFloat] = None
    # what the stack's modules save for backward (default: fused Megatron / TE kernels)
    saved_activations: SavedActivations = FUSED_SAVED
    # how a training step's states live over the step (None: Megatron's persistent buffers)
    step_memory: Optional[StepMemory] = None
    sources: dict[str, str] = {}
    file: str = ""


@lru_cache(maxsize=1)
def profiles() -> tuple[StackProfile, ...]:
    """Every profile of ``xlayer/data/stacks/*.yaml``, in file order."""
    out: list[StackProfile] = []
    for path in sorted(STACKS_DIR.glob("*.yaml")):
        # the project's YAML reader: a key written twice in a data file is an error, not the last one
        doc = loads(path.read_text(), f"xlayer/data/stacks/{path.name}") or {}
        for entry in doc.get("profiles", []):
            out.append(StackProfile(**entry, file=f"xlayer/data/stacks/{path.name}"))
    names = [p.name for p in out]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError(f"stack profiles named twice: {sorted(dup)}")
    return tuple(out)


def get_profile(name: str) -> StackProfile:
    for p in profiles():
        if p.name == name:
            return p
    raise KeyError(f"no stack profile {name!r}; known: {[p.name for p in profiles()]}")


def _norm(s: Optional[str]) -> str:
    return (s or "").strip().lower()


def profile_for(framework: Optional[str] = None, version: Optional[str] = None,
                mode: Optional[str] = None) -> tuple[StackProfile, str]:
    """(profile, why) for a case's ``software`` block (see the module docstring)."""
    fw, ver, md = _norm(framework), _norm(version), _norm(mode)
    if not fw:
        p = get_profile(DEFAULT_PROFILE)
        return p, f"software profile {p.name} (no software block: the default, {p.file})"
    cands = [p for p in profiles() if fw in p.frameworks]
    if not cands:
        p = get_profile(DEFAULT_PROFILE)
        return p, f"software profile {p.name} (no profile for framework {framework!r}: the default, {p.file})"
    by_mode = [p for p in cands if p.mode == md] if md else []
    pool = by_mode or cands
    by_ver = [p for p in pool if p.versions and ver in p.versions] if ver else []
    p = (by_ver or [q for q in pool if not q.versions] or pool)[0]
    said = "/".join(x for x in (framework, version, mode) if x)
    extra = "" if not md or p.mode == md else f"; no {md} profile, its {p.mode} one"
    return p, f"software profile {p.name} ({said}{extra}; {p.file})"
