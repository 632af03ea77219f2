"""Parallel layout of a training job and its validity rules.

Dimensions (Megatron-LM vocabulary): tp tensor, pp pipeline (vp virtual stages per rank for
the interleaved 1F1B schedule), dp data, cp context; sp sequence parallelism (shards the
norm/dropout region over tp); zero 0–3 (ZeRO stage: 1 optimizer state, 2 + gradients, 3 +
weights; FSDP = 3); recompute none | selective | full; micro-batch size.
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from xlayer.errors import InputError
from xlayer.workload.model import ModelSpec

Recompute = Literal["none", "selective", "full"]


class Layout(BaseModel):
    """A fully specified layout (no open choices)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tp: PositiveInt = 1
    pp: PositiveInt = 1
    dp: PositiveInt = 1
    cp: PositiveInt = 1
    vp: PositiveInt = 1
    sp: bool = False
    recompute: Recompute = "none"
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


def check_layout(layout: Layout, model: ModelSpec, count: int, global_batch: int) -> None:
    """Raise :class:`InputError` naming the field for the first rule the layout breaks."""
    L = layout
    if model.heads % L.tp:
        raise InputError("parallel.tp", L.tp, f"tp={L.tp} does not divide heads={model.heads}")
    if model.kv_heads % L.tp:
        raise InputError("parallel.tp", L.tp, f"tp={L.tp} does not divide kv_heads={model.kv_heads}")
    if model.ffn_hidden % L.tp:
        raise InputError("parallel.tp", L.tp, f"tp={L.tp} does not divide ffn_hidden={model.ffn_hidden}")
    if L.ep > 1 or L.etp > 1:
        if model.moe is None:
            raise InputError("parallel.ep", L.ep, "expert parallelism needs a mixture-of-experts model (model.moe)")
        if model.moe.experts % L.ep:
            raise InputError("parallel.ep", L.ep, f"ep={L.ep} does not divide moe.experts={model.moe.experts}")
        if (L.tp * L.dp * L.cp) % (L.ep * L.etp):
            raise InputError("parallel.ep", L.ep, f"ep*etp={L.ep * L.etp} must divide tp*dp*cp={L.tp * L.dp * L.cp} "
                                                  f"(Megatron-Core lays experts over a stage's tp x dp x cp ranks)")
        if model.moe.ffn_hidden % L.etp:
            raise InputError("parallel.etp", L.etp, f"etp={L.etp} does not divide moe.ffn_hidden={model.moe.ffn_hidden}")
    if model.moe is not None and L.tp > 1 and not L.sp:
        raise InputError("parallel.sp", L.sp, "a mixture of experts with tp > 1 needs sequence parallelism "
                                              "(Megatron-Core requires it)")
    if L.world != count:
        raise InputError("parallel", f"tp*pp*dp*cp={L.world}",
                         f"tp*pp*dp*cp={L.world} but system.count={count}")
    if L.pp * L.vp > model.layers and not edges_as_stages(model.layers, L.pp, L.vp):
        raise InputError("parallel.pp", L.pp,
                         f"pp*vp={L.pp * L.vp} exceeds layers={model.layers} (or layers+2={model.layers + 2} "
                         f"with the embedding and loss as stages, when pp*vp divides it)")
    if L.vp > 1 and L.pp == 1:
        raise InputError("parallel.vp", L.vp, "vp > 1 needs pp > 1 (interleaving splits pipeline stages)")
    if model.seq_len % (2 * L.cp if L.cp > 1 else 1):
        raise InputError("parallel.cp", L.cp,
                         f"2*cp={2 * L.cp} must divide seq_len={model.seq_len} (load-balanced causal CP)")
    if global_batch % (L.micro * L.dp):
        raise InputError("batch.global", global_batch,
                         f"must be a multiple of micro*dp={L.micro * L.dp}")
    m = L.microbatches(global_batch)
    if L.algorithm == "local" and L.vp > 1:
        raise InputError("parallel.vp", L.vp, "local learning treats each stage as one module; use vp: 1")
    if L.offload_layers and (L.pp > 1 or L.offload_layers > model.layers):
        raise InputError("parallel.offload_layers", L.offload_layers,
                         f"activation offloading needs pp=1 and at most layers={model.layers}")
    if L.backlink_layers and L.algorithm != "local":
        raise InputError("parallel.backlink_layers", L.backlink_layers, "BackLink needs algorithm: local")
    if L.vp > 1 and L.pp > 1 and layers_on_last_rank(model.layers, L.pp, L.vp) < 1:
        raise InputError("parallel.vp", L.vp, "the split leaves a pipeline rank without a layer")
    if L.backlink_layers > model.layers // L.pp:
        raise InputError("parallel.backlink_layers", L.backlink_layers,
                         f"at most the layers of one stage ({model.layers // L.pp})")
    if L.vp > 1 and m % L.pp:
        raise InputError("parallel.vp", L.vp,
                         f"the interleaved schedule needs microbatches={m} to be a multiple of pp={L.pp}")
    if model.is_moe and L.zero == 3 and False:  # placeholder for EP rules
        pass


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
