"""Energy of a training iteration and of a generated token, at the device and at the wall.

The energy of a run is the work it does, priced per unit, plus what is always on:

    E_device = Σ_p F_p·e_FLOP(p) + B_l2·e_l2 + B_hbm·e_hbm + B_up·e_up + B_out·e_out
               + N · t · P_static
    E_wall   = Σ_T E_device,T · (1 + η_T) + N · t · P_overhead

F_p FLOPs at precision p, B bytes moved at each memory level / over each network (totals
over the N accelerators of the system), t the time of the run. Every unit energy is
dissipated at a temperature stage T; η_T is the cooling overhead of that stage (W drawn at
room temperature per W removed; 0 at 300 K). ``P_overhead`` is what the accelerator's share
of the rest of the machine draws at room temperature (host CPUs, NICs, switches, fans, power
conversion; for SCD the 300 K control electronics).

GPUs (``gpu_energy_spec``, numbers in ``xlayer/data/energy.yaml`` with sources): e_hbm and
the link energies from published pJ/bit figures; the per-FLOP energy is *calibrated to the
TDP*: a large bf16 GEMM at the part's measured best matmul rate (catalog MAMF) draws the TDP,

    e_FLOP(bf16) = (TDP − P_static) / (peak_bf16 · matmul_efficiency),   e_FLOP(fp8) = e_FLOP(bf16)/2

SCD (``xlayer.hardware.scd.build_scd``): e_FLOP from the JJ switching energy, JSRAM,
cryo-DRAM and link energies per bit, each at its stage (4 K or 77 K).

FLOPs are priced at the arithmetic of the operator that does them (``flop_precision``): a
GEMM at its own precision (fp8 GEMMs at the fp8 rate), attention (flash or the classic
QKᵀ/PV GEMMs), softmax, norms and the 16-bit output layer at 16 bits — FP8 recipes
(Transformer Engine, TensorRT-LLM) keep attention in bf16 — and everything at fp32 in an
fp32 run.

The work counts come from the cost engine's own outputs without changing them:
``xlayer.engine.counts.iteration_counts`` reads an ``IterationCost`` with detail (per-op FLOPs
and HBM bytes, L2 bytes from the op's L2 time × L2 bandwidth, each collective on its group);
``xlayer.prediction.decode_energy.decode_step`` counts the operators of an inference decode step.
Nothing here imports the engine or the predictions above it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional


from xlayer.errors import InputError
from xlayer.hardware.energy_spec import ROOM_K, EnergySpec, EnergyTerm
from xlayer.hardware.spec import Accelerator
from xlayer.safe_yaml import trusted_load
from xlayer.workload.precision import LOW_PRECISION

__all__ = ["ROOM_K", "EnergySpec", "EnergyTerm", "WorkCounts", "EnergyResult", "energy_from_counts", "gpu_energy_spec",
           "energy_spec_for", "energy_data", "collective_bytes", "flop_precision"]

DATA_FILE = Path(__file__).resolve().parent.parent / "data" / "energy.yaml"


# ------------------------------------------------------------------------------------------
# GPU energy from data/energy.yaml, calibrated to TDP

@lru_cache(maxsize=1)
def energy_data() -> dict[str, Any]:
    """The parsed energy data file (read once; treat as read-only)."""
    return trusted_load(DATA_FILE.read_text())


def gpu_energy_spec(acc: Accelerator) -> EnergySpec:
    """Per-FLOP / per-byte energies of a catalog GPU (module docstring: TDP calibration)."""
    gpus = energy_data()["gpus"]
    if acc.name not in gpus:
        raise InputError("system.accelerator", acc.name,
                         f"no energy data for this part; parts with energy data: {', '.join(sorted(gpus))}")
    d = gpus[acc.name]
    static = float(d["static_w"])
    e_bf16 = (acc.tdp_w - static) / (acc.peak("bf16") * acc.matmul_efficiency)
    node_overhead = (float(d["node_max_w"]) - d["gpus_per_node"] * acc.tdp_w) / d["gpus_per_node"]
    return EnergySpec(
        name=acc.name, flop_j={"bf16": e_bf16, "fp16": e_bf16, "fp8": e_bf16 * d["fp8_flop_energy_ratio"],
                               "fp4": e_bf16 * d["fp8_flop_energy_ratio"] ** 2},
        hbm_byte=(EnergyTerm(j=8e-12 * d["hbm_pj_per_bit"]),),
        scale_up_byte=(EnergyTerm(j=8e-12 * d["scale_up_pj_per_bit"]),),
        scale_out_byte=(EnergyTerm(j=8e-12 * d["scale_out_pj_per_bit"]),),
        static_w=(EnergyTerm(j=static),), overhead_w=max(0.0, node_overhead),
        sources=dict(d.get("sources", {})))


def rated_system_wall_w(acc: Accelerator, spec: EnergySpec, count: int) -> float:
    """Wall power of ``count`` GPUs at TDP plus their node overhead (the DGX/rack maximum)."""
    return count * (acc.tdp_w + spec.overhead_w)


def energy_spec_for(acc: Accelerator) -> Optional[EnergySpec]:
    """The energy spec of a catalog part, or None when the data file has none for it."""
    if acc.name in energy_data()["gpus"]:
        return gpu_energy_spec(acc)
    return None


# ------------------------------------------------------------------------------------------
# work counts and their price

@dataclass
class WorkCounts:
    """Totals over the whole system for one run (an iteration, or one decode step)."""

    time_s: float
    accelerators: int
    flops: dict[str, float]
    l2_bytes: float = 0.0
    hbm_bytes: float = 0.0
    scale_up_bytes: float = 0.0
    scale_out_bytes: float = 0.0
    tokens: float = 0.0

    def scaled(self, k: float) -> "WorkCounts":
        return WorkCounts(self.time_s * k, self.accelerators, {p: v * k for p, v in self.flops.items()},
                          self.l2_bytes * k, self.hbm_bytes * k, self.scale_up_bytes * k,
                          self.scale_out_bytes * k, self.tokens * k)


@dataclass
class EnergyResult:
    name: str
    time_s: float
    accelerators: int
    device_j: float
    wall_j: float
    device_by_term_j: dict[str, float]
    wall_by_term_j: dict[str, float]
    device_by_stage_j: dict[float, float]
    tokens: float = 0.0
    counts: WorkCounts | None = None

    @property
    def device_w(self) -> float:
        return self.device_j / self.time_s

    @property
    def wall_w(self) -> float:
        return self.wall_j / self.time_s

    def per_token_j(self, wall: bool = True) -> float:
        return (self.wall_j if wall else self.device_j) / self.tokens if self.tokens else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {"system_energy": self.name, "time_s": self.time_s, "accelerators": self.accelerators,
                "device_j": self.device_j, "wall_j": self.wall_j, "device_w": self.device_w,
                "wall_w": self.wall_w, "device_by_term_j": self.device_by_term_j,
                "wall_by_term_j": self.wall_by_term_j,
                "device_by_stage_j": {f"{k:g}K": v for k, v in self.device_by_stage_j.items()},
                "tokens": self.tokens,
                "wall_j_per_token": self.per_token_j(True) if self.tokens else None,
                "device_j_per_token": self.per_token_j(False) if self.tokens else None}


def energy_from_counts(counts: WorkCounts, spec: EnergySpec, name: str | None = None) -> EnergyResult:
    """Price ``counts`` with ``spec`` (module docstring formula)."""
    N, t = counts.accelerators, counts.time_s
    dev: dict[str, float] = {}
    wall: dict[str, float] = {}
    stage: dict[float, float] = {}

    def add(term: str, joules: float, stage_k: float) -> None:
        dev[term] = dev.get(term, 0.0) + joules
        wall[term] = wall.get(term, 0.0) + joules * (1.0 + spec.eta(stage_k))
        stage[stage_k] = stage.get(stage_k, 0.0) + joules

    add("compute", sum(f * spec.flop_energy_j(p) for p, f in counts.flops.items()), spec.flop_stage_k)
    for term, amount, terms in (("l2", counts.l2_bytes, spec.l2_byte), ("hbm", counts.hbm_bytes, spec.hbm_byte),
                                ("scale_up", counts.scale_up_bytes, spec.scale_up_byte),
                                ("scale_out", counts.scale_out_bytes, spec.scale_out_byte)):
        for et in terms:
            add(term, amount * et.j, et.stage_k)
        dev.setdefault(term, 0.0)
        wall.setdefault(term, 0.0)
    for et in spec.static_w:
        add("static", N * t * et.j, et.stage_k)
    device_j = sum(dev.values())
    wall["overhead"] = N * t * spec.overhead_w
    return EnergyResult(name or spec.name, t, N, device_j, sum(wall.values()), dev, wall, stage,
                        counts.tokens, counts)


# ------------------------------------------------------------------------------------------
# bytes per network tier of a collective, and the arithmetic FLOPs are priced at

def collective_bytes(collective: str, size: float, n: int, n_in: int) -> tuple[float, float]:
    """Bytes one rank sends over the scale-up and the scale-out network for a hierarchical
    collective (xlayer.cost.collectives): ring all-reduce 2(n−1)/n·S, reduce-scatter /
    all-gather (n−1)/n·S; inside the domain on S, across domains on S/n_in."""
    if n <= 1:
        return 0.0, 0.0
    n_in = max(1, min(n_in, n))
    n_out = n / n_in
    if collective == "send_recv":
        return (size, 0.0) if n_out <= 1 else (0.0, size)
    factor = {"all_reduce": 2.0, "all_gather": 1.0, "reduce_scatter": 1.0, "all_to_all": 1.0}[collective]
    inner_factor = 2.0 if collective == "all_reduce" else 1.0  # RS + AG inside for an all-reduce
    up = inner_factor * (n_in - 1) / n_in * size
    out = factor * (n_out - 1) / n_out * size / n_in if n_out > 1 else 0.0
    return up, out


def flop_precision(op, precision: str) -> str:
    """The arithmetic an operator's FLOPs are priced at (module docstring): the op's own
    precision (GEMMs follow the case, attention and element-wise ops are 16-bit), fp32
    throughout an fp32 run."""
    if precision == "fp32":
        return "fp32"
    p = getattr(op, "precision", None) or "bf16"
    return p if op.kind == "gemm" else ("bf16" if p in LOW_PRECISION else p)
