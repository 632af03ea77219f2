"""User-facing errors: one line naming the field, the value and what would be valid.

The CLI turns :class:`InputError` into exit status 2 and a single line on stderr; nothing
else in xlayer catches it, so a library caller sees the same message as an exception.
"""
from __future__ import annotations

import difflib
from typing import Any, Iterable


class InputError(ValueError):
    """Bad user input. ``field`` is a dotted path such as ``parallel.tp``."""

    def __init__(self, field: str, value: Any, valid: str):
        self.field = field
        self.value = value
        self.valid = valid
        super().__init__(f"{field}: {value!r} is not valid; {valid}")


def closest(name: str, choices: Iterable[str], n: int = 3) -> list[str]:
    """The ``n`` names in ``choices`` closest to ``name`` (case-insensitive)."""
    choices = list(choices)
    lowered = {c.lower(): c for c in choices}
    hits = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.3)
    return [lowered[h] for h in hits]
