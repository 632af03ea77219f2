"""Stack profiles (xlayer/mapping/profiles.py, xlayer/data/stacks): loading, selection, the
engine's use of the per-kernel floor and the eager host bound, DeepSpeed's schedule."""
from __future__ import annotations

import numpy as np
import pytest

from xlayer.engine.training import evaluate_training, host_bounded_s, recipe_for
from xlayer.hardware.catalog import get_accelerator
from xlayer.mapping.profiles import DEFAULT_PROFILE, profile_for, profiles
from xlayer.mapping.stack import default_dp_overlap, default_zero
from xlayer.workload.model import ModelSpec

REQUIRED = {"megatron-lm", "megatron-bridge", "deepspeed-2021", "pytorch-eager", "pytorch-cuda-graph",
            "pytorch-compiled", "trt-llm", "vllm", "gpt-fast"}


def small_model():
    return ModelSpec(name="t", layers=4, hidden=1024, heads=16, ffn_hidden=4096, vocab=32000, seq_len=1024,
                     activation="gelu")


def test_required_profiles_exist():
    assert REQUIRED <= {p.name for p in profiles()}


@pytest.mark.parametrize("fw,ver,mode,name", [
    (None, None, None, DEFAULT_PROFILE), ("megatron-lm", "2022", None, "megatron-lm"),
    ("nemo", None, None, "megatron-bridge"), ("deepspeed", "2021", None, "deepspeed-2021"),
    ("pytorch", None, "eager", "pytorch-eager"), ("pytorch", None, "cuda-graph", "pytorch-cuda-graph"),
    ("pytorch", None, "compiled", "pytorch-compiled"), ("gpt-fast", None, "compiled", "gpt-fast"),
    ("gpt-fast", None, None, "gpt-fast"), ("gpt-fast", None, "eager", "gpt-fast-eager"),
    ("trt-llm", "0.5", "cuda-graph", "trt-llm-0.5"), ("trt-llm", "1.0", None, "trt-llm"),
    ("vllm", None, None, "vllm"),
    ("unknown-stack", None, None, DEFAULT_PROFILE)])
def test_selection(fw, ver, mode, name):
    p, why = profile_for(fw, ver, mode)
    assert p.name == name and name in why


def test_recipe_names_profile_and_takes_software_section():
    m = small_model()
    r = recipe_for(m, "bf16")
    assert r.profile == DEFAULT_PROFILE and any("software profile" in n for n in r.notes)

    class Sw:  # a case's software section
        framework, version, mode = "pytorch", None, "eager"
    r2 = recipe_for(m, "bf16", Sw())
    assert r2.profile == "pytorch-eager" and r2.host_dispatch_s > 0


def test_stack_defaults_from_profiles():
    assert default_zero("megatron-bridge", 8) == 1 and default_zero("nemo", 1) == 0
    assert default_zero("megatron-lm", 8) == 0  # --use-distributed-optimizer is opt-in
    assert default_zero(None, 8) is None and default_zero("deepspeed", 8) is None
    assert default_dp_overlap("megatron-bridge") and not default_dp_overlap("megatron-lm")
    assert not default_dp_overlap(None) and not default_dp_overlap("deepspeed")


def test_gradient_dtype_per_profile():
    m = small_model()
    assert recipe_for(m, "bf16", "megatron-bridge").grad_bytes == 2.0
    assert recipe_for(m, "fp16", "deepspeed").grad_bytes == 2.0
    assert recipe_for(m, "bf16", "megatron-lm").grad_bytes == 4.0
    assert recipe_for(m, "fp32", "deepspeed").grad_bytes == 4.0


def test_host_bound_is_max_of_gpu_and_host():
    r = recipe_for(small_model(), "bf16", "pytorch")
    assert host_bounded_s(1e-3, 10, r) == 1e-3
    assert host_bounded_s(1e-5, 10, r) == pytest.approx(10 * r.host_dispatch_s)
    arr = host_bounded_s(np.array([1e-3, 1e-5]), 10, r)
    assert arr[0] == 1e-3 and arr[1] == pytest.approx(10 * r.host_dispatch_s)
    assert host_bounded_s(1e-5, 10, recipe_for(small_model(), "bf16")) == 1e-5


def _eval(recipe, **kw):
    from xlayer.hardware.spec import System
    acc = get_accelerator("H200-SXM-141GB")
    system = System(accelerator=acc, count=8, scale_up_size=8)
    args = dict(tp=1, pp=1, dp=8, cp=1, vp=1, micro=1)
    args.update(kw)
    return evaluate_training(small_model(), system, "bf16", 64, args["tp"], args["pp"], args["dp"], args["cp"],
                             args["vp"], args["micro"], False, "none", 0, False, recipe)


def test_eager_never_faster_than_fused_default_and_graph_floor_applies():
    m = small_model()
    fused = _eval(recipe_for(m, "bf16"))
    eager = _eval(recipe_for(m, "bf16", "pytorch"))
    graph = _eval(recipe_for(m, "bf16", "pytorch", mode="cuda-graph"))
    assert float(eager.layer_forward_time_s) >= float(graph.layer_forward_time_s)
    # the graph floor (2.4 us) is below the catalog's 4 us: fewer microseconds per kernel
    assert float(graph.layer_forward_time_s) < float(fused.layer_forward_time_s)


def test_scalar_equals_vectorized_with_eager_profile():
    r = recipe_for(small_model(), "bf16", "pytorch")
    one = [float(_eval(r, micro=mb).iteration_time_s) for mb in (1, 2, 4)]
    vec = _eval(r, tp=np.array([1, 1, 1]), pp=np.array([1, 1, 1]), dp=np.array([8, 8, 8]), cp=np.array([1, 1, 1]),
                vp=np.array([1, 1, 1]), micro=np.array([1, 2, 4]))
    assert np.allclose(one, vec.iteration_time_s, rtol=1e-9)


def _deepspeed_train_schedule(p: int, m: int, F: float, B: float, comm: float) -> float:
    """Rendezvous simulation of DeepSpeed's TrainSchedule (deepspeed/runtime/pipe/schedule.py
    @0457bb1: step -> micro-batch mapping, RecvActivation/SendGrad before a forward,
    SendActivation/RecvGrad before a backward, each a blocking pair with the neighbour)."""
    def cmds(st):
        prev, out, valid = -1, [], (lambda mb: 0 <= mb < m)
        for step in range(2 * (m + p - 1)):
            ev_s, ev_st = step % 2 == 0, st % 2 == 0
            if ev_s and ev_st:
                mb, fw = step // 2 - st // 2, True
            elif not ev_s and not ev_st:
                mb, fw = (step - 1) // 2 - st // 2, True
            elif ev_s:
                mb, fw = step // 2 - p + (st + 1) // 2, False
            else:
                mb, fw = (step - 1) // 2 - p + 1 + st // 2, False
            if fw:
                out += [("recv_act", st - 1, mb)] if valid(mb) and st > 0 else []
                out += [("send_grad", st - 1, prev)] if valid(prev) and st > 0 else []
            else:
                out += [("send_act", st + 1, prev)] if valid(prev) and st < p - 1 else []
                out += [("recv_grad", st + 1, mb)] if valid(mb) and st < p - 1 else []
            out += [("F" if fw else "B", None, mb)] if valid(mb) else []
            prev = mb
        return out
    pair = {"recv_act": "send_act", "send_act": "recv_act", "send_grad": "recv_grad", "recv_grad": "send_grad"}
    progs = [cmds(s) for s in range(p)]
    pc, t = [0] * p, [0.0] * p
    while any(pc[s] < len(progs[s]) for s in range(p)):
        moved = False
        for s in range(p):
            while pc[s] < len(progs[s]):
                op, peer, mb = progs[s][pc[s]]
                if op in ("F", "B"):
                    t[s] += F if op == "F" else B
                    pc[s] += 1
                    moved = True
                    continue
                if pc[peer] < len(progs[peer]) and progs[peer][pc[peer]] == (pair[op], s, mb):
                    t[s] = t[peer] = max(t[s], t[peer]) + comm
                    pc[s] += 1
                    pc[peer] += 1
                    moved = True
                    continue
                break
        assert moved, "deadlock"
    return max(t)


def test_deepspeed_schedule_is_1f1b_with_about_four_blocking_transfers():
    p, m = 8, 32
    assert _deepspeed_train_schedule(p, m, 1.0, 3.0, 0.0) == pytest.approx((m + p - 1) * 4.0)
    extra = (_deepspeed_train_schedule(p, m, 1.0, 3.0, 0.01) - (m + p - 1) * 4.0) / ((m + p - 1) * 0.01)
    assert 3.0 < extra <= 4.0
    assert profile_for("deepspeed")[0].p2p_per_microbatch == 4


def test_eager_inference_is_bounded_by_host_dispatch():
    """An eager host launches every kernel of a pass: Llama-style decode of 32 layers at 40
    kernels each (Hugging Face modules, traced: xlayer/data/stacks/pytorch.yaml) at 20 us per
    launch takes at least 32 x 40 x 20 us = 26 ms; the same model in a CUDA graph is HBM-bound."""
    from xlayer.prediction.case import case_from_dict
    from xlayer.prediction.inference import predict_inference

    def case(mode):
        return case_from_dict({"id": "e", "kind": "inference", "software": {"framework": "pytorch", "mode": mode},
                               "model": {"layers": 32, "hidden": 4096, "heads": 32, "ffn_hidden": 11008,
                                         "vocab": 32000, "activation": "swiglu"},
                               "system": {"accelerator": "H100-SXM-80GB", "count": 1},
                               "request": {"batch": 1, "prompt_len": 128, "output_len": 128}, "precision": "bf16"})
    eager = predict_inference(case("eager"))
    graph = predict_inference(case("cuda-graph"))
    assert eager.decode.time_s >= 32 * 40 * 20e-6
    assert eager.decode.bound == "host"
    assert graph.decode.time_s < eager.decode.time_s / 2  # HBM + 40 graph nodes a layer, no host


def test_gpt_fast_without_compile_is_the_blog_s_cpu_bound_baseline():
    """The PyTorch blog "Accelerating Generative AI with PyTorch II: GPT, Fast" (2023-11-30)
    starts from gpt-fast's model.py run eagerly: Llama-2-7B, batch 1, A100-80GB power-limited
    to 330 W, 25.5 tokens/s, "heavily CPU overhead bound". Out of sample: the gpt-fast-eager
    profile's 51 kernels per layer are traced on a re-written layer of the same structure and
    its 20 us per launch comes from our H200's kernel file. Compiled (the README's 104.9
    tokens/s, validation case gptfast-01) the same model is HBM-bound."""
    from xlayer.prediction.case import case_from_dict
    from xlayer.prediction.inference import predict_inference

    def case(mode):
        return case_from_dict({
            "id": "gf", "kind": "inference", "software": {"framework": "gpt-fast", "mode": mode},
            "model": {"layers": 32, "hidden": 4096, "heads": 32, "kv_heads": 32, "ffn_hidden": 11008,
                      "vocab": 32000, "activation": "swiglu", "seq_len": 4096},
            "system": {"accelerator": "A100-SXM-80GB", "count": 1, "overrides": {"power_limit_w": 330}},
            "request": {"batch": 1, "prompt_len": 5}, "precision": "bf16"})
    eager = predict_inference(case("eager"))
    assert eager.decode.bound == "host"
    assert 1.0 / eager.decode.time_s == pytest.approx(25.5, rel=0.25)
    assert 1.0 / predict_inference(case("compiled")).decode.time_s > 3 * 25.5


def test_a_pass_the_host_floor_sets_is_labelled_host_bound():
    """Whenever the host's launches take longer than the GPU's work the pass is host-bound,
    even when the GPU is busy for more than half of it (a 512-token eager prefill of a 7B
    Llama: ~15 ms of GPU work under a 30 ms launch floor)."""
    from xlayer.prediction.case import case_from_dict
    from xlayer.prediction.inference import predict_inference

    pred = predict_inference(case_from_dict({
        "id": "e", "kind": "inference", "software": {"framework": "pytorch", "mode": "eager"},
        "model": {"layers": 32, "hidden": 4096, "heads": 32, "ffn_hidden": 11008, "vocab": 32000,
                  "activation": "swiglu"},
        "system": {"accelerator": "H100-SXM-80GB", "count": 1},
        "request": {"batch": 1, "prompt_len": 512, "output_len": 2}, "precision": "bf16"}))
    host = pred.prefill.breakdown_s["host_dispatch_bound"]
    assert 0.0 < host < 0.5 * pred.prefill.time_s
    assert pred.prefill.bound == "host"


def test_megatron_keeps_the_distributed_optimizer_before_fsdp():
    """Megatron-Bridge runs FSDP only when asked: when its defaults (ZeRO-1, no recompute) do
    not fit, the chooser relaxes recompute before the ZeRO stage; a stated zero: 3 is kept."""
    from xlayer.prediction.case import case_from_dict
    from xlayer.prediction.training import resolve_layout
    d = {"id": "t", "kind": "training", "software": {"framework": "megatron-bridge", "version": "26.04"},
         "model": {"name": "moe", "layers": 36, "hidden": 2880, "heads": 64, "kv_heads": 8, "head_dim": 64,
                   "ffn_hidden": 2880, "vocab": 201088, "activation": "swiglu", "bias": True, "seq_len": 4096,
                   "moe": {"experts": 128, "top_k": 4, "ffn_hidden": 2880}},
         "system": {"accelerator": "B200-SXM-180GB", "count": 64, "scale_up_size": 8},
         "parallel": {"tp": 1, "pp": 1, "dp": 64, "cp": 1, "vp": 1, "ep": 8},
         "batch": {"global": 1280, "micro": 4}, "precision": "bf16"}
    lay, notes = resolve_layout(case_from_dict(d))
    assert lay.zero == 1 and lay.recompute != "none"
    assert any("FSDP only when stated" in n for n in notes)
    d["parallel"] = {**d["parallel"], "zero": 3}
    lay3, _ = resolve_layout(case_from_dict(d))
    assert lay3.zero == 3


def test_megatron_search_path_keeps_the_distributed_optimizer_too():
    """With tp and pp open (the search path of resolve_layout) the same policy: the ZeRO stage
    stays the stack's own when some layout fits with it."""
    from xlayer.prediction.case import case_from_dict
    from xlayer.prediction.training import resolve_layout
    d = {"id": "t", "kind": "training", "software": {"framework": "megatron-bridge", "version": "26.04"},
         "model": {"name": "moe", "layers": 36, "hidden": 2880, "heads": 64, "kv_heads": 8, "head_dim": 64,
                   "ffn_hidden": 2880, "vocab": 201088, "activation": "swiglu", "bias": True, "seq_len": 4096,
                   "moe": {"experts": 128, "top_k": 4, "ffn_hidden": 2880}},
         "system": {"accelerator": "B200-SXM-180GB", "count": 64, "scale_up_size": 8},
         "parallel": {"tp": None, "pp": None, "cp": 1, "ep": 8},
         "batch": {"global": 1280, "micro": 4}, "precision": "bf16"}
    lay, notes = resolve_layout(case_from_dict(d))
    assert lay.zero == 1
    assert any("FSDP only when stated" in n for n in notes)


def test_ddp_keeps_a_persistent_copy_of_the_gradients_in_its_buckets():
    """Unsharded data parallelism under PyTorch: DistributedDataParallel's buckets
    (gradient_as_bucket_view=False, its default) persist a copy of every gradient, 4 B per
    parameter under AMP; one GPU, or ZeRO-3, has none."""
    from xlayer.prediction.case import case_from_dict
    from xlayer.prediction.training import predict_training

    def case(dp, zero):
        return case_from_dict({
            "id": "d", "kind": "training", "software": {"framework": "pytorch", "mode": "eager"},
            "model": {"layers": 4, "hidden": 1024, "heads": 16, "ffn_hidden": 4096, "vocab": 32000, "seq_len": 1024,
                      "activation": "gelu"},
            "system": {"accelerator": "H100-SXM-80GB", "count": dp},
            "parallel": {"tp": 1, "pp": 1, "dp": dp, "zero": zero}, "batch": {"global": 4 * dp, "micro": 4},
            "precision": "bf16"})
    c = case(4, 0)
    ddp = predict_training(c).memory_breakdown_bytes
    assert ddp["step_peak_bytes.ddp_buckets"] == pytest.approx(4.0 * c.model.total_params(), rel=1e-6)
    assert "step_peak_bytes.ddp_buckets" not in predict_training(case(1, 0)).memory_breakdown_bytes
    assert "step_peak_bytes.ddp_buckets" not in predict_training(case(4, 3)).memory_breakdown_bytes


def test_plain_pytorch_defaults_to_ddp_and_torchtitan_to_fsdp2():
    """An open ZeRO stage: plain PyTorch's data parallelism is DistributedDataParallel (no
    sharding); torchtitan shards with FSDP2 over every data-parallel rank by default."""
    from xlayer.prediction.case import case_from_dict
    from xlayer.prediction.training import resolve_layout

    def layout(fw):
        return resolve_layout(case_from_dict({
            "id": "z", "kind": "training", "software": {"framework": fw, "mode": "eager"},
            "model": {"layers": 4, "hidden": 1024, "heads": 16, "ffn_hidden": 4096, "vocab": 32000, "seq_len": 1024,
                      "activation": "swiglu"},
            "system": {"accelerator": "H100-SXM-80GB", "count": 8},
            "parallel": {"tp": 1, "pp": 1, "dp": 8}, "batch": {"global": 32, "micro": 4}, "precision": "bf16"}))
    lay, notes = layout("pytorch")
    assert lay.zero == 0 and any("parallel.zero=0 (the stack's default" in n for n in notes)
    assert layout("torchtitan")[0].zero == 3


def test_eager_host_excess_is_named_not_left_as_pipeline_imbalance():
    """A host-bound eager layer takes max(GPU, host ops x dispatch) per direction; the breakdown
    names the excess (host.eager_dispatch_exposed) instead of leaving it to the pipeline's
    imbalance term, which a one-stage run cannot have; the terms still add up."""
    from xlayer.prediction.case import case_from_dict
    from xlayer.prediction.training import predict_training
    c = case_from_dict({"id": "gpt2", "kind": "training", "software": {"framework": "pytorch", "mode": "eager"},
                        "model": {"name": "GPT-2", "layers": 12, "hidden": 768, "heads": 12, "ffn_hidden": 3072,
                                  "vocab": 50257, "seq_len": 1024, "activation": "gelu", "bias": True},
                        "system": {"accelerator": "H100-SXM-80GB", "count": 1},
                        "parallel": {"tp": 1, "pp": 1, "dp": 1}, "batch": {"global": 8, "micro": 8},
                        "precision": "bf16"})
    p = predict_training(c, energy=False)
    tb = p.time_breakdown_s
    assert tb["host.eager_dispatch_exposed"] > 0.1 * p.iteration_time_s
    assert "pipeline_time_s.imbalance" not in tb
    assert sum(tb.values()) == pytest.approx(p.iteration_time_s, rel=1e-9)


def test_fp16_classic_attention_is_the_megatron_recipe_not_plain_pytorch_s():
    """fp16 left open: Megatron-LM and DeepSpeed (and the default profile) take the 2020-22
    recipe (fused-softmax attention, dropout 0.1); plain PyTorch stacks run SDPA's flash kernel."""
    m = small_model()
    assert recipe_for(m, "fp16").attention == "classic"
    assert recipe_for(m, "fp16", "megatron-lm").attention == "classic"
    assert recipe_for(m, "fp16", "deepspeed").attention == "classic"
    for fw in ("pytorch", "torchtitan", "transformers"):
        r = recipe_for(m, "fp16", fw)
        assert (r.attention, r.dropout) == ("flash", 0.0), fw
    assert recipe_for(m, "bf16", "pytorch").attention == "flash"
