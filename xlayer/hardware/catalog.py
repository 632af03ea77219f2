"""The YAML catalog of real parts: one file per accelerator in ``catalog/``.

``get_accelerator(name)`` resolves a name or alias case-insensitively and, for an unknown
name, raises an :class:`~xlayer.errors.InputError` that suggests the closest names.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import ValidationError

from xlayer.errors import InputError, closest
from xlayer.hardware.spec import Accelerator
from xlayer.safe_yaml import trusted_load

CATALOG_DIR = Path(__file__).with_name("catalog")
CURVES_FILE = Path(__file__).with_name("nccl_curves.yaml")
CURVE_SIZES_BYTES = tuple(65536.0 * 2 ** i for i in range(15))   # 64 KiB .. 1 GiB


@lru_cache(maxsize=1)
def nccl_curves() -> dict[str, dict]:
    """Named sets of measured collective curves (``nccl_curves.yaml``), as Link.measured dicts."""
    out: dict[str, dict] = {}
    for name, entry in trusted_load(CURVES_FILE.read_text()).items():
        out[name] = {coll: {"sizes_bytes": CURVE_SIZES_BYTES,
                            "busbw_bytes_per_s": tuple(v * 1e9 for v in c["busbw_gb_per_s"])}
                     for coll, c in entry.items() if coll != "about"}
    return out


def _resolve_curves(data: dict) -> dict:
    """A link's ``measured: <name>`` becomes the named curves."""
    for key in ("scale_up", "scale_out"):
        link = data.get(key)
        if isinstance(link, dict) and isinstance(link.get("measured"), str):
            curves = nccl_curves()
            if link["measured"] not in curves:
                raise RuntimeError(f"unknown curve set {link['measured']!r}; known: {sorted(curves)}")
            data[key] = {**link, "measured": curves[link["measured"]]}
    return data


def _key(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


@lru_cache(maxsize=1)
def load_catalog() -> dict[str, Accelerator]:
    """All catalog parts by canonical name."""
    parts: dict[str, Accelerator] = {}
    for path in sorted(CATALOG_DIR.glob("*.yaml")):
        data = _resolve_curves(trusted_load(path.read_text()))
        try:
            acc = Accelerator.model_validate(data)
        except ValidationError as exc:  # a broken catalog file is our bug, say which
            raise RuntimeError(f"catalog file {path.name} is invalid: {exc}") from exc
        parts[acc.name] = acc
    return parts


@lru_cache(maxsize=1)
def _index() -> dict[str, str]:
    idx: dict[str, str] = {}
    for name, acc in load_catalog().items():
        for n in (name, *acc.aliases):
            idx[_key(n)] = name
    return idx


def accelerator_names() -> list[str]:
    return sorted(load_catalog())


def get_accelerator(name: str, field: str = "system.accelerator") -> Accelerator:
    """The catalog part called ``name`` (or one of its aliases)."""
    if not isinstance(name, str) or not name.strip():
        raise InputError(field, name, f"give a catalog name, e.g. {', '.join(accelerator_names()[:4])}")
    hit = _index().get(_key(name))
    if hit is None:
        names = accelerator_names()
        aliases = [a for acc in load_catalog().values() for a in acc.aliases]
        near = closest(name, names + aliases) or names[:3]
        raise InputError(field, name, f"unknown accelerator; closest: {', '.join(near)}")
    return load_catalog()[hit]
