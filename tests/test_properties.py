"""Properties over random valid layouts (hypothesis)."""
from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import gpt
from xlayer.engine.vectorized import evaluate_layouts
from xlayer.hardware import get_accelerator
from xlayer.hardware.spec import System
from xlayer.engine.training import evaluate_training, recipe_for

MODEL = gpt(layers=32, hidden=4096, heads=32, kv_heads=8, ffn_hidden=11008, activation="swiglu", vocab=32000,
            seq_len=4096)
ACC = get_accelerator("H100-SXM-80GB")


@st.composite
def layouts(draw):
    tp = draw(st.sampled_from([1, 2, 4, 8]))
    pp = draw(st.sampled_from([1, 2, 4, 8]))
    cp = draw(st.sampled_from([1, 2]))
    dp = draw(st.sampled_from([1, 2, 4, 8]))
    vp = draw(st.sampled_from([1, 2])) if pp > 1 else 1
    micro = draw(st.sampled_from([1, 2]))
    m = draw(st.sampled_from([1, 2, 4])) * pp
    gb = m * micro * dp
    sp = draw(st.booleans())
    rc = draw(st.sampled_from(["none", "selective", "full"]))
    zero = draw(st.sampled_from([0, 1, 2, 3]))
    prec = draw(st.sampled_from(["bf16", "fp8"]))
    return dict(tp=tp, pp=pp, cp=cp, dp=dp, vp=vp, micro=micro, gb=gb, sp=sp, rc=rc, zero=zero, prec=prec)


def _eval(L, **over):
    L = {**L, **over}
    system = System(accelerator=ACC, count=L["tp"] * L["pp"] * L["dp"] * L["cp"], scale_up_size=8)
    return evaluate_training(MODEL, system, L["prec"], L["gb"], L["tp"], L["pp"], L["dp"], L["cp"], L["vp"],
                             L["micro"], L["sp"], L["rc"], L["zero"], False, recipe_for(MODEL, L["prec"]),
                             detail=True)


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(layouts())
def test_times_finite_and_positive(L):
    r = _eval(L)
    for k in ("iteration_time_s", "memory_bytes", "layer_forward_time_s", "layer_backward_time_s"):
        assert math.isfinite(r.value(k)) and r.value(k) > 0, k
    assert 0 < r.mfu < 1


@SETTINGS
@given(layouts())
def test_no_pipeline_no_bubble(L):
    r = _eval(L, pp=1, vp=1)
    assert r.bubble_s == 0.0


@SETTINGS
@given(layouts())
def test_zero0_has_no_weight_allgather(L):
    r = _eval(L, zero=0)
    d = r.detail
    assert d.layer.fsdp_fwd_s == 0.0 and d.layer.fsdp_bwd_s == 0.0
    assert d.memory.weights == d.params_rank * 2


@SETTINGS
@given(layouts())
def test_doubling_tp_never_raises_weight_memory(L):
    if L["tp"] == 8:
        L = {**L, "tp": 4}
    a = _eval(L).detail.memory.weights
    b = _eval(L, tp=2 * L["tp"]).detail.memory.weights
    assert b <= a


@SETTINGS
@given(layouts())
def test_more_recompute_less_activation_memory(L):
    acts = [_eval(L, rc=rc).detail.memory.activation_per_layer for rc in ("none", "selective", "full")]
    assert acts[0] >= acts[1] >= acts[2]


@settings(max_examples=20, deadline=None)
@given(st.lists(layouts(), min_size=1, max_size=6))
def test_scalar_and_vectorized_paths_agree(Ls):
    # group by the categorical fields and by global batch (one vectorized call per group)
    for L in Ls:
        group = [M for M in Ls if all(M[k] == L[k] for k in ("sp", "rc", "zero", "prec", "gb"))]
        count = L["tp"] * L["pp"] * L["dp"] * L["cp"]
        group = [M for M in group if M["tp"] * M["pp"] * M["dp"] * M["cp"] == count]
        arrays = {k: np.array([M[k] for M in group]) for k in ("tp", "pp", "dp", "cp", "vp", "micro")}
        system = System(accelerator=ACC, count=count, scale_up_size=8)
        vec = evaluate_layouts(MODEL, system, L["prec"], L["gb"], arrays, L["sp"], L["rc"], L["zero"],
                               recipe_for(MODEL, L["prec"]))
        for i, M in enumerate(group):
            s = _eval(M)
            assert vec["valid"][i]
            assert vec["iteration_time_s"][i] == np.float64(s.iteration_time_s) or \
                abs(vec["iteration_time_s"][i] / s.iteration_time_s - 1) < 1e-12
            assert abs(vec["memory_bytes"][i] / s.memory_bytes - 1) < 1e-12
