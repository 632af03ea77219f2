"""A transformer layer in training: the forward of :func:`xlayer.workload.transformer.layer_forward`
with the casts of a low-precision recipe, its backward, the tensor/expert-parallel
collectives and the recompute; the embedding and the loss; the model FLOPs.

All sizes are per accelerator and per micro-batch; arguments may be numbers or numpy arrays.
Notation: b micro-batch, s sequence, h hidden, t tensor-parallel size, c context-parallel
size, T = b·s/c tokens per accelerator. FLOP counts follow Narayanan et al. 2021 /
Korthikanti et al. 2022: a GEMM's backward costs two GEMMs of its size (data gradient and
weight gradient).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from xlayer.workload.model import ModelSpec
from xlayer.workload.operators import ACT_BYTES, Comm, Op, elementwise, gemm
from xlayer.workload.precision import gemm_input_bytes, training_formats
from xlayer.workload.recompute import recompute_modules, reruns
from xlayer.workload.transformer import (MEGATRON_KERNELS, embedding_ops, layer_forward, output_layer_ops,
                                         tp_forward_comms, training_segment)

Num = Any  # float or numpy array


@dataclass(frozen=True)
class LayerWork:
    """Everything one transformer layer does for one micro-batch on one accelerator."""

    fwd: list[Op]
    bwd: list[Op]
    fwd_comms: list[Comm]
    bwd_comms: list[Comm]
    attention_core: tuple[str, ...] = field(default=())
    biased: bool = False  # the linear layers carry biases (F.linear runs addmm, not mm)


# GEMM inputs quantized inside the preceding norm kernel (Transformer Engine LayerNormLinear /
# LayerNormMLP fuse the norm and the cast: Megatron-Core's TE spec uses them for qkv and fc1)
NORM_FUSED = ("qkv", "fc1", "shared_fc1")


def quantize(name: str, elements: Num, precision: str, read: bool = True, rht: bool = True) -> Op:
    """Cast of a 16-bit tensor to a low-precision GEMM format for training (Transformer
    Engine): both a row-wise and a column-wise (transposed) copy are written, since the
    forward GEMM and the weight-gradient GEMM contract the tensor along different dimensions
    (TE cast_transpose for per-tensor fp8; separate row/column block scales for MXFP8 and
    NVFP4), so bytes = 2·N read + 2·N·q written, q = bytes per element with its scales
    (:func:`xlayer.workload.precision.gemm_input_bytes`); per-tensor current scaling (fp8)
    reads the tensor once more for its amax first. ``read=False``: the cast is fused into the
    kernel that produced the tensor (only the writes remain).

    NVFP4 (two-level scaling with a per-tensor FP32 scale from the global amax; the column-wise
    copy, a weight-gradient operand, rotated by a 16-point random Hadamard transform first:
    TE docs nvfp4.rst) reads the tensor three times whatever produced it — Transformer Engine's
    ``NVFP4Quantizer::quantize_impl`` (transformer_engine/pytorch/csrc/quantizer.cpp) runs
    ``nvte_hadamard_transform_amax`` (the row-wise amax and the rotated column-wise amax in one
    pass), then the row-wise cast, then ``nvte_hadamard_transform_cast_fusion_columnwise``; no
    element can be cast before the whole tensor's amax is known, so no producer fuses it.
    ``rht=False``: an NVFP4 weight (2D 16×16 block scales, no transform): the amax pass and one
    cast that writes both copies."""
    q = gemm_input_bytes(precision)
    if precision == "nvfp4":
        reads = (3.0 if rht else 2.0) * ACT_BYTES
    else:
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


def _k(name: str, read_bytes: Num, written_bytes: Num) -> Op:
    """An element-wise kernel given by the bytes it reads and writes (fp32 and 16-bit mixed)."""
    return Op(name, "elementwise", written_bytes / 4.0, read_bytes + written_bytes)


def eager_llama_ops(model: ModelSpec, tokens: Num, tp: Num = 1) -> tuple[dict[str, list[Op]], list[Op]]:
    """The element-wise kernels of a Llama decoder layer as the Hugging Face modules run them
    eagerly (transformers ``modeling_llama.py``: ``LlamaRMSNorm``, ``apply_rotary_pos_emb`` with
    ``rotate_half``, ``LlamaMLP`` = ``down(silu(gate(x)) * up(x))``, separate q/k/v and gate/up
    projections), each aten kernel with the bytes it reads and writes per token (counted on the
    real modules with a dispatch trace: ``benchmarks/eager_memory.py elementwise_traffic``,
    ``tests/test_eager_memory.py``). Returns ({fused op name: its eager forward kernels}, the
    backward kernels): norm1/norm2 become RMSNorm's 8 kernels (fp32 upcast, pow, mean, add,
    rsqrt, mul, downcast, weight mul: 32 B per element), the activation becomes silu and mul
    (10 B per f element), q and k get RoPE (5 kernels, 20 B per element); the backward is
    RMSNorm's 16 autograd kernels (92 B per element), RoPE's 7 (28 B), silu's and the product's
    3 (18 B per f element), the gradient sums of the separate q/k/v and gate/up projections
    (3 × 6 B per h element) and the copies that make the q and v gradients contiguous."""
    T, h = tokens, model.hidden
    q, kv, f, d = model.q_dim / tp, model.kv_dim / tp, model.ffn_hidden / tp, model.head_dim

    def norm(n: str) -> list[Op]:
        return [_k(f"{n}.to_fp32", 2 * T * h, 4 * T * h), _k(f"{n}.pow", 4 * T * h, 4 * T * h),
                _k(f"{n}.mean", 4 * T * h, 4 * T), _k(f"{n}.add_eps", 4 * T, 4 * T), _k(f"{n}.rsqrt", 4 * T, 4 * T),
                _k(f"{n}.mul", 4 * T * h + 4 * T, 4 * T * h), _k(f"{n}.to_bf16", 4 * T * h, 2 * T * h),
                _k(f"{n}.weight_mul", 2 * T * h, 2 * T * h)]

    def norm_bwd(n: str) -> list[Op]:
        return [_k(f"{n}.weight_mul.bwd", 2 * T * h, 2 * T * h), _k(f"{n}.weight_grad_mul", 4 * T * h, 2 * T * h),
                _k(f"{n}.weight_grad_sum", 2 * T * h, 2 * h), _k(f"{n}.to_fp32.bwd", 2 * T * h, 4 * T * h),
                _k(f"{n}.mul.bwd_x", 8 * T * h, 4 * T * h), _k(f"{n}.mul.bwd_rstd", 4 * T * h + 4 * T, 4 * T * h),
                _k(f"{n}.mul.bwd_sum", 4 * T * h, 4 * T), _k(f"{n}.rsqrt.bwd_pow", 4 * T, 4 * T),
                _k(f"{n}.rsqrt.bwd_mul", 4 * T, 4 * T), _k(f"{n}.rsqrt.bwd_grad", 8 * T, 4 * T),
                _k(f"{n}.mean.bwd", 4 * T, 4 * T * h), _k(f"{n}.pow.bwd_pow", 4 * T * h, 4 * T * h),
                _k(f"{n}.pow.bwd_scale", 4 * T * h, 4 * T * h), _k(f"{n}.pow.bwd_mul", 8 * T * h, 4 * T * h),
                _k(f"{n}.grad_sum", 8 * T * h, 4 * T * h), _k(f"{n}.to_bf16.bwd", 4 * T * h, 2 * T * h)]

    def rope(n: str, e: Num) -> list[Op]:
        return [_k(f"{n}.mul_cos", 2 * T * (e + d), 2 * T * e), _k(f"{n}.neg", T * e, T * e),
                _k(f"{n}.cat", 2 * T * e, 2 * T * e), _k(f"{n}.mul_sin", 2 * T * (e + d), 2 * T * e),
                _k(f"{n}.add", 4 * T * e, 2 * T * e)]

    def rope_bwd(n: str, e: Num) -> list[Op]:
        return [_k(f"{n}.mul_sin.bwd", 2 * T * (e + d), 2 * T * e), _k(f"{n}.neg.bwd", T * e, T * e),
                _k(f"{n}.slice_bwd1", T * e, 2 * T * e), _k(f"{n}.slice_bwd2", T * e, 2 * T * e),
                _k(f"{n}.cat.bwd_sum", 4 * T * e, 2 * T * e), _k(f"{n}.mul_cos.bwd", 2 * T * (e + d), 2 * T * e),
                _k(f"{n}.add.bwd_sum", 4 * T * e, 2 * T * e)]

    fwd = {"norm1": norm("norm1"), "norm2": norm("norm2"),
           "qkv": rope("rope_q", q) + rope("rope_k", kv),
           "activation": [_k("silu", 2 * T * f, 2 * T * f), _k("silu_mul_up", 4 * T * f, 2 * T * f)]}
    bwd = ([_k("silu_mul_up.bwd_act", 4 * T * f, 2 * T * f), _k("silu_mul_up.bwd_up", 4 * T * f, 2 * T * f),
            _k("silu.bwd", 4 * T * f, 2 * T * f), _k("gate_up.dgrad_sum", 4 * T * h, 2 * T * h)]
           + norm_bwd("norm2") + rope_bwd("rope_k", kv) + rope_bwd("rope_q", q)
           + [_k("v.grad_contiguous", 2 * T * kv, 2 * T * kv), _k("kv.dgrad_sum", 4 * T * h, 2 * T * h),
              _k("q.grad_contiguous", 2 * T * q, 2 * T * q), _k("q.dgrad_sum", 4 * T * h, 2 * T * h)]
           + norm_bwd("norm1"))
    return fwd, bwd


def eager_gelu_new_ops(model: ModelSpec, tokens: Num, tp: Num = 1) -> tuple[list[Op], list[Op]]:
    """The tanh GELU written out as Hugging Face's ``NewGELUActivation`` (``gelu_new``, GPT-2)
    runs it eagerly, kernel by kernel with the bytes each reads and writes (traced on the module:
    ``benchmarks/eager_memory.py elementwise_traffic``): forward 0.5·x, x³, 0.044715·x³,
    x + ·, √(2/π)·, tanh, 1 + tanh, product — 8 kernels, 36 B per FC1-output element (one
    fused GELU: 4 B); backward 11 autograd kernels, 56 B (fused: 6 B). Returns (forward,
    backward)."""
    n = tokens * model.ffn_hidden / tp  # FC1-output elements, 16-bit
    fwd = [_k("gelu.half_x", 2 * n, 2 * n), _k("gelu.pow3", 2 * n, 2 * n), _k("gelu.mul_c", 2 * n, 2 * n),
           _k("gelu.add_x", 4 * n, 2 * n), _k("gelu.mul_s", 2 * n, 2 * n), _k("gelu.tanh", 2 * n, 2 * n),
           _k("gelu.add_1", 2 * n, 2 * n), _k("gelu.mul", 4 * n, 2 * n)]
    reads = (4, 4, 4, 2, 2, 2, 2, 4, 4, 2, 4)  # per element: two 16-bit operands (4) or one (2)
    names = ("mul.bwd_a", "mul.bwd_b", "tanh.bwd", "mul_s.bwd", "add_x.bwd_scale", "pow3.bwd_pow",
             "pow3.bwd_scale", "pow3.bwd_mul", "grad_sum", "half_x.bwd", "grad_sum2")
    bwd = [_k(f"gelu.{nm}", r * n, 2 * n) for nm, r in zip(names, reads)]
    return fwd, bwd


def torch_gpt_kernels(op: Op, rows: Num, h: Num, dropout: float) -> tuple[list[Op], list[Op] | None]:
    """A GPT-style layer's element-wise operator as PyTorch's own kernels run it (``nn.LayerNorm``,
    ``res + F.dropout(y)``, ``softmax`` / ``dropout`` of classic attention), given the fused
    operator ``op`` of :func:`~xlayer.workload.transformer.layer_forward`. Returns (forward
    kernels, backward kernels; None: the generic 1.5× re-read of :func:`layer_work`).

    * ``norm{1,2}`` backward (aten/src/ATen/native/cuda/layer_norm_kernel.cu,
      ``LayerNormBackwardKernelImplInternal``): ``layer_norm_grad_input_kernel_vectorized``
      (one block per row: reads dY and X, writes dX: 6 B per element) and then
      ``LaunchGammaBetaBackwardCUDAKernel`` (reads dY and X again for the column sums: 4 B);
    * ``dropout_add{1,2}``: ``native_dropout`` (reads y, writes the output and its bool mask:
      5 B) then the add (reads two, writes one: 6 B); backward ``native_dropout_backward``
      (reads the gradient and the mask, writes: 5 B) — without dropout the add alone, whose
      backward (AddBackward0) passes the gradient on with no kernel;
    * ``attn_softmax`` backward (SoftMax.cu ``softmax_backward_cuda_out``): ``tmp = grad *
      output`` first (6 B), then ``host_softmax_backward`` reads tmp and the output and writes
      the input gradient (6 B);
    * ``attn_dropout`` backward: ``native_dropout_backward``, 5 B.
    Kernels of one measured operator share its name (``name:part``)."""
    n = rows * h
    name = op.name
    if name in ("norm1", "norm2"):
        return [op], [_k(f"{name}.bwd", 4 * n, 2 * n), _k(f"{name}.bwd:gamma_beta", 4 * n, 4 * h)]
    if name in ("dropout_add1", "dropout_add2"):
        add = _k(name, 4 * n, 2 * n)
        if dropout <= 0:
            return [add], []
        drop = replace(_k(f"{name}:dropout", 2 * n, 3 * n), rng_draws=n)
        return [drop, add], [_k(f"{name}.bwd", 3 * n, 2 * n)]
    if name.startswith("attn_softmax"):
        s = op.bytes / (2 * ACT_BYTES)  # score elements (read and written once)
        return [op], [_k(f"{name}.bwd:mul", 4 * s, 2 * s), _k(f"{name}.bwd", 4 * s, 2 * s)]
    if name.startswith("attn_dropout"):
        s = op.bytes / (2 * ACT_BYTES + 1)  # read and written 16-bit, a 1-byte mask
        return [op], [_k(f"{name}.bwd", 3 * s, 2 * s)]
    return [op], None


def eager_llama_inference_ops(model: ModelSpec, ops: list[Op], segments: list[Any], tp: Num = 1,
                              precision: str = "bf16", kv_precision: str = "bf16",
                              kv_cache: str = "dynamic") -> list[Op]:
    """An inference forward of a dense Llama layer as the Hugging Face modules run it: the
    fused ``norm1``, ``add_norm2`` and ``activation`` kernels become :func:`eager_llama_ops`'s
    (``add_norm2``: the residual add, read 2·h write h, then the RMSNorm chain), and
    ``rope_kv_append`` becomes RoPE on q and k plus ``DynamicCache``'s ``torch.cat`` of the
    keys and of the values (transformers ``cache_utils.py``: the cached and the new tokens read,
    all written), and the fused ``qkv`` GEMM the three projections ``q_proj``, ``k_proj``,
    ``v_proj`` (in the pass's weight and input formats). ``kv_cache="static"``: a preallocated
    cache written in place at the new positions instead (transformers ``StaticCache.update``:
    ``keys.index_copy_(2, cache_position, key_states)``, the cache a CUDA graph needs): the new
    tokens' keys and values read and written, the cached ones untouched."""
    from xlayer.workload.precision import inference_formats

    fm = inference_formats(precision, kv_precision)
    T = sum(g.tokens for g in segments)
    eager_fwd, _ = eager_llama_ops(model, T, tp)
    kv = model.kv_dim / tp
    new_elems = sum(g.seqs * g.new for g in segments)
    cat_elems = sum(g.seqs * (g.cached + g.new) for g in segments)
    out: list[Op] = []
    for op in ops:
        if op.name in ("norm1", "activation"):
            out.extend(eager_fwd[op.name])
        elif op.name == "add_norm2":
            out.append(elementwise("add1", 2 * T * model.hidden, T * model.hidden, 1.0))
            out.extend(eager_fwd["norm2"])
        elif op.name == "qkv":  # q_proj, k_proj, v_proj: three GEMMs
            for name, n in (("q_proj", model.q_dim / tp), ("k_proj", model.kv_dim / tp), ("v_proj", kv)):
                out.append(gemm(name, op.m, op.k, n, op.precision, op.batch, in_bytes=fm.input_bytes,
                                w_bytes=fm.weight_bytes))
        elif op.name == "rope_kv_append":
            out.extend(eager_fwd["qkv"])
            if kv_cache == "static":
                out += [_k(f"{n}_cache_index_copy", 2 * new_elems * kv, 2 * new_elems * kv) for n in ("k", "v")]
            else:
                out += [_k(f"{n}_cache_cat", 2 * cat_elems * kv, 2 * cat_elems * kv) for n in ("k", "v")]
        else:
            out.append(op)
    return out


def attention_backward(op: Op) -> Op:
    """The backward kernel of a flash-attention forward ``op``: 2.5× its FLOPs (five GEMMs of
    the forward's size against two, P recomputed; Dao 2023, FlashAttention-2 §3.1.2) and
    twice its bytes (Q, K, V, O and dO read; dQ, dK, dV written)."""
    return Op(op.name + ".bwd", "attention", 2.5 * op.flops, 2.0 * op.bytes,
              precision=op.precision, causal=op.causal, heads=op.heads,
              seq_q=op.seq_q, seq_kv=op.seq_kv, head_dim=op.head_dim)


def layer_work(model: ModelSpec, b: Num, tp: Num, sp: bool, cp: Num, precision: str,
               attention: str, dropout: float, ffn: str = "dense", ep: Num = 1, etp: Num = 1,
               window: Num = None, fused_bias_grad: bool = False, tp_comm_overlap: bool = False,
               eager_modules: bool = False, eager_gelu_new: bool = False) -> LayerWork:
    """Operators and collectives of one transformer layer (forward and backward).

    Forward: :func:`xlayer.workload.transformer.layer_forward` over one micro-batch
    (:func:`~xlayer.workload.transformer.training_segment`: b sequences of s/c queries over
    s keys) with Megatron-Core's kernels, then a cast before every low-precision GEMM.
    Backward, in reverse order: a GEMM's data and weight gradients (with a cast of its output
    gradient), flash attention's backward (5 GEMMs of the forward's size vs 2, Dao 2023:
    2.5× the FLOPs), element-wise kernels re-reading their saved input (1.5× the traffic).
    Collectives: :func:`~xlayer.workload.transformer.tp_forward_comms` forward; backward
    (Korthikanti 2022 §4.2.2) with SP the all-gather of the output gradient is exposed, the
    reduce-scatter of the input gradient overlaps the weight-gradient GEMM and the re-gather
    of the saved 1/t input the data-gradient GEMM; without SP the all-reduce of the input
    gradient of each column-parallel GEMM overlaps its weight-gradient GEMM (Megatron-LM async
    TP all-reduce). An MoE layer's all-to-alls run forward and again backward.
    ``ffn="moe"``: the FFN is a mixture of experts; ``window``: a sliding-window layer whose
    queries see at most ``window`` keys.

    ``tp_comm_overlap`` (with SP): Transformer Engine's userbuffers overlap every
    tensor-parallel collective with the GEMM beside it — forward all-gathers with the qkv/fc1
    GEMMs and reduce-scatters with proj/fc2 (ring exchange / pipelined splits), backward the
    output-gradient all-gathers with the proj/fc2 data-gradient GEMMs (Megatron-Bridge
    ``TransformerLayerTPOverlapCfg``: qkv_fprop, fc1_fprop, proj_fprop, fc2_fprop, proj_dgrad,
    fc2_dgrad; the regathers and reduce-scatters of the backward overlap as without it).

    Autograd's own kernels in the backward (:func:`autograd_kernels`): the gradient
    accumulation at each residual junction, and — for a biased model unless the stack fuses
    it into the weight-gradient GEMM (``fused_bias_grad``: Transformer Engine's bgrad
    epilogue) — one bias-gradient reduction per biased linear layer.

    ``eager_modules`` (the stack profile's ``eager_llama_elementwise``): a dense Llama-style
    layer (gated FFN, RMSNorm, RoPE, no MLA) runs the element-wise kernels of the Hugging Face
    modules instead of fused ones (:func:`eager_llama_ops`); the residual adds keep their
    forward kernel and have no backward kernel of their own (autograd passes the gradient on).
    A dense GPT-style layer (LayerNorm) under ``eager_modules`` runs PyTorch's own norm,
    dropout-add and classic-attention softmax/dropout kernels (:func:`torch_gpt_kernels`).
    ``eager_gelu_new`` (profile field of the same name): a GELU layer's activation is Hugging
    Face's written-out tanh GELU (:func:`eager_gelu_new_ops`).
    """
    fm = training_formats(precision)
    eager = bool(eager_modules) and ffn == "dense" and model.gated and model.norm == "rmsnorm" \
        and model.mla is None and model.position == "rope"
    # the Hugging Face modules project gate and up with two GEMMs (LlamaMLP.gate_proj, up_proj)
    kernels = replace(MEGATRON_KERNELS, fused_gate_up=False) if eager else MEGATRON_KERNELS
    fp = layer_forward(model, [training_segment(b, model.seq_len, cp, window)], tp=tp, fm=fm, attention=attention,
                       kernels=kernels, sp=sp, dropout=dropout, ffn=ffn, ep=ep, etp=etp,
                       moe_tokens="sequence_parallel", routing="balanced")
    fwd = _with_input_quantize(fp.ops, fm.gemm) if fm.casts_inputs else fp.ops
    eager_bwd: list[Op] = []
    no_bwd: set[str] = set()
    if eager:
        eager_fwd, eager_bwd = eager_llama_ops(model, fp.tokens, tp)
        new_fwd: list[Op] = []
        for op in fwd:
            if op.name in ("norm1", "norm2", "activation"):
                new_fwd.extend(eager_fwd[op.name])
            elif op.name == "qkv":  # q_proj, k_proj, v_proj as three GEMMs, then RoPE on q and k
                for name, n in (("q_proj", model.q_dim / tp), ("k_proj", model.kv_dim / tp),
                                ("v_proj", model.kv_dim / tp)):
                    new_fwd.append(gemm(name, op.m, op.k, n, op.precision, op.batch))
                new_fwd.extend(eager_fwd["qkv"])
            else:
                new_fwd.append(op)
        # the eager kernels' backward is eager_bwd; a residual add has no backward kernel
        no_bwd = {o.name for ops in eager_fwd.values() for o in ops} | {"dropout_add1", "dropout_add2"}
        fwd = new_fwd
    torch_bwd: dict[str, list[Op]] = {}
    if eager_modules and not eager and ffn == "dense" and model.norm == "layernorm" and model.mla is None:
        # a GPT-style layer of torch.nn modules: PyTorch's own norm, dropout and softmax kernels
        rows = fp.tokens / tp if sp else fp.tokens
        new_fwd = []
        for op in fwd:
            f_ops, b_ops = torch_gpt_kernels(op, rows, model.hidden, dropout)
            new_fwd.extend(f_ops)
            if b_ops is not None:
                torch_bwd[op.name] = b_ops
        fwd = new_fwd
    if eager_gelu_new and ffn == "dense" and model.activation == "gelu":
        gelu_fwd, gelu_bwd = eager_gelu_new_ops(model, fp.tokens, tp)
        fwd = [g for op in fwd for g in (gelu_fwd if op.name == "activation" else [op])]
        no_bwd = no_bwd | {o.name for o in gelu_fwd}
        eager_bwd = gelu_bwd + eager_bwd
    bwd: list[Op] = []
    for op in reversed(fwd):
        if op.name.endswith(".quantize_in") or op.name in no_bwd or ":" in op.name:
            continue  # a cast has no backward of its own (a kernel part: its operator's)
        if op.name in torch_bwd:
            bwd.extend(torch_bwd[op.name])
            continue
        if op.kind == "gemm":
            if fm.casts_inputs and op.precision == fm.gemm:
                bwd.append(quantize(op.name + ".quantize_grad", op.m * op.n * op.batch, op.precision))
            bwd.extend(_gemm_bwd(op))
        elif op.kind == "attention":
            bwd.append(attention_backward(op))
        else:
            bwd.append(Op(op.name + ".bwd", "elementwise", 2.0 * op.flops, 1.5 * op.bytes))
    bwd += autograd_kernels(model, fwd, fp.tokens / tp if sp else fp.tokens, fused_bias_grad)
    bwd += eager_bwd  # (display order: after the GEMM gradients they belong to)

    msg = fp.tokens * model.hidden * ACT_BYTES  # the full activation of the layer, all ranks together
    # an MoE layer's routed experts work on each rank's own (sequence-parallel) tokens: the
    # MLP's tensor-parallel gather/reduce remains only for shared experts
    mlp_tp = ffn != "moe" or (model.moe is not None and model.moe.shared_experts > 0)
    # the column-parallel GEMM at the attention's input (the backward collectives overlap it)
    attn_in = ("q_proj" if eager else "qkv") if model.mla is None else ("q_up" if model.mla.q_lora_rank else "q_proj")
    mlp_in = "fc1" if ffn != "moe" else "shared_fc1"
    fwd_comms = tp_forward_comms(msg, sp, mlp_tp)
    ub = tp_comm_overlap and sp  # userbuffers need sequence parallelism
    if ub:
        pair = {"sp_allgather_attn": attn_in, "sp_reducescatter_attn": "proj", "sp_allgather_mlp": mlp_in,
                "sp_reducescatter_mlp": "fc2" if ffn != "moe" else "shared_fc2"}
        fwd_comms = [Comm(c.name, c.collective, c.bytes, c.group, overlap=pair.get(c.name)) for c in fwd_comms]
    if sp:
        bwd_comms = [Comm("sp_allgather_grad_mlp", "all_gather", msg, "tp",
                          overlap=("fc2.dgrad" if ffn != "moe" else "shared_fc2.dgrad") if ub else None),
                     Comm("sp_regather_mlp", "all_gather", msg, "tp", overlap=mlp_in + ".dgrad"),
                     Comm("sp_reducescatter_grad_mlp", "reduce_scatter", msg, "tp", overlap=mlp_in + ".wgrad"),
                     Comm("sp_allgather_grad_attn", "all_gather", msg, "tp", overlap="proj.dgrad" if ub else None),
                     Comm("sp_regather_attn", "all_gather", msg, "tp", overlap=attn_in + ".dgrad"),
                     Comm("sp_reducescatter_grad_attn", "reduce_scatter", msg, "tp", overlap=attn_in + ".wgrad")]
    else:
        bwd_comms = [Comm("tp_allreduce_grad_mlp", "all_reduce", msg, "tp", overlap=mlp_in + ".wgrad"),
                     Comm("tp_allreduce_grad_attn", "all_reduce", msg, "tp", overlap=attn_in + ".wgrad")]
    if not mlp_tp:
        bwd_comms = [c for c in bwd_comms if "mlp" not in c.name]
    fwd_comms += fp.moe_comms
    bwd_comms += [Comm(c.name + ".bwd", c.collective, c.bytes, c.group) for c in fp.moe_comms]
    return LayerWork(fwd, bwd, fwd_comms, bwd_comms, fp.attention_core, biased=bool(model.bias))


def autograd_kernels(model: ModelSpec, fwd: list[Op], rows: Num, fused_bias_grad: bool) -> list[Op]:
    """Backward kernels no forward operator mirrors (PyTorch autograd, which Megatron and
    plain PyTorch share):

    * ``residual{1,2}.grad_accumulate``: the residual stream's input feeds both the norm and
      the residual add, so its two incoming gradients are summed (autograd's InputBuffer
      accumulation: read 2·rows·h, write rows·h);
    * ``<gemm>.bias_grad``: a biased linear layer's bias gradient is the column sum of its
      output gradient, a reduction kernel reading the m×n gradient (``F.linear``'s and
      Megatron-LM's ``LinearWithGradAccumulationAndAsyncCommunication`` backward:
      ``grad_output.sum(dim=0)``) unless fused into the weight-gradient GEMM
      (``fused_bias_grad``: Transformer Engine's cuBLASLt BGRADB epilogue). The router and
      the attention core have no bias."""
    h = model.hidden
    out = [elementwise(f"residual{i}.grad_accumulate", 2 * rows * h, rows * h, 1.0) for i in (1, 2)]
    if model.bias and not fused_bias_grad:
        out += [elementwise(op.name + ".bias_grad", op.m * op.n * op.batch, op.n * op.batch, 1.0) for op in fwd
                if op.kind == "gemm" and op.name not in ("router",) and not op.name.startswith("attn_")]
    return out


def op_sac_split(work: LayerWork) -> tuple[list[Op], list[Op]]:
    """(re-run, saved) forward operators of one layer under PyTorch's selective activation
    checkpointing with torchtitan's per-op policy (``SelectiveAC``, the default of its Trainer:
    torchtitan/distributed/activation_checkpoint.py and trainer.py @b5bcd76c). The block runs
    under ``ptd_checkpoint_wrapper`` (non-reentrant, ``early_stop=False``: the backward replays
    the whole block forward) and a policy decides per aten op: MUST_SAVE for the ops of
    ``torch._functorch.partitioners.get_default_op_list().compute_intensive_ops`` (mm, bmm,
    addmm, the SDPA flash / efficient / cuDNN kernels, _scaled_mm) and the reduce-scatter /
    all-to-all collectives, except that every second ``aten.mm`` (counted per block in forward
    order) is PREFER_RECOMPUTE; the MoE router's matmul is forced to recompute
    (``force_recompute_mm_shapes_by_fqns = ["moe.router.gate"]``) and not counted; everything
    else is re-run. Hence here: attention kernels and batched GEMMs (``aten.bmm``) are saved;
    a biased linear layer (``F.linear`` folds a contiguous input into ``aten.addmm``) is saved
    and not counted; the grouped expert GEMMs (``torch._grouped_mm``, not in the list) and all
    element-wise kernels (norms, RoPE, activations, casts, residual adds) are re-run; the plain
    matmuls alternate save, re-run, save, … in layer order (a Llama block with separate q, k, v,
    gate and up projections: wq, wv, w1, w2 saved, wk, wo, w3 re-run)."""
    rerun: list[Op] = []
    saved: list[Op] = []
    mm = 0
    for op in work.fwd:
        if op.kind == "attention":
            saved.append(op)
        elif op.kind != "gemm" or op.name == "router" or op.name.startswith("expert_"):
            rerun.append(op)
        elif work.biased or bool(np.any(np.asarray(op.batch) != 1)):  # aten.bmm / aten.addmm: saved, not counted
            saved.append(op)
        else:
            mm += 1
            (rerun if mm % 2 == 0 else saved).append(op)
    return rerun, saved


def recompute_ops(work: LayerWork, mode: str, policy: str = "core_attention") -> tuple[list[Op], list[Comm]]:
    """Work redone in the backward pass. ``selective`` re-runs the attention core
    (Korthikanti 2022 §5: QKᵀ, softmax, dropout, PV); a flash kernel already recomputes
    internally, so selective adds nothing there; under ``policy="op_sac"`` (the stack
    profile's ``selective_policy``: torchtitan) it re-runs what :func:`op_sac_split` does not
    save, no collective (the policy saves their outputs). ``full`` re-runs the whole forward,
    collectives included. A module set (``layernorm+moe_act``, :mod:`xlayer.workload.recompute`)
    re-runs those submodules' forward operators."""
    if mode == "none":
        return [], []
    if mode == "selective" and policy == "op_sac":
        return op_sac_split(work)[0], []
    if mode == "selective":
        return [op for op in work.fwd if op.name in work.attention_core and op.kind != "attention"], []
    if mode == "full":
        return list(work.fwd), list(work.fwd_comms)
    modules = recompute_modules(mode)  # Megatron-Core recompute_modules (xlayer.workload.recompute)
    if modules:
        return [op for op in work.fwd if reruns(op.name, modules)], []
    raise ValueError(mode)


def embedding_work(model: ModelSpec, b: Num, tp: Num, cp: Num) -> list[Op]:
    """Embedding lookup of one micro-batch on the first stage (T = b·s/c tokens)."""
    return embedding_ops(model, b * model.seq_len / cp)


def eager_cross_entropy_ops(logits: Num, tokens: Num) -> tuple[list[Op], list[Op]]:
    """``F.cross_entropy(logits.float(), y)`` over 16-bit logits as eager PyTorch runs it, kernel
    by kernel (aten ops traced on the module: ``benchmarks/eager_memory.py
    cross_entropy_traffic``, ``tests/test_eager_memory.py``), ``logits`` = T·V/t elements:
    forward the fp32 copy (reads 2, writes 4 B per logit), ``_log_softmax`` (4 + 4) and
    ``nll_loss`` (gathers one value per token); backward ``nll_loss_backward`` (writes a dense
    4-B gradient), ``_log_softmax_backward_data`` (reads the gradient and the output, writes
    4) and the copy's backward to 16 bits (4 + 2): 14 and 22 B per logit, against the fused
    vocab-parallel loss's 8 and 6."""
    L = logits
    fwd = [Op("cross_entropy.to_fp32", "elementwise", L, 6.0 * L),
           Op("cross_entropy.log_softmax", "elementwise", 4.0 * L, 8.0 * L),
           Op("cross_entropy.nll_loss", "elementwise", tokens, 8.0 * tokens)]
    bwd = [Op("cross_entropy.nll_loss.bwd", "elementwise", tokens, 4.0 * L),
           Op("cross_entropy.log_softmax.bwd", "elementwise", 3.0 * L, 12.0 * L),
           Op("cross_entropy.to_fp32.bwd", "elementwise", L, 6.0 * L)]
    return fwd, bwd


def logits_work(model: ModelSpec, b: Num, tp: Num, cp: Num, precision: str,
                eager_loss: bool = False) -> tuple[list[Op], list[Op]]:
    """Final norm and output layer (:func:`~xlayer.workload.transformer.output_layer_ops`,
    16-bit) over the micro-batch's T tokens and the fused vocab-parallel cross-entropy (reads
    the T×V/t logits twice in fp32), or with ``eager_loss`` the eager loss's six kernels
    (:func:`eager_cross_entropy_ops`). Forward and backward."""
    T = b * model.seq_len / cp
    V = model.vocab
    norm, out = output_layer_ops(model, T, tp, "fp32" if precision == "fp32" else "bf16")
    if eager_loss:
        loss_f, loss_b = eager_cross_entropy_ops(T * V / tp, T)
    else:
        loss_f = [Op("cross_entropy", "elementwise", 5.0 * T * V / tp, 4.0 * 2 * T * V / tp)]
        loss_b = [Op("cross_entropy.bwd", "elementwise", 2.0 * T * V / tp, (4.0 + ACT_BYTES) * T * V / tp)]
    fwd = [norm, out, *loss_f]
    bwd = [*loss_b, *_gemm_bwd(out), Op("final_norm.bwd", "elementwise", 2 * norm.flops, 1.5 * norm.bytes)]
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

