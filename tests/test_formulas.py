"""Each formula against a hand-computed value."""
from __future__ import annotations

import math

import pytest

from conftest import gpt
from xlayer.cost.collectives import collective_time_s, ring_time_s
from xlayer.cost.memory import inflight_chunks, inflight_chunks_on_rank, layer_activation_bytes, model_state_bytes
from xlayer.cost.pipeline import pipeline_time_s
from xlayer.hardware import get_accelerator
from xlayer.hardware.spec import Link
from xlayer.mapping.layout import layers_on_first_rank, layers_on_last_rank, layers_on_middle_rank
from xlayer.workload.training_ops import layer_flops_model, layer_work, model_flops_per_iteration

GIB = 2 ** 30


def test_gpt_layer_flops_match_narayanan():
    m = gpt()
    b, s, h = 1, 2048, 12288
    # 24·b·s·h² + 4·b·s²·h with full attention (Narayanan); the causal half of the s² term here
    assert layer_flops_model(m, b * s) == pytest.approx(24 * b * s * h * h + 2 * b * s * s * h)


def test_iteration_flops_match_narayanan_eq3():
    m = gpt()
    B, s, l, h, V = 1536, 2048, 96, 12288, 51200
    # Narayanan eq. 3 counts full s^2 attention: 72·B·s·l·h²·(1 + s/(6h) + V/(12lh)); xlayer counts
    # the causal half a causal kernel does, so its s/(6h) term is s/(12h)
    expected = 72 * B * s * l * h * h * (1 + s / (12 * h) + V / (12 * l * h))
    assert model_flops_per_iteration(m, B) == pytest.approx(expected)


def test_gqa_and_gated_ffn_flops():
    m = gpt(layers=1, hidden=4096, heads=32, kv_heads=8, ffn_hidden=14336, activation="swiglu", seq_len=8192)
    T = 8192
    qkv = 2 * T * 4096 * (4096 + 2 * 1024)
    proj = 2 * T * 4096 * 4096
    ffn = 3 * 2 * T * 4096 * 14336
    attn = 4 * T * 8192 * 4096 / 2  # causal half
    assert layer_flops_model(m, T) == pytest.approx(qkv + proj + ffn + attn)


def test_gpt3_parameter_count():
    m = gpt()
    # 12·l·h² (1 + 13/(12h) + (V+s)/(12·l·h)) (Narayanan 2021), learned positions, tied output
    l, h, V, s = 96, 12288, 51200, 2048
    approx = 12 * l * h * h * (1 + 13 / (12 * h) + (V + s) / (12 * l * h))
    assert m.total_params() == pytest.approx(approx, rel=1e-3)
    assert 174e9 < m.total_params() < 176e9


def test_llama2_70b_parameter_count():
    from xlayer.workload.model import ModelSpec
    m = ModelSpec(layers=80, hidden=8192, heads=64, kv_heads=8, ffn_hidden=28672, vocab=32000, seq_len=4096,
                  activation="swiglu")
    assert m.total_params() == pytest.approx(68.98e9, rel=0.01)


def test_layer_gemm_shapes_tp():
    m = gpt()
    w = layer_work(m, b=1, tp=8, sp=False, cp=1, precision="bf16", attention="flash", dropout=0.0)
    ops = {o.name: o for o in w.fwd}
    assert (ops["qkv"].m, ops["qkv"].k, ops["qkv"].n) == (2048, 12288, 3 * 12288 / 8)
    assert ops["fc2"].flops == pytest.approx(2 * 2048 * 49152 / 8 * 12288)
    bwd = {o.name: o for o in w.bwd}
    assert bwd["fc2.dgrad"].flops == bwd["fc2.wgrad"].flops == ops["fc2"].flops


LINK = Link(name="x", bandwidth_bytes_per_s=100e9, latency_s=1e-6, efficiency=1.0)
SLOW = Link(name="y", bandwidth_bytes_per_s=10e9, latency_s=5e-6, efficiency=1.0)


def test_ring_all_reduce_formula():
    S, n = 1e9, 8
    ring = 2 * (n - 1) / n * S / 100e9 + 2 * (n - 1) * 1e-6
    assert ring_time_s("all_reduce", S, n, LINK) == pytest.approx(ring)
    assert ring_time_s("all_gather", S, n, LINK) == pytest.approx((n - 1) / n * S / 100e9 + (n - 1) * 1e-6)


def test_tree_wins_for_small_messages():
    S, n = 1e3, 64
    tree = 2 * S / 100e9 + 2 * math.ceil(math.log2(n)) * 1e-6
    assert ring_time_s("all_reduce", S, n, LINK) == pytest.approx(tree)


def test_hierarchical_all_reduce():
    S = 8e9
    inner = 7 / 8 * S / 100e9 + 7 * 1e-6
    outer = 2 * 3 / 4 * (S / 8) / 10e9 + 2 * 3 * 5e-6
    assert collective_time_s("all_reduce", S, 32, 8, LINK, SLOW) == pytest.approx(2 * inner + outer)


def test_single_rank_collective_is_free():
    assert collective_time_s("all_reduce", 1e9, 1, 1, LINK, SLOW) == 0.0


def test_pipeline_bubble():
    r = pipeline_time_s(microbatches=64, pp=8, vp=1, rank_max_s=1.0, rank_mean_s=1.0)
    assert r.bubble_s / r.steady_s == pytest.approx(7 / 64)
    r = pipeline_time_s(microbatches=64, pp=8, vp=3, rank_max_s=1.0, rank_mean_s=1.0)
    assert r.bubble_s / r.steady_s == pytest.approx(7 / (3 * 64))


def test_uneven_layer_split():
    # 70 layers on 12 stages: 70 + embedding + loss = 72 slots, 6 per stage, the first and the
    # last stage give one slot each to the embedding and the loss (Megatron-Core's
    # account_for_embedding/loss_in_pipeline_split)
    assert layers_on_first_rank(70, 12, 1) == 5 and layers_on_last_rank(70, 12, 1) == 5
    assert layers_on_middle_rank(70, 12, 1) == 6
    # 126 layers on 8 x 8 chunks: 128 slots, 2 per chunk, 16 per rank, first/last 15
    assert layers_on_first_rank(126, 8, 8) == 15 and layers_on_last_rank(126, 8, 8) == 15
    assert layers_on_middle_rank(126, 8, 8) == 16
    # 126 on 16 x 8 = 128 chunks: one slot per chunk
    assert (layers_on_first_rank(126, 16, 8), layers_on_middle_rank(126, 16, 8), layers_on_last_rank(126, 16, 8)) \
        == (7, 8, 7)
    assert layers_on_first_rank(105, 35, 3) == 3 == layers_on_last_rank(105, 35, 3)
    # not dividing either way: round-robin extras to the first chunks (9 layers on 8 stages)
    assert (layers_on_first_rank(9, 8, 1), layers_on_middle_rank(9, 8, 1), layers_on_last_rank(9, 8, 1)) == (2, 1, 1)
    # every layer on exactly one rank
    for L, p, v in ((70, 12, 1), (126, 8, 8), (126, 16, 8), (80, 4, 5), (9, 8, 1)):
        assert layers_on_first_rank(L, p, v) + layers_on_last_rank(L, p, v) + (p - 2) * layers_on_middle_rank(L, p, v) \
            <= L + 0 and layers_on_first_rank(L, p, v) + layers_on_last_rank(L, p, v) \
            + (p - 2) * layers_on_middle_rank(L, p, v) >= L - (p - 2)


def test_inflight_chunks_per_rank():
    # interleaved: rank 0 holds v*p + p - 1 chunks, the last rank (v-1)*p + 1
    assert inflight_chunks_on_rank(4, 4, 64, 0) == 4 * 4 + 4 - 1
    assert inflight_chunks_on_rank(4, 4, 64, 3) == 3 * 4 + 1
    # 1F1B: rank r holds p - r micro-batches
    assert inflight_chunks_on_rank(8, 1, 64, 0) == 8 and inflight_chunks_on_rank(8, 1, 64, 7) == 1


def test_inflight_chunks():
    assert inflight_chunks(8, 1, 64) == 8
    assert inflight_chunks(8, 3, 64) == 3 * 8 + 8 - 1
    assert inflight_chunks(8, 1, 4) == 4


@pytest.mark.parametrize("recompute,sp,expected", [
    ("none", False, 10 + 24 / 8 + 5 * 96 * 2048 / (12288 * 8)),
    ("none", True, (34 + 5 * 96 * 2048 / 12288) / 8),
    ("selective", True, 34 / 8),
    ("full", False, 2.0),
    ("full", True, 2.0 / 8),
])
def test_korthikanti_activation_per_layer(recompute, sp, expected):
    m = gpt()
    sbh = 2048 * 1 * 12288
    got = layer_activation_bytes(m, 1, 8, 1, sp, recompute, "classic", 0.1)
    assert got == pytest.approx(expected * sbh, rel=1e-9)


def test_flash_activation_matches_h200_layer(shared_validation):
    import json
    data = json.loads((shared_validation / "kernels" / "h200-pytorch-kernels.json").read_text())
    for row in data["layer"]:
        m = gpt(hidden=row["h"], heads=row["heads"], ffn_hidden=4 * row["h"], seq_len=row["s"])
        mode = "full" if row["recompute"] else "none"
        got = layer_activation_bytes(m, row["b"], 1, 1, False, mode, "flash", 0.0)
        # measured: bytes allocated by the forward (saved tensors + the output); the layer
        # input was allocated before, the output takes its place in the count
        assert got == pytest.approx(row["saved_bytes"], rel=0.01), row


def test_model_states_18_bytes_and_zero():
    st = model_state_bytes(1e9, 8, 0)
    assert sum(st.values()) == pytest.approx(18e9)
    st = model_state_bytes(1e9, 8, 1)
    assert st["optimizer"] == pytest.approx(12e9 / 8)
    st = model_state_bytes(1e9, 8, 3)
    assert st["weights"] == pytest.approx(2e9 / 8) and st["gradients"] == pytest.approx(4e9 / 8)


def test_catalog_names_resolve():
    for name in ["A100-SXM-40GB", "A100-SXM-80GB", "H100-SXM-80GB", "H200-SXM-141GB", "B200-SXM-180GB",
                 "GB200-NVL72", "GB300-NVL72", "MI300X"]:
        acc = get_accelerator(name)
        assert acc.peak("bf16") > 0 and acc.hbm.capacity_bytes > 0
    assert get_accelerator("GB200-NVL72").scale_up_domain == 72
