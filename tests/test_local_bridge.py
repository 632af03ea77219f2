"""Pipeline stages as local modules (local learning / BackLink) in the analytical model."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from xlayer.errors import InputError
from xlayer.prediction.training import predict_training
from xlayer.prediction.case import case_from_dict

EXAMPLE = Path(__file__).resolve().parents[1] / "xlayer" / "examples" / "gpt3-175b-local-8stages.yaml"


def _predict(**parallel):
    d = yaml.safe_load(EXAMPLE.read_text())
    d["parallel"].update(parallel)
    return predict_training(case_from_dict(d))


def test_local_holds_one_microbatch_and_fills_forward_only():
    bp = _predict(algorithm="backprop", backlink_layers=0)
    lo = _predict(algorithm="local", backlink_layers=0)
    act = "layer_activation_bytes.activations"
    # 1F1B rank 0 holds p = 8 micro-batches of its 12 layers; local holds one
    assert lo.memory_breakdown_bytes[act] < bp.memory_breakdown_bytes[act] / 4
    assert lo.time_breakdown_s["pipeline_time_s.bubble"] < bp.time_breakdown_s["pipeline_time_s.bubble"]
    assert lo.time_breakdown_s["compute.local_aux_head"] > 0
    assert "compute.local_aux_head" not in bp.time_breakdown_s


def test_backlink_costs_between_local_and_more():
    lo = _predict(algorithm="local", backlink_layers=0)
    bl = _predict(algorithm="local", backlink_layers=2)
    assert bl.memory_bytes > lo.memory_bytes
    assert bl.iteration_time_s > lo.iteration_time_s
    # exactly two layers' worth of extra activations
    extra = bl.memory_breakdown_bytes["layer_activation_bytes.activations"] - \
        lo.memory_breakdown_bytes["layer_activation_bytes.activations"]
    bp = _predict(algorithm="backprop", backlink_layers=0)
    per_layer = bp.memory_breakdown_bytes["layer_activation_bytes.activations"] / (8 * 12 + 0)
    assert extra == pytest.approx(2 * per_layer, rel=0.05)


def test_bad_local_layouts():
    with pytest.raises(InputError, match="backlink_layers"):
        _predict(algorithm="backprop", backlink_layers=2)
    with pytest.raises(InputError, match="vp"):
        _predict(algorithm="local", vp=2, backlink_layers=0)
    with pytest.raises(InputError, match="at most the layers of one stage"):
        _predict(algorithm="local", backlink_layers=13)
