"""The model against measured cases: fails when the published error bars regress.

Error bars (mean absolute % error / worst case) as of this version; tighten them when the
model improves, never loosen them to make a change pass.
"""
from __future__ import annotations

import pytest

from xlayer.validate.runner import collect_case_files, validate_files

BARS = {  # metric: (MAPE %, max |error| %)
    "iteration_time_s": (7.5, 26.5),
    "layer_forward_time_s": (1.5, 2.0),
    "layer_backward_time_s": (3.0, 5.5),
    "layer_fwd_bwd_time_s": (1.6, 3.2),
}


@pytest.fixture(scope="module")
def training_result(request):
    from conftest import VALIDATION
    if not VALIDATION.is_dir():
        pytest.skip("shared/validation not present")
    return validate_files(collect_case_files([str(VALIDATION / "training")]))


@pytest.mark.parametrize("metric", list(BARS))
def test_error_bars(training_result, metric):
    s = training_result["summary"][metric]
    mape, worst = BARS[metric]
    assert s["count"] > 0
    assert s["mape_pct"] <= mape, s
    assert s["max_abs_error_pct"] <= worst, s


def test_every_training_case_predicts(training_result):
    missing = [r["id"] for r in training_result["cases"] if r["predicted"] is None]
    assert not missing, missing
