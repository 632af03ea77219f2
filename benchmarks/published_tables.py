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


def data_path(argv: list[str], default: Path) -> Path | None:
    """The data file named on the command line (default ``default``), or None after saying on
    stderr that it does not exist (the caller exits 2)."""
    args = [a for a in argv if not a.startswith("-")]
    path = Path(args[0]) if args else default
    if not path.is_file():
        print(f"error: data file {path} not found (expected a table like {default.name})", file=sys.stderr)
        return None
    return path
