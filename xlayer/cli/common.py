"""What every command shares: a user mistake ends the command with one line and status 2."""
from __future__ import annotations

import sys
from typing import NoReturn

import typer

from xlayer.errors import InputError


def fail(exc: InputError) -> NoReturn:
    """Print ``error: <field>: <value> is not valid; <what is>`` on stderr and exit 2."""
    print(f"error: {exc}", file=sys.stderr)
    raise typer.Exit(2)
