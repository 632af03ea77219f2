"""Shared by the scripts that set xlayer beside published measurement tables
(``compare_gemm.py``, ``compare_sdpa.py``): reading a table whose ``#`` lines name its source,
the per-group error summary, and the data-file argument."""
from __future__ import annotations

import csv
import gzip
import statistics
import sys
from pathlib import Path
from typing import Any, Callable, Iterable


def read_commented_csv(path: Path) -> list[dict[str, str]]:
    """The data rows of a CSV (gzip-compressed when it ends in .gz) whose ``#`` lines are its
    source note."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="") as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))


def error_summary(rows: Iterable[Any], key: Callable[[Any], tuple], center: Callable = statistics.mean
                  ) -> dict[tuple, tuple[int, float, float]]:
    """key -> (rows, ``center`` of the signed error %, mean absolute error %), keys sorted; each
    row has an ``error_pct``."""
    groups: dict[tuple, list[float]] = {}
    for r in rows:
        groups.setdefault(key(r), []).append(r.error_pct)
    return {k: (len(e), center(e), statistics.mean(abs(x) for x in e)) for k, e in sorted(groups.items())}


def compare_or_explain(compare: Callable[[Path], list], path: Path) -> list | None:
    """``compare(path)``, or None after one line on stderr naming what the table lacks (a
    column, or a value that is not a number or not a known part)."""
    try:
        return compare(path)
    except KeyError as exc:
        print(f"error: {path}: no column or known value {exc}; expected a table like the default one", file=sys.stderr)
    except (ValueError, UnicodeDecodeError, OSError, EOFError) as exc:
        print(f"error: {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
    return None


def data_path(argv: list[str], default: Path) -> Path | None:
    """The data file named on the command line (default ``default``), or None after saying on
    stderr that it does not exist (the caller exits 2)."""
    args = [a for a in argv if not a.startswith("-")]
    path = Path(args[0]) if args else default
    if not path.is_file():
        print(f"error: data file {path} not found (expected a table like {default.name})", file=sys.stderr)
        return None
    return path
