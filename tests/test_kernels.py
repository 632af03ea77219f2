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


def test_eager_layers_of_the_kernel_file(kernels):
    """The file's 16 eager GPT layers (forward and forward + backward, with and without
    torch.utils.checkpoint) under the pytorch-eager profile (benchmarks/compare_kernels.py
    --layers): 29 of 32 within 10 % and MAPE ≤ 5 %. The host-bound h = 2048, b = 1 layer's
    autograd forward is 32 aten ops at the profile's 20 us, within 1 % of its 0.66 ms; the
    checkpointed rows of that layer remain 11 % and 41 % fast."""
    from conftest import VALIDATION, load_benchmark
    ck = load_benchmark("compare_kernels")
    rows = ck.compare_layers(VALIDATION / "kernels" / "h200-pytorch-kernels.json")
    errs = {(r["config"], r["op"]): r["model_s"] / r["measured_s"] - 1 for r in rows}
    assert len(errs) == 32
    assert sum(abs(e) <= 0.10 for e in errs.values()) >= 29
    assert sum(map(abs, errs.values())) / len(errs) <= 0.05
    assert abs(errs[("h2048-b1-s2048", "fwd_s")]) <= 0.01
