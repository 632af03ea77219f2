"""Eager PyTorch's saved activations: xlayer's pytorch-eager bytes against real modules.

The modules and the counters are ``benchmarks/eager_memory.py`` (Hugging Face-style Llama
layer, torch.nn GPT layer, the written-out tanh GELU, F.cross_entropy on fp32-cast logits),
run forward and backward in bf16 on the CPU; autograd's saved tensors and the live storages
are counted, not estimated."""
from __future__ import annotations

import pytest

from conftest import load_benchmark

from xlayer.engine.training import recipe_for
from xlayer.mapping.profiles import get_profile
from xlayer.workload.model import ModelSpec



@pytest.fixture(scope="module")
def em():
    return load_benchmark("eager_memory")


@pytest.mark.parametrize("cfg", [dict(), dict(kv_heads=2), dict(h=384, heads=6, kv_heads=3, ffn=1024, seq=96,
                                                                  batch=3, vocab=3000)])
def test_eager_profile_matches_saved_tensors(em, cfg):
    got, want = em.measure(**cfg), em.predicted(**cfg)
    for k in got:
        # per-token statistics (rsqrt, LayerNorm mean/rstd: 4-8 B per token) are not modelled
        assert want[k] == pytest.approx(got[k], rel=5e-3), k


def test_fused_formula_is_not_what_eager_saves(em):
    """The Llama layer and the loss differ from fused kernels' accounting (the test can fail
    if the eager profile fell back to it); the GPT layer with one-op GELU does not."""
    got, fused = em.measure(), em.predicted(profile=None)
    assert fused["llama_layer_saved_bytes"] < 0.8 * got["llama_layer_saved_bytes"]
    assert fused["loss_peak_bytes"] < 0.35 * got["loss_peak_bytes"]
    assert fused["gpt_layer_saved_bytes"] == pytest.approx(got["gpt_layer_saved_bytes"], rel=5e-3)


def test_recipe_carries_the_stack_saved_activations():
    llama = ModelSpec(name="l", layers=2, hidden=512, heads=8, ffn_hidden=1376, vocab=1000, seq_len=128,
                      activation="swiglu")
    eager = recipe_for(llama, "bf16", "pytorch")
    assert eager.saved == get_profile("pytorch-eager").saved_activations
    assert eager.saved.glu_unfused and eager.saved.logits_peak_bytes == 14
    mega = recipe_for(llama, "bf16", "megatron-lm")
    assert not mega.saved.glu_unfused and mega.saved.logits_peak_bytes == 4


def _llama_case(framework: str) -> dict:
    return {"id": f"eager-mem-{framework}", "kind": "training", "software": {"framework": framework},
            "model": {"name": "Llama-like 0.5B", "layers": 8, "hidden": 2048, "heads": 16, "kv_heads": 4,
                      "ffn_hidden": 5632, "vocab": 32000, "activation": "swiglu", "seq_len": 2048},
            "system": {"accelerator": "H100-SXM-80GB", "count": 1, "scale_up_size": 8},
            "parallel": {"tp": 1, "pp": 1, "dp": 1, "recompute": "none", "zero": 0},
            "batch": {"global": 2, "micro": 2}, "precision": "bf16", "measured": {"iteration_time_s": 1.0}}


def test_predict_shows_the_loss_term_and_sums():
    from xlayer.api import predict

    eager, fused = predict(_llama_case("pytorch")), predict(_llama_case("megatron-lm"))
    tokens, vocab = 2 * 2048, 32000
    assert eager.memory_breakdown_bytes["logits_activation_bytes.loss"] == pytest.approx(14 * tokens * vocab)
    assert fused.memory_breakdown_bytes["logits_activation_bytes.loss"] == pytest.approx(4 * tokens * vocab)
    for r in (eager, fused):
        assert sum(r.memory_breakdown_bytes.values()) == pytest.approx(r.metrics["peak_memory_gib"] * 2**30, rel=1e-9)
    assert any("saved activations as the pytorch-eager modules" in a for a in eager.assumptions)
    ratio = eager.memory_breakdown_bytes["layer_activation_bytes.activations"] / \
        fused.memory_breakdown_bytes["layer_activation_bytes.activations"]
    assert 1.2 < ratio < 1.6  # RMSNorm fp32 copies and the unfused SwiGLU (counted above)


def _gpt2_prefill_case(software: dict) -> dict:
    """GPT-2 124M, a prefill of 8 × 1,024 tokens on one H100, under ``software``."""
    return {"id": "gpt2-prefill", "kind": "inference", "software": software,
            "model": {"name": "GPT-2 124M", "layers": 12, "hidden": 768, "heads": 12, "ffn_hidden": 3072,
                      "vocab": 50257, "activation": "gelu", "seq_len": 1024},
            "system": {"accelerator": "H100-SXM-80GB", "count": 1, "scale_up_size": 8}, "parallel": {"tp": 1, "pp": 1},
            "precision": "bf16", "request": {"batch": 8, "prompt_len": 1024, "context_len": 0, "output_len": 1},
            "measured": {"prefill_time_s": 0.01}}


def test_eager_prefill_runs_the_output_layer_on_every_position():
    """A module forward over the prompt (transformers logits_to_keep=0, gpt-fast prefill) computes
    lm_head on all T positions; an engine (vLLM) only on each sequence's last."""
    from xlayer.api import predict

    eager = predict(_gpt2_prefill_case({"framework": "pytorch", "mode": "eager"}))
    engine = predict(_gpt2_prefill_case({"framework": "vllm"}))
    assert eager.prefill.breakdown_s["output_ops"] > 10 * engine.prefill.breakdown_s["output_ops"]
    extra = eager.memory_breakdown_bytes["workspace_bytes"] - engine.memory_breakdown_bytes["workspace_bytes"]
    assert extra == pytest.approx(2 * 8 * 1024 * 50257, rel=0.01)  # the 16-bit logits of every position
    # and PyTorch's cuBLAS workspace, from its caching allocator (the engine's own accounting has none)
    assert eager.memory_breakdown_bytes["library_workspace_bytes"] == 32 * 2**20
    assert "library_workspace_bytes" not in engine.memory_breakdown_bytes
    assert any("logits_every_position" in a for a in eager.assumptions)


@pytest.mark.parametrize("cfg", [dict(), dict(h=512, heads=8, kv_heads=8, ffn=1376, seq=128, batch=2)])
def test_eager_llama_kernels_match_the_traced_modules(em, cfg):
    """layer_work(eager_modules=True): the same element-wise kernels, one for one, and the bytes
    they move, as a dispatch trace of the Hugging Face-style layer's forward and backward."""
    got, want = em.elementwise_traffic(**cfg), em.predicted_traffic(**cfg)
    assert want["fwd_kernels"] == got["fwd_kernels"] and want["bwd_kernels"] == got["bwd_kernels"]
    # with the separate q/k/v and gate/up GEMMs, every launched kernel (38 forward, 71 backward)
    assert want["fwd_all_kernels"] == got["fwd_all_kernels"] and want["bwd_all_kernels"] == got["bwd_all_kernels"]
    assert want["fwd_bytes"] == pytest.approx(got["fwd_bytes"], rel=0.01)
    assert want["bwd_bytes"] == pytest.approx(got["bwd_bytes"], rel=0.01)


def test_eager_llama_layer_is_slower_than_fused():
    from xlayer.api import predict

    eager, fused = predict(_llama_case("pytorch")), predict(_llama_case("megatron-lm"))
    e = eager.time_breakdown_s["compute.elementwise"]
    f = fused.time_breakdown_s["compute.elementwise"]
    assert 2.0 < e / f < 6.0  # fp32 RMSNorm chains, RoPE, unfused SwiGLU (bytes counted above)


def test_eager_inference_layer_uses_the_same_kernels_plus_the_cache_cat(em):
    """An eager prefill layer: the traced forward kernels (as in training) plus DynamicCache's
    torch.cat of keys and values; an engine keeps its fused kernels."""
    from xlayer.workload.inference_ops import inference_layer
    from xlayer.workload.model import ModelSpec
    from xlayer.workload.training_ops import eager_llama_inference_ops
    from xlayer.workload.transformer import AttentionSegment

    m = ModelSpec(name="l", layers=1, hidden=384, heads=6, kv_heads=2, ffn_hidden=864, vocab=1000, seq_len=96,
                  activation="swiglu", norm="rmsnorm", position="rope", bias=False)
    seg = [AttentionSegment(seqs=1, new=96)]
    fused = inference_layer(m, seg, 1, "bf16", "bf16", "flash")
    ops = eager_llama_inference_ops(m, fused.ops, seg)
    ew = [o for o in ops if o.kind == "elementwise"]
    traced = em.elementwise_traffic()
    assert len(ew) == traced["fwd_kernels"] + 2
    cat = 2 * (2 * 96 * m.kv_dim * 2)  # read and write, keys and values, 16-bit
    assert sum(o.bytes for o in ew) == pytest.approx(traced["fwd_bytes"] + cat, rel=0.01)


def test_static_cache_writes_only_the_new_tokens():
    """kv_cache="static" (a preallocated cache, as a CUDA graph replays it): the new tokens' keys
    and values written in place, whatever is cached; DynamicCache's torch.cat copies the whole
    cache, so it grows with the cached length. pytorch-cuda-graph decodes with the static cache,
    pytorch-eager with DynamicCache."""
    from xlayer.workload.inference_ops import inference_layer
    from xlayer.workload.training_ops import eager_llama_inference_ops
    from xlayer.workload.transformer import AttentionSegment

    m = ModelSpec(name="l", layers=1, hidden=384, heads=6, kv_heads=2, ffn_hidden=864, vocab=1000, seq_len=4096,
                  activation="swiglu", norm="rmsnorm", position="rope", bias=False)

    def cache_bytes(kv_cache, cached):
        seg = [AttentionSegment(seqs=4, new=1, cached=cached)]
        ops = eager_llama_inference_ops(m, inference_layer(m, seg, 1, "bf16", "bf16", "flash").ops, seg,
                                        kv_cache=kv_cache)
        return sum(o.bytes for o in ops if "_cache_" in o.name), [o.name for o in ops if "_cache_" in o.name]

    for cached in (16, 2048):
        b, names = cache_bytes("static", cached)
        assert names == ["k_cache_index_copy", "v_cache_index_copy"]
        assert b == pytest.approx(2 * (2 * 4 * m.kv_dim * 2))  # keys and values, 4 new tokens read and written
        d, names = cache_bytes("dynamic", cached)
        assert names == ["k_cache_cat", "v_cache_cat"]
        assert d == pytest.approx(2 * (2 * 4 * (cached + 1) * m.kv_dim * 2))
    assert get_profile("pytorch-cuda-graph").kv_cache == "static"
    assert get_profile("pytorch-eager").kv_cache == "dynamic"


def test_cuda_graph_decode_uses_the_profile_floor_and_the_static_cache():
    """An inference case under pytorch-cuda-graph says which floor and cache it took; at a long
    context its decode step moves less than eager's (no cache copy) even beyond the host bound."""
    from xlayer.api import predict

    def case(mode):
        return {"id": f"llama-decode-{mode}", "kind": "inference", "software": {"framework": "pytorch", "mode": mode},
                "model": {"name": "Llama-like 1B", "layers": 16, "hidden": 2048, "heads": 16, "kv_heads": 4,
                          "ffn_hidden": 5632, "vocab": 32000, "activation": "swiglu"},
                "system": {"accelerator": "H100-SXM-80GB", "count": 1, "scale_up_size": 8},
                "parallel": {"tp": 1, "pp": 1}, "precision": "bf16",
                "request": {"batch": 64, "prompt_len": 0, "context_len": 4096, "output_len": 1},
                "measured": {"decode_step_time_s": 0.01}}

    graph, eager = predict(case("cuda-graph")), predict(case("eager"))
    assert any("per-kernel overhead 2.4 us (pytorch-cuda-graph" in a for a in graph.assumptions)
    assert any("written in place" in a for a in graph.assumptions)
    assert any("torch.cat" in a for a in eager.assumptions)
    assert graph.metrics["decode_step_time_s"] < eager.metrics["decode_step_time_s"]


def test_torch_adamw_step_bytes_are_the_profile_s(em):
    """The pytorch profiles' optimizer step is what torch.optim.AdamW moves over fp32 parameters
    (traced, foreach and for-loop alike); Megatron's fused Adam keeps its 42 B."""
    from xlayer.engine.training import optimizer_step_bytes_per_param

    traced = em.adamw_step_bytes_per_param(foreach=True)
    assert em.adamw_step_bytes_per_param(foreach=False) == pytest.approx(traced, rel=1e-3)
    for name in ("pytorch-eager", "pytorch-cuda-graph", "pytorch-compiled"):
        assert get_profile(name).optimizer_step_bytes_per_param == pytest.approx(traced, rel=1e-3)
    assert optimizer_step_bytes_per_param("bf16", get_profile("megatron-lm").optimizer_step_bytes_per_param) == 42.0
    from xlayer.api import predict

    eager, fused = predict(_llama_case("pytorch")), predict(_llama_case("megatron-lm"))
    assert eager.time_breakdown_s["optimizer_step"] == pytest.approx(fused.time_breakdown_s["optimizer_step"] * 80 / 42)


def test_gelu_new_kernels_match_the_traced_module(em):
    """transformers-eager: a GELU model's activation is NewGELUActivation, kernel for kernel."""
    from xlayer.workload.training_ops import eager_gelu_new_ops

    got = em.gelu_new_traffic(tokens=96, ffn=1024)
    m = ModelSpec(name="g", layers=1, hidden=256, heads=4, ffn_hidden=1024, vocab=1000, seq_len=96,
                  activation="gelu", norm="layernorm", position="learned", bias=True)
    fwd, bwd = eager_gelu_new_ops(m, 96)
    assert (len(fwd), len(bwd)) == (got["fwd_kernels"], got["bwd_kernels"])
    assert sum(o.bytes for o in fwd) == pytest.approx(got["fwd_bytes"], rel=0.01)
    assert sum(o.bytes for o in bwd) == pytest.approx(got["bwd_bytes"], rel=0.01)
    prof = get_profile("transformers-eager")
    assert prof.eager_gelu_new and prof.saved_activations.gelu_input_bytes == 8
    assert em.predicted(profile="transformers-eager")["gpt_layer_saved_bytes"] == pytest.approx(
        em.measure()["gpt_gelu_new_layer_saved_bytes"], rel=5e-3)
    assert recipe_for(m, "bf16", "transformers").eager_gelu_new
    assert not recipe_for(m, "bf16", "pytorch").eager_gelu_new


def test_transformers_eager_inference_runs_gelu_new():
    from xlayer.api import predict

    hf = predict(_gpt2_prefill_case({"framework": "transformers"}))
    plain = predict(_gpt2_prefill_case({"framework": "pytorch"}))
    ew = "inference_op_time.elementwise"
    assert hf.prefill.breakdown_s[ew] > plain.prefill.breakdown_s[ew]


@pytest.mark.parametrize("batch,seq", [(1, 32), (8, 128)])
def test_whole_amp_step_peak_matches_real_modules(em, batch, seq):
    """A whole AMP training step of a tiny GPT on real torch modules (fp32 parameters, autocast,
    AdamW foreach, zero_grad(set_to_none=True)): few tokens peak in the optimizer step (12 B of
    parameters and moments + 4 B of gradients + 4 B of AdamW's temporary per parameter), many at
    the backward's start (activations, autocast copies, the output layer's gradient, no other);
    the persistent-states formula (18 B + activations) is 6 % off either way."""
    got = em.step_peak_bytes(batch=batch, seq=seq)
    want = em.predicted_step_peak_bytes(batch=batch, seq=seq)
    assert want == pytest.approx(got["peak_bytes"], rel=0.03)
    if batch == 1:
        assert got["peak_bytes"] / got["params"] == pytest.approx(20.0, abs=0.05)


def test_gpt_decode_kernel_counts_are_the_traced_ones(em):
    """Host-bound decode is priced per launched kernel: a torch.nn GPT layer with one-op GELU
    launches 12 kernels to decode a token, Hugging Face's with NewGELU 19, a Llama layer of transformers' modules
    40 (its RoPE tables are built once per model forward); the profiles say so."""
    from xlayer.mapping.profiles import get_profile
    assert get_profile("pytorch-eager").eager_kernels_per_layer["plain"] == em.gpt_decode_kernels() == 12
    for name in ("pytorch-eager", "transformers-eager"):
        assert get_profile(name).eager_kernels_per_layer["gated"] == em.llama_decode_kernels() == 40
    assert get_profile("transformers-eager").eager_kernels_per_layer["plain"] == em.gpt_decode_kernels(True) == 19


def test_autograd_op_counts_are_the_traced_ones(em):
    """A host-bound training layer pays one host dispatch per aten op autograd issues, views
    included: the torch.nn GPT layer 32 forward / 69 backward, with NewGELU 40 / 80, the Llama
    layer of transformers' modules 74 / 142; the eager profiles say so."""
    from xlayer.mapping.profiles import get_profile
    plain, gelu_new, gated = (em.autograd_ops_per_layer(k) for k in ("plain", "gelu_new", "gated"))
    assert (plain, gelu_new, gated) == ((32, 69), (40, 80), (74, 142))
    assert get_profile("pytorch-eager").eager_autograd_ops_per_layer == {"plain": plain, "gated": gated}
    assert get_profile("transformers-eager").eager_autograd_ops_per_layer == {"plain": gelu_new, "gated": gated}


def test_gpt_fast_eager_decode_kernels_are_the_traced_ones(em):
    """gpt-fast's model.py layer (fp32 RMSNorm, fused QKV, pairwise RoPE, a static KV cache
    written in place and repeat_interleave'd, SDPA with a mask, two-GEMM SwiGLU) launches 51
    kernels to decode a token, with or without grouped KV heads; the gpt-fast-eager profile says so."""
    from xlayer.mapping.profiles import get_profile
    assert get_profile("gpt-fast-eager").eager_kernels_per_layer == {"gated": 51}
    assert em.static_cache_decode_kernels() == em.static_cache_decode_kernels(kv_heads=2) == 51


def test_eager_cross_entropy_kernels_are_the_traced_ones(em):
    """The eager loss: F.cross_entropy(logits.float(), y) is 3 kernels forward and 3 backward
    on the module, 14 and 22 B per logit; xlayer's eager_cross_entropy_ops says the same, and
    the pytorch profiles use it (the fused vocab-parallel loss moves 8 and 6)."""
    from xlayer.mapping.profiles import get_profile
    from xlayer.workload.training_ops import eager_cross_entropy_ops, logits_work

    got = em.cross_entropy_traffic()
    T, V = 64, 4096
    fwd, bwd = eager_cross_entropy_ops(T * V, T)
    assert (len(fwd), len(bwd)) == (got["fwd_kernels"], got["bwd_kernels"]) == (3, 3)
    assert sum(o.bytes for o in fwd) / (T * V) == pytest.approx(got["fwd_bytes_per_logit"], rel=1e-3)
    assert sum(o.bytes for o in bwd) / (T * V) == pytest.approx(got["bwd_bytes_per_logit"], rel=1e-3)
    assert all(get_profile(n).eager_cross_entropy for n in ("pytorch-eager", "transformers-eager", "torchtitan"))
    m = ModelSpec(name="gpt-like", layers=1, hidden=256, heads=4, ffn_hidden=1024, vocab=V, seq_len=T,
                  activation="gelu")
    eager_f, _ = logits_work(m, 1, 1, 1, "bf16", eager_loss=True)
    fused_f, _ = logits_work(m, 1, 1, 1, "bf16")
    assert [o.name for o in eager_f][2:] == ["cross_entropy.to_fp32", "cross_entropy.log_softmax",
                                             "cross_entropy.nll_loss"]
    assert [o.name for o in fused_f][2:] == ["cross_entropy"]
