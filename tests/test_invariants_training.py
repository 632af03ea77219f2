"""Training-side invariants (issue "Silent wrong answers", items 5-8 and 12): each expected value
is derived here from the physics or the framework's schedule, not copied from the tool."""
from __future__ import annotations

import numpy as np
import pytest

from xlayer.cost.collectives import collective_time_s, ranks_in_domain
from xlayer.cost.memory import layer_activation_bytes
from xlayer.errors import InputError
from xlayer.hardware.catalog import get_accelerator
from xlayer.hardware.spec import System
from xlayer.mapping.layout import Layout
from xlayer.prediction.training import predict_training
from xlayer.prediction.case import case_from_dict
from xlayer.engine.training import evaluate_training, recipe_for
from xlayer.workload.model import ModelSpec

GIB = 2.0 ** 30
GPT3 = dict(layers=96, hidden=12288, heads=96, vocab=51200, seq_len=2048)


def _case(model, count, parallel, batch, acc="A100-SXM-80GB", software=None, precision="bf16"):
    d = {"id": "inv", "kind": "training", "model": model, "system": {"accelerator": acc, "count": count},
         "parallel": parallel, "batch": batch, "precision": precision}
    if software:
        d["software"] = {"framework": software}
    return case_from_dict(d)


def _eval(model: ModelSpec, system: System, lay: Layout, gb: int, precision="bf16"):
    return evaluate_training(model, system, precision, gb, lay.tp, lay.pp, lay.dp, lay.cp, lay.vp, lay.micro,
                             lay.sp, lay.recompute, lay.zero, lay.dp_overlap, recipe_for(model, precision),
                             detail=True)


def test_zero2_reduce_scatters_every_micro_batch():
    """Item 5: partitioned gradients have no full buffer to accumulate into: ZeRO-2 reduce-
    scatters each of the m micro-batches' gradients, ZeRO-1 once. 175B tp4 pp8 dp2, m = 32."""
    c = _case(GPT3, 64, {"tp": 4, "pp": 8, "dp": 2, "vp": 1, "sp": True, "recompute": "full", "zero": 1},
              {"global": 64, "micro": 1})
    z1 = predict_training(c, energy=False)
    z2 = predict_training(c, z1.layout.model_copy(update={"zero": 2}), energy=False)
    m = 64 // 2
    params = z1.memory_breakdown_bytes["model_state_bytes.weights"] / 2 + \
        z1.memory_breakdown_bytes["model_state_bytes.embedding_output"] / 18
    sysm = c.system_spec()
    one_rs = collective_time_s("reduce_scatter", params * 4.0, 2, ranks_in_domain(2, 4, 8), sysm.scale_up,
                               sysm.scale_out)
    extra = z2.time_breakdown_s["comm.dp_exposed"] - z1.time_breakdown_s["comm.dp_exposed"]
    assert extra == pytest.approx((m - 1) * one_rs, rel=0.05)
    assert extra > 1.0  # about 1.6 s of data-parallel traffic, not 0.08 s


def test_stacks_refuse_zero_stages_they_do_not_have():
    p = {"tp": 4, "pp": 8, "dp": 2, "vp": 1, "sp": True, "recompute": "full", "zero": 2}
    with pytest.raises(InputError, match="parallel.zero.*no ZeRO-2"):
        predict_training(_case(GPT3, 64, p, {"global": 64, "micro": 1}, software="megatron-lm"))
    with pytest.raises(InputError, match="parallel.zero.*pipeline"):
        predict_training(_case(GPT3, 64, p, {"global": 64, "micro": 1}, software="deepspeed"))
    # an unstated stage for a Megatron stack is never 2
    p2 = dict(p, zero=None)
    pred = predict_training(_case(GPT3, 64, p2, {"global": 64, "micro": 1}, software="megatron-lm"))
    assert pred.layout.zero in (0, 1, 3)


def test_zero3_holds_the_gathered_layer_in_flight():
    """Item 6: FSDP gathers the 16-bit weights of the layer in flight and prefetches the next,
    and holds its unsharded gradient: GPT-3 175B on tp1 x dp1024 needs at least
    (2 + 2) B + 4 B per parameter of one layer (12·h² ≈ 1.81e9) on top of the shards."""
    sysm = System(accelerator=get_accelerator("A100-SXM-80GB"), count=1024, scale_up_size=8)
    model = ModelSpec(**GPT3)
    lay = Layout(tp=1, pp=1, dp=1024, recompute="full", zero=3, micro=1)
    r = _eval(model, sysm, lay, 1024)
    layer = 12 * 12288 ** 2
    shards = 18 * model.total_params() / 1024
    assert r.memory_bytes >= shards + 8 * layer
    assert r.memory_bytes / GIB >= 15
    assert r.fsdp_edges_s > 0  # the embedding/output gather is timed


def test_interleaved_last_rank_holds_v_minus_one_p_plus_one_chunks():
    """Item 7: with the interleaved schedule the last rank warms up (v−1)·p chunks and holds one
    more; with a 256k vocabulary its logits make it the peak."""
    model = ModelSpec(layers=32, hidden=4096, heads=32, kv_heads=8, ffn_hidden=14336, activation="swiglu",
                      vocab=256000, seq_len=8192)
    sysm = System(accelerator=get_accelerator("H100-SXM-80GB"), count=32, scale_up_size=8)
    lay = Layout(tp=8, pp=4, dp=1, vp=4, sp=True, recompute="none", zero=0, micro=1)
    r = _eval(model, sysm, lay, 64)
    mem = r.detail.memory
    act_layer = layer_activation_bytes(model, 1, 8, 1, True, "none", "flash", 0.0)
    logits = 4.0 * 8192 * 256000 / 8
    chunks_last = (4 - 1) * 4 + 1
    expected_last = chunks_last * (32 / 16) * act_layer + logits
    expected_first = (4 * 4 + 4 - 1) * (32 / 16) * act_layer
    assert mem.activations == pytest.approx(max(expected_last, expected_first))
    # more virtual stages never lower the last rank's share: vp 2 -> 4
    r2 = _eval(model, sysm, lay.model_copy(update={"vp": 2}), 64)
    last2 = ((2 - 1) * 4 + 1) * (32 / 8) * act_layer + logits
    assert last2 < expected_last and r2.memory_bytes > 0


def test_uneven_split_uses_the_busiest_ranks_layers():
    """Item 8: 9 layers on 8 stages: rank 0 holds 2 layers (not 9/8) for each of its min(m, p)
    micro-batches in flight."""
    model = ModelSpec(layers=9, hidden=4096, heads=32, vocab=32000, seq_len=2048)
    sysm = System(accelerator=get_accelerator("A100-SXM-80GB"), count=8, scale_up_size=8)
    lay = Layout(tp=1, pp=8, dp=1, recompute="none", zero=0, micro=1)
    r = _eval(model, sysm, lay, 16)
    act_layer = layer_activation_bytes(model, 1, 1, 1, False, "none", "flash", 0.0)
    assert r.detail.memory.activations_first_rank == pytest.approx(8 * 2 * act_layer)


def test_fp32_training_memory_is_not_bf16():
    """Item 12: fp32 training keeps 4-byte weights, gradients and activations and two fp32 Adam
    moments (16 B/param of states), mixed precision 2 + 4 + 12 = 18 B; activations double."""
    model = dict(layers=24, hidden=2048, heads=16, vocab=32000, seq_len=2048)
    p = {"tp": 1, "pp": 1, "dp": 8, "recompute": "none", "zero": 0}
    b = predict_training(_case(model, 8, p, {"global": 64, "micro": 1}), energy=False)
    f = predict_training(_case(model, 8, p, {"global": 64, "micro": 1}, precision="fp32"), energy=False)
    mb, mf = b.memory_breakdown_bytes, f.memory_breakdown_bytes
    states_b = mb["model_state_bytes.weights"] + mb["model_state_bytes.gradients"] + mb["model_state_bytes.optimizer"]
    states_f = mf["model_state_bytes.weights"] + mf["model_state_bytes.gradients"] + mf["model_state_bytes.optimizer"]
    assert states_f / states_b == pytest.approx(16 / 18)
    assert mf["layer_activation_bytes.activations"] / mb["layer_activation_bytes.activations"] == pytest.approx(2.0,
                                                                                                              rel=0.1)


def test_groups_straddling_two_racks_are_not_all_nvlink():
    """Item 12: tp 16 on 144 GB200 (2 racks of 72): ranks 64-79 lie 8 in each rack, so the worst
    tp group has 8 members per domain, not 16."""
    assert ranks_in_domain(16, 1, 72) == 8
    assert ranks_in_domain(8, 1, 72) == 8 and ranks_in_domain(8, 1, 8) == 8
    assert ranks_in_domain(16, 8, 8) == 1
    sysm = System(accelerator=get_accelerator("GB200-NVL72"), count=144, scale_up_size=72)
    assert sysm.job_domain_size == 72
    assert System(accelerator=get_accelerator("GB200-NVL72"), count=256, scale_up_size=72).job_domain_size == 64


def test_null_fields_resolve_to_the_fastest_fitting_choice():
    """Open ZeRO stage / recompute / micro-batch (no software stack): the chosen layout is the
    fastest of every fitting candidate, not the first that fits (ZeRO 0 fits here, but ZeRO 1
    shards the optimizer step and is faster)."""
    model = dict(layers=24, hidden=2048, heads=16, vocab=51200, seq_len=2048)
    c = _case(model, 8, {"tp": 1, "pp": 1, "dp": 8, "zero": None, "recompute": None}, {"global": 256, "micro": None})
    chosen = predict_training(c, energy=False)
    cap = chosen.capacity_bytes
    times = []
    for z in (0, 1, 2, 3):
        for rc in ("none", "full"):
            for micro in (1, 2, 4, 8, 16, 32):
                lay = chosen.layout.model_copy(update={"zero": z, "recompute": rc, "micro": micro})
                p = predict_training(c, lay, energy=False)
                if p.memory_bytes <= cap:
                    times.append((p.iteration_time_s, lay))
    first_fit_zero0 = predict_training(c, chosen.layout.model_copy(update={"zero": 0}), energy=False)
    assert chosen.iteration_time_s <= min(t for t, _ in times) * (1 + 1e-9)
    assert chosen.layout.zero != 0 and chosen.iteration_time_s < first_fit_zero0.iteration_time_s
    assert any("fastest" in a for a in chosen.assumptions)


def test_param_gather_overlaps_the_next_forward_under_megatron_bridge():
    """Megatron-Bridge (overlap_param_gather): the ZeRO-1 weight all-gather hides under the next
    forward, the reduce under the last backward, so dp exposure falls against one window for
    both; DeepSpeed (all-gather after the step) keeps the single window."""
    from xlayer.engine.training import recipe_for as rf
    from xlayer.mapping.profiles import get_profile
    assert get_profile("megatron-bridge").param_gather_in_forward
    assert not get_profile("deepspeed-2021").param_gather_in_forward
    m = ModelSpec(name="g", layers=96, hidden=12288, heads=96, ffn_hidden=49152, vocab=51200, seq_len=2048,
                  activation="gelu")
    sysm = System(accelerator=get_accelerator("H100-SXM-80GB"), count=4096, scale_up_size=8)
    args = (m, sysm, "bf16", 1024, 4, 8, 128, 1, 1, 1, True, "none", 1, True)
    mb = evaluate_training(*args, rf(m, "bf16", "megatron-bridge"))
    plain = evaluate_training(*args, rf(m, "bf16", "megatron-bridge").__class__(
        **{**rf(m, "bf16", "megatron-bridge").__dict__, "param_gather_in_forward": False}))
    assert mb.dp_exposed_s < plain.dp_exposed_s


def test_megatron_buckets_pay_their_own_latency_and_small_models_have_one():
    """Overlapped data-parallel collectives run per bucket (Megatron-Core bucket_size =
    max(4e7, 1e6·dp) parameters): each pays its own per-step latency, so bucketing never
    shortens the exposed time, and a model whose rank holds fewer parameters than one bucket
    has exactly one collective, as without buckets."""
    from xlayer.engine.training import recipe_for as rf
    sysm = System(accelerator=get_accelerator("H100-SXM-80GB"), count=4096, scale_up_size=8)

    def both(m, tp, pp, dp):
        r = rf(m, "bf16", "megatron-bridge")
        assert r.dp_bucket == (4.0e7, 1.0e6)
        args = (m, sysm, "bf16", 4 * dp, tp, pp, dp, 1, 1, 1, tp > 1, "none", 1, True)
        one = r.__class__(**{**r.__dict__, "dp_bucket": None})
        return evaluate_training(*args, r).dp_exposed_s, evaluate_training(*args, one).dp_exposed_s

    big = ModelSpec(name="g", layers=96, hidden=12288, heads=96, ffn_hidden=49152, vocab=51200, seq_len=2048,
                    activation="gelu")
    b, o = both(big, 8, 4, 128)
    assert b > o
    small = ModelSpec(name="s", layers=4, hidden=512, heads=8, ffn_hidden=2048, vocab=8192, seq_len=512,
                      activation="gelu")
    b, o = both(small, 1, 1, 4096)
    assert b == pytest.approx(o)
