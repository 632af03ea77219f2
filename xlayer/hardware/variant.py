"""A variant of a catalog part: ``system.overrides`` of a case (validation README), e.g. an
H100 with 96 GB of HBM2e at 2.4 TB/s, or a GPU power-capped at 330 W.

Keys are the sweep's hardware parameters without the ``hardware.`` prefix. What a power cap
does is derived, not stated: :func:`power_capped_clock_ratio`.
"""
from __future__ import annotations

from typing import Optional

from pydantic import ConfigDict, PositiveFloat, model_validator

from xlayer.hardware.spec import Accelerator
from xlayer.specs import Count, NullMeansDefault
from xlayer.units import GIB



def power_capped_clock_ratio(power_limit_w: float, tdp_w: float) -> float:
    """Sustained tensor-core clock under a board power limit P, relative to the clock at the
    TDP: dynamic power of CMOS logic is C·V²·f and in the DVFS range the voltage follows the
    frequency (V ∝ f), so P ∝ f³ and f(P)/f(TDP) = (P/TDP)^(1/3) (Horowitz et al. 1994,
    "Low-power digital design"; the cube law used by NVIDIA's power-capping studies, e.g.
    Patki et al. 2013). The whole board power is scaled (static power is not separated),
    which makes the estimate slightly optimistic. 1 at or above the TDP."""
    return min(1.0, power_limit_w / tdp_w) ** (1.0 / 3.0)


class HardwareOverrides(NullMeansDefault):
    model_config = ConfigDict(frozen=True, extra="forbid")

    peak_flops_scale: Optional[PositiveFloat] = None
    hbm_capacity_gib: Optional[PositiveFloat] = None
    hbm_capacity_bytes: Optional[PositiveFloat] = None
    hbm_bandwidth_bytes_per_s: Optional[PositiveFloat] = None
    hbm_bandwidth_scale: Optional[PositiveFloat] = None
    scale_up_bandwidth_bytes_per_s: Optional[PositiveFloat] = None
    scale_up_bandwidth_scale: Optional[PositiveFloat] = None
    scale_out_bandwidth_bytes_per_s: Optional[PositiveFloat] = None
    scale_out_bandwidth_scale: Optional[PositiveFloat] = None
    scale_up_domain: Optional[Count] = None
    power_limit_w: Optional[PositiveFloat] = None

    @model_validator(mode="after")
    def _finite(self) -> "HardwareOverrides":
        for k, v in self.model_dump(exclude_none=True).items():
            if v != v or v in (float("inf"),):
                raise ValueError(f"{k}={v} is not a finite number")
        if self.hbm_capacity_gib is not None and self.hbm_capacity_bytes is not None:
            raise ValueError("give hbm_capacity_gib or hbm_capacity_bytes, not both")
        return self

    def apply(self, acc: Accelerator) -> Accelerator:
        """The modified frozen part (its name gets a ``*``)."""
        upd: dict = {}
        if self.peak_flops_scale is not None:
            upd["peak_flops_per_s"] = {k: (v * self.peak_flops_scale if v else v)
                                       for k, v in acc.peak_flops_per_s.items()}
        hbm: dict = {}
        if self.hbm_bandwidth_bytes_per_s is not None:
            hbm["bandwidth_bytes_per_s"] = self.hbm_bandwidth_bytes_per_s
        if self.hbm_bandwidth_scale is not None:
            hbm["bandwidth_bytes_per_s"] = hbm.get("bandwidth_bytes_per_s", acc.hbm.bandwidth_bytes_per_s) \
                * self.hbm_bandwidth_scale
        if self.hbm_capacity_gib is not None:
            hbm["capacity_bytes"] = self.hbm_capacity_gib * GIB
        if self.hbm_capacity_bytes is not None:
            hbm["capacity_bytes"] = self.hbm_capacity_bytes
        if hbm:
            upd["memory"] = tuple(m.model_copy(update=hbm) if m.level == "hbm" else m for m in acc.memory)
        for link in ("scale_up", "scale_out"):
            lu: dict = {}
            bw = getattr(self, f"{link}_bandwidth_bytes_per_s")
            sc = getattr(self, f"{link}_bandwidth_scale")
            if bw is not None:
                lu["bandwidth_bytes_per_s"] = bw
            if sc is not None:
                lu["bandwidth_bytes_per_s"] = lu.get("bandwidth_bytes_per_s", getattr(acc, link).bandwidth_bytes_per_s) * sc
            if lu:
                upd[link] = getattr(acc, link).model_copy(update=lu)
        if self.scale_up_domain is not None:
            upd["scale_up_domain"] = self.scale_up_domain
        if self.power_limit_w is not None and self.power_limit_w < acc.tdp_w:
            upd["power_limit_w"] = self.power_limit_w
        if not upd:
            return acc
        return acc.model_copy(update=upd | {"name": acc.name + "*"})
