"""Korthikanti et al. 2022, Figure 1: memory per GPU of four models (GiB), within 5 %."""
from __future__ import annotations

import pytest

from xlayer.mapping.layout import Layout
from xlayer.prediction.training import predict_training
from xlayer.prediction.case import case_from_dict

MODELS = {  # name: (layers, hidden, heads, tp, pp, vp, count, global)
    "22B": (48, 6144, 64, 8, 1, 1, 8, 4, 4),
    "175B": (96, 12288, 96, 8, 8, 3, 64, 64, 1),
    "530B": (105, 20480, 128, 8, 35, 3, 280, 280, 1),
    "1T": (128, 25600, 160, 8, 64, 1, 512, 512, 1),
}
FIGURE1 = {  # params+optimizer, activations no recompute, activations SP+selective
    "22B": (45.56, 59.25, 9.56), "175B": (45.56, 66.84, 12.35),
    "530B": (31.64, 114.02, 23.08), "1T": (32.96, 131.25, 26.56),
}


def _predict(name, sp, recompute):
    L, h, a, tp, pp, vp, count, gb, micro = MODELS[name]
    case = case_from_dict({
        "id": name, "kind": "training",
        "model": {"layers": L, "hidden": h, "heads": a, "ffn_hidden": 4 * h, "vocab": 51200, "seq_len": 2048,
                  "attention": "classic", "dropout": 0.1},
        "system": {"accelerator": "A100-SXM-80GB", "count": count},
        "batch": {"global": gb, "micro": micro}, "precision": "fp16"})
    lay = Layout(tp=tp, pp=pp, dp=1, vp=vp, sp=sp, recompute=recompute, zero=0, micro=micro)
    return predict_training(case, lay)


@pytest.mark.parametrize("name", list(FIGURE1))
def test_figure1(name):
    states, act_none, act_sel = FIGURE1[name]
    p = _predict(name, False, "none")
    mb = p.memory_breakdown_bytes
    gib = 2 ** 30
    got_states = (mb["model_state_bytes.weights"] + mb["model_state_bytes.gradients"]
                  + mb["model_state_bytes.optimizer"]) / gib
    assert got_states == pytest.approx(states, rel=0.05)
    got_act = p.memory_breakdown_bytes["layer_activation_bytes.activations"] / gib
    assert got_act == pytest.approx(act_none, rel=0.05)
    q = _predict(name, True, "selective")
    assert q.memory_breakdown_bytes["layer_activation_bytes.activations"] / gib == pytest.approx(act_sel, rel=0.05)
