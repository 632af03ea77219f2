"""Loaders for the technology tables: logic nodes, memory generations and link generations.

One data file (``nodes.yaml``) holds the node table and everything the reference CSVs
(``data/memory_tech.csv``, ``data/interconnect_tech.csv``, copied from shared/reference) lack.
Unknown names raise :class:`~xlayer.errors.InputError` with the closest valid names.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional


from xlayer.errors import InputError, closest
from xlayer.safe_yaml import trusted_load

HERE = Path(__file__).parent
DATA = HERE / "data"


def _key(name: str) -> str:
    return "".join(ch for ch in str(name).lower() if ch.isalnum() or ch == ".")


@lru_cache(maxsize=1)
def raw() -> dict[str, Any]:
    """The parsed ``nodes.yaml``."""
    return trusted_load((HERE / "nodes.yaml").read_text())


@dataclass(frozen=True)
class Node:
    """One logic node. ``speed_rel`` / ``energy_rel`` are relative to the calibration node
    (N7), chained from the per-node foundry claims versus the previous node."""

    name: str
    year: int
    logic_density_mtr_per_mm2: float
    sram_bitcell_um2: float
    speed_rel: float
    energy_rel: float
    era: dict[str, str]
    sources: dict[str, str] = field(default_factory=dict)

    def sram_bytes_per_mm2(self) -> float:
        """Effective on-chip SRAM density: bit cells per mm² × macro efficiency × effective
        fraction (multi-ported RF/L1, L2 control), in bytes."""
        arch = raw()["architecture"]
        bits = 1e6 / self.sram_bitcell_um2 * arch["sram_macro_efficiency"] * arch["sram_effective_fraction"]
        return bits / 8.0


@dataclass(frozen=True)
class MemoryGen:
    name: str
    year: int
    gbps_per_pin: float
    bus_width_bits: int
    max_gb_per_stack: float
    pj_per_bit: float
    shoreline_mm_per_stack: float
    source: str

    def stack_bytes_per_s(self) -> float:
        """Shipping bandwidth of one stack: pin rate × bus width × derate (see nodes.yaml)."""
        return self.gbps_per_pin * 1e9 * self.bus_width_bits / 8.0 * raw()["memory"]["pin_rate_derate"]


@dataclass(frozen=True)
class LinkGen:
    name: str
    bytes_per_s_per_link: float   # per direction
    links_per_gpu: int
    pj_per_bit: Optional[float]
    source: str


def _chain(name: str, nodes: dict[str, Any], ref: str, attr: str) -> float:
    """Product of a per-node relative claim from ``ref`` to ``name`` (or its inverse)."""
    order = []
    n = name
    while n is not None:
        order.append(n)
        n = nodes[n].get("previous")
    if ref in order:  # name is newer than (or equal to) ref
        v = 1.0
        for n in order[: order.index(ref)]:
            v *= nodes[n][attr]
        return v
    # name is older: walk from ref back to name
    v = 1.0
    n = ref
    while n != name:
        v /= nodes[n][attr]
        n = nodes[n]["previous"]
    return v


@lru_cache(maxsize=1)
def nodes() -> dict[str, Node]:
    """All nodes, oldest first."""
    d = raw()["nodes"]
    ref = raw()["calibration"]["node"]
    out = {}
    for name, v in d.items():
        out[name] = Node(name=name, year=v["year"], logic_density_mtr_per_mm2=v["logic_density_mtr_per_mm2"],
                         sram_bitcell_um2=v["sram_bitcell_um2"],
                         speed_rel=_chain(name, d, ref, "speed_vs_previous"),
                         energy_rel=_chain(name, d, ref, "power_vs_previous"),
                         era=dict(v["era"]), sources=dict(v.get("sources", {})))
    return out


def node_names() -> list[str]:
    return list(nodes())


def get_node(name: str, field_name: str = "node") -> Node:
    """A node by name or alias (``N5``, ``5nm``, ``4N``, ``1.4nm`` ...)."""
    table = raw()["nodes"]
    k = _key(name)
    for n, v in table.items():
        if k == _key(n) or k in {_key(a) for a in v.get("aliases", [])}:
            return nodes()[n]
    names = node_names()
    aliases = [a for v in table.values() for a in v.get("aliases", [])]
    near = closest(str(name), names + [str(a) for a in aliases]) or names
    raise InputError(field_name, name, f"unknown node; valid: {', '.join(names)} (closest: {', '.join(near[:3])})")


@lru_cache(maxsize=1)
def memory_generations() -> dict[str, MemoryGen]:
    """HBM generations: memory_tech.csv rows (HBM only) + nodes.yaml additions."""
    extra = raw()["memory"]["generations"]
    out: dict[str, MemoryGen] = {}
    with open(DATA / "memory_tech.csv", newline="") as f:
        for row in csv.DictReader(f):
            name = row["name"]
            if name not in extra:
                continue  # GDDR/LPDDR/DDR are not stacked beside the die; not synthesized
            e = extra[name]
            pj = float(row["pj_per_bit"]) if row["pj_per_bit"] else e["pj_per_bit"]
            out[name] = MemoryGen(name, int(row["year"]), float(row["gbps_per_pin"]),
                                  int(row["bus_width_bits_per_stack"]), float(row["max_gb_per_stack"]), pj,
                                  e["shoreline_mm_per_stack"], row["source_url"])
    for name, e in extra.items():
        if name not in out:
            out[name] = MemoryGen(name, e["year"], e["gbps_per_pin"], e["bus_width_bits_per_stack"],
                                  e["max_gb_per_stack"], e["pj_per_bit"], e["shoreline_mm_per_stack"],
                                  "assumption (nodes.yaml)")
    return out


def get_memory(name: str, field_name: str = "memory") -> MemoryGen:
    gens = memory_generations()
    for n, g in gens.items():
        if _key(n) == _key(name):
            return g
    raise InputError(field_name, name, f"unknown memory generation; valid: {', '.join(gens)}")


@lru_cache(maxsize=1)
def link_generations() -> dict[str, LinkGen]:
    """Links: interconnect_tech.csv rows + nodes.yaml additions (energy, future generations)."""
    extra = raw()["links"]["generations"]
    out: dict[str, LinkGen] = {}
    with open(DATA / "interconnect_tech.csv", newline="") as f:
        for row in csv.DictReader(f):
            name = row["name"]
            e = extra.get(name, {})
            out[name] = LinkGen(name, float(row["gb_s_per_direction_per_link_or_port"]) * 1e9,
                                int(row["links_per_gpu"]), e.get("pj_per_bit"), row["source_url"])
    for name, e in extra.items():
        if name not in out:
            bw = e.get("gb_s_per_direction_per_link", e.get("gb_s_per_direction_per_link_or_port"))
            out[name] = LinkGen(name, float(bw) * 1e9, int(e["links_per_gpu"]), e.get("pj_per_bit"),
                                "nodes.yaml")
    return out


def get_link(name: str, field_name: str = "link") -> LinkGen:
    gens = link_generations()
    for n, g in gens.items():
        if _key(n) == _key(name):
            return g
    # allow the short name without the parenthesis, e.g. "NVLink 4"
    for n, g in gens.items():
        if _key(n.split("(")[0]) == _key(name):
            return g
    raise InputError(field_name, name, f"unknown link generation; valid: {', '.join(gens)}")
