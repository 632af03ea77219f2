"""Parallel layout of a training job and its validity rules.

Dimensions (Megatron-LM vocabulary): tp tensor, pp pipeline (vp virtual stages per rank for
the interleaved 1F1B schedule), dp data, cp context; sp sequence parallelism (shards the
norm/dropout region over tp); zero 0–3 (ZeRO stage: 1 optimizer state, 2 + gradients, 3 +
weights; FSDP = 3); recompute none | selective | full; micro-batch size.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator

from xlayer.errors import InputError
from xlayer.workload.model import ModelSpec
from xlayer.workload.recompute import check_recompute, check_recompute_for



class Layout(BaseModel):
    """A fully specified layout (no open choices)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tp: PositiveInt = 1
    pp: PositiveInt = 1
    dp: PositiveInt = 1
    cp: PositiveInt = 1
    vp: PositiveInt = 1
    sp: bool = False
    recompute: str = "none"  # none | selective | full | modules joined by '+' (xlayer.workload.recompute)
    zero: int = Field(0, ge=0, le=3)
    micro: PositiveInt = 1
    dp_overlap: bool = False
    tp_overlap: bool = True
    # local learning: pipeline stages as local modules with auxiliary heads; BackLink layers
    algorithm: Literal["backprop", "local"] = "backprop"
    backlink_layers: int = Field(0, ge=0)
    # expert parallel (routed experts split over ep ranks) and expert tensor parallel
    ep: PositiveInt = 1
    etp: PositiveInt = 1
    # activations of this many layers kept in host memory between forward and backward
    # (Megatron-Core cpu_offloading, activations only; pp = 1)
    offload_layers: int = Field(0, ge=0)

    @field_validator("recompute")
    @classmethod
    def _recompute(cls, v: str) -> str:
        return check_recompute(v)

    @property
    def world(self) -> int:
        return self.tp * self.pp * self.dp * self.cp

    def microbatches(self, global_batch: int) -> int:
        return global_batch // (self.micro * self.dp)

    def describe(self) -> str:
        return (f"tp{self.tp} pp{self.pp}" + (f"x{self.vp}" if self.vp > 1 else "") +
                f" dp{self.dp}" + (f" cp{self.cp}" if self.cp > 1 else "") +
                (" sp" if self.sp else "") + (f" ep{self.ep}" if self.ep > 1 else "") +
                (f" etp{self.etp}" if self.etp > 1 else "") + f" rc={self.recompute} zero{self.zero} mb{self.micro}" +
                (f" offload{self.offload_layers}" if self.offload_layers else ""))


@dataclass(frozen=True)
class Rule:
    """One validity rule over the layout fields (Python ints or numpy arrays): ``ok`` returns
    True (or a boolean array) where the layout obeys it; ``why`` says what would be valid,
    formatted with the scalar layout's values."""

    field: str
    ok: Callable[..., Any]
    why: Callable[..., str]
    value: Callable[..., Any]


def _moe(m) -> bool:
    return m.moe is not None


RULES: tuple[Rule, ...] = (
    Rule("parallel.tp", lambda m, c, g, x: m.heads % x.tp == 0,
         lambda m, c, g, x: f"tp={x.tp} does not divide heads={m.heads}", lambda m, c, g, x: x.tp),
    Rule("parallel.tp", lambda m, c, g, x: m.kv_heads % x.tp == 0,
         lambda m, c, g, x: f"tp={x.tp} does not divide kv_heads={m.kv_heads}", lambda m, c, g, x: x.tp),
    Rule("parallel.tp", lambda m, c, g, x: m.ffn_hidden % x.tp == 0,
         lambda m, c, g, x: f"tp={x.tp} does not divide ffn_hidden={m.ffn_hidden}", lambda m, c, g, x: x.tp),
    Rule("parallel.ep", lambda m, c, g, x: (x.ep == 1) & (x.etp == 1) if not _moe(m) else True,
         lambda m, c, g, x: "expert parallelism needs a mixture-of-experts model (model.moe)", lambda m, c, g, x: x.ep),
    Rule("parallel.ep", lambda m, c, g, x: m.moe.experts % x.ep == 0 if _moe(m) else True,
         lambda m, c, g, x: f"ep={x.ep} does not divide moe.experts={m.moe.experts}", lambda m, c, g, x: x.ep),
    Rule("parallel.etp", lambda m, c, g, x: m.moe.ffn_hidden % x.etp == 0 if _moe(m) else True,
         lambda m, c, g, x: f"etp={x.etp} does not divide moe.ffn_hidden={m.moe.ffn_hidden}",
         lambda m, c, g, x: x.etp),
    Rule("parallel.ep", lambda m, c, g, x: (x.tp * x.dp * x.cp) % x.ep == 0,
         lambda m, c, g, x: f"ep={x.ep} must divide tp*dp*cp={x.tp * x.dp * x.cp} "
                            "(Megatron-Core lays experts over a stage's tp x dp x cp ranks)", lambda m, c, g, x: x.ep),
    Rule("parallel.etp", lambda m, c, g, x: (x.tp * x.dp * x.cp) % (x.ep * x.etp) == 0,
         lambda m, c, g, x: f"ep*etp={x.ep * x.etp} must divide tp*dp*cp={x.tp * x.dp * x.cp} "
                            "(Megatron-Core lays experts over a stage's tp x dp x cp ranks)", lambda m, c, g, x: x.etp),
    Rule("parallel.sp", lambda m, c, g, x: ((x.tp == 1) | x.sp) if _moe(m) else True,
         lambda m, c, g, x: "a mixture of experts with tp > 1 needs sequence parallelism (Megatron-Core requires it)",
         lambda m, c, g, x: x.sp),
    Rule("parallel", lambda m, c, g, x: x.tp * x.pp * x.dp * x.cp == c,
         lambda m, c, g, x: f"tp*pp*dp*cp={x.tp * x.pp * x.dp * x.cp} but system.count={c}",
         lambda m, c, g, x: f"tp*pp*dp*cp={x.tp * x.pp * x.dp * x.cp}"),
    Rule("parallel.pp", lambda m, c, g, x: (x.pp * x.vp <= m.layers) | edges_as_stages(m.layers, x.pp, x.vp),
         lambda m, c, g, x: f"pp*vp={x.pp * x.vp} exceeds layers={m.layers} (or layers+2={m.layers + 2} with the "
                            "embedding and loss as stages, when pp*vp divides it)", lambda m, c, g, x: x.pp),
    Rule("parallel.vp", lambda m, c, g, x: (x.vp == 1) | (x.pp > 1),
         lambda m, c, g, x: "vp > 1 needs pp > 1 (interleaving splits pipeline stages)", lambda m, c, g, x: x.vp),
    Rule("parallel.cp", lambda m, c, g, x: (x.cp == 1) | (m.seq_len % (2 * x.cp) == 0),
         lambda m, c, g, x: f"2*cp={2 * x.cp} must divide seq_len={m.seq_len} (load-balanced causal CP)",
         lambda m, c, g, x: x.cp),
    Rule("batch.global", lambda m, c, g, x: g % (x.micro * x.dp) == 0,
         lambda m, c, g, x: f"must be a multiple of micro*dp={x.micro * x.dp}", lambda m, c, g, x: g),
    Rule("parallel.vp", lambda m, c, g, x: (x.vp == 1) | (x.algorithm != "local"),
         lambda m, c, g, x: "local learning treats each stage as one module; use vp: 1", lambda m, c, g, x: x.vp),
    Rule("parallel.offload_layers", lambda m, c, g, x: (x.offload_layers == 0) | ((x.pp == 1) & (x.offload_layers
                                                                                             <= m.layers)),
         lambda m, c, g, x: f"activation offloading needs pp=1 and at most layers={m.layers}",
         lambda m, c, g, x: x.offload_layers),
    Rule("parallel.backlink_layers", lambda m, c, g, x: (x.backlink_layers == 0) | (x.algorithm == "local"),
         lambda m, c, g, x: "BackLink needs algorithm: local", lambda m, c, g, x: x.backlink_layers),
    Rule("parallel.vp", lambda m, c, g, x: layers_on_last_rank(m.layers, x.pp, x.vp) >= 1,
         lambda m, c, g, x: "the split leaves a pipeline rank without a layer", lambda m, c, g, x: x.vp),
    Rule("parallel.backlink_layers", lambda m, c, g, x: x.backlink_layers <= m.layers // x.pp,
         lambda m, c, g, x: f"at most the layers of one stage ({m.layers // x.pp})",
         lambda m, c, g, x: x.backlink_layers),
    Rule("parallel.vp", lambda m, c, g, x: (x.vp == 1) | ((g // (x.micro * x.dp)) % x.pp == 0),
         lambda m, c, g, x: f"the interleaved schedule needs microbatches={g // (x.micro * x.dp)} to be a multiple of "
                            f"pp={x.pp}", lambda m, c, g, x: x.vp),
)


TP_RULES = RULES[:3]  # tensor parallelism splits heads, KV heads and the FFN width


@dataclass(frozen=True)
class _TP:
    tp: Any


def _divisors(n: int) -> str:
    return ", ".join(str(d) for d in range(1, n + 1) if n % d == 0)


def check_tensor_parallel(model: ModelSpec, tp: int, field: str = "parallel.tp") -> None:
    """Raise :class:`InputError` for the first of :data:`TP_RULES` that ``tp`` breaks (the
    rules of training layouts, used by inference and serving too), with the valid sizes."""
    for r in TP_RULES:
        if not bool(r.ok(model, 0, 0, _TP(tp))):
            valid = _divisors(math.gcd(math.gcd(model.heads, model.kv_heads), model.ffn_hidden))
            raise InputError(field, tp, r.why(model, 0, 0, _TP(tp)) + f"; valid: {valid}")


def tensor_parallel_ok(model: ModelSpec, tp: int) -> bool:
    """``tp`` obeys :data:`TP_RULES`."""
    return all(bool(r.ok(model, 0, 0, _TP(tp))) for r in TP_RULES)


def rules_mask(model: ModelSpec, count: int, global_batch: int, fields: Any) -> Any:
    """All :data:`RULES` over ``fields`` (an object whose layout attributes may be arrays)."""
    import numpy as np
    ok: Any = True
    with np.errstate(divide="ignore", invalid="ignore"):
        for r in RULES:
            ok = ok & r.ok(model, count, global_batch, fields)
    return ok


def check_layout(layout: Layout, model: ModelSpec, count: int, global_batch: int) -> None:
    """Raise :class:`InputError` naming the field for the first of :data:`RULES` the layout
    breaks (the vectorized path applies the same rules as a mask: ``rules_mask``)."""
    for r in RULES:
        if not bool(r.ok(model, count, global_batch, layout)):
            raise InputError(r.field, r.value(model, count, global_batch, layout), r.why(model, count, global_batch,
                                                                                         layout))
    check_recompute_for(model, layout.recompute)


def edges_as_stages(layers, pp, vp):
    """True where the split counts the embedding and the loss as one layer each (Megatron-Core
    ``account_for_embedding_in_pipeline_split`` / ``account_for_loss_in_pipeline_split``): when
    the layers alone do not divide into the pp·vp chunks but layers + 2 do (126 layers on
    pp 16 × vp 8 = 128 chunks, or on pp 8 × vp 4). Scalars or numpy arrays."""
    chunks = pp * vp
    return ((layers % chunks) != 0) & (((layers + 2) % chunks) == 0)


def _split(layers, pp, vp):
    """(base layers per chunk, extra layers, edge slots): without edge stages the L mod (p·v)
    extra layers go one each to the first chunks, chunk i on rank i mod p (Megatron's
    round-robin); with edge stages every chunk holds (L+2)/(p·v) slots and the first chunk of
    rank 0 and the last chunk of rank p−1 give one slot each to the embedding and the loss."""
    edges = edges_as_stages(layers, pp, vp)
    units = layers + 2 * edges
    return units // (pp * vp), units % (pp * vp), edges


def layers_on_first_rank(layers, pp, vp):
    """Layers held by pipeline rank 0: v·⌊L/(pv)⌋ + ⌈(L mod pv)/p⌉, or v·(L+2)/(pv) − 1 when
    the embedding is a stage (:func:`edges_as_stages`). Scalars or numpy arrays."""
    base, extra, edges = _split(layers, pp, vp)
    return vp * base + -(-extra // pp) - edges


def layers_on_last_rank(layers, pp, vp):
    """Layers held by the last pipeline rank (same split): v·⌊L/(pv)⌋ + ⌊(L mod pv)/p⌋, or
    v·(L+2)/(pv) − 1 when the loss is a stage; with pp = 1 all layers."""
    base, extra, edges = _split(layers, pp, vp)
    last = vp * base + extra // pp - edges
    return last + (pp == 1) * edges  # pp = 1: one rank holds both edges and every layer


def layers_on_middle_rank(layers, pp, vp):
    """Most layers held by a rank that is neither first nor last (rank 1 of the round-robin
    split, or any middle rank with edge stages); 0 when pp ≤ 2."""
    base, extra, edges = _split(layers, pp, vp)
    extra_r1 = -(-(extra - 1).clip(0) // pp) if hasattr(extra, "clip") else -(-max(extra - 1, 0) // pp)
    return (vp * base + extra_r1) * (pp > 2)
