"""Closed-form steady state of continuous batching at a concurrency B (the search's path).

With B sequences in the batch, every iteration emits B tokens, and in steady state a share
1/O of the sequences is in its prompt iteration (uniform requests of I prompt and O output
tokens; every request spends one iteration on its prompt — or ⌈I/C⌉ with chunks of C tokens —
and O − 1 decoding). Per iteration:

* decode: b = B·(O − 1)/O sequences at mean cached context I + (O − 2)/2 (generation step k,
  k = 1 … O−1, finds I + k − 1 tokens cached);
* prefill: B/O prompts of I tokens (no chunking), or B·I/(O·C) chunks of C tokens at mean
  cached (I − C)/2 (chunked, C = max_num_tokens − b);
* a share f = min(1, B/O) of the iterations carries prompts (B/O < 1: one prompt group of
  B/(O·f) = 1 per carrying iteration) and 1 − f run generation-only, padded to a CUDA-graph
  batch size:

    t̄ = (1 − f)·t(b, padded) + f·t(b, prompts B/(O·f))

throughput = B / t̄ tokens/s per rank, TPOT = t̄, TTFT = the iteration that carries the
prompt (⌈I/C⌉·t̄ chunked). B is the least of the engine's max_batch_size, the requests the KV
pool holds (blocks for I + O each, no-evict; I + O/2 on average with preemption) and the
requests there are. ``B`` may be a numpy array (one deployment, many concurrencies).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from xlayer.serving.engine import EngineConfig, KVPool
from xlayer.serving.steptime import StepTimer


def kv_concurrency(pool: KVPool, engine: EngineConfig, I: float, O: float) -> int:
    """Requests the KV pool holds at once: blocks / blocks per request (I + O reserved with
    no-evict, I + O/2 on average with preemption)."""
    per = I + O if engine.policy == "no_evict" else I + O / 2.0
    return int(pool.blocks // max(1, math.ceil(per / pool.tokens_per_block)))


@dataclass
class SteadyState:
    concurrency: Any
    iteration_s: Any
    tokens_per_s: Any        # output tokens/s of one rank group
    tpot_s: Any
    ttft_s: Any
    prefill_share: Any       # f


def steady_state(timer: StepTimer, engine: EngineConfig, I: float, O: float, B: Any) -> SteadyState:
    """Steady-state iteration time, throughput, TPOT and TTFT at concurrency ``B`` (module
    docstring)."""
    B = np.asarray(B, dtype=float)
    O = float(O)
    I = float(I)
    b = B * (O - 1.0) / O
    ctx = I + (O - 2.0) / 2.0 if O > 1 else I
    sizes = engine.graph_sizes() if engine.cuda_graph_padding else ()
    if engine.chunked_prefill:
        C = np.maximum(engine.max_num_tokens - b, 1.0)
        C = np.minimum(C, I)
        chunks = B * I / (O * C)
        f = np.minimum(1.0, chunks)
        groups = chunks / np.maximum(f, 1e-12)
        mixed = timer.step_s(b, ctx, [])  # decode part; prompt chunks added per element below
        mixed = _mixed(timer, b, ctx, groups, C, (I - C) / 2.0)
        n_iter = np.ceil(I / C)
    else:
        f = np.minimum(1.0, B / O)
        groups = B / (O * np.maximum(f, 1e-12))
        mixed = _mixed(timer, b, ctx, groups, np.full_like(B, I), np.zeros_like(B))
        n_iter = np.ones_like(B)
    pad = np.array([timer.graph_batch(int(math.ceil(x)), sizes) if sizes and x <= max(sizes) else x
                    for x in np.atleast_1d(B)], dtype=float).reshape(B.shape) if sizes else None
    dec = timer.step_s(B, ctx, (), pad)
    t = (1.0 - f) * dec + f * mixed
    ttft = n_iter * (mixed if not engine.chunked_prefill else t)
    return SteadyState(B, t, B / t, t, ttft, f)


def _mixed(timer: StepTimer, b, ctx, groups, n, cached):
    """t(b decodes + ``groups`` prompt chunks of n tokens after ``cached``), elementwise."""
    b, groups, n, cached = np.broadcast_arrays(np.asarray(b, float), np.asarray(groups, float),
                                               np.asarray(n, float), np.asarray(cached, float))
    out = np.empty(b.shape)
    for i in np.ndindex(b.shape):
        out[i] = timer.step_s(float(b[i]), ctx, [(float(groups[i]), float(n[i]), float(cached[i]))])
    return out
