"""Energy model: TDP calibration, cooling stages, counts from the engine, decode, CLI."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from xlayer.cost.energy import EnergySpec, EnergyTerm, WorkCounts, energy_from_counts, gpu_energy_spec
from xlayer.prediction.decode_energy import decode_step
from xlayer.prediction.energy import case_training_energy
from xlayer.hardware.catalog import get_accelerator
from xlayer.prediction.case import load_case

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "xlayer" / "examples" / "gpt3-175b-1024xa100.yaml"


@pytest.mark.parametrize("name", ["H100-SXM-80GB", "B200-SXM-180GB", "GB200-NVL72", "A100-SXM-80GB"])
def test_gemm_at_mamf_rate_draws_tdp(name):
    acc = get_accelerator(name)
    spec = gpu_energy_spec(acc)
    rate = acc.peak("bf16") * acc.matmul_efficiency
    e = energy_from_counts(WorkCounts(1.0, 1, {"bf16": rate}), spec)
    assert e.device_w == pytest.approx(acc.tdp_w)
    assert e.wall_w == pytest.approx(acc.tdp_w + spec.overhead_w)


def test_node_overhead_from_dgx_max():
    spec = gpu_energy_spec(get_accelerator("H100-SXM-80GB"))
    assert spec.overhead_w == pytest.approx((10200 - 8 * 700) / 8)


def test_cooling_stage_multiplies():
    spec = EnergySpec(name="x", flop_j={"bf16": 1e-17}, flop_stage_k=4.2,
                      hbm_byte=(EnergyTerm(j=1e-12, stage_k=77.0),), cooling_w_per_w={4.2: 300.0, 77.0: 10.0})
    e = energy_from_counts(WorkCounts(1.0, 1, {"bf16": 1e17}, hbm_bytes=1e12), spec)
    assert e.device_j == pytest.approx(1.0 + 1.0)
    assert e.wall_j == pytest.approx(301.0 + 11.0)
    assert e.device_by_stage_j == {4.2: pytest.approx(1.0), 77.0: pytest.approx(1.0)}


def test_training_energy_of_a_measured_case(shared_validation):
    c = load_case(shared_validation / "training" / "korthikanti22-175b-iter-selsp.yaml")
    e = case_training_energy(c)
    acc = c.system_spec().accelerator
    per_gpu = e.device_w / e.accelerators
    assert gpu_energy_spec(acc).static_w[0].j < per_gpu < acc.tdp_w
    assert e.device_by_term_j["compute"] > e.device_by_term_j["hbm"] > 0
    assert sum(e.wall_by_term_j.values()) == pytest.approx(e.wall_j)
    # compute energy covers at least the model FLOPs 6·N·tokens
    tokens = c.batch.global_ * c.model.seq_len
    assert e.counts.flops["bf16"] > 6 * 174e9 * tokens


def test_decode_energy_per_token_falls_with_batch():
    from xlayer.studies.scd import llama2_70b, make_system
    acc = get_accelerator("H100-SXM-80GB")
    spec = gpu_energy_spec(acc)
    sysm = make_system(acc, 4)
    small = energy_from_counts(decode_step(llama2_70b(), sysm, 4, 1, 8, 2048).counts, spec)
    big = energy_from_counts(decode_step(llama2_70b(), sysm, 4, 1, 64, 2048).counts, spec)
    assert big.per_token_j() < small.per_token_j()


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "xlayer.cli.main", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def test_cli_energy():
    r = run_cli("energy", str(DEMO), "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["wall_j"] > d["device_j"] > 0 and d["accelerators"] == 1024


def test_cli_energy_unknown_part(tmp_path):
    import yaml
    data = yaml.safe_load(DEMO.read_text())
    data["system"]["accelerator"] = "MI300X"
    data["parallel"] = {"tp": 8, "pp": 8}
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(data))
    r = run_cli("energy", str(p))
    assert r.returncode == 2 and r.stderr.startswith("error: system.accelerator")
