"""Import a Hugging Face ``config.json`` (a file on disk; nothing is downloaded) as a
:class:`~xlayer.workload.model.ModelSpec`.

Families and the fields read (``transformers`` naming):

* Llama, Mistral, Qwen2 (``model_type`` llama / mistral / qwen2), and Mixtral (MoE):
  ``hidden_size``, ``num_hidden_layers``, ``num_attention_heads``, ``num_key_value_heads``,
  ``head_dim`` (if given), ``intermediate_size``, ``vocab_size``, ``max_position_embeddings``,
  ``tie_word_embeddings``, ``hidden_act`` (silu → swiglu); RMSNorm, RoPE, no biases
  (Qwen2's q/k/v biases, (q + 2kv) per layer, 0.002 % of Qwen2-7B, are not counted).
* GPT-2 (``gpt2``): ``n_embd``, ``n_layer``, ``n_head``, ``n_inner`` (null → 4·h),
  ``n_positions``; LayerNorm, learned positions, biases, tied embeddings.
* GPT-NeoX / Pythia (``gpt_neox``): ``hidden_size``, ``num_hidden_layers``,
  ``num_attention_heads``, ``intermediate_size``; LayerNorm, rotary, biases, untied
  embeddings (``tie_word_embeddings``, default false).

The sequence length defaults to the config's context length (``max_position_embeddings`` /
``n_positions``); a case or a caller usually gives the training sequence instead. Every
choice is listed in ``ModelSpec.defaults_taken``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from xlayer.errors import InputError
from xlayer.workload.model import ModelSpec

LLAMA_LIKE = ("llama", "mistral", "qwen2", "mixtral")
SUPPORTED = LLAMA_LIKE + ("gpt2", "gpt_neox")


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
    if mtype in LLAMA_LIKE:
        heads = _need(cfg, "num_attention_heads", where)
        ctx = _need(cfg, "max_position_embeddings", where)
        spec: dict[str, Any] = dict(
            layers=_need(cfg, "num_hidden_layers", where), hidden=_need(cfg, "hidden_size", where),
            heads=heads, kv_heads=cfg.get("num_key_value_heads") or heads,
            ffn_hidden=_need(cfg, "intermediate_size", where), vocab=_need(cfg, "vocab_size", where),
            activation=_act(cfg.get("hidden_act"), True, where), position="rope", norm="rmsnorm",
            bias=bool(cfg.get("attention_bias", False) and cfg.get("mlp_bias", False)),
            tied_embeddings=bool(cfg.get("tie_word_embeddings", False)))
        if cfg.get("head_dim"):
            spec["head_dim"] = cfg["head_dim"]
        if mtype == "qwen2":
            notes.append("Qwen2 q/k/v projection biases not counted (ModelSpec.bias is all-or-nothing)")
        if mtype == "mixtral":
            spec["experts"] = _need(cfg, "num_local_experts", where)
            spec["top_k"] = _need(cfg, "num_experts_per_tok", where)
    elif mtype == "gpt2":
        h = _need(cfg, "n_embd", where)
        ctx = _need(cfg, "n_positions", where)
        spec = dict(layers=_need(cfg, "n_layer", where), hidden=h, heads=_need(cfg, "n_head", where),
                    ffn_hidden=cfg.get("n_inner") or 4 * h, vocab=_need(cfg, "vocab_size", where),
                    activation=_act(cfg.get("activation_function"), False, where), position="learned",
                    norm="layernorm", bias=True, tied_embeddings=bool(cfg.get("tie_word_embeddings", True)))
    else:  # gpt_neox
        ctx = _need(cfg, "max_position_embeddings", where)
        spec = dict(layers=_need(cfg, "num_hidden_layers", where), hidden=_need(cfg, "hidden_size", where),
                    heads=_need(cfg, "num_attention_heads", where),
                    ffn_hidden=_need(cfg, "intermediate_size", where), vocab=_need(cfg, "vocab_size", where),
                    activation=_act(cfg.get("hidden_act"), False, where), position="rope", norm="layernorm",
                    bias=True, tied_embeddings=bool(cfg.get("tie_word_embeddings", False)))
    if seq_len is None:
        seq_len = int(ctx)
        notes.append(f"model.seq_len={seq_len} (the config's context length)")
    spec.update(name=name or cfg.get("_name_or_path") or arch, seq_len=seq_len, max_seq_len=int(ctx),
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
