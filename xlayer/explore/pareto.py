"""Pareto fronts of sweep or search results: tables and matplotlib plots.

A front keeps the points that no other point beats on both axes (both minimised; see
:func:`xlayer.explore.search.pareto_front`). Axes for sweep results (columns of the Parquet
dataset): ``accelerators``, ``memory_gib``, ``energy_j`` (at TDP), ``gpu_hours_per_mtok``
against ``iteration_time_s`` by default.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from xlayer.errors import InputError
from xlayer.engine.choose import pareto_front

AXES = ("accelerators", "memory_gib", "energy_j", "gpu_hours_per_mtok", "iteration_time_s",
        "tokens_per_s_per_gpu")


def front_rows(df, x: str, y: str = "iteration_time_s", only_fitting: bool = True) -> Any:
    """The rows of a results DataFrame on the (x, y) Pareto front, sorted by x."""
    for axis, name in ((x, "--x"), (y, "--y")):
        if axis not in df.columns:
            raise InputError(name, axis, f"not a result column; try one of {', '.join(AXES)}")
    d = df
    if only_fitting and "fits" in d.columns:
        d = d[d["fits"].astype(bool)]
    if "status" in d.columns:
        d = d[d["status"] == "ok"] if only_fitting else d
    d = d.reset_index(drop=True)
    if len(d) == 0:
        return d
    idx = pareto_front(d[x].to_numpy(dtype=float), d[y].to_numpy(dtype=float))
    return d.iloc[idx].reset_index(drop=True)


def plot_front(x: Sequence[float], y: Sequence[float], front: Sequence[int], path: str | Path,
               xlabel: str, ylabel: str, title: Optional[str] = None, logx: bool = False) -> Path:
    """Scatter every point, draw the front as a step line, save to ``path`` (png/svg/pdf)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    front = np.asarray(front, dtype=np.int64)
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    ax.scatter(x, y, s=8, alpha=0.35, color="tab:gray", label="all points")
    if front.size:
        ax.step(x[front], y[front], where="post", color="tab:red", lw=1.5)
        ax.scatter(x[front], y[front], s=22, color="tab:red", label="Pareto front", zorder=3)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logx:
        ax.set_xscale("log")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
