"""The typed result of the cost engine: one training iteration on one layout (or the same
fields as numpy arrays, one entry per layout, on the vectorized path).

Every field is in SI units and named after what it is; the breakdown a prediction prints is
built from these fields (xlayer.prediction.training), never from string keys.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Num = Any  # float or numpy array (vectorized path)


@dataclass(frozen=True)
class LayerTimes:
    """One average layer, one micro-batch, on one rank (seconds): compute and the exposed
    part of each collective (the layer kinds of :func:`xlayer.engine.training.layer_kinds`
    weighted by how many layers they are)."""

    compute_fwd_s: Num
    compute_bwd_s: Num
    recompute_s: Num
    tp_fwd_s: Num
    tp_bwd_s: Num
    tp_recompute_s: Num
    cp_fwd_s: Num
    cp_bwd_s: Num
    ep_fwd_s: Num
    ep_bwd_s: Num
    fsdp_fwd_s: Num
    fsdp_bwd_s: Num
    rc_flops: Num = 0.0
    fwd_flops: Num = 0.0
    # host issue time an MoE layer adds (moe_host_exposed_s), forward and backward
    host_fwd_s: Num = 0.0
    host_bwd_s: Num = 0.0


@dataclass(frozen=True)
class StageTimes:
    """Per-micro-batch time of the first, a middle and the last pipeline rank, and their
    layer counts; the extras of the edge stages and the point-to-point sends."""

    layers_first: Num
    layers_mid: Num
    layers_last: Num
    rank_first_s: Num
    rank_mid_s: Num
    rank_last_s: Num
    rank_mean_s: Num
    p2p_s: Num
    embedding_s: Num
    logits_s: Num
    local_aux_s: Num
    backlink_s: Num

    def busiest(self) -> str:
        """'first' | 'mid' | 'last' (scalar results)."""
        ranks = {"first": float(self.rank_first_s), "last": float(self.rank_last_s), "mid": float(self.rank_mid_s)}
        return max(ranks, key=ranks.get)

    def layers_of(self, rank: str) -> Num:
        return {"first": self.layers_first, "mid": self.layers_mid, "last": self.layers_last}[rank]


@dataclass(frozen=True)
class MemoryTerms:
    """Bytes per accelerator on the busiest rank."""

    weights: Num
    gradients: Num
    optimizer: Num
    activations: Num
    activations_first_rank: Num
    activation_per_layer: Num
    inflight_chunks: Num
    comm_buffers: Num
    # model states of the embedding / output layer alone (the rest is the layers')
    edge_states: Num = 0.0
    # the loss's share of ``activations`` (logits_activation_bytes) when the busiest rank has it
    logits: Num = 0.0
    # the step's peak (xlayer.engine.training.StepPeak; None: every term alive all step)
    step: Any = None

    @property
    def states(self) -> Num:
        return self.weights + self.gradients + self.optimizer


@dataclass(frozen=True)
class LayerKind:
    """One kind of layer (dense/MoE FFN, full/window attention): its share of the layers, its
    operators and their times."""

    fraction: float
    work: Any        # xlayer.workload.operators.LayerWork
    times: dict      # op name -> xlayer.cost.compute.OpTime


@dataclass(frozen=True)
class CostDetail:
    """What the scalar path adds for breakdowns, reports and energy."""

    ops: dict                    # op name -> OpTime of the main layer kind
    work: Any                    # LayerWork of the main layer kind
    recompute_ops: list
    layer: LayerTimes
    kinds: tuple[LayerKind, ...]
    stages: StageTimes
    memory: MemoryTerms
    offload_s: Num
    dp_raw_s: Num
    params_rank: Num
    params_layers_rank: Num
    flops_model: Num


@dataclass(frozen=True)
class IterationCost:
    """Time and memory of one training iteration (formulas in xlayer.engine.training)."""

    iteration_time_s: Num
    memory_bytes: Num
    mfu: Num
    hfu: Num
    microbatches: Num
    layer_forward_time_s: Num
    layer_backward_time_s: Num
    layer_fwd_bwd_time_s: Num
    steady_s: Num
    bubble_s: Num
    dp_exposed_s: Num
    optimizer_s: Num
    embedding_sync_s: Num
    fsdp_edges_s: Num
    detail: CostDetail | None = field(default=None, repr=False)

    def value(self, name: str) -> Num:
        """A top-level field by name (the vectorized path returns the ones a caller asks for)."""
        if name == "detail" or name not in self.__dataclass_fields__:
            raise KeyError(name)
        return getattr(self, name)
