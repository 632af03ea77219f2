"""The work of one training iteration over the whole system, counted from the engine's own
result (:class:`~xlayer.engine.result.IterationCost` with detail): FLOPs per arithmetic,
L2 and HBM bytes, and the bytes sent over the scale-up and scale-out networks. Energy
(:mod:`xlayer.cost.energy`) prices these counts; it computes no volume of its own."""
from __future__ import annotations

from xlayer.cost.collectives import ranks_in_domain
from xlayer.cost.compute import op_time
from xlayer.cost.energy import WorkCounts, collective_bytes, flop_precision
from xlayer.engine.result import IterationCost
from xlayer.engine.training import (WEIGHT_BYTES, layer_params_rank, optimizer_step_bytes_per_param,
                                    recipe_for)
from xlayer.hardware.spec import System
from xlayer.mapping.layout import Layout
from xlayer.workload.model import ModelSpec
from xlayer.workload.operators import ACT_BYTES
from xlayer.workload.training_ops import embedding_work, logits_work, recompute_ops
from xlayer.workload.precision import gemm_precision


def iteration_counts(cost: IterationCost, model: ModelSpec, system: System, precision: str, global_batch: int,
                     layout: Layout, recipe=None) -> WorkCounts:
    """System totals of one iteration (scalar layout).

    Each layer kind's ops (forward, backward, recompute) run (its share of L)·m·dp·tp·cp times
    over the system (each of the tp·cp ranks its shard, each of dp replicas m micro-batches);
    the embedding and output layer m·dp·tp·cp times; the optimizer moves
    ``optimizer_step_bytes_per_param`` per parameter of every rank's shard. Communication: each
    layer kind's collectives on their own groups (tp, ep, etp), the pipeline sends, the data-
    parallel gradient reduction over dp·cp (experts over their expert-data-parallel group) and
    the ZeRO-3 gathers, each rank's bytes split into scale-up and scale-out
    (:func:`~xlayer.cost.energy.collective_bytes`)."""
    d = cost.detail
    if d is None:
        raise ValueError("iteration_counts needs evaluate_training(..., detail=True)")
    recipe = recipe or recipe_for(model, precision)
    acc = system.accelerator
    try:
        l2_bw = acc.level("l2").achievable_bytes_per_s
    except KeyError:
        l2_bw = 0.0
    L = layout
    tp, pp, dp, cp, micro, ep, etp = L.tp, L.pp, L.dp, L.cp, L.micro, L.ep, L.etp
    m = int(cost.microbatches)
    D = system.job_domain_size
    gp = gemm_precision(precision)
    flops: dict[str, float] = {}
    l2 = hbm = 0.0

    def take(ops_times, mult: float) -> None:
        nonlocal l2, hbm
        for op, t in ops_times:
            fp = flop_precision(op, precision)
            flops[fp] = flops.get(fp, 0.0) + float(t.flops) * mult
            hbm += float(t.bytes) * mult
            l2 += float(t.l2_s) * l2_bw * mult

    groups = {"tp": (tp, ranks_in_domain(tp, 1, D)), "ep": (ep, ranks_in_domain(ep, etp, D)),
              "etp": (etp, ranks_in_domain(etp, 1, D))}
    up = out = 0.0
    for kind in d.kinds:
        inst = kind.fraction * model.layers * m * dp * tp * cp
        take([(op, kind.times[op.name]) for op in kind.work.fwd + kind.work.bwd], inst)
        rc_ops, rc_comms = recompute_ops(kind.work, L.recompute, recipe.selective_policy)
        take([(op, kind.times[op.name]) for op in rc_ops], inst)
        for c in list(kind.work.fwd_comms) + list(kind.work.bwd_comms) + list(rc_comms):
            n, n_in = groups[c.group]
            u, o = collective_bytes(c.collective, float(c.bytes), n, n_in)
            up += u * inst
            out += o * inst
    edge = embedding_work(model, micro, tp, cp)
    lf, lb = logits_work(model, micro, tp, cp, gp, recipe.eager_loss)
    take([(o, op_time(o, acc)) for o in edge + lf + lb], m * dp * tp * cp)
    world = tp * pp * dp * cp
    dense_w, expert_w = layer_params_rank(model, tp, ep, etp)
    p_rank = float(d.params_rank)
    p_expert = float(d.params_layers_rank) * (expert_w / (dense_w + expert_w)) if expert_w else 0.0
    p_dense = p_rank - p_expert
    edp = tp * dp * cp // (ep * etp)
    dpc = dp * cp
    opt_params = p_dense / (dpc if L.zero >= 1 else 1) + p_expert / (edp if L.zero >= 1 else 1)
    hbm += opt_params * optimizer_step_bytes_per_param(precision, getattr(recipe, "optimizer_bytes", None)) * world

    # pipeline sends: activation forward and gradient backward, 1/t per tensor rank, per boundary
    if pp > 1:
        T = micro * model.seq_len / cp
        act = T * model.hidden * ACT_BYTES / tp
        p2p_in = ranks_in_domain(2, tp * cp * dp, D)
        sends = 2.0 * act * (pp * L.vp - 1) * m * dp * tp * cp
        if p2p_in >= 2:
            up += sends
        else:
            out += sends
    gb = recipe.grad_bytes
    for params, n, stride in ((p_dense, dpc, tp), (p_expert, edp, ep * etp)):
        if n <= 1 or params <= 0:
            continue
        n_in = ranks_in_domain(n, stride, D)
        if L.zero == 0:
            parts = [("all_reduce", params * gb)]
        elif L.zero == 1:
            parts = [("reduce_scatter", params * gb), ("all_gather", params * WEIGHT_BYTES)]
        elif L.zero == 2:
            parts = [("reduce_scatter", m * params * gb), ("all_gather", params * WEIGHT_BYTES)]
        else:  # per layer: gather before forward and backward, reduce-scatter after backward, per micro-batch
            parts = [("all_gather", 2.0 * m * params * WEIGHT_BYTES), ("reduce_scatter", m * params * gb)]
        for coll, size in parts:
            u, o = collective_bytes(coll, size, n, n_in)
            up += u * world
            out += o * world
    tokens = float(global_batch * model.seq_len)
    return WorkCounts(float(cost.iteration_time_s), int(system.count), flops, l2, hbm, up, out, tokens)
