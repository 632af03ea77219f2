"""Memory of inference on one accelerator: weights, KV cache, activation workspace.

* Weights: layer matrices at ``weight_bytes_per_param(precision)`` split over tp, norms
  replicated at 2 B, layers split over pp stages (the first ⌈L/p⌉ layers on the busiest
  stage); the 16-bit token embedding V·h/t on the first stage and the untied output layer
  V·h/t on the last (pp = 1: both on the one stage).
* KV cache (Pope et al. 2022, "Efficiently Scaling Transformer Inference", §2): per token
  and sequence 2·L_stage·(g/t)·d·kv_bytes (K and V of every layer of the stage).
* Workspace: the live tensors of one layer's forward for T tokens (16-bit): residual
  stream and normalized input 2·T·h each, QKV output T·(q+2kv)/t, FC1 output T·f₁/t and the
  activation output T·f/t, plus fp32 logits of the sampled rows V/t·4 on the last stage.
"""
from __future__ import annotations

import math

import numpy as np

from xlayer.workload.precision import kv_bytes_per_element, weight_bytes_per_param
from xlayer.workload.model import ModelSpec
from xlayer.workload.operators import ACT_BYTES


def stage_layers(layers: int, pp: int) -> int:
    """Layers on the busiest pipeline stage: ⌈L/p⌉."""
    return math.ceil(layers / pp)


def weight_bytes(model: ModelSpec, tp: int, pp: int, precision: str, ep: int = 1) -> dict[str, float]:
    """Weights held by the busiest stage, split into layers and embedding/output. With expert
    parallelism (``ep`` > 1, MoE) each rank holds E/ep of the routed experts whole and the
    rest of the layer split over tp (attention data parallel: tp = 1, replicated)."""
    wb = weight_bytes_per_param(precision)
    per_layer = (model.layer_params() - model.norm_params()) * wb / tp + model.norm_params() * ACT_BYTES
    if model.is_moe and ep > 1:
        routed = model.moe_layers * model.moe.experts * model.expert_params(model.moe.ffn_hidden) / model.layers
        per_layer -= routed * wb / tp
        per_layer += routed * wb / ep
    layers = stage_layers(model.layers, pp) * per_layer
    tok = model.vocab * model.hidden * ACT_BYTES / tp
    out = 0.0 if model.tied_embeddings else tok
    final_norm = model.hidden * ACT_BYTES
    edge = tok + out + final_norm if pp == 1 else max(tok, out + final_norm)
    return {"weights.layers": layers, "weights.embedding_output": edge}


def kv_bytes_per_token(model: ModelSpec, tp: int, pp: int, kv_precision: str) -> float:
    """KV-cache bytes per cached token of one sequence on the busiest stage:
    2·⌈L/p⌉·(g/t)·d·kv_bytes; multi-head latent attention caches one latent of r_kv + d_rope
    elements per token and layer for all heads, which every tensor-parallel rank holds whole
    (DeepSeek-V2 §2.1.2; vLLM and TensorRT-LLM replicate it over the attention TP ranks):
    ⌈L/p⌉·(r_kv + d_rope)·kv_bytes."""
    if model.mla is not None:
        return stage_layers(model.layers, pp) * (model.mla.kv_lora_rank + model.mla.qk_rope_head_dim) * \
            kv_bytes_per_element(kv_precision)
    return 2.0 * stage_layers(model.layers, pp) * model.kv_dim / tp * kv_bytes_per_element(kv_precision)


def kv_cache_bytes(model: ModelSpec, tp: int, pp: int, kv_precision: str, seqs: float, tokens: float) -> float:
    """KV cache of ``seqs`` sequences of ``tokens`` cached tokens each."""
    return seqs * cached_kv_tokens(model, tokens) * kv_bytes_per_token(model, tp, pp, kv_precision)


def cached_kv_tokens(model: ModelSpec, tokens):
    """Tokens of KV a sequence of ``tokens`` holds per layer, averaged over the layers: a
    sliding-window layer of w keys keeps only the last w (a cyclic window: TensorRT-LLM's
    ``max_attention_window``, vLLM's sliding-window KV manager), the others all of them:
    ((L − n)·tokens + n·min(tokens, w))/L. The busiest stage is taken to hold the average mix."""
    sw = model.sliding_window
    if sw is None:
        return tokens
    return ((model.layers - sw.layers) * tokens + sw.layers * np.minimum(tokens, sw.size)) / model.layers


def workspace_bytes(model: ModelSpec, tokens: float, rows_out: float, tp: int, all_rows: float = 0.0) -> float:
    """Peak transient activations of one layer forward over ``tokens`` tokens (see module
    docstring) plus fp32 logits of ``rows_out`` sampled rows, plus the 16-bit logits of
    ``all_rows`` positions when the stack's forward computes the output layer on every one."""
    h, f = model.hidden, model.ffn_hidden
    if model.is_moe:
        f = model.moe.ffn_hidden or f
    f1 = f * (2 if model.gated else 1) * (model.top_k if model.is_moe else 1)
    f2 = f * (model.top_k if model.is_moe else 1)
    live = 2 * h + (model.q_dim + 2 * model.kv_dim) / tp + f1 / tp + f2 / tp
    return ACT_BYTES * tokens * live + (4.0 * rows_out + ACT_BYTES * all_rows) * model.vocab / tp
