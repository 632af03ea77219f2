"""The case contract (shared/validation/README.md): every field it allows loads, an absent key
means null, open choices are resolved and said, unmodelled features are named, and what
cannot be right is refused with the field named."""
from __future__ import annotations

import copy
import math

import pytest

from xlayer.errors import InputError
from xlayer.prediction.training import predict_training
from xlayer.prediction.case import case_from_dict, load_case

BASE = {
    "id": "contract", "kind": "training",
    "model": {"name": "GPT 22B", "layers": 48, "hidden": 6144, "heads": 64, "vocab": 51200, "seq_len": 2048},
    "system": {"accelerator": "A100-SXM-80GB", "count": 64, "scale_up_size": 8},
    "parallel": {"tp": 8, "pp": 1, "dp": 8, "cp": 1, "vp": 1, "sp": True, "recompute": "selective", "zero": 1},
    "batch": {"global": 64, "micro": 1},
    "precision": "bf16",
}


def case(**changes):
    d = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        *path, key = dotted.split("__")
        node = d
        for p in path:
            node = node.setdefault(p, {})
        if value is ...:
            node.pop(key, None)
        else:
            node[key] = value
    return d


def test_every_shared_case_loads(shared_validation):
    files = sorted(shared_validation.rglob("*.yaml"))
    assert len(files) >= 150
    for f in files:
        c = load_case(f)
        assert c.id == f.stem


def test_software_block():
    c = case_from_dict(case(software={"framework": "megatron-bridge", "version": 26.04, "mode": "CUDA_GRAPH"}))
    assert (c.software.framework, c.software.version, c.software.mode) == ("megatron-bridge", "26.04", "cuda-graph")
    with pytest.raises(InputError, match="software.mode"):
        case_from_dict(case(software={"mode": "jit"}))
    with pytest.raises(InputError, match="software.colour"):
        case_from_dict(case(software={"colour": "red"}))


def test_absent_key_means_null():
    a = case_from_dict(case(model__kv_heads=None, model__activation=None, parallel__sp=None))
    b = case_from_dict(case(model__kv_heads=..., model__activation=..., parallel__sp=...))
    assert a.model == b.model and a.parallel == b.parallel
    assert a.model.kv_heads == 64 and a.model.activation == "gelu"


def test_every_parallel_key_open_predicts_and_says_which():
    c = case_from_dict(case(parallel={k: None for k in BASE["parallel"]}, batch__micro=None))
    p = predict_training(c, energy=False)
    said = " ".join(p.assumptions)
    for k in ("tp", "pp", "dp", "recompute", "zero"):
        assert f"parallel.{k}=" in said, k
    assert p.layout.world == 64 and p.fits_memory
    # and with no parallel block at all
    d = case()
    del d["parallel"]
    d["batch"]["micro"] = None
    assert predict_training(case_from_dict(d), energy=False).layout.world == 64


def test_inference_case_without_seq_len():
    d = {"id": "inf", "kind": "inference",
         "model": {"layers": 32, "hidden": 4096, "heads": 32, "vocab": 32000, "activation": "swiglu"},
         "system": {"accelerator": "H100-SXM-80GB", "count": 1},
         "request": {"batch": 1, "prompt_len": 100, "output_len": 28}, "precision": "bf16"}
    c = case_from_dict(d)
    assert c.model.seq_len == 128 and c.parallel.tp == 1
    assert any("model.seq_len=128" in a for a in c.assumptions)


def test_new_model_sections_parse_and_are_named_unmodelled():
    c = case_from_dict(case(model__moe={"experts": 64, "top_k": 8, "ffn_hidden": 1024},
                            model__head_dim=128, parallel__ep=8))
    assert c.model.moe.experts == 64 and c.model.head_dim == 128 and c.parallel.ep == 8
    assert predict_training(c, energy=False).layout.ep == 8  # MoE training is modelled
    c = case_from_dict(case(model__mla={"q_lora_rank": 1536, "kv_lora_rank": 512, "qk_nope_head_dim": 128,
                                        "qk_rope_head_dim": 64, "v_head_dim": 128},
                            model__sliding_window={"size": 128, "layers": 24}))
    p = predict_training(c, energy=False)  # MLA and sliding windows are modelled for training
    assert p.iteration_time_s > 0
    inf = {"id": "inf", "kind": "inference", "model": {**c.model.model_dump(exclude={"defaults_taken"}),
                                                       "mtp_layers": 1},
           "system": {"accelerator": "A100-SXM-80GB", "count": 1}, "request": {"batch": 1, "prompt_len": 16}}
    # MTP layers at inference draft tokens only under speculative decoding, which the case
    # does not state: predicted without them, and said so
    from xlayer.prediction.inference import predict_inference
    p = predict_inference(case_from_dict(inf))
    assert any(a.startswith("model.mtp_layers=1 not run") for a in p.assumptions)
    no_mtp = dict(inf, model={k: v for k, v in inf["model"].items() if k != "mtp_layers"})
    assert p.prefill.time_s == pytest.approx(predict_inference(case_from_dict(no_mtp)).prefill.time_s)


@pytest.mark.parametrize("spelling,name", [("mxfp8", "mxfp8"), ("NVFP4", "nvfp4"), ("FP8-CS", "fp8"),
                                           ("FP8-MX", "mxfp8"), ("bf16_with_mxfp8_mixed", "mxfp8"),
                                           ("bf16_with_nvfp4_mixed", "nvfp4"), ("BF16", "bf16"),
                                           ("bf16_with_fp8_current_scaling_mixed", "fp8")])
def test_precision_spellings(spelling, name):
    c = case_from_dict(case(precision=spelling, system__accelerator="GB200-NVL72", system__scale_up_size=72))
    assert c.precision == name
    if spelling.lower() != name:
        assert any(spelling in a for a in c.assumptions)


def test_block_scaled_formats_are_their_own():
    from xlayer.hardware.catalog import get_accelerator
    from xlayer.workload.precision import gemm_input_bytes
    gb = get_accelerator("GB200-NVL72")
    assert gb.peak("mxfp8") == gb.peak("fp8") and gb.peak("nvfp4") == gb.peak("fp4")
    # scale factors: one E8M0 byte per 32 elements, one E4M3 byte per 16 (+ 0.5 B per FP4 value)
    assert gemm_input_bytes("mxfp8") == 1 + 1 / 32 and gemm_input_bytes("nvfp4") == 0.5 + 1 / 16
    with pytest.raises(InputError, match="precision.*no mxfp8 tensor cores"):
        case_from_dict(case(precision="mxfp8", system__accelerator="H100-SXM-80GB"))


def test_b300_and_rack_parts_load():
    for name in ("B300-SXM-288GB", "GB300-NVL72", "GB200-NVL72", "B200-SXM-180GB"):
        c = case_from_dict(case(system__accelerator=name, system__scale_up_size=None))
        assert c.system_spec().accelerator.name == name


def test_embedding_and_loss_as_pipeline_stages():
    # 46 layers + embedding + loss = 48 slots on pp 8 x vp 6 = 48 chunks: accepted
    c = case_from_dict(case(model__layers=46, parallel__tp=8, parallel__pp=8, parallel__vp=6, parallel__dp=1,
                            batch__global=64))
    p = predict_training(c, energy=False)
    assert p.iteration_time_s > 0
    with pytest.raises(InputError, match="parallel.pp"):
        case_from_dict(case(model__layers=45, parallel__pp=8, parallel__vp=6, parallel__dp=1)) and \
            predict_training(case_from_dict(case(model__layers=45, parallel__pp=8, parallel__vp=6, parallel__dp=1)))


@pytest.mark.parametrize("changes,field", [
    ({"model__layers": True}, "model.layers"),
    ({"batch__global": 10 ** 30}, "batch.global"),
    ({"model__hidden": 12.5}, "model.hidden"),
    ({"precision": "int8"}, "precision"),
    ({"precision": "int4"}, "precision"),
    ({"measured": {"iteration_time_s": -1.0}}, "measured"),
    ({"measured": {"iteration_time_s": float("nan")}}, "measured"),
    ({"measured": {"iteration_time_s": float("inf")}}, "measured"),
    ({"measured": {"iteration_time_s": True}}, "measured"),
    ({"system__scale_up_size": 16}, "system.scale_up_size"),
    ({"parallel__zero": True}, "parallel.zero"),
    ({"model__moe": {"experts": 4, "top_k": 8}}, "model.moe"),
    ({"model__mla": {"kv_lora_rank": 0, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128}},
     "model.mla.kv_lora_rank"),
    ({"model__sliding_window": {"size": 4096, "layers": 4}}, "model"),
    ({"software": {"framework": ["a"]}}, "software.framework"),
])
def test_nonsense_is_refused_naming_the_field(changes, field):
    with pytest.raises(InputError) as err:
        case_from_dict(case(**changes))
    assert err.value.field.startswith(field), (err.value.field, str(err.value))


def test_rack_count_not_multiple_is_a_note():
    c = case_from_dict(case(system__accelerator="GB200-NVL72", system__scale_up_size=72, system__count=100,
                            parallel__dp=None, parallel__tp=4, parallel__pp=1))
    assert any("not a multiple of scale_up_size=72" in a for a in c.assumptions)


def test_overrides_make_a_variant():
    c = case_from_dict(case(system__accelerator="H100-SXM-80GB",
                            system__overrides={"hbm_capacity_gib": 96, "hbm_bandwidth_bytes_per_s": 2.4e12,
                                               "power_limit_w": 500}))
    acc = c.system_spec().accelerator
    assert acc.hbm.capacity_bytes == 96 * 2 ** 30 and acc.hbm.bandwidth_bytes_per_s == 2.4e12
    from xlayer.cost.compute import gemm_rate_flops_per_s
    from xlayer.hardware.catalog import get_accelerator
    # P ∝ f³ under DVFS: the GEMM rate scales with (500/700)^(1/3)
    ratio = gemm_rate_flops_per_s(acc, "bf16") / gemm_rate_flops_per_s(get_accelerator("H100-SXM-80GB"), "bf16")
    assert ratio == pytest.approx((500 / 700) ** (1 / 3))
    with pytest.raises(InputError, match="system.overrides.hbm_gigabytes"):
        case_from_dict(case(system__overrides={"hbm_gigabytes": 96}))


def test_a_case_that_ran_predicts_with_a_memory_warning():
    # GPT-3 175B on one DGX (tp8, no sharding, no recompute) cannot hold 18 B/param: the case is
    # still predicted, and the disagreement is reported
    d = case(model={"layers": 96, "hidden": 12288, "heads": 96, "vocab": 51200, "seq_len": 2048},
             system__count=8, parallel={"tp": 8, "pp": 1, "dp": 1, "recompute": "none", "zero": 0, "sp": True},
             batch={"global": 8, "micro": 1}, measured={"iteration_time_s": 10.0})
    from xlayer.validation.runner import _predict
    metrics, warning = _predict(case_from_dict(d))
    assert metrics["iteration_time_s"] > 0
    assert warning and "exceeds" in warning


def test_context_parallel_reduces_and_shards_over_dp_times_cp():
    """Megatron reduces gradients over the data-parallel group with context parallel: dp 1 x cp 8
    must shard the optimizer over 8 ranks and spend time reducing gradients."""
    d = case(model={"layers": 32, "hidden": 4096, "heads": 32, "kv_heads": 8, "ffn_hidden": 14336,
                    "activation": "swiglu", "vocab": 128256, "seq_len": 32768},
             system__count=64, system__accelerator="H100-SXM-80GB",
             parallel={"tp": 8, "pp": 1, "dp": 1, "cp": 8, "recompute": "none", "zero": 1, "sp": True},
             batch={"global": 16, "micro": 1})
    p = predict_training(case_from_dict(d), energy=False)
    m = case_from_dict(d).model
    # the layers' share: matrices split over tp = 8, norms replicated; Adam's 12 B per parameter
    # sharded over dp x cp = 8 (not over dp = 1)
    layer_params_rank = m.layers * ((m.layer_params() - m.norm_params()) / 8 + m.norm_params())
    assert p.memory_breakdown_bytes["model_state_bytes.optimizer"] == pytest.approx(12 * layer_params_rank / 8)
    assert p.time_breakdown_s["comm.dp_exposed"] > 0


def test_mfu_and_hfu_never_exceed_one_at_long_sequence():
    d = case(model={"layers": 8, "hidden": 4096, "heads": 32, "vocab": 32000, "seq_len": 131072,
                    "activation": "swiglu"},
             system__count=8, system__accelerator="H100-SXM-80GB",
             parallel={"tp": 8, "pp": 1, "dp": 1, "cp": 1, "recompute": "full", "zero": 0, "sp": True},
             batch={"global": 1, "micro": 1})
    p = predict_training(case_from_dict(d), energy=False)
    assert 0 < p.mfu < p.hfu <= 1.0
    # HFU counts the recomputed forward: exactly 4/3 of the model FLOPs with full recompute
    assert p.hfu / p.mfu == pytest.approx(4 / 3)
    assert math.isfinite(p.metrics["model_tflops_per_gpu"])
