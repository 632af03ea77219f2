"""Invariants: the physics stated as properties, each with its expected value or relation
derived here by hand from the documented formulas (issue 17), never copied from the tool.

Inference and energy side (this file's first half): KV capacity at equal GPUs, per-GPU
throughput with idle replicas, decode step counts and contexts, continuity of the decode
step in batch, energy bounds, fp8 energy of attention, synthesised parts' power budget.
Training-side invariants (ZeRO, pipeline memory) are added below by their owner.
"""
from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xlayer.prediction.case import case_from_dict

from conftest import LLAMA2_7B, LLAMA2_70B  # noqa: E402
from conftest import inference_case as _inference_case  # noqa: E402

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def inference_case(**kw):
    kw.setdefault("output", 16)
    return _inference_case(**kw)


def predict(**kw):
    from xlayer.prediction.inference import predict_inference
    return predict_inference(inference_case(**kw))


# ---- 1. KV capacity does not grow with pp at equal GPUs --------------------------------

def test_inference_kv_capacity_independent_of_pp_at_equal_gpus():
    """Llama 2 70B, fp8 weights, 16-bit KV, 8 H100, input 2048 / output 128. Every stage
    holds the KV of all B sequences for its L/p layers, so per GPU one sequence costs
    (I+O)·2·(L/p)·(g·d/t)·2 B = 2176·2·80·1024·2/8 B whatever the split of tp·p = 8."""
    from xlayer.hardware.catalog import get_accelerator
    from xlayer.prediction.inference import serving_estimate
    h, L, V, f, kv = 8192, 80, 32000, 28672, 8 * 128
    acc = get_accelerator("H100-SXM-80GB")
    budget = 0.9 * acc.hbm.capacity_bytes  # vLLM gpu_memory_utilization
    kv_seq = 2176 * 2 * L * kv * 2 / 8
    sizes = {}
    for tp, pp in ((8, 1), (4, 2), (2, 4), (1, 8)):
        mats = h * (h + 2 * kv) + h * h + 3 * h * f  # qkv, proj, gated FFN, 1 B each (fp8)
        weights = L / pp * (mats / tp + 2 * h * 2)  # + two 16-bit norms per layer
        emb = V * h * 2 / tp
        weights += 2 * emb + 2 * h if pp == 1 else emb + 2 * h  # embedding and output layer
        upper = math.floor((budget - weights) / kv_seq)  # KV alone; the workspace takes a little more
        est = serving_estimate(inference_case(tp=tp, pp=pp, count=8, precision="fp8", prompt=2048, output=128),
                               2048, 128)
        assert 0.97 * upper <= est.max_batch <= upper, (tp, pp, est.max_batch, upper)
        assert est.memory_breakdown_bytes["kv_cache_bytes"] == pytest.approx(est.max_batch * kv_seq)
        sizes[(tp, pp)] = est.max_batch
    assert max(sizes.values()) <= 1.01 * min(sizes.values()), sizes


# ---- 2. throughput per GPU never above one replica's rate ------------------------------

@FAST
@given(batch=st.integers(1, 12), dp=st.sampled_from([1, 2, 4, 8]))
def test_inference_throughput_per_gpu_never_above_replica_rate(batch, dp):
    """request.batch over dp single-GPU replicas: the busiest replica runs ⌈batch/dp⌉
    sequences in time T; all dp GPUs count, so per GPU = batch·O/(T·dp) ≤ ⌈batch/dp⌉·O/T."""
    O = 8
    p = predict(model=LLAMA2_7B, acc="H100-SXM-80GB", tp=1, count=dp, batch=batch, prompt=64, output=O)
    T = p.generation_time_s
    per_replica = math.ceil(batch / dp) * O / T
    assert p.metrics["output_tokens_per_s_per_gpu"] == pytest.approx(batch * O / (T * dp))
    assert p.metrics["output_tokens_per_s_per_gpu"] <= per_replica * (1 + 1e-12)


def test_inference_idle_replicas_count_as_gpus():
    """Batch 1 on 8 single-GPU replicas: the same generation as on 1 GPU, 1/8 per GPU."""
    one = predict(model=LLAMA2_7B, tp=1, count=1, batch=1, prompt=64, output=32)
    eight = predict(model=LLAMA2_7B, tp=1, count=8, batch=1, prompt=64, output=32)
    assert eight.generation_time_s == pytest.approx(one.generation_time_s)
    assert eight.metrics["output_tokens_per_s_per_gpu"] == pytest.approx(
        one.metrics["output_tokens_per_s_per_gpu"] / 8)


# ---- 3. decode steps: output_len without a prefill, output_len − 1 after one -----------

@pytest.mark.parametrize("prompt,context,output,steps", [(0, 100, 1, 1), (0, 100, 10, 10), (0, 0, 5, 5),
                                                         (128, 0, 1, 0), (128, 0, 10, 9), (128, 50, 64, 63)])
def test_inference_decode_steps(prompt, context, output, steps):
    p = predict(model=LLAMA2_7B, tp=1, prompt=prompt, context=context, output=output)
    pre = p.prefill.time_s if prompt else 0.0
    assert p.generation_time_s == pytest.approx(pre + steps * p.decode.time_s)
    assert p.metrics["output_tokens_per_s_per_gpu"] == pytest.approx(output / p.generation_time_s)


# ---- 4. context = cached + prompt + generated so far -----------------------------------

@FAST
@given(context=st.integers(0, 2000), prompt=st.integers(0, 2000), output=st.integers(1, 1000))
def test_inference_decode_context_is_cached_plus_prompt_plus_generated(context, prompt, output):
    """Step k (k = 0 … n−1) finds C + P + k tokens in the KV cache (n = O − 1 after a prefill,
    O without); the step is timed at the mean, and its attention reads K and V of those
    tokens plus the new one: 2·b·(g·d/t)·(ctx+1)·2 B + Q and O (2·b·(a/t)·d·2 B)."""
    from xlayer.workload.model import ModelSpec
    from xlayer.workload.transformer import AttentionSegment, attention_ops
    from xlayer.prediction.inference import resolve_inference
    s = resolve_inference(inference_case(model=LLAMA2_7B, tp=1, prompt=prompt, context=context, output=output))
    n = output - 1 if prompt > 0 else output
    expect = context + prompt + (sum(range(n)) / n if n else 0.0)
    assert s.decode_context == pytest.approx(expect)
    (op,) = attention_ops(ModelSpec(**LLAMA2_7B), AttentionSegment(3, 1, s.decode_context), 1, 2.0, "flash")
    assert op.bytes == pytest.approx(2 * 3 * 4096 * (expect + 1) * 2 + 2 * 3 * 32 * 128 * 2)


def test_inference_decode_reads_the_prompt_after_a_cached_context():
    """1 cached + 4000 prompt tokens decode at a longer context than 0 + 4000, never shorter."""
    a = predict(tp=4, batch=8, prompt=4000, context=0, output=64)
    b = predict(tp=4, batch=8, prompt=4000, context=1, output=64)
    assert b.setup.decode_context == a.setup.decode_context + 1 == 4000 + 62 / 2 + 1
    assert b.decode.time_s >= a.decode.time_s


# ---- 9. decode step continuous in batch; crossover at the machine balance ---------------

@pytest.mark.parametrize("precision", ["bf16", "fp8"])
def test_inference_decode_step_continuous_in_batch(precision):
    """Llama 2 70B tp4 on H100 at context 1024, batch 100 … 160: a bf16 decode GEMM does b FLOP
    per weight byte (fp8: 2b), below the balance (≈ 232 / ≈ 419 FLOP/B) here, so the step is
    weight-streaming: it may not fall when one sequence is added, and the cost per token may
    not rise (no cliff at m = 128 where the GEMM kernel family changes)."""
    t = {b: predict(tp=4, batch=b, prompt=0, context=1024, output=1, precision=precision).decode.time_s
         for b in range(100, 161)}
    for b in range(101, 161):
        assert t[b] >= t[b - 1] * (1 - 1e-12), b
        assert t[b] / b <= t[b - 1] / (b - 1) * (1 + 1e-12), b
    assert t[128] / t[127] < 1 + 1 / 127  # at most the extra sequence's share


def test_inference_crossover_batch_is_the_machine_balance():
    """Crossover = smallest b with 2·b/bytes_per_weight ≥ R_gemm / BW_hbm, R_gemm = peak ·
    MAMF efficiency · sustained/best, BW = HBM bandwidth · streaming efficiency."""
    from xlayer.cost.compute import calibration
    from xlayer.hardware.catalog import get_accelerator
    acc = get_accelerator("H100-SXM-80GB")
    hbm = acc.hbm
    for precision, wb in (("bf16", 2.0), ("int4", 0.5)):  # int4: W4A16, 16-bit arithmetic
        rate = acc.peak("bf16") * acc.matmul_efficiency * calibration().sustained_over_best_matmul
        balance = rate / (hbm.bandwidth_bytes_per_s * hbm.efficiency)
        expect = math.ceil(balance * wb / 2 - 1e-9)
        cross = predict(tp=4, batch=1, prompt=0, context=1024, output=4, precision=precision).crossover["decode"]
        for name in ("qkv", "proj", "fc1", "fc2"):
            assert cross[name] == expect, (precision, name, cross[name], expect)
        assert cross["attn_decode"] is None  # 2·(a/g)/kv_bytes = 8 FLOP per KV byte


@FAST
@given(n=st.integers(64, 60000), k=st.integers(64, 60000), batch=st.sampled_from([1, 2, 8, 64]),
       sms=st.sampled_from([108, 132, 148]), m0=st.integers(1, 2900))
def test_gemm_time_never_falls_when_m_grows(n, k, batch, sms, m0):
    """GEMM time ∝ m / wave_utilization: one more row never makes it faster."""
    from xlayer.cost.compute import wave_utilization
    t = [m / wave_utilization(m, n, batch, sms, k) for m in range(m0, m0 + 40)]
    assert all(b >= a * (1 - 1e-12) for a, b in zip(t, t[1:]))


# ---- energy: idle ≤ E/(N·t) ≤ TDP; fp8 attention at 16 bits ---------------------------

@FAST
@given(batch=st.integers(1, 256), context=st.integers(1, 8000), precision=st.sampled_from(["bf16", "fp8"]),
       tp=st.sampled_from([2, 4, 8]))
def test_energy_decode_between_idle_and_tdp(batch, context, precision, tp):
    """N·t·P_static ≤ E_device ≤ N·t·TDP (P_static: energy.yaml static_w, H100 100 W)."""
    from xlayer.cost.energy import energy_from_counts, gpu_energy_spec
    from xlayer.prediction.decode_energy import decode_step
    from xlayer.hardware.catalog import get_accelerator
    from xlayer.hardware.spec import System
    from xlayer.workload.model import ModelSpec
    acc = get_accelerator("H100-SXM-80GB")
    stp = decode_step(ModelSpec(**LLAMA2_70B), System(accelerator=acc, count=tp, scale_up_size=8), tp, 1, batch,
                      context, precision)
    e = energy_from_counts(stp.counts, gpu_energy_spec(acc))
    N, t = tp, stp.time_s
    assert N * t * 100.0 * (1 - 1e-12) <= e.device_j <= N * t * acc.tdp_w


def _fp8_training_case(seq=32768):
    d = {"id": "e", "kind": "training", "model": dict(name="Llama 3 8B", layers=32, hidden=4096, heads=32,
                                                       kv_heads=8, ffn_hidden=14336, vocab=128256, seq_len=seq,
                                                       activation="swiglu"),
         "system": {"accelerator": "H100-SXM-80GB", "count": 8, "scale_up_size": 8},
         "parallel": {"tp": 8, "pp": 1, "sp": True, "recompute": "full"}, "precision": "fp8",
         "batch": {"global": 8, "micro": 1}}
    return case_from_dict(d)


def test_energy_training_between_idle_and_tdp():
    from xlayer.prediction.energy import case_training_energy
    e = case_training_energy(_fp8_training_case(8192))
    assert 8 * e.time_s * 100.0 <= e.device_j <= 8 * e.time_s * 700.0


def test_energy_fp8_attention_priced_at_16_bit():
    """Decode, Llama 2 70B fp8 on tp 4, b = 64, context 32k: the layer GEMMs do
    2·b·(h·(q+2kv) + q·h + 3·h·f)/t FLOPs per rank (fp8); attention 4·b·(a/t)·d·(c+1) and the
    16-bit output layer 2·b·h·V/t are 16-bit. Energy = F_fp8·e_fp8 + F_16·e_bf16 with
    e_bf16 = (TDP − static)/(peak_bf16 · MAMF), e_fp8 = e_bf16/2 (energy.yaml)."""
    from xlayer.cost.energy import energy_from_counts, gpu_energy_spec
    from xlayer.prediction.decode_energy import decode_step
    from xlayer.hardware.catalog import get_accelerator
    from xlayer.hardware.spec import System
    from xlayer.workload.model import ModelSpec
    acc = get_accelerator("H100-SXM-80GB")
    b, c, t, L, h, q, kv, f, V = 64, 32768, 4, 80, 8192, 8192, 1024, 28672, 32000
    stp = decode_step(ModelSpec(**LLAMA2_70B), System(accelerator=acc, count=4, scale_up_size=8), t, 1, b, c, "fp8")
    gemm_fp8 = 2 * b * (h * (q + 2 * kv) + q * h + 3 * h * f) / t * L * t
    attn = 4 * b * (64 / t) * 128 * (c + 1) * L * t
    logits = 2 * b * h * V / t * t
    assert stp.counts.flops["fp8"] == pytest.approx(gemm_fp8)
    assert stp.counts.flops["bf16"] >= attn + logits
    e_bf16 = (700.0 - 100.0) / (acc.peak("bf16") * acc.matmul_efficiency)
    e = energy_from_counts(stp.counts, gpu_energy_spec(acc))
    assert e.device_by_term_j["compute"] == pytest.approx(gemm_fp8 * e_bf16 / 2 + stp.counts.flops["bf16"] * e_bf16)
    # training at 32k: the causal flash forward alone, 4·B·s²·h/2 per layer, is 16-bit
    from xlayer.prediction.energy import case_training_energy
    tr = case_training_energy(_fp8_training_case(32768))
    assert tr.counts.flops["bf16"] >= 4 * 8 * 32768 ** 2 * 4096 / 2 * 32


# ---- 11. synthesised parts pay their power budget once ---------------------------------

@pytest.mark.parametrize("part", ["A100-SXM-80GB", "H100-SXM-80GB"])
def test_synthesised_part_consistent_with_its_budget_once(part):
    """``synth`` sets the clock so that peak_bf16 · E_flop = P − P_hbm − P_link (power-bound)
    or runs at f_max below it. The steady GEMM rate is then peak · MAMF efficiency · the
    burst ratio (0.93), not also × the power-capped GPU's sustained/best 0.86: at that rate the
    tensor cores draw MAMF·0.93 of the compute budget, and never more than the budget."""
    from xlayer.cost.compute import calibration, gemm_rate_flops_per_s
    from xlayer.technology.synth import REFERENCE_BUDGETS, synthesize
    r = synthesize(REFERENCE_BUDGETS[part])
    acc, der = r.accelerator, r.derivation
    budget = REFERENCE_BUDGETS[part]
    p_compute = budget.power_w - der["power_hbm_w"] - der["power_link_w"]
    e_flop = der["energy_per_flop_pj"] * 1e-12
    assert acc.peak("bf16") * e_flop <= p_compute * (1 + 1e-9)
    if der["binding"] == "power":
        assert acc.peak("bf16") * e_flop == pytest.approx(p_compute)
    rate = gemm_rate_flops_per_s(acc, "bf16")
    assert rate == pytest.approx(acc.peak("bf16") * acc.matmul_efficiency * calibration().isolated_over_best_matmul)
    assert rate * e_flop + der["power_hbm_w"] + der["power_link_w"] <= budget.power_w
