"""Hugging Face config.json import: the shipped configs give the model cards' parameter counts."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from xlayer.errors import InputError
from xlayer.workload.hf import model_from_hf_config, model_from_hf_dict

HF = Path(__file__).resolve().parent / "fixtures" / "hf"

# parameter counts stated on the model cards / papers
CARDS = {
    "Llama-2-7b-hf": 6.74e9,      # Llama 2 paper, Table 1 ("7B": 6.74 B in the HF card)
    "Meta-Llama-3-8B": 8.03e9,    # model card: 8.03 B
    "Mistral-7B-v0.1": 7.24e9,    # Mistral 7B card: 7.24 B
    "Qwen2-7B": 7.62e9,           # Qwen2 card: 7.62 B (7.07 B non-embedding)
    "gpt2": 124e6,                # GPT-2 small: 124 M
    "pythia-1b": 1.011781632e9,   # Pythia card: 1,011,781,632 total
}


@pytest.mark.parametrize("name", sorted(CARDS))
def test_parameter_count_matches_model_card(name):
    m = model_from_hf_config(HF / name / "config.json")
    assert m.total_params() == pytest.approx(CARDS[name], rel=0.01)
    assert m.name == name and any("Hugging Face" in d for d in m.defaults_taken)


def test_families_map_to_the_right_architecture():
    llama3 = model_from_hf_config(HF / "Meta-Llama-3-8B", seq_len=4096)  # a folder holding config.json
    assert (llama3.activation, llama3.norm, llama3.position, llama3.bias, llama3.tied_embeddings) == \
        ("swiglu", "rmsnorm", "rope", False, False)
    assert (llama3.kv_heads, llama3.head_dim, llama3.seq_len, llama3.max_seq_len) == (8, 128, 4096, 8192)
    gpt2 = model_from_hf_config(HF / "gpt2" / "config.json")
    assert (gpt2.activation, gpt2.norm, gpt2.position, gpt2.bias, gpt2.tied_embeddings, gpt2.ffn_hidden) == \
        ("gelu", "layernorm", "learned", True, True, 3072)
    neox = model_from_hf_config(HF / "pythia-1b" / "config.json")
    assert (neox.position, neox.tied_embeddings, neox.bias) == ("rope", False, True)
    # Pythia card: 805,736,448 non-embedding parameters (layers + final norm)
    assert neox.total_params() - 2 * neox.vocab * neox.hidden == 805_736_448


def test_mixtral_moe_counts_total_and_active():
    cfg = json.loads((HF / "Mistral-7B-v0.1" / "config.json").read_text())
    cfg.update(model_type="mixtral", num_local_experts=8, num_experts_per_tok=2)
    m = model_from_hf_dict(cfg)
    assert m.total_params() == pytest.approx(46.7e9, rel=0.01)   # Mixtral 8x7B: 46.7 B total
    assert m.active_params() == pytest.approx(12.9e9, rel=0.01)  # 12.9 B active per token


def test_bad_configs_name_the_field(tmp_path):
    with pytest.raises(InputError, match="model_type"):
        model_from_hf_dict({"model_type": "bert"})
    cfg = json.loads((HF / "Llama-2-7b-hf" / "config.json").read_text())
    del cfg["hidden_size"]
    with pytest.raises(InputError, match="hidden_size"):
        model_from_hf_dict(cfg)
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="malformed JSON"):
        model_from_hf_config(bad)
    with pytest.raises(InputError, match="not found"):
        model_from_hf_config(tmp_path / "nothing.json")
