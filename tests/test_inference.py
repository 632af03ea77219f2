"""Inference model: hand-computed values, boundedness, memory, errors, CLI (issue 4)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from xlayer.errors import InputError

from conftest import LLAMA2_70B, inference_case  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "xlayer" / "examples" / "llama2-70b-8xh100-fp8.yaml"



def case(**kw):
    return inference_case(**kw)


def predict(**kw):
    from xlayer.prediction.inference import predict_inference
    return predict_inference(case(**kw))


# ---- operators: hand-computed FLOPs and bytes -----------------------------------------

def test_decode_gemm_reads_every_weight_once():
    from xlayer.workload.inference_ops import AttentionSegment, inference_layer
    from xlayer.workload.model import ModelSpec
    m = ModelSpec(**LLAMA2_70B)
    for prec, wb in (("bf16", 2), ("fp8", 1), ("int8", 1), ("int4", 0.5)):
        lay = inference_layer(m, [AttentionSegment(1, 1, 100)], 4, prec, "bf16", "flash")
        gemm_w = sum(o.k * o.n * o.batch for o in lay.ops if o.kind == "gemm") * wb
        # layer weights without norms, split over tp = 4
        assert gemm_w == pytest.approx((m.layer_params() - m.norm_params()) * wb / 4)
        qkv = next(o for o in lay.ops if o.name == "qkv")
        assert qkv.flops == 2 * 1 * 8192 * (8192 + 2 * 1024) / 4


def test_decode_attention_reads_the_kv_cache():
    from xlayer.workload.model import ModelSpec
    from xlayer.workload.precision import kv_bytes_per_element
    from xlayer.workload.transformer import AttentionSegment, attention_ops
    m = ModelSpec(**LLAMA2_70B)
    (op,) = attention_ops(m, AttentionSegment(16, 1, 4095), 8, kv_bytes_per_element("fp8"), "flash")
    # K and V of 4096 tokens, 1 kv head per rank, d = 128, 1 byte; plus Q and O (8 heads, 16-bit)
    assert op.bytes == 2 * 16 * 128 * 4096 * 1 + 2 * 16 * 8 * 128 * 2
    assert op.flops == 4 * 16 * 8 * 128 * 4096


def test_kv_cache_bytes_per_token():
    from xlayer.cost.kvcache import kv_bytes_per_token
    from xlayer.workload.model import ModelSpec
    m = ModelSpec(**LLAMA2_70B)
    # 2 (K,V) x 80 layers x 8 kv heads x 128 x 2 B = 327,680 B per token (GQA), /tp
    assert kv_bytes_per_token(m, 1, 1, "bf16") == 327680
    assert kv_bytes_per_token(m, 8, 1, "fp8") == 327680 / 16
    assert kv_bytes_per_token(m, 1, 2, "bf16") == 327680 / 2


# ---- phases and boundedness ------------------------------------------------------------

def test_decode_70b_batch1_h100_is_hbm_bound_and_near_weight_streaming_time():
    from xlayer.hardware.catalog import get_accelerator
    p = predict(tp=4, batch=1, prompt=128, output=128)
    assert p.decode.bound == "hbm"
    for r in p.decode.op_rows():
        if r["kind"] == "gemm":
            assert r["bound"] == "hbm"
    acc = get_accelerator("H100-SXM-80GB")
    stream = sum(p.memory_breakdown_bytes[k] for k in ("weights.layers", "weights.embedding_output")) \
        / acc.hbm.achievable_bytes_per_s
    assert stream < p.decode.time_s < 1.6 * stream


def test_large_batch_prefill_is_compute_bound():
    p = predict(tp=4, batch=8, prompt=2048, output=1)
    assert p.prefill.bound == "compute"
    for r in p.prefill.op_rows():
        if r["name"] in ("qkv", "fc1", "fc2", "flash_attn"):
            assert r["bound"] == "compute", r


def test_crossover_batch_is_near_the_machine_balance():
    from xlayer.cost.compute import gemm_rate_flops_per_s
    from xlayer.hardware.catalog import get_accelerator
    p = predict(tp=4, batch=1, prompt=128, output=128)
    cross = p.crossover["decode"]
    assert cross["attn_decode"] is None  # a/g FLOP per KV byte at every batch
    acc = get_accelerator("H100-SXM-80GB")
    balance = gemm_rate_flops_per_s(acc, "bf16") / acc.hbm.achievable_bytes_per_s  # FLOP per byte
    # a bf16 decode GEMM does b FLOP per weight byte: crossover at b ~ balance (wave/tile effects aside)
    for name in ("qkv", "fc1", "fc2"):
        assert 0.4 * balance < cross[name] < 1.6 * balance, (name, cross[name], balance)
    # fp8 halves the bytes per weight: the crossover moves to a similar batch (2x FLOP rate)
    p8 = predict(tp=4, batch=1, prompt=128, output=128, precision="fp8")
    assert p8.crossover["decode"]["fc1"] is not None


def test_decode_time_grows_with_context_and_batch():
    a = predict(tp=4, batch=8, prompt=128, context=1000, output=1).decode.time_s
    b = predict(tp=4, batch=8, prompt=128, context=3000, output=1).decode.time_s
    c = predict(tp=4, batch=32, prompt=128, context=3000, output=1).decode.time_s
    assert a < b < c


def test_fp8_and_int4_decode_faster_than_bf16():
    t16 = predict(tp=4, output=64).decode.time_s
    t8 = predict(tp=4, output=64, precision="fp8").decode.time_s
    t4 = predict(tp=4, output=64, precision="int4").decode.time_s
    assert t4 < t8 < t16


def test_pipeline_adds_latency_for_one_batch():
    p1 = predict(tp=4, pp=1, output=16)
    p2 = predict(tp=4, pp=2, output=16)
    assert p2.decode.time_s > 0.95 * p1.decode.time_s
    assert p2.memory_breakdown_bytes["weights.layers"] == pytest.approx(p1.memory_breakdown_bytes["weights.layers"] / 2)


def test_metrics_and_generation():
    p = predict(tp=4, batch=4, prompt=512, output=100)
    m = p.metrics
    assert m["decode_tokens_per_s"] == pytest.approx(1 / m["decode_step_time_s"])
    gen = m["prefill_time_s"] + 99 * m["decode_step_time_s"]
    assert m["output_tokens_per_s_per_gpu"] == pytest.approx(4 * 100 / gen / 4)
    d = p.to_dict()
    assert d["phases"]["decode"]["bound"] == "hbm"
    assert json.dumps(d, default=float)


def test_classic_attention_materialises_scores():
    flash = predict(tp=4, batch=1, prompt=2048)
    m = dict(LLAMA2_70B, attention="classic")
    classic = predict(model=m, tp=4, batch=1, prompt=2048)
    names = {r["name"] for r in classic.prefill.op_rows()}
    assert {"attn_scores", "attn_softmax", "attn_context"} <= names
    assert classic.prefill.time_s > flash.prefill.time_s


# ---- measured kernel file: decode GEMMs stream weights at copy bandwidth ----------------

def test_skinny_gemms_of_the_kernel_file(shared_validation):
    """Decode-shaped GEMMs (m <= 32, weights >= 100 MB) of the H200 kernel file: the model's
    time plus the eager isolated-kernel floor (calibration.yaml, a host artefact) is within
    15 % on average."""
    from xlayer.cost.compute import calibration
    from xlayer.cost.compute import op_time
    from xlayer.hardware.catalog import get_accelerator
    from xlayer.workload.operators import gemm
    data = json.loads((shared_validation / "kernels" / "h200-pytorch-kernels.json").read_text())
    acc = get_accelerator("H200-SXM-141GB")
    floor = calibration().eager_isolated_kernel_s
    errs = []
    for g in data["gemm"]:
        if g["m"] <= 32 and g["k"] * g["n"] * 2 >= 1e8:
            op = gemm("g", g["m"], g["k"], g["n"], "bf16")
            t = op_time(op, acc, kernel_overhead_s=0.0).time_s + floor
            errs.append(abs(t - g["time_s"]) / g["time_s"])
    assert len(errs) > 20
    assert sum(errs) / len(errs) < 0.15


# ---- memory, serving -------------------------------------------------------------------

def test_serving_70b_8xh100_fp8_is_limited_by_kv_cache():
    from xlayer.prediction.inference import GIB, serving_estimate
    from xlayer.prediction.case import load_case
    est = serving_estimate(load_case(EXAMPLE), 2048, 128)
    assert est.max_batch > 100
    assert "KV cache" in est.limit
    used = sum(est.memory_breakdown_bytes.values())
    assert used <= est.budget_bytes
    assert est.memory_breakdown_bytes["kv_cache_bytes"] > 0.7 * est.budget_bytes
    assert est.tokens_per_s_per_gpu == pytest.approx(est.max_batch / est.tpot_s / 8)
    # throughput does not fall as the batch grows
    tps = [c["tokens_per_s_per_gpu"] for c in est.curve]
    assert all(b >= 0.97 * a for a, b in zip(tps, tps[1:]))
    capped = serving_estimate(load_case(EXAMPLE), 2048, 128, max_batch=64)
    assert capped.max_batch == 64 and "engine max batch" in capped.limit
    slo = serving_estimate(load_case(EXAMPLE), 2048, 128, tpot_slo_s=0.05)
    assert slo.tpot_s <= 0.05 and "TPOT" in slo.limit
    assert GIB > 0


# ---- bad input -------------------------------------------------------------------------

def test_tp_not_dividing_kv_heads():
    with pytest.raises(InputError) as e:
        predict(tp=16, count=16)
    assert e.value.field == "parallel.tp" and "kv_heads=8" in str(e.value)


def test_context_longer_than_max_seq_len():
    m = dict(LLAMA2_70B, max_seq_len=4096)
    with pytest.raises(InputError) as e:
        predict(model=m, prompt=4000, output=200)
    assert "max_seq_len=4096" in str(e.value) and "4200" in str(e.value)


def test_batch_that_cannot_fit_says_by_how_much():
    with pytest.raises(InputError) as e:
        predict(tp=2, batch=64, prompt=2048, output=2048)
    msg = str(e.value)
    assert e.value.field == "request.batch" and "over by" in msg and "at most" in msg
    with pytest.raises(InputError) as e:
        predict(tp=1, count=1, batch=1)
    assert "weights alone do not fit" in str(e.value)


# ---- CLI -------------------------------------------------------------------------------

def run(*args):
    return subprocess.run([sys.executable, "-m", "xlayer.cli.main", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def test_cli_predict_serve_roofline_and_error(tmp_path):
    from typer.testing import CliRunner
    from xlayer.cli.main import app
    cli = CliRunner()
    r = cli.invoke(app, ["predict", str(EXAMPLE), "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["metrics"]["decode_step_time_s"] > 0 and d["phases"]["decode"]["bound"] == "hbm"
    r = cli.invoke(app, ["serve", str(EXAMPLE), "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["max_batch"] > 0 and s["tpot_s"] > 0 and "KV cache" in s["limit"]
    svg = tmp_path / "r.svg"
    r = cli.invoke(app, ["roofline", str(EXAMPLE), "--out", str(svg)])
    assert r.exit_code == 0, r.output
    text = svg.read_text()
    assert text.startswith("<svg") and "fc1" in text and "HBM" in text
    bad = yaml.safe_load(EXAMPLE.read_text())
    bad["parallel"]["tp"] = 16
    bad["system"]["count"] = 16
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(bad))
    r = run("predict", str(p))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "kv_heads" in r.stderr


def test_dram_study_writes_tables(tmp_path, shared_validation):
    from xlayer.studies.dram import run_dram_study
    csv = shared_validation.parent / "reference" / "memory_tech.csv"
    if not csv.exists():
        pytest.skip("memory_tech.csv not present")
    path = run_dram_study(csv, tmp_path)
    text = path.read_text()
    assert "HBM2e" in text and "HBM4" in text and (tmp_path / "dram-scaling.svg").exists()


def test_validation_inference_error_bars(shared_validation):
    """Current error bars on the measured inference cases (tighten, never loosen)."""
    from xlayer.validation.runner import collect_case_files, validate_files
    res = validate_files(collect_case_files([str(shared_validation / "inference")]))
    s = res["summary"]
    missing = [r for r in res["cases"] if r["predicted"] is None]
    # only features of later issues may be unpredicted (serving: continuous batching)
    assert all(str(r.get("reason", "")).startswith("not modelled yet:") for r in missing), missing[:3]
    assert s["decode_tokens_per_s"]["mape_pct"] <= 8.0 and s["decode_tokens_per_s"]["max_abs_error_pct"] <= 12.0
    # issue 17 item 9: split-K GEMM kernels at m <= 1024 (kernel file m = 128: 17.0 -> 10.6 %,
    # compare_kernels GEMM 22.7 -> 11.3 %) move the four TRT-LLM v0.5 128-token cases from
    # 13.2 % / 36.7 % to 20.2 % / 44.6 % (docs/inference-model.md, Validation)
    assert s["prefill_time_s"]["mape_pct"] <= 20.5 and s["prefill_time_s"]["max_abs_error_pct"] <= 45.0
    # issue 16: the 80 TensorRT-LLM v1.0 serving runs through the continuous-batching simulator
    # (docs/serving.md, Validation: dense 9.0 % / 29.5 %, Qwen3-30B-A3B MoE far higher)
    srv = s["output_tokens_per_s_per_gpu"]
    assert srv["count"] >= 80 and srv["mape_pct"] <= 19.0 and srv["max_abs_error_pct"] <= 113.0


def test_static_expert_parallelism_over_the_tensor_parallel_ranks():
    """A static batch of an MoE model with ep = tp: every rank holds E/ep whole experts and the
    same tokens; no all-to-all (the MLP's TP all-reduce combines), the same weight bytes, and
    the prediction says so. Other ep values and dense models are refused by name."""
    from xlayer.errors import InputError
    from xlayer.prediction.case import case_from_dict
    from xlayer.prediction.inference import predict_inference

    base = {"id": "ep", "kind": "inference",
            "model": {"name": "moe", "layers": 8, "hidden": 2048, "heads": 16, "kv_heads": 4, "ffn_hidden": 6144,
                      "vocab": 32000, "activation": "swiglu",
                      "moe": {"experts": 64, "top_k": 4, "ffn_hidden": 768}},
            "system": {"accelerator": "H100-SXM-80GB", "count": 4},
            "parallel": {"tp": 4, "pp": 1}, "precision": "bf16",
            "request": {"batch": 16, "prompt_len": 512, "output_len": 64}}
    tp = predict_inference(case_from_dict(base))
    ep = predict_inference(case_from_dict(dict(base, parallel={"tp": 4, "pp": 1, "ep": 4})))
    assert ep.setup.ep == 4 and any(a.startswith("parallel.ep=4") for a in ep.assumptions)
    assert ep.memory_breakdown_bytes["weights.layers"] == pytest.approx(tp.memory_breakdown_bytes["weights.layers"])
    names = [c.name for c in ep.decode.layer_ops]
    assert not any("dispatch" in n or "combine" in n for n in names)
    assert ep.decode.time_s == pytest.approx(tp.decode.time_s, rel=0.5)
    for bad in ({"tp": 4, "pp": 1, "ep": 2}, {"tp": 4, "pp": 1, "ep": 8}):
        with pytest.raises(InputError, match="parallel.ep"):
            predict_inference(case_from_dict(dict(base, parallel=bad)))
    dense = dict(base, model={k: v for k, v in base["model"].items() if k != "moe"}, parallel={"tp": 4, "pp": 1, "ep": 4})
    with pytest.raises(InputError, match="parallel.ep"):
        predict_inference(case_from_dict(dense))
