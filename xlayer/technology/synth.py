"""Chip synthesis: a logic node plus budgets (die area, power, die perimeter split between
HBM PHYs and links) → an :class:`~xlayer.hardware.spec.Accelerator` for the unchanged cost
engine.

The compute unit is today's design (an SM-class unit doing 4096 dense BF16 FLOP per clock,
``nodes.yaml: architecture``) at every node; only the technology changes. Formulas, in order
(``synthesize`` reports each intermediate in ``SynthResult.derivation``):

* geometry: a rectangle of the die area with the reticle's 26:33 aspect; by default the HBM
  PHYs take both long edges and the links 70 % of both short edges.
* ``hbm_stacks = ⌊hbm_shoreline / shoreline_per_stack(gen)⌋``; bandwidth = stacks × pin rate ×
  bus width × derate; capacity = stacks × GB per stack.
* ``links = ⌊link_shoreline / 2 mm⌋``; scale-up bandwidth = links × per-link bandwidth.
* area: ``A_compute = A − A_hbm_phy − A_link_phy − uncore·A − L2 / sram_density``;
  unit area = logic area at N5 × density(N5)/density(node) + 512 KiB / sram_density(node);
  ``units = ⌊0.9 · ⌊A_compute / unit_area⌋⌋`` (yield harvesting).
* power: ``P_compute = P − BW_hbm·8·pJ/bit(mem) − 2·BW_up·8·pJ/bit(link)``;
  ``E_flop(node) = E_flop(N7) · Π power claims``, E_flop(N7) calibrated on the A100 (see
  ``node_energy_calibration()``);
* clock: ``f = min(f_max(node), P_compute / (E_flop · units · 4096))``, with
  ``f_max(node) = 1.41 GHz · Π speed claims``; peak(bf16) = units · 4096 · f, other precisions
  by their FLOP/clk ratio (FP8 at half the energy per FLOP, as on Hopper).
* the power cap is paid once: the clock is the power-limited one already, so the part has
  ``power_limited_matmul = False`` — the cost engine does not apply the measured
  steady-state/burst ratio of power-capped GPUs (calibration.yaml
  ``sustained_over_best_matmul``, a catalog GPU's clock falling under its cap) on top; its
  GEMMs run at peak · matmul_efficiency · ``isolated_over_best_matmul``, as an SCD part's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

from xlayer.errors import InputError
from xlayer.hardware.spec import Accelerator, Link, MemoryLevel
from xlayer.technology.tables import Node, get_link, get_memory, get_node, nodes, raw

RETICLE_ASPECT = 33.0 / 26.0  # long / short edge of the 26 x 33 mm exposure field
MIB = 2.0 ** 20


@dataclass(frozen=True)
class Budget:
    """What an architect fixes before placing units. Lengths in mm, area in mm², power in W."""

    node: str
    area_mm2: float
    power_w: float
    perimeter_mm: Optional[float] = None
    hbm_shoreline_mm: Optional[float] = None
    link_shoreline_mm: Optional[float] = None
    memory: Optional[str] = None
    scale_up: Optional[str] = None
    scale_out: Optional[str] = None
    hbm_gb_per_stack: Optional[float] = None
    l2_mib: float = 50.0
    scale_up_domain: int = 8
    fp4: bool = False
    name: Optional[str] = None


@dataclass
class SynthResult:
    accelerator: Accelerator
    derivation: dict[str, Any] = field(default_factory=dict)


def _arch() -> dict[str, Any]:
    return raw()["architecture"]


def _link_pj(gen) -> float:
    if gen.pj_per_bit is None:
        raise InputError("budget.scale_up", gen.name, "a scale-up link needs an NVLink generation with an energy per bit")
    return gen.pj_per_bit


def node_energy_calibration() -> dict[str, float]:
    """Energy per BF16 FLOP at the reference node and its f_max, from the one calibration part
    (A100-SXM-80GB, nodes.yaml ``calibration``):
    ``E_flop(N7) = (TDP − BW_hbm·8·pJ/bit(HBM2e) − 2·BW_NVLink3·8·pJ/bit) / peak_bf16``."""
    c = raw()["calibration"]
    mem = get_memory(c["memory"])
    up = get_link(c["scale_up"])
    p_hbm = c["hbm_bytes_per_s"] * 8 * mem.pj_per_bit * 1e-12
    p_link = 2 * c["scale_up_bytes_per_s"] * 8 * _link_pj(up) * 1e-12
    e = (c["tdp_w"] - p_hbm - p_link) / c["peak_bf16_flops_per_s"]
    return {"energy_per_flop_j": e, "f_max_hz": c["clock_hz"], "p_hbm_w": p_hbm, "p_link_w": p_link}


def unit_area_mm2(node: Node) -> float:
    """Area of one compute unit at ``node``: the N5 logic part scaled by logic density, plus its
    512 KiB of register file and L1 at the node's SRAM density."""
    a = _arch()
    n5 = nodes()["N5"]
    sram = a["unit_sram_bytes"]
    logic_n5 = a["unit_area_mm2_at_N5"] - sram / n5.sram_bytes_per_mm2()
    return logic_n5 * n5.logic_density_mtr_per_mm2 / node.logic_density_mtr_per_mm2 + sram / node.sram_bytes_per_mm2()


def synthesize(b: Budget) -> SynthResult:
    """The accelerator a node can build within the budget ``b`` (formulas: module docstring)."""
    node = get_node(b.node, "budget.node")
    for fld in ("area_mm2", "power_w"):
        v = getattr(b, fld)
        if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise InputError(f"budget.{fld}", v, "must be a positive number")
    if b.scale_up_domain < 1:
        raise InputError("budget.scale_up_domain", b.scale_up_domain, "must be >= 1")
    a = _arch()
    mem = get_memory(b.memory or node.era["memory"], "budget.memory")
    up = get_link(b.scale_up or node.era["scale_up"], "budget.scale_up")
    nic = get_link(b.scale_out or node.era["scale_out"], "budget.scale_out")
    lk = raw()["links"]
    mm = raw()["memory"]

    # geometry
    long_mm = math.sqrt(b.area_mm2 * RETICLE_ASPECT)
    short_mm = b.area_mm2 / long_mm
    min_perimeter = 4.0 * math.sqrt(b.area_mm2)
    perimeter = b.perimeter_mm if b.perimeter_mm is not None else 2.0 * (long_mm + short_mm)
    if perimeter < min_perimeter * (1 - 1e-9):
        raise InputError("budget.perimeter_mm", b.perimeter_mm,
                         f"a die of {b.area_mm2:g} mm2 has a perimeter of at least {min_perimeter:.1f} mm (square)")
    hbm_edge = b.hbm_shoreline_mm if b.hbm_shoreline_mm is not None else 2.0 * long_mm
    link_edge = b.link_shoreline_mm if b.link_shoreline_mm is not None else 0.7 * 2.0 * short_mm
    if hbm_edge < mem.shoreline_mm_per_stack:
        raise InputError("budget.hbm_shoreline_mm", round(hbm_edge, 3),
                         f"one {mem.name} PHY needs {mem.shoreline_mm_per_stack:g} mm of die edge")
    if hbm_edge + link_edge > perimeter * (1 + 1e-9):
        raise InputError("budget.hbm_shoreline_mm", round(hbm_edge, 3),
                         f"HBM ({hbm_edge:.1f} mm) + link ({link_edge:.1f} mm) shoreline exceeds the die "
                         f"perimeter {perimeter:.1f} mm")
    stacks = int(hbm_edge // mem.shoreline_mm_per_stack)
    n_links = int(link_edge // lk["shoreline_mm_per_link"])
    if n_links < 1:
        raise InputError("budget.link_shoreline_mm", round(link_edge, 3),
                         f"one scale-up link needs {lk['shoreline_mm_per_link']:g} mm of die edge")
    hbm_bw = stacks * mem.stack_bytes_per_s()
    gb_stack = b.hbm_gb_per_stack if b.hbm_gb_per_stack is not None else mem.max_gb_per_stack
    hbm_cap = stacks * gb_stack * 1e9
    up_bw = n_links * up.bytes_per_s_per_link

    # area
    a_hbm_phy = stacks * mem.shoreline_mm_per_stack * mm["phy_depth_mm"]
    a_link_phy = n_links * lk["shoreline_mm_per_link"] * lk["phy_depth_mm"]
    a_uncore = a["uncore_area_fraction"] * b.area_mm2
    l2_bytes = b.l2_mib * MIB
    a_l2 = l2_bytes / node.sram_bytes_per_mm2()
    a_compute = b.area_mm2 - a_hbm_phy - a_link_phy - a_uncore - a_l2
    ua = unit_area_mm2(node)
    if a_compute < ua:
        need = b.area_mm2 - a_compute + ua
        raise InputError("budget.area_mm2", b.area_mm2,
                         f"cannot hold a single compute unit at {node.name}: PHYs, uncore and L2 leave "
                         f"{max(a_compute, 0):.1f} mm2, one unit needs {ua:.2f} mm2 (give at least {need:.0f} mm2)")
    full_units = int(a_compute // ua)
    units = max(1, int(full_units * a["enabled_unit_fraction"]))

    # power
    cal = node_energy_calibration()
    p_hbm = hbm_bw * 8 * mem.pj_per_bit * 1e-12
    p_link = 2 * up_bw * 8 * _link_pj(up) * 1e-12
    p_compute = b.power_w - p_hbm - p_link
    if p_compute <= 0:
        raise InputError("budget.power_w", b.power_w,
                         f"must exceed the HBM ({p_hbm:.0f} W) and link ({p_link:.0f} W) I/O power")
    e_flop = cal["energy_per_flop_j"] * node.energy_rel
    f_max = cal["f_max_hz"] * node.speed_rel
    w = a["unit_flops_per_clk"]["bf16"]
    r_area = units * w * f_max
    r_power = p_compute / e_flop
    bf16 = min(r_area, r_power)
    clock = bf16 / (units * w)
    binding = "area (f_max)" if r_area <= r_power else "power"

    peaks: dict[str, Optional[float]] = {}
    for p, fpc in a["unit_flops_per_clk"].items():
        peaks[p] = units * fpc * clock
    if not b.fp4:
        peaks["fp4"] = None
    peaks["fp32"] = units * a["unit_fp32_flops_per_clk"] * clock
    peaks["int4"] = None
    lat = a["latency_s"]
    rf = units * a["unit_sram_bytes"] / 2
    name = b.name or f"synth-{node.name}-{b.area_mm2:g}mm2-{b.power_w:g}W"
    acc = Accelerator(
        name=name, vendor="xlayer synthesis", year=node.year, compute_units=units, clock_hz=clock,
        tdp_w=b.power_w, peak_flops_per_s=peaks, matmul_efficiency=a["matmul_efficiency"],
        # the clock above already spends the power budget on the tensor peak (or sits at
        # f_max below it): no second power-cap derating of the steady GEMM rate
        power_limited_matmul=False,
        vector_flops_per_s=units * a["unit_vector_flops_per_clk"] * clock,
        kernel_overhead_s=a["kernel_overhead_s"],
        memory=(MemoryLevel(level="register", capacity_bytes=rf, bandwidth_bytes_per_s=units * 1536 * clock,
                            latency_s=lat["register"]),
                MemoryLevel(level="l1", capacity_bytes=rf, bandwidth_bytes_per_s=units * 128 * clock,
                            latency_s=lat["l1"]),
                MemoryLevel(level="l2", capacity_bytes=l2_bytes,
                            bandwidth_bytes_per_s=units * a["l2_bytes_per_clk_per_unit"] * clock, latency_s=lat["l2"]),
                MemoryLevel(level="hbm", capacity_bytes=hbm_cap, bandwidth_bytes_per_s=hbm_bw,
                            latency_s=lat["hbm"], efficiency=a["hbm_efficiency"])),
        scale_up=Link(name=up.name, bandwidth_bytes_per_s=up_bw, latency_s=lk["latency_s"]["scale_up"],
                      efficiency=lk["scale_up_efficiency"]),
        scale_up_domain=b.scale_up_domain,
        scale_out=Link(name=nic.name, bandwidth_bytes_per_s=nic.bytes_per_s_per_link,
                       latency_s=lk["latency_s"]["scale_out"], efficiency=lk["scale_out_efficiency"]),
        sources={"synthesis": f"xlayer.technology.synthesize({node.name}, {b.area_mm2:g} mm2, {b.power_w:g} W); "
                              "constants and their sources in xlayer/technology/nodes.yaml"})
    der = {
        "node": node.name, "memory": mem.name, "scale_up": up.name, "scale_out": nic.name,
        "die_long_mm": long_mm, "die_short_mm": short_mm, "perimeter_mm": perimeter,
        "hbm_shoreline_mm": hbm_edge, "link_shoreline_mm": link_edge,
        "hbm_stacks": stacks, "scale_up_links": n_links,
        "area_hbm_phy_mm2": a_hbm_phy, "area_link_phy_mm2": a_link_phy, "area_uncore_mm2": a_uncore,
        "area_l2_mm2": a_l2, "area_compute_mm2": a_compute, "unit_area_mm2": ua,
        "units_placed": full_units, "units_enabled": units,
        "power_hbm_w": p_hbm, "power_link_w": p_link, "power_compute_w": p_compute,
        "energy_per_flop_pj": e_flop * 1e12, "f_max_hz": f_max, "clock_hz": clock,
        "peak_area_limited_flops_per_s": r_area, "peak_power_limited_flops_per_s": r_power,
        "binding": binding, "peak_bf16_flops_per_s": bf16, "hbm_bytes_per_s": hbm_bw,
        "hbm_capacity_bytes": hbm_cap, "scale_up_bytes_per_s": up_bw,
    }
    return SynthResult(acc, der)


# Budgets of real parts (die area, power, shoreline), used by tests, docs and the CLI.
# Die area and TDP from hardware.csv; shoreline: the number of *active* HBM stacks times the
# per-stack shoreline (both parts have six HBM sites, five of them active) and the link edge
# that fits the part's NVLink count at 2 mm per link.
REFERENCE_BUDGETS: dict[str, Budget] = {
    "A100-SXM-80GB": Budget(node="N7", area_mm2=826, power_w=400, hbm_shoreline_mm=5 * 10.5,
                            link_shoreline_mm=12 * 2.0, memory="HBM2e", scale_up="NVLink 3 (A100)",
                            scale_out="InfiniBand HDR 200G", hbm_gb_per_stack=16, l2_mib=40,
                            name="synth-A100-budget"),
    "H100-SXM-80GB": Budget(node="N5", area_mm2=814, power_w=700, hbm_shoreline_mm=5 * 10.5,
                            link_shoreline_mm=18 * 2.0, memory="HBM3", scale_up="NVLink 4 (H100/H200)",
                            scale_out="InfiniBand NDR 400G", hbm_gb_per_stack=16, l2_mib=50,
                            name="synth-H100-budget"),
}
