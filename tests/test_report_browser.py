"""Every kind of report loads in headless Chromium without console errors, with each chart
drawn (an SVG with elements and a non-zero size), and can be screenshotted.

Needs Debian's ``chromium`` and ``chromium-driver`` and the ``selenium`` package; skipped
otherwise."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from xlayer.reporting.browser import find_browser

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "xlayer" / "examples" / "gpt3-175b-1024xa100.yaml"

if find_browser() is None:
    pytest.skip("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)",
                allow_module_level=True)
pytest.importorskip("selenium", reason="selenium is not installed")

from xlayer.reporting.browser import headless, inspect, screenshot  # noqa: E402


@pytest.fixture(scope="module")
def browser():
    with headless(1280, 900) as drv:
        yield drv


def _reports(tmp: Path) -> dict[str, tuple[Path, set[str]]]:
    import xlayer
    from xlayer.cli.cmd_report import build
    out = {"predict": (xlayer.report(xlayer.predict(DEMO), tmp / "predict.html"),
                       {"time-breakdown", "layer-breakdown", "memory-breakdown", "roofline", "pipeline-timeline"})}
    if importlib.util.find_spec("xlayer.explore.search") is not None:
        out["search"] = (build([str(DEMO)], tmp / "search.html", "search", None, top=5)[1],
                         {"search-top", "search-pareto"})
    if importlib.util.find_spec("xlayer.explore.sweep") is not None:
        from test_report import small_sweep
        out["sweep"] = (build([str(small_sweep(tmp / "sweep"))], tmp / "sweep.html", None, None)[1],
                        {"sweep-pareto-accelerators", "sweep-pareto-memory", "sweep-pareto-energy",
                         "sweep-pareto-cost"})
    from test_report import serving_case_file
    out["serving"] = (build([str(serving_case_file(tmp))], tmp / "serving.html", "serving", None, top=5,
                            ttft=1.0, tpot=0.05)[1], {"serving-curve", "serving-breakdown"})
    case = ROOT.parent / "shared" / "validation" / "training"
    if case.is_dir():
        out["validate"] = (build([str(case)], tmp / "validate.html", "validate", None, progress=False)[1],
                           {"validate-scatter"})
    return out


def test_every_report_renders_without_console_errors(browser, tmp_path):
    reports = _reports(tmp_path)
    assert {"predict", "search", "sweep", "serving"} <= set(reports)
    for kind, (path, expected) in reports.items():
        info = inspect(browser, path)
        assert info["console_errors"] == [], (kind, info["console_errors"])
        charts = {c["name"]: c for c in info["charts"]}
        assert set(charts) == expected, kind
        for name, c in charts.items():
            assert c["elements"] > 10 and c["width"] > 100 and c["height"] > 100, (kind, name, c)
        png = screenshot(browser, tmp_path / f"{kind}.png", 1280, 900)
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


def test_console_errors_are_caught(browser, tmp_path):
    # the check above would be empty if the browser log were not wired up
    page = tmp_path / "bad.html"
    page.write_text("<!DOCTYPE html><html><body><script>console.error('boom')</script></body></html>")
    assert any("boom" in e for e in inspect(browser, page)["console_errors"])
