"""Building blocks of the validated input specs (ground floor: used by every layer).

* :data:`Count` — a positive whole number of things (layers, heads, GPUs, sequences). A YAML
  ``true`` is not a count, ``96.0`` is 96, ``96.5`` is refused, and so is anything above
  :data:`MAX_COUNT` (10¹⁵: more than any machine or model has; a larger value would overflow
  the float arithmetic of the cost model silently).
* :class:`NullMeansDefault` — the case contract's rule "an absent optional key means the same
  as null": a key given as ``null`` is treated as absent, so the field takes its default (the
  model's own choice, said in the prediction's assumptions) or, if required, is reported
  missing.
"""
from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, model_validator

MAX_COUNT = 10 ** 15


def _count(v: Any, low: int = 1) -> int:
    want = f"a whole number >= {low}"
    if isinstance(v, bool):
        raise ValueError(f"{v!r} is a bool, not a count; give {want}")
    if isinstance(v, float):
        if not math.isfinite(v) or v != int(v):
            raise ValueError(f"{v!r} is not a whole number; give {want}")
        v = int(v)
    if not isinstance(v, int):
        raise ValueError(f"{type(v).__name__} is not a count; give {want}")
    if v < low or v > MAX_COUNT:
        raise ValueError(f"must be a whole number from {low} to {MAX_COUNT:.0e}")
    return v


def _nonneg(v: Any) -> int:
    return _count(v, 0)


Count = Annotated[int, BeforeValidator(_count)]
NonNegativeCount = Annotated[int, BeforeValidator(_nonneg)]


class NullMeansDefault(BaseModel):
    """A spec in which ``key: null`` means the same as leaving ``key`` out."""

    @model_validator(mode="before")
    @classmethod
    def _drop_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None}
        return data
