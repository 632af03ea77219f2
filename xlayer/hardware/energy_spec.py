"""Energy per unit of work of a system (``EnergySpec``): per FLOP at each precision, per byte
at each memory level and network, static watts, each dissipated at a temperature stage with
its cooling overhead. Built for GPUs by :mod:`xlayer.cost.energy` (data/energy.yaml) and for
superconducting systems by :mod:`xlayer.hardware.scd`; priced by ``energy_from_counts``."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from xlayer.errors import InputError

ROOM_K = 300.0


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class EnergyTerm(_Frozen):
    """``j`` joules per unit (per byte, or watts for a static term), dissipated at ``stage_k``."""

    j: float
    stage_k: float = ROOM_K


class EnergySpec(_Frozen):
    name: str
    flop_j: dict[str, float]
    flop_stage_k: float = ROOM_K
    l2_byte: tuple[EnergyTerm, ...] = ()
    hbm_byte: tuple[EnergyTerm, ...] = ()
    scale_up_byte: tuple[EnergyTerm, ...] = ()
    scale_out_byte: tuple[EnergyTerm, ...] = ()
    static_w: tuple[EnergyTerm, ...] = ()
    overhead_w: float = 0.0
    cooling_w_per_w: dict[float, float] = {}
    sources: dict[str, str] = {}

    def flop_energy_j(self, precision: str) -> float:
        order = {"fp4": ["fp4", "fp8", "bf16"], "fp8": ["fp8", "bf16"], "int8": ["int8", "fp8", "bf16"],
                 "mxfp8": ["mxfp8", "fp8", "bf16"], "nvfp4": ["nvfp4", "fp4", "fp8", "bf16"],
                 "int4": ["int4", "int8", "fp8", "bf16"], "bf16": ["bf16", "fp16"], "fp16": ["fp16", "bf16"],
                 "tf32": ["tf32", "bf16"], "fp32": ["fp32", "bf16"]}.get(precision, ["bf16"])
        for p in order:
            if p in self.flop_j:
                return self.flop_j[p]
        return next(iter(self.flop_j.values()))

    def eta(self, stage_k: float) -> float:
        if stage_k >= ROOM_K:
            return 0.0
        if stage_k not in self.cooling_w_per_w:
            raise InputError("cooling", stage_k, f"no cooling overhead given for the {stage_k:g} K stage")
        return self.cooling_w_per_w[stage_k]


