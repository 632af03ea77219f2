"""The one breakdown of an :class:`~xlayer.engine.result.IterationCost` (scalar): the busiest
rank's iteration split into terms named after the function that computed them, the memory
per accelerator by kind, and the operator rows of one layer. Predictions, reports, search,
the studies and the SCD commands all print these; none re-derives them."""
from __future__ import annotations

from xlayer.engine.result import IterationCost
from xlayer.mapping.layout import Layout
from xlayer.workload.model import ModelSpec

MOE_OPS = ("expert_", "router", "permute", "unpermute")


def time_breakdown_s(cost: IterationCost, layout: Layout, model: ModelSpec) -> dict[str, float]:
    """Seconds per iteration by term; they add up to ``cost.iteration_time_s`` (what the split
    does not cover, rounding of the stage imbalance, is ``pipeline_time_s.imbalance``)."""
    d = cost.detail
    if d is None:
        raise ValueError("time_breakdown_s needs evaluate_training(..., detail=True)")
    m = cost.microbatches
    lay, st = d.layer, d.stages
    busy = st.busiest()
    scale = m * st.layers_of(busy)
    by_kind: dict[str, float] = {}
    for kind in d.kinds:  # the layer kinds (dense/MoE, full/window), weighted by their share
        for op in kind.work.fwd + kind.work.bwd:
            key = f"compute.{op.kind}"
            if op.name.startswith(MOE_OPS):
                key = "compute.moe_" + ("grouped_gemm" if op.kind == "gemm" and op.name.startswith("expert_")
                                        else op.kind)
            by_kind[key] = by_kind.get(key, 0.0) + kind.fraction * kind.times[op.name].time_s
    tb: dict[str, float] = {k: float(v * scale) for k, v in sorted(by_kind.items())}
    # an eager stack's layer takes max(GPU time, host ops x host dispatch) per direction
    # (xlayer.engine.training.host_bounded_s): the part the host adds beyond the kernels above
    host_excess = float(lay.compute_fwd_s + lay.compute_bwd_s) - sum(by_kind.values())
    if host_excess > 1e-9 * max(1.0, sum(by_kind.values())):
        tb["host.eager_dispatch_exposed"] = float(host_excess * scale)
    tb["compute.recompute"] = (lay.recompute_s + lay.tp_recompute_s) * scale
    tb["comm.tp_exposed"] = (lay.tp_fwd_s + lay.tp_bwd_s) * scale
    if model.is_moe:
        tb["comm.ep_all_to_all_exposed"] = (lay.ep_fwd_s + lay.ep_bwd_s) * scale
        host = (lay.host_fwd_s + lay.host_bwd_s) * scale
        if float(host) > 0.0:  # moe_host_exposed_s: the host issuing an MoE layer's operations
            tb["host.moe_issue_exposed"] = host
    if layout.cp > 1:
        tb["comm.cp_exposed"] = (lay.cp_fwd_s + lay.cp_bwd_s) * scale
    if layout.zero >= 3:
        tb["comm.fsdp_exposed"] = (lay.fsdp_fwd_s + lay.fsdp_bwd_s) * scale
    if layout.pp > 1:
        tb["comm.pp_p2p"] = st.p2p_s * m
    if layout.pp == 1:
        edge = st.embedding_s + st.logits_s
    else:
        edge = {"first": st.embedding_s, "last": st.logits_s, "mid": 0.0}[busy]
    tb["compute.embedding_logits"] = edge * m
    if layout.algorithm == "local" and layout.pp > 1 and busy == "first":
        tb["compute.local_aux_head"] = float(st.local_aux_s - st.backlink_s) * m
        if layout.backlink_layers:
            tb["compute.backlink"] = float(st.backlink_s) * m
    tb["pipeline_time_s.bubble"] = cost.bubble_s
    tb["comm.dp_exposed"] = cost.dp_exposed_s
    if layout.offload_layers:
        tb["comm.offload_exposed"] = float(d.offload_s) * m
    if layout.zero >= 3:
        tb["comm.fsdp_embedding_output"] = cost.fsdp_edges_s
    if layout.pp > 1 and model.tied_embeddings:
        tb["comm.embedding_grad_sync"] = cost.embedding_sync_s
    tb["optimizer_step"] = cost.optimizer_s
    tb = {k: float(v) for k, v in tb.items()}
    rest = float(cost.iteration_time_s) - sum(tb.values())
    if abs(rest) > 1e-12:
        tb["pipeline_time_s.imbalance"] = rest
    return tb


def memory_breakdown_bytes(cost: IterationCost) -> dict[str, float]:
    """Bytes per accelerator at the step's peak: model states of the layers by kind and of the
    embedding/output layer, activations of the layers and of the loss (busiest rank),
    communication buffers. Where the stack allocates its states per step
    (:func:`xlayer.engine.training.step_peak_bytes`) only what is alive at the peak is listed:
    at the backward's start no gradient but the output layer's, in the optimizer step no
    activation or per-step weight copy but the optimizer's temporary; the sum is the peak."""
    mem = cost.detail.memory
    pk = mem.step
    w, g, o = float(mem.weights), float(mem.gradients), float(mem.optimizer)
    act, logits, buf = float(mem.activations) - float(mem.logits), float(mem.logits), float(mem.comm_buffers)
    extra: dict[str, float] = {}
    if pk is not None and pk.per_step:
        if float(pk.backward_start) >= float(pk.optimizer_step):
            g = 0.0
            extra["step_peak_bytes.output_layer_gradient"] = float(pk.head_grad)
        else:
            w = 0.0 if pk.weights_transient else w
            act = logits = buf = 0.0
            extra["step_peak_bytes.optimizer_temporary"] = float(pk.optimizer_temp)
    if pk is not None and float(pk.ddp_buckets):
        extra["step_peak_bytes.ddp_buckets"] = float(pk.ddp_buckets)
    if pk is not None and pk.workspace:
        extra["step_peak_bytes.library_workspace"] = float(pk.workspace)
    states, alive = float(mem.states), w + g + o
    layer_part = (states - float(mem.edge_states)) / states if states else 0.0
    out = {"model_state_bytes.weights": w * layer_part,
           "model_state_bytes.gradients": g * layer_part,
           "model_state_bytes.optimizer": o * layer_part,
           "model_state_bytes.embedding_output": alive * (1.0 - layer_part),
           "layer_activation_bytes.activations": act,
           "logits_activation_bytes.loss": logits,
           "communication_buffer_bytes": buf}
    out.update(extra)
    return out


def op_rows(cost: IterationCost) -> list[dict[str, float | str]]:
    """One row per operator of the main layer kind (one micro-batch, one rank)."""
    d = cost.detail
    rows: list[dict[str, float | str]] = []
    for op in d.work.fwd + d.work.bwd:
        t = d.ops[op.name]
        rows.append({"name": op.name, "kind": op.kind, "phase": "bwd" if "." in op.name else "fwd",
                     "time_s": float(t.time_s), "flops": float(t.flops), "bytes": float(t.bytes), "bound": t.bound})
    return rows


def layer_times(cost: IterationCost) -> dict[str, float]:
    """The average layer's terms (seconds), for printing."""
    lay = cost.detail.layer
    return {k: float(getattr(lay, k)) for k in lay.__dataclass_fields__ if k.endswith("_s")}


def coarse_shares(tb: dict[str, float], rows: list[dict]) -> dict[str, float]:
    """An iteration in five parts (seconds): compute-bound operators, memory-bound operators,
    exposed communication, pipeline bubble, optimizer step, and the rest (stage imbalance).

    The ``compute.*`` terms of the breakdown are divided between compute-bound and memory-bound
    in the ratio of the per-layer operator times whose roofline bound is ``compute`` versus
    ``hbm``/``l2`` (``rows`` from :func:`op_rows`)."""
    comp_total = sum(v for k, v in tb.items() if k.startswith("compute."))
    by_bound = {"compute": 0.0, "memory": 0.0}
    for r in rows:
        by_bound["compute" if r["bound"] in ("compute", "mixed") else "memory"] += float(r["time_s"])
    tot = sum(by_bound.values()) or 1.0
    out = {"compute_bound_s": comp_total * by_bound["compute"] / tot,
           "memory_bound_s": comp_total * by_bound["memory"] / tot,
           "comm_exposed_s": sum(v for k, v in tb.items() if k.startswith("comm.")),
           "bubble_s": tb.get("pipeline_time_s.bubble", 0.0),
           "optimizer_s": tb.get("optimizer_step", 0.0)}
    out["other_s"] = sum(tb.values()) - sum(out.values())
    return out
