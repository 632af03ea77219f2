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

    @property
    def world(self) -> int:
        return self.tp * self.pp * self.dp * self.cp

    def microbatches(self, global_batch: int) -> int:
        return global_batch // (self.micro * self.dp)

    def describe(self) -> str:
        return (f"tp{self.tp} pp{self.pp}" + (f"x{self.vp}" if self.vp > 1 else "") +
                f" dp{self.dp}" + (f" cp{self.cp}" if self.cp > 1 else "") +
                (" sp" if self.sp else "") + f" rc={self.recompute} zero{self.zero} mb{self.micro}")


def check_layout(layout: Layout, model: ModelSpec, count: int, global_batch: int) -> None:
    """Raise :class:`InputError` naming the field for the first rule the layout breaks."""
    L = layout
    if model.heads % L.tp:
        raise InputError("parallel.tp", L.tp, f"tp={L.tp} does not divide heads={model.heads}")
    if model.kv_heads % L.tp:
        raise InputError("parallel.tp", L.tp, f"tp={L.tp} does not divide kv_heads={model.kv_heads}")
    if model.ffn_hidden % L.tp:
        raise InputError("parallel.tp", L.tp, f"tp={L.tp} does not divide ffn_hidden={model.ffn_hidden}")
    if L.world != count:
        raise InputError("parallel", f"tp*pp*dp*cp={L.world}",
                         f"tp*pp*dp*cp={L.world} but system.count={count}")
    if L.pp * L.vp > model.layers:
        raise InputError("parallel.pp", L.pp,
                         f"pp*vp={L.pp * L.vp} exceeds layers={model.layers}")
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
    if L.backlink_layers and L.algorithm != "local":
        raise InputError("parallel.backlink_layers", L.backlink_layers, "BackLink needs algorithm: local")
    if L.backlink_layers > model.layers // L.pp:
        raise InputError("parallel.backlink_layers", L.backlink_layers,
                         f"at most the layers of one stage ({model.layers // L.pp})")
    if L.vp > 1 and m % L.pp:
        raise InputError("parallel.vp", L.vp,
                         f"the interleaved schedule needs microbatches={m} to be a multiple of pp={L.pp}")
    if model.moe and L.zero == 3 and False:  # placeholder for EP rules
        pass


def layers_on_first_rank(layers, pp, vp):
    """Layers held by pipeline rank 0: chunks of ⌊L/(p·v)⌋ layers, the L mod (p·v) extra
    layers going one each to the first chunks, chunk i on rank i mod p
    (Megatron's round-robin): v·⌊L/(pv)⌋ + ⌈(L mod pv)/p⌉. Scalars or numpy arrays."""
    base = layers // (pp * vp)
    extra = layers % (pp * vp)
    return vp * base + -(-extra // pp)


def layers_on_last_rank(layers, pp, vp):
    """Layers held by the last pipeline rank (same split): v·⌊L/(pv)⌋ + ⌊(L mod pv)/p⌋."""
    base = layers // (pp * vp)
    extra = layers % (pp * vp)
    return vp * base + extra // pp
