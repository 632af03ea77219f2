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


def spinner(text: str):
    """A transient spinner on stderr while a study runs (drawn only on a terminal; stdout untouched)."""
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    console = Console(stderr=True)
    prog = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
                    transient=True, redirect_stdout=False, redirect_stderr=False, disable=not console.is_terminal)
    prog.add_task(text, total=None)
    return prog
