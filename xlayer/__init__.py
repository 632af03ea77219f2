"""xlayer: an analytical, cross-layer performance model for large-model training and inference.

The Python API is one module, ``xlayer/api.py``; its functions are reachable from the package
and load on first use, so that ``import xlayer`` stays cheap:

    import xlayer
    pred = xlayer.predict("case.yaml")      # xlayer predict      → xlayer.api.Prediction
    res = xlayer.validate(["cases/"])       # xlayer validate     → xlayer.api.ValidationResult
    xlayer.report(pred, "report.html")      # xlayer report
    srv = xlayer.serve("case.yaml", ttft=0.5, tpot=0.02)  # xlayer serve --ttft --tpot → xlayer.api.ServingSearch
    case = xlayer.load_case("case.yaml")

The layers behind them are the packages ``xlayer.prediction``, ``xlayer.validation`` and
``xlayer.reporting`` (docs/architecture.md).
"""
from __future__ import annotations

import importlib

_API = ("predict", "validate", "report", "load_case", "search", "serve", "Prediction", "ValidationResult",
        "ServingSearch")


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module("xlayer.api"), name)
    if name == "api":
        return importlib.import_module("xlayer.api")
    raise AttributeError(f"module 'xlayer' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_API))
