"""Megatron-Core module recompute (xlayer.workload.recompute): what each module drops from the
saved activations and re-runs, the ordering none ≥ modules ≥ full, and the chooser's use of it."""
from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xlayer.cost.memory import layer_activation_bytes
from xlayer.errors import InputError
from xlayer.prediction.case import case_from_dict
from xlayer.prediction.training import predict_training, resolve_layout
from xlayer.workload.model import ModelSpec
from xlayer.workload.recompute import MODULES, check_recompute, model_modules, module_modes
from xlayer.workload.training_ops import layer_work, recompute_ops

DSV3 = ModelSpec(name="DeepSeek-V3", layers=61, hidden=7168, heads=128, kv_heads=128, ffn_hidden=18432,
                 vocab=129280, activation="swiglu", seq_len=4096,
                 moe={"experts": 256, "top_k": 8, "ffn_hidden": 2048, "shared_experts": 1, "dense_layers": 3},
                 mla={"q_lora_rank": 1536, "kv_lora_rank": 512, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64,
                      "v_head_dim": 128})
LLAMA = ModelSpec(name="llama-ish", layers=32, hidden=4096, heads=32, kv_heads=8, ffn_hidden=14336, vocab=128256,
                  activation="swiglu", seq_len=8192)


def _act(model, mode, ffn, precision="bf16", tp=2, sp=True):
    return layer_activation_bytes(model, 1, tp, 1, sp, mode, "flash", 0.0, ffn, 1, precision)


def test_modules_of_a_model():
    assert model_modules(DSV3) == ("layernorm", "moe_act", "mla_up_proj", "mlp", "shared_experts")
    assert model_modules(LLAMA) == ("layernorm", "mlp")
    assert len(module_modes(model_modules(DSV3))) == 2 ** 5 - 1


def test_each_module_drops_what_it_reruns():
    T, tp, h = 4096, 2, 7168
    rows = T / tp
    none = _act(DSV3, "none", "moe")
    # layernorm: the attention input (QKV operand) and the MoE input (norm2 out), 16-bit
    assert none - _act(DSV3, "layernorm", "moe") == pytest.approx(2 * rows * h + 2 * rows * h)
    # mla_up_proj: q, k (nope + rope) and v after the up projections
    qkv_up = 2 * T * 128 * (2 * (128 + 64) + 128) / tp
    assert none - _act(DSV3, "mla_up_proj", "moe") == pytest.approx(qkv_up)
    # moe_act: the routed copies' activation output (expert FC2 input), R·k·f_e 16-bit values
    assert none - _act(DSV3, "moe_act", "moe") == pytest.approx((T / tp) * 8 * 2 * 2048)
    # mlp only touches dense layers; shared_experts only the MoE layer's shared expert
    assert _act(DSV3, "mlp", "moe") == pytest.approx(none)
    assert _act(DSV3, "shared_experts", "dense") == pytest.approx(_act(DSV3, "none", "dense"))
    assert _act(DSV3, "mlp", "dense") < _act(DSV3, "none", "dense")


@settings(max_examples=40, deadline=None)
@given(st.sampled_from([DSV3, LLAMA]), st.sets(st.sampled_from(MODULES), min_size=1), st.sampled_from(["moe", "dense"]),
       st.sampled_from(["bf16", "fp8", "mxfp8"]), st.sampled_from([1, 2, 4]))
def test_module_sets_lie_between_none_and_full_and_are_monotone(model, mods, ffn, precision, tp):
    if ffn == "moe" and model.moe is None:
        ffn = "dense"
    mode = check_recompute("+".join(sorted(mods)))
    sp = tp > 1
    a = _act(model, mode, ffn, precision, tp, sp)
    assert _act(model, "full", ffn, precision, tp, sp) <= a + 1e-6 <= _act(model, "none", ffn, precision, tp, sp) + 2e-6
    for extra in MODULES:  # adding a module never keeps more
        more = check_recompute("+".join(sorted(mods | {extra})))
        assert _act(model, more, ffn, precision, tp, sp) <= a + 1e-6
    # and re-runs a superset of the operators
    w = layer_work(model, 1, tp, sp, 1, precision, "flash", 0.0, ffn=ffn, ep=1)
    names = {op.name for op in recompute_ops(w, mode)[0]}
    assert names <= {op.name for op in w.fwd}
    for extra in MODULES:
        more = check_recompute("+".join(sorted(mods | {extra})))
        assert names <= {op.name for op in recompute_ops(w, more)[0]}


def test_layernorm_reruns_the_two_norms_and_moe_act_the_expert_activation():
    w = layer_work(DSV3, 1, 2, True, 1, "bf16", "flash", 0.0, ffn="moe", ep=8)
    assert [op.name for op in recompute_ops(w, "layernorm")[0]] == ["norm1", "norm2"]
    assert [op.name for op in recompute_ops(w, "moe_act")[0]] == ["expert_activation"]
    assert {op.name for op in recompute_ops(w, "mla_up_proj")[0]} == {"q_up", "kv_up", "mla_rope"}
    assert recompute_ops(w, "layernorm")[1] == []  # no collective is redone


@pytest.mark.parametrize("bad", ["partial", "layernorm+layernorm", "layernorm+attn", "+", ""])
def test_bad_module_sets_name_the_field(bad):
    with pytest.raises(InputError) as e:
        check_recompute(bad)
    assert e.value.field == "parallel.recompute"


def _ds_case(**parallel):
    p = {"tp": 2, "pp": 8, "vp": 4, "ep": 64, "cp": 1, "recompute": None, "zero": None}
    p.update(parallel)
    return case_from_dict({
        "id": "ds", "kind": "training", "software": {"framework": "megatron-bridge"},
        "model": {"name": "DeepSeek-V3", "layers": 61, "hidden": 7168, "heads": 128, "kv_heads": 128,
                  "ffn_hidden": 18432, "vocab": 129280, "activation": "swiglu", "seq_len": 4096,
                  "moe": {"experts": 256, "top_k": 8, "ffn_hidden": 2048, "shared_experts": 1, "dense_layers": 3},
                  "mla": {"q_lora_rank": 1536, "kv_lora_rank": 512, "qk_nope_head_dim": 128,
                          "qk_rope_head_dim": 64, "v_head_dim": 128}},
        "system": {"accelerator": "H100-SXM-80GB", "count": 1024, "scale_up_size": 8},
        "parallel": p, "batch": {"global": 8192, "micro": 1}, "precision": "bf16"})


def test_chooser_takes_a_module_set_when_none_does_not_fit_and_it_beats_full():
    case = _ds_case()
    lay, notes = resolve_layout(case)
    r_none = predict_training(_ds_case(recompute="none", zero=1), energy=False)
    r_full = predict_training(_ds_case(recompute="full", zero=1), energy=False)
    assert not r_none.fits_memory and r_full.fits_memory
    chosen = predict_training(case, energy=False)
    assert lay.recompute not in ("none", "selective", "full")
    assert chosen.fits_memory and chosen.iteration_time_s < r_full.iteration_time_s
    assert any(n.startswith("parallel.recompute=") for n in notes)


def test_case_states_a_module_list():
    a = predict_training(_ds_case(recompute=["mla_up_proj", "layernorm"], zero=1), energy=False)
    b = predict_training(_ds_case(recompute="layernorm+mla_up_proj", zero=1), energy=False)
    assert a.layout.recompute == b.layout.recompute == "layernorm+mla_up_proj"
    assert a.iteration_time_s == b.iteration_time_s


def test_mode_strings_are_canonical():
    for r in range(1, len(MODULES) + 1):
        for combo in itertools.combinations(reversed(MODULES), r):
            mode = check_recompute("+".join(combo))
            assert mode.split("+") == [m for m in MODULES if m in combo]
