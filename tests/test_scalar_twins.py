"""Every scalar fast path and its array twin agree, tested directly on a grid of inputs (not
only end to end through a prediction)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from xlayer.cost.collectives import _formula_time_s, _ring_scalar, collective_time_s, ranks_in_domain, ring_time_s
from xlayer.cost.compute import op_time, wave_utilization
from xlayer.hardware.catalog import get_accelerator
from xlayer.mapping.layout import layers_on_first_rank, layers_on_last_rank, layers_on_middle_rank
from xlayer.workload.operators import gemm

SIZES = [1e3, 6.5e4, 1e6, 3.3e7, 1e9, 4e9]
GROUPS = [1, 2, 3, 4, 8, 16, 64, 72, 256]
COLLECTIVES = ["all_reduce", "all_gather", "reduce_scatter", "all_to_all", "send_recv"]


@pytest.mark.parametrize("acc", ["H100-SXM-80GB", "GB200-NVL72", "MI300X"])
def test_ring_scalar_equals_the_array_formula(acc):
    a = get_accelerator(acc)
    for link in (a.scale_up, a.scale_out):
        for coll in COLLECTIVES:
            n = np.array([g for g, _ in itertools.product(GROUPS, SIZES)], dtype=float)
            s = np.array([x for _, x in itertools.product(GROUPS, SIZES)], dtype=float)
            arr = _formula_time_s(coll, s, n, link)
            for i in range(n.size):
                assert _ring_scalar(coll, float(s[i]), float(n[i]), link) == pytest.approx(arr[i], rel=1e-12)
            arr_curve = ring_time_s(coll, s, n, link) if coll != "send_recv" else None
            if arr_curve is not None:
                for i in range(n.size):
                    assert ring_time_s(coll, float(s[i]), int(n[i]), link) == pytest.approx(arr_curve[i], rel=1e-9)


def test_collective_time_scalar_equals_arrays():
    a = get_accelerator("H100-SXM-80GB")
    rows = [(c, s, n, ni) for c in COLLECTIVES for s in SIZES for n in (2, 8, 16, 64) for ni in (1, 2, 8) if ni <= n]
    for coll in COLLECTIVES:
        sub = [r for r in rows if r[0] == coll]
        s = np.array([r[1] for r in sub])
        n = np.array([r[2] for r in sub])
        ni = np.array([r[3] for r in sub])
        arr = collective_time_s(coll, s, n, ni, a.scale_up, a.scale_out)
        for i, (_, si, nn, nin) in enumerate(sub):
            assert collective_time_s(coll, si, nn, nin, a.scale_up, a.scale_out) == pytest.approx(arr[i], rel=1e-9)


def test_ranks_in_domain_scalar_equals_arrays():
    grid = [(n, s, d) for n in (1, 2, 3, 4, 8, 16, 24) for s in (1, 2, 4, 8, 16) for d in (4, 8, 64, 72)]
    n = np.array([g[0] for g in grid])
    s = np.array([g[1] for g in grid])
    for d in (4, 8, 64, 72):
        arr = ranks_in_domain(n, s, d)
        for i in range(n.size):
            assert ranks_in_domain(int(n[i]), int(s[i]), d) == arr[i]


def test_wave_utilization_and_op_time_scalar_equal_arrays():
    acc = get_accelerator("H200-SXM-141GB")
    ms = [1, 7, 16, 100, 127, 128, 129, 255, 256, 1000, 1024, 1025, 4096, 16384]
    ns = [128, 1000, 4096, 12288]
    ks = [256, 4096, 12288]
    grid = list(itertools.product(ms, ns, ks))
    m = np.array([g[0] for g in grid], dtype=float)
    n = np.array([g[1] for g in grid], dtype=float)
    k = np.array([g[2] for g in grid], dtype=float)
    u = wave_utilization(m, n, 1, acc.compute_units, k)
    t = op_time(gemm("g", m, k, n, "bf16"), acc).time_s
    for i, (mi, ni, ki) in enumerate(grid):
        assert wave_utilization(mi, ni, 1, acc.compute_units, ki) == pytest.approx(u[i], rel=1e-12)
        assert op_time(gemm("g", mi, ki, ni, "bf16"), acc).time_s == pytest.approx(t[i], rel=1e-12)


def test_layer_split_scalar_equals_arrays():
    grid = [(L, p, v) for L in (9, 46, 70, 80, 94, 126) for p in (1, 2, 4, 8, 12, 16) for v in (1, 2, 3, 4, 8)
            if p * v <= L + 2]
    L = np.array([g[0] for g in grid])
    p = np.array([g[1] for g in grid])
    v = np.array([g[2] for g in grid])
    for f in (layers_on_first_rank, layers_on_last_rank, layers_on_middle_rank):
        arr = f(L, p, v)
        for i, (a, b, c) in enumerate(grid):
            assert f(a, b, c) == arr[i], (f.__name__, a, b, c)


def test_operator_cache_never_changes_a_result():
    """The engine keeps a layer kind's operator times for recent row sets: warm and cold calls
    agree, and two variants of one part (same name) are never mixed up."""
    from xlayer.engine.training import _OPS_CACHE, recipe_for
    from xlayer.engine.vectorized import evaluate_layouts
    from xlayer.hardware.spec import System
    from xlayer.hardware.variant import HardwareOverrides
    from conftest import gpt
    model = gpt(layers=8, hidden=2048, heads=16, ffn_hidden=8192, vocab=32000, seq_len=2048)
    acc = get_accelerator("H100-SXM-80GB")
    slow = HardwareOverrides(hbm_bandwidth_scale=0.5, peak_flops_scale=0.5).apply(acc)
    fast = HardwareOverrides(hbm_bandwidth_scale=2.0).apply(acc)
    assert slow.name == fast.name  # both "H100-SXM-80GB*"
    grid = {"tp": np.array([1, 2, 4, 8]), "pp": np.array([1, 1, 1, 1]), "dp": np.array([8, 4, 2, 1]),
            "cp": np.ones(4, int), "vp": np.ones(4, int), "micro": np.array([1, 2, 4, 8]), "ep": np.ones(4, int)}
    out = {}
    for name, a in (("slow", slow), ("fast", fast), ("slow-again", slow)):
        system = System(accelerator=a, count=8, scale_up_size=8)
        r = evaluate_layouts(model, system, "bf16", 64, grid, True, "none", 1, recipe_for(model, "bf16"))
        out[name] = r["iteration_time_s"].copy()
        _OPS_CACHE.clear()
        cold = evaluate_layouts(model, system, "bf16", 64, grid, True, "none", 1, recipe_for(model, "bf16"))
        assert np.array_equal(cold["iteration_time_s"], out[name])
    assert np.all(out["slow"] > out["fast"]) and np.array_equal(out["slow"], out["slow-again"])


def test_where_scalar_equals_arrays():
    """The engine's select: Python scalars take a fast path, arrays numpy's; both agree."""
    from xlayer.engine.training import _where
    for cond in (True, False, np.bool_(True), np.bool_(False)):
        for a, b in ((1.5, 2.5), (np.float64(3.0), 4), (0, np.int64(7))):
            got = _where(cond, a, b)
            assert isinstance(got, float) and got == float(np.where(cond, a, b))
    conds = np.array([True, False, True])
    assert np.array_equal(_where(conds, np.array([1.0, 2.0, 3.0]), 0.0), np.array([1.0, 0.0, 3.0]))
    assert np.array_equal(_where(True, np.array([1.0, 2.0]), 0.0), np.array([1.0, 2.0]))
