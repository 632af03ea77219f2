"""Scalar prediction of a training case: resolve open choices, check the layout, evaluate,
and return a typed result whose breakdown entries are named after the functions that
computed them."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from xlayer.errors import InputError
from xlayer.mapping.layout import Layout, check_layout
from xlayer.predict.case import Case
from xlayer.predict.training import GIB, evaluate_training, recipe_for

MEMORY_HEADROOM = 1.0  # a layout "fits" when its footprint is at most the usable HBM


@dataclass
class TrainingPrediction:
    case_id: str
    layout: Layout
    iteration_time_s: float
    memory_bytes: float
    mfu: float
    hfu: float
    tokens_per_s: float
    time_breakdown_s: dict[str, float]
    memory_breakdown_bytes: dict[str, float]
    layer: dict[str, float]
    ops: list[dict[str, Any]]
    assumptions: list[str]
    fits_memory: bool
    capacity_bytes: float
    metrics: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.case_id, "kind": "training", "layout": self.layout.model_dump(),
            "iteration_time_s": self.iteration_time_s, "memory_gib": self.memory_bytes / GIB,
            "capacity_gib": self.capacity_bytes / GIB, "fits_memory": self.fits_memory,
            "mfu": self.mfu, "hfu": self.hfu, "tokens_per_s": self.tokens_per_s,
            "time_breakdown_s": self.time_breakdown_s,
            "memory_breakdown_gib": {k: v / GIB for k, v in self.memory_breakdown_bytes.items()},
            "layer": self.layer, "ops": self.ops, "assumptions": self.assumptions,
            "metrics": self.metrics,
        }


def _eval(case: Case, layout: Layout, recipe, detail=False):
    system = case.system_spec()
    return evaluate_training(case.model, system, case.precision, case.batch.global_, layout.tp, layout.pp,
                             layout.dp, layout.cp, layout.vp, layout.micro, layout.sp, layout.recompute,
                             layout.zero, layout.dp_overlap, recipe, detail=detail, tp_overlap=layout.tp_overlap,
                             algorithm=layout.algorithm, backlink_layers=layout.backlink_layers)


def resolve_layout(case: Case) -> tuple[Layout, list[str]]:
    """Fill the fields the source left null with what a practitioner would choose, and say so.

    dp = count/(tp·pp·cp); sp on when tp > 1; micro-batch 1 with pipelining (most micro-batches,
    smallest bubble), else the largest divisor of global/dp up to 16 that fits; recompute the
    cheapest of none → selective → full that fits; ZeRO the lowest stage that fits."""
    P = case.parallel
    notes: list[str] = []
    count = case.system.count
    gb = case.batch.global_
    dp = P.dp
    if dp is None:
        denom = P.tp * P.pp * (P.cp or 1)
        if count % denom:
            raise InputError("parallel", f"tp*pp*cp={denom}", f"tp*pp*cp={denom} does not divide system.count={count}")
        dp = count // denom
        notes.append(f"parallel.dp={dp} (system.count/(tp*pp*cp))")
    sp = P.sp
    if sp is None:
        sp = P.tp > 1
        notes.append(f"parallel.sp={sp} (on whenever tp > 1)")
    if P.ep not in (None, 1):
        raise InputError("parallel.ep", P.ep, "expert parallelism is not modelled yet; use ep: 1")
    base = dict(tp=P.tp, pp=P.pp, dp=dp, cp=P.cp or 1, vp=P.vp or 1, sp=sp,
                dp_overlap=bool(P.dp_overlap) if P.dp_overlap is not None else False,
                tp_overlap=bool(P.tp_overlap) if P.tp_overlap is not None else True,
                algorithm=P.algorithm, backlink_layers=P.backlink_layers)
    recipe = recipe_for(case.model, case.precision)
    capacity = case.system_spec().accelerator.hbm.capacity_bytes * MEMORY_HEADROOM

    micro_choices = [case.batch.micro] if case.batch.micro else None
    if micro_choices is None:
        per_dp = gb // dp if gb % dp == 0 else 1
        if P.pp > 1:
            micro_choices = [1]
        else:
            micro_choices = [d for d in (16, 8, 4, 2, 1) if per_dp % d == 0] or [1]
    rc_choices = [P.recompute] if P.recompute else (
        ["none", "selective", "full"] if recipe.attention == "classic" else ["none", "full"])
    zero_choices = [P.zero] if P.zero is not None else [0, 1, 2, 3]

    chosen = None
    first_valid = None
    for micro in micro_choices:
        for rc in rc_choices:
            for z in zero_choices:
                lay = Layout(**base, micro=micro, recompute=rc, zero=z)
                check_layout(lay, case.model, count, gb)
                if first_valid is None:
                    first_valid = lay
                mem = _eval(case, lay, recipe)["memory_bytes"]
                if mem <= capacity:
                    chosen = lay
                    break
            if chosen:
                break
        if chosen:
            break
    if chosen is None:
        chosen = Layout(**base, micro=micro_choices[-1], recompute=rc_choices[-1], zero=zero_choices[-1])
        check_layout(chosen, case.model, count, gb)
    if case.batch.micro is None:
        notes.append(f"batch.micro={chosen.micro} ({'pipelining: most micro-batches' if P.pp > 1 else 'largest that fits'})")
    if P.recompute is None:
        notes.append(f"parallel.recompute={chosen.recompute} (cheapest that fits memory)")
    if P.zero is None:
        notes.append(f"parallel.zero={chosen.zero} (lowest stage that fits memory)")
    return chosen, notes + list(recipe.notes)


def predict_training(case: Case, layout: Layout | None = None, energy: bool = True) -> TrainingPrediction:
    """Predict one training iteration of ``case`` (optionally with an explicit layout).
    ``energy`` adds the energy metrics (``xlayer.cost.energy.training_energy``)."""
    if case.kind != "training":
        raise InputError("kind", case.kind, "predict_training needs kind: training")
    notes: list[str] = list(case.model.defaults_taken)
    if layout is None:
        layout, more = resolve_layout(case)
        notes += more
    else:
        check_layout(layout, case.model, case.system.count, case.batch.global_)
    recipe = recipe_for(case.model, case.precision)
    r = _eval(case, layout, recipe, detail=True)
    d = r["detail"]
    system = case.system_spec()
    acc = system.accelerator
    m = r["microbatches"]

    # split the busiest rank's steady state into its parts, per micro-batch × m
    ops = d["ops"]
    work = d["work"]
    lay = d["layer"]
    st = d["stages"]
    n_busy = st["layers_first"] if st["rank_first_s"] >= st["rank_last_s"] else st["layers_last"]
    busy_is_first = st["rank_first_s"] >= st["rank_last_s"]
    by_kind: dict[str, float] = {}
    for op in work.fwd + work.bwd:
        key = f"compute.{op.kind}"
        by_kind[key] = by_kind.get(key, 0.0) + ops[op.name].time_s
    scale = m * n_busy
    tb: dict[str, float] = {k: float(v * scale) for k, v in sorted(by_kind.items())}
    tb["compute.recompute"] = (lay["recompute_s"] + lay["tp_recompute_s"]) * scale
    tb["comm.tp_exposed"] = (lay["tp_fwd_s"] + lay["tp_bwd_s"]) * scale
    if case.parallel.cp and case.parallel.cp > 1 or layout.cp > 1:
        tb["comm.cp_exposed"] = (lay["cp_fwd_s"] + lay["cp_bwd_s"]) * scale
    if layout.zero >= 3:
        tb["comm.fsdp_exposed"] = (lay["fsdp_fwd_s"] + lay["fsdp_bwd_s"]) * scale
    if layout.pp > 1:
        tb["comm.pp_p2p"] = st["p2p_s"] * m
    if layout.pp == 1:
        edge = st["embedding_s"] + st["logits_s"]
    else:
        edge = st["embedding_s"] if busy_is_first else st["logits_s"]
    tb["compute.embedding_logits"] = edge * m
    if layout.algorithm == "local" and layout.pp > 1 and busy_is_first:
        tb["compute.local_aux_head"] = float(st["local_aux_s"] - st["backlink_s"]) * m
        if layout.backlink_layers:
            tb["compute.backlink"] = float(st["backlink_s"]) * m
    tb["pipeline_time_s.bubble"] = r["bubble_s"]
    tb["comm.dp_exposed"] = r["dp_exposed_s"]
    if layout.pp > 1 and case.model.tied_embeddings:
        tb["comm.embedding_grad_sync"] = r["embedding_sync_s"]
    tb["optimizer_step"] = r["optimizer_s"]
    # whatever the split above does not cover (rounding of stage imbalance) is reported
    tb = {k: float(v) for k, v in tb.items()}
    rest = r["iteration_time_s"] - sum(tb.values())
    if abs(rest) > 1e-12:
        tb["pipeline_time_s.imbalance"] = rest

    mem = d["memory"]
    # model states split into the transformer layers and the embedding/output layer
    layer_frac = float(d["params_layers_rank"] / d["params_rank"])
    mb = {"model_state_bytes.weights": mem["weights"] * layer_frac,
          "model_state_bytes.gradients": mem["gradients"] * layer_frac,
          "model_state_bytes.optimizer": mem["optimizer"] * layer_frac,
          "model_state_bytes.embedding_output": (mem["weights"] + mem["gradients"] + mem["optimizer"])
          * (1.0 - layer_frac),
          "layer_activation_bytes.activations": mem["activations"],
          "communication_buffer_bytes": mem["comm_buffers"]}
    op_rows = []
    for op in work.fwd + work.bwd:
        t = ops[op.name]
        op_rows.append({"name": op.name, "kind": op.kind, "phase": "bwd" if "." in op.name else "fwd",
                        "time_s": t.time_s, "flops": float(t.flops), "bytes": float(t.bytes),
                        "bound": t.bound})
    tokens = case.batch.global_ * case.model.seq_len
    metrics = {k: float(r[k]) for k in ("iteration_time_s", "layer_forward_time_s",
                                         "layer_backward_time_s", "layer_fwd_bwd_time_s")}
    metrics["model_tflops_per_gpu"] = float(d["flops_model"] / r["iteration_time_s"] / case.system.count / 1e12)
    metrics["peak_memory_gib"] = float(r["memory_bytes"] / GIB)
    # energy when the system defines per-operation energies (xlayer/data/energy.yaml)
    from xlayer.cost.energy import energy_spec_for, training_energy
    spec = energy_spec_for(acc) if energy else None
    if spec is not None:
        e = training_energy(case.model, system, case.precision, case.batch.global_, layout, recipe,
                            spec, result=r)
        metrics["energy_device_j"] = float(e.device_j)
        metrics["energy_wall_j"] = float(e.wall_j)
        if e.tokens:
            metrics["energy_wall_j_per_token"] = float(e.per_token_j())
    return TrainingPrediction(
        case_id=case.id, layout=layout, iteration_time_s=float(r["iteration_time_s"]),
        memory_bytes=float(r["memory_bytes"]), mfu=float(r["mfu"]), hfu=float(r["hfu"]),
        tokens_per_s=tokens / float(r["iteration_time_s"]), time_breakdown_s=tb,
        memory_breakdown_bytes={k: float(v) for k, v in mb.items()},
        layer={k: float(v) for k, v in lay.items()}, ops=op_rows, assumptions=notes,
        fits_memory=bool(r["memory_bytes"] <= acc.hbm.capacity_bytes),
        capacity_bytes=acc.hbm.capacity_bytes, metrics=metrics)
