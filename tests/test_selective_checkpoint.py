"""torchtitan's selective activation checkpointing (the stack profile's ``selective_policy:
op_sac``): which operators it re-runs and keeps (xlayer.workload.training_ops.op_sac_split,
after torchtitan/distributed/activation_checkpoint.py), what that costs in time and memory,
that it is the stack's default, and the published torchtitan A100 rows it brings close
(benchmarks/torchtitan_a100.py)."""
from __future__ import annotations

import statistics

import numpy as np
import pytest

from conftest import load_benchmark
from xlayer.engine.training import evaluate_training, recipe_for
from xlayer.hardware.catalog import get_accelerator
from xlayer.hardware.spec import System
from xlayer.prediction.case import case_from_dict
from xlayer.prediction.training import predict_training, resolve_layout
from xlayer.workload.model import ModelSpec
from xlayer.workload.training_ops import layer_work, op_sac_split, recompute_ops


def llama(**kw):
    args = dict(name="l", layers=4, hidden=2048, heads=16, kv_heads=4, ffn_hidden=5632, vocab=32000, seq_len=2048,
                activation="swiglu", position="rope", norm="rmsnorm", bias=False, tied_embeddings=False)
    args.update(kw)
    return ModelSpec(**args)


def eager_llama_work(model=None):
    return layer_work(model or llama(), 1, 1, False, 1, "bf16", "flash", 0.0, eager_modules=True)


def test_every_second_plain_matmul_is_rerun_in_layer_order():
    """A Llama block with separate q, k, v, gate and up projections (as torchtitan's): the
    policy counts wq 1, wk 2, wv 3, wo 4, w1 5, w3 6, w2 7 and re-runs the even ones; the
    attention kernel is saved; every element-wise kernel is re-run."""
    work = eager_llama_work()
    rerun, saved = op_sac_split(work)
    gemms = [op.name for op in work.fwd if op.kind == "gemm"]
    assert gemms == ["q_proj", "k_proj", "v_proj", "proj", "fc1", "fc1_gate", "fc2"]
    assert [op.name for op in rerun if op.kind == "gemm"] == ["k_proj", "proj", "fc1_gate"]
    assert [op.name for op in saved] == ["q_proj", "v_proj", "flash_attn", "fc1", "fc2"]
    elementwise = [op.name for op in work.fwd if op.kind == "elementwise"]
    assert elementwise and set(elementwise) <= {op.name for op in rerun}
    assert len(rerun) + len(saved) == len(work.fwd)


def test_biased_linears_run_addmm_and_are_all_saved():
    """F.linear with a bias folds into aten.addmm, which the policy saves and does not count."""
    gpt = ModelSpec(name="g", layers=4, hidden=1024, heads=16, ffn_hidden=4096, vocab=32000, seq_len=1024,
                    activation="gelu", bias=True)
    work = layer_work(gpt, 1, 1, False, 1, "bf16", "flash", 0.0, eager_modules=True)
    rerun, saved = op_sac_split(work)
    assert not [op for op in rerun if op.kind == "gemm"]
    assert {op.name for op in saved} >= {"qkv", "proj", "fc1", "fc2"}


def test_moe_router_and_grouped_experts_are_rerun():
    moe = llama(moe={"experts": 8, "top_k": 2, "ffn_hidden": 1024, "shared_experts": 0, "dense_layers": 0})
    work = layer_work(moe, 1, 1, False, 1, "bf16", "flash", 0.0, ffn="moe", ep=2)
    rerun, saved = op_sac_split(work)
    names = {op.name for op in rerun}
    assert "router" in names and {op.name for op in work.fwd if op.name.startswith("expert_")} <= names
    assert not [op for op in saved if op.name == "router" or op.name.startswith("expert_")]


def test_megatron_selective_is_unchanged_under_flash():
    work = eager_llama_work()
    assert recompute_ops(work, "selective")[0] == []
    assert recompute_ops(work, "selective", "op_sac")[0] == op_sac_split(work)[0]


def _eval(recipe, recompute, micro=2):
    acc = get_accelerator("H100-SXM-80GB")
    system = System(accelerator=acc, count=8, scale_up_size=8)
    return evaluate_training(llama(), system, "bf16", 64, 1, 1, 8, 1, 1, micro, False, recompute, 3, True, recipe)


def test_op_sac_costs_between_none_and_full_in_time_and_memory():
    """GPU-bound (micro-batch 8): the re-run work lies between none and full. (A host-bound
    eager layer can take longer under the per-op policy than under full checkpointing, whose
    first forward runs without grad: fewer host dispatches.)"""
    r = recipe_for(llama(), "bf16", "torchtitan")
    assert r.selective_policy == "op_sac" and r.default_recompute == "selective"
    none, sac, full = (_eval(r, rc, micro=8) for rc in ("none", "selective", "full"))
    assert none.iteration_time_s < sac.iteration_time_s < full.iteration_time_s
    assert full.memory_bytes < sac.memory_bytes < none.memory_bytes
    small = [_eval(r, rc, micro=1) for rc in ("none", "selective", "full")]
    assert small[0].iteration_time_s < small[1].iteration_time_s
    assert small[2].memory_bytes < small[1].memory_bytes < small[0].memory_bytes


def test_op_sac_recompute_is_its_rerun_operators_flops():
    """The recomputed FLOPs of a layer are those of the re-run matmuls (wk, wo, w3) and
    element-wise kernels, nothing else."""
    work = eager_llama_work()
    rerun, _ = recompute_ops(work, "selective", "op_sac")
    m = llama()
    T = m.seq_len
    expected = 2.0 * T * m.hidden * (m.kv_dim + m.q_dim + m.ffn_hidden)  # wk, wo (q_dim -> h), w3
    assert sum(op.flops for op in rerun if op.kind == "gemm") == pytest.approx(expected, rel=1e-12)


def test_scalar_equals_vectorized_under_op_sac():
    r = recipe_for(llama(), "bf16", "torchtitan")
    acc = get_accelerator("H100-SXM-80GB")
    system = System(accelerator=acc, count=8, scale_up_size=8)
    one = [evaluate_training(llama(), system, "bf16", 64, 1, 1, 8, 1, 1, mb, False, "selective", 3, True, r)
           for mb in (1, 2, 4)]
    a = np.array
    vec = evaluate_training(llama(), system, "bf16", 64, a([1, 1, 1]), a([1, 1, 1]), a([8, 8, 8]), a([1, 1, 1]),
                            a([1, 1, 1]), a([1, 2, 4]), False, "selective", 3, True, r)
    assert np.allclose([float(x.iteration_time_s) for x in one], vec.iteration_time_s, rtol=1e-9)
    assert np.allclose([float(x.memory_bytes) for x in one], vec.memory_bytes, rtol=1e-9)


def test_scalar_equals_vectorized_under_op_sac_with_classic_attention():
    """Batched attention GEMMs (aten.bmm, kept) with array shapes: the split is the same."""
    m = llama(attention="classic")
    r = recipe_for(m, "bf16", "torchtitan")
    acc = get_accelerator("H100-SXM-80GB")
    system = System(accelerator=acc, count=8, scale_up_size=8)
    one = [float(evaluate_training(m, system, "bf16", 64, 1, 1, 8, 1, 1, mb, False, "selective", 3, True,
                                   r).iteration_time_s) for mb in (1, 2)]
    a = np.array
    vec = evaluate_training(m, system, "bf16", 64, a([1, 1]), a([1, 1]), a([8, 8]), a([1, 1]), a([1, 1]), a([1, 2]),
                            False, "selective", 3, True, r)
    assert np.allclose(one, vec.iteration_time_s, rtol=1e-9)


def test_torchtitan_takes_its_selective_checkpointing_by_default():
    case = case_from_dict({
        "id": "t", "kind": "training", "software": {"framework": "torchtitan", "mode": "eager"},
        "model": {"layers": 8, "hidden": 2048, "heads": 16, "kv_heads": 4, "ffn_hidden": 5632, "vocab": 32000,
                  "seq_len": 2048, "activation": "swiglu"},
        "system": {"accelerator": "H100-SXM-80GB", "count": 8},
        "parallel": {"tp": 1, "pp": 1, "dp": 8}, "batch": {"global": 16, "micro": 2}, "precision": "bf16"})
    lay, notes = resolve_layout(case)
    assert lay.recompute == "selective"
    assert any(n.startswith("parallel.recompute=selective") for n in notes)
    plain = case.model_copy(update={"software": case.software.model_copy(update={"framework": "pytorch"})})
    assert resolve_layout(plain)[0].recompute == "none"


def test_published_torchtitan_a100_rows():
    """torchtitan docs/performance.md (64 A100, FSDP2): six rows whose checkpointing the case
    format states, out of sample. Before the per-op policy the three selective rows were
    priced as no recompute (−11, −13, −16 %)."""
    tt = load_benchmark("torchtitan_a100")
    errs = {}
    for r in tt.rows():
        c = tt.case_of(r)
        p = predict_training(case_from_dict(c), energy=False)
        errs[c["id"]] = p.iteration_time_s / c["measured"]["iteration_time_s"] - 1.0
    assert len(errs) == 6
    assert statistics.mean(map(abs, errs.values())) <= 0.05 and max(map(abs, errs.values())) <= 0.10
    sel = [e for k, e in errs.items() if k.endswith("selective-op")]
    assert len(sel) == 3 and all(e > -0.10 for e in sel)


def test_compiled_torchtitan_keeps_its_defaults_with_fused_kernels():
    """``mode: compiled`` selects torchtitan-compiled: the same FSDP2, fused AdamW and per-op
    checkpointing, inductor's fused element-wise kernels (faster than the eager modules)."""
    from xlayer.mapping.profiles import profile_for

    p, _ = profile_for("torchtitan", None, "compiled")
    e, _ = profile_for("torchtitan", None, "eager")
    assert (p.name, e.name) == ("torchtitan-compiled", "torchtitan")
    for f in ("optimizer_sharding", "recompute", "selective_policy", "optimizer_step_bytes_per_param"):
        assert getattr(p, f) == getattr(e, f), f
    assert p.host_dispatch_s is None and not p.eager_llama_elementwise and not p.eager_cross_entropy
    eager = _eval(recipe_for(llama(), "bf16", "torchtitan"), "selective", micro=8)
    compiled = _eval(recipe_for(llama(), "bf16", "torchtitan", None, "compiled"), "selective", micro=8)
    assert compiled.iteration_time_s < eager.iteration_time_s


def test_open_layout_search_keeps_torchtitan_s_checkpointing_first():
    """tp/pp left open (the vectorized search): among fitting layouts the stack's own recompute
    comes first, as with a stated layout; Megatron's default (none) is unaffected."""
    base = {"id": "t", "kind": "training", "software": {"framework": "torchtitan"},
            "model": {"layers": 8, "hidden": 2048, "heads": 16, "kv_heads": 4, "ffn_hidden": 5632, "vocab": 32000,
                      "seq_len": 2048, "activation": "swiglu"},
            "system": {"accelerator": "H100-SXM-80GB", "count": 8}, "parallel": {},
            "batch": {"global": 16, "micro": 2}, "precision": "bf16"}
    lay, notes = resolve_layout(case_from_dict(base))
    assert lay.recompute == "selective"
    assert any("with the stack's recompute (selective)" in n for n in notes)
    mb = resolve_layout(case_from_dict(dict(base, software={"framework": "megatron-bridge"})))[0]
    assert mb.recompute == "none"


def test_op_sac_memory_is_what_pytorch_keeps_on_real_modules():
    """benchmarks/eager_memory.py op_sac_held_bytes runs a Llama layer of real modules under
    torch.utils.checkpoint with torchtitan's policy: the bytes it keeps after the forward are
    op_sac_activation_bytes exactly (block input, q and v projections, SDPA output and
    log-sum-exp, gate and down projections); without checkpointing the layer_activation_bytes
    of the pytorch-eager profile."""
    from xlayer.cost.memory import layer_activation_bytes, op_sac_activation_bytes
    from xlayer.mapping.profiles import get_profile

    em = load_benchmark("eager_memory")
    h, heads, kv, ffn, seq, b = 256, 8, 2, 688, 128, 2
    sac, full_set = em.op_sac_held_bytes(h, heads, kv, ffn, seq, b)
    m = llama(hidden=h, heads=heads, kv_heads=kv, ffn_hidden=ffn, seq_len=seq)
    work = layer_work(m, b, 1, False, 1, "bf16", "flash", 0.0, eager_modules=True)
    assert op_sac_activation_bytes(work, b * seq, h) == pytest.approx(sac, rel=0.01)
    none = layer_activation_bytes(m, b, 1, 1, False, "none", "flash", 0.0,
                                  saved=get_profile("pytorch-eager").saved_activations)
    assert none == pytest.approx(full_set, rel=0.01)
    assert sac < 0.5 * full_set


def test_op_sac_reruns_as_many_matmuls_as_pytorch_does():
    """Under torch.utils.checkpoint with torchtitan's policy a Llama layer's backward issues 3
    more matmuls than without (wk, wo, w3 re-run), the count op_sac_split re-runs."""
    em = load_benchmark("eager_memory")
    with_sac, without = em.op_sac_backward_matmuls()
    rerun, _ = op_sac_split(eager_llama_work())
    assert with_sac - without == sum(1 for op in rerun if op.kind == "gemm") == 3
