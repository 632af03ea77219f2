"""xlayer: an analytical, cross-layer performance model for large-model training and inference.

The Python API mirrors the command line (``xlayer/api.py``), loaded on first use so that
``import xlayer`` stays cheap:

    import xlayer
    pred = xlayer.predict("case.yaml")      # xlayer predict      → xlayer.api.Prediction
    res = xlayer.validate(["cases/"])       # xlayer validate     → xlayer.api.ValidationResult
    xlayer.report(pred, "report.html")      # xlayer report
    srv = xlayer.serve("case.yaml", ttft=0.5, tpot=0.02)  # xlayer serve --ttft --tpot → xlayer.api.ServingSearch
    case = xlayer.load_case("case.yaml")

``xlayer.predict``, ``xlayer.validate`` and ``xlayer.report`` are also the sub-packages of
those layers (``xlayer.predict.training`` …); calling the package calls the API function.
"""
from __future__ import annotations

import importlib
import types

_API = ("load_case", "search", "serve", "Prediction", "ValidationResult", "ServingSearch")


class _CallablePackage(types.ModuleType):
    """A package that, called, runs the API function of the same name (xlayer.api)."""

    def __call__(self, *args, **kwargs):
        api = importlib.import_module("xlayer.api")
        return getattr(api, self.__name__.rsplit(".", 1)[1])(*args, **kwargs)


def _make_callable(name: str) -> None:
    mod = importlib.import_module(f"xlayer.{name}")  # the package __init__ only: cheap
    if not isinstance(mod, _CallablePackage):
        mod.__class__ = _CallablePackage


for _name in ("predict", "validate", "report"):
    _make_callable(_name)


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module("xlayer.api"), name)
    if name == "api":
        return importlib.import_module("xlayer.api")
    raise AttributeError(f"module 'xlayer' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_API))
