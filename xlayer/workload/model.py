"""Transformer architectures (GPT and Llama families, optional MoE) as a frozen spec.

Fields a source may leave out get the family default of the architecture they describe
(gated FFN ⇒ Llama-style: RMSNorm, RoPE, no biases, untied embeddings; plain FFN ⇒
GPT-style: LayerNorm, learned positions, biases, tied embeddings). ``defaults_taken``
lists every default that was filled in, so predictions can say what they assumed.
"""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator

Activation = Literal["gelu", "relu", "squared_relu", "swiglu", "geglu"]
GATED = ("swiglu", "geglu")


class ModelSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = "model"
    layers: PositiveInt
    hidden: PositiveInt
    heads: PositiveInt
    kv_heads: Optional[PositiveInt] = None
    head_dim: Optional[PositiveInt] = None
    ffn_hidden: Optional[PositiveInt] = None
    activation: Activation = "gelu"
    vocab: PositiveInt
    seq_len: PositiveInt
    position: Optional[Literal["learned", "rope", "alibi"]] = None
    bias: Optional[bool] = None
    tied_embeddings: Optional[bool] = None
    norm: Optional[Literal["layernorm", "rmsnorm"]] = None
    # attention kernel: flash (no s^2 tensors stored) or classic (materialised scores)
    attention: Optional[Literal["flash", "classic"]] = None
    dropout: Optional[float] = Field(None, ge=0.0, lt=1.0)
    # mixture of experts: experts per MoE layer and experts each token visits
    experts: PositiveInt = 1
    top_k: PositiveInt = 1
    max_seq_len: Optional[PositiveInt] = None
    defaults_taken: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _fill(self) -> "ModelSpec":
        taken: list[str] = list(self.defaults_taken)
        gated = self.activation in GATED

        def put(field: str, value, why: str) -> None:
            object.__setattr__(self, field, value)
            taken.append(f"model.{field}={value} ({why})")

        if self.kv_heads is None:
            put("kv_heads", self.heads, "no GQA stated")
        if self.head_dim is None:
            if self.hidden % self.heads:
                raise ValueError(f"heads={self.heads} does not divide hidden={self.hidden}; give head_dim")
            object.__setattr__(self, "head_dim", self.hidden // self.heads)
        if self.ffn_hidden is None:
            put("ffn_hidden", 4 * self.hidden, "4*hidden")
        family = "Llama family" if gated else "GPT family"
        if self.position is None:
            put("position", "rope" if gated else "learned", family)
        if self.bias is None:
            put("bias", not gated, family)
        if self.tied_embeddings is None:
            put("tied_embeddings", not gated, family)
        if self.norm is None:
            put("norm", "rmsnorm" if gated else "layernorm", family)
        if self.heads % self.kv_heads:
            raise ValueError(f"kv_heads={self.kv_heads} does not divide heads={self.heads}")
        if self.top_k > self.experts:
            raise ValueError(f"top_k={self.top_k} exceeds experts={self.experts}")
        object.__setattr__(self, "defaults_taken", tuple(taken))
        return self

    # ---- derived sizes -------------------------------------------------------------
    @property
    def gated(self) -> bool:
        return self.activation in GATED

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    @property
    def ffn_matrices(self) -> int:
        return 3 if self.gated else 2

    @property
    def moe(self) -> bool:
        return self.experts > 1

    def attention_params(self) -> int:
        """QKV and output projection weights (+ biases): h·(q+2kv) + q·h."""
        h = self.hidden
        w = h * (self.q_dim + 2 * self.kv_dim) + self.q_dim * h
        b = (self.q_dim + 2 * self.kv_dim + h) if self.bias else 0
        return w + b

    def ffn_params(self) -> int:
        """One expert's FFN: (2 or 3)·h·f (+ biases), times the expert count, plus the router."""
        h, f = self.hidden, self.ffn_hidden
        one = self.ffn_matrices * h * f + ((f * (self.ffn_matrices - 1) + h) if self.bias else 0)
        router = h * self.experts if self.moe else 0
        return one * self.experts + router

    def norm_params(self) -> int:
        per = 2 * self.hidden if self.norm == "layernorm" else self.hidden
        return 2 * per

    def layer_params(self) -> int:
        return self.attention_params() + self.ffn_params() + self.norm_params()

    def embedding_params(self) -> int:
        """Token embedding V·h (+ learned positions s·h); the output layer adds V·h if untied."""
        pos = self.seq_len * self.hidden if self.position == "learned" else 0
        return self.vocab * self.hidden + pos

    def output_params(self) -> int:
        final_norm = 2 * self.hidden if self.norm == "layernorm" else self.hidden
        return final_norm + (0 if self.tied_embeddings else self.vocab * self.hidden)

    def total_params(self) -> int:
        return self.layers * self.layer_params() + self.embedding_params() + self.output_params()

    def active_params(self) -> int:
        """Parameters a token touches (MoE: top_k experts instead of all)."""
        if not self.moe:
            return self.total_params()
        dense_ffn = self.ffn_params() - self.hidden * self.experts
        per_expert = dense_ffn // self.experts
        active_layer = self.layer_params() - self.ffn_params() + per_expert * self.top_k
        return self.layers * active_layer + self.embedding_params() + self.output_params()
