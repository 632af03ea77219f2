"""The command line: the JSON contracts and one-line errors with exit status 2."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "xlayer" / "examples" / "gpt3-175b-1024xa100.yaml"


def run(*args: str):
    return subprocess.run([sys.executable, "-m", "xlayer.cli.main", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def write_case(tmp_path: Path, mutate) -> Path:
    data = yaml.safe_load(DEMO.read_text())
    mutate(data)
    p = tmp_path / "case.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_predict_json():
    r = run("predict", str(DEMO), "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["iteration_time_s"] > 0 and 0 < d["mfu"] < 1
    assert set(d["time_breakdown_s"]) >= {"compute.gemm", "comm.tp_exposed", "pipeline_time_s.bubble", "optimizer_step"}
    assert abs(sum(d["time_breakdown_s"].values()) - d["iteration_time_s"]) < 1e-6 * d["iteration_time_s"]


def test_predict_human_readable():
    r = run("predict", str(DEMO))
    assert r.returncode == 0, r.stderr
    assert "iteration time" in r.stdout and "MFU" in r.stdout


def test_validate_json_contract(shared_validation):
    r = run("validate", str(shared_validation / "training"), "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    row = d["cases"][0]
    assert set(row) >= {"id", "kind", "metric", "measured", "predicted", "error_pct"}
    for row in d["cases"]:
        if row["predicted"] is not None:
            assert row["error_pct"] == pytest.approx(100 * (row["predicted"] - row["measured"]) / row["measured"])
        else:
            assert row["reason"]
    assert {"count", "mape_pct", "max_abs_error_pct"} <= set(d["summary"]["all"])


def _one_line_error(r, *needles):
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_malformed_yaml(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("model: [unclosed\n  layers: 2\n")
    _one_line_error(run("predict", str(p)), "malformed YAML")


def test_unknown_field(tmp_path):
    p = write_case(tmp_path, lambda d: d["parallel"].update(tpp=2))
    _one_line_error(run("predict", str(p)), "parallel.tpp", "unknown field")


def test_unknown_accelerator_suggests(tmp_path):
    p = write_case(tmp_path, lambda d: d["system"].update(accelerator="H100-SXM-96GB"))
    _one_line_error(run("predict", str(p)), "system.accelerator", "H100-SXM-80GB")


def test_tp_not_dividing_heads(tmp_path):
    def m(d):
        d["parallel"].update(tp=5, dp=None)
        d["system"]["count"] = 5 * 8 * 16
    p = write_case(tmp_path, m)
    _one_line_error(run("predict", str(p)), "parallel.tp", "tp=5 does not divide heads=96")


def test_world_size_mismatch(tmp_path):
    p = write_case(tmp_path, lambda d: d["system"].update(count=1000))
    _one_line_error(run("predict", str(p)), "tp*pp*dp*cp=1024 but system.count=1000")


@pytest.mark.parametrize("path,value", [("model.layers", 0), ("model.hidden", -5), ("batch.global", 0),
                                        ("system.count", -1), ("model.seq_len", 0)])
def test_nonpositive_sizes(tmp_path, path, value):
    section, key = path.split(".")
    p = write_case(tmp_path, lambda d: d[section].update({key: value}))
    _one_line_error(run("predict", str(p)), path)


def test_missing_file():
    _one_line_error(run("predict", "no/such/case.yaml"), "file not found")


def test_validate_missing_path():
    _one_line_error(run("validate", "no/such/folder", "--json"), "no such file")


def _strict(text: str):
    def no(c):
        raise AssertionError(f"non-standard JSON constant {c}")
    return json.loads(text, parse_constant=no)


def test_json_is_strict_everywhere(tmp_path):
    """--json never prints NaN or Infinity (a case without a stated layout, the catalog, synth)."""
    for args in (("predict", str(DEMO), "--json"), ("catalog", "--json"),
                 ("synth", "--node", "N5", "--area-mm2", "814", "--power-w", "700", "--json")):
        r = run(*args)
        assert r.returncode == 0, r.stderr
        _strict(r.stdout)


def test_usage_mistakes_are_one_line():
    for args, needle in ((("predict", str(DEMO), "--bogus"), "--bogus"), (("search", str(DEMO), "--top", "0"), "--top"),
                         (("frobnicate",), "frobnicate"), (("predict",), "case")):
        _one_line_error(run(*args), needle)
