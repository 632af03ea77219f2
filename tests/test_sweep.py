"""Sweeps: definition checks before any work, hardware overrides, Parquet output, resume after SIGKILL."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from xlayer.errors import InputError
from xlayer.explore.sweep import apply_hardware, evaluate_point, load_sweep, read_results, run_sweep, sweep_from_dict
from xlayer.hardware import get_accelerator
from xlayer.prediction.case import load_case

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "xlayer" / "examples"
DEMO = EXAMPLES / "gpt3-175b-1024xa100.yaml"

BASE = {"id": "small", "kind": "training",
        "model": {"name": "gpt-small", "layers": 8, "hidden": 1024, "heads": 16, "vocab": 32000, "seq_len": 1024},
        "system": {"accelerator": "A100-SXM-40GB", "count": 8},
        "parallel": {"tp": 2, "pp": 2},
        "batch": {"global": 16}, "precision": "bf16"}


def sweep(params, **kw):
    d = {"name": "t", "base": json.loads(json.dumps(BASE)), "parameters": params}
    d.update(kw)
    return sweep_from_dict(d)


class _Result:
    def __init__(self, r):
        self.returncode, self.stdout, self.stderr = r.exit_code, r.stdout, r.stderr


def run_cli(*args):
    """The xlayer command in-process (typer's runner): same exit codes and streams, no start-up cost."""
    from typer.testing import CliRunner

    from xlayer.cli.main import app
    return _Result(CliRunner().invoke(app, list(args)))


# ---- the definition ---------------------------------------------------------------------------

def test_grid_and_ranges_expand():
    sw = sweep({"system.count": {"start": 8, "stop": 32, "step": 8},
                "hardware.hbm_bandwidth_scale": [0.5, 1.0],
                "hardware.peak_flops_scale": {"start": 1, "stop": 4, "num": 3, "scale": "log"}})
    assert len(sw.points) == 4 * 2 * 3
    assert sorted({p["system.count"] for p in sw.points}) == [8, 16, 24, 32]
    assert sorted({p["hardware.peak_flops_scale"] for p in sw.points}) == pytest.approx([1.0, 2.0, 4.0])


def test_random_is_seeded():
    spec = {"system.count": [8, 16], "hardware.hbm_capacity_gib": {"low": 16, "high": 80},
            "hardware.scale_out_bandwidth_bytes_per_s": {"low": 1e10, "high": 1e11, "log": True}}
    a = sweep(spec, mode="random", samples=6, seed=3)
    b = sweep(spec, mode="random", samples=6, seed=3)
    c = sweep(spec, mode="random", samples=6, seed=4)
    assert a.points == b.points and a.points != c.points and len(a.points) == 6
    assert all(16 <= p["hardware.hbm_capacity_gib"] <= 80 for p in a.points)


@pytest.mark.parametrize("params, extra, entry", [
    ({"model.hiden": [1024]}, {}, "parameters.model.hiden"),
    ({"hardware.hbm_speed": [1]}, {}, "parameters.hardware.hbm_speed"),
    ({"system.count": []}, {}, "parameters.system.count"),
    ({"system.count": {"start": 16, "stop": 8, "step": 8}}, {}, "parameters.system.count"),
    ({"hardware.hbm_capacity_gib": {"low": 80, "high": 16}}, {"mode": "random", "samples": 2},
     "parameters.hardware.hbm_capacity_gib"),
    ({"parallel.tp": [2, 3]}, {}, "points[1]"),                  # tp=3 divides neither heads nor count
    ({"system.count": [8, 7]}, {"search": False}, "points[1]"),  # tp*pp=4 does not divide 7
    ({"hardware.hbm_bandwidth_scale": [1, -1]}, {}, "points[1]"),
    ({"model.heads": [16, 12]}, {}, "points[1]"),               # 12 does not divide hidden=1024
])
def test_bad_sweeps_fail_naming_the_entry(params, extra, entry):
    with pytest.raises(InputError) as exc:
        sweep(params, **extra)
    assert str(exc.value).startswith(entry), str(exc.value)
    assert "\n" not in str(exc.value)


def test_bad_sweep_cli_exits_2_before_any_work(tmp_path):
    d = {"base": str(DEMO), "parameters": {"system.count": [1024, 1000]}}
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(d))
    out = tmp_path / "out"
    r = run_cli("sweep", str(f), "--out", str(out))
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "points[1]" in r.stderr and "system.count=1000" in r.stderr
    assert not out.exists()
    f.write_text(yaml.safe_dump({"base": str(DEMO), "parameters": {"hardware.flops": [1]}}))
    r = run_cli("sweep", str(f), "--out", str(out))
    assert r.returncode == 2 and "parameters.hardware.flops" in r.stderr and not out.exists()


# ---- hardware overrides -----------------------------------------------------------------------

def test_apply_hardware_copies_the_frozen_spec():
    acc = get_accelerator("A100-SXM-80GB")
    mod = apply_hardware(acc, {"hardware.peak_flops_scale": 2.0, "hardware.hbm_bandwidth_scale": 1.5,
                               "hardware.hbm_capacity_gib": 40, "hardware.scale_out_bandwidth_bytes_per_s": 50e9,
                               "hardware.scale_up_domain": 16})
    assert mod.peak("bf16") == 2 * acc.peak("bf16")
    assert mod.hbm.bandwidth_bytes_per_s == pytest.approx(1.5 * acc.hbm.bandwidth_bytes_per_s)
    assert mod.hbm.capacity_bytes == 40 * 2 ** 30 and mod.hbm.efficiency == acc.hbm.efficiency
    assert mod.scale_out.bandwidth_bytes_per_s == 50e9 and mod.scale_out.efficiency == acc.scale_out.efficiency
    assert mod.scale_up == acc.scale_up and mod.scale_up_domain == 16
    assert get_accelerator("A100-SXM-80GB") == acc  # the catalog part is unchanged


def test_faster_hardware_is_not_slower():
    sw = sweep({"hardware.peak_flops_scale": [1.0, 2.0], "hardware.scale_out_bandwidth_scale": [1.0, 4.0]})
    spec = sw.spec()
    rows = {(p["hardware.peak_flops_scale"], p["hardware.scale_out_bandwidth_scale"]): evaluate_point(spec, p, i)
            for i, p in enumerate(sw.points)}
    t = {k: r["iteration_time_s"] for k, r in rows.items()}
    assert t[(2.0, 1.0)] < t[(1.0, 1.0)] and t[(1.0, 4.0)] <= t[(1.0, 1.0)] and t[(2.0, 4.0)] <= t[(2.0, 1.0)]
    assert all(r["status"] == "ok" for r in rows.values())


def test_search_false_keeps_the_case_layout():
    sw = sweep({"system.count": [8, 16]}, search=False)
    rows = [evaluate_point(sw.spec(), p, i) for i, p in enumerate(sw.points)]
    assert [(r["tp"], r["pp"], r["dp"]) for r in rows] == [(2, 2, 2), (2, 2, 4)]
    searched = sweep({"system.count": [8, 16]})
    best = [evaluate_point(searched.spec(), p, i) for i, p in enumerate(searched.points)]
    assert all(b["iteration_time_s"] <= r["iteration_time_s"] for b, r in zip(best, rows))


def test_a_point_is_costed_with_the_case_software_stack_as_search_is():
    """The sweep's best layout of a point equals `xlayer search` on that point's case: the
    software block selects the stack profile (here DeepSpeed's: ZeRO stages and its pipeline
    engine's four blocking transfers) in both."""
    from xlayer.explore.search import search_case
    from xlayer.prediction.case import case_from_dict
    base = json.loads(json.dumps(BASE))
    base["software"] = {"framework": "deepspeed"}
    sw = sweep_from_dict({"name": "t", "base": base, "parameters": {"system.count": [8]}})
    row = evaluate_point(sw.spec(), sw.points[0], 0)
    case = json.loads(json.dumps(base))
    case["parallel"] = {}
    cs = search_case(case_from_dict(case), top=1, compare=False)
    assert row["iteration_time_s"] == pytest.approx(cs.top[0].iteration_time_s, rel=1e-9)


# ---- output and resume ------------------------------------------------------------------------

def test_local_run_writes_parquet_and_definition(tmp_path):
    sw = sweep({"system.count": [8, 16, 32], "parallel.recompute": ["none", "full"]}, chunk_size=2)
    out = tmp_path / "res"
    s = run_sweep(sw, out, backend="local", workers=2)
    assert s.evaluated == 6 and s.chunks_written == 3
    assert (out / "_sweep.yaml").exists() and json.loads((out / "_sweep.json").read_text())["points"] == 6
    again = yaml.safe_load((out / "_sweep.yaml").read_text())
    assert sweep_from_dict(again).digest() == sw.digest()  # the stored definition reproduces the sweep
    df = read_results(out)
    assert list(df["point_id"]) == list(range(6))
    assert set(df["recompute"]) == {"none", "full"}
    assert list(df["recompute"]) == list(df["parallel.recompute"])
    with pytest.raises(InputError, match="--resume"):
        run_sweep(sw, out)
    s2 = run_sweep(sw, out, resume=True)
    assert s2.evaluated == 0 and s2.skipped == 6
    changed = sweep({"system.count": [8, 16, 64], "parallel.recompute": ["none", "full"]}, chunk_size=2)
    with pytest.raises(InputError, match="definition changed"):
        run_sweep(changed, out, resume=True)


def test_sigkill_then_resume_loses_and_repeats_nothing(tmp_path):
    # 10 points, one per file; each searches GPT-3 175B on 256 or 512 A100s (~0.1-0.2 s each)
    n = 10
    d = {"name": "kill", "base": str(DEMO), "chunk_size": 1,
         "parameters": {"system.count": [256, 512], "hardware.hbm_bandwidth_scale": [0.5, 0.75, 1, 1.5, 2]}}
    f = tmp_path / "kill.yaml"
    f.write_text(yaml.safe_dump(d))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "xlayer.cli.main", "sweep", str(f), "--out", str(out),
                             "--workers", "1"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and len(list(out.glob("part-*.parquet"))) < 2 and proc.poll() is None:
            time.sleep(0.01)
        assert proc.poll() is None, "the sweep finished before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    before = read_results(out)
    n_before = len(before)
    assert 2 <= n_before < n
    files_before = {p.name: p.stat().st_mtime_ns for p in out.glob("part-*.parquet")}
    summary = run_sweep(load_sweep(f), out, resume=True, workers=1)
    assert summary.skipped == n_before and summary.evaluated == n - n_before
    after = read_results(out)
    assert sorted(after["point_id"]) == list(range(n))          # every point exactly once
    for name, mtime in files_before.items():                      # finished files untouched
        assert (out / name).stat().st_mtime_ns == mtime
    kept = after.set_index("point_id").loc[list(before["point_id"])]
    assert list(kept["run"]) == list(before["run"])              # finished points not recomputed
    assert after["run"].nunique() == 2
    assert not list(out.glob(".tmp-*"))


def test_cli_sweep_and_pareto(tmp_path):
    sw = {"name": "cli", "base": BASE, "parameters": {"system.count": [8, 16, 32]}, "chunk_size": 2}
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(sw))
    out = tmp_path / "res"
    png = tmp_path / "front.png"
    r = run_cli("sweep", str(f), "--out", str(out), "--plot", str(png))
    assert r.returncode == 0, r.stderr
    assert "Pareto front" in r.stdout and png.stat().st_size > 0
    r = run_cli("pareto", str(out), "--x", "accelerators", "--json")
    assert r.returncode == 0, r.stderr
    front = json.loads(r.stdout)["front"]
    times = [row["iteration_time_s"] for row in front]
    assert [row["accelerators"] for row in front] == sorted(row["accelerators"] for row in front)
    assert times == sorted(times, reverse=True)
    r = run_cli("pareto", str(out), "--x", "nonsense")
    assert r.returncode == 2 and "--x" in r.stderr
    r = run_cli("sweep", str(f), "--out", str(out))
    assert r.returncode == 2 and "--resume" in r.stderr


def test_examples_load():
    for f in sorted(EXAMPLES.glob("sweep-*.yaml")):
        sw = load_sweep(f)
        assert sw.points
    load_case(DEMO)


# ---- the folder is a Parquet dataset; local learning; workers die with the driver -------------

def test_sweep_folder_is_a_parquet_dataset(tmp_path):
    import pandas as pd
    import pyarrow.dataset as ds

    from xlayer.explore.sweep import is_sweep_folder, read_meta
    sw = sweep({"system.count": [8, 16, 32], "hardware.hbm_capacity_gib": [0.3, 40]}, chunk_size=2)
    out = tmp_path / "res"
    run_sweep(sw, out, backend="local", workers=1)
    names = sorted(p.name for p in out.iterdir())
    # only part files (one schema) are visible to Parquet readers; bookkeeping starts with "_"
    assert all(n.endswith(".parquet") or n.startswith(("_", ".")) for n in names), names
    df = pd.read_parquet(out)
    assert len(df) == 6 and sorted(df["point_id"]) == list(range(6))
    assert set(df["status"]) == {"ok", "no_fit"}
    mine = read_results(out)
    pd.testing.assert_frame_equal(df.sort_values("point_id").reset_index(drop=True)[list(mine.columns)], mine,
                                  check_dtype=False)
    assert len(ds.dataset(out, format="parquet").to_table()) == 6
    assert is_sweep_folder(out) and read_meta(out)["points"] == 6
    # resumed (a chunk deleted and recomputed): still one dataset with one schema
    first = sorted(out.glob("part-*.parquet"))[0]
    first.unlink()
    run_sweep(sw, out, resume=True, workers=1)
    assert sorted(pd.read_parquet(out)["point_id"]) == list(range(6))


def test_resume_of_a_legacy_folder_renames_bookkeeping(tmp_path):
    import pandas as pd
    sw = sweep({"system.count": [8, 16]}, chunk_size=1)
    out = tmp_path / "res"
    run_sweep(sw, out, workers=1)
    # a folder as an older xlayer wrote it (sweep.json / sweep.yaml beside the parts)
    (out / "_sweep.json").rename(out / "sweep.json")
    (out / "_sweep.yaml").rename(out / "sweep.yaml")
    with pytest.raises(InputError, match="--resume"):
        run_sweep(sw, out)
    s = run_sweep(sw, out, resume=True, workers=1)
    assert s.skipped == 2 and s.evaluated == 0
    assert not (out / "sweep.json").exists() and (out / "_sweep.json").exists()
    assert len(pd.read_parquet(out)) == 2


def test_resume_refuses_parts_with_another_schema(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    sw = sweep({"system.count": [8, 16]}, chunk_size=1)
    out = tmp_path / "res"
    run_sweep(sw, out, workers=1)
    f = sorted(out.glob("part-*.parquet"))[0]
    pq.write_table(pq.read_table(f).append_column("extra", pa.array([1.0])), f)
    with pytest.raises(InputError, match="other result columns"):
        run_sweep(sw, out, resume=True)


def test_sweep_honours_local_learning(tmp_path):
    """A local-learning base case: every point is searched (and evaluated) as local learning."""
    base = yaml.safe_load((EXAMPLES / "gpt3-175b-local-8stages.yaml").read_text())
    sw = sweep_from_dict({"name": "local", "base": base, "chunk_size": 2,
                          "parameters": {"system.count": [64, 128]}})
    out = tmp_path / "res"
    run_sweep(sw, out, workers=1)
    df = read_results(out)
    assert list(df["algorithm"]) == ["local", "local"] and list(df["backlink_layers"]) == [2, 2]
    assert set(df["vp"]) == {1} and set(df["status"]) == {"ok"}
    bp = sweep_from_dict({"name": "bp", "base": {**base, "parallel": {"algorithm": "backprop"}},
                          "parameters": {"system.count": [64, 128]}})
    run_sweep(bp, tmp_path / "bp", workers=1)
    dbp = read_results(tmp_path / "bp")
    assert list(dbp["algorithm"]) == ["backprop", "backprop"]
    assert list(df["iteration_time_s"]) != list(dbp["iteration_time_s"])


def _proc_start(pid: int):
    """(state, start time) of a process from /proc, or None when it no longer exists."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            rest = fh.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return rest[0], int(rest[19])


def _descendants(pid: int) -> dict[int, int]:
    """{pid: start time} of every live descendant of ``pid`` (scanning /proc)."""
    parent: dict[int, int] = {}
    start: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as fh:
                rest = fh.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        parent[int(d)] = int(rest[2])
        start[int(d)] = int(rest[19])
    out: dict[int, int] = {}
    todo = [pid]
    while todo:
        p = todo.pop()
        for c, pp in parent.items():
            if pp == p and c not in out:
                out[c] = start[c]
                todo.append(c)
    return out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigkilled_local_sweep_leaves_no_worker_alive(tmp_path):
    # 24 points, one per chunk, two worker processes: long enough to kill it while workers run
    d = {"name": "orphans", "base": str(DEMO), "chunk_size": 1,
         "parameters": {"system.count": [256, 512, 1024], "hardware.hbm_bandwidth_scale": [0.5, 0.6, 0.75, 0.9,
                                                                                            1, 1.25, 1.5, 2]}}
    f = tmp_path / "orphans.yaml"
    f.write_text(yaml.safe_dump(d))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "xlayer.cli.main", "sweep", str(f), "--out", str(out),
                             "--workers", "2"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    children: dict[int, int] = {}
    try:
        deadline = time.time() + 60
        while time.time() < deadline and proc.poll() is None:
            children.update(_descendants(proc.pid))
            if len(children) >= 2 and list(out.glob("part-*.parquet")):
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the sweep finished before it could be killed"
        assert len(children) >= 2, children
        os.kill(proc.pid, signal.SIGKILL)  # the driver only, not its process group
        time.sleep(5.0)  # the driver is not reaped yet: a zombie, as under a busy shell
        survivors = {}
        for pid, start in children.items():
            st = _proc_start(pid)
            if st is not None and st[1] == start and st[0] not in (b"Z", b"X"):
                survivors[pid] = st
        assert not survivors, f"workers alive 5 s after the driver was killed: {survivors}"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        try:  # whatever survived in the sweep's own session
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


# ---- hostile sweep definitions: a sweep or an InputError, at once ----------------------------

def _sweep_doc():
    return {"name": "fuzz", "base": json.loads(json.dumps(BASE)), "mode": "grid", "search": True, "rank": "time",
            "chunk_size": 2, "max_vp": 4, "max_cp": 2, "tp_beyond_domain": False, "seed": 0,
            "parameters": {"system.count": [8, 16], "hardware.hbm_bandwidth_scale": {"start": 0.5, "stop": 1.0,
                                                                                     "num": 2},
                           "batch.global": {"start": 16, "stop": 32, "step": 16}}}


def _sweep_paths(d, prefix=()):
    out = []
    if isinstance(d, dict):
        for k, v in d.items():
            out.append(prefix + (k,))
            out += _sweep_paths(v, prefix + (k,))
    return out


def test_hostile_sweep_definitions_give_a_sweep_or_an_input_error():
    import math

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    values = st.sampled_from([None, True, -1, 0, 0.5, 10 ** 30, 2 ** 40, math.nan, math.inf, -math.inf, "x",
                              "1e30", [], {}, [1, "a"], {"start": 0, "stop": 1e30, "step": 1e-30},
                              {"start": 1, "stop": math.inf, "step": 2, "scale": "log"},
                              {"start": 1, "stop": 1e300, "step": 1.0000001, "scale": "log"},
                              {"low": math.nan, "high": 1}, {"start": 0, "stop": 10 ** 30, "num": 10 ** 9},
                              "\u202e\U0001f525", "x" * 5000])
    base = _sweep_doc()
    paths = _sweep_paths(base)

    @settings(max_examples=120, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(st.tuples(st.sampled_from(paths), st.booleans(), values), min_size=1, max_size=3),
           st.sampled_from(["grid", "random"]))
    def check(mutations, mode):
        doc = json.loads(json.dumps(base))
        doc["mode"] = mode
        if mode == "random":
            doc["samples"] = 3
            for k, v in list(doc["parameters"].items()):
                if isinstance(v, dict) and "num" in v:
                    doc["parameters"][k] = {"low": v["start"], "high": v["stop"]}
        for path, delete, value in mutations:
            d = doc
            for k in path[:-1]:
                d = d.get(k) if isinstance(d, dict) else None
            if not isinstance(d, dict) or path[-1] not in d:
                continue
            if delete:
                del d[path[-1]]
            else:
                d[path[-1]] = value
        def hang(signum, frame):
            raise TimeoutError("sweep_from_dict ran past 10 s")
        old = signal.signal(signal.SIGALRM, hang)
        signal.setitimer(signal.ITIMER_REAL, 10.0)
        try:
            sweep_from_dict(doc)
        except InputError as exc:
            assert "\n" not in str(exc)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
    check()
