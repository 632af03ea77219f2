"""Memory generations (shared/reference/memory_tech.csv) applied to a catalog accelerator.

``with_memory_generation`` keeps the compute, caches and links of a part and swaps its HBM:
bandwidth = stacks × per-stack bandwidth of the generation (``gb_s_per_stack``), capacity =
stacks × ``max_gb_per_stack`` (the generation's largest stack), streaming efficiency kept
from the base part (same memory controller assumption). The stack count defaults to the
base part's (H100 SXM: 5 active stacks, memory_tech.csv notes).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from xlayer.errors import InputError
from xlayer.hardware.spec import Accelerator


@dataclass(frozen=True)
class MemoryGeneration:
    name: str
    year: int
    gb_s_per_stack: float
    max_gb_per_stack: float
    source_url: str


def read_memory_tech(path: str | Path, names: tuple[str, ...] = ("HBM2e", "HBM3", "HBM3e", "HBM4")) -> list[MemoryGeneration]:
    """Rows of memory_tech.csv for the HBM generations ``names`` (in that order)."""
    p = Path(path)
    if not p.exists():
        raise InputError("--memory-csv", str(path), "file not found (shared/reference/memory_tech.csv)")
    rows = {r["name"]: r for r in csv.DictReader(p.read_text().splitlines())}
    out = []
    for n in names:
        if n not in rows:
            raise InputError("--memory-csv", str(path), f"no row named {n}; rows: {', '.join(rows)}")
        r = rows[n]
        out.append(MemoryGeneration(n, int(r["year"]), float(r["gb_s_per_stack"]), float(r["max_gb_per_stack"]),
                                    r["source_url"]))
    return out


def with_memory_generation(acc: Accelerator, gen: MemoryGeneration, stacks: int) -> Accelerator:
    """``acc`` with its HBM replaced by ``stacks`` stacks of ``gen`` (module docstring)."""
    levels = []
    for m in acc.memory:
        if m.level == "hbm":
            m = m.model_copy(update={"bandwidth_bytes_per_s": stacks * gen.gb_s_per_stack * 1e9,
                                     "capacity_bytes": stacks * gen.max_gb_per_stack * 1e9})
        levels.append(m)
    return acc.model_copy(update={"memory": tuple(levels), "name": f"{acc.name} with {stacks}x {gen.name}"})
