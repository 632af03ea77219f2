"""Technology layer: node tables, chip synthesis against real parts, the two studies, errors."""
from __future__ import annotations

import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from xlayer.errors import InputError
from xlayer.hardware.catalog import get_accelerator
from xlayer.prediction.training import predict_training
from xlayer.studies.technology import compute_stops_leading, make_case, node_sweep, waterfall
from xlayer.technology.synth import REFERENCE_BUDGETS, Budget, node_energy_calibration, synthesize
from xlayer.technology.tables import get_link, get_memory, get_node, node_names, raw

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("part", ["A100-SXM-80GB", "H100-SXM-80GB"])
def test_synthesis_matches_real_part_within_25pct(part):
    """7 nm- and 4 nm-class chips with the A100 / H100 budgets land within 25 % of the real
    parts' peak bf16 and HBM bandwidth. Energy/FLOP and f_max are calibrated on the A100 only
    (nodes.yaml `calibration`), the HBM pin derate on the B200 only: the H100 is a test."""
    acc = synthesize(REFERENCE_BUDGETS[part]).accelerator
    real = get_accelerator(part)
    assert abs(acc.peak("bf16") / real.peak("bf16") - 1) < 0.25
    assert abs(acc.hbm.bandwidth_bytes_per_s / real.hbm.bandwidth_bytes_per_s - 1) < 0.25


def test_every_value_has_a_source_or_is_an_assumption():
    data = raw()
    for name, node in data["nodes"].items():
        for key in ("logic_density_mtr_per_mm2", "sram_bitcell_um2", "era"):
            assert key in node["sources"], (name, key)
        if node["previous"]:
            assert "speed_vs_previous" in node["sources"] and "power_vs_previous" in node["sources"]
    for key in data["architecture"]:
        if key != "sources":
            assert key in data["architecture"]["sources"], key


def test_node_table_chains_foundry_claims():
    n7, n5, n12 = get_node("N7"), get_node("4N"), get_node("12nm")
    assert n7.speed_rel == 1.0 and n7.energy_rel == 1.0
    assert n5.energy_rel == pytest.approx(0.70) and n5.speed_rel == pytest.approx(1.15)
    assert n12.energy_rel == pytest.approx(1 / 0.39)
    names = node_names()
    assert names[0] == "N12" and names[-1] == "A10" and len(names) == 7
    energies = [get_node(n).energy_rel for n in names]
    assert energies == sorted(energies, reverse=True)
    assert get_memory("hbm3e").max_gb_per_stack == 36
    assert get_link("NVLink 5").bytes_per_s_per_link == 50e9


def test_calibration_reproduces_a100_energy():
    c = node_energy_calibration()
    # (400 W - 2.039 TB/s * 8 * 6 pJ/bit - 2 * 300 GB/s * 8 * 5 pJ/bit) / 312 TFLOP/s
    assert c["energy_per_flop_j"] == pytest.approx((400 - 97.872 - 24.0) / 312e12)


def test_newer_node_same_budget_is_not_slower_in_peak():
    base = dict(area_mm2=814, power_w=700, hbm_shoreline_mm=52.5, link_shoreline_mm=36, memory="HBM3",
                scale_up="NVLink 4", scale_out="InfiniBand NDR 400G")
    peaks = [synthesize(Budget(node=n, **base)).accelerator.peak("bf16") for n in node_names()]
    assert all(b >= a for a, b in zip(peaks, peaks[1:]))
    # more power never lowers the peak; an area-limited chip ignores extra power
    lo = synthesize(Budget(node="N5", **base)).accelerator.peak("bf16")
    hi = synthesize(replace(Budget(node="N5", **base), power_w=1000)).accelerator.peak("bf16")
    assert hi > lo


def test_shoreline_sets_stacks_and_links():
    b = Budget(node="N5", area_mm2=814, power_w=700, hbm_shoreline_mm=3 * 10.5, link_shoreline_mm=10.0)
    r = synthesize(b)
    assert r.derivation["hbm_stacks"] == 3 and r.derivation["scale_up_links"] == 5
    assert r.accelerator.hbm.bandwidth_bytes_per_s == pytest.approx(3 * get_memory("HBM3").stack_bytes_per_s())


def test_synthesized_chip_feeds_the_cost_engine():
    acc = synthesize(REFERENCE_BUDGETS["H100-SXM-80GB"]).accelerator
    p = predict_training(make_case(acc))
    real = predict_training(make_case(get_accelerator("H100-SXM-80GB")), p.layout)
    assert 0 < p.mfu < 1 and p.fits_memory
    assert 0.5 < p.iteration_time_s / real.iteration_time_s < 2.0


@pytest.mark.parametrize("budget,field", [
    (Budget(node="N9", area_mm2=800, power_w=700), "budget.node"),
    (Budget(node="N5", area_mm2=60, power_w=700), "budget.area_mm2"),
    (Budget(node="N5", area_mm2=800, power_w=700, hbm_shoreline_mm=8.0), "budget.hbm_shoreline_mm"),
    (Budget(node="N5", area_mm2=800, power_w=700, perimeter_mm=60.0), "budget.perimeter_mm"),
    (Budget(node="N5", area_mm2=800, power_w=100), "budget.power_w"),
])
def test_bad_budgets_raise_input_error(budget, field):
    with pytest.raises(InputError) as e:
        synthesize(budget)
    assert e.value.field == field


def test_waterfall_ratios_multiply_to_end_to_end():
    steps = waterfall()
    product = math.prod(s.ratio for s in steps)
    assert product == pytest.approx(steps[0].time_s / steps[-1].time_s, rel=1e-9)
    assert steps[-1].cumulative == pytest.approx(product, rel=1e-9)
    # the hardware steps end on the catalog parts: re-timing GB200 NVL72 on the held layout
    # reproduces the last hardware step
    i = next(k for k, s in enumerate(steps) if s.label.startswith("software: layout"))
    held = steps[i - 1]
    gb = get_accelerator("GB200-NVL72")
    from xlayer.mapping.layout import Layout
    lay = predict_training(make_case(get_accelerator("A100-SXM-80GB"), scale_up_size=8)).layout
    t = predict_training(make_case(gb, scale_up_size=64, precision="fp8"), lay).iteration_time_s
    assert t == pytest.approx(held.time_s, rel=1e-9)
    assert isinstance(lay, Layout)
    # every machine generation is faster than the one before
    assert steps[-1].cumulative > 5


def test_node_sweep_finds_where_compute_stops_leading():
    rows = node_sweep(series=("logic only",), precisions=("fp8",))
    comm = [r["comm_exposed_share"] for r in rows]
    assert comm[-1] > comm[0]
    stop = compute_stops_leading(rows, "logic only", "fp8")
    assert stop is not None and stop in node_names()
    first = next(r for r in rows if r["node"] == stop)
    assert first["compute_bound_share"] <= 0.5 or first["main_term"] != "compute_bound"
    for r in rows:
        total = sum(r[k] for k in ("compute_bound_share", "memory_bound_share", "comm_exposed_share",
                                   "bubble_share", "other_share"))
        assert total == pytest.approx(1.0)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "xlayer.cli.main", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def test_cli_synth_and_errors():
    r = _cli("synth", "--node", "N5", "--area-mm2", "814", "--power-w", "700", "--json")
    assert r.returncode == 0, r.stderr
    assert '"peak_bf16_flops_per_s"' in r.stdout
    for args in (("--node", "N5", "--area-mm2", "814", "--power-w", "700", "--hbm-mm", "5"),):
        r = _cli("synth", *args)
        assert r.returncode == 2
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: budget.")


def test_study_figures_depend_on_the_data_only(tmp_path):
    """Regenerating a study page rewrites its figures byte for byte when the numbers are the
    same (no creation date, fixed SVG ids), so docs/studies changes only where results do."""
    from xlayer.studies.technology import node_sweep, plot_nodes

    rows = node_sweep()
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    pa, pb = plot_nodes(rows, a, "x"), plot_nodes(rows, b, "x")
    assert [p.suffix for p in pa] == [".png", ".svg"]
    for x, y in zip(pa, pb):
        assert x.read_bytes() == y.read_bytes(), x.name
