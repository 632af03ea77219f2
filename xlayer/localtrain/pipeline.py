"""Pipeline-runtime simulator: K modules on G devices, N consecutive mini-batches.

Modules are placed contiguously: module k runs on device ``k * G // K``. Each device runs its
tasks in a fixed order, each task starting at
    start = max(device free, max over dependencies (end of dependency + comm_s if it ran on
                another device)),
so the makespan is the longest path through the dependency graph plus device serialisation.
Task durations come from measured per-module times (``measure.ModuleTimes``):

* backprop (model parallel, no micro-batches): F_k = fwd_k (last: + classifier),
  B_k = bwd_k (last: + classifier backward). F_k(t) needs F_{k-1}(t) and B_k(t-1) (updated
  weights); B_k(t) needs B_{k+1}(t): the backward lock. Nothing overlaps, so
  makespan = N * sum_k (F_k + B_k) (+ 2 (G-1) comm_s per batch).
* local learning (pipelined): F_k = fwd_k + aux_fwd_k, B_k = aux_bwd_k + bwd_k. F_k(t) needs
  F_{k-1}(t) (the activation) and B_k(t-1) (own update); B_k(t) needs only F_k(t).
  Devices overlap on different batches; steady state ~ max over devices of its busy time.
* BackLink (pipelined + link): as local learning plus a link task L_k(t) = backward of the
  tail T_k with the error that arrives from module k+1, duration tail_bwd_k. L_k(t) needs
  B_k(t) and B_{k+1}(t); the update of module k, hence F_k(t+1), needs L_k(t). That is the
  extra dependency: device k waits for device k+1 once per batch (strict synchronous update,
  no stale weights).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from xlayer.errors import InputError
from xlayer.localtrain.measure import ModuleTimes

PIPELINE_METHODS = ("backprop", "local", "backlink")


@dataclass
class Task:
    name: tuple            # (kind, module, batch)
    device: int
    duration_s: float
    deps: list[tuple] = field(default_factory=list)


@dataclass
class TimelineEvent:
    device: int
    module: int
    batch: int
    kind: str              # "F" forward, "B" backward, "L" BackLink tail backward
    start_s: float
    end_s: float


@dataclass
class PipelineResult:
    """Simulated makespan of ``n_batches`` mini-batches; ``per_batch_s`` = makespan / N."""
    method: str
    K: int
    devices: int
    n_batches: int
    makespan_s: float
    per_batch_s: float
    busy_s: list[float]
    timeline: list[TimelineEvent]

    def summary(self) -> dict:
        d = asdict(self)
        d.pop("timeline")
        return d


def device_of(k: int, K: int, G: int) -> int:
    return k * G // K


def _check(times: ModuleTimes, K: int, G: int, method: str, n_batches: int) -> None:
    if method not in PIPELINE_METHODS:
        raise InputError("pipeline.method", method, f"valid: {', '.join(PIPELINE_METHODS)}")
    if len(times.fwd_s) != K:
        raise InputError("pipeline.times", len(times.fwd_s), f"valid: per-module times for K={K} modules")
    if not 1 <= G <= K:
        raise InputError("devices", G, f"valid: 1..{K} (at most one device per module)")
    if n_batches < 1:
        raise InputError("batches", n_batches, "valid: >= 1")


def build_tasks(times: ModuleTimes, G: int, method: str, n_batches: int) -> list[list[Task]]:
    """Per-device ordered task lists for ``method`` (see module docstring)."""
    K = len(times.fwd_s)
    _check(times, K, G, method, n_batches)
    dev = [device_of(k, K, G) for k in range(K)]
    per_dev: list[list[Task]] = [[] for _ in range(G)]
    mods = [[k for k in range(K) if dev[k] == d] for d in range(G)]
    last = K - 1
    for t in range(n_batches):
        tasks: dict[tuple, Task] = {}
        for k in range(K):
            if method == "backprop":
                f = times.fwd_s[k] + (times.aux_fwd_s[k] if k == last else 0.0)
                b = times.bwd_s[k] + (times.aux_bwd_s[k] if k == last else 0.0)
                b_deps = [("F", k, t)] if k == last else [("B", k + 1, t)]
            else:
                f = times.fwd_s[k] + times.aux_fwd_s[k]
                b = times.aux_bwd_s[k] + times.bwd_s[k]
                b_deps = [("F", k, t)]
            f_deps = [("F", k - 1, t)] if k else []
            if t:
                f_deps.append(("L", k, t - 1) if method == "backlink" and k < last else ("B", k, t - 1))
            tasks[("F", k, t)] = Task(("F", k, t), dev[k], f, f_deps)
            tasks[("B", k, t)] = Task(("B", k, t), dev[k], b, b_deps)
            if method == "backlink" and k < last:
                tasks[("L", k, t)] = Task(("L", k, t), dev[k], times.tail_bwd_s[k],
                                          [("B", k, t), ("B", k + 1, t)])
        for d in range(G):
            if method == "backprop":
                order = [("F", k, t) for k in mods[d]] + [("B", k, t) for k in reversed(mods[d])]
            else:
                order = []
                for i, k in enumerate(mods[d]):
                    order += [("F", k, t), ("B", k, t)]
                    if method == "backlink" and i:
                        order.append(("L", mods[d][i - 1], t))
                if method == "backlink" and mods[d][-1] < last:
                    order.append(("L", mods[d][-1], t))
            per_dev[d] += [tasks[n] for n in order]
    return per_dev


def schedule(per_dev: list[list[Task]], comm_s: float = 0.0) -> list[TimelineEvent]:
    """In-order list scheduling of each device's tasks; raises on a dependency cycle."""
    end: dict[tuple, float] = {}
    where: dict[tuple, int] = {}
    pos = [0] * len(per_dev)
    free = [0.0] * len(per_dev)
    events: list[TimelineEvent] = []
    remaining = sum(len(q) for q in per_dev)
    while remaining:
        progressed = False
        for d, queue in enumerate(per_dev):
            while pos[d] < len(queue):
                task = queue[pos[d]]
                if any(dep not in end for dep in task.deps):
                    break
                ready = max([free[d]] + [end[dep] + (comm_s if where[dep] != d else 0.0)
                                          for dep in task.deps])
                end[task.name] = ready + task.duration_s
                where[task.name] = d
                free[d] = end[task.name]
                kind, k, t = task.name
                events.append(TimelineEvent(d, k, t, kind, ready, end[task.name]))
                pos[d] += 1
                remaining -= 1
                progressed = True
        if not progressed:
            raise RuntimeError("pipeline schedule deadlocked (dependency order inconsistent)")
    return events


def simulate(times: ModuleTimes, devices: int, method: str, n_batches: int = 8,
             comm_s: float = 0.0) -> PipelineResult:
    """Simulate ``method`` in {backprop, local, backlink} for K = len(times.fwd_s) modules."""
    per_dev = build_tasks(times, devices, method, n_batches)
    events = schedule(per_dev, comm_s)
    makespan = max(e.end_s for e in events)
    busy = [sum(e.end_s - e.start_s for e in events if e.device == d) for d in range(devices)]
    return PipelineResult(method, len(times.fwd_s), devices, n_batches, makespan,
                          makespan / n_batches, busy, events)


COLORS = {"F": "#4C72B0", "B": "#DD8452", "L": "#C44E52"}


def plot_timelines(results: list[PipelineResult], path: str | Path) -> Path:
    """One panel per result, one row per device; saved as PNG or SVG (by suffix)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    path = Path(path)
    xmax = max(r.makespan_s for r in results)
    fig, axes = plt.subplots(len(results), 1, figsize=(10, 1.2 + 0.45 * sum(r.devices for r in results)),
                             squeeze=False, sharex=True)
    for ax, r in zip(axes[:, 0], results):
        for e in r.timeline:
            ax.broken_barh([(e.start_s, e.end_s - e.start_s)], (e.device - 0.4, 0.8),
                           facecolors=COLORS[e.kind], edgecolor="white", linewidth=0.3)
        ax.set_yticks(range(r.devices))
        ax.set_yticklabels([f"dev {d}" for d in range(r.devices)], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlim(0, xmax * 1.01)
        ax.set_title(f"{r.method}: K={r.K}, G={r.devices}, {r.n_batches} batches, "
                     f"makespan {r.makespan_s:.3g} s", fontsize=9)
    axes[-1, 0].set_xlabel("time (s)")
    fig.legend(handles=[Patch(color=c, label={"F": "forward", "B": "backward",
                                              "L": "BackLink tail backward"}[k])
                        for k, c in COLORS.items()], loc="upper center", ncol=3, fontsize=7,
               bbox_to_anchor=(0.5, 1.0), frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path)
    plt.close(fig)
    return path
