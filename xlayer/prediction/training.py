"""Scalar prediction of a training case: resolve open choices, check the layout, evaluate,
and return a typed result whose breakdown entries are named after the functions that
computed them."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xlayer.errors import InputError
from xlayer.mapping.layout import Layout, check_layout
from xlayer.mapping.stack import allowed_zero, check_zero, default_dp_overlap, default_zero, family
from xlayer.prediction.case import Case, require_modelled
from xlayer.engine.breakdown import layer_times, memory_breakdown_bytes, op_rows, time_breakdown_s
from xlayer.engine.training import evaluate_training, recipe_for
from xlayer.units import GIB
from xlayer.workload.recompute import check_recompute_for, model_modules, module_modes

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
    # set when the predicted footprint exceeds the accelerator's memory (a measured case ran:
    # the disagreement is the model's, reported beside the prediction)
    memory_warning: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.case_id, "kind": "training", "layout": self.layout.model_dump(),
            "iteration_time_s": self.iteration_time_s, "memory_gib": self.memory_bytes / GIB,
            "capacity_gib": self.capacity_bytes / GIB, "fits_memory": self.fits_memory,
            "mfu": self.mfu, "hfu": self.hfu, "tokens_per_s": self.tokens_per_s,
            "time_breakdown_s": self.time_breakdown_s,
            "memory_breakdown_gib": {k: v / GIB for k, v in self.memory_breakdown_bytes.items()},
            "layer": self.layer, "ops": self.ops, "assumptions": self.assumptions,
            "metrics": self.metrics, "memory_warning": self.memory_warning,
        }


def _eval(case: Case, layout: Layout, recipe, detail=False):
    system = case.system_spec()
    return evaluate_training(case.model, system, case.precision, case.batch.global_, layout.tp, layout.pp,
                             layout.dp, layout.cp, layout.vp, layout.micro, layout.sp, layout.recompute,
                             layout.zero, layout.dp_overlap, recipe, detail=detail, tp_overlap=layout.tp_overlap,
                             algorithm=layout.algorithm, backlink_layers=layout.backlink_layers,
                             offload_layers=layout.offload_layers, ep=layout.ep, etp=layout.etp)


def _capacity(case: Case) -> float:
    return case.system_spec().accelerator.hbm.capacity_bytes * MEMORY_HEADROOM


def _search_open_numeric(case: Case, fixed: dict[str, Any], zeros: tuple[int, ...]) -> tuple[Layout, list[str]]:
    """tp/pp/cp/vp (and dp) left open: the fastest fitting layout of a vectorized search with
    the stated fields held fixed; when nothing fits, the layout that needs the least memory."""
    from xlayer.engine.choose import search_layouts  # the one layout chooser

    P = case.parallel
    recipe = case_recipe(case)
    res = search_layouts(case.model, case.system_spec(), case.precision, case.batch.global_, fixed=fixed,
                         recipe=recipe, zero_stages=zeros,
                         dp_overlap=bool(P.dp_overlap) if P.dp_overlap is not None
                         else default_dp_overlap(case.software.framework), tp_overlap=P.tp_overlap is not False,
                         algorithm=P.algorithm)
    t = res.table
    allowed = np.isin(t["zero"], zeros)
    if not allowed.any():
        raise InputError("parallel", "{...}", f"no valid layout of {case.model.layers} layers on "
                                              f"{case.system.count} accelerators with the stated fields")
    fits = allowed & t["fits"]
    # Megatron runs FSDP only when asked (resolve_layout): with the ZeRO stage open, the fastest
    # fitting layout that keeps the stack's own stage comes first
    fw = case.software.framework
    keep = np.zeros_like(fits)
    if "zero" not in fixed and family(fw) == "megatron":
        dz = [default_zero(fw, 2), default_zero(fw, 1)]
        if None not in dz:
            keep = fits & (t["zero"] == np.where(t["dp"] * t["cp"] > 1, dz[0], dz[1]))
    # a stack whose own recompute is not "none" (torchtitan: its per-op selective checkpointing)
    # runs it unless told otherwise: among the fitting layouts, those with it come first
    rc = recipe.default_recompute
    keep_rc = (keep if keep.any() else fits) & (t["recompute"] == rc) if "recompute" not in fixed and rc != "none" \
        else np.zeros_like(fits)
    if keep_rc.any():
        i = int(np.flatnonzero(keep_rc)[0])
        why = f"fastest fitting of {int(allowed.sum())} valid layouts searched with the stack's recompute ({rc})"
    elif keep.any():
        i = int(np.flatnonzero(keep)[0])
        why = (f"fastest fitting of {int(allowed.sum())} valid layouts searched that keeps the stack's ZeRO stage: "
               "FSDP only when stated")
    elif fits.any():
        i = int(np.flatnonzero(fits)[0])
        why = f"fastest fitting of {int(allowed.sum())} valid layouts searched"
    else:
        i = int(np.flatnonzero(allowed)[np.argmin(t["memory_bytes"][allowed])])
        why = "nothing fits memory: the layout needing the least"
    lay = res.layout(i).model_copy(update={"algorithm": P.algorithm, "backlink_layers": P.backlink_layers})
    open_fields = [k for k in ("tp", "pp", "dp", "cp", "vp", "micro", "sp", "recompute", "zero") if k not in fixed]
    notes = [f"parallel.{k}={getattr(lay, k)} ({why})" for k in open_fields]
    return lay, notes


def case_recipe(case: Case):
    """:func:`~xlayer.engine.training.recipe_for` of the case's model, precision and software,
    with its MoE overlap switches, each checked against what Megatron-Core accepts (the
    Megatron-Bridge overlap validation: EP > 1, not with shared-expert overlap or full
    recompute, interleaving when pp > 1; shared-expert overlap needs shared experts)."""
    P, m = case.parallel, case.model
    if P.ep_overlap:
        if not m.is_moe or (P.ep or 1) <= 1:
            raise InputError("parallel.ep_overlap", True, "needs an MoE model with parallel.ep > 1 (it overlaps the "
                             "expert-parallel all-to-alls)")
        if P.shared_expert_overlap:
            raise InputError("parallel.shared_expert_overlap", True, "not together with parallel.ep_overlap "
                             "(Megatron-Core allows one of them)")
        if P.recompute == "full":
            raise InputError("parallel.ep_overlap", True, "not with parallel.recompute: full")
        if (P.pp or 1) > 1 and P.vp == 1:
            raise InputError("parallel.ep_overlap", True, "with pp > 1 it needs the interleaved schedule (parallel.vp > 1)")
    if P.shared_expert_overlap and not (m.is_moe and m.moe.shared_experts > 0):
        raise InputError("parallel.shared_expert_overlap", True, "needs model.moe.shared_experts > 0")
    return recipe_for(m, case.precision, case.software, ep_overlap=bool(P.ep_overlap),
                      shared_expert_overlap=bool(P.shared_expert_overlap))


def resolve_layout(case: Case) -> tuple[Layout, list[str]]:
    """Fill the fields the source left null with what a practitioner would choose, and say so.

    tp, pp, cp or vp open: the fastest fitting layout of a search over them (the stated fields
    fixed). Otherwise dp = count/(tp·pp·cp), sp on when tp > 1, and the remaining open choices
    (micro-batch, recompute, ZeRO stage within what the stack allows, :mod:`xlayer.mapping.stack`)
    are resolved as: the stack's own defaults (Megatron family: distributed optimizer, no
    recompute, micro-batch 1 with pipelining) when they fit memory; else the fastest candidate
    that fits; else the one needing the least memory (the prediction then carries a
    ``memory_warning``)."""
    P = case.parallel
    fw = case.software.framework
    notes: list[str] = []
    if P.recompute:
        check_recompute_for(case.model, P.recompute)
    count = case.system.count
    gb = case.batch.global_
    pp_fixed = P.pp if P.pp is not None else 1
    zeros = allowed_zero(fw, pp_fixed) if P.pp is not None else allowed_zero(fw, 2) if family(fw) == "deepspeed" \
        else allowed_zero(fw, 1)
    if P.zero is not None:
        check_zero(fw, P.zero, pp_fixed)
    if any(getattr(P, k) is None for k in ("tp", "pp")) or (P.cp is None and P.dp is None) \
            or (P.vp is None and P.pp not in (None, 1)):
        fixed: dict[str, Any] = {k: getattr(P, k) for k in ("tp", "pp", "dp", "cp", "vp", "ep", "sp", "recompute",
                                                            "zero") if getattr(P, k) is not None}
        if P.pp == 1 and P.vp is None:
            fixed["vp"] = 1
        if case.batch.micro:
            fixed["micro"] = case.batch.micro
        lay, more = _search_open_numeric(case, fixed, zeros)
        return lay, notes + more + list(case_recipe(case).notes)
    cp = P.cp or 1
    vp = P.vp or 1
    dp = P.dp
    if dp is None:
        denom = P.tp * P.pp * cp
        if count % denom:
            raise InputError("parallel", f"tp*pp*cp={denom}", f"tp*pp*cp={denom} does not divide system.count={count}")
        dp = count // denom
        notes.append(f"parallel.dp={dp} (system.count/(tp*pp*cp))")
    sp = P.sp
    if sp is None:
        sp = P.tp > 1
        notes.append(f"parallel.sp={sp} (on whenever tp > 1)")
    base = dict(tp=P.tp, pp=P.pp, dp=dp, cp=cp, vp=vp, sp=sp, ep=P.ep or 1, etp=P.etp or 1,
                dp_overlap=bool(P.dp_overlap) if P.dp_overlap is not None else default_dp_overlap(fw),
                tp_overlap=bool(P.tp_overlap) if P.tp_overlap is not None else True,
                algorithm=P.algorithm, backlink_layers=P.backlink_layers)
    recipe = case_recipe(case)
    capacity = _capacity(case)

    if case.batch.micro:
        micro_choices = [case.batch.micro]
    else:
        per_dp = gb // dp if gb % dp == 0 else 1
        micro_choices = [d for d in (1, 2, 4, 8, 16) if per_dp % d == 0] or [1]
    # selective differs from none where the attention core is not a flash kernel, or where the
    # stack's selective checkpointing re-runs more than the core (torchtitan's per-op policy)
    rc_choices = [P.recompute] if P.recompute else (
        ["none", "selective", "full"] if recipe.attention == "classic" or recipe.selective_policy == "op_sac"
        else ["none", "full"])
    if not P.recompute and family(fw) == "megatron":
        # Megatron-Core recomputes named submodules (--recompute-modules; the Megatron-Bridge
        # performance recipes set e.g. [layernorm, moe_act] or [mla_up_proj, mlp]): every set of
        # the model's modules is a candidate (xlayer.workload.recompute)
        rc_choices += module_modes(model_modules(case.model))
    zero_choices = [P.zero] if P.zero is not None else list(zeros)
    # the stack's own choice for each field the case left open (None: no documented default)
    default = {"micro": 1 if P.pp > 1 and not case.batch.micro else None,
               "recompute": recipe.default_recompute if P.recompute is None else None,
               "zero": default_zero(fw, dp * cp) if P.zero is None else None}

    cands = []
    for micro in micro_choices:
        for rc in rc_choices:
            for z in zero_choices:
                lay = Layout(**base, micro=micro, recompute=rc, zero=z)
                check_layout(lay, case.model, count, gb)
                r = _eval(case, lay, recipe)
                cands.append((lay, float(r.iteration_time_s), float(r.memory_bytes)))
    # activation offloading to host memory (Megatron-Core cpu_offloading, pp = 1) where the part
    # has a host link: what Megatron-Bridge's FSDP recipes do instead of recomputing
    acc = case.system_spec().accelerator
    if P.pp == 1 and P.recompute in (None, "none") and acc.host_link_bytes_per_s is not None:
        for micro in micro_choices:
            for z in zero_choices:
                for k in sorted({max(1, case.model.layers * j // 8) for j in range(1, 9)}):
                    lay = Layout(**base, micro=micro, recompute="none", zero=z, offload_layers=k)
                    check_layout(lay, case.model, count, gb)
                    r = _eval(case, lay, recipe)
                    cands.append((lay, float(r.iteration_time_s), float(r.memory_bytes)))
    is_default = [all(v is None or getattr(c[0], k) == v for k, v in default.items()) for c in cands]
    fitting = [c for c in cands if c[2] <= capacity]
    defaults_fit = [c for c, d in zip(cands, is_default) if d and c[2] <= capacity]
    # Megatron runs FSDP only when asked (Megatron-Bridge ``use_megatron_fsdp``, off by default):
    # when the defaults do not fit, the stack keeps its distributed optimizer and relaxes the
    # recompute / micro-batch / offload choices first
    keep_zero = [c for c in fitting if default["zero"] is not None and c[0].zero == default["zero"]] \
        if family(fw) == "megatron" else []
    if defaults_fit:
        chosen = min(defaults_fit, key=lambda c: c[1])[0]
        why = "the stack's default" if family(fw) == "megatron" or default["zero"] is not None \
            else "fastest that fits memory"
    elif keep_zero:
        chosen = min(keep_zero, key=lambda c: c[1])[0]
        why = f"fastest that fits memory with the stack's ZeRO stage {default['zero']}: FSDP only when stated"
    elif fitting:
        chosen = min(fitting, key=lambda c: c[1])[0]
        why = "fastest that fits memory"
    else:
        chosen = min(cands, key=lambda c: c[2])[0]
        why = "nothing fits memory: the least memory"
    if case.batch.micro is None:
        notes.append(f"batch.micro={chosen.micro} ({why})")
    if P.recompute is None:
        notes.append(f"parallel.recompute={chosen.recompute} ({why})")
    if chosen.offload_layers:
        notes.append(f"parallel.offload_layers={chosen.offload_layers} (activations of {chosen.offload_layers} layers "
                     f"in host memory; {why})")
    if P.zero is None:
        stack = f"; {fw}: stages {'/'.join(map(str, zeros))}" if family(fw) != "other" else ""
        notes.append(f"parallel.zero={chosen.zero} ({why}{stack})")
    return chosen, notes + list(recipe.notes)


def predict_training(case: Case, layout: Layout | None = None, energy: bool = True) -> TrainingPrediction:
    """Predict one training iteration of ``case`` (optionally with an explicit layout).
    ``energy`` adds the energy metrics (``xlayer.cost.energy.training_energy``)."""
    if case.kind != "training":
        raise InputError("kind", case.kind, "predict_training needs kind: training")
    require_modelled(case)
    notes: list[str] = list(case.model.defaults_taken) + case.assumptions
    if layout is None:
        layout, more = resolve_layout(case)
        notes += more
    else:
        check_layout(layout, case.model, case.system.count, case.batch.global_)
        check_zero(case.software.framework, layout.zero, layout.pp, "layout.zero")
    recipe = case_recipe(case)
    sysm = case.system_spec()
    if sysm.count > sysm.scale_up_size and sysm.job_domain_size < sysm.scale_up_size:
        notes.append(f"{sysm.job_domain_size} accelerators per scale-up domain of {sysm.scale_up_size} "
                     f"(the job spread evenly: the largest divisor of system.count={sysm.count})")
    r = _eval(case, layout, recipe, detail=True)
    d = r.detail
    system = case.system_spec()
    acc = system.accelerator
    tb = time_breakdown_s(r, layout, case.model)
    mb = memory_breakdown_bytes(r)
    rows = op_rows(r)
    tokens = case.batch.global_ * case.model.seq_len
    metrics = {k: float(r.value(k)) for k in ("iteration_time_s", "layer_forward_time_s",
                                               "layer_backward_time_s", "layer_fwd_bwd_time_s")}
    metrics["model_tflops_per_gpu"] = float(d.flops_model / r.iteration_time_s / case.system.count / 1e12)
    metrics["peak_memory_gib"] = float(r.memory_bytes / GIB)
    # energy when the system defines per-operation energies (xlayer/data/energy.yaml)
    from xlayer.cost.energy import energy_spec_for
    from xlayer.prediction.energy import training_energy
    spec = energy_spec_for(acc) if energy else None
    if spec is not None:
        e = training_energy(case.model, system, case.precision, case.batch.global_, layout, recipe,
                            spec, result=r)
        metrics["energy_device_j"] = float(e.device_j)
        metrics["energy_wall_j"] = float(e.wall_j)
        if e.tokens:
            metrics["energy_wall_j_per_token"] = float(e.per_token_j())
    mem = float(r.memory_bytes)
    return TrainingPrediction(
        case_id=case.id, layout=layout, iteration_time_s=float(r.iteration_time_s),
        memory_bytes=mem, mfu=float(r.mfu), hfu=float(r.hfu),
        tokens_per_s=tokens / float(r.iteration_time_s), time_breakdown_s=tb,
        memory_breakdown_bytes=mb, layer=layer_times(r), ops=rows, assumptions=notes,
        fits_memory=bool(mem <= acc.hbm.capacity_bytes),
        capacity_bytes=acc.hbm.capacity_bytes, metrics=metrics,
        memory_warning=None if mem <= acc.hbm.capacity_bytes else
        f"predicted {mem / GIB:.1f} GiB per accelerator exceeds its {acc.hbm.capacity_bytes / GIB:.1f} GiB")
