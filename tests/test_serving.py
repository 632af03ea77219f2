"""Serving: continuous-batching simulator, steady state, engine settings, SLO search, bad input."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import yaml

from xlayer.errors import InputError
from xlayer.predict.case import case_from_dict

ROOT = Path(__file__).resolve().parents[1]
VAL = ROOT.parent / "shared" / "validation" / "inference"


def _case(**over):
    d = {"id": "t", "kind": "inference", "software": {"framework": "trt-llm"},
         "model": {"name": "Llama 3.1 8B", "layers": 32, "hidden": 4096, "heads": 32, "kv_heads": 8,
                   "ffn_hidden": 14336, "vocab": 128256, "activation": "swiglu"},
         "system": {"accelerator": "H100-SXM-80GB", "count": 1},
         "parallel": {"tp": 1, "pp": 1}, "precision": "fp8",
         "request": {"mode": "serving", "prompt_len": 128, "output_len": 128, "requests": 2000}}
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(d.get(k), dict):
            d[k] = {**d[k], **v}
        else:
            d[k] = v
    return case_from_dict(d)


def _moe_case(**over):
    return _case(model={"name": "moe", "layers": 8, "hidden": 2048, "heads": 32, "kv_heads": 4, "head_dim": 128,
                        "ffn_hidden": 6144, "vocab": 151936, "activation": "swiglu",
                        "moe": {"experts": 128, "top_k": 8, "ffn_hidden": 768}}, **over)


def test_step_timer_equals_forward_pass():
    """The tabulated iteration time is forward_pass of the same segments (pp = 1)."""
    from dataclasses import replace
    from xlayer.predict.inference import forward_pass, resolve_inference
    from xlayer.serving.steptime import Deployment, StepTimer
    from xlayer.workload.inference_ops import AttentionSegment
    c = _case(system={"accelerator": "H100-SXM-80GB", "count": 2}, parallel={"tp": 2, "pp": 1},
              request={"mode": "static", "batch": 8, "prompt_len": 100, "output_len": 10})
    s = replace(resolve_inference(c), kv_precision="fp8")
    st = StepTimer(c.model, c.system_spec(), Deployment(tp=2), "fp8", "fp8", t_max=4096, host_s_per_request=0.0)
    rng = np.random.default_rng(1)
    for _ in range(10):
        b, ctx, n, k = int(rng.integers(1, 500)), float(rng.integers(10, 3000)), int(rng.integers(17, 900)), \
            int(rng.integers(1, 3))
        ref = forward_pass(s, [AttentionSegment(b, 1, ctx), AttentionSegment(k, n, 0)], "x").time_s
        assert st.step_s(b, ctx, [(k, n, 0)]) == pytest.approx(ref, rel=1e-9)
        assert st.step_s(b, ctx) == pytest.approx(forward_pass(s, [AttentionSegment(b, 1, ctx)], "x").time_s, rel=1e-9)


def test_host_floor_and_padding():
    from xlayer.serving.steptime import Deployment, StepTimer
    c = _case()
    st = StepTimer(c.model, c.system_spec(), Deployment(), "fp8", "fp8", t_max=2048)
    assert st.step_s(1000, 200) >= st.host_s(1000)
    assert st.graph_batch(300, (1, 256, 384, 512)) == 384
    assert st.step_s(300, 200, (), 384) >= st.step_s(300, 200)


def test_trtllm_bench_heuristic():
    """tuning.py finetune_setting rounding: below 256 → multiples of 32 (min 64), tokens ≥ 2048."""
    from xlayer.serving.engine import trtllm_bench_settings
    m = _case().model
    bs, tok = trtllm_bench_settings(m, "fp8", "fp8", 1, 1, 128, 128, 85.9e9, 0.9)
    assert bs == 4096 and tok == 8192                       # capped at 4096 requests
    bs, tok = trtllm_bench_settings(m, "fp8", "fp8", 1, 1, 20000, 2000, 85.9e9, 0.9)
    assert bs == 64 and tok == 2048
    bs, _ = trtllm_bench_settings(m, "fp8", "fp8", 1, 1, 1000, 1000, 85.9e9, 0.9)
    assert bs % 128 == 0 and 256 <= bs < 1024


def test_kv_precision_engine_choice():
    from xlayer.serving.predict import serving_setup
    assert serving_setup(_case()).kv_precision == "fp8"
    assert serving_setup(_case(precision="bf16")).kv_precision == "bf16"
    assert serving_setup(_case(request={"kv_precision": "bf16"})).kv_precision == "bf16"


def test_simulator_conserves_tokens_and_limits():
    from xlayer.serving.predict import predict_serving
    p = predict_serving(_case())
    sim, s = p.sim, p.setup
    assert np.all(np.isfinite(sim.finish_s)) and np.all(sim.first_token_s <= sim.finish_s)
    assert sim.max_running <= s.engine.max_batch_size
    assert sim.max_running * s.pool.blocks_for(256) <= s.pool.blocks
    assert p.metrics["output_tokens_per_s_per_gpu"] == pytest.approx(2000 * 128 / sim.makespan_s)
    for k in ("ttft_s_p50", "ttft_s_p90", "ttft_s_p99", "tpot_s_p99", "latency_s_mean", "tokens_per_s_per_user",
              "total_tokens_per_s_per_gpu"):
        assert k in p.metrics
    assert p.metrics["ttft_s_p50"] <= p.metrics["ttft_s_p99"]


def test_event_sim_agrees_with_steady_state():
    """Many requests: the event simulator's throughput in the middle of the run (ramp-up and
    drain left out) is the closed form's at the concurrency the simulator held, within 5 %;
    and the closed form at the engine's full concurrency bounds the run from above (+10 %:
    re-admission after a cohort finishes is limited by the token budget)."""
    from xlayer.serving.predict import predict_serving
    from xlayer.serving.steady import steady_state
    for req in ({"prompt_len": 1000, "output_len": 1000, "requests": 3000},
                {"prompt_len": 2048, "output_len": 128, "requests": 3000},
                {"prompt_len": 500, "output_len": 300, "requests": 5000}):
        p = predict_serving(_case(request=req))
        m, s = p.metrics, p.setup
        st = steady_state(s.timer, s.engine, s.prompt_len, s.output_len, m["mean_concurrency"])
        assert m["window_output_tokens_per_s_per_gpu"] == pytest.approx(float(st.tokens_per_s), rel=0.05)
        assert m["output_tokens_per_s_per_gpu"] <= 1.10 * m["steady_output_tokens_per_s_per_gpu"]
    # 128/128: cohorts of ~4000 requests finish together and are re-admitted 64 prompts per
    # 8192-token iteration, iterations that emit few tokens: the run stays below the closed form
    p = predict_serving(_case(request={"prompt_len": 128, "output_len": 128, "requests": 20000}))
    assert 0.85 < p.metrics["output_tokens_per_s_per_gpu"] / p.metrics["steady_output_tokens_per_s_per_gpu"] <= 1.0


def test_chunked_prefill_and_preemption():
    from xlayer.serving.engine import EngineConfig
    from xlayer.serving.predict import predict_serving
    eng = EngineConfig(name="vllm", chunked_prefill=True, policy="max_utilization", max_batch_size=512,
                       max_num_tokens=2048, tokens_per_block=16)
    c = _case(system={"accelerator": "H100-SXM-80GB", "count": 1}, request={"prompt_len": 3000, "output_len": 3000,
                                                                          "requests": 400})
    p = predict_serving(c, engine=eng)
    assert np.all(np.isfinite(p.sim.finish_s))
    assert p.sim.preemptions > 0              # blocks run out as sequences grow
    q = predict_serving(c)                    # no-evict never preempts
    assert q.sim.preemptions == 0
    assert p.sim.max_running > q.sim.max_running


def test_moe_serving_and_experts_touched():
    from xlayer.serving.predict import predict_serving
    from xlayer.workload.inference_ops import expected_experts_touched
    assert expected_experts_touched(128, 8, 1) == pytest.approx(8)
    assert expected_experts_touched(128, 8, 10000) == pytest.approx(128)
    p = predict_serving(_moe_case(system={"accelerator": "B200-SXM-180GB", "count": 1}, precision="nvfp4"))
    assert p.metrics["output_tokens_per_s_per_gpu"] > 0


def test_pp_and_ep_deployments():
    from xlayer.serving.predict import predict_serving
    from xlayer.serving.steptime import Deployment
    c = _case(system={"accelerator": "H100-SXM-80GB", "count": 4})
    a = predict_serving(c, deployment=Deployment(tp=2, pp=2)).metrics["output_tokens_per_s_per_gpu"]
    b = predict_serving(c, deployment=Deployment(tp=1, replicas=4)).metrics["output_tokens_per_s_per_gpu"]
    assert a > 0 and b > 0
    m = _moe_case(system={"accelerator": "H100-SXM-80GB", "count": 4})
    e = predict_serving(m, deployment=Deployment(ep=4)).metrics
    assert e["output_tokens_per_s_per_gpu"] > 0


@pytest.mark.parametrize("req,field", [({"prompt_len": 0}, "request.prompt_len"),
                                        ({"output_len": 0}, "request.output_len")])
def test_bad_lengths(req, field):
    from xlayer.serving.predict import predict_serving
    with pytest.raises(InputError) as e:
        predict_serving(_case(request=req))
    assert e.value.field == field


def test_request_longer_than_context():
    from xlayer.serving.predict import predict_serving
    c = _case(model={"max_seq_len": 200})
    with pytest.raises(InputError, match="max_seq_len"):
        predict_serving(c)


@pytest.mark.skipif(not VAL.exists(), reason="shared validation data not present")
def test_validation_cases_predict():
    from xlayer.predict.case import load_case
    from xlayer.validate.runner import predict_metrics
    f = VAL / "trtllm10-h200-llama-3.3-70b-tp1-fp8-1000-1000.yaml"
    c = load_case(f)
    got = predict_metrics(c)["output_tokens_per_s_per_gpu"]
    assert got == pytest.approx(c.measured["output_tokens_per_s_per_gpu"], rel=0.15)


def test_cli_slo_search_and_errors(tmp_path):
    from typer.testing import CliRunner
    from xlayer.cli.main import app
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump({
        "id": "l70", "kind": "inference", "software": {"framework": "trt-llm"},
        "model": {"name": "Llama 3.3 70B", "layers": 80, "hidden": 8192, "heads": 64, "kv_heads": 8,
                  "ffn_hidden": 28672, "vocab": 128256, "activation": "swiglu"},
        "system": {"accelerator": "H100-SXM-80GB", "count": 8}, "precision": "fp8",
        "request": {"mode": "serving", "prompt_len": 1000, "output_len": 1000, "requests": 3000}}))
    r = CliRunner().invoke(app, ["serve", str(f), "--ttft", "1", "--tpot", "0.05", "--curve", str(tmp_path / "c.png")])
    assert r.exit_code == 0, r.output
    assert "best:" in r.output and (tmp_path / "c.png").stat().st_size > 1000
    r2 = CliRunner().invoke(app, ["serve", str(f), "--ttft", "1", "--tpot", "0.02", "--json"])
    import json
    d = json.loads(r2.output)
    assert d["ranked"][0]["tpot_s"] <= 0.02 and d["deployments_evaluated"] >= 100
    for args, field in ((["--ttft", "0.001", "--tpot", "0.001"], "--tpot"), (["--gpus", "16"], "--gpus"),
                        (["--input-len", "0"], "--input-len"), (["--tpot", "-1"], "--tpot")):
        r = CliRunner().invoke(app, ["serve", str(f)] + args)
        assert r.exit_code == 2 and f"error: {field}:" in r.output, r.output
    r = CliRunner().invoke(app, ["serve", str(f), "--simulate", "--input-len", "128", "--output-len", "64"])
    assert r.exit_code == 0 and "TTFT" in r.output, r.output
