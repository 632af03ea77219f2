"""Activation recompute modes: what a layer keeps for its backward and what it re-runs.

``none`` keeps everything; ``selective`` re-runs the attention core (Korthikanti et al. 2022
§5; with a flash kernel that is what the kernel does anyway); ``full`` keeps only the layer's
input and re-runs its whole forward. Between them, Megatron-Core recomputes named submodules
(``--recompute-granularity selective --recompute-modules ...``, TransformerConfig
``recompute_modules``, megatron/core/transformer/transformer_config.py): a mode here is the
'+'-joined set of module names, e.g. ``layernorm+moe_act``.

=================  ===========================================  ===============================
module             not kept (re-run in the backward)            Megatron-Core description
=================  ===========================================  ===============================
``layernorm``      the outputs of norm1 and norm2               input_layernorm, pre_mlp_layernorm
``moe_act``        the routed experts' activation output         the MoE MLP activation
``mla_up_proj``    q, k, v after MLA's up projections and RoPE   MLA up projection and RoPE
``mlp``            a dense MLP's FC1 out, activation, FC2 in     the dense MLP layer
``shared_experts`` the shared experts' FC1 out, activation       the MoE shared experts
=================  ===========================================  ===============================

``layernorm``, ``moe_act`` and ``mla_up_proj`` discard their output after the forward and
recompute it from the input the next operator keeps anyway ("output-discarding
checkpointing", Megatron-Core ``CheckpointWithoutOutput``); ``mlp`` and ``shared_experts``
checkpoint the module and keep only its input. ``core_attn`` is ``selective``.
"""
from __future__ import annotations

from xlayer.errors import InputError

BASIC = ("none", "selective", "full")

# module -> the forward operators it re-runs (names of xlayer.workload.transformer.layer_forward
# and their quantize kernels, matched exactly or as "<name>." prefixes)
MODULE_OPS: dict[str, tuple[str, ...]] = {
    "layernorm": ("norm1", "norm2"),
    "moe_act": ("expert_activation",),
    "mla_up_proj": ("q_up", "kv_up", "mla_rope"),
    "mlp": ("fc1", "fc1_gate", "activation", "fc2"),
    "shared_experts": ("shared_fc1", "shared_activation", "shared_fc2"),
}
MODULES = tuple(MODULE_OPS)


def recompute_modules(mode: str) -> frozenset[str]:
    """The submodules a module mode re-runs (empty for none / selective / full)."""
    if mode in BASIC:
        return frozenset()
    return frozenset(mode.split("+"))


def check_recompute(mode: str) -> str:
    """``mode`` if it is none, selective, full or a '+'-joined set of MODULES; else InputError."""
    if not isinstance(mode, str) or not mode:
        raise InputError("parallel.recompute", repr(mode), f"one of none, selective, full or '+'-joined modules "
                         f"of {', '.join(MODULES)}")
    if mode in BASIC:
        return mode
    parts = mode.split("+")
    bad = [p for p in parts if p not in MODULE_OPS]
    if bad or len(set(parts)) != len(parts):
        raise InputError("parallel.recompute", mode, f"one of none, selective, full or '+'-joined modules of "
                         f"{', '.join(MODULES)} (each once)")
    return "+".join(m for m in MODULES if m in parts)  # canonical order


def model_modules(model) -> tuple[str, ...]:
    """The modules a ModelSpec has: layernorm always, moe_act with routed experts, mla_up_proj
    with MLA, mlp with dense FFN layers, shared_experts with shared experts."""
    moe = model.moe is not None
    have = {"layernorm": True, "moe_act": moe, "mla_up_proj": model.mla is not None,
            "mlp": not moe or model.moe.dense_layers > 0, "shared_experts": moe and model.moe.shared_experts > 0}
    return tuple(m for m in MODULES if have[m])


def check_recompute_for(model, mode: str) -> str:
    """:func:`check_recompute`, and every module named must be one the model has."""
    mode = check_recompute(mode)
    have = model_modules(model)
    extra = sorted(recompute_modules(mode) - set(have))
    if extra:
        raise InputError("parallel.recompute", mode, f"modules this model has: {', '.join(have)} "
                         f"(it has no {', '.join(extra)})")
    return mode


def module_modes(modules: tuple[str, ...]) -> list[str]:
    """Every non-empty set of ``modules`` as a mode string (canonical order)."""
    out = []
    n = len(modules)
    for bits in range(1, 1 << n):
        out.append("+".join(modules[i] for i in range(n) if bits >> i & 1))
    return out


def reruns(op_name: str, modules: frozenset[str]) -> bool:
    """Whether the forward operator ``op_name`` is re-run under the module set."""
    for m in modules:
        for base in MODULE_OPS[m]:
            if op_name == base or op_name.startswith(base + "."):
                return True
    return False
