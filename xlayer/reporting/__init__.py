"""xlayer.reporting: self-contained static HTML reports with inline SVG charts.

``training_report(case, prediction)``, ``validate_report(result)``, ``search_report(case, cs)``,
``serving_report(case, slo_search_result)`` and ``sweep_report(folder)`` return the HTML text;
``write(html, path)`` saves it. The ``xlayer report`` command (``xlayer/cli/cmd_report.py``)
and ``xlayer.report(result, path)`` (``xlayer.api.report``) call these. Nothing here needs a
plotting library or a network. Submodules load on first use.
"""
from __future__ import annotations

import importlib

__all__ = ["training_report", "validate_report", "search_report", "serving_report", "sweep_report", "write"]


def __getattr__(name: str):
    if name in __all__:
        return getattr(importlib.import_module("xlayer.reporting.build"), name)
    raise AttributeError(f"module 'xlayer.reporting' has no attribute {name!r}")
