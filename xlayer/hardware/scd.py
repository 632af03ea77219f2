"""Superconducting digital (SCD) systems, built bottom-up: device → circuit → chip → memory →
links → system → cooling. The result is an ordinary :class:`~xlayer.hardware.spec.Accelerator`
and :class:`~xlayer.hardware.spec.System` that the cost engine uses unchanged, plus the
:class:`~xlayer.cost.energy.EnergySpec` that prices its work at each temperature stage.

Every parameter is an explicit input (``xlayer/data/scd-concept.yaml`` gives one set with
its sources and says which values are assumptions). Formulas (docs/scd.md):

* JJ budget for MACs      N_JJ = ρ_JJ · A_chip · n_logic_layers · f_MAC
* MAC units               n_MAC = ⌊N_JJ / JJ_per_MAC(bf16)⌋
* peak rate (precision p) R_p = 2 · (N_JJ / JJ_per_MAC(p)) · f_clk
* energy per FLOP (4 K)   e_FLOP = JJ_per_MAC · a · E_sw / 2          (a = activity)
* JSRAM capacity          C = ρ_JSRAM · A_chip · f_area · n_JSRAM_layers   (upper bound)
* JSRAM bandwidth         B = banks · bytes_per_bank_per_cycle · f_clk
* JSRAM energy per byte   8 · JJ_per_bit_access · E_sw
* link bandwidth          wires · rate_per_wire / 8;  latency = length/(v·c) + overhead
* wall power              P_wall = Σ_stages P_T · (1 + η_T) + P_300K,  η_T ≥ (300 − T)/T (Carnot)

Physically impossible inputs (a negative energy, power or size; a cooling overhead below
the Carnot minimum of its stage; more JSRAM than the area holds; a stage temperature with
no cooling entry) raise :class:`~xlayer.errors.InputError` naming the field.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from xlayer.errors import InputError
from xlayer.safe_yaml import trusted_load
from xlayer.hardware.spec import Accelerator, Link, MemoryLevel, System

ROOM_K = 300.0
C_M_PER_S = 2.998e8
DATA_DIR = Path(__file__).resolve().parent.parent / "data"
CONCEPT_FILE = DATA_DIR / "scd-concept.yaml"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LogicSpec(_Frozen):
    clock_hz: float
    temperature_k: float = 4.2
    jj_density_per_cm2: float          # junctions per cm² per JJ layer
    logic_layers: int
    chip_area_cm2: float
    mac_fraction: float                 # share of the logic JJs in MAC arrays
    jjs_per_mac: dict[str, float]       # precision → JJs of one multiply-accumulate unit
    mac_array_size: int = 16384         # MACs per array (the engine's "compute unit")
    switching_energy_j: float
    activity: float                     # switches per JJ per operation
    matmul_efficiency: float
    vector_fraction: float              # vector (element-wise) rate / bf16 peak
    op_overhead_s: float                # fixed cost per operator (control, pipeline fill)
    static_power_w: float = 0.0         # per chip at this stage (AC power network loss)


class JSRAMSpec(_Frozen):
    density_bytes_per_cm2: float        # per JSRAM layer
    layers: int
    area_fraction: float = 1.0          # share of the chip footprint on each JSRAM layer
    capacity_bytes: Optional[float] = None   # None: fill the area
    banks: int
    bytes_per_bank_per_cycle: float
    jjs_per_bit_access: float
    latency_s: float
    efficiency: float = 1.0


class DRAMSpec(_Frozen):
    temperature_k: float = 77.0
    capacity_bytes: float               # per chip
    bandwidth_bytes_per_s: float        # per chip
    latency_s: float
    efficiency: float
    energy_per_bit_j: float             # dissipated at temperature_k
    interface_energy_per_bit_j: float   # 4 K receiver/driver of the 77 K ↔ 4 K bridge
    static_power_w: float = 0.0         # per chip at temperature_k (refresh, standby)


class LinkSpec(_Frozen):
    wires: int
    rate_bits_per_s: float              # per wire, one direction
    length_m: float
    velocity_fraction_c: float          # propagation speed of the line / c
    overhead_s: float                   # per-hop logic (serialiser, router)
    energy_per_bit_j: float             # dissipated at the logic stage
    efficiency: float


class LinksSpec(_Frozen):
    chip_to_chip: LinkSpec
    board_to_board: LinkSpec


class BoardSpec(_Frozen):
    chips_per_board: int
    boards: int
    board_static_cold_w: float = 0.0    # heat leak into the logic stage per board (cables, supports)
    board_room_temperature_w: float = 0.0   # control and host electronics per board at 300 K


class CoolingStage(_Frozen):
    temperature_k: float
    overhead_w_per_w: float             # W drawn at room temperature per W removed at this stage


class SCDSpec(_Frozen):
    name: str = "SCD"
    main_memory: Literal["dram", "jsram"] = "dram"   # the tier the engine sees as "hbm"
    logic: LogicSpec
    jsram: JSRAMSpec
    dram: DRAMSpec
    links: LinksSpec
    system: BoardSpec
    cooling: tuple[CoolingStage, ...]
    sources: dict[str, str] = {}


# ------------------------------------------------------------------------------------------
# loading and physical validation

def carnot_min_overhead(temperature_k: float) -> float:
    """Least W at room temperature per W removed at T: (300 − T)/T (reverse Carnot, COP = T/(300−T))."""
    return (ROOM_K - temperature_k) / temperature_k


def _pydantic_to_input_error(exc: ValidationError, origin: str) -> InputError:
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err["loc"]) or origin
    value = err.get("input")
    if isinstance(value, dict):
        value = "{...}"
    if err["type"] == "extra_forbidden":
        return InputError(field, value, "unknown field; see xlayer/data/scd-concept.yaml for the fields")
    if err["type"] == "missing":
        return InputError(field, None, "this field is required")
    return InputError(field, value, err["msg"].removeprefix("Value error, "))


def scd_spec_from_dict(data: Any, origin: str = "scd") -> SCDSpec:
    if not isinstance(data, dict):
        raise InputError(origin, type(data).__name__, "an SCD spec must be a YAML mapping")
    try:
        spec = SCDSpec.model_validate(data)
    except ValidationError as exc:
        raise _pydantic_to_input_error(exc, origin) from None
    check_physics(spec)
    return spec


def load_scd_spec(path: str | Path | None = None) -> SCDSpec:
    """Read an SCD spec YAML (default: the imec system concept, ``data/scd-concept.yaml``)."""
    p = Path(path) if path is not None else CONCEPT_FILE
    if not p.exists():
        raise InputError("SPEC", str(path), "file not found")
    try:
        data = trusted_load(p.read_text())
    except yaml.YAMLError as exc:
        raise InputError(p.name, "?", f"malformed YAML ({exc})") from None
    return scd_spec_from_dict(data, p.name)


def with_params(spec: SCDSpec, **updates: float) -> SCDSpec:
    """A copy of ``spec`` with dotted fields replaced, e.g. ``with_params(s, **{"logic.clock_hz": 40e9})``;
    re-validated (types and physics)."""
    d = spec.model_dump()
    for key, value in updates.items():
        node = d
        parts = key.split(".")
        for p in parts[:-1]:
            node = node[int(p)] if isinstance(node, (list, tuple)) else node[p]
        if isinstance(node, (list, tuple)):
            node[int(parts[-1])] = value
        else:
            if parts[-1] not in node:
                raise InputError(key, value, "no such SCD parameter")
            node[parts[-1]] = value
    return scd_spec_from_dict(d)


_ALLOW_ZERO = {"static_power_w", "board_static_cold_w", "board_room_temperature_w", "overhead_s",
               "energy_per_bit_j", "interface_energy_per_bit_j", "switching_energy_j", "latency_s"}
_FRACTIONS = {"mac_fraction", "activity", "matmul_efficiency", "area_fraction", "efficiency",
              "velocity_fraction_c"}


def _walk(obj: Any, prefix: str):
    if isinstance(obj, BaseModel):
        for name in type(obj).model_fields:
            yield from _walk(getattr(obj, name), f"{prefix}{name}.")
    elif isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                yield f"{prefix}{k}", str(prefix.rstrip(".").split(".")[-1]), v
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _walk(v, f"{prefix}{i}.")
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield prefix.rstrip("."), prefix.rstrip(".").split(".")[-1], obj


def check_physics(spec: SCDSpec) -> None:
    """Raise :class:`InputError` for the first physically impossible input (module docstring)."""
    for path, name, v in _walk(spec, ""):
        if not math.isfinite(v):
            raise InputError(path, v, "must be a finite number")
        if v < 0:
            kind = "an energy" if "energy" in name else ("a power" if "power" in name or name.endswith("_w")
                                                       else "a physical quantity")
            raise InputError(path, v, f"must be >= 0 ({kind} cannot be negative)")
        if v == 0 and name not in _ALLOW_ZERO and name != "overhead_w_per_w":
            raise InputError(path, v, "must be > 0")
        if name in _FRACTIONS and v > 1:
            raise InputError(path, v, "is a fraction; must be in (0, 1]")
    if spec.logic.vector_fraction > 1:
        raise InputError("logic.vector_fraction", spec.logic.vector_fraction, "must be in (0, 1]")
    if "bf16" not in spec.logic.jjs_per_mac and "fp16" not in spec.logic.jjs_per_mac:
        raise InputError("logic.jjs_per_mac", spec.logic.jjs_per_mac, "needs a bf16 (or fp16) entry")
    temps = {st.temperature_k for st in spec.cooling}
    for i, st in enumerate(spec.cooling):
        if st.temperature_k >= ROOM_K:
            raise InputError(f"cooling.{i}.temperature_k", st.temperature_k, "a cooled stage must be below 300 K")
        lo = carnot_min_overhead(st.temperature_k)
        if st.overhead_w_per_w < lo:
            raise InputError(f"cooling.{i}.overhead_w_per_w", st.overhead_w_per_w,
                             f"below the Carnot minimum (300-T)/T = {lo:.1f} W/W at T = {st.temperature_k:g} K")
    for field, t in (("logic.temperature_k", spec.logic.temperature_k), ("dram.temperature_k", spec.dram.temperature_k)):
        if t < ROOM_K and t not in temps:
            raise InputError(field, t, f"no cooling stage at {t:g} K; stages: {sorted(temps)}")
    cap_max = jsram_capacity_limit_bytes(spec)
    if spec.jsram.capacity_bytes is not None and spec.jsram.capacity_bytes > cap_max * (1 + 1e-12):
        raise InputError("jsram.capacity_bytes", spec.jsram.capacity_bytes,
                         f"more JSRAM than the area holds: at most {cap_max:.4g} B = density "
                         f"{spec.jsram.density_bytes_per_cm2:.3g} B/cm² x {spec.logic.chip_area_cm2:g} cm² x "
                         f"area_fraction {spec.jsram.area_fraction:g} x {spec.jsram.layers} layers")
    if mac_units(spec) < 1:
        raise InputError("logic.jjs_per_mac", spec.logic.jjs_per_mac,
                         f"the chip's MAC JJ budget {mac_jj_budget(spec):.3g} holds no MAC unit")


# ------------------------------------------------------------------------------------------
# device → chip arithmetic (one formula each)

def mac_jj_budget(spec: SCDSpec) -> float:
    """N_JJ = ρ_JJ · A_chip · n_logic_layers · f_MAC."""
    L = spec.logic
    return L.jj_density_per_cm2 * L.chip_area_cm2 * L.logic_layers * L.mac_fraction


def _base_precision(spec: SCDSpec) -> str:
    return "bf16" if "bf16" in spec.logic.jjs_per_mac else "fp16"


def mac_units(spec: SCDSpec) -> int:
    """n_MAC = ⌊N_JJ / JJ_per_MAC(bf16)⌋."""
    return int(mac_jj_budget(spec) // spec.logic.jjs_per_mac[_base_precision(spec)])


def peak_flops_per_s(spec: SCDSpec, precision: str) -> float:
    """R_p = 2 · (N_JJ / JJ_per_MAC(p)) · f_clk (the MAC budget re-spent on units of precision p)."""
    return 2.0 * math.floor(mac_jj_budget(spec) / spec.logic.jjs_per_mac[precision]) * spec.logic.clock_hz


def energy_per_flop_j(spec: SCDSpec, precision: str) -> float:
    """e_FLOP = JJ_per_MAC(p) · activity · E_sw / 2, dissipated at the logic stage."""
    L = spec.logic
    return L.jjs_per_mac[precision] * L.activity * L.switching_energy_j / 2.0


def jsram_capacity_limit_bytes(spec: SCDSpec) -> float:
    """C_max = ρ_JSRAM · A_chip · f_area · n_JSRAM_layers."""
    J = spec.jsram
    return J.density_bytes_per_cm2 * spec.logic.chip_area_cm2 * J.area_fraction * J.layers


def jsram_capacity_bytes(spec: SCDSpec) -> float:
    return spec.jsram.capacity_bytes if spec.jsram.capacity_bytes is not None else jsram_capacity_limit_bytes(spec)


def jsram_bandwidth_bytes_per_s(spec: SCDSpec) -> float:
    """B = banks · bytes_per_bank_per_cycle · f_clk (JSRAM runs at the logic clock)."""
    J = spec.jsram
    return J.banks * J.bytes_per_bank_per_cycle * spec.logic.clock_hz


def jsram_energy_per_byte_j(spec: SCDSpec) -> float:
    """8 · JJ_per_bit_access · E_sw."""
    return 8.0 * spec.jsram.jjs_per_bit_access * spec.logic.switching_energy_j


def link_bandwidth_bytes_per_s(link: LinkSpec) -> float:
    """wires · rate_per_wire / 8, one direction."""
    return link.wires * link.rate_bits_per_s / 8.0


def link_latency_s(link: LinkSpec) -> float:
    """Time of flight length/(v·c) plus the per-hop overhead."""
    return link.length_m / (link.velocity_fraction_c * C_M_PER_S) + link.overhead_s


def stage_overhead(spec: SCDSpec, temperature_k: float) -> float:
    """η_T of the stage at ``temperature_k`` (0 at room temperature)."""
    if temperature_k >= ROOM_K:
        return 0.0
    for st in spec.cooling:
        if st.temperature_k == temperature_k:
            return st.overhead_w_per_w
    raise InputError("cooling", temperature_k, f"no cooling stage at {temperature_k:g} K")


# ------------------------------------------------------------------------------------------
# the build

@dataclass(frozen=True)
class SCDBuild:
    spec: SCDSpec
    accelerator: Accelerator
    system: System
    energy: Any  # xlayer.cost.energy.EnergySpec
    derived: dict[str, float]

    def rated_power(self) -> dict[str, float]:
        """Power with every MAC busy and every memory tier and link at full bandwidth, per
        chip by stage and for the whole system at the wall (an upper bound, like a TDP)."""
        return rated_power(self)


def build_scd(spec: SCDSpec, boards: int | None = None) -> SCDBuild:
    """Device/circuit parameters → an ordinary Accelerator + System (+ its EnergySpec).

    ``boards`` overrides ``spec.system.boards`` (sweeps at other system sizes)."""
    from xlayer.hardware.energy_spec import EnergySpec, EnergyTerm

    check_physics(spec)
    L, J, D = spec.logic, spec.jsram, spec.dram
    base = _base_precision(spec)
    peaks: dict[str, Optional[float]] = {p: None for p in ("fp32", "tf32", "bf16", "fp16", "fp8", "fp4", "int8", "int4")}
    for p in L.jjs_per_mac:
        if p not in peaks:
            raise InputError(f"logic.jjs_per_mac.{p}", L.jjs_per_mac[p], f"unknown precision; valid: {sorted(peaks)}")
        peaks[p] = peak_flops_per_s(spec, p)
    if peaks.get("bf16") is None:
        peaks["bf16"] = peaks["fp16"]
    n_mac = mac_units(spec)
    peak = peaks["bf16"]
    jsram_cap = jsram_capacity_bytes(spec)
    jsram_bw = jsram_bandwidth_bytes_per_s(spec)
    c2c, b2b = spec.links.chip_to_chip, spec.links.board_to_board
    chips = spec.system.chips_per_board
    n_boards = boards or spec.system.boards

    jsram_level = MemoryLevel(level="l2", capacity_bytes=jsram_cap, bandwidth_bytes_per_s=jsram_bw,
                              latency_s=J.latency_s, efficiency=J.efficiency)
    dram_level = MemoryLevel(level="hbm", capacity_bytes=D.capacity_bytes, bandwidth_bytes_per_s=D.bandwidth_bytes_per_s,
                             latency_s=D.latency_s, efficiency=D.efficiency)
    if spec.main_memory == "jsram":
        # the whole working set lives in JSRAM: the engine's "hbm" is the JSRAM
        memory = (MemoryLevel(level="hbm", capacity_bytes=jsram_cap, bandwidth_bytes_per_s=jsram_bw,
                              latency_s=J.latency_s, efficiency=J.efficiency),)
    else:
        memory = (jsram_level, dram_level)
    p_logic = n_mac * L.clock_hz * L.jjs_per_mac[base] * L.activity * L.switching_energy_j
    acc = Accelerator(
        name=spec.name, vendor="superconducting digital (bottom-up model)", year=2030,
        compute_units=max(1, n_mac // L.mac_array_size), clock_hz=L.clock_hz,
        tdp_w=max(p_logic + L.static_power_w, 1e-9),
        peak_flops_per_s=peaks, matmul_efficiency=L.matmul_efficiency,
        vector_flops_per_s=peak * L.vector_fraction, kernel_overhead_s=L.op_overhead_s,
        comm_compute_units=0,  # superconducting links are driven by dedicated circuits
        int32_ops_per_clk_per_sm=None,  # no integer-pipe figure for the concept: dropout draws not costed
        power_limited_matmul=False,  # no DVFS: the cryo plant is sized for the full rate
        memory=memory,
        scale_up=Link(name="superconducting chip-to-chip (MCM/board)", bandwidth_bytes_per_s=link_bandwidth_bytes_per_s(c2c),
                      latency_s=link_latency_s(c2c), efficiency=c2c.efficiency),
        scale_up_domain=chips,
        scale_out=Link(name="superconducting board-to-board (flex)", bandwidth_bytes_per_s=link_bandwidth_bytes_per_s(b2b),
                       latency_s=link_latency_s(b2b), efficiency=b2b.efficiency),
        sources={"all": "built by xlayer.hardware.scd from the SCD spec (see docs/scd.md)", **spec.sources})
    system = System(accelerator=acc, count=chips * n_boards, scale_up_size=chips)

    Tl, Td = L.temperature_k, D.temperature_k
    flop_j = {p: energy_per_flop_j(spec, p) for p in L.jjs_per_mac}
    if "bf16" not in flop_j:
        flop_j["bf16"] = flop_j["fp16"]
    if spec.main_memory == "jsram":
        hbm_terms = (EnergyTerm(j=jsram_energy_per_byte_j(spec), stage_k=Tl),)
        l2_terms: tuple = ()
        dram_static = ()
    else:
        hbm_terms = (EnergyTerm(j=8 * D.energy_per_bit_j, stage_k=Td),
                     EnergyTerm(j=8 * D.interface_energy_per_bit_j, stage_k=Tl))
        l2_terms = (EnergyTerm(j=jsram_energy_per_byte_j(spec), stage_k=Tl),)
        dram_static = (EnergyTerm(j=D.static_power_w, stage_k=Td),)
    energy = EnergySpec(
        name=spec.name, flop_j=flop_j, flop_stage_k=Tl,
        l2_byte=l2_terms, hbm_byte=hbm_terms,
        scale_up_byte=(EnergyTerm(j=8 * c2c.energy_per_bit_j, stage_k=Tl),),
        scale_out_byte=(EnergyTerm(j=8 * b2b.energy_per_bit_j, stage_k=Tl),),
        static_w=(EnergyTerm(j=L.static_power_w, stage_k=Tl),) + dram_static
        + (EnergyTerm(j=spec.system.board_static_cold_w / chips, stage_k=Tl),),
        overhead_w=spec.system.board_room_temperature_w / chips,
        cooling_w_per_w={st.temperature_k: st.overhead_w_per_w for st in spec.cooling},
        sources={"all": "derived from the SCD spec by xlayer.hardware.scd.build_scd"})
    derived = {
        "mac_jj_budget": mac_jj_budget(spec), "mac_units": float(n_mac),
        "peak_bf16_flops_per_s": peak, "energy_per_flop_j_cold": flop_j["bf16"],
        "jsram_capacity_bytes": jsram_cap, "jsram_capacity_limit_bytes": jsram_capacity_limit_bytes(spec),
        "jsram_bandwidth_bytes_per_s": jsram_bw, "jsram_energy_per_byte_j": jsram_energy_per_byte_j(spec),
        "chip_to_chip_bytes_per_s": link_bandwidth_bytes_per_s(c2c), "chip_to_chip_latency_s": link_latency_s(c2c),
        "board_to_board_bytes_per_s": link_bandwidth_bytes_per_s(b2b), "board_to_board_latency_s": link_latency_s(b2b),
        "chips": float(system.count), "boards": float(n_boards),
        "system_peak_bf16_flops_per_s": peak * system.count,
        "machine_balance_dram_flop_per_byte": peak / D.bandwidth_bytes_per_s,
    }
    return SCDBuild(spec, acc, system, energy, derived)


def rated_power(b: SCDBuild) -> dict[str, float]:
    """Per chip (by stage, before cooling) and whole-system wall power at full rate:
    all MACs busy, JSRAM, DRAM and both links at full bandwidth, static loads, cooling."""
    s = b.spec
    L, D = s.logic, s.dram
    n_mac = b.derived["mac_units"]
    base = _base_precision(s)
    logic = n_mac * L.clock_hz * L.jjs_per_mac[base] * L.activity * L.switching_energy_j
    jsram = b.derived["jsram_bandwidth_bytes_per_s"] * b.derived["jsram_energy_per_byte_j"]
    links = 8 * (b.derived["chip_to_chip_bytes_per_s"] * s.links.chip_to_chip.energy_per_bit_j
                 + b.derived["board_to_board_bytes_per_s"] * s.links.board_to_board.energy_per_bit_j)
    dram_iface = 8 * D.bandwidth_bytes_per_s * D.interface_energy_per_bit_j
    dram = 8 * D.bandwidth_bytes_per_s * D.energy_per_bit_j + D.static_power_w
    chips = b.system.count
    boards = b.derived["boards"]
    cold_chip = logic + jsram + links + dram_iface + L.static_power_w
    cold_total = cold_chip * chips + boards * s.system.board_static_cold_w
    eta_cold = stage_overhead(s, L.temperature_k)
    eta_dram = stage_overhead(s, D.temperature_k)
    room = boards * s.system.board_room_temperature_w
    wall_cold = cold_total * (1 + eta_cold)
    wall_dram = dram * chips * (1 + eta_dram)
    wall = wall_cold + wall_dram + room
    return {
        "chip_logic_w": logic, "chip_jsram_w": jsram, "chip_links_w": links, "chip_dram_interface_w": dram_iface,
        "chip_static_w": L.static_power_w, "chip_cold_w": cold_chip, "chip_dram_w": dram,
        "system_cold_w": cold_total, "system_dram_w": dram * chips, "system_room_w": room,
        "wall_cold_w": wall_cold, "wall_dram_w": wall_dram, "wall_w": wall,
        "wall_per_board_w": wall / boards, "wall_per_chip_w": wall / chips,
        "peak_flops_per_s": b.derived["system_peak_bf16_flops_per_s"],
        "flops_per_w_wall": b.derived["system_peak_bf16_flops_per_s"] / wall,
    }
