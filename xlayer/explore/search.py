"""Layout search for a case: every valid layout ranked (:mod:`xlayer.engine.choose`), the top
N predicted with full breakdowns, and the case's own layout placed in the ranking."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

from xlayer.engine.choose import (ALGORITHMS, DEFAULT_MAX_CP, DEFAULT_MAX_VP, LAYOUT_FIELDS, RANKS, RECOMPUTE, ZERO,
                                  SearchResult, candidate_grid, fastest_fitting, pareto_front, rank_key,
                                  search_layouts)
from xlayer.units import GIB
from xlayer.errors import InputError
from xlayer.mapping.layout import Layout

__all__ = ["ALGORITHMS", "DEFAULT_MAX_CP", "DEFAULT_MAX_VP", "LAYOUT_FIELDS", "RANKS", "RECOMPUTE", "ZERO",
           "SearchResult", "candidate_grid", "fastest_fitting", "pareto_front", "rank_key", "search_layouts",
           "CaseSearch", "search_case", "layout_diff", "describe_diff"]


# ---- a case ---------------------------------------------------------------------------------

def layout_diff(a: Layout, b: Layout) -> dict[str, tuple[Any, Any]]:
    """Fields in which two layouts differ: {field: (a value, b value)}."""
    return {k: (getattr(a, k), getattr(b, k)) for k in LAYOUT_FIELDS if getattr(a, k) != getattr(b, k)}


def describe_diff(diff: Mapping[str, tuple[Any, Any]]) -> str:
    if not diff:
        return "same layout"
    return ", ".join(f"{k} {a}→{b}" for k, (a, b) in diff.items())


@dataclass
class CaseSearch:
    """A search for a case, with the top layouts' full predictions and the case's own layout."""

    case_id: str
    result: SearchResult
    top: list[Any]                       # TrainingPrediction of the top N fitting layouts
    case_prediction: Any = None          # TrainingPrediction of the case's layout (if it has one)
    case_error: Optional[str] = None     # why the case's layout could not be predicted
    case_position: Optional[int] = None  # its rank among the fitting layouts

    def to_dict(self) -> dict[str, Any]:
        r = self.result
        rows = []
        for i, pred in enumerate(self.top):
            row = r.row(i)
            rows.append({"rank": i + 1, "layout": pred.layout.model_dump(), "describe": pred.layout.describe(),
                         "iteration_time_s": pred.iteration_time_s, "memory_gib": pred.memory_bytes / GIB,
                         "mfu": pred.mfu, "tokens_per_s_per_gpu": row["tokens_per_s_per_gpu"],
                         "gpu_hours_per_mtok": row["gpu_hours_per_mtok"], "energy_j": row["energy_j"],
                         "time_breakdown_s": pred.time_breakdown_s,
                         "memory_breakdown_gib": {k: v / GIB for k, v in pred.memory_breakdown_bytes.items()}})
        out: dict[str, Any] = {
            "id": self.case_id, "rank": r.rank,
            "counts": {"considered": r.considered, "valid": r.valid, "fitting": r.fitting},
            "capacity_gib": r.capacity_bytes / GIB, "elapsed_s": r.elapsed_s, "notes": r.notes, "top": rows,
        }
        if self.case_prediction is not None or self.case_error is not None:
            c: dict[str, Any] = {}
            if self.case_prediction is not None:
                p = self.case_prediction
                c = {"layout": p.layout.model_dump(), "describe": p.layout.describe(),
                     "iteration_time_s": p.iteration_time_s, "memory_gib": p.memory_bytes / GIB,
                     "fits_memory": p.fits_memory, "mfu": p.mfu, "position": self.case_position}
                if self.top:
                    d = layout_diff(p.layout, self.top[0].layout)
                    c["differs"] = {k: [a, b] for k, (a, b) in d.items()}
                    c["speedup_of_best"] = p.iteration_time_s / self.top[0].iteration_time_s
            else:
                c["error"] = self.case_error
            out["case_layout"] = c
        return out


def case_has_layout(case) -> bool:
    return "parallel" in case.model_fields_set


def search_case(case, top: int = 5, rank: str = "time", tp_beyond_domain: bool = False,
                max_vp: int = DEFAULT_MAX_VP, max_cp: int = DEFAULT_MAX_CP,
                compare: bool = True, progress: Optional[Callable[[int, int], None]] = None) -> CaseSearch:
    """Search every layout for the case's model, system and global batch; predict the top N
    with :func:`~xlayer.prediction.training.predict_training` (full breakdowns) and, when the case
    states a layout, predict that one too and place it in the ranking. ``progress(done, total)``
    follows the categorical groups of :func:`search_layouts`."""
    from xlayer.prediction.training import case_recipe, predict_training

    if case.kind != "training":
        raise InputError("kind", case.kind, "search needs kind: training")
    from xlayer.mapping.stack import allowed_zero, default_dp_overlap
    P = case.parallel
    fw = case.software.framework
    dp_overlap = bool(P.dp_overlap) if P.dp_overlap is not None else default_dp_overlap(fw)
    tp_overlap = bool(P.tp_overlap) if P.tp_overlap is not None else True
    algorithm = getattr(P, "algorithm", None) or "backprop"
    backlink_layers = int(getattr(P, "backlink_layers", None) or 0)
    res = search_layouts(case.model, case.system_spec(), case.precision, case.batch.global_, rank=rank,
                         recipe=case_recipe(case),
                         tp_beyond_domain=tp_beyond_domain, max_vp=max_vp, max_cp=max_cp,
                         dp_overlap=dp_overlap, tp_overlap=tp_overlap, progress=progress,
                         algorithm=algorithm, backlink_layers=backlink_layers,
                         zero_stages=allowed_zero(fw, 2) if fw else ZERO)
    preds = [predict_training(case, res.layout(i)) for i in range(min(top, res.fitting))]
    out = CaseSearch(case_id=case.id, result=res, top=preds)
    if compare and case_has_layout(case):
        try:
            p = predict_training(case)
        except InputError as exc:
            out.case_error = str(exc)
        else:
            out.case_prediction = p
            if p.fits_memory:
                tokens = case.batch.global_ * case.model.seq_len
                val = {"time": p.iteration_time_s,
                       "tokens_per_s_per_gpu": -tokens / (p.iteration_time_s * case.system.count),
                       "cost": case.system.count * p.iteration_time_s / 3600.0 / (tokens / 1e6)}[rank]
                out.case_position = res.position_of(val)
    return out
