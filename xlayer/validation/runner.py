"""Predict measured cases and report the error (contract in shared/DESIGN.md).

``error_pct = 100·(predicted − measured)/measured``. A case the model cannot predict is kept
with ``predicted: null`` and a ``reason``; nothing is dropped silently.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

from xlayer.errors import InputError
from xlayer.prediction.case import Case, load_case, require_modelled


def collect_case_files(paths: Iterable[str]) -> list[Path]:
    """Every ``*.yaml``/``*.yml`` file named, or found (recursively) in a folder named."""
    files: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            files += sorted(q for q in path.rglob("*") if q.suffix in (".yaml", ".yml"))
        elif path.exists():
            files.append(path)
        else:
            raise InputError("PATH", str(p), "no such file or folder")
    return files


def predict_metrics(case: Case) -> dict[str, float]:
    """All metrics the model gives for ``case`` (training or inference)."""
    return _predict(case)[0]


def _predict(case: Case) -> tuple[dict[str, float], str | None]:
    """(metrics, memory warning or None) of ``case``."""
    require_modelled(case)
    if case.kind == "training":
        from xlayer.prediction.training import predict_training
        p = predict_training(case, energy=False)
        return p.metrics, p.memory_warning
    if case.request is not None and case.request.mode == "serving":
        from xlayer.serving.predict import predict_serving
        return predict_serving(case).metrics, None
    from xlayer.prediction.inference import predict_inference
    p = predict_inference(case)
    return p.metrics, getattr(p, "memory_warning", None)


def validate_files(files: list[Path], progress: Callable[[Path], None] | None = None) -> dict[str, Any]:
    """Run every case file; return the ``validate --json`` object."""
    rows: list[dict[str, Any]] = []
    for f in files:
        if progress:
            progress(f)
        case_id, kind, measured = f.stem, None, {}
        try:
            case = load_case(f)
            case_id, kind, measured = case.id, case.kind, case.measured
            preds, warning = _predict(case)
            reason = None
        except (InputError, NotImplementedError) as exc:
            preds, reason, warning = {}, getattr(exc, "reason", None) or str(exc), None
        if not measured:
            rows.append({"id": case_id, "kind": kind, "metric": None, "measured": None,
                         "predicted": None, "error_pct": None, "reason": reason or "no measured values"})
            continue
        for metric, value in measured.items():
            pred = preds.get(metric)
            row = {"id": case_id, "kind": kind, "metric": metric, "measured": value,
                   "predicted": pred, "error_pct": None}
            if pred is None or value in (None, 0):
                row["predicted"] = None
                row["reason"] = reason or f"metric {metric} is not predicted for this case"
            else:
                row["error_pct"] = 100.0 * (pred - value) / value
                if warning:
                    row["memory_warning"] = warning
            rows.append(row)
    return {"cases": rows, "summary": summarize(rows), "by_source": summarize_by_source(rows)}


def summarize(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per metric and over all: count of predicted rows, MAPE and max |error| (percent)."""
    groups: dict[str, list[float]] = {}
    for r in rows:
        if r.get("error_pct") is None:
            continue
        groups.setdefault(r["metric"], []).append(r["error_pct"])
    out: dict[str, dict[str, Any]] = {}
    everything: list[float] = []
    for metric, errs in sorted(groups.items()):
        out[metric] = _stats(errs)
        everything += errs
    out["all"] = _stats(everything)
    out["all"]["not_predicted"] = sum(1 for r in rows if r.get("predicted") is None)
    return out


def summarize_by_source(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Error statistics per case-id prefix (the publication a case comes from, e.g.
    ``korthikanti22``), over all its metrics."""
    groups: dict[str, list[float]] = {}
    for r in rows:
        if r.get("error_pct") is not None:
            groups.setdefault(str(r["id"]).split("-")[0], []).append(r["error_pct"])
    return {k: _stats(v) for k, v in sorted(groups.items())}


def _stats(errs: list[float]) -> dict[str, Any]:
    if not errs:
        return {"count": 0, "mape_pct": None, "max_abs_error_pct": None}
    return {"count": len(errs), "mape_pct": round(sum(abs(e) for e in errs) / len(errs), 3),
            "max_abs_error_pct": round(max(abs(e) for e in errs), 3)}
