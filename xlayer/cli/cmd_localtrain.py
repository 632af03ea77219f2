"""``xlayer localtrain run|memory|pipeline``: train, measure memory, simulate pipelines.

Every command writes JSON + CSV (and a plot) into ``--out`` and prints a table, or with
``--json`` one JSON document on stdout. Bad input exits with status 2 and one line on stderr.
Run standalone as ``python -m xlayer.cli.cmd_localtrain --help``.
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
                       "training, memory and simulated pipeline runtime.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
err = Console(stderr=True)

MAX_EPOCHS = 100_000
MAX_BATCH = 65_536
MAX_THREADS = 1_024
MAX_DEPTH = 1_202        # the deepest CIFAR ResNet published (He et al. 2016)
MAX_LIST = 64            # entries in a comma list (K, seeds, methods)


def _ints(text: str, field: str, minimum: int = 1, maximum: int = 1_000_000) -> list[int]:
    """A non-empty comma list of integers in [minimum, maximum]."""
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(field, text, "valid: comma-separated integers, e.g. 2,4,8") from None
    if not vals:
        raise InputError(field, text, "empty; valid: comma-separated integers, e.g. 2,4,8")
    if len(vals) > MAX_LIST:
        raise InputError(field, text, f"{len(vals)} entries; at most {MAX_LIST}")
    for v in vals:
        if not minimum <= v <= maximum:
            raise InputError(field, v, f"valid: integers {minimum}..{maximum:,}")
    return vals


def _int(value, field: str, minimum: int = 1, maximum: int = 1_000_000, optional: bool = False):
    """``value`` if it is an integer in [minimum, maximum] (None allowed with ``optional``)."""
    if value is None and optional:
        return None
    if value is None or isinstance(value, bool) or not minimum <= value <= maximum:
        raise InputError(field, value, f"valid: an integer {minimum}..{maximum:,}")
    return value


def _pos_float(value, field: str, allow_zero: bool = False, maximum: float = 1e6) -> float:
    import math
    ok = value is not None and math.isfinite(value) and (value >= 0 if allow_zero else value > 0) and value <= maximum
    if not ok:
        raise InputError(field, value, f"valid: a finite number {'>= 0' if allow_zero else '> 0'} and <= {maximum:g}")
    return value


def _check_net(net: str) -> None:
    import re
    m = re.fullmatch(r"resnet(\d+)", net.strip().lower()) if isinstance(net, str) else None
    if m and int(m.group(1)) > MAX_DEPTH:
        raise InputError("net", net, f"deeper than resnet{MAX_DEPTH}; valid: resnet{{6n+2}} up to resnet{MAX_DEPTH}")


def _check_out(out: str) -> None:
    s = str(out)
    if s.strip() == "":
        raise InputError("out", s, "empty; give a results folder")
    if Path(s).exists() and not Path(s).is_dir():
        raise InputError("out", s, "is a file; give a results folder")


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
    data: Optional[str] = typer.Option(None, help="folder with the dataset files"),
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
    out: str = typer.Option("out/localtrain/run", help="results folder"),
    resume: bool = typer.Option(False, help="continue each run from its last finished epoch"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable stdout"),
):
    """Train each (method, K, seed) and report test accuracy (mean ± std over seeds)."""
    out_raw, out = out, Path(out)
    data_raw, data = data, (Path(data) if data is not None else None)

    def go():
        _int(epochs, "epochs", 1, MAX_EPOCHS)
        _int(batch_size, "batch-size", 1, MAX_BATCH)
        _pos_float(lr, "lr", maximum=1e3)
        _int(warmup_epochs, "warmup-epochs", 0, epochs)
        _int(train_batches, "train-batches", 1, optional=True)
        _int(test_batches, "test-batches", 1, optional=True)
        _int(test_subset, "test-subset", 1, optional=True)
        _int(threads, "threads", 1, MAX_THREADS, optional=True)
        _int(p, "p", 0, MAX_DEPTH)
        _check_net(net)
        _check_out(out_raw)
        if train_subset is not None and (isinstance(train_subset, bool) or train_subset < batch_size):
            raise InputError("train-subset", train_subset, f"valid: at least the batch size ({batch_size}): every "
                                                           "epoch drops the last incomplete batch")
        if data_raw is not None and (data_raw.strip() == "" or not data.is_dir()):
            raise InputError("data", data_raw, "valid: an existing folder with the dataset files")
        ks, ss = _ints(k, "K", 1, 10_000), _ints(seeds, "seeds", 0, 2 ** 32 - 1)
        from xlayer.localtrain import data as D
        from xlayer.localtrain.methods import MethodConfig, check_method
        from xlayer.localtrain.train import TrainConfig, build, train

        ms = [check_method(m) for m in _strs(methods)]
        if not ms:
            raise InputError("methods", methods, "empty; valid: a comma list of backprop, greedy, dgl, infopro, "
                                                 "infopro-contrast, backlink")
        dev = _device(device)
        ds = D.load(dataset, data, **({"channels": 1, "size": 28} if dataset == "synthetic" else {}))
        if train_subset is not None or test_subset is not None:
            ds = D.subset(ds, train_subset, test_subset)
        if len(ds.y_train) < batch_size:
            raise InputError("batch-size", batch_size, f"valid: at most the {len(ds.y_train)} training images "
                                                       "(the last incomplete batch is dropped)")
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
        (out / "summary.json").write_text(_dumps(doc, indent=2))
        _plot_curves(rows, out / "test_acc.png")
        if as_json:
            typer.echo(_dumps(doc, indent=None))
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
    out: str = typer.Option("out/localtrain/memory"),
    as_json: bool = typer.Option(False, "--json"),
):
    """Peak memory of one training step per (method, K); CPU: exact accounting, GPU: allocator peak."""
    out_raw, out = out, Path(out)

    def go():
        _int(batch_size, "batch-size", 1, MAX_BATCH)
        _int(threads, "threads", 1, MAX_THREADS, optional=True)
        _int(p, "p", 0, MAX_DEPTH)
        if in_channels not in (1, 3):
            raise InputError("in-channels", in_channels, "valid: 3 (32x32 images) or 1 (28x28)")
        _check_net(net)
        _check_out(out_raw)
        ks = _ints(k, "K", 1, 10_000)
        import torch
        from xlayer.localtrain.measure import memory_of_step
        from xlayer.localtrain.methods import LocalLearner, MethodConfig, check_method
        from xlayer.localtrain.nets import resnet

        if threads:
            torch.set_num_threads(threads)
        dev = _device(device)
        ms = [check_method(m) for m in _strs(methods)]
        if not ms:
            raise InputError("methods", methods, "empty; valid: a comma list of backprop, greedy, backlink, ...")
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
        (out / "memory.json").write_text(_dumps(doc, indent=2))
        _plot_memory(rows, out / "memory.png")
        if as_json:
            typer.echo(_dumps(doc, indent=None))
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
    times: Optional[str] = typer.Option(None, help="JSON of ModuleTimes instead of measuring"),
    device: str = typer.Option("auto"),
    threads: Optional[int] = typer.Option(None),
    fmt: str = typer.Option("png", "--format", help="plot format: png or svg"),
    out: str = typer.Option("out/localtrain/pipeline"),
    as_json: bool = typer.Option(False, "--json"),
):
    """Measure per-module times, then simulate backprop / local / BackLink on G devices."""
    out_raw, out = out, Path(out)
    times_raw, times = times, (Path(times) if times is not None else None)

    def go():
        if fmt not in ("png", "svg"):
            raise InputError("format", fmt, "valid: png, svg")
        _int(k, "K", 1, 10_000)
        _int(batch_size, "batch-size", 1, MAX_BATCH)
        _int(batches_, "batches", 1, 100_000)
        _int(repeats, "repeats", 1, 1_000)
        _int(p, "p", 0, MAX_DEPTH)
        _int(threads, "threads", 1, MAX_THREADS, optional=True)
        _int(devices, "devices", 1, 10_000, optional=True)
        _pos_float(comm_s, "comm-s", allow_zero=True, maximum=1e6)
        if stat not in ("median", "min"):
            raise InputError("stat", stat, "valid: median, min")
        if in_channels not in (1, 3):
            raise InputError("in-channels", in_channels, "valid: 3 (32x32 images) or 1 (28x28)")
        _check_net(net)
        _check_out(out_raw)
        times_doc = None
        if times is not None:
            from xlayer.safe_yaml import load_json
            if times_raw.strip() == "" or not times.is_file():
                raise InputError("times", times_raw, "valid: an existing JSON file of module times")
            times_doc = _check_times(load_json(times, "times", "a JSON file of module times"), k)
        import torch
        from xlayer.localtrain.measure import ModuleTimes, module_times
        from xlayer.localtrain.methods import LocalLearner, MethodConfig
        from xlayer.localtrain.nets import resnet
        from xlayer.localtrain.pipeline import plot_timelines, simulate

        if threads:
            torch.set_num_threads(threads)
        G = devices or k
        if not 1 <= G <= k:
            raise InputError("devices", G, f"valid: 1..{k} (at most one device per module)")
        if batches_ < 1:
            raise InputError("batches", batches_, "valid: >= 1")
        if times_doc is not None:
            mt = ModuleTimes(**times_doc)
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
        (out / "pipeline.json").write_text(_dumps(doc, indent=2))
        if as_json:
            typer.echo(_dumps(doc, indent=None))
        else:
            show = [{c: r[c] for c in ("method", "K", "devices", "makespan_s", "per_batch_s", "reduction_vs_backprop")} for r in rows]
            Console().print(_table(f"{net}: simulated runtime, {batches_} batches", show))
            err.print(f"timeline plot: {plot}")
    _guard(go)


def _dumps(doc, indent=2) -> str:
    from xlayer.cli.common import dumps
    return dumps(doc, indent=indent)


TIMES_FIELDS = ("fwd_s", "bwd_s", "aux_fwd_s", "aux_bwd_s", "tail_bwd_s")   # ModuleTimes' fields


def _check_times(data, k: int) -> dict:
    """A parsed --times document checked before torch is imported: the ModuleTimes fields, each a
    list of K finite times >= 0."""
    import math
    if not isinstance(data, dict):
        raise InputError("times", type(data).__name__, "valid: a JSON object of ModuleTimes fields")
    names = list(TIMES_FIELDS)
    for key in data:
        if key not in names:
            raise InputError(f"times.{key}", data[key], f"unknown field; valid: {', '.join(names)}")
    for key in names:
        v = data.get(key)
        if not isinstance(v, list) or len(v) != k:
            raise InputError(f"times.{key}", v if not isinstance(v, list) else f"{len(v)} values",
                             f"valid: a list of {k} times, one per module (--K {k})")
        for x in v:
            if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or x < 0:
                raise InputError(f"times.{key}", x, "valid: finite numbers >= 0 (seconds)")
    return data


def main() -> None:
    from xlayer.cli.main import run
    import sys
    raise SystemExit(run(["localtrain", *sys.argv[1:]]))


if __name__ == "__main__":
    main()


def register(main_app) -> None:
    """Mount this app as ``xlayer localtrain``."""
    main_app.add_typer(app, name="localtrain", help="local-learning experiments (BackLink and baselines)")
