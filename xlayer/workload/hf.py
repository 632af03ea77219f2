"""Import a Hugging Face ``config.json`` (a file on disk; nothing is downloaded) as a
:class:`~xlayer.workload.model.ModelSpec`.

Families and the fields read (``transformers`` naming; the field names and their defaults
were checked against ``src/transformers/models/<name>/configuration_<name>.py`` of
huggingface/transformers — deepseek_v2, deepseek_v3, qwen3, qwen3_moe (and its
``modular_qwen3_moe.py``), gpt_oss — and the layer rules against the modeling code quoted
below):

* Llama, Mistral, Qwen2, Qwen3 (``model_type`` llama / mistral / qwen2 / qwen3):
  ``hidden_size``, ``num_hidden_layers``, ``num_attention_heads``, ``num_key_value_heads``,
  ``head_dim`` (if given; Qwen3's class default is 128), ``intermediate_size``,
  ``vocab_size``, ``max_position_embeddings``, ``tie_word_embeddings``, ``hidden_act``
  (silu → swiglu); RMSNorm, RoPE, no biases (Qwen2's q/k/v biases, (q + 2kv) per layer,
  0.002 % of Qwen2-7B, and Qwen3's per-head q/k RMSNorms, 2·head_dim per layer, are not
  counted). Mistral's ``sliding_window`` is not read (as before).
* Mixtral (``mixtral``): the Llama fields plus ``num_local_experts`` and
  ``num_experts_per_tok`` → ``model.moe`` (every layer MoE, experts of width
  ``intermediate_size``, no shared expert).
* Qwen3-MoE (``qwen3_moe``): the Qwen3 fields plus ``num_experts`` (alias
  ``num_local_experts``), ``num_experts_per_tok``, ``moe_intermediate_size``;
  ``intermediate_size`` is the width of the dense layers. A layer is MoE when
  ``layer_idx not in mlp_only_layers and num_experts > 0 and (layer_idx + 1) %
  decoder_sparse_step == 0`` (Qwen3MoeDecoderLayer); ``norm_topk_prob`` changes no size.
  ``use_sliding_window`` true puts ``sliding_window`` on every layer (Qwen3MoeAttention).
  Qwen3 dense with ``use_sliding_window``: ``layer_types`` if given, else the layers
  ``i >= max_window_layers`` (Qwen3Config).
* GPT-OSS (``gpt_oss``): ``num_local_experts`` (alias ``num_experts``),
  ``num_experts_per_tok`` (the published file also has ``experts_per_token``; both must
  agree), ``intermediate_size`` (the expert width; every layer is MoE), ``head_dim``,
  ``attention_bias`` (default true: q/k/v/o biases; the experts always carry biases, so
  ``ModelSpec.bias`` = ``attention_bias``), ``sliding_window`` and ``layer_types``
  ("sliding_attention" / "full_attention"; default: sliding on even layers, as GptOssConfig).
  Not counted: the router bias (E per layer) and the attention sinks (heads per layer),
  0.0004 % of GPT-OSS-120B. The clamped SwiGLU is a SwiGLU for sizes and FLOPs.
* DeepSeek-V2/V3 (``deepseek_v2`` / ``deepseek_v3``): ``n_routed_experts`` (null or
  ``num_experts_per_tok`` null: a dense model), ``num_experts_per_tok``,
  ``moe_intermediate_size``, ``n_shared_experts`` (each of the expert width; transformers
  builds one shared MLP of width ``moe_intermediate_size·n_shared_experts``, the same
  parameters), ``first_k_dense_replace``, ``moe_layer_freq`` (DeepSeek's modeling code: a
  layer is MoE when ``layer_idx >= first_k_dense_replace and layer_idx % moe_layer_freq ==
  0``), ``q_lora_rank`` (null: full-rank query), ``kv_lora_rank``, ``qk_nope_head_dim``,
  ``qk_rope_head_dim``, ``v_head_dim`` → ``model.mla``; ``num_nextn_predict_layers`` →
  ``model.mtp_layers`` (not in the totals: DeepSeek reports 671 B without them);
  ``head_dim`` = ``qk_nope_head_dim + qk_rope_head_dim`` (the query/key width).
* GPT-2 (``gpt2``): ``n_embd``, ``n_layer``, ``n_head``, ``n_inner`` (null → 4·h),
  ``n_positions``; LayerNorm, learned positions, biases, tied embeddings.
* GPT-NeoX / Pythia (``gpt_neox``): ``hidden_size``, ``num_hidden_layers``,
  ``num_attention_heads``, ``intermediate_size``; LayerNorm, rotary, biases, untied
  embeddings (``tie_word_embeddings``, default false).

``model.moe.dense_layers`` counts the dense layers; ModelSpec places them first. Where a
config interleaves them (``decoder_sparse_step`` > 1, ``moe_layer_freq`` > 1,
``mlp_only_layers`` not a prefix) the counts are exact and the placement is noted in
``defaults_taken``. A sliding window at least as long as the sequence is full attention and
is dropped (noted). Not supported yet: Llama 4 (``llama4``: a nested ``text_config``,
chunked attention and interleaved dense layers), refused by name of ``model_type``.

The sequence length defaults to the config's context length (``max_position_embeddings`` /
``n_positions``); a case or a caller usually gives the training sequence instead. Every
choice is listed in ``ModelSpec.defaults_taken``. A value that is missing where required,
of the wrong type, out of range or contradicting another raises
:class:`~xlayer.errors.InputError` naming the field.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from xlayer.errors import InputError
from xlayer.workload.model import ModelSpec

LLAMA_LIKE = ("llama", "mistral", "qwen2", "qwen3", "mixtral", "qwen3_moe", "gpt_oss", "deepseek_v2",
              "deepseek_v3")
SUPPORTED = LLAMA_LIKE + ("gpt2", "gpt_neox")
_MISSING = object()


def _act(name: str | None, gated: bool, where: str) -> str:
    n = (name or ("silu" if gated else "gelu")).lower()
    if gated:
        if n in ("silu", "swish"):
            return "swiglu"
        if n.startswith("gelu"):
            return "geglu"
    else:
        if n.startswith("gelu"):
            return "gelu"
        if n == "relu":
            return "relu"
    raise InputError(f"{where}.hidden_act", name, "supported: silu/swish (gated), gelu*, relu")


def _need(cfg: dict[str, Any], key: str, where: str) -> Any:
    if cfg.get(key) is None:
        raise InputError(f"{where}.{key}", None, "this field is required for this model_type")
    return cfg[key]


def _int(cfg: dict[str, Any], key: str, where: str, default: Any = _MISSING, minimum: int = 1) -> Any:
    """``cfg[key]`` as an integer ≥ ``minimum``; absent or null → ``default`` (required if none)."""
    v = cfg.get(key)
    if v is None:
        if default is _MISSING:
            raise InputError(f"{where}.{key}", None, "this field is required for this model_type")
        return default
    if isinstance(v, bool) or not isinstance(v, int):
        raise InputError(f"{where}.{key}", v, f"an integer >= {minimum}")
    if v < minimum:
        raise InputError(f"{where}.{key}", v, f"an integer >= {minimum}")
    return v


def _bool(cfg: dict[str, Any], key: str, where: str, default: bool) -> bool:
    v = cfg.get(key)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise InputError(f"{where}.{key}", v, "true or false")
    return v


def _moe(flags: list[bool], experts: int, top_k: int, width: int, shared: int, where: str, topk_field: str,
         rule: str, notes: list[str]) -> dict[str, Any] | None:
    """The ``model.moe`` block of a model whose layer ``i`` is MoE when ``flags[i]``."""
    if top_k > experts:
        raise InputError(f"{where}.{topk_field}", top_k, f"exceeds the {experts} routed experts")
    moe_count = sum(flags)
    if moe_count == 0:
        notes.append(f"no MoE layer ({rule}): a dense model")
        return None
    dense = len(flags) - moe_count
    if dense and any(flags[:dense]):
        notes.append(f"model.moe.dense_layers={dense}: the config interleaves its dense layers ({rule}); "
                     "counts exact, placed first")
    return dict(experts=experts, top_k=top_k, ffn_hidden=width, shared_experts=shared, dense_layers=dense)


def _layer_list(cfg: dict[str, Any], key: str, layers: int, where: str) -> list[int]:
    v = cfg.get(key) or []
    if not isinstance(v, list) or any(isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < layers
                                      for i in v):
        raise InputError(f"{where}.{key}", v, f"a list of layer indices in [0, {layers})")
    return v


def _sliding(types: list[bool], window: Any, seq_len: int, where: str, notes: list[str]) -> dict[str, Any] | None:
    """``model.sliding_window`` for the layers flagged in ``types``; a window ≥ seq_len is dropped."""
    n = sum(types)
    if n == 0:
        return None
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise InputError(f"{where}.sliding_window", window, f"an integer >= 1 ({n} layers use sliding attention)")
    if window >= seq_len:
        notes.append(f"sliding_window={window} >= seq_len={seq_len}: its {n} layers attend to the whole sequence")
        return None
    return dict(size=window, layers=n)


def _layer_types(cfg: dict[str, Any], layers: int, where: str) -> list[bool] | None:
    """``layer_types`` as sliding flags (None when absent)."""
    lt = cfg.get("layer_types")
    if lt is None:
        return None
    if not isinstance(lt, list) or len(lt) != layers:
        raise InputError(f"{where}.layer_types", lt, f"a list of {layers} entries (num_hidden_layers)")
    bad = [t for t in lt if t not in ("sliding_attention", "full_attention")]
    if bad:
        raise InputError(f"{where}.layer_types", bad[0], "each entry: sliding_attention or full_attention")
    return [t == "sliding_attention" for t in lt]


def _llama_like(cfg: dict[str, Any], mtype: str, seq_len: int, where: str, notes: list[str]) -> dict[str, Any]:
    layers = _int(cfg, "num_hidden_layers", where)
    heads = _int(cfg, "num_attention_heads", where)
    spec: dict[str, Any] = dict(
        layers=layers, hidden=_int(cfg, "hidden_size", where), heads=heads,
        kv_heads=_int(cfg, "num_key_value_heads", where, default=heads),
        ffn_hidden=_int(cfg, "intermediate_size", where), vocab=_int(cfg, "vocab_size", where),
        activation=_act(cfg.get("hidden_act"), True, where), position="rope", norm="rmsnorm",
        bias=bool(cfg.get("attention_bias", False) and cfg.get("mlp_bias", False)),
        tied_embeddings=_bool(cfg, "tie_word_embeddings", where, False))
    head_dim = _int(cfg, "head_dim", where, default=None)
    if head_dim is None and mtype == "qwen3":
        head_dim = 128
        notes.append("model.head_dim=128 (Qwen3Config default)")
    if head_dim is not None:
        spec["head_dim"] = head_dim
    if mtype == "qwen2":
        notes.append("Qwen2 q/k/v projection biases not counted (ModelSpec.bias is all-or-nothing)")
    if mtype in ("qwen3", "qwen3_moe"):
        notes.append("Qwen3 per-head q/k RMSNorms (2*head_dim per layer) not counted")
    if mtype == "mixtral":
        experts = _int(cfg, "num_local_experts", where)
        spec["moe"] = _moe([True] * layers, experts, _int(cfg, "num_experts_per_tok", where), spec["ffn_hidden"],
                           0, where, "num_experts_per_tok", "every layer", notes)
    elif mtype == "qwen3_moe":
        _qwen3_moe(cfg, spec, where, notes)
    elif mtype == "gpt_oss":
        _gpt_oss(cfg, spec, seq_len, where, notes)
    elif mtype in ("deepseek_v2", "deepseek_v3"):
        _deepseek(cfg, spec, mtype, where, notes)
    if mtype in ("qwen3", "qwen3_moe") and _bool(cfg, "use_sliding_window", where, False):
        flags = _layer_types(cfg, layers, where)
        if flags is None:
            if mtype == "qwen3":
                first = _int(cfg, "max_window_layers", where, default=28, minimum=0)
                flags = [i >= first for i in range(layers)]
            else:
                flags = [True] * layers
        sw = _sliding(flags, cfg.get("sliding_window"), seq_len, where, notes)
        if sw:
            spec["sliding_window"] = sw
    return spec


def _qwen3_moe(cfg: dict[str, Any], spec: dict[str, Any], where: str, notes: list[str]) -> None:
    layers = spec["layers"]
    if "head_dim" not in spec:
        notes.append("model.head_dim=hidden/heads (no head_dim in the config; Qwen3-MoE attention's fallback)")
    experts = cfg.get("num_experts", cfg.get("num_local_experts"))
    if "num_experts" in cfg and "num_local_experts" in cfg and cfg["num_experts"] != cfg["num_local_experts"]:
        raise InputError(f"{where}.num_local_experts", cfg["num_local_experts"],
                         f"disagrees with num_experts={cfg['num_experts']} (aliases)")
    experts = _int({"num_experts": experts}, "num_experts", where, default=128, minimum=0)
    if experts == 0:
        notes.append("num_experts=0: a dense model")
        return
    step = _int(cfg, "decoder_sparse_step", where, default=1)
    only = set(_layer_list(cfg, "mlp_only_layers", layers, where))
    flags = [i not in only and (i + 1) % step == 0 for i in range(layers)]
    moe = _moe(flags, experts, _int(cfg, "num_experts_per_tok", where, default=8), _int(cfg, "moe_intermediate_size",
               where), 0, where, "num_experts_per_tok", f"decoder_sparse_step={step}, mlp_only_layers={sorted(only)}",
               notes)
    if moe:
        spec["moe"] = moe


def _gpt_oss(cfg: dict[str, Any], spec: dict[str, Any], seq_len: int, where: str, notes: list[str]) -> None:
    layers = spec["layers"]
    if "num_experts" in cfg and "num_local_experts" in cfg and cfg["num_experts"] != cfg["num_local_experts"]:
        raise InputError(f"{where}.num_experts", cfg["num_experts"],
                         f"disagrees with num_local_experts={cfg['num_local_experts']} (aliases)")
    experts = _int({"num_local_experts": cfg.get("num_local_experts", cfg.get("num_experts"))}, "num_local_experts",
                   where)
    k1, k2 = cfg.get("num_experts_per_tok"), cfg.get("experts_per_token")
    if k1 is not None and k2 is not None and k1 != k2:
        raise InputError(f"{where}.experts_per_token", k2, f"disagrees with num_experts_per_tok={k1}")
    top_k = _int({"num_experts_per_tok": k1 if k1 is not None else k2}, "num_experts_per_tok", where)
    spec["moe"] = _moe([True] * layers, experts, top_k, spec["ffn_hidden"], 0, where, "num_experts_per_tok",
                       "every layer", notes)
    spec["bias"] = _bool(cfg, "attention_bias", where, True)
    if not spec["bias"]:
        notes.append("attention_bias=false: the experts' biases not counted (ModelSpec.bias is all-or-nothing)")
    notes.append("GPT-OSS router bias and attention sinks not counted (E + heads per layer)")
    flags = _layer_types(cfg, layers, where)
    if flags is None:
        flags = [(i + 1) % 2 == 1 for i in range(layers)]
        notes.append("layer_types: sliding attention on even layers (GptOssConfig default)")
    window = cfg.get("sliding_window")
    if any(flags) and window is None:
        raise InputError(f"{where}.sliding_window", None, f"required: {sum(flags)} layers are sliding_attention")
    sw = _sliding(flags, window, seq_len, where, notes)
    if sw:
        spec["sliding_window"] = sw


def _deepseek(cfg: dict[str, Any], spec: dict[str, Any], mtype: str, where: str, notes: list[str]) -> None:
    layers = spec["layers"]
    q_rank = _int(cfg, "q_lora_rank", where, default=None)
    if q_rank is None:
        notes.append("q_lora_rank=null: a full-rank query projection")
    mla = dict(q_lora_rank=q_rank, kv_lora_rank=_int(cfg, "kv_lora_rank", where),
               qk_nope_head_dim=_int(cfg, "qk_nope_head_dim", where),
               qk_rope_head_dim=_int(cfg, "qk_rope_head_dim", where), v_head_dim=_int(cfg, "v_head_dim", where))
    spec["mla"] = mla
    qk = mla["qk_nope_head_dim"] + mla["qk_rope_head_dim"]
    if "head_dim" in spec and spec["head_dim"] not in (qk, mla["qk_rope_head_dim"]):
        raise InputError(f"{where}.head_dim", spec["head_dim"],
                         f"MLA: qk_nope_head_dim + qk_rope_head_dim = {qk} (or qk_rope_head_dim)")
    spec["head_dim"] = qk
    notes.append(f"model.head_dim={qk} (MLA query/key width qk_nope_head_dim + qk_rope_head_dim)")
    mtp = _int(cfg, "num_nextn_predict_layers", where, default=0, minimum=0)
    if mtp:
        spec["mtp_layers"] = mtp
    experts = _int(cfg, "n_routed_experts", where, default=None, minimum=0)
    top_k = _int(cfg, "num_experts_per_tok", where, default=None)
    if not experts or top_k is None:
        notes.append(f"n_routed_experts={experts}, num_experts_per_tok={top_k}: a dense model")
        return
    first = _int(cfg, "first_k_dense_replace", where, default=3 if mtype == "deepseek_v3" else 0, minimum=0)
    if first > layers:
        raise InputError(f"{where}.first_k_dense_replace", first, f"exceeds num_hidden_layers={layers}")
    freq = _int(cfg, "moe_layer_freq", where, default=1)
    flags = [i >= first and i % freq == 0 for i in range(layers)]
    moe = _moe(flags, experts, top_k, _int(cfg, "moe_intermediate_size", where),
               _int(cfg, "n_shared_experts", where, default=1 if mtype == "deepseek_v3" else 2, minimum=0),
               where, "num_experts_per_tok", f"first_k_dense_replace={first}, moe_layer_freq={freq}", notes)
    if moe:
        spec["moe"] = moe


def model_from_hf_dict(cfg: dict[str, Any], seq_len: int | None = None, name: str | None = None,
                       where: str = "config.json") -> ModelSpec:
    """Turn a parsed HF config into a :class:`ModelSpec` (see the module docstring)."""
    if not isinstance(cfg, dict):
        raise InputError(where, type(cfg).__name__, "a Hugging Face config.json is a JSON object")
    mtype = cfg.get("model_type")
    if mtype not in SUPPORTED:
        raise InputError(f"{where}.model_type", mtype, f"supported: {', '.join(SUPPORTED)}")
    arch = (cfg.get("architectures") or [mtype])[0]
    notes = [f"model imported from Hugging Face config ({arch}, model_type={mtype})"]
    ctx_key = "n_positions" if mtype == "gpt2" else "max_position_embeddings"
    ctx = _int(cfg, ctx_key, where)
    if seq_len is None:
        seq_len = ctx
        notes.append(f"model.seq_len={seq_len} (the config's context length)")
    if mtype in LLAMA_LIKE:
        spec = _llama_like(cfg, mtype, seq_len, where, notes)
    elif mtype == "gpt2":
        h = _need(cfg, "n_embd", where)
        spec = dict(layers=_need(cfg, "n_layer", where), hidden=h, heads=_need(cfg, "n_head", where),
                    ffn_hidden=cfg.get("n_inner") or 4 * h, vocab=_need(cfg, "vocab_size", where),
                    activation=_act(cfg.get("activation_function"), False, where), position="learned",
                    norm="layernorm", bias=True, tied_embeddings=bool(cfg.get("tie_word_embeddings", True)))
    else:  # gpt_neox
        spec = dict(layers=_need(cfg, "num_hidden_layers", where), hidden=_need(cfg, "hidden_size", where),
                    heads=_need(cfg, "num_attention_heads", where),
                    ffn_hidden=_need(cfg, "intermediate_size", where), vocab=_need(cfg, "vocab_size", where),
                    activation=_act(cfg.get("hidden_act"), False, where), position="rope", norm="layernorm",
                    bias=True, tied_embeddings=bool(cfg.get("tie_word_embeddings", False)))
    spec.update(name=name or cfg.get("_name_or_path") or arch, seq_len=seq_len, max_seq_len=ctx,
                defaults_taken=tuple(notes))
    try:
        return ModelSpec(**spec)
    except ValueError as exc:  # pydantic ValidationError is a ValueError
        raise InputError(where, mtype, f"cannot build a model spec: {exc}") from None


def model_from_hf_config(path: str | Path, seq_len: int | None = None, name: str | None = None) -> ModelSpec:
    """Read a Hugging Face ``config.json`` on disk (or a folder holding one) as a ModelSpec."""
    p = Path(path)
    if p.is_dir():
        p = p / "config.json"
    if not p.exists():
        raise InputError("--hf-config", str(path), "file not found (give a config.json on disk)")
    try:
        cfg = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(p.name, f"line {exc.lineno}", f"malformed JSON ({exc.msg})") from None
    return model_from_hf_dict(cfg, seq_len=seq_len, name=name or (p.parent.name if p.name == "config.json" else
                                                                   p.stem), where=p.name)
