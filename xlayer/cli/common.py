"""What every command shares.

- a user mistake ends the command with one line ``error: <field>: <value> is not valid; <why>``
  on stderr and status 2 (:func:`fail`);
- ``--json`` prints strict JSON (:func:`dumps`: NaN and ±inf become ``null``, numpy scalars
  plain numbers);
- tables and summary lines never cut a value to "…" when stdout is not a terminal
  (:func:`console`: wide, no soft wrapping, table cells fold instead of ellipsis);
- files a user names are checked before any work (:func:`check_file`, :func:`check_out_file`).
"""
from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any, NoReturn, Optional

import typer

from xlayer.errors import InputError

NOT_A_TTY_WIDTH = 1000   # characters per line when stdout is a file or a pipe: wide enough for any table


def fail(exc: InputError) -> NoReturn:
    """Print ``error: <field>: <value> is not valid; <what is>`` on stderr and exit 2."""
    print(f"error: {exc}", file=sys.stderr)
    raise typer.Exit(2)


# ---- strict JSON ------------------------------------------------------------------------------

def jsonable(obj: Any, _depth: int = 0) -> Any:
    """``obj`` with non-finite floats as None, numpy scalars/arrays as Python values, Paths and
    other leaves as strings; the result always passes ``json.dumps(allow_nan=False)``."""
    if _depth > 200:
        return str(obj)
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k) if not isinstance(k, (str, int, float, bool)) or k is None else
                (k if isinstance(k, str) else str(k)): jsonable(v, _depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [jsonable(v, _depth + 1) for v in obj]
    import numpy as np
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return jsonable(float(obj))
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist(), _depth + 1)
    if hasattr(obj, "model_dump"):
        return jsonable(obj.model_dump(), _depth + 1)
    if hasattr(obj, "item") and callable(obj.item):
        try:
            return jsonable(obj.item(), _depth + 1)
        except Exception:  # noqa: BLE001
            pass
    if hasattr(obj, "__float__"):
        try:
            return jsonable(float(obj))
        except Exception:  # noqa: BLE001
            pass
    return str(obj)


def dumps(obj: Any, indent: Optional[int] = 1) -> str:
    """Strict JSON text (RFC 8259: no NaN, no Infinity)."""
    return json.dumps(jsonable(obj), indent=indent, allow_nan=False)


def print_json(obj: Any, indent: Optional[int] = 1) -> None:
    print(dumps(obj, indent))


# ---- consoles ---------------------------------------------------------------------------------

def _fold_tables(renderables) -> None:
    from rich.table import Table
    for r in renderables:
        if isinstance(r, Table):
            for col in r.columns:
                if col.overflow == "ellipsis":
                    col.overflow = "fold"


def console(stderr: bool = False):
    """A rich Console that never cuts a value to "…": on a terminal, table cells fold
    (wrap inside the value) instead of ending in an ellipsis; elsewhere (a file, a pipe) the
    width is :data:`NOT_A_TTY_WIDTH` (or ``COLUMNS`` if wider), so nothing wraps at all.
    Markup errors in user strings (an id like ``[/x]``) print the text as it is."""
    from rich.console import Console
    from rich.errors import MarkupError

    class _Console(Console):
        def print(self, *objects, **kw):  # noqa: A003
            _fold_tables(objects)
            try:
                return super().print(*objects, **kw)
            except MarkupError:
                kw["markup"] = False
                saved = self._markup
                self._markup = False
                try:
                    return super().print(*objects, **kw)
                finally:
                    self._markup = saved

    stream = sys.stderr if stderr else sys.stdout
    tty = bool(getattr(stream, "isatty", lambda: False)())
    if tty:
        return _Console(stderr=stderr)
    try:
        cols = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        cols = 0
    return _Console(stderr=stderr, width=max(cols, NOT_A_TTY_WIDTH), soft_wrap=True)


def spinner(text: str):
    """A transient spinner on stderr while a study runs (drawn only on a terminal; stdout untouched)."""
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    con = Console(stderr=True)
    prog = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=con,
                    transient=True, redirect_stdout=False, redirect_stderr=False, disable=not con.is_terminal)
    prog.add_task(text, total=None)
    return prog


# ---- files ------------------------------------------------------------------------------------

PLOT_SUFFIXES = (".png", ".svg", ".pdf")


def check_file(path: Any, field: str, what: str = "a file") -> Path:
    """An existing regular file of sane size, else InputError on ``field``."""
    from xlayer.safe_yaml import check_path
    return check_path(path, field, what)


def check_yaml_file(path: Any, field: str, what: str = "a YAML file") -> Any:
    """Parse a user YAML file with the limits of :mod:`xlayer.safe_yaml` (returns the data)."""
    from xlayer.safe_yaml import load_yaml
    return load_yaml(path, field, what)


def check_out_file(path: Optional[Path], field: str, suffixes: tuple[str, ...] = (),
                   what: str = "a file to write") -> Optional[Path]:
    """An output path that can be written: not empty, not a folder, its folder exists, and
    (if ``suffixes``) one of those extensions. Checked before any work starts."""
    if path is None:
        return None
    s = str(path)
    if s.strip() == "":
        raise InputError(field, s, f"empty; give {what}")
    p = Path(s)
    if suffixes and p.suffix.lower() not in suffixes:
        raise InputError(field, s, f"unknown extension {p.suffix or '(none)'}; valid: {', '.join(suffixes)}")
    try:
        if p.is_dir():
            raise InputError(field, s, f"is a folder; give {what}")
        parent = p.parent if str(p.parent) else Path(".")
        if not parent.is_dir():
            raise InputError(field, s, f"folder {parent} does not exist")
    except OSError as exc:
        raise InputError(field, s, f"cannot be used ({exc.strerror or exc})") from None
    return p


def check_out_dir(path: Optional[Path], field: str) -> Optional[Path]:
    """An output folder: not empty, not an existing file."""
    if path is None:
        return None
    s = str(path)
    if s.strip() == "":
        raise InputError(field, s, "empty; give a folder")
    p = Path(s)
    try:
        if p.exists() and not p.is_dir():
            raise InputError(field, s, "is a file; give a folder")
    except OSError as exc:
        raise InputError(field, s, f"cannot be used ({exc.strerror or exc})") from None
    return p


def positive(value: Any, field: str, integer: bool = True, allow_zero: bool = False, maximum: Any = None) -> Any:
    """``value`` if it is a finite number > 0 (>= 0 with ``allow_zero``), else InputError."""
    if value is None:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = value >= 0 if allow_zero else value > 0
    if ok and maximum is not None:
        ok = value <= maximum
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        kind = "an integer" if integer else "a finite number"
        top = f" and <= {maximum:,}" if maximum is not None else ""
        raise InputError(field, value, f"valid: {kind} {bound}{top}")
    return value


# ---- cases ------------------------------------------------------------------------------------

def load_hf_config(hf_config: Any, field: str = "--hf-config") -> Path:
    """Check a Hugging Face config argument: a config.json (or a folder holding one) that is a
    JSON object."""
    from xlayer.safe_yaml import load_json
    if hf_config is None or str(hf_config).strip() == "":
        raise InputError(field, "" if hf_config is None else str(hf_config), "empty; give a config.json")
    p = Path(str(hf_config))
    if p.is_dir():
        p = p / "config.json"
    data = load_json(p, field, "a Hugging Face config.json")
    if not isinstance(data, dict):
        raise InputError(field, str(hf_config), f"holds a JSON {type(data).__name__}, not an object; give a "
                                                "Hugging Face config.json")
    return p


def load_case_arg(case: Any, hf_config: Any = None):
    """The case a command was given: ``CASE`` (a YAML path) and optionally ``--hf-config``,
    whose model replaces the case's (the case's ``model`` block may then be absent or only
    ``{seq_len: N}``, as docs/report.md says)."""
    from xlayer.prediction.case import case_from_dict, load_case
    if hf_config is None:
        return load_case(case)
    from xlayer.safe_yaml import load_yaml
    hf = load_hf_config(hf_config)
    data = load_yaml(case, "CASE", "a case YAML file")
    if not isinstance(data, dict):
        return case_from_dict(data, Path(str(case)).name)   # the loader's own message
    from xlayer.api import load_case as api_load_case
    return api_load_case(data, hf_config=hf)
