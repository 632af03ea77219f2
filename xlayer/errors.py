"""User-facing errors: one line naming the field, the value and what would be valid.

The CLI turns :class:`InputError` into exit status 2 and a single line on stderr; nothing
else in xlayer catches it, so a library caller sees the same message as an exception.
The message is always one line: the field and the value's repr are cut to
:data:`MAX_VALUE_CHARS` characters, and line breaks in any part are shown as ``\\n``.
"""
from __future__ import annotations

import difflib
from typing import Any, Iterable

MAX_VALUE_CHARS = 200    # the value (its repr) and the field, each at most this long
MAX_VALID_CHARS = 600    # the explanation


def cut(text: str, limit: int = MAX_VALUE_CHARS) -> str:
    """``text`` on one line and at most ``limit`` characters (an ellipsis marks a cut)."""
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    return text if len(text) <= limit else text[:limit - 1] + "…"


def value_repr(value: Any, limit: int = MAX_VALUE_CHARS) -> str:
    """``repr(value)`` cut to ``limit`` characters, without building a huge repr first."""
    if isinstance(value, str) and len(value) > 4 * limit:
        value = value[:4 * limit]
    elif isinstance(value, (bytes, bytearray)) and len(value) > 4 * limit:
        value = bytes(value[:4 * limit])
    elif isinstance(value, (list, tuple, dict, set)) and len(value) > limit:
        value = f"<{type(value).__name__} of {len(value):,} items>"
        return cut(value, limit)
    try:
        r = repr(value)
    except Exception:  # noqa: BLE001 - a value whose repr fails is still reported
        r = f"<{type(value).__name__}>"
    return cut(r, limit)


class InputError(ValueError):
    """Bad user input. ``field`` is a dotted path such as ``parallel.tp``."""

    def __init__(self, field: str, value: Any, valid: str):
        self.field = field
        self.value = value
        self.valid = valid
        super().__init__(f"{cut(str(field))}: {value_repr(value)} is not valid; "
                         f"{cut(str(valid), MAX_VALID_CHARS)}")


def closest(name: str, choices: Iterable[str], n: int = 3) -> list[str]:
    """The ``n`` names in ``choices`` closest to ``name`` (case-insensitive)."""
    choices = list(choices)
    lowered = {c.lower(): c for c in choices}
    hits = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.3)
    return [lowered[h] for h in hits]
