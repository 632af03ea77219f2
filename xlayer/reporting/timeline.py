"""Pipeline timeline (Gantt) of one iteration, computed from the layout.

Each rank runs its forward (F) and backward (B) blocks in the order of Megatron-LM's
schedule (``forward_backward_pipelining_with/without_interleaving``):

* 1F1B (v = 1): rank r does p − r − 1 warm-up forwards, then alternates one forward and one
  backward, then drains the remaining backwards.
* Interleaved (v > 1): rank r holds chunks r, r + p, …; forward virtual micro-batch k is
  chunk ⌊k/p⌋ mod v of micro-batch ⌊k/(pv)⌋·p + k mod p (backwards visit the chunks in
  reverse); warm-up (p − r − 1)·2 + (v − 1)·p forwards, then 1F1B, then the drain.

A block starts when its rank is free and its input is ready (forward of the previous
global stage, backward of the next one); p2p transfers are not drawn. With equal stages
this reproduces the bubble of ``xlayer.cost.pipeline.pipeline_time_s``:
1F1B ends at (m + p − 1)·(F + B), interleaved at m·(F + B) + (p − 1)·(F + B)/v.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from xlayer.errors import InputError


@dataclass(frozen=True)
class Block:
    rank: int
    phase: str  # "F" or "B"
    micro: int
    chunk: int  # virtual chunk on this rank (0 … v−1)
    start_s: float
    end_s: float


def stage_of(block: Block, pp: int) -> int:
    """Global stage index of the block's model chunk (chunk·p + rank)."""
    return block.chunk * pp + block.rank


def _virtual(k: int, pp: int, vp: int, forward: bool) -> tuple[int, int]:
    group, within = divmod(k, pp * vp)
    chunk = within // pp
    if not forward:
        chunk = vp - 1 - chunk
    return group * pp + within % pp, chunk


def rank_order(rank: int, pp: int, vp: int, m: int) -> list[tuple[str, int, int]]:
    """The (phase, micro-batch, chunk) sequence rank ``rank`` executes (module docstring)."""
    total = m * vp
    if vp == 1:
        warm = min(pp - rank - 1, m)
    else:
        warm = min((pp - rank - 1) * 2 + (vp - 1) * pp, total)
    order: list[tuple[str, int, int]] = []
    for k in range(warm):
        order.append(("F", *_virtual(k, pp, vp, True)))
    for i in range(total - warm):
        order.append(("F", *_virtual(warm + i, pp, vp, True)))
        order.append(("B", *_virtual(i, pp, vp, False)))
    for i in range(total - warm, total):
        order.append(("B", *_virtual(i, pp, vp, False)))
    return order


def pipeline_timeline(pp: int, vp: int, m: int, fwd_s: float | Sequence[float],
                      bwd_s: float | Sequence[float]) -> list[Block]:
    """Blocks of one iteration. ``fwd_s``/``bwd_s``: one micro-batch through one model chunk,
    either one number or one per global stage (index chunk·p + rank)."""
    if vp > 1 and m % pp:
        raise InputError("parallel.vp", vp, f"the interleaved schedule needs microbatches={m} to be a multiple of pp={pp}")
    n_stages = pp * vp
    F = [float(fwd_s)] * n_stages if isinstance(fwd_s, (int, float)) else [float(x) for x in fwd_s]
    B = [float(bwd_s)] * n_stages if isinstance(bwd_s, (int, float)) else [float(x) for x in bwd_s]
    if len(F) != n_stages or len(B) != n_stages:
        raise ValueError(f"need {n_stages} stage times, got {len(F)} and {len(B)}")
    orders = [rank_order(r, pp, vp, m) for r in range(pp)]
    pos = [0] * pp
    free = [0.0] * pp
    done: dict[tuple[str, int, int], float] = {}  # (phase, micro, global stage) -> end
    blocks: list[Block] = []
    remaining = sum(len(o) for o in orders)
    while remaining:
        progressed = False
        for r in range(pp):
            while pos[r] < len(orders[r]):
                phase, mb, chunk = orders[r][pos[r]]
                g = chunk * pp + r
                if phase == "F":
                    dep = ("F", mb, g - 1) if g > 0 else None
                else:
                    dep = ("B", mb, g + 1) if g < n_stages - 1 else ("F", mb, g)
                if dep is not None and dep not in done:
                    break
                ready = done[dep] if dep is not None else 0.0
                start = max(free[r], ready)
                end = start + (F[g] if phase == "F" else B[g])
                done[(phase, mb, g)] = end
                free[r] = end
                blocks.append(Block(r, phase, mb, chunk, start, end))
                pos[r] += 1
                remaining -= 1
                progressed = True
        if not progressed:  # cannot happen for the schedules above; guard against a hang
            raise RuntimeError("pipeline schedule deadlocked")
    return blocks


def chunk_layers(layers: int, pp: int, vp: int) -> list[int]:
    """Layers of each global stage: ⌊L/pv⌋ each, the L mod pv extra layers one each to the
    first stages (docs/training-model.md, "Pipeline and iteration")."""
    n = pp * vp
    base, extra = divmod(layers, n)
    return [base + (1 if i < extra else 0) for i in range(n)]
