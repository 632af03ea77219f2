"""xlayer report: the pipeline schedule, the HTML it writes, the command and the Python API."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from xlayer.reporting.timeline import chunk_layers, pipeline_timeline, rank_order

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "xlayer" / "examples" / "gpt3-175b-1024xa100.yaml"
HF = ROOT / "tests" / "fixtures" / "hf"


def run(*args: str):
    return subprocess.run([sys.executable, "-m", "xlayer.cli.main", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


@pytest.mark.parametrize("p,v,m", [(4, 1, 8), (4, 1, 2), (8, 1, 64), (4, 2, 8), (2, 4, 4), (8, 3, 24), (1, 1, 5)])
def test_timeline_reproduces_the_bubble_formula(p, v, m):
    f, b = 1.0, 2.0  # one micro-batch through a whole rank (all its chunks)
    blocks = pipeline_timeline(p, v, m, f / v, b / v)
    assert len(blocks) == 2 * p * v * m
    end = max(x.end_s for x in blocks)
    # 1F1B: (m + p − 1)(F + B); interleaved: m(F + B) + (p − 1)(F + B)/v  (pipeline_time_s)
    assert end == pytest.approx(m * (f + b) + (p - 1) * (f + b) / v)


def test_timeline_respects_dependencies_and_never_overlaps_on_a_rank():
    p, v, m = 4, 2, 8
    blocks = pipeline_timeline(p, v, m, [1.0 + 0.1 * g for g in range(p * v)], 2.0)
    end = {(x.phase, x.micro, x.chunk * p + x.rank): x.end_s for x in blocks}
    for x in blocks:
        g = x.chunk * p + x.rank
        if x.phase == "F" and g > 0:
            assert x.start_s >= end[("F", x.micro, g - 1)] - 1e-12
        if x.phase == "B":
            dep = ("B", x.micro, g + 1) if g < p * v - 1 else ("F", x.micro, g)
            assert x.start_s >= end[dep] - 1e-12
    for r in range(p):
        mine = sorted((x for x in blocks if x.rank == r), key=lambda x: x.start_s)
        assert all(a.end_s <= b.start_s + 1e-12 for a, b in zip(mine, mine[1:]))


def test_1f1b_warmup_and_layer_split():
    order = rank_order(0, 4, 1, 8)
    assert [o[0] for o in order[:4]] == ["F", "F", "F", "F"] and order[4][0] == "B"  # p−1 warm-up, then 1F1B
    assert [o[0] for o in rank_order(3, 4, 1, 8)[:2]] == ["F", "B"]  # last rank: no warm-up
    assert chunk_layers(10, 2, 2) == [3, 3, 2, 2] and sum(chunk_layers(96, 8, 3)) == 96


def _charts(html: str) -> dict[str, str]:
    return dict(re.findall(r'<svg class="chart-svg" data-chart="([^"]+)"[^>]*>(.*?)</svg>', html, flags=re.S))


def test_training_report_is_self_contained_with_every_chart(tmp_path):
    import xlayer
    pred = xlayer.predict(DEMO)
    path = xlayer.report(pred, tmp_path / "r.html")
    html = path.read_text()
    charts = _charts(html)
    assert set(charts) == {"time-breakdown", "layer-breakdown", "memory-breakdown", "roofline", "pipeline-timeline"}
    assert all(body.count("<") > 10 for body in charts.values())
    # static and offline: no script, no external resource
    assert "<script" not in html.lower()
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', html)
    # the numbers shown are the prediction's: iteration time card and breakdown tooltips
    assert f"{pred.iteration_time_s:.3f} s" in html
    assert "compute.gemm" in charts["time-breakdown"] and "capacity" in charts["memory-breakdown"]
    # one roofline point per operator with work, the Gantt has 2·m·p·v blocks
    n_ops = sum(1 for o in pred.ops if o["flops"] > 0 and o["bytes"] > 0)
    assert charts["roofline"].count("-bound):") == n_ops
    lay = pred.layout
    assert f"{2 * lay.microbatches(1536) * lay.pp * lay.vp} blocks" in html


def test_validate_report_scatter_band_and_tables(tmp_path, shared_validation):
    import xlayer
    res = xlayer.validate(shared_validation / "training")
    html = xlayer.report(res, tmp_path / "v.html").read_text()
    charts = _charts(html)
    assert list(charts) == ["validate-scatter"]
    predicted = [r for r in res.cases if r["predicted"] is not None]
    assert charts["validate-scatter"].count("<circle") == len(predicted)
    assert "<polygon" in charts["validate-scatter"] and "±10 %" in charts["validate-scatter"]
    for source, stats in res.by_source.items():
        assert f"<td>{source}</td>" in html and f"{stats['mape_pct']:.1f}" in html


def test_report_command_both_kinds_and_errors(tmp_path, shared_validation):
    r = run("report", str(DEMO), "--out", str(tmp_path / "p.html"))
    assert r.returncode == 0, r.stderr
    assert "predict report" in r.stdout and (tmp_path / "p.html").stat().st_size > 10_000
    r = run("report", str(shared_validation / "training"), "--out", str(tmp_path / "v.html"))
    assert r.returncode == 0, r.stderr
    assert 'data-chart="validate-scatter"' in (tmp_path / "v.html").read_text()
    r = run("report", str(DEMO), "--hf-config", str(HF / "Mistral-7B-v0.1" / "config.json"),
            "--out", str(tmp_path / "m.html"))
    assert r.returncode == 0, r.stderr
    assert "Mistral-7B-v0.1: 7.24 B parameters" in (tmp_path / "m.html").read_text()
    r = run("report", str(DEMO), "--kind", "bogus", "--out", str(tmp_path / "x.html"))
    assert r.returncode == 2 and r.stderr.startswith("error: --kind") and len(r.stderr.strip().splitlines()) == 1


def test_report_bad_input_names_the_field(tmp_path):
    from xlayer.cli.cmd_report import build
    from xlayer.errors import InputError
    for args, field in (((["missing.yaml"], None, None), "PATH"), (([str(DEMO)], "sweep", None), "SWEEP_OUTPUT_DIR"),
                        (([str(DEMO)], None, tmp_path / "none.json"), "--hf-config"),
                        (([str(DEMO), str(DEMO)], "predict", None), "CASE")):
        paths, kind, hf = args
        with pytest.raises(InputError) as e:
            build(paths, tmp_path / "x.html", kind, hf, progress=False)
        assert e.value.field == field
    assert not (tmp_path / "x.html").exists()


def test_python_api_mirrors_the_cli_and_gives_dataframes(shared_validation):
    import xlayer
    from xlayer.prediction.training import predict_training
    from xlayer.prediction.case import load_case

    pred = xlayer.predict(str(DEMO))
    ref = predict_training(load_case(DEMO))
    assert pred.iteration_time_s == ref.iteration_time_s and pred.to_dict() == ref.to_dict()
    t = pred.time_frame()
    assert t["time_s"].sum() == pytest.approx(pred.iteration_time_s) and t["share"].sum() == pytest.approx(1.0)
    assert pred.memory_frame()["bytes"].sum() == pytest.approx(pred.memory_bytes, rel=1e-9)
    ops = pred.ops_frame()
    assert len(ops) == len(pred.ops) and (ops["achieved_flops_per_s"] > 0).all()
    assert pred.to_frame().loc[pred.case_id, "layout.tp"] == pred.layout.tp
    res = xlayer.validate([shared_validation / "training"])
    df = res.to_frame()
    assert len(df) == len(res.cases) and {"id", "metric", "measured", "predicted", "error_pct"} <= set(df.columns)
    assert res.summary_frame().loc["all", "count"] == res.summary["all"]["count"]
    with pytest.raises(xlayer.errors.InputError):
        xlayer.predict({"kind": "training"})


def test_import_xlayer_stays_cheap():
    code = "import sys, xlayer; print(sorted(m for m in sys.modules if m.split('.')[0] in ('numpy','pandas','pydantic')))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr


def test_search_report_lists_the_top_layouts(tmp_path):
    pytest.importorskip("xlayer.explore.search")
    r = run("report", str(DEMO), "--kind", "search", "--top", "3", "--out", str(tmp_path / "s.html"))
    assert r.returncode == 0, r.stderr
    html = (tmp_path / "s.html").read_text()
    charts = _charts(html)
    assert set(charts) == {"search-top", "search-pareto"}
    assert charts["search-top"].count("#1 ") >= 1 and "#3 " in charts["search-top"] and "#4 " not in html
    assert "case: tp8 pp8x3 dp16" in html  # the case's own layout is placed in the ranking


def test_python_search_gives_frames_and_a_report(tmp_path):
    pytest.importorskip("xlayer.explore.search")
    import xlayer
    s = xlayer.search(DEMO, top=3)
    df = s.to_frame()
    assert list(df.index) == [1, 2, 3] and df["iteration_time_s"].is_monotonic_increasing
    assert len(s.all_frame()) == s.result.valid
    html = xlayer.report(s, tmp_path / "s.html").read_text()
    assert 'data-chart="search-pareto"' in html


# ---- sweep reports ---------------------------------------------------------------------

SWEEP_BASE = {"id": "small", "kind": "training",
              "model": {"name": "gpt-small", "layers": 8, "hidden": 1024, "heads": 16, "vocab": 32000,
                        "seq_len": 1024},
              "system": {"accelerator": "A100-SXM-40GB", "count": 8},
              "batch": {"global": 16}, "precision": "bf16"}


def small_sweep(out: Path) -> Path:
    """Six points (3 counts x 2 HBM capacities; 0.3 GiB is too small for some), local backend."""
    from xlayer.explore.sweep import run_sweep, sweep_from_dict
    sw = sweep_from_dict({"name": "report-sweep", "base": SWEEP_BASE, "chunk_size": 2,
                          "parameters": {"system.count": [8, 16, 32], "hardware.hbm_capacity_gib": [0.3, 40]}})
    run_sweep(sw, out, backend="local", workers=1)
    return out


def test_sweep_report_pareto_plots_and_tables(tmp_path):
    pytest.importorskip("xlayer.explore.sweep")
    from xlayer.explore.pareto import front_rows
    from xlayer.explore.sweep import read_results
    out = small_sweep(tmp_path / "sweep")
    df = read_results(out)
    assert len(df) == 6 and set(df["status"]) == {"ok", "no_fit"}  # both kinds of point are drawn
    r = run("report", str(out), "--out", str(tmp_path / "sw.html"))  # the kind is detected from the folder
    assert r.returncode == 0, r.stderr
    assert "sweep report" in r.stdout
    html = (tmp_path / "sw.html").read_text()
    charts = _charts(html)
    assert set(charts) == {"sweep-pareto-accelerators", "sweep-pareto-memory", "sweep-pareto-energy",
                           "sweep-pareto-cost"}
    assert "<script" not in html.lower() and not re.search(r'(src|href)\s*=\s*"(https?:)?//', html)
    ok = df[df["status"] == "ok"]
    for x, name in (("accelerators", "sweep-pareto-accelerators"), ("memory_gib", "sweep-pareto-memory"),
                    ("energy_j", "sweep-pareto-energy")):
        body = charts[name]
        # one marker per point with a layout; the front's points are those of xlayer pareto
        assert body.count("<circle") == len(df)
        front = front_rows(df, x)
        assert body.count("Pareto front") >= 1 and "<polyline" in body
        for pid in front["point_id"]:
            assert f"point {pid} (" in body
        assert f"{len(front)} of {len(ok)} fitting points are on the front" in html
    # front table: the accelerator-count front, in order; every point in the big table
    front = front_rows(df, "accelerators")
    ftab = re.search(r'<table id="front">(.*?)</table>', html, flags=re.S).group(1)
    assert [int(x) for x in re.findall(r'<tr><td class="n">(\d+)</td>', ftab)] == list(front["point_id"])
    ptab = re.search(r'<table id="points">(.*?)</table>', html, flags=re.S).group(1)
    assert ptab.count("<tr") == len(df) + 1 and "no_fit" in ptab
    best = ok["iteration_time_s"].min()
    assert f"{best * 1e3:.2f} ms" in html
    # the kind can be named; a case file is not a sweep folder
    from xlayer.cli.cmd_report import build, guess_kind
    assert guess_kind([str(out)]) == "sweep"
    assert build([str(out)], tmp_path / "k.html", "sweep", None)[0] == "sweep"
    r = run("report", str(DEMO), "--kind", "sweep", "--out", str(tmp_path / "x.html"))
    assert r.returncode == 2 and r.stderr.startswith("error: SWEEP_OUTPUT_DIR")


def test_sweep_report_of_an_unfinished_sweep(tmp_path):
    pytest.importorskip("xlayer.explore.sweep")
    import pandas as pd

    from xlayer.reporting import sweep_report
    html = sweep_report(pd.DataFrame(), {"name": "empty", "points": 4})
    assert "No finished points" in html and "<svg" not in html


def test_progress_callbacks_and_quiet_json(tmp_path):
    """The hooks the progress bars use: one call per categorical group of a search, the skipped
    count of a resumed sweep and one call per written chunk; --json output has no progress."""
    pytest.importorskip("xlayer.explore.sweep")
    import yaml

    from xlayer.api import load_case
    from xlayer.explore.search import search_case
    from xlayer.explore.sweep import load_sweep, run_sweep
    calls = []
    search_case(load_case(DEMO), top=1, progress=lambda d, n: calls.append((d, n)))
    assert calls and [d for d, _ in calls] == sorted(d for d, _ in calls) and calls[-1][0] == calls[-1][1]
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump({"name": "p", "base": SWEEP_BASE, "chunk_size": 2,
                                 "parameters": {"system.count": [8, 16, 32]}}))
    checked = []
    sw = load_sweep(f, progress=lambda d, n: checked.append(d))
    assert checked == [1, 2, 3]
    started, done = [], []
    run_sweep(sw, tmp_path / "o", workers=1, started=lambda s, n: started.append((s, n)),
              progress=lambda k, n: done.append(k))
    assert started == [(0, 3)] and sum(done) == 3
    started.clear()
    run_sweep(sw, tmp_path / "o", resume=True, started=lambda s, n: started.append((s, n)))
    assert started == [(3, 0)]
    r = run("sweep", str(f), "--out", str(tmp_path / "j"), "--workers", "1", "--json")
    assert r.returncode == 0 and r.stderr == "" and json.loads(r.stdout)["evaluated"] == 3


SERVING_CASE = {"id": "l70-serving", "kind": "inference", "software": {"framework": "trt-llm"},
                "model": {"name": "Llama 3.3 70B", "layers": 80, "hidden": 8192, "heads": 64, "kv_heads": 8,
                          "ffn_hidden": 28672, "vocab": 128256, "activation": "swiglu", "max_seq_len": 8192},
                "system": {"accelerator": "H100-SXM-80GB", "count": 8}, "precision": "fp8",
                "request": {"mode": "serving", "prompt_len": 1000, "output_len": 1000, "requests": 3000}}


def serving_case_file(tmp: Path) -> Path:
    import yaml
    f = tmp / "serving.yaml"
    f.write_text(yaml.safe_dump(SERVING_CASE))
    return f


def test_serving_report_curve_breakdown_and_table(tmp_path):
    f = serving_case_file(tmp_path)
    out = tmp_path / "s.html"
    r = run("report", "--kind", "serving", str(f), "--ttft", "1", "--tpot", "0.02", "--top", "5", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "serving report" in r.stdout
    html = out.read_text()
    assert "<script" not in html.lower() and not re.search(r'(src|href)\s*=\s*"(https?:)?//', html)
    charts = dict(re.findall(r'data-chart="([^"]+)"(.*?)</svg>', html, flags=re.S))
    assert set(charts) == {"serving-curve", "serving-breakdown"}
    assert "TPOT target 20 ms" in charts["serving-curve"] and "polyline" in charts["serving-curve"]
    for term in ("GEMMs", "attention"):
        assert term in charts["serving-breakdown"]
    ranked = re.search(r'<table id="serving-ranked">(.*?)</table>', html, flags=re.S).group(1)
    assert ranked.count("<tr>") == 1 + 5
    import xlayer
    s = xlayer.serve(f, ttft=1, tpot=0.02)
    assert s.best.deployment.label in html and f"{s.best.tokens_per_s_per_gpu:,.0f}" in html
    p = xlayer.report(s, tmp_path / "api.html")
    assert 'data-chart="serving-curve"' in p.read_text()


def test_serving_report_bad_input(tmp_path):
    f = serving_case_file(tmp_path)
    for args, field in ((["--kind", "serving", str(f), "--tpot", "0.001"], "--tpot"),
                        (["--kind", "serving", str(f), "--gpus", "9"], "--gpus"),
                        (["--kind", "serving", str(f), "--ttft", "-1"], "--ttft"),
                        (["--kind", "serving", str(DEMO)], "kind"),
                        (["--kind", "serving", str(f), str(f)], "CASE"),
                        ([str(DEMO), "--ttft", "1"], "--ttft"),
                        ([str(f)], "kind")):
        r = run("report", *args, "--out", str(tmp_path / "x.html"))
        assert r.returncode == 2, (args, r.stdout)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {field}: "), (args, r.stderr)
    assert not (tmp_path / "x.html").exists()
