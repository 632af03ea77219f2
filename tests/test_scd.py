"""SCD builder: device → chip arithmetic by hand, the imec concept, physical validation."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from xlayer.errors import InputError
from xlayer.hardware.scd import (CONCEPT_FILE, build_scd, carnot_min_overhead, load_scd_spec, scd_spec_from_dict,
                                 with_params)

ROOT = Path(__file__).resolve().parents[1]


def small_spec(**over):
    d = yaml.safe_load(CONCEPT_FILE.read_text())
    d["logic"].update(clock_hz=10e9, jj_density_per_cm2=1e8, logic_layers=3, chip_area_cm2=2.0, mac_fraction=0.5,
                      jjs_per_mac={"bf16": 1000, "fp8": 400}, switching_energy_j=2e-20, activity=0.5,
                      mac_array_size=1000)
    d["jsram"].update(density_bytes_per_cm2=4e6, layers=4, area_fraction=1.0, capacity_bytes=None, banks=10,
                      bytes_per_bank_per_cycle=8, jjs_per_bit_access=20)
    d["links"]["chip_to_chip"].update(wires=100, rate_bits_per_s=10e9, length_m=0.3, velocity_fraction_c=0.5,
                                      overhead_s=1e-9)
    d["system"].update(chips_per_board=4, boards=3)
    for k, v in over.items():
        sec, field = k.split(".")
        d[sec][field] = v
    return scd_spec_from_dict(d)


def test_chip_arithmetic_by_hand():
    b = build_scd(small_spec())
    # JJ budget 1e8/cm² × 2 cm² × 3 layers × 0.5 = 3e8; ÷ 1000 JJ/MAC = 300,000 MACs
    assert b.derived["mac_jj_budget"] == pytest.approx(3e8)
    assert b.derived["mac_units"] == 300_000
    # peak = 2 FLOP × 300,000 MACs × 10 GHz = 6e15; fp8: 3e8/400 = 750,000 MACs → 1.5e16
    assert b.accelerator.peak("bf16") == pytest.approx(6e15)
    assert b.accelerator.peak("fp8") == pytest.approx(1.5e16)
    assert b.accelerator.compute_units == 300
    # energy per FLOP = 1000 JJ × 0.5 × 2e-20 J / 2 = 5e-18 J
    assert b.energy.flop_energy_j("bf16") == pytest.approx(5e-18)
    # JSRAM: 4 MB/cm² × 2 cm² × 4 layers = 32 MB; 10 banks × 8 B × 10 GHz = 800 GB/s
    assert b.accelerator.level("l2").capacity_bytes == pytest.approx(32e6)
    assert b.accelerator.level("l2").bandwidth_bytes_per_s == pytest.approx(8e11)
    # link: 100 wires × 10 Gb/s / 8 = 125 GB/s; 0.3 m at 0.5 c = 2.0014 ns + 1 ns
    assert b.accelerator.scale_up.bandwidth_bytes_per_s == pytest.approx(1.25e11)
    assert b.accelerator.scale_up.latency_s == pytest.approx(0.3 / (0.5 * 2.998e8) + 1e-9)
    assert b.system.count == 12 and b.system.scale_up_size == 4
    # logic power at full rate = 300,000 × 10 GHz × 1000 × 0.5 × 2e-20 = 0.03 W = peak × e_FLOP
    assert b.rated_power()["chip_logic_w"] == pytest.approx(6e15 * 5e-18)


def test_clock_scales_peak_linearly():
    a = build_scd(small_spec())
    b = build_scd(with_params(small_spec(), **{"logic.clock_hz": 20e9}))
    assert b.accelerator.peak("bf16") == pytest.approx(2 * a.accelerator.peak("bf16"))


def test_concept_reproduces_peak_and_power_within_10pct():
    b = build_scd(load_scd_spec())
    rp = b.rated_power()
    assert b.derived["boards"] == 100
    assert rp["peak_flops_per_s"] == pytest.approx(20e18, rel=0.10)
    assert rp["wall_w"] == pytest.approx(500e3, rel=0.10)
    # per board ≈ 200 PFLOP/s and ≈ 5 kW
    assert rp["peak_flops_per_s"] / 100 == pytest.approx(200e15, rel=0.10)
    assert rp["wall_per_board_w"] == pytest.approx(5e3, rel=0.10)


def test_cooling_multiplies_cold_power():
    s = load_scd_spec()
    a = build_scd(s).rated_power()
    b = build_scd(with_params(s, **{"cooling.0.overhead_w_per_w": 600.0})).rated_power()
    assert b["wall_cold_w"] == pytest.approx(a["system_cold_w"] * 601)


@pytest.mark.parametrize("field,value,needle", [
    ("logic.switching_energy_j", -1e-20, "cannot be negative"),
    ("dram.energy_per_bit_j", -1e-12, "cannot be negative"),
    ("cooling.0.overhead_w_per_w", 50.0, "Carnot"),
    ("cooling.1.overhead_w_per_w", 2.0, "Carnot"),
    ("jsram.capacity_bytes", 1e12, "more JSRAM than the area holds"),
    ("logic.activity", 1.5, "fraction"),
])
def test_impossible_inputs_raise(field, value, needle):
    with pytest.raises(InputError) as e:
        with_params(load_scd_spec(), **{field: value})
    assert e.value.field == field and needle in str(e.value)


def test_carnot_minimum():
    assert carnot_min_overhead(4.2) == pytest.approx((300 - 4.2) / 4.2)
    assert carnot_min_overhead(77) == pytest.approx(223 / 77)
    with_params(load_scd_spec(), **{"cooling.0.overhead_w_per_w": carnot_min_overhead(4.2)})  # the limit itself is allowed


def test_engine_runs_unchanged_on_scd():
    from xlayer.prediction.energy import training_energy
    from xlayer.studies.scd import best_training_layout, gpt3_175b
    b = build_scd(load_scd_spec(), boards=6)
    m = gpt3_175b()
    lay, recipe = best_training_layout(m, b.system, "bf16", 96)
    e = training_energy(m, b.system, "bf16", 96, lay, recipe, b.energy)
    assert e.time_s > 0 and set(e.device_by_stage_j) == {4.2, 77.0}
    # each stage's heat costs (1 + η) at the wall: 301x at 4.2 K, 11x at 77 K, plus 300 K electronics
    cold, warm = e.device_by_stage_j[4.2], e.device_by_stage_j[77.0]
    assert e.wall_j == pytest.approx(cold * 301 + warm * 11 + e.wall_by_term_j["overhead"])


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "xlayer.cli.main", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def test_cli_build_and_bad_spec(tmp_path):
    r = run_cli("scd", "build")
    assert r.returncode == 0, r.stderr
    assert "EFLOP/s" in r.stdout and "kW at the wall" in r.stdout
    d = yaml.safe_load(CONCEPT_FILE.read_text())
    d["cooling"][0]["overhead_w_per_w"] = 30
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(d))
    r = run_cli("scd", "build", str(p))
    assert r.returncode == 2
    assert r.stderr.startswith("error: cooling.0.overhead_w_per_w: 30")
    d = yaml.safe_load(CONCEPT_FILE.read_text())
    d["links"]["board_to_board"]["energy_per_bit_j"] = -5e-15
    p.write_text(yaml.safe_dump(d))
    r = run_cli("scd", "build", str(p))
    assert r.returncode == 2 and "links.board_to_board.energy_per_bit_j" in r.stderr
