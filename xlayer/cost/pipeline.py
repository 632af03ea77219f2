"""Pipeline schedules: time of one iteration from per-rank micro-batch times.

1F1B (Narayanan et al. 2021 §2.2): m micro-batches through p stages take m·R + (p−1)·R,
where R is one micro-batch's forward + backward on one stage; the (p−1)·R is the bubble.
Interleaved 1F1B with v chunks per rank shrinks the bubble to (p−1)·R/v.
With unequal stages the slowest rank sets the pace of the steady state and the fill/drain
is paid at the average stage time:

    T = m·R_max + (p−1)·R_mean / v
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PipelineTime:
    steady_s: Any
    bubble_s: Any


def pipeline_time_s(microbatches: Any, pp: Any, vp: Any, rank_max_s: Any, rank_mean_s: Any) -> PipelineTime:
    """Steady-state and bubble parts of the iteration (see module docstring)."""
    return PipelineTime(steady_s=microbatches * rank_max_s, bubble_s=(pp - 1) * rank_mean_s / vp)
