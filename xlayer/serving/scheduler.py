"""Event-level simulator of continuous (in-flight) batching, as TensorRT-LLM and vLLM run it.

Every iteration the scheduler (1) keeps every admitted request that has finished its prompt
in the batch as a decode (one token each), (2) continues partially prefilled prompts and
admits waiting requests first come first served while the batch has a slot
(``max_batch_size``), the KV pool has the blocks the policy asks for, and the iteration's
token budget (``max_num_tokens``: decode tokens + prompt tokens) has room — a whole prompt
without chunked prefill, a chunk of the remaining budget with it, (3) runs the iteration for
the time :meth:`xlayer.serving.steptime.StepTimer.step_s` gives (generation-only iterations
padded to a CUDA-graph batch size), (4) hands out tokens: a request whose prompt completes
emits its first token at the end of that iteration (TTFT), each decode one more, and a
request with all its output tokens leaves and frees its blocks.

KV policy: ``no_evict`` reserves blocks for prompt + output at admission (TensorRT-LLM
GUARANTEED_NO_EVICT); ``max_utilization`` reserves the prompt's blocks and allocates a block
whenever a sequence crosses a block boundary; when none is free, the most recently admitted
request is preempted (blocks freed, recomputed later from its prompt and the tokens it had).

Iterations without prompt work repeat unchanged but for the context growing by one until
the next finish (or arrival, or block shortage): they are evaluated together as one numpy
call (the same per-iteration formula), so a run costs about one Python iteration per
admission or finish event, not per token.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xlayer.serving.engine import EngineConfig, KVPool
from xlayer.serving.steptime import StepTimer


@dataclass
class SimResult:
    """Per-request times (s) and totals of one simulated replica (rank)."""

    prompt: np.ndarray
    output: np.ndarray
    arrival: np.ndarray
    first_token_s: np.ndarray
    finish_s: np.ndarray
    iterations: int
    mixed_iterations: int
    preemptions: int
    max_running: int
    mean_running: float
    time_decode_only_s: float
    time_mixed_s: float
    events: int
    limit_counts: dict[str, int] = field(default_factory=dict)

    @property
    def makespan_s(self) -> float:
        return float(self.finish_s.max() - self.arrival.min())

    def ttft_s(self) -> np.ndarray:
        return self.first_token_s - self.arrival

    def tpot_s(self) -> np.ndarray:
        """(finish − first token)/(output − 1) per request with more than one output token."""
        ok = self.output > 1
        return (self.finish_s[ok] - self.first_token_s[ok]) / (self.output[ok] - 1)

    def latency_s(self) -> np.ndarray:
        return self.finish_s - self.arrival

    def window_tokens_per_s(self, lo: float = 0.25, hi: float = 0.75) -> float:
        """Output tokens/s in the middle of the run (ramp-up and drain left out): the output
        tokens of the requests that finish between lo and hi of the makespan over that time."""
        t0, span = float(self.arrival.min()), self.makespan_s
        a, b = t0 + lo * span, t0 + hi * span
        sel = (self.finish_s >= a) & (self.finish_s < b)
        return float(self.output[sel].sum()) / (b - a)


def simulate(timer: StepTimer, engine: EngineConfig, pool: KVPool, prompt: Any, output: Any,
             arrival: Any = None) -> SimResult:
    """Simulate the requests (``prompt``/``output`` token counts, scalars or arrays;
    ``arrival`` times, default all at 0 — offline maximum throughput) on one rank."""
    prompt = np.atleast_1d(np.asarray(prompt, dtype=np.int64))
    output = np.atleast_1d(np.asarray(output, dtype=np.int64))
    n = max(prompt.size, output.size, 1 if arrival is None else np.size(arrival))
    prompt = np.broadcast_to(prompt, (n,)).copy()
    output = np.broadcast_to(output, (n,)).copy()
    arrival = np.zeros(n) if arrival is None else np.broadcast_to(np.asarray(arrival, dtype=float), (n,)).copy()
    order = np.argsort(arrival, kind="stable")
    bs = pool.tokens_per_block
    max_bs = engine.max_batch_size
    budget_max = engine.max_num_tokens
    chunked = engine.chunked_prefill
    no_evict = engine.policy == "no_evict"
    sizes = engine.graph_sizes() if engine.cuda_graph_padding else ()
    max_graph = max(sizes) if sizes else 0

    gen = np.zeros(n, dtype=np.int64)          # output tokens emitted
    todo = prompt.copy()                       # prompt (or recompute) tokens still to prefill
    held = np.zeros(n, dtype=np.int64)         # blocks held
    total_pre = prompt.copy()                  # tokens of the current (re)prefill
    first = np.full(n, np.nan)
    finish = np.full(n, np.nan)
    queue: deque[int] = deque(int(i) for i in order)
    running = np.zeros(0, dtype=np.int64)     # admission order
    free = pool.blocks
    t = 0.0
    done = 0
    iters = mixed = preempt = events = 0
    t_dec = t_mix = 0.0
    max_run, run_time = 0, 0.0
    limits = {"batch limit": 0, "KV memory": 0, "token budget": 0, "queue empty": 0}

    while done < n:
        events += 1
        run = running
        dmask = todo[run] == 0
        dec_arr = run[dmask]                   # the decoding requests (array; a list only to preempt)
        budget = budget_max - int(dec_arr.size)
        groups: dict[tuple[int, int], int] = {}
        chunks: list[tuple[int, int]] = []
        for r in run[~dmask].tolist():  # the prefilling requests, in admission order
            if budget > 0:
                c = int(min(todo[r], budget)) if chunked else (int(todo[r]) if todo[r] <= budget else 0)
                if c > 0:
                    chunks.append((r, c))
                    budget -= c
        # admissions
        reason = "queue empty"
        admitted: list[int] = []
        while queue:
            r = queue[0]
            if arrival[r] > t + 1e-12:
                break
            if run.size + len(admitted) >= max_bs:
                reason = "batch limit"
                break
            need = int(math.ceil((todo[r] + (output[r] - gen[r] if no_evict else 1)) / bs))
            if need > free:
                reason = "KV memory"
                break
            if budget <= 0 or (not chunked and todo[r] > budget):
                reason = "token budget"
                break
            queue.popleft()
            admitted.append(r)
            total_pre[r] = todo[r]
            free -= need
            held[r] = need
            c = int(min(todo[r], budget))
            chunks.append((r, c))
            budget -= c
        if admitted:
            running = np.concatenate([running, np.asarray(admitted, dtype=np.int64)])
        if chunks or dec_arr.size:
            limits[reason] += 1
        if not chunks and not dec_arr.size:
            if queue and arrival[queue[0]] > t + 1e-12:  # wait for the next arrival
                t = float(arrival[queue[0]])
                continue
            raise ValueError(f"request {queue[0] if queue else '?'} can never be scheduled ({reason}): "
                             f"prompt {int(todo[queue[0]]) if queue else 0} tokens, budget {budget_max}, "
                             f"{pool.blocks} KV blocks")
        # max_utilization: blocks for the decode tokens of this iteration, preempting if short
        if not no_evict and dec_arr.size:
            decoding = dec_arr.tolist()
            while True:
                d = np.fromiter(decoding, dtype=np.int64, count=len(decoding))
                need = int(np.count_nonzero(-(-(prompt[d] + gen[d]) // bs) > held[d]))
                if need <= free or running.size <= 1:
                    break
                v = int(running[-1])
                running = running[:-1]
                free += int(held[v])
                held[v] = 0
                if v in decoding:
                    decoding.remove(v)
                chunks = [(r, c) for r, c in chunks if r != v]
                todo[v] = prompt[v] + gen[v]
                queue.appendleft(v)
                preempt += 1
            d = np.fromiter(decoding, dtype=np.int64, count=len(decoding))
            nb = -(-(prompt[d] + gen[d]) // bs)
            free -= int(np.sum(np.maximum(nb - held[d], 0)))
            held[d] = np.maximum(held[d], nb)
            dec_arr = d
        nd = int(dec_arr.size)
        ctx = (float(np.mean(prompt[dec_arr] + gen[dec_arr] - 1)) if nd else 0.0)
        for r, c in chunks:
            key = (c, int(total_pre[r] - todo[r]))
            groups[key] = groups.get(key, 0) + 1
        pre = [(float(s), float(c), float(cached)) for (c, cached), s in groups.items()]
        max_run = max(max_run, len(running))
        if not pre:
            # generation-only: padded CUDA graph; fast-forward to the next event
            pad = timer.graph_batch(nd, sizes) if (sizes and nd <= max_graph) else None
            dec = dec_arr
            k = int(np.min(output[dec] - gen[dec]))
            if queue and arrival[queue[0]] > t:
                k = max(1, k)
            if not no_evict:
                k = _steps_with_blocks(prompt[dec] + gen[dec] - 1, held[dec], free, bs, k)
            js = np.arange(k, dtype=float)
            dts = np.atleast_1d(timer.step_s(float(nd), ctx + js, (), pad))
            if queue and arrival[queue[0]] > t:
                cum = t + np.cumsum(dts)
                hit = int(np.searchsorted(cum, arrival[queue[0]]))
                if hit + 1 < k:
                    k = hit + 1
                    dts = dts[:k]
            dt = float(dts.sum())
            if not no_evict and k > 0:
                nb = np.ceil((prompt[dec] + gen[dec] - 1 + k) / bs).astype(np.int64)
                free -= int(np.sum(np.maximum(nb - held[dec], 0)))
                held[dec] = np.maximum(held[dec], nb)
            gen[dec] += k
            iters += k
            t_dec += dt
            run_time += dt * len(running)
            t += dt
        else:
            dt = float(timer.step_s(float(nd), ctx, pre))
            iters += 1
            mixed += 1
            t_mix += dt
            run_time += dt * len(running)
            t += dt
            if nd:
                gen[dec_arr] += 1
            for r, c in chunks:
                todo[r] -= c
                if todo[r] == 0:
                    gen[r] += 1
                    if np.isnan(first[r]):
                        first[r] = t
        # finishes
        run = running
        fin = (todo[run] == 0) & (gen[run] >= output[run])
        if fin.any():
            out = run[fin]
            finish[out] = t
            free += int(np.sum(held[out]))
            held[out] = 0
            done += int(out.size)
            running = run[~fin]
    total = max(t, 1e-30)
    return SimResult(prompt, output, arrival, first, finish, iters, mixed, preempt, max_run, run_time / total,
                     t_dec, t_mix, events, limits)


def _steps_with_blocks(length: np.ndarray, held: np.ndarray, free: int, bs: int, k: int) -> int:
    """Largest j ≤ k such that growing every sequence by j tokens needs at most ``free`` new
    blocks (at least 1: the caller has already secured the first step)."""
    def need(j: int) -> int:
        return int(np.sum(np.maximum(np.ceil((length + j) / bs).astype(np.int64) - held, 0)))
    if need(k) <= free:
        return k
    lo, hi = 1, k
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if need(mid) <= free:
            lo = mid
        else:
            hi = mid
    return lo
