"""The compute model reproduces the measured H200 kernels it was calibrated on."""
from __future__ import annotations

import json

import pytest

from conftest import gpt
from xlayer.cost.compute import calibration, op_time
from xlayer.hardware import get_accelerator
from xlayer.workload.operators import Op, gemm


@pytest.fixture(scope="module")
def kernels():
    from conftest import VALIDATION
    path = VALIDATION / "kernels" / "h200-pytorch-kernels.json"
    if not path.exists():
        pytest.skip("kernel file not present")
    return json.loads(path.read_text())


def test_large_gemms_within_10pct(kernels):
    acc = get_accelerator("H200-SXM-141GB")
    cal = calibration().isolated()
    floor = cal.eager_isolated_kernel_s
    errs = []
    for g in kernels["gemm"]:
        if g["m"] < 2048 or g["time_s"] < 6e-5:
            continue
        t = op_time(gemm("g", g["m"], g["k"], g["n"], "bf16"), acc, cal, kernel_overhead_s=floor).time_s
        errs.append(abs(t / g["time_s"] - 1))
    assert sum(errs) / len(errs) < 0.10


def test_small_gemms_are_memory_or_overhead_bound(kernels):
    acc = get_accelerator("H200-SXM-141GB")
    t = op_time(gemm("g", 1, 4096, 4096, "bf16"), acc)
    assert t.bound == "hbm"


def test_flash_attention_within_8pct(kernels):
    acc = get_accelerator("H200-SXM-141GB")
    cal = calibration().isolated()
    floor = cal.eager_isolated_kernel_s
    errs = []
    for a in kernels["attention"]:
        flops = 4 * a["b"] * a["heads"] * a["s"] ** 2 * a["d"] * 0.5
        op = Op("flash_attn", "attention", flops, 0.0, heads=a["b"] * a["heads"], seq_q=a["s"], seq_kv=a["s"])
        t = op_time(op, acc, cal, kernel_overhead_s=floor).time_s
        errs.append(abs(t / a["fwd_s"] - 1))
    assert sum(errs) / len(errs) < 0.08
