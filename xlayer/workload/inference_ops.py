"""A transformer layer at inference time (prefill, decode, mixed serving steps): the
forward of :func:`xlayer.workload.transformer.layer_forward` with an inference engine's
kernels, its collectives, and the embedding and output layer of a pass.

Per accelerator, one layer, one forward pass over the tokens of its attention segments (no
backward). Megatron tensor parallelism over t ranks with the operator names of training, so
that a number can be traced across the two. The case's precision sets the weight bytes and
the GEMM arithmetic (:func:`xlayer.workload.precision.inference_formats`); the KV cache has
its own precision.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from xlayer.workload.model import ModelSpec
from xlayer.workload.operators import ACT_BYTES, Comm, Op
from xlayer.workload.precision import NumberFormats, inference_formats
from xlayer.workload.transformer import (INFERENCE_KERNELS, AttentionSegment, embedding_ops, layer_forward,
                                         output_layer_ops, tp_forward_comms)

__all__ = ["AttentionSegment", "InferenceLayer", "inference_layer", "embedding_ops", "output_ops"]


@dataclass(frozen=True)
class InferenceLayer:
    """One layer of one forward pass on one accelerator."""

    ops: list[Op]
    comms: list[Comm]
    tokens: float
    attention_ops: tuple[str, ...] = field(default=())


def inference_layer(model: ModelSpec, segments: list[AttentionSegment], tp: int, precision: str,
                    kv_precision: str, attention: str, *, ep: int = 1,
                    group_tokens=None, fused_gate_up: bool = True, ep_comms: bool = True) -> InferenceLayer:
    """Operators of one layer for a forward pass over the tokens of ``segments``:
    :func:`~xlayer.workload.transformer.layer_forward` with fused add+norm and the KV-cache
    append, MoE tokens replicated over the tensor-parallel ranks (each expert's width split
    over t) and independent routing; then the TP all-reduces after the attention and the MLP,
    and with ``ep`` > 1 the all-to-all dispatch and combine (``group_tokens``: the tokens the
    EP group routes, with attention data parallel every rank its own; ``fused_gate_up`` False:
    the gate and up projections of a gated MLP are two GEMMs; ``ep_comms`` False: expert
    parallelism over tensor-parallel ranks that hold the same tokens, whose partial outputs the
    MLP's TP all-reduce already combines — no all-to-all)."""
    fm = inference_formats(precision, kv_precision)
    fp = layer_forward(model, segments, tp=tp, fm=fm, attention=attention,
                       kernels=replace(INFERENCE_KERNELS, fused_gate_up=fused_gate_up), ffn="moe" if model.is_moe else "dense", ep=ep,
                       moe_tokens="replicated", routing="independent",
                       group_tokens=group_tokens)
    ops = with_block_scaled_casts(fp.ops, fm, fp.tokens * model.hidden) if fm.gemm == "nvfp4" else fp.ops
    comms = tp_forward_comms(fp.tokens * model.hidden * ACT_BYTES, sp=False)
    if model.is_moe and ep > 1 and ep_comms:
        comms += fp.moe_comms
    return InferenceLayer(ops, comms, fp.tokens, fp.attention_core)


def with_block_scaled_casts(ops: list[Op], fm: NumberFormats, moe_input_elements: float) -> list[Op]:
    """Insert the activation quantization of a W4A4 (NVFP4) pass: TensorRT-LLM's NVFP4 linear
    (``tensorrt_llm/_torch/modules/linear.py``, ``NVFP4LinearMethod.apply``) runs
    ``torch.ops.trtllm.fp4_quantize(input, input_scale, 16)`` as its own kernel on every 16-bit
    input it is handed (vLLM's CUTLASS NVFP4 path likewise, vllm-project/vllm PR #20646); the
    fused MoE quantizes its block input once before the permute and the fc2 input inside its
    activation kernel. A cast reads N 16-bit values and writes N·q bytes (E2M1 + one E4M3
    scale per 16, static per-tensor scale: no amax pass), 4 FLOPs per element."""
    out: list[Op] = []
    for op in ops:
        if op.name == "permute":
            n = moe_input_elements
            out.append(Op("moe_input.quantize_in", "elementwise", 4.0 * n, n * (ACT_BYTES + fm.input_bytes),
                          precision=fm.gemm))
        elif op.kind == "gemm" and op.precision == fm.gemm and not op.name.startswith("expert_"):
            n = op.m * op.k * op.batch
            out.append(Op(op.name + ".quantize_in", "elementwise", 4.0 * n, n * (ACT_BYTES + fm.input_bytes),
                          precision=fm.gemm))
        out.append(op)
    return out


def output_ops(model: ModelSpec, rows: float, tp: int) -> tuple[list[Op], list[Comm]]:
    """Last stage: :func:`~xlayer.workload.transformer.output_layer_ops` (16-bit) for the
    ``rows`` tokens whose next token is sampled (the last token of each sequence: inference
    engines do not compute prompt logits), vocabulary split over TP, then the logits
    all-gathered for sampling."""
    comms = [Comm("logits_allgather", "all_gather", rows * model.vocab * ACT_BYTES, "tp")]
    return output_layer_ops(model, rows, tp, "bf16"), comms
