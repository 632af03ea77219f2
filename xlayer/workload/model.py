"""Transformer architectures (GPT and Llama families, optional MoE) as a frozen spec.

Fields a source may leave out get the family default of the architecture they describe
(gated FFN ⇒ Llama-style: RMSNorm, RoPE, no biases, untied embeddings; plain FFN ⇒
GPT-style: LayerNorm, learned positions, biases, tied embeddings). ``defaults_taken``
lists every default that was filled in, so predictions can say what they assumed.
"""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import ConfigDict, Field, model_validator

from xlayer.specs import Count, NonNegativeCount, NullMeansDefault

Activation = Literal["gelu", "relu", "squared_relu", "swiglu", "geglu"]
GATED = ("swiglu", "geglu")


class MoESpec(NullMeansDefault):
    """Mixture of experts (validation README, "Mixture of experts"): ``experts`` routed experts
    per MoE layer of width ``ffn_hidden``, each token visits ``top_k`` of them and every
    ``shared_experts`` one; the first ``dense_layers`` layers keep a dense FFN."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    experts: Count
    top_k: Count
    ffn_hidden: Optional[Count] = None
    shared_experts: NonNegativeCount = 0
    dense_layers: NonNegativeCount = 0
    # routed rows of the busiest expert-parallel rank over the mean (1: force-balanced, what
    # the Megatron-Bridge benchmarks run; real runs with an auxiliary loss see more). An xlayer
    # extension of the case format (null = 1).
    imbalance: Optional[float] = Field(None, ge=1.0, le=1e6, allow_inf_nan=False)

    @model_validator(mode="after")
    def _check(self) -> "MoESpec":
        if self.top_k > self.experts:
            raise ValueError(f"top_k={self.top_k} exceeds experts={self.experts}")
        return self

    @property
    def load_factor(self) -> float:
        """:attr:`imbalance`, 1 when not stated."""
        return 1.0 if self.imbalance is None else float(self.imbalance)


class MLASpec(NullMeansDefault):
    """Multi-head latent attention (DeepSeek-V2/V3): low-rank query and key/value projections,
    a decoupled RoPE key shared by all heads."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    q_lora_rank: Optional[Count] = None   # null: a full-rank query projection (DeepSeek-V2-Lite)
    kv_lora_rank: Count
    qk_nope_head_dim: Count
    qk_rope_head_dim: Count
    v_head_dim: Count


class SlidingWindowSpec(NullMeansDefault):
    """Local attention: ``layers`` of the layers attend to the last ``size`` tokens only."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    size: Count
    layers: Count


class ModelSpec(NullMeansDefault):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = "model"
    layers: Count
    hidden: Count
    heads: Count
    kv_heads: Optional[Count] = None
    head_dim: Optional[Count] = None
    ffn_hidden: Optional[Count] = None
    activation: Activation = "gelu"
    vocab: Count
    # the training sequence; an inference case may leave it out (its request sets it)
    seq_len: Optional[Count] = None
    position: Optional[Literal["learned", "rope", "alibi"]] = None
    bias: Optional[bool] = None
    tied_embeddings: Optional[bool] = None
    norm: Optional[Literal["layernorm", "rmsnorm"]] = None
    # attention kernel: flash (no s^2 tensors stored) or classic (materialised scores)
    attention: Optional[Literal["flash", "classic"]] = None
    dropout: Optional[float] = Field(None, ge=0.0, lt=1.0)
    # mixture of experts; the flat ``experts`` / ``top_k`` are aliases of moe.experts / moe.top_k
    moe: Optional[MoESpec] = None
    experts: Count = 1
    top_k: Count = 1
    mtp_layers: NonNegativeCount = 0
    mla: Optional[MLASpec] = None
    sliding_window: Optional[SlidingWindowSpec] = None
    max_seq_len: Optional[Count] = None
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
        if self.moe is None and self.experts > 1:
            object.__setattr__(self, "moe", MoESpec(experts=self.experts, top_k=self.top_k, ffn_hidden=self.ffn_hidden))
        elif self.moe is not None:
            if "experts" in self.model_fields_set and self.experts != self.moe.experts:
                raise ValueError(f"experts={self.experts} disagrees with moe.experts={self.moe.experts}")
            if self.moe.ffn_hidden is None:
                object.__setattr__(self, "moe", self.moe.model_copy(update={"ffn_hidden": self.ffn_hidden}))
                taken.append(f"model.moe.ffn_hidden={self.ffn_hidden} (the dense ffn_hidden)")
            object.__setattr__(self, "experts", self.moe.experts)
            object.__setattr__(self, "top_k", self.moe.top_k)
        if self.top_k > self.experts:
            raise ValueError(f"top_k={self.top_k} exceeds experts={self.experts}")
        if self.moe is not None and self.moe.dense_layers > self.layers:
            raise ValueError(f"moe.dense_layers={self.moe.dense_layers} exceeds layers={self.layers}")
        if self.sliding_window is not None:
            if self.sliding_window.layers > self.layers:
                raise ValueError(f"sliding_window.layers={self.sliding_window.layers} exceeds layers={self.layers}")
            if self.seq_len is not None and self.sliding_window.size > self.seq_len:
                raise ValueError(f"sliding_window.size={self.sliding_window.size} exceeds seq_len={self.seq_len}")
        if self.max_seq_len is not None and self.seq_len is not None and self.seq_len > self.max_seq_len:
            raise ValueError(f"seq_len={self.seq_len} exceeds the model's max_seq_len={self.max_seq_len}")
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
    def is_moe(self) -> bool:
        return self.moe is not None

    def unmodelled_features(self, kind: str = "training") -> list[str]:
        """Architecture features the training/inference cost model does not cover yet (none
        today; multi-token prediction layers at inference are a draft model for speculative
        decoding, which the case format does not state: :func:`mtp_inference_note`)."""
        return []

    def mtp_inference_note(self) -> str | None:
        """The assumption an inference prediction states for a model with MTP layers: they are
        not run and not loaded. TensorRT-LLM, vLLM and SGLang use DeepSeek-V3's MTP module
        only as the draft model of speculative decoding (TensorRT-LLM ``MTPDecodingConfig``,
        vLLM/SGLang ``speculative_config`` / ``--speculative-algorithm``); without it a decode
        step produces one token from the main layers."""
        if not self.mtp_layers:
            return None
        return (f"model.mtp_layers={self.mtp_layers} not run or loaded: multi-token prediction drafts tokens only "
                "under speculative decoding, which the case does not state")

    def attention_params(self) -> int:
        """Attention weights of one layer (+ biases).

        MHA/GQA: QKV and output projections h·(q+2kv) + q·h. MLA (DeepSeek-V2 §2.1): query
        h·r_q + r_q·H·(d_nope+d_rope) (or h·H·(d_nope+d_rope) without a query rank), compressed
        KV and the shared RoPE key h·(r_kv+d_rope), their up-projection r_kv·H·(d_nope+d_v),
        output H·d_v·h, plus the two latent RMSNorms r_q + r_kv."""
        h = self.hidden
        if self.mla is not None:
            a, H = self.mla, self.heads
            qk = a.qk_nope_head_dim + a.qk_rope_head_dim
            q = (h * a.q_lora_rank + a.q_lora_rank * H * qk + a.q_lora_rank) if a.q_lora_rank else h * H * qk
            kv = h * (a.kv_lora_rank + a.qk_rope_head_dim) + a.kv_lora_rank * H * (a.qk_nope_head_dim + a.v_head_dim)
            return q + kv + a.kv_lora_rank + H * a.v_head_dim * h
        w = h * (self.q_dim + 2 * self.kv_dim) + self.q_dim * h
        b = (self.q_dim + 2 * self.kv_dim + h) if self.bias else 0
        return w + b

    def attention_params_rank(self, tp) -> float:
        """Attention weights held by one tensor-parallel rank: MHA/GQA split over tp; MLA's
        down projections and latent norms replicated, its up and output projections split."""
        if self.mla is None:
            return self.attention_params() / tp
        a, h = self.mla, self.hidden
        dup = h * (a.kv_lora_rank + a.qk_rope_head_dim) + a.kv_lora_rank + \
            ((h * a.q_lora_rank + a.q_lora_rank) if a.q_lora_rank else 0)
        return dup + (self.attention_params() - dup) / tp

    def expert_params(self, width: int | None = None) -> int:
        """One FFN (a dense layer's, or one expert of width ``width``): (2 or 3)·h·f (+ biases)."""
        h, f = self.hidden, (self.ffn_hidden if width is None else width)
        return self.ffn_matrices * h * f + ((f * (self.ffn_matrices - 1) + h) if self.bias else 0)

    @property
    def moe_layers(self) -> int:
        """Layers with an MoE FFN (all but the leading dense ones); 0 for a dense model."""
        return self.layers - self.moe.dense_layers if self.moe is not None else 0

    def moe_ffn_params(self) -> int:
        """One MoE layer's FFN: router h·E + (E routed + S shared) experts of width f_e."""
        m = self.moe
        return self.hidden * m.experts + (m.experts + m.shared_experts) * self.expert_params(m.ffn_hidden)

    def ffn_params(self) -> int:
        """FFN weights per layer, averaged over the layers (dense layers and MoE layers)."""
        if self.moe is None:
            return self.expert_params()
        total = self.moe.dense_layers * self.expert_params() + self.moe_layers * self.moe_ffn_params()
        return total // self.layers

    def norm_params(self) -> int:
        per = 2 * self.hidden if self.norm == "layernorm" else self.hidden
        return 2 * per

    def layer_params(self) -> int:
        return self.attention_params() + self.ffn_params() + self.norm_params()

    def embedding_params(self) -> int:
        """Token embedding V·h (+ learned positions s·h); the output layer adds V·h if untied."""
        pos = (self.seq_len or 0) * self.hidden if self.position == "learned" else 0
        return self.vocab * self.hidden + pos

    def output_params(self) -> int:
        final_norm = 2 * self.hidden if self.norm == "layernorm" else self.hidden
        return final_norm + (0 if self.tied_embeddings else self.vocab * self.hidden)

    def total_params(self) -> int:
        """All parameters, multi-token-prediction modules excluded (DeepSeek-V3 reports its
        671 B without the 14 B of its MTP module)."""
        if self.moe is None:
            return self.layers * self.layer_params() + self.embedding_params() + self.output_params()
        per = self.attention_params() + self.norm_params()
        ffn = self.moe.dense_layers * self.expert_params() + self.moe_layers * self.moe_ffn_params()
        return self.layers * per + ffn + self.embedding_params() + self.output_params()

    def active_params(self, input_embedding: bool = True) -> int:
        """Parameters a token touches (MoE: the router, top_k routed and the shared experts).

        ``input_embedding=False`` leaves out the input lookup table (V·h token rows and any
        learned positions), the convention of OpenAI's "active" count for GPT-OSS; with tied
        embeddings the V·h matrix stays, counted once, as the output layer still uses it.
        Qwen's, Mistral's and DeepSeek's figures count both embeddings (the default)."""
        emb = self.embedding_params()
        if not input_embedding:
            emb = self.vocab * self.hidden if self.tied_embeddings else 0
        if not self.is_moe:
            return self.total_params() - self.embedding_params() + emb
        m = self.moe
        per = self.attention_params() + self.norm_params()
        moe_ffn = self.hidden * m.experts + (m.top_k + m.shared_experts) * self.expert_params(m.ffn_hidden)
        ffn = m.dense_layers * self.expert_params() + self.moe_layers * moe_ffn
        return self.layers * per + ffn + emb + self.output_params()
