"""Serving: continuous-batching simulator, steady state, engine settings, SLO search, bad input."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import yaml

from xlayer.errors import InputError
from xlayer.prediction.case import case_from_dict

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
    from xlayer.prediction.inference import forward_pass, resolve_inference
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
        assert st.gpu_step_s(b, ctx, [(k, n, 0)]) == pytest.approx(ref, rel=1e-9)
        assert st.step_s(b, ctx) == pytest.approx(forward_pass(s, [AttentionSegment(b, 1, ctx)], "x").time_s, rel=1e-9)


def test_host_floor_and_padding():
    from xlayer.serving.steptime import Deployment, StepTimer
    c = _case()
    st = StepTimer(c.model, c.system_spec(), Deployment(), "fp8", "fp8", t_max=2048)
    assert st.step_s(1000, 200) >= st.host_s(1000)
    assert st.graph_batch(300, (1, 256, 384, 512)) == 384
    assert st.step_s(300, 200, (), 384) >= st.step_s(300, 200)


def test_an_iteration_with_a_prompt_pays_the_eager_launch_of_the_forward():
    """TensorRT-LLM runs iterations that carry a context request without a CUDA graph: their
    host time adds L·ops·t_op (+ the fixed ops), t_op the pytorch-eager dispatch time, 2.75× on
    a Grace host (GB200); generation-only iterations and graph-capturing engines (vLLM V1) pay
    only the per-request term."""
    from xlayer.mapping.profiles import get_profile
    from xlayer.serving.steptime import Deployment, StepTimer, serving_calibration
    cal, t_op = serving_calibration(), get_profile("pytorch-eager").host_dispatch_s
    c = _case()
    L = c.model.layers
    eager = t_op * (L * cal.eager_ops_per_layer + cal.eager_ops_fixed)
    x86 = StepTimer(c.model, c.system_spec(), Deployment(), "fp8", "fp8", t_max=2048)
    assert float(x86.host_s(10)) == pytest.approx(10 * cal.host_s_per_request)
    assert float(x86.host_s(10, 512)) == pytest.approx(10 * cal.host_s_per_request + eager)
    graphs = StepTimer(c.model, c.system_spec(), Deployment(), "fp8", "fp8", t_max=2048, mixed_in_graph=True)
    assert float(graphs.host_s(10, 512)) == pytest.approx(10 * cal.host_s_per_request)
    gb = _case(system={"accelerator": "GB200-NVL72", "count": 1})
    grace = StepTimer(gb.model, gb.system_spec(), Deployment(), "fp8", "fp8", t_max=2048)
    assert float(grace.host_s(10, 512)) == pytest.approx(10 * cal.host_s_per_request + 2.75 * eager)


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
    from xlayer.workload.transformer import expected_experts_touched
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
    from xlayer.prediction.case import load_case
    from xlayer.validation.runner import predict_metrics
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


def _l70(tmp_path=None, **over):
    d = {"id": "l70", "kind": "inference", "software": {"framework": "trt-llm"},
         "model": {"name": "Llama 3.3 70B", "layers": 80, "hidden": 8192, "heads": 64, "kv_heads": 8,
                   "ffn_hidden": 28672, "vocab": 128256, "activation": "swiglu", "max_seq_len": 131072},
         "system": {"accelerator": "H100-SXM-80GB", "count": 8}, "precision": "fp8",
         "request": {"mode": "serving", "prompt_len": 1000, "output_len": 1000, "requests": 3000}}
    for k, v in over.items():
        d[k] = {**d[k], **v} if isinstance(v, dict) and isinstance(d.get(k), dict) else v
    if tmp_path is None:
        return case_from_dict(d)
    f = tmp_path / "l70.yaml"
    f.write_text(yaml.safe_dump(d))
    return f


def test_step_breakdown_sums_to_the_iteration():
    """StepTimer.breakdown's terms add up to step_s (dense tp×pp with padding, MoE ep, host floor)."""
    from xlayer.serving.steptime import Deployment, StepTimer
    for c, dep in ((_case(system={"accelerator": "H100-SXM-80GB", "count": 8}), Deployment(tp=2, pp=2)),
                   (_case(), Deployment()),
                   (_moe_case(system={"accelerator": "H100-SXM-80GB", "count": 4}), Deployment(ep=4))):
        st = StepTimer(c.model, c.system_spec(), dep, "fp8", "fp8", t_max=4096)
        for args in ((100, 500.0, [(2, 300, 0)], None), (37, 1000.0, [], 64), (3, 10.0, [], None),
                     (900, 50.0, [], 1024)):
            bd = st.breakdown(*args)
            assert sum(bd.values()) == pytest.approx(st.step_s(*args), rel=1e-9)
            assert bd["GEMMs"] > 0 and bd["attention"] > 0
        assert ("EP all-to-all" in st.breakdown(64, 100.0)) == (dep.ep > 1)
        assert ("pipeline send" in st.breakdown(64, 100.0)) == (dep.pp > 1)


def test_disaggregated_pools_formulas():
    """A disaggregated entry: TTFT = t_p(k) + t_x; tokens/s/GPU = min(N_p·r_p, N_d·r_d)·O/(N_p+N_d);
    the KV of the prompt (2·L·g·d·kv_bytes·I) over scale-up inside one domain, else scale-out."""
    from xlayer.cost.collectives import collective_time_s
    from xlayer.serving.deploy import slo_search
    from xlayer.serving.disagg import decode_side, prefill_side
    c = _l70()
    res = slo_search(c, 1.0, 0.02)
    dis = [x for x in res.ranked if x.disaggregated]
    assert dis and any(not x.disaggregated for x in res.ranked)
    x = dis[0]
    d = x.deployment
    assert x.tpot_s <= 0.02 and x.ttft_s <= 1.0 and d.gpus <= 8 and d.network == "scale-up"
    assert d.kv_bytes_per_request == pytest.approx(2 * 80 * 8 * 128 * 1.0 * 1000)      # fp8 KV
    ps, ds = res.setups[(d.prefill.tp, d.prefill.pp, 1)], res.setups[(d.decode.tp, d.decode.pp, 1)]
    s = c.system_spec()
    rp = d.prefill.tp * d.prefill.pp
    tx = collective_time_s("send_recv", d.kv_bytes_per_request / rp, 2, 2, s.scale_up, s.scale_out)
    assert d.kv_transfer_s == pytest.approx(tx)
    pre, dec = prefill_side(ps), decode_side(ds, 64)
    i = list(pre.k).index(d.prefill_batch)
    assert x.ttft_s == pytest.approx(pre.t_p[i] + tx)
    r_p = d.prefill_batch / max(pre.t_p[i], d.prefill_batch * tx) / rp
    j = list(dec.caps).index(x.cap)
    assert x.tpot_s == pytest.approx(dec.t_d[j])
    r_d = min(x.cap / (dec.t_d[j] * 999), 1 / dec.t_x[0]) / (d.decode.tp * d.decode.pp)
    n_p, n_d = d.prefill.gpus, d.decode.gpus
    assert x.tokens_per_s_per_gpu == pytest.approx(min(n_p * r_p, n_d * r_d) * 1000 / (n_p + n_d))
    assert x.limit.startswith(("prefill pool", "decode pool"))
    # across scale-up domains of 2 GPUs the KV goes over the scale-out network: slower
    c2 = _l70(system={"accelerator": "H100-SXM-80GB", "count": 8, "scale_up_size": 2})
    r2 = slo_search(c2, 2.0, 0.05)
    nets = {x.deployment.network for x in r2.ranked if x.disaggregated}
    assert "scale-out" in nets
    for x in r2.ranked:
        if x.disaggregated:
            assert (x.deployment.network == "scale-up") == (x.deployment.gpus <= 2)
    assert not any(x.disaggregated for x in slo_search(c, 1.0, 0.02, disaggregated=False).ranked)


def test_search_breakdown_and_json():
    from xlayer.serving.deploy import slo_search
    res = slo_search(_l70(), 1.0, 0.05)
    for cand in res.ranked[:4]:
        bd = res.step_breakdown(cand)
        assert len(bd) == 3 and all(sum(t.values()) > 0 for _, t in bd)
        if not cand.disaggregated:
            assert sum(bd[2][1].values()) == pytest.approx(cand.tpot_s, rel=1e-6)      # the mean is the TPOT
        else:
            assert sum(bd[2][1].values()) == pytest.approx(cand.tpot_s, rel=1e-6)      # the decode iteration
            assert sum(bd[0][1].values()) + sum(bd[1][1].values()) == pytest.approx(cand.ttft_s, rel=1e-6)
    import json
    d = json.loads(json.dumps(res.to_dict()))
    assert d["best_step_breakdown"] and {"aggregated", "disaggregated"} <= {r["mode"] for r in d["ranked"]}


def test_python_api_serve():
    import xlayer
    s = xlayer.serve(_l70(), ttft=1.0, tpot=0.02)
    df = s.to_frame()
    assert df.index[0] == 1 and (df["tpot_s"] <= 0.02).all() and (df["ttft_s"] <= 1.0).all()
    assert df["output_tokens_per_s_per_gpu"].is_monotonic_decreasing
    assert s.best.tokens_per_s_per_gpu == df["output_tokens_per_s_per_gpu"].iloc[0]
    cf = s.curve_frame()
    assert {"deployment", "max_batch", "output_tokens_per_s_per_gpu", "tokens_per_s_per_user"} <= set(cf.columns)
    bf = s.breakdown_frame()
    assert set(bf.columns) == {"iteration", "term", "time_s"} and (bf["time_s"] > 0).all()
    a = xlayer.serve(_l70(), ttft=1.0, tpot=0.02, disaggregated=False).to_frame()
    assert (a["mode"] == "aggregated").all()
    with pytest.raises(InputError) as e:
        s.breakdown_frame(0)
    assert e.value.field == "rank"


@pytest.mark.parametrize("kw,field", [({"prompt_len": 0}, "prompt_len"), ({"output_len": -3}, "output_len"),
                                      ({"prompt_len": 200000}, "prompt_len"), ({"gpus": 16}, "--gpus"),
                                      ({"gpus": 0}, "--gpus"), ({"ttft": 0.0}, "--ttft"),
                                      ({"tpot": float("nan")}, "--tpot"), ({"points": 1}, "points")])
def test_python_api_serve_bad_input(kw, field):
    import xlayer
    with pytest.raises(InputError) as e:
        xlayer.serve(_l70(), **kw)
    assert e.value.field == field


def test_unmeetable_targets_name_the_closest():
    """No deployment within the targets: the error names the closest one and by how much it
    misses, and that deployment exists (it is in the unconstrained search at that cap)."""
    import re
    from xlayer.serving.deploy import slo_search
    c = _l70()
    with pytest.raises(InputError) as e:
        slo_search(c, 0.5, 0.003)
    msg = str(e.value)
    assert e.value.field == "--tpot" and "closest:" in msg
    m = re.search(r"closest: (.+) at max batch (\d+): TPOT ([\d.]+) ms vs 3 ms \(\+(\d+) %\)", msg)
    assert m, msg
    label, cap, tpot_ms, pct = m.group(1), int(m.group(2)), float(m.group(3)), int(m.group(4))
    assert pct == round(100 * (tpot_ms / 3 - 1))
    free = slo_search(c)
    pts = free.curves[label if label in free.curves else next(k for k in free.curves if k in label)]
    assert any(p["max_batch"] == cap and p["tpot_s"] * 1e3 == pytest.approx(tpot_ms, abs=0.01) for p in pts)
    assert min(p["tpot_s"] for k in free.curves for p in free.curves[k]) * 1e3 == pytest.approx(tpot_ms, abs=0.01)
    with pytest.raises(InputError) as e:
        slo_search(c, 0.001)
    assert e.value.field == "--ttft" and "closest:" in str(e.value)


def test_cli_serve_bad_input_lines(tmp_path):
    from typer.testing import CliRunner
    from xlayer.cli.main import app
    f = _l70(tmp_path, model={"max_seq_len": 4096})
    for args, field in ((["--ttft", "1", "--input-len", "4000", "--output-len", "200"], "--input-len"),
                        (["--simulate", "--input-len", "4000", "--output-len", "200"], "--input-len"),
                        (["--ttft", "1", "--output-len", "0"], "--output-len"),
                        (["--ttft", "0.0001"], "--ttft"), (["--gpus", "9"], "--gpus")):
        r = CliRunner().invoke(app, ["serve", str(f)] + args)
        assert r.exit_code == 2, (args, r.output)
        lines = [x for x in r.output.splitlines() if x.strip()]
        assert len(lines) == 1 and lines[0].startswith(f"error: {field}: ") and " is not valid; " in lines[0], \
            (args, r.output)
    r = CliRunner().invoke(app, ["serve", str(f), "--ttft", "1", "--tpot", "0.02", "--no-disagg", "--json"])
    import json
    assert r.exit_code == 0 and all(x["mode"] == "aggregated" for x in json.loads(r.output)["ranked"])


def test_more_gpus_than_the_system_has():
    from xlayer.serving.predict import predict_serving
    with pytest.raises(InputError) as e:
        predict_serving(_case(system={"accelerator": "H100-SXM-80GB", "count": 2}, parallel={"tp": 8}))
    assert e.value.field == "parallel.tp" and "more than the system's 2" in str(e.value)
    from xlayer.serving.deploy import slo_search
    with pytest.raises(InputError) as e:
        slo_search(_case(system={"accelerator": "H100-SXM-80GB", "count": 2}), gpus=4)
    assert e.value.field == "--gpus"


def test_vllm_batch_defaults_follow_the_gpu():
    """vLLM's LLM-class defaults (EngineArgs.get_batch_defaults): >= 70 GiB and not an A100 ->
    1024 sequences / 16384 tokens, else 256 / 8192; a batch above the largest capture size runs
    without a CUDA graph (no padding to max_num_seqs)."""
    from xlayer.serving.engine import vllm_batch_defaults
    from xlayer.serving.predict import serving_setup
    from xlayer.units import GIB
    assert vllm_batch_defaults("H100-SXM-80GB", 80e9) == (1024, 16384)
    assert vllm_batch_defaults("A100-SXM-80GB", 80e9) == (256, 8192)
    assert vllm_batch_defaults("L40S", 48 * GIB) == (256, 8192)
    s = serving_setup(_case(software={"framework": "vllm"}))
    assert (s.engine.max_batch_size, s.engine.max_num_tokens) == (1024, 16384)
    assert max(s.engine.graph_sizes()) == 512
    a = serving_setup(_case(software={"framework": "vllm"}, system={"accelerator": "A100-SXM-80GB", "count": 1},
                            precision="bf16"))
    assert (a.engine.max_batch_size, a.engine.max_num_tokens) == (256, 8192)
    t = serving_setup(_case())  # TensorRT-LLM captures its max batch too
    assert t.engine.max_batch_size in t.engine.graph_sizes()
