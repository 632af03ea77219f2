"""Mixture of experts, MLA and sliding windows in the training engine: properties with the
expected values derived here."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xlayer.cost.collectives import all_to_all_time_s
from xlayer.errors import InputError
from xlayer.engine.vectorized import evaluate_layouts
from xlayer.hardware.catalog import get_accelerator
from xlayer.hardware.spec import System
from xlayer.mapping.layout import Layout, check_layout
from xlayer.prediction.case import case_from_dict
from xlayer.engine.training import evaluate_training, layer_params_rank, recipe_for
from xlayer.workload.model import ModelSpec
from xlayer.workload.training_ops import layer_work

QWEN30 = ModelSpec(name="Qwen3 30B-A3B", layers=48, hidden=2048, heads=32, kv_heads=4, head_dim=128,
                   ffn_hidden=6144, vocab=151936, activation="swiglu", seq_len=4096,
                   moe={"experts": 128, "top_k": 8, "ffn_hidden": 768})
H100x16 = System(accelerator=get_accelerator("H100-SXM-80GB"), count=16, scale_up_size=8)


def _eval(model, system, lay: Layout, gb=256, precision="bf16"):
    return evaluate_training(model, system, precision, gb, lay.tp, lay.pp, lay.dp, lay.cp, lay.vp, lay.micro,
                             lay.sp, lay.recompute, lay.zero, lay.dp_overlap, recipe_for(model, precision),
                             ep=lay.ep, etp=lay.etp, detail=True)


def test_ep1_holds_every_expert_and_doubling_ep_never_adds_expert_memory():
    m = QWEN30
    expert_one = m.expert_params(768)
    dense, expert = layer_params_rank(m, tp=1, ep=1)
    assert expert == pytest.approx(128 * expert_one)          # ep = 1: all 128 experts on the rank
    prev = None
    for ep in (1, 2, 4, 8, 16):
        _, e = layer_params_rank(m, tp=1, ep=ep)
        assert e == pytest.approx(128 * expert_one / ep)
        lay = Layout(tp=1, pp=1, dp=16, ep=ep, recompute="full", zero=1, micro=1)
        mem = _eval(m, H100x16, lay).detail.memory
        states = mem.states
        if prev is not None:
            assert states <= prev + 1e-6
        prev = states


def test_all_to_all_volume_and_time_follow_the_formula():
    # dispatch: R·k tokens of h 16-bit values leave each rank, (n_in−1)/n over NVLink and
    # (n−n_in)/n over the NIC at once
    w = layer_work(QWEN30, 1, 1, False, 1, "bf16", "flash", 0.0, ffn="moe", ep=16)
    a2a = [c for c in w.fwd_comms if c.collective == "all_to_all"]
    R = 4096
    assert len(a2a) == 2 and all(c.bytes == pytest.approx(R * 8 * 2048 * 2) for c in a2a)
    assert len([c for c in w.bwd_comms if c.collective == "all_to_all"]) == 2
    acc = get_accelerator("H100-SXM-80GB")
    S = R * 8 * 2048 * 2.0
    up = acc.scale_up.bandwidth_bytes_per_s * acc.scale_up.efficiency
    out = acc.scale_out.bandwidth_bytes_per_s * acc.scale_out.efficiency
    expect = max(S * 7 / 16 / up, S * 8 / 16 / out) + acc.scale_up.latency_s + acc.scale_out.latency_s
    assert all_to_all_time_s(S, 16, 8, acc.scale_up, acc.scale_out) == pytest.approx(expect)
    # grouped GEMMs: E/ep local experts of ep·R·k/E rows each
    fc1 = next(o for o in w.fwd if o.name == "expert_fc1")
    assert (fc1.batch, fc1.m, fc1.k, fc1.n) == (128 / 16, 16 * R * 8 / 128, 2048, 2 * 768)


@settings(max_examples=25, deadline=None)
@given(ep=st.sampled_from([1, 2, 4, 8, 16]), micro=st.sampled_from([1, 2, 4]), zero=st.sampled_from([0, 1, 3]),
       rc=st.sampled_from(["none", "full", "layernorm+moe_act"]), pp=st.sampled_from([1, 2, 4]),
       vp=st.sampled_from([1, 2]), ep_overlap=st.booleans())
def test_scalar_and_vectorized_agree_on_moe_layouts(ep, micro, zero, rc, pp, vp, ep_overlap):
    dp = 16 // pp
    if dp % ep:
        ep = dp
    vp = vp if pp > 1 else 1
    lay = Layout(tp=1, pp=pp, dp=dp, vp=vp, ep=ep, recompute=rc, zero=zero, micro=micro)
    check_layout(lay, QWEN30, 16, 256)
    recipe = recipe_for(QWEN30, "bf16", ep_overlap=ep_overlap)
    scalar = evaluate_training(QWEN30, H100x16, "bf16", 256, lay.tp, lay.pp, lay.dp, lay.cp, lay.vp, lay.micro,
                               lay.sp, lay.recompute, lay.zero, lay.dp_overlap, recipe, ep=lay.ep, etp=lay.etp,
                               detail=True)
    grid = {k: np.array([getattr(lay, k)]) for k in ("tp", "pp", "dp", "cp", "vp", "micro", "ep")}
    vec = evaluate_layouts(QWEN30, H100x16, "bf16", 256, grid, False, rc, zero, recipe)
    assert vec["iteration_time_s"][0] == pytest.approx(scalar.iteration_time_s, rel=1e-9)
    assert vec["memory_bytes"][0] == pytest.approx(scalar.memory_bytes, rel=1e-9)


def test_sliding_window_bounds_attention_work():
    m = QWEN30.model_copy(update={"moe": None, "experts": 1, "top_k": 1})
    full = layer_work(m, 1, 1, False, 1, "bf16", "flash", 0.0)
    win = layer_work(m, 1, 1, False, 1, "bf16", "flash", 0.0, window=128)
    f = next(o for o in full.fwd if o.name == "flash_attn").flops
    w = next(o for o in win.fwd if o.name == "flash_attn").flops
    s = 4096
    # keys seen per query: s/2 (causal) against 128 − 128²/(2s)
    assert w / f == pytest.approx((128 - 128 * 128 / (2 * s)) / (s / 2))


def _case(**over):
    d = {"id": "moe", "kind": "training",
         "model": {"layers": 8, "hidden": 1024, "heads": 8, "vocab": 32000, "seq_len": 2048, "activation": "swiglu",
                   "moe": {"experts": 16, "top_k": 2, "ffn_hidden": 512}},
         "system": {"accelerator": "H100-SXM-80GB", "count": 8},
         "parallel": {"tp": 1, "pp": 1, "dp": 8, "ep": 8}, "batch": {"global": 64, "micro": 1}}
    for k, v in over.items():
        node = d
        *path, key = k.split("__")
        for p in path:
            node = node[p]
        node[key] = v
    return case_from_dict(d)


@pytest.mark.parametrize("over,field", [
    ({"parallel__ep": 3}, "parallel.ep"),                       # 3 does not divide 16 experts
    ({"parallel__ep": 16}, "parallel.ep"),                      # ep*etp must divide tp*dp*cp = 8
    ({"parallel__etp": 2, "parallel__ep": 8}, "parallel.etp"),  # ep*etp = 16 does not divide 8 (ep alone does)
    ({"parallel__etp": 3}, "parallel.etp"),                     # 3 does not divide moe.ffn_hidden
    ({"model__moe": {"experts": 4, "top_k": 8, "ffn_hidden": 512}}, "model.moe"),
    ({"model__mla": {"kv_lora_rank": 0, "qk_nope_head_dim": 64, "qk_rope_head_dim": 32, "v_head_dim": 64}},
     "model.mla.kv_lora_rank"),
    ({"model__mla": {"kv_lora_rank": -5, "qk_nope_head_dim": 64, "qk_rope_head_dim": 32, "v_head_dim": 64}},
     "model.mla.kv_lora_rank"),
    ({"model__sliding_window": {"size": 4096, "layers": 4}}, "model"),
])
def test_bad_moe_input_names_the_field(over, field):
    from xlayer.prediction.training import predict_training
    with pytest.raises(InputError) as err:
        predict_training(_case(**over), energy=False)
    assert err.value.field.startswith(field), (err.value.field, str(err.value))


def test_moe_case_predicts_with_a_breakdown():
    from xlayer.prediction.training import predict_training
    p = predict_training(_case(), energy=False)
    assert p.time_breakdown_s["comm.ep_all_to_all_exposed"] > 0
    assert p.time_breakdown_s["compute.moe_grouped_gemm"] > 0
    assert abs(sum(p.time_breakdown_s.values()) - p.iteration_time_s) < 1e-9 * p.iteration_time_s + 1e-12


# --- Megatron-Core MoE communication overlap (combined 1F1B, shared-expert overlap) ------------

def _moe_case(**parallel):
    from xlayer.prediction.case import case_from_dict
    p = {"tp": 1, "pp": 1, "dp": 16, "cp": 1, "vp": 1, "ep": 16, "recompute": "none", "zero": 1}
    p.update(parallel)
    return case_from_dict({
        "id": "moe", "kind": "training", "software": {"framework": "megatron-bridge"},
        "model": {"name": "q", "layers": 48, "hidden": 2048, "heads": 32, "kv_heads": 4, "head_dim": 128,
                  "ffn_hidden": 6144, "vocab": 151936, "activation": "swiglu", "seq_len": 4096,
                  "moe": {"experts": 128, "top_k": 8, "ffn_hidden": 768, "shared_experts": 1}},
        "system": {"accelerator": "H100-SXM-80GB", "count": 16, "scale_up_size": 8},
        "parallel": p, "batch": {"global": 256, "micro": 1}, "precision": "bf16"})


def test_combined_1f1b_fraction_follows_the_schedule():
    from xlayer.engine.training import combined_1f1b_fraction
    assert combined_1f1b_fraction(4, 1, 1) == pytest.approx(3 / 4)       # F0, (F1,B0), (F2,B1), (F3,B2), B3
    assert combined_1f1b_fraction(1, 1, 1) == 0.0
    assert combined_1f1b_fraction(64, 4, 1) == 0.0                        # needs interleaving when pp > 1
    # interleaved: m·v chunks, 2(p−1) + (v−1)p of them warm up on rank 0
    assert combined_1f1b_fraction(32, 4, 2) == pytest.approx((64 - (6 + 4)) / 64)
    arr = combined_1f1b_fraction(np.array([4, 64, 32]), np.array([1, 4, 4]), np.array([1, 1, 2]))
    assert np.allclose(arr, [0.75, 0.0, 54 / 64])


def test_ep_overlap_hides_part_of_the_all_to_all_and_never_slows():
    from xlayer.prediction.training import predict_training
    base = predict_training(_moe_case(), energy=False)
    on = predict_training(_moe_case(ep_overlap=True), energy=False)
    a2a = base.time_breakdown_s["comm.ep_all_to_all_exposed"]
    a2a_on = on.time_breakdown_s["comm.ep_all_to_all_exposed"]
    assert 0.0 < a2a_on < a2a
    assert base.iteration_time_s - on.iteration_time_s == pytest.approx(a2a - a2a_on, rel=1e-6)
    # at most (m − 1)/m of it can hide (the first forward and last backward are unpaired)
    m = 256 // 16
    assert a2a_on >= a2a / m - 1e-9


def test_shared_expert_overlap_hides_at_most_the_shared_experts_time():
    from xlayer.prediction.training import predict_training
    base = predict_training(_moe_case(), energy=False)
    on = predict_training(_moe_case(shared_expert_overlap=True), energy=False)
    saved = base.time_breakdown_s["comm.ep_all_to_all_exposed"] - on.time_breakdown_s["comm.ep_all_to_all_exposed"]
    shared = sum(o["time_s"] for o in base.ops if o["name"].startswith("shared_"))  # one layer, one micro-batch
    assert 0.0 < saved
    layers_mb = 48 * (256 // 16)
    assert saved <= shared * layers_mb * (1 + 1e-9)


@pytest.mark.parametrize("parallel, field", [
    ({"ep": 1, "ep_overlap": True}, "parallel.ep_overlap"),
    ({"ep_overlap": True, "shared_expert_overlap": True}, "parallel.shared_expert_overlap"),
    ({"ep_overlap": True, "recompute": "full"}, "parallel.ep_overlap"),
    ({"ep_overlap": True, "pp": 2, "dp": 8, "vp": 1}, "parallel.ep_overlap"),
])
def test_overlap_switches_megatron_refuses_name_the_field(parallel, field):
    from xlayer.prediction.training import predict_training
    with pytest.raises(InputError) as e:
        predict_training(_moe_case(**parallel), energy=False)
    assert e.value.field == field


def test_shared_expert_overlap_needs_shared_experts():
    from xlayer.prediction.training import predict_training
    c = _moe_case(shared_expert_overlap=True)
    d = c.model_dump(by_alias=True)
    d["model"]["moe"]["shared_experts"] = 0
    with pytest.raises(InputError) as e:
        predict_training(case_from_dict(d), energy=False)
    assert e.value.field == "parallel.shared_expert_overlap"


# --- routing imbalance (model.moe.imbalance) ------------------------------------------------------

def _imb(beta, ep=8):
    m = QWEN30.model_copy(update={"moe": QWEN30.moe.model_copy(update={"imbalance": beta})})
    return layer_work(m, 1, 1, False, 1, "bf16", "flash", 0.0, ffn="moe", ep=ep), m


def test_imbalance_scales_the_busiest_ranks_expert_rows_and_all_to_all():
    w1, _ = _imb(None)
    w2, _ = _imb(1.5)
    f1 = next(o for o in w1.fwd if o.name == "expert_fc1")
    f2 = next(o for o in w2.fwd if o.name == "expert_fc1")
    assert f2.flops == pytest.approx(1.5 * f1.flops) and f2.batch == f1.batch
    a1 = [c.bytes for c in w1.fwd_comms if c.collective == "all_to_all"]
    a2 = [c.bytes for c in w2.fwd_comms if c.collective == "all_to_all"]
    assert a2 == pytest.approx([1.5 * x for x in a1])
    # the router and the permute of the rank's own tokens do not change
    for name in ("router", "permute"):
        assert next(o for o in w2.fwd if o.name == name).flops == next(o for o in w1.fwd if o.name == name).flops
    # one rank cannot take more than every copy of its group: beta is capped at ep
    w_cap, _ = _imb(100.0, ep=8)
    w_8, _ = _imb(8.0, ep=8)
    assert next(o for o in w_cap.fwd if o.name == "expert_fc1").flops == \
        pytest.approx(next(o for o in w_8.fwd if o.name == "expert_fc1").flops)


@settings(max_examples=15, deadline=None)
@given(beta=st.floats(1.0, 4.0), ep=st.sampled_from([2, 4, 8, 16]))
def test_imbalance_never_speeds_up_or_saves_memory(beta, ep):
    _, m1 = _imb(None)
    _, mb = _imb(beta)
    lay = Layout(tp=1, pp=1, dp=16, ep=ep, recompute="none", zero=1, micro=1)
    r1, rb = _eval(m1, H100x16, lay), _eval(mb, H100x16, lay)
    assert rb.iteration_time_s >= r1.iteration_time_s * (1 - 1e-12)
    assert rb.memory_bytes >= r1.memory_bytes * (1 - 1e-12)


def test_imbalance_below_one_is_refused_naming_the_field():
    from xlayer.prediction.case import case_from_dict
    from pydantic import ValidationError
    d = {"id": "x", "kind": "training", "model": {"name": "q", "layers": 4, "hidden": 1024, "heads": 8,
         "ffn_hidden": 4096, "vocab": 32000, "seq_len": 1024, "moe": {"experts": 8, "top_k": 2, "imbalance": 0.5}},
         "system": {"accelerator": "H100-SXM-80GB", "count": 8}, "parallel": {"tp": 1, "pp": 1, "ep": 8},
         "batch": {"global": 8}, "precision": "bf16"}
    with pytest.raises((InputError, ValidationError)) as e:
        case_from_dict(d)
    assert "model.moe.imbalance" in str(e.value)


# --- host issue of an MoE layer (moe_host_exposed_s) ----------------------------------------------

def test_moe_host_exposure_bounds():
    from xlayer.engine.training import moe_host_exposed_s
    from xlayer.mapping.profiles import get_profile
    host = get_profile("megatron-bridge").moe_host
    op = host.op_s["x86"]
    L = 16
    h_a = op * host.fwd_before_sync
    h_b = op * (host.fwd_after_sync + 2 * (host.grouped_linear_fwd_fixed + L * host.grouped_linear_fwd_per_expert["mxfp8"]))
    h_bwd = op * (host.bwd_fixed + 2 * (host.grouped_linear_bwd_fixed + L * host.grouped_linear_bwd_per_expert["mxfp8"])
                  + L * host.bwd_hooks_per_expert)
    # an idle GPU: the whole host time shows
    f, b = moe_host_exposed_s(host, 0.0, 0.0, 0.0, L, "mxfp8", False)
    assert f == pytest.approx(h_a + h_b) and b == pytest.approx(h_bwd)
    # a busy GPU hides it
    f, b = moe_host_exposed_s(host, 1.0, 1.0, 1.0, L, "mxfp8", False)
    assert f == 0.0 and b == 0.0
    # in between the forward pays what the GPU does not cover after the wait
    f, _ = moe_host_exposed_s(host, 0.0, h_b / 2, 0.0, L, "mxfp8", False)
    assert f == pytest.approx(h_a + h_b - h_b / 2)
    # more local experts, a slower (Grace) host, a costlier format: never less host time
    f16, b16 = moe_host_exposed_s(host, 0.0, 0.0, 0.0, 16, "bf16", False)
    f4, b4 = moe_host_exposed_s(host, 0.0, 0.0, 0.0, 4, "bf16", False)
    fg, bg = moe_host_exposed_s(host, 0.0, 0.0, 0.0, 16, "bf16", True)
    fm, bm = moe_host_exposed_s(host, 0.0, 0.0, 0.0, 16, "mxfp8", False)
    assert f4 < f16 < fg and b4 < b16 < bg and f16 < fm and b16 < bm


def test_expert_bias_loop_host_ops_are_the_traced_ones():
    """Biased experts (GPT-OSS) add Megatron-Core's fc2-bias loop after the experts' sync: the
    profile's counts are the aten ops a trace of that loop issues under autograd, for any number
    of local experts, and an idle GPU shows exactly that much more host time."""
    from conftest import load_benchmark
    from xlayer.engine.training import moe_host_exposed_s
    from xlayer.mapping.profiles import get_profile

    em = load_benchmark("eager_memory")
    host = get_profile("megatron-bridge").moe_host
    for L in (1, 2, 16):
        assert em.expert_bias_loop_ops(L) == (host.bias_fwd_fixed + L * host.bias_fwd_per_expert,
                                              host.bias_bwd_fixed + L * host.bias_bwd_per_expert)
    f0, b0 = moe_host_exposed_s(host, 0.0, 0.0, 0.0, 16, "bf16", False)
    f1, b1 = moe_host_exposed_s(host, 0.0, 0.0, 0.0, 16, "bf16", False, biased=True)
    op = host.op_s["x86"]
    assert f1 - f0 == pytest.approx(op * (host.bias_fwd_fixed + 16 * host.bias_fwd_per_expert))
    assert b1 - b0 == pytest.approx(op * (host.bias_bwd_fixed + 16 * host.bias_bwd_per_expert))


def test_host_bound_moe_layer_shows_in_the_breakdown_and_dense_layers_never_do():
    from xlayer.prediction.case import case_from_dict
    from xlayer.prediction.training import predict_training

    def case(moe, acc="GB200-NVL72", micro=1):
        m = {"name": "q", "layers": 8, "hidden": 2048, "heads": 32, "kv_heads": 4, "head_dim": 128,
             "ffn_hidden": 6144, "vocab": 32000, "activation": "swiglu", "seq_len": 1024}
        if moe:
            m["moe"] = {"experts": 128, "top_k": 8, "ffn_hidden": 768}
        return case_from_dict({"id": "h", "kind": "training", "software": {"framework": "megatron-bridge"},
                               "model": m, "system": {"accelerator": acc, "count": 8},
                               "parallel": {"tp": 1, "pp": 1, "dp": 8, "ep": 8 if moe else 1, "recompute": "none",
                                            "zero": 1},
                               "batch": {"global": 64, "micro": micro}, "precision": "mxfp8"})
    r = predict_training(case(True), energy=False)
    host = r.time_breakdown_s.get("host.moe_issue_exposed", 0.0)
    assert host > 0.0
    assert sum(r.time_breakdown_s.values()) == pytest.approx(r.iteration_time_s, rel=1e-9)
    # the x86 host of a B200 issues faster than the Grace of a GB200
    r86 = predict_training(case(True, "B200-SXM-180GB"), energy=False)
    assert r86.time_breakdown_s.get("host.moe_issue_exposed", 0.0) < host
    # one micro-batch of 8 sequences instead of 8 of one: the host issues each layer once, not
    # eight times, and the GPU has more to do meanwhile
    r8 = predict_training(case(True, micro=8), energy=False)
    assert r8.time_breakdown_s.get("host.moe_issue_exposed", 0.0) < host
    dense = predict_training(case(False), energy=False)
    assert "host.moe_issue_exposed" not in dense.time_breakdown_s
