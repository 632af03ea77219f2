"""One transformer for training and inference (xlayer.workload.transformer): the same
operators with different token counts and KV lengths, one op_time (decode attention
included), the number formats of each side, and the NVFP4 activation casts of inference."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import LLAMA2_7B
from xlayer.cost.compute import calibration, gemm_rate_flops_per_s, op_time
from xlayer.hardware.catalog import get_accelerator
from xlayer.workload.inference_ops import inference_layer
from xlayer.workload.model import ModelSpec
from xlayer.workload.precision import inference_formats, training_formats
from xlayer.workload.training_ops import layer_work
from xlayer.workload.transformer import AttentionSegment, expected_experts_touched, moe_ffn_ops

QWEN30 = ModelSpec(name="Qwen3 30B-A3B", layers=48, hidden=2048, heads=32, kv_heads=4, head_dim=128,
                   ffn_hidden=6144, vocab=151936, activation="swiglu", seq_len=4096,
                   moe={"experts": 128, "top_k": 8, "ffn_hidden": 768})


@settings(max_examples=25, deadline=None)
@given(n=st.sampled_from([128, 512, 2048]), b=st.integers(1, 4), tp=st.sampled_from([1, 2, 4]))
def test_training_forward_and_inference_prefill_share_their_layer_operators(n, b, tp):
    """A bf16 prefill of b×n tokens from an empty cache does the work of a training forward
    over b sequences of n (no SP, no CP): the same GEMMs (name, shape, FLOPs, bytes) and
    the same flash-attention FLOPs and bytes; only the kernel boundaries of the stacks differ
    (KV append, fused add+norm)."""
    m = ModelSpec(**{**LLAMA2_7B, "seq_len": n})
    train = layer_work(m, b, tp, False, 1, "bf16", "flash", 0.0)
    infer = inference_layer(m, [AttentionSegment(b, n, 0)], tp, "bf16", "bf16", "flash")
    g_train = {o.name: o for o in train.fwd if o.kind != "elementwise"}
    g_infer = {o.name: o for o in infer.ops if o.kind != "elementwise"}
    assert set(g_train) == set(g_infer) == {"qkv", "flash_attn", "proj", "fc1", "fc2"}
    for name, op in g_train.items():
        other = g_infer[name]
        assert (op.flops, op.bytes, op.m, op.n, op.k) == pytest.approx((other.flops, other.bytes, other.m, other.n,
                                                                        other.k))
    # flash attention: 4·b·(a/t)·d·n·n/2 FLOPs (causal half)
    assert g_infer["flash_attn"].flops == pytest.approx(4 * b * 32 / tp * 128 * n * n / 2)
    assert {o.name for o in infer.ops} - {o.name for o in train.fwd} == {"rope_kv_append", "add_norm2", "add2"}


def test_context_parallel_queries_see_half_the_sequence():
    """With cp ranks a rank's s/cp queries attend over all s keys and see s/2 on average
    (load-balanced causal split): FLOPs 4·b·(a/t)·d·(s/cp)·s/2, i.e. 1/cp of cp = 1."""
    m = ModelSpec(**{**LLAMA2_7B, "seq_len": 8192})
    one = next(o for o in layer_work(m, 1, 1, False, 1, "bf16", "flash", 0.0).fwd if o.kind == "attention")
    four = next(o for o in layer_work(m, 1, 1, False, 4, "bf16", "flash", 0.0).fwd if o.kind == "attention")
    assert four.flops == pytest.approx(one.flops / 4)
    assert (four.seq_q, four.seq_kv) == (2048, 8192)


def test_decode_attention_is_priced_in_the_one_op_time():
    """A decode kernel (≤ 16 new tokens over a cache) runs at the sustained 16-bit GEMM rate
    without the flash efficiency fit and streams the cache: t = max(F/R_bf16, B/BW) + t_k."""
    acc = get_accelerator("H100-SXM-80GB")
    m = ModelSpec(**LLAMA2_7B)
    lay = inference_layer(m, [AttentionSegment(8, 1, 4095)], 1, "bf16", "fp8", "flash")
    (op,) = [o for o in lay.ops if o.kind == "attention"]
    assert op.name == "attn_decode" and not op.causal
    t = op_time(op, acc)
    expect = max(op.flops / gemm_rate_flops_per_s(acc, "bf16"), op.bytes / acc.hbm.achievable_bytes_per_s)
    assert t.time_s == pytest.approx(expect + acc.kernel_overhead_s)
    assert op.bytes == pytest.approx(2 * 8 * 4096 * 4096 * 1.0 + 2 * 8 * 4096 * 2)


def test_number_formats_of_each_side():
    """Training casts GEMM inputs to the recipe's format (weights alike); inference keeps
    weight-only integer formats' GEMMs 16-bit and reads the weights at their own width."""
    t = training_formats("mxfp8")
    assert (t.gemm, t.input_bytes, t.weight_bytes, t.casts_inputs) == ("mxfp8", 1 + 1 / 32, 1 + 1 / 32, True)
    assert training_formats("fp32").input_bytes == 4.0 and not training_formats("bf16").casts_inputs
    i4 = inference_formats("int4", "fp8")
    assert (i4.gemm, i4.input_bytes, i4.weight_bytes, i4.kv_bytes) == ("bf16", 2.0, 0.5, 1.0)
    f4 = inference_formats("nvfp4", "fp8")
    assert (f4.gemm, f4.input_bytes, f4.weight_bytes) == ("nvfp4", 0.5 + 1 / 16, 0.5 + 1 / 16)


def test_nvfp4_inference_quantizes_every_linear_input_once():
    """W4A4 serving: one fp4_quantize kernel before qkv, proj, fc1 and fc2 (N elements read
    at 2 B, written at 0.5625 B); none for bf16 or fp8."""
    m = ModelSpec(**LLAMA2_7B)
    lay = inference_layer(m, [AttentionSegment(1, 256, 0)], 1, "nvfp4", "fp8", "flash")
    casts = {o.name: o for o in lay.ops if o.name.endswith(".quantize_in")}
    assert set(casts) == {"qkv.quantize_in", "proj.quantize_in", "fc1.quantize_in", "fc2.quantize_in"}
    assert casts["fc2.quantize_in"].bytes == pytest.approx(256 * 11008 * (2 + 0.5625))
    names = [o.name for o in lay.ops]
    assert all(names.index(c) == names.index(c.removesuffix(".quantize_in")) - 1 for c in casts)
    for prec in ("bf16", "fp8"):
        lay = inference_layer(m, [AttentionSegment(1, 256, 0)], 1, prec, "fp8", "flash")
        assert not any(o.name.endswith(".quantize_in") for o in lay.ops)
    moe = inference_layer(QWEN30, [AttentionSegment(1, 256, 0)], 1, "nvfp4", "fp8", "flash")
    moe_casts = [o.name for o in moe.ops if o.name.endswith(".quantize_in")]
    assert moe_casts == ["qkv.quantize_in", "proj.quantize_in", "moe_input.quantize_in"]


def test_fp4_gemms_run_at_their_own_measured_efficiency():
    """A native 4-bit path (Blackwell) runs at peak_fp4 · η_MAMF · sustained · 0.750 (best
    measured B200 FP4 GEMM over the bf16 MAMF efficiency, calibration.yaml); mxfp8 keeps the
    fp8 ratio."""
    acc = get_accelerator("B200-SXM-180GB")
    cal = calibration()
    base = acc.matmul_efficiency * cal.sustained_over_best_matmul
    assert gemm_rate_flops_per_s(acc, "nvfp4") == pytest.approx(acc.peak("nvfp4") * base * 0.750)
    assert gemm_rate_flops_per_s(acc, "mxfp8") == pytest.approx(acc.peak("mxfp8") * base * 0.903)


@settings(max_examples=40, deadline=None)
@given(tokens=st.integers(1, 100_000), ep=st.sampled_from([1, 2, 4, 8]))
def test_moe_routing_touches_at_most_every_expert_and_reads_each_once(tokens, ep):
    """Balanced routing touches min(E/ep, Tg·k/ep) experts, independent routing the
    occupancy expectation; both never more than E/ep, and the routed rows are Tg·k/ep either
    way; a large batch under independent routing reads (almost) every expert."""
    fm = inference_formats("bf16", "bf16")
    m = QWEN30
    for routing in ("balanced", "independent"):
        ops, comms = moe_ffn_ops(m, float(tokens), ep=ep, etp=1, fm=fm, routing=routing)
        fc1 = next(o for o in ops if o.name == "expert_fc1")
        assert fc1.batch <= 128 / ep + 1e-9
        assert fc1.m * fc1.batch == pytest.approx(tokens * ep * 8 / ep)
        assert [c.name for c in comms] == ["ep_dispatch", "ep_combine"]
        assert comms[0].bytes == pytest.approx(tokens * 8 * 2048 * 2)
    big, _ = moe_ffn_ops(m, 1e6, ep=1, etp=1, fm=fm, routing="independent")
    assert next(o for o in big if o.name == "expert_fc1").batch == pytest.approx(128)
    assert math.isclose(float(expected_experts_touched(128, 8, 1)), 8.0)
    assert np.all(np.diff(expected_experts_touched(128, 8, np.arange(1, 200))) > 0)


def test_a_sliding_window_layer_costs_less_attention_than_a_full_one():
    """A window of w keys: w − w²/(2s) keys per query instead of s/2, its query tiles still
    the sequence's (the flash efficiency's tile count comes from s_q, its loop length from
    the window), so the window layer's attention is cheaper forward and backward."""
    acc = get_accelerator("H100-SXM-80GB")
    m = ModelSpec(**{**LLAMA2_7B, "seq_len": 4096, "sliding_window": {"size": 128, "layers": 16}})
    full = layer_work(m, 1, 1, False, 1, "bf16", "flash", 0.0)
    win = layer_work(m, 1, 1, False, 1, "bf16", "flash", 0.0, window=128)
    for a, b in zip([o for o in full.fwd + full.bwd if o.kind == "attention"],
                    [o for o in win.fwd + win.bwd if o.kind == "attention"]):
        assert b.flops == pytest.approx(a.flops * (128 - 128 ** 2 / 8192) / 2048)
        assert op_time(b, acc).time_s < op_time(a, acc).time_s


def test_unfused_gate_and_up_projections_are_two_gemms_of_the_same_work():
    """Without a fused MLP (TensorRT-LLM v0.5 builds) the gated FFN's gate and up projections
    are two T × h × f/t GEMMs: the same FLOPs and weight bytes as the fused 2f/t GEMM, one more
    input read and one more kernel."""
    m = ModelSpec(**LLAMA2_7B)
    seg = [AttentionSegment(1, 128, 0)]
    fused = {o.name: o for o in inference_layer(m, seg, 1, "fp8", "fp8", "flash").ops}
    split = {o.name: o for o in inference_layer(m, seg, 1, "fp8", "fp8", "flash", fused_gate_up=False).ops}
    assert "fc1_gate" in split and "fc1_gate" not in fused
    assert split["fc1"].flops + split["fc1_gate"].flops == pytest.approx(fused["fc1"].flops)
    assert split["fc1"].bytes + split["fc1_gate"].bytes == pytest.approx(fused["fc1"].bytes + 128 * 4096 * 1.0)


@settings(max_examples=60, deadline=None)
@given(c=st.integers(0, 20000), n=st.integers(17, 8000), w=st.integers(16, 8192))
def test_windowed_segment_mean_keys_match_a_direct_count(c, n, w):
    """A prefill chunk of n > 16 tokens after c cached, in a window of w keys: the mean keys seen
    per query equals the direct mean of min(p, w) over the chunk's positions (to the
    continuous approximation's half-key), and it reads min(c, w) + n keys; a decode reads
    the last min(c + 1, w)."""
    from xlayer.workload.transformer import windowed_segment
    g = windowed_segment(AttentionSegment(1, n, c), w)
    direct = np.minimum(np.arange(c, c + n) + 0.5, w).mean()
    assert g.mean_seen == pytest.approx(direct, rel=1e-9, abs=0.5)
    assert g.kv_len == min(c, w) + n and g.mean_seen <= min(c + n / 2, w) + 1e-9
    d = windowed_segment(AttentionSegment(4, 1, c), w)
    assert d.is_decode and d.kv_len == min(c + 1, w)


def test_inference_with_a_sliding_window_reads_and_holds_only_the_window():
    """A served model whose layers all use a window of w keys: the decode step reads the K/V
    of w tokens, not of the whole context, and the KV cache holds w tokens per sequence."""
    from conftest import inference_case
    from xlayer.prediction.inference import predict_inference
    full = predict_inference(inference_case(model=LLAMA2_7B, tp=1, batch=4, prompt=16000, output=256))
    win = predict_inference(inference_case(model={**LLAMA2_7B, "sliding_window": {"size": 4096, "layers": 32}},
                                           tp=1, batch=4, prompt=16000, output=256))
    att = {r["name"]: r for r in win.decode.op_rows()}["attn_decode"]
    att_full = {r["name"]: r for r in full.decode.op_rows()}["attn_decode"]
    assert att["bytes"] == pytest.approx(att_full["bytes"] * 4096 / (16000 + 127.5 + 1), rel=0.01)
    kv, kv_full = win.memory_breakdown_bytes["kv_cache_bytes"], full.memory_breakdown_bytes["kv_cache_bytes"]
    assert kv == pytest.approx(kv_full * 4096 / (16000 + 256))
    assert win.decode.time_s < full.decode.time_s and win.prefill.time_s < full.prefill.time_s


DSV3 = dict(name="DeepSeek-V3", layers=61, hidden=7168, heads=128, ffn_hidden=18432, vocab=129280,
            activation="swiglu", seq_len=4096,
            moe=dict(experts=256, top_k=8, ffn_hidden=2048, shared_experts=1, dense_layers=3),
            mla=dict(q_lora_rank=1536, kv_lora_rank=512, qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128))


def test_mla_decode_reads_the_compressed_latent_once_for_all_heads():
    """Weight-absorbed MLA decode (DeepSeek-V2 §2.1.2): the cache holds r_kv + d_rope = 576
    elements per token and layer, every TP rank the whole latent; attention reads it once per
    sequence and does 2·H·s·(576 + 512) FLOPs per query; the absorbed per-head GEMMs
    T × 128 × 512 and T × 512 × 128 bring the query in and the output out of the latent space."""
    from xlayer.cost.kvcache import kv_bytes_per_token
    m = ModelSpec(**DSV3)
    assert kv_bytes_per_token(m, 8, 1, "fp8") == 61 * 576 * 1.0 == kv_bytes_per_token(m, 1, 1, "fp8")
    lay = inference_layer(m, [AttentionSegment(32, 1, 1499)], 8, "fp8", "fp8", "flash")
    ops = {o.name: o for o in lay.ops}
    att = ops["attn_decode"]
    assert att.flops == pytest.approx(2 * 32 * 16 * 1500 * (576 + 512))
    assert att.bytes == pytest.approx(32 * 1500 * 576 * 1.0 + 32 * 16 * (2 * 512 + 64) * 2)
    assert (ops["q_absorb"].m, ops["q_absorb"].k, ops["q_absorb"].n, ops["q_absorb"].batch) == (32, 128, 512, 16)
    assert (ops["o_absorb"].k, ops["o_absorb"].n) == (512, 128) and "kv_up" not in ops
    assert set(lay.attention_ops) == {"q_absorb", "attn_decode", "o_absorb"}


def test_mla_prefill_up_projects_its_keys_and_matches_training_attention():
    """An MLA prefill from an empty cache up-projects its n keys (r_kv → H·(d_nope + d_v)) and
    runs the training path's flash attention: the same FLOPs as the training forward."""
    m = ModelSpec(**{**DSV3, "seq_len": 2048})
    inf = {o.name: o for o in inference_layer(m, [AttentionSegment(1, 2048, 0)], 8, "bf16", "bf16", "flash").ops}
    train = {o.name: o for o in layer_work(m, 1, 8, False, 1, "bf16", "flash", 0.0, ffn="moe").fwd}
    for name in ("kv_up", "flash_attn", "q_down", "q_up", "kv_down", "proj"):
        assert inf[name].flops == pytest.approx(train[name].flops), name


def test_autograd_adds_residual_accumulations_and_unfused_bias_gradients():
    """Every layer's backward sums the two gradients of each residual input (2 kernels of
    2·rows·h read, rows·h written); a biased layer reduces each linear's bias gradient from
    its m×n output gradient unless the stack fuses it into the wgrad GEMM (TE)."""
    gpt = ModelSpec(name="gpt", layers=1, hidden=1024, heads=16, ffn_hidden=4096, vocab=50257, seq_len=1024,
                    activation="gelu", bias=True)
    llama = ModelSpec(**{**LLAMA2_7B, "seq_len": 1024})
    for m in (gpt, llama):
        for fused in (False, True):
            w = layer_work(m, 2, 2, True, 1, "bf16", "flash", 0.0, fused_bias_grad=fused)
            names = [o.name for o in w.bwd]
            acc = [o for o in w.bwd if o.name.endswith("grad_accumulate")]
            assert len(acc) == 2 and acc[0].bytes == pytest.approx(2 * (2 + 1) * (2 * 1024 / 2) * m.hidden)
            biases = [n for n in names if n.endswith(".bias_grad")]
            assert biases == ([] if (fused or not m.bias) else ["qkv.bias_grad", "proj.bias_grad", "fc1.bias_grad",
                                                              "fc2.bias_grad"])


def test_userbuffers_overlap_pairs_every_tp_collective_with_a_gemm():
    """Megatron-Bridge's TP comm overlap (TE userbuffers, with SP): the forward all-gathers
    pair with qkv/fc1, the reduce-scatters with proj/fc2, the backward output-gradient
    all-gathers with the proj/fc2 data-gradient GEMMs; without it the forward is exposed."""
    m = ModelSpec(**{**LLAMA2_7B, "seq_len": 4096})
    ub = layer_work(m, 1, 4, True, 1, "fp8", "flash", 0.0, tp_comm_overlap=True)
    assert {c.name: c.overlap for c in ub.fwd_comms} == {
        "sp_allgather_attn": "qkv", "sp_reducescatter_attn": "proj", "sp_allgather_mlp": "fc1",
        "sp_reducescatter_mlp": "fc2"}
    bwd = {c.name: c.overlap for c in ub.bwd_comms}
    assert bwd["sp_allgather_grad_mlp"] == "fc2.dgrad" and bwd["sp_allgather_grad_attn"] == "proj.dgrad"
    names = {o.name for o in ub.fwd + ub.bwd}
    assert all(c.overlap in names for c in ub.fwd_comms + ub.bwd_comms if c.overlap)
    plain = layer_work(m, 1, 4, True, 1, "fp8", "flash", 0.0)
    assert all(c.overlap is None for c in plain.fwd_comms)
    assert all(c.overlap is None for c in layer_work(m, 1, 4, False, 1, "fp8", "flash", 0.0,
                                                     tp_comm_overlap=True).fwd_comms)  # needs SP


def test_userbuffers_overlap_follows_the_stack_and_precision():
    from xlayer.engine.training import recipe_for
    m = ModelSpec(**LLAMA2_7B)
    assert recipe_for(m, "fp8", "megatron-bridge").tp_comm_overlap
    assert not recipe_for(m, "nvfp4", "megatron-bridge").tp_comm_overlap  # the perf scripts turn it off
    assert not recipe_for(m, "fp8", "megatron-lm").tp_comm_overlap


def test_a_biased_moe_adds_its_expert_bias_per_expert_in_megatron_only():
    """Megatron-Core's TEGroupedMLP adds the experts' fc2 bias (weighted by the routing
    probability) outside the grouped GEMM: 6 passes over rows·h 16-bit values; an unbiased MoE
    or an inference engine has no such kernel."""
    biased = ModelSpec(**{**QWEN30.model_dump(exclude={"defaults_taken"}), "bias": True})
    w = layer_work(biased, 1, 1, False, 1, "bf16", "flash", 0.0, ffn="moe", ep=8)
    op = next(o for o in w.fwd if o.name == "expert_fc2_bias")
    rows = 4096 * 8  # this rank's token copies under balanced routing (Tg·k/ep with Tg = R·ep)
    assert op.bytes == pytest.approx(6 * rows * 2048 * 2)
    assert "expert_fc2_bias" not in {o.name for o in layer_work(QWEN30, 1, 1, False, 1, "bf16", "flash", 0.0,
                                                                    ffn="moe", ep=8).fwd}
    inf = inference_layer(biased, [AttentionSegment(1, 512, 0)], 1, "bf16", "bf16", "flash")
    assert "expert_fc2_bias" not in {o.name for o in inf.ops}
