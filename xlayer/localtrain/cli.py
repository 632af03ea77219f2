"""``xlayer localtrain run|memory|pipeline``: train, measure memory, simulate pipelines.

Every command writes JSON + CSV (and a plot) into ``--out`` and prints a table, or with
``--json`` one JSON document on stdout. Bad input exits with status 2 and one line on stderr.
Run standalone as ``python -m xlayer.localtrain.cli --help``.
"""
from __future__ import annotations

import csv
import json
import statistics
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from xlayer.errors import InputError

app = typer.Typer(help="Local learning (greedy, DGL, InfoPro, BackLink) versus backprop: "
                       "training, memory and simulated pipeline runtime.", no_args_is_help=True)
err = Console(stderr=True)


def _ints(text: str, field: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(field, text, "valid: comma-separated integers, e.g. 2,4,8") from None


def _strs(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def _write_csv(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _table(title: str, rows: list[dict]) -> Table:
    t = Table(title=title)
    for k in rows[0]:
        t.add_column(k)
    for r in rows:
        t.add_row(*[f"{v:.4g}" if isinstance(v, float) else str(v) for v in r.values()])
    return t


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=err, transient=False)


def _guard(fn):
    """Run fn(); InputError -> one line on stderr and exit status 2."""
    try:
        return fn()
    except InputError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2)


def _device(name: str) -> str:
    import torch
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name not in ("cpu", "cuda"):
        raise InputError("device", name, "valid: auto, cpu, cuda")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("device", name, "valid here: cpu (no CUDA device)")
    return name


@app.command()
def run(
    net: str = typer.Option("resnet32", help="resnet32, resnet110 or any resnet{6n+2}"),
    dataset: str = typer.Option("fashion-mnist", help="fashion-mnist, cifar10, synthetic"),
    data: Optional[Path] = typer.Option(None, help="folder with the dataset files"),
    methods: str = typer.Option("backprop,greedy,dgl,backlink", help="comma list: backprop, greedy, dgl, infopro, infopro-contrast, backlink"),
    k: str = typer.Option("4", "--K", "-K", help="comma list of module counts"),
    p: int = typer.Option(1, help="BackLink propagation length (residual blocks)"),
    head: Optional[str] = typer.Option(None, help="override the local head: linear, mlp-sr, infopro-softmax, infopro-contrast"),
    split: str = typer.Option("published", help="published, balanced, even"),
    seeds: str = typer.Option("0", help="comma list of seeds"),
    epochs: int = typer.Option(2),
    batch_size: int = typer.Option(128),
    lr: float = typer.Option(0.1),
    warmup_epochs: int = typer.Option(0),
    train_batches: Optional[int] = typer.Option(None, help="limit batches per epoch"),
    test_batches: Optional[int] = typer.Option(None, help="limit test batches"),
    train_subset: Optional[int] = typer.Option(None, help="train on a fixed stratified subset of this many images (subset seed 0)"),
    test_subset: Optional[int] = typer.Option(None, help="evaluate on a fixed stratified subset of this many test images"),
    threads: Optional[int] = typer.Option(None, help="torch CPU threads"),
    device: str = typer.Option("auto", help="auto, cpu, cuda"),
    out: Path = typer.Option(Path("out/localtrain/run"), help="results folder"),
    resume: bool = typer.Option(False, help="continue each run from its last finished epoch"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable stdout"),
):
    """Train each (method, K, seed) and report test accuracy (mean ± std over seeds)."""
    def go():
        from xlayer.localtrain import data as D
        from xlayer.localtrain.methods import MethodConfig, check_method
        from xlayer.localtrain.train import TrainConfig, build, train

        ms = [check_method(m) for m in _strs(methods)]
        ks, ss = _ints(k, "K"), _ints(seeds, "seeds")
        dev = _device(device)
        ds = D.load(dataset, data, **({"channels": 1, "size": 28} if dataset == "synthetic" else {}))
        if train_subset is not None or test_subset is not None:
            ds = D.subset(ds, train_subset, test_subset)
        jobs = []
        for m in ms:
            for kk in ([1] if m == "backprop" else ks):
                for s in ss:
                    mc = MethodConfig(m, kk, p if m == "backlink" else 0, head if m != "backprop" else None, split)
                    jobs.append(TrainConfig(net, mc, epochs, batch_size, lr, warmup_epochs=warmup_epochs,
                                            seed=s, train_batches=train_batches,
                                            test_batches=test_batches, threads=threads))
        for j in jobs:  # validate every configuration before spending time on any
            build(j, ds)
        rows, results = [], []
        nb = D.n_batches(len(ds.y_train), batch_size, True, train_batches)
        with _progress() as prog:
            for j in jobs:
                mc = j.method
                name = f"{mc.method}_K{mc.K}_p{mc.p}_s{j.seed}"
                task = prog.add_task(name, total=epochs * nb)
                r = train(j, ds, out / name, resume=resume, device=dev,
                          progress=lambda e, i, l: prog.update(task, completed=e * nb + i + 1))
                prog.update(task, completed=epochs * nb)
                results.append(r.as_dict())
                for e in r.epochs:
                    rows.append({"method": mc.method, "K": mc.K, "p": mc.p, "head": mc.resolved_head() or "",
                                 "seed": j.seed, **asdict(e)})
        summary = []
        keys = sorted({(r["method"], r["K"], r["p"]) for r in rows}, key=lambda t: (ms.index(t[0]), t[1]))
        for (m, kk, pp) in keys:
            finals = [r["test_acc"] for r in rows if (r["method"], r["K"], r["p"]) == (m, kk, pp) and r["epoch"] == epochs]
            times = [r["epoch_time_s"] for r in rows if (r["method"], r["K"], r["p"]) == (m, kk, pp)]
            summary.append({"method": m, "K": kk, "p": pp, "seeds": len(finals),
                            "test_acc_mean": statistics.mean(finals) if finals else float("nan"),
                            "test_acc_std": statistics.stdev(finals) if len(finals) > 1 else 0.0,
                            "epoch_time_s_mean": statistics.mean(times) if times else float("nan")})
        out.mkdir(parents=True, exist_ok=True)
        _write_csv(out / "epochs.csv", rows)
        _write_csv(out / "summary.csv", summary)
        doc = {"command": "run", "dataset": ds.name, "net": net, "n_train": len(ds.y_train),
               "n_test": len(ds.y_test), "summary": summary, "runs": results}
        (out / "summary.json").write_text(json.dumps(doc, indent=2))
        _plot_curves(rows, out / "test_acc.png")
        if as_json:
            typer.echo(json.dumps(doc))
        else:
            Console().print(_table(f"{net} on {ds.name}: test accuracy after {epochs} epochs", summary))
            err.print(f"results in {out}")
    _guard(go)


def _plot_curves(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in sorted({(r["method"], r["K"], r["seed"]) for r in rows}):
        pts = [(r["epoch"], r["test_acc"]) for r in rows if (r["method"], r["K"], r["seed"]) == key]
        ax.plot(*zip(*pts), marker="o", label=f"{key[0]} K={key[1]} s{key[2]}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


@app.command()
def memory(
    net: str = typer.Option("resnet110"),
    in_channels: int = typer.Option(3, help="3 (32x32) or 1 (28x28)"),
    batch_size: int = typer.Option(128),
    k: str = typer.Option("1,2,4,8,16", "--K", "-K", help="comma list of module counts"),
    methods: str = typer.Option("backprop,greedy,backlink"),
    p: int = typer.Option(1, help="BackLink propagation length"),
    head: Optional[str] = typer.Option(None),
    split: str = typer.Option("published"),
    device: str = typer.Option("auto"),
    threads: Optional[int] = typer.Option(None),
    out: Path = typer.Option(Path("out/localtrain/memory")),
    as_json: bool = typer.Option(False, "--json"),
):
    """Peak memory of one training step per (method, K); CPU: exact accounting, GPU: allocator peak."""
    def go():
        import torch
        from xlayer.localtrain.measure import memory_of_step
        from xlayer.localtrain.methods import LocalLearner, MethodConfig, check_method
        from xlayer.localtrain.nets import resnet

        if threads:
            torch.set_num_threads(threads)
        dev = _device(device)
        ms, ks = [check_method(m) for m in _strs(methods)], _ints(k, "K")
        size = 28 if in_channels == 1 else 32
        configs = []
        for m in ms:
            for kk in ([1] if m == "backprop" else ks):
                if m == "backlink" and kk == 1:
                    continue
                mc = MethodConfig(m, kk, p if m == "backlink" else 0, head if m != "backprop" else None, split)
                LocalLearner(resnet(net, in_channels, size), mc)   # validate first
                configs.append(mc)
        rows = []
        with _progress() as prog:
            task = prog.add_task("memory", total=len(configs))
            for mc in configs:
                torch.manual_seed(0)
                learner = LocalLearner(resnet(net, in_channels, size), mc)
                x = torch.rand(batch_size, in_channels, size, size)
                y = torch.randint(0, 10, (batch_size,))
                r = memory_of_step(learner, x, y, dev).as_dict()
                rows.append(r)
                prog.advance(task)
                del learner
        base = next((r["peak_bytes"] for r in rows if r["method"] == "backprop"), None)
        for r in rows:
            r["peak_GiB"] = r["peak_bytes"] / 2**30
            r["reduction_vs_backprop"] = 1 - r["peak_bytes"] / base if base else float("nan")
        out.mkdir(parents=True, exist_ok=True)
        _write_csv(out / "memory.csv", rows)
        doc = {"command": "memory", "net": net, "batch_size": batch_size, "rows": rows}
        (out / "memory.json").write_text(json.dumps(doc, indent=2))
        _plot_memory(rows, out / "memory.png")
        if as_json:
            typer.echo(json.dumps(doc))
        else:
            show = [{k2: r[k2] for k2 in ("method", "K", "p", "device", "peak_GiB", "reduction_vs_backprop")} for r in rows]
            Console().print(_table(f"{net}, batch {batch_size}: peak memory of a training step", show))
    _guard(go)


def _plot_memory(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 3.5))
    labels = [f"{r['method']}\nK={r['K']}" for r in rows]
    ax.bar(range(len(rows)), [r["peak_bytes"] / 2**30 for r in rows], color="#4C72B0")
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels(labels, fontsize=6)
    ax.set_ylabel("peak memory (GiB)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


@app.command()
def pipeline(
    net: str = typer.Option("resnet110"),
    in_channels: int = typer.Option(3),
    k: int = typer.Option(4, "--K", "-K", help="number of modules"),
    devices: Optional[int] = typer.Option(None, help="number of devices G (default K)"),
    batches_: int = typer.Option(8, "--batches", help="mini-batches to simulate"),
    batch_size: int = typer.Option(32, help="batch for the time measurement"),
    p: int = typer.Option(1, help="BackLink propagation length"),
    head: str = typer.Option("linear", help="local head for local/backlink"),
    split: str = typer.Option("published"),
    comm_s: float = typer.Option(0.0, help="delay per cross-device transfer, seconds"),
    repeats: int = typer.Option(3),
    stat: str = typer.Option("median", help="median or min over the repeats (min: robust on a shared CPU)"),
    times: Optional[Path] = typer.Option(None, help="JSON of ModuleTimes instead of measuring"),
    device: str = typer.Option("auto"),
    threads: Optional[int] = typer.Option(None),
    fmt: str = typer.Option("png", "--format", help="plot format: png or svg"),
    out: Path = typer.Option(Path("out/localtrain/pipeline")),
    as_json: bool = typer.Option(False, "--json"),
):
    """Measure per-module times, then simulate backprop / local / BackLink on G devices."""
    def go():
        import torch
        from xlayer.localtrain.measure import ModuleTimes, module_times
        from xlayer.localtrain.methods import LocalLearner, MethodConfig
        from xlayer.localtrain.nets import resnet
        from xlayer.localtrain.pipeline import plot_timelines, simulate

        if fmt not in ("png", "svg"):
            raise InputError("format", fmt, "valid: png, svg")
        if threads:
            torch.set_num_threads(threads)
        G = devices or k
        if not 1 <= G <= k:
            raise InputError("devices", G, f"valid: 1..{k} (at most one device per module)")
        if batches_ < 1:
            raise InputError("batches", batches_, "valid: >= 1")
        if times is not None:
            if not times.is_file():
                raise InputError("times", str(times), "valid: an existing JSON file of module times")
            mt = ModuleTimes(**json.loads(times.read_text()))
        else:
            dev = _device(device)
            size = 28 if in_channels == 1 else 32
            torch.manual_seed(0)
            learner = LocalLearner(resnet(net, in_channels, size),
                                   MethodConfig("backlink", k, p, head, split)).to(dev)
            x = torch.rand(batch_size, in_channels, size, size)
            y = torch.randint(0, 10, (batch_size,))
            with _progress() as prog:
                prog.add_task(f"timing {k} modules", total=None)
                mt = module_times(learner, x, y, repeats=repeats, stat=stat)
        results = [simulate(mt, G, m, batches_, comm_s) for m in ("backprop", "local", "backlink")]
        base = results[0].makespan_s
        rows = [{**r.summary(), "reduction_vs_backprop": 1 - r.makespan_s / base} for r in results]
        for r in rows:
            r["busy_s"] = ";".join(f"{b:.4g}" for b in r["busy_s"])
        out.mkdir(parents=True, exist_ok=True)
        (out / "module_times.json").write_text(json.dumps(mt.as_dict(), indent=2))
        _write_csv(out / "pipeline.csv", rows)
        _write_csv(out / "timeline.csv", [{"method": r.method, **asdict(e)} for r in results for e in r.timeline])
        plot = plot_timelines(results, out / f"timeline.{fmt}")
        doc = {"command": "pipeline", "net": net, "K": k, "devices": G, "p": p,
               "module_times": mt.as_dict(), "results": rows, "plot": str(plot)}
        (out / "pipeline.json").write_text(json.dumps(doc, indent=2))
        if as_json:
            typer.echo(json.dumps(doc))
        else:
            show = [{c: r[c] for c in ("method", "K", "devices", "makespan_s", "per_batch_s", "reduction_vs_backprop")} for r in rows]
            Console().print(_table(f"{net}: simulated runtime, {batches_} batches", show))
            err.print(f"timeline plot: {plot}")
    _guard(go)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
