"""Energy of a training iteration of a case: the engine's counts
(:func:`xlayer.engine.counts.iteration_counts`) priced by :mod:`xlayer.cost.energy`."""
from __future__ import annotations

from typing import Optional

from xlayer.cost.energy import EnergyResult, EnergySpec, energy_data, energy_from_counts, energy_spec_for
from xlayer.engine.counts import iteration_counts
from xlayer.engine.result import IterationCost
from xlayer.engine.training import evaluate_training
from xlayer.errors import InputError
from xlayer.hardware.spec import System


def training_energy(model, system: System, precision: str, global_batch: int, layout, recipe,
                    spec: EnergySpec, result: IterationCost | None = None) -> EnergyResult:
    """Energy of one training iteration (evaluates the iteration if ``result`` is not given)."""
    if result is None or result.detail is None:
        result = evaluate_training(model, system, precision, global_batch, layout.tp, layout.pp, layout.dp,
                                   layout.cp, layout.vp, layout.micro, layout.sp, layout.recompute, layout.zero,
                                   layout.dp_overlap, recipe, detail=True, tp_overlap=layout.tp_overlap,
                                   algorithm=layout.algorithm, backlink_layers=layout.backlink_layers,
                                   offload_layers=layout.offload_layers, ep=layout.ep, etp=layout.etp)
    counts = iteration_counts(result, model, system, precision, global_batch, layout, recipe)
    return energy_from_counts(counts, spec)


def case_training_energy(case, layout=None, spec: EnergySpec | None = None,
                         system: System | None = None) -> EnergyResult:
    """Energy per iteration of a training case (the layout ``predict_training`` resolves, or
    ``layout``); ``system`` replaces the case's system (an SCD build), ``spec`` its energy data."""
    from xlayer.prediction.training import case_recipe, resolve_layout
    if case.kind != "training":
        raise InputError("kind", case.kind, "energy per iteration needs kind: training")
    system = system or case.system_spec()
    spec = spec or energy_spec_for(system.accelerator)
    if spec is None:
        raise InputError("system.accelerator", system.accelerator.name,
                         f"no energy data; parts with energy data: {', '.join(sorted(energy_data()['gpus']))}")
    if layout is None:
        layout, _ = resolve_layout(case)
    return training_energy(case.model, system, case.precision, case.batch.global_, layout,
                           case_recipe(case), spec)


def prediction_energy(case, pred) -> Optional[EnergyResult]:
    """Energy of the iteration a :class:`~xlayer.prediction.training.TrainingPrediction` describes,
    or None when the case's accelerator has no energy data (for ``xlayer predict``)."""
    spec = energy_spec_for(case.system_spec().accelerator)
    if spec is None:
        return None
    return case_training_energy(case, pred.layout, spec)
