"""What a software stack allows and chooses by default, for the layout (the case's
``software.framework``). Only documented behaviour; the per-kernel costs of a stack are not
here.

* Megatron family (megatron-lm, nemo, megatron-bridge): data-parallel sharding is the
  distributed optimizer (ZeRO-1: ``--use-distributed-optimizer``, optimizer state sharded over
  the data-parallel group with context parallel) or Megatron-FSDP / torch FSDP2 (ZeRO-3,
  ``--use-megatron-fsdp``); there is no ZeRO-2 (megatron/core/distributed,
  megatron/core/optimizer/distrib_optimizer.py). NeMo and Megatron-Bridge recipes enable the
  distributed optimizer by default (``OptimizerConfig(use_distributed_optimizer=True)`` in
  Megatron-Bridge's recipe helpers) and enable FSDP only when asked, so an unstated ZeRO stage
  is 1 when dp·cp > 1.
* DeepSpeed: ZeRO stages 2 and 3 refuse pipeline parallelism (``deepspeed/runtime/pipe/
  engine.py``: "ZeRO-2 and ZeRO-3 are incompatible with pipeline parallelism").
* Anything else (or no ``software`` block): every stage is allowed and an unstated one is
  chosen as the fastest that fits.

The defaults (ZeRO stage, DP overlap) come from the stack profile
(:mod:`xlayer.mapping.profiles`, ``xlayer/data/stacks/*.yaml``).
"""
from __future__ import annotations

from typing import Optional

from xlayer.errors import InputError
from xlayer.mapping.profiles import profile_for

MEGATRON = ("megatron-lm", "megatron", "megatron-core", "nemo", "megatron-bridge")


def family(framework: Optional[str]) -> str:
    """megatron | deepspeed | other."""
    f = (framework or "").strip().lower()
    if f in MEGATRON or f.startswith("megatron") or f.startswith("nemo"):
        return "megatron"
    if f.startswith("deepspeed"):
        return "deepspeed"
    return "other"


def allowed_zero(framework: Optional[str], pp: int) -> tuple[int, ...]:
    fam = family(framework)
    if fam == "megatron":
        return (0, 1, 3)
    if fam == "deepspeed" and pp > 1:
        return (0, 1)
    return (0, 1, 2, 3)


def check_zero(framework: Optional[str], zero: int, pp: int, field: str = "parallel.zero") -> None:
    """Refuse a ZeRO stage the stack does not have (see the module docstring)."""
    if zero in allowed_zero(framework, pp):
        return
    fam = family(framework)
    if fam == "megatron":
        raise InputError(field, zero, f"{framework} has no ZeRO-2: use 1 (distributed optimizer) or 3 (FSDP)")
    raise InputError(field, zero, f"{framework} refuses ZeRO-{zero} with pipeline parallelism (pp={pp}); use 0 or 1")


def default_zero(framework: Optional[str], data_parallel: int) -> Optional[int]:
    """The stack's own choice for an unstated ZeRO stage, or None (no documented default):
    its profile's ``optimizer_sharding`` (xlayer/data/stacks: Megatron-Bridge/NeMo recipes 1,
    the distributed optimizer; Megatron-LM 0, ``--use-distributed-optimizer`` is opt-in;
    DeepSpeed and PyTorch none) when dp·cp > 1. No software block: None."""
    if not (framework or "").strip():
        return None
    prof, _ = profile_for(framework)
    if prof.optimizer_sharding is None or not (framework or "").strip().lower() in prof.frameworks:
        return None
    return prof.optimizer_sharding if data_parallel > 1 else 0


def default_dp_overlap(framework: Optional[str]) -> bool:
    """Whether the stack overlaps the gradient reduce-scatter and the parameter all-gather
    with compute by default: its profile's ``dp_overlap`` (Megatron-Bridge/NeMo: comm_overlap.py
    sets overlap_grad_reduce and overlap_param_gather when dp > 1; Megatron-LM:
    ``--overlap-grad-reduce`` default False; DeepSpeed's pipeline engine reduces after the
    last micro-batch). No software block: False."""
    if not (framework or "").strip():
        return False
    prof, _ = profile_for(framework)
    return prof.dp_overlap if (framework or "").strip().lower() in prof.frameworks else False
