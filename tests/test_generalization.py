"""Cases the validation folder will grow into must predict without code changes."""
from __future__ import annotations

import math

import pytest

from xlayer.prediction.training import predict_training
from xlayer.prediction.case import case_from_dict

LLAMA3_8B = {"name": "Llama 3 8B", "layers": 32, "hidden": 4096, "heads": 32, "kv_heads": 8, "ffn_hidden": 14336,
             "activation": "swiglu", "vocab": 128256, "seq_len": 8192}
LLAMA3_70B = {"name": "Llama 3 70B", "layers": 80, "hidden": 8192, "heads": 64, "kv_heads": 8,
              "ffn_hidden": 28672, "activation": "swiglu", "vocab": 128256, "seq_len": 8192}


def case(acc, count, model, parallel, gb, micro=1, precision="bf16", up=None):
    system = {"accelerator": acc, "count": count}
    if up:
        system["scale_up_size"] = up
    return case_from_dict({"id": "g", "kind": "training", "model": model, "system": system,
                           "parallel": parallel, "batch": {"global": gb, "micro": micro}, "precision": precision})


@pytest.mark.parametrize("acc,count,model,parallel,gb,precision", [
    ("H100-SXM-80GB", 64, LLAMA3_8B, {"tp": 2, "pp": 1, "dp": 32, "cp": 1, "sp": True, "recompute": "none", "zero": 1}, 256, "bf16"),
    ("H200-SXM-141GB", 64, LLAMA3_8B, {"tp": 1, "pp": 1, "dp": 64, "zero": 3}, 256, "bf16"),
    ("B200-SXM-180GB", 512, LLAMA3_70B, {"tp": 8, "pp": 4, "dp": 8, "cp": 2, "vp": 5, "sp": True,
                                          "recompute": "selective", "zero": 1}, 512, "fp8"),
    ("GB200-NVL72", 576, LLAMA3_70B, {"tp": 8, "pp": 4, "dp": 9, "cp": 2, "sp": True, "recompute": None,
                                       "zero": None}, 576, "fp8"),
    ("GB300-NVL72", 144, LLAMA3_8B, {"tp": 4, "pp": 1, "dp": 18, "cp": 2, "sp": True}, 144, "fp8"),
    ("MI300X", 64, LLAMA3_8B, {"tp": 8, "pp": 1, "dp": 8, "recompute": "full", "zero": 3}, 64, "bf16"),
])
def test_modern_cases_predict(acc, count, model, parallel, gb, precision):
    p = predict_training(case(acc, count, model, parallel, gb, precision=precision))
    assert math.isfinite(p.iteration_time_s) and p.iteration_time_s > 0
    assert 0.05 < p.mfu < 0.9
    assert p.memory_bytes > 0


def test_fp8_is_faster_than_bf16_on_h100():
    par = {"tp": 8, "pp": 1, "dp": 8, "sp": True, "recompute": "none", "zero": 1}
    bf = predict_training(case("H100-SXM-80GB", 64, LLAMA3_70B | {"layers": 8}, par, 64, precision="bf16"))
    f8 = predict_training(case("H100-SXM-80GB", 64, LLAMA3_70B | {"layers": 8}, par, 64, precision="fp8"))
    assert f8.iteration_time_s < bf.iteration_time_s


def test_nvl72_domain_makes_wide_tp_cheaper():
    par = {"tp": 16, "pp": 1, "dp": 4, "sp": True, "recompute": "full", "zero": 1}
    m = LLAMA3_70B | {"layers": 8, "kv_heads": 16}
    small = predict_training(case("GB200-NVL72", 64, m, par, 64, precision="bf16", up=8))
    big = predict_training(case("GB200-NVL72", 64, m, par, 64, precision="bf16", up=72))
    assert big.time_breakdown_s["comm.tp_exposed"] < small.time_breakdown_s["comm.tp_exposed"]


def test_null_choices_are_reported():
    c = case("A100-SXM-80GB", 64, {"layers": 24, "hidden": 2048, "heads": 16, "vocab": 51200, "seq_len": 2048},
             {"tp": 1, "pp": 1, "dp": 64, "recompute": None, "zero": None}, 512, micro=None)
    p = predict_training(c)
    text = " ".join(p.assumptions)
    assert "batch.micro=" in text and "parallel.recompute=" in text and "parallel.zero=" in text
