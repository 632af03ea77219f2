"""A GEMM with few rows streams its weights at the part's ``gemm_stream_efficiency`` of the HBM
peak, derived from NVIDIA's published cuBLAS timings (benchmarks/gemm_stream.py over
benchmarks/data/trtllm-gemm-small-m.csv.gz); activations keep the copy bandwidth."""
from __future__ import annotations

import statistics

import pytest

from conftest import load_benchmark
from xlayer.cost.compute import op_time
from xlayer.hardware.catalog import get_accelerator
from xlayer.workload.operators import gemm


@pytest.fixture(scope="module")
def gs():
    return load_benchmark("gemm_stream")


def test_catalog_values_are_what_the_published_timings_give(gs):
    derived = gs.stream_efficiency()
    assert set(derived) == set(gs.PART.values())
    for part, e in derived.items():
        acc = get_accelerator(part)
        assert acc.gemm_stream_efficiency == pytest.approx(e, abs=0.0051), part
        assert acc.gemm_stream_efficiency < acc.hbm.efficiency  # a copy kernel reaches more


def test_large_weight_few_row_gemms_within_their_spread(gs):
    for part, (every, large) in gs.errors().items():
        assert len(large) >= 100, part
        assert abs(statistics.median(large)) <= 1.0 and statistics.mean(map(abs, large)) <= 7.0, part


def test_only_the_weight_operand_streams_at_the_gemm_rate():
    acc = get_accelerator("H100-SXM-80GB")
    g = gemm("g", 1, 8192, 8192, "bf16")
    assert g.weight_bytes == 8192 * 8192 * 2 and g.bytes > g.weight_bytes
    t = op_time(g, acc, kernel_overhead_s=0.0)
    peak = acc.hbm.bandwidth_bytes_per_s
    expected = g.weight_bytes / (peak * acc.gemm_stream_efficiency) + (g.bytes - g.weight_bytes) / (
        peak * acc.hbm.efficiency)
    assert t.hbm_s == pytest.approx(expected, rel=1e-12)
    # an attention-score batched GEMM writes far more than its B operand: near the copy rate
    s = gemm("scores", 2048, 128, 2048, "bf16", batch=16)
    ts = op_time(s, acc, kernel_overhead_s=0.0)
    assert ts.hbm_s == pytest.approx(s.bytes / (peak * acc.hbm.efficiency), rel=0.08)
    # a compute-bound GEMM does not move
    big = op_time(gemm("big", 8192, 8192, 8192, "bf16"), acc)
    assert big.bound == "compute"


def test_a_part_without_the_figure_keeps_the_copy_bandwidth():
    acc = get_accelerator("H100-SXM-80GB").model_copy(update={"gemm_stream_efficiency": None})
    g = gemm("g", 1, 8192, 8192, "bf16")
    assert op_time(g, acc, kernel_overhead_s=0.0).hbm_s == pytest.approx(g.bytes / acc.hbm.achievable_bytes_per_s)
