"""Layout search: exhaustive, agrees with the scalar path, beats the papers' layouts (by the model)."""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import gpt
from xlayer.errors import InputError
from xlayer.explore.search import pareto_front, search_case, search_layouts
from xlayer.hardware import get_accelerator
from xlayer.hardware.spec import System
from xlayer.mapping.layout import Layout, check_layout
from xlayer.prediction.training import predict_training
from xlayer.prediction.case import case_from_dict, load_case
from xlayer.engine.training import evaluate_training, recipe_for
from xlayer.workload.recompute import model_modules

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "xlayer" / "examples" / "gpt3-175b-1024xa100.yaml"

SMALL = gpt(name="gpt-small", layers=8, hidden=1024, heads=16, ffn_hidden=4096, vocab=32000, seq_len=1024)
EVERY = "+".join(model_modules(SMALL))  # layernorm+mlp


def small_case(**over):
    d = {"id": "small", "kind": "training",
         "model": {"name": "gpt-small", "layers": 8, "hidden": 1024, "heads": 16, "ffn_hidden": 4096,
                   "vocab": 32000, "seq_len": 1024, "activation": "gelu"},
         "system": {"accelerator": "A100-SXM-40GB", "count": 8},
         "parallel": {"tp": 2, "pp": 2, "dp": 2, "sp": True, "recompute": "selective", "zero": 0},
         "batch": {"global": 16, "micro": 2}, "precision": "fp16"}
    d.update(over)
    return case_from_dict(d)


def test_exhaustive_against_scalar_enumeration():
    """Every layout the scalar path accepts (within the grid bounds) is found, with the same time
    (the Megatron default profile also enumerates its module recompute of every module)."""
    acc = get_accelerator("A100-SXM-40GB")
    system = System(accelerator=acc, count=8, scale_up_size=8)
    gb = 16
    recipe = recipe_for(SMALL, "fp16")
    res = search_layouts(SMALL, system, "fp16", gb, recipe=recipe, max_vp=2, max_cp=2)
    found = {}
    for i in range(len(res)):
        L = res.layout(i)
        found[(L.tp, L.pp, L.dp, L.cp, L.vp, L.micro, L.sp, L.recompute, L.zero)] = res.table["iteration_time_s"][i]
    expected = {}
    div8 = [1, 2, 4, 8]
    for tp, pp, cp, vp, micro, sp, rc, z in itertools.product(div8, div8, [1, 2], [1, 2], range(1, 17),
                                                            [False, True], ["none", "selective", EVERY, "full"],
                                                            range(4)):
        if 8 % (tp * pp * cp) or (sp and tp == 1):
            continue
        dp = 8 // (tp * pp * cp)
        if z > 0 and dp * cp == 1:  # the same layout as zero 0: listed once
            continue
        lay = Layout(tp=tp, pp=pp, dp=dp, cp=cp, vp=vp, micro=micro, sp=sp, recompute=rc, zero=z)
        try:
            check_layout(lay, SMALL, 8, gb)
        except InputError:
            continue
        expected[(tp, pp, dp, cp, vp, micro, sp, rc, z)] = lay
    assert set(found) == set(expected)
    assert res.valid == len(expected)
    # the vectorized numbers equal the scalar ones (spot-check a spread of rows)
    for key in list(expected)[:: max(1, len(expected) // 40)]:
        lay = expected[key]
        s = evaluate_training(SMALL, system, "fp16", gb, lay.tp, lay.pp, lay.dp, lay.cp, lay.vp, lay.micro, lay.sp,
                              lay.recompute, lay.zero, False, recipe)
        assert found[key] == pytest.approx(s.iteration_time_s, rel=1e-12)


def test_ranking_memory_filter_and_counts():
    c = small_case()
    cs = search_case(c, top=3)
    r = cs.result
    assert r.considered >= r.valid >= r.fitting > 0
    n = r.fitting
    t = r.table
    assert np.all(t["memory_bytes"][:n] <= r.capacity_bytes)
    assert np.all(t["memory_bytes"][n:] > r.capacity_bytes)
    assert np.all(np.diff(t["iteration_time_s"][:n]) >= 0)
    # the top rows' full predictions are the rows' numbers
    for i, p in enumerate(cs.top):
        assert p.iteration_time_s == pytest.approx(t["iteration_time_s"][i], rel=1e-12)
        assert p.memory_bytes == pytest.approx(t["memory_bytes"][i], rel=1e-12)
        assert sum(p.time_breakdown_s.values()) == pytest.approx(p.iteration_time_s, rel=1e-9)
    # the case's own layout is placed in the ranking and is not faster than the best
    assert cs.case_prediction is not None
    assert cs.case_prediction.iteration_time_s >= cs.top[0].iteration_time_s
    assert 1 <= cs.case_position <= r.fitting


def test_memory_capacity_changes_fitting():
    acc = get_accelerator("A100-SXM-40GB")
    system = System(accelerator=acc, count=8, scale_up_size=8)
    big = search_layouts(SMALL, system, "fp16", 16)
    small = search_layouts(SMALL, system, "fp16", 16, capacity_bytes=float(np.median(big.table["memory_bytes"])))
    assert small.valid == big.valid and 0 < small.fitting < big.fitting


def test_rank_metrics():
    c = small_case()
    a = search_case(c, top=1, rank="time").result
    b = search_case(c, top=1, rank="tokens_per_s_per_gpu").result
    k = search_case(c, top=1, rank="cost").result
    assert a.layout(0) == b.layout(0) == k.layout(0)
    tok = 16 * 1024
    assert b.table["tokens_per_s_per_gpu"][0] == pytest.approx(tok / (a.table["iteration_time_s"][0] * 8))
    with pytest.raises(InputError):
        search_case(c, rank="speed")


def test_tp_within_scale_up_domain_unless_asked():
    acc = get_accelerator("A100-SXM-40GB")
    system = System(accelerator=acc, count=16, scale_up_size=4)
    inside = search_layouts(SMALL, system, "fp16", 32)
    assert inside.table["tp"].max() <= 4
    beyond = search_layouts(SMALL, system, "fp16", 32, tp_beyond_domain=True)
    assert beyond.table["tp"].max() == 16 and beyond.valid > inside.valid


def test_fixed_fields_are_respected():
    acc = get_accelerator("A100-SXM-40GB")
    system = System(accelerator=acc, count=8, scale_up_size=8)
    r = search_layouts(SMALL, system, "fp16", 16, fixed={"tp": 2, "recompute": "full", "micro": 1})
    assert len(r) > 0
    assert set(r.table["tp"]) == {2} and set(r.table["recompute"]) == {"full"} and set(r.table["micro"]) == {1}


def test_flash_skips_selective_and_sp_needs_tp():
    c = small_case(precision="bf16")
    r = search_case(c, top=1).result
    assert "selective" not in set(r.table["recompute"])
    assert not np.any(r.table["sp"] & (r.table["tp"] == 1))
    assert any("selective" in n for n in r.notes)


def test_pareto_front():
    x = [1, 2, 3, 4, 2, 5]
    y = [5, 4, 4, 1, 6, 1]
    assert list(pareto_front(x, y)) == [0, 1, 3]
    assert list(pareto_front([1, 1], [2, 1])) == [1]


def test_validation_cases_best_not_slower_than_paper(shared_validation):
    files = sorted((shared_validation / "training").glob("korthikanti22-*-iter-*.yaml")) + \
        sorted((shared_validation / "training").glob("narayanan21-*.yaml"))
    assert files
    for f in files:
        c = load_case(f)
        cs = search_case(c, top=1)
        paper = cs.case_prediction
        assert paper is not None and paper.fits_memory, f.name
        assert cs.top[0].iteration_time_s <= paper.iteration_time_s * (1 + 1e-12), f.name
        assert cs.case_position >= 1


class _Result:
    def __init__(self, r):
        self.returncode, self.stdout, self.stderr = r.exit_code, r.stdout, r.stderr


def run_cli(*args):
    """The xlayer command in-process (typer's runner): same exit codes and streams, no start-up cost."""
    from typer.testing import CliRunner

    from xlayer.cli.main import app
    return _Result(CliRunner().invoke(app, list(args)))


def test_cli_search_json():
    r = run_cli("search", str(DEMO), "--top", "2", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["counts"]["considered"] >= d["counts"]["valid"] >= d["counts"]["fitting"] > 0
    assert len(d["top"]) == 2
    assert d["top"][0]["iteration_time_s"] <= d["top"][1]["iteration_time_s"]
    assert "compute.gemm" in d["top"][0]["time_breakdown_s"]
    c = d["case_layout"]
    assert c["iteration_time_s"] >= d["top"][0]["iteration_time_s"]
    assert c["differs"] and c["position"] >= 1


def test_cli_search_human_and_errors(tmp_path):
    r = run_cli("search", str(DEMO), "--top", "1")
    assert r.returncode == 0, r.stderr
    assert "considered" in r.stdout and "valid" in r.stdout and "fit in" in r.stdout
    assert "case layout" in r.stdout
    bad = run_cli("search", str(DEMO), "--rank", "speed")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--rank" in bad.stderr
    data = yaml.safe_load(DEMO.read_text())
    data["system"]["accelerator"] = "A100-SXM-99GB"
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(data))
    bad = run_cli("search", str(p))
    assert bad.returncode == 2 and "system.accelerator" in bad.stderr and bad.stderr.count("\n") == 1


# ---- the case's training algorithm, distinct layouts, bounded grids ---------------------------

LOCAL = ROOT / "xlayer" / "examples" / "gpt3-175b-local-8stages.yaml"


def test_search_ranks_local_learning_layouts_for_a_local_case():
    """parallel.algorithm: local is the algorithm every layout is evaluated with (not backprop)."""
    c = load_case(LOCAL)
    assert c.parallel.algorithm == "local" and c.parallel.backlink_layers == 2
    cs = search_case(c, top=3)
    r = cs.result
    assert r.fitting > 0 and r.algorithm == "local" and r.backlink_layers == 2
    assert set(r.table["vp"]) == {1}  # each stage is one module
    assert np.all(c.model.layers // r.table["pp"] >= 2)  # BackLink spans at most one stage
    recipe = recipe_for(c.model, c.precision)
    system = c.system_spec()
    for i, p in enumerate(cs.top):
        assert p.layout.algorithm == "local" and p.layout.backlink_layers == 2
        L = p.layout
        local = evaluate_training(c.model, system, c.precision, c.batch.global_, L.tp, L.pp, L.dp, L.cp, L.vp,
                                  L.micro, L.sp, L.recompute, L.zero, L.dp_overlap, recipe,
                                  tp_overlap=L.tp_overlap, algorithm="local", backlink_layers=2)
        assert r.table["iteration_time_s"][i] == pytest.approx(local.iteration_time_s, rel=1e-12)
        assert p.iteration_time_s == pytest.approx(local.iteration_time_s, rel=1e-12)
    # the same case as backprop ranks other numbers (so the algorithm really is passed through)
    bp = search_case(case_from_dict({**yaml.safe_load(LOCAL.read_text()),
                                     "parallel": {"algorithm": "backprop"}}), top=1).result
    assert bp.algorithm == "backprop" and bp.table["vp"].max() > 1
    assert any("algorithm=local" in n for n in r.notes)
    # the case's own (local) layout is placed among local layouts: not faster than the best
    assert cs.case_prediction.layout.algorithm == "local"
    assert cs.case_prediction.iteration_time_s >= cs.top[0].iteration_time_s * (1 - 1e-12)


def test_cli_search_local_case_json():
    r = run_cli("search", str(LOCAL), "--top", "2", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert all(row["layout"]["algorithm"] == "local" and row["layout"]["backlink_layers"] == 2 for row in d["top"])
    assert "compute.local_aux_head" in d["top"][0]["time_breakdown_s"]


def test_each_distinct_layout_listed_once():
    """At dp*cp = 1 every ZeRO stage is the same layout: only zero 0 is listed."""
    acc = get_accelerator("A100-SXM-40GB")
    system = System(accelerator=acc, count=8, scale_up_size=8)
    res = search_layouts(SMALL, system, "fp16", 16, max_vp=2, max_cp=2)
    t = res.table
    unsharded = t["dp"] * t["cp"] == 1
    assert unsharded.any() and set(t["zero"][unsharded]) == {0}
    assert set(t["zero"][~unsharded]) == {0, 1, 2, 3}
    keys = [tuple(t[k][i] for k in ("tp", "pp", "dp", "cp", "vp", "micro", "sp", "recompute", "zero"))
            for i in range(len(res))]
    assert len(keys) == len(set(keys)) == res.valid
    assert any("zero 1-3" in n for n in res.notes)
    # a fixed ZeRO stage is kept as asked, also at dp*cp = 1
    z3 = search_layouts(SMALL, system, "fp16", 16, fixed={"zero": 3, "tp": 8})
    assert len(z3) > 0 and set(z3.table["zero"]) == {3} and set(z3.table["dp"] * z3.table["cp"]) == {1}
    # and the search of a case on 8 GPUs with tp*pp = 8 lists no zero > 0 at dp 1
    cs = search_case(small_case(), top=50)
    rows = [p.layout for p in cs.top]
    assert not [L for L in rows if L.dp * L.cp == 1 and L.zero > 0]


@pytest.mark.parametrize("count", [10 ** 30, 1e30, 2 ** 63, (1 << 22) + 1])
def test_search_on_absurd_count_refuses_at_once(count):
    from xlayer.engine.vectorized import MAX_SEARCH_COUNT
    import time as _t
    acc = get_accelerator("A100-SXM-40GB")
    system = System.model_construct(accelerator=acc, count=count, scale_up_size=8)
    t0 = _t.perf_counter()
    with pytest.raises(InputError) as exc:
        search_layouts(SMALL, system, "fp16", 16)
    assert _t.perf_counter() - t0 < 1.0
    assert exc.value.field == "system.count" and f"{MAX_SEARCH_COUNT:,}" in str(exc.value)


def test_cli_search_absurd_count_one_line(tmp_path):
    import time as _t
    data = yaml.safe_load(DEMO.read_text())
    data["system"]["count"] = 10 ** 30
    p = tmp_path / "huge.yaml"
    p.write_text(yaml.safe_dump(data))
    t0 = _t.perf_counter()
    r = run_cli("search", str(p))
    assert _t.perf_counter() - t0 < 5.0
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1 and "system.count" in r.stderr


def test_layout_grid_is_bounded():
    """Huge batches, many divisors or a wide --max-vp refuse before anything is built."""
    from xlayer.engine.vectorized import MAX_SEARCH_GLOBAL_BATCH, divisors, layout_grid
    import time as _t
    assert divisors(1) == (1,) and divisors(12) == (1, 2, 3, 4, 6, 12)
    assert divisors(2 ** 31 - 1) == (1, 2 ** 31 - 1)
    many = gpt(layers=2 ** 20, heads=720720, kv_heads=720720, ffn_hidden=720720 * 4, hidden=720720)
    t0 = _t.perf_counter()
    with pytest.raises(InputError) as exc:
        layout_grid(many, 720720 * 4, 720720 * 16, 720720 * 4, max_vp=10 ** 9, max_cp=10 ** 9)
    assert exc.value.field == "search" and "--max-vp" in str(exc.value)
    with pytest.raises(InputError) as exc:
        layout_grid(SMALL, 8, MAX_SEARCH_GLOBAL_BATCH * 2, 8)
    assert exc.value.field == "batch.global"
    assert _t.perf_counter() - t0 < 5.0
    # model sizes beyond what int64/float64 arithmetic holds are refused, not overflowed
    huge = SMALL.model_copy(update={"seq_len": 10 ** 30})
    with pytest.raises(InputError) as exc:
        layout_grid(huge, 8, 16, 8)
    assert exc.value.field == "model.seq_len"
    # vp beyond layers/pp is no layout, so a large --max-vp costs nothing more
    acc = get_accelerator("A100-SXM-40GB")
    system = System(accelerator=acc, count=8, scale_up_size=8)
    a = search_layouts(SMALL, system, "fp16", 16, max_vp=8)
    b = search_layouts(SMALL, system, "fp16", 16, max_vp=10 ** 9)
    assert a.valid == b.valid and len(b) == len(a)
