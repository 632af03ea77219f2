"""The ``xlayer`` command.

User mistakes (bad YAML, unknown fields or parts, impossible layouts) exit with status 2 and
one line on stderr naming the field, the value and what would be valid.
"""
from __future__ import annotations

import json
import sys
from importlib import resources
from pathlib import Path
from typing import List

import typer
from rich.console import Console
from rich.table import Table

from xlayer.errors import InputError
from xlayer.cli.common import fail as _fail
from xlayer.units import format_seconds as _fmt_s

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="xlayer: time, memory and bottlenecks of large-model training and inference, "
                       "from technology node to cluster.")
out = Console()
err = Console(stderr=True)

GIB = 2.0 ** 30






def print_training(pred) -> None:
    d = pred.to_dict()
    out.print(f"[bold]{pred.case_id}[/bold]  layout: {pred.layout.describe()}")
    out.print(f"iteration time [bold]{_fmt_s(pred.iteration_time_s)}[/bold]   "
              f"MFU {100 * pred.mfu:.1f} %   HFU {100 * pred.hfu:.1f} %   "
              f"{pred.tokens_per_s:,.0f} tokens/s   memory {pred.memory_bytes / GIB:.2f} GiB of "
              f"{pred.capacity_bytes / GIB:.1f} GiB" + ("" if pred.fits_memory else "  [red]DOES NOT FIT[/red]"))
    t = Table(title="time per iteration (busiest pipeline rank)")
    t.add_column("term (function)")
    t.add_column("time", justify="right")
    t.add_column("share", justify="right")
    for k, v in d["time_breakdown_s"].items():
        t.add_row(k, _fmt_s(v), f"{100 * v / pred.iteration_time_s:.1f} %")
    out.print(t)
    mt = Table(title="memory per accelerator (busiest rank)")
    mt.add_column("term (function)")
    mt.add_column("GiB", justify="right")
    for k, v in d["memory_breakdown_gib"].items():
        mt.add_row(k, f"{v:.2f}")
    out.print(mt)
    lt = Table(title="one layer, one micro-batch")
    lt.add_column("op")
    lt.add_column("time", justify="right")
    lt.add_column("GFLOP", justify="right")
    lt.add_column("MB", justify="right")
    lt.add_column("bound")
    for row in pred.ops:
        lt.add_row(row["name"], _fmt_s(row["time_s"]), f"{row['flops'] / 1e9:.1f}", f"{row['bytes'] / 1e6:.1f}",
                   row["bound"])
    out.print(lt)
    if "energy_wall_j" in pred.metrics:
        e = pred.metrics
        out.print(f"energy per iteration: {e['energy_device_j'] / 1e6:.2f} MJ at the devices, "
                  f"{e['energy_wall_j'] / 1e6:.2f} MJ at the wall (xlayer.cost.energy.training_energy)")
    if pred.assumptions:
        out.print("assumed: " + "; ".join(pred.assumptions))


@app.command()
def predict(case: Path = typer.Argument(..., help="case YAML (shared/validation format)"),
            json_out: bool = typer.Option(False, "--json", help="print one JSON object")) -> None:
    """Predict one case: time per iteration (or token), memory, MFU, with breakdowns."""
    from xlayer.predict.case import load_case
    try:
        c = load_case(case)
        if c.kind == "training":
            from xlayer.predict.api import predict_training
            pred = predict_training(c)
            if json_out:
                print(json.dumps(pred.to_dict(), indent=1, default=float))
            else:
                print_training(pred)
        else:
            try:
                from xlayer.predict.inference import predict_inference, print_inference
            except ImportError:
                raise InputError("kind", c.kind, "inference prediction is not available in this version") from None
            pred = predict_inference(c)
            if json_out:
                print(json.dumps(pred.to_dict(), indent=1, default=float))
            else:
                print_inference(pred, out)
    except InputError as exc:
        _fail(exc)


@app.command()
def validate(paths: List[str] = typer.Argument(..., help="case files or folders"),
             json_out: bool = typer.Option(False, "--json", help="print the validate JSON object")) -> None:
    """Predict measured cases and report predicted vs measured."""
    from xlayer.validate.runner import collect_case_files, validate_files
    try:
        files = collect_case_files(paths)
    except InputError as exc:
        _fail(exc)
    if json_out:
        result = validate_files(files)
        print(json.dumps(result, indent=1))
        return
    from rich.progress import Progress
    with Progress(console=err, transient=True, disable=not err.is_terminal) as prog:
        task = prog.add_task("validating", total=len(files))
        result = validate_files(files, progress=lambda f: prog.advance(task))
    t = Table(title="predicted vs measured")
    for col in ("case", "metric", "measured", "predicted", "error"):
        t.add_column(col, justify="right" if col in ("measured", "predicted", "error") else "left")
    for r in result["cases"]:
        if r["predicted"] is None:
            t.add_row(r["id"], str(r["metric"]), str(r["measured"]), "-", r.get("reason", "")[:60])
        else:
            t.add_row(r["id"], r["metric"], f"{r['measured']:.4g}", f"{r['predicted']:.4g}", f"{r['error_pct']:+.1f} %")
    out.print(t)
    s = Table(title="summary")
    for col in ("metric", "count", "MAPE %", "max |err| %"):
        s.add_column(col)
    for k, v in result["summary"].items():
        s.add_row(k, str(v["count"]), str(v["mape_pct"]), str(v["max_abs_error_pct"]))
    out.print(s)
    bs = Table(title="by source")
    for col in ("source", "count", "MAPE %", "max |err| %"):
        bs.add_column(col)
    for k, v in result.get("by_source", {}).items():
        bs.add_row(k, str(v["count"]), str(v["mape_pct"]), str(v["max_abs_error_pct"]))
    out.print(bs)


@app.command()
def demo() -> None:
    """Predict GPT-3 175B on 1024 A100-80GB (the embedded example), print the breakdown and
    the best layouts a search finds."""
    from xlayer.predict.api import predict_training
    from xlayer.predict.case import load_case
    path = resources.files("xlayer") / "examples" / "gpt3-175b-1024xa100.yaml"
    with resources.as_file(path) as p:
        c = load_case(p)
    print_training(predict_training(c))
    from xlayer.explore.search import search_case
    cs = search_case(c, top=3, compare=False)
    r = cs.result
    t = Table(title=f"best layouts for this model and cluster (xlayer search: {r.considered:,} layouts, "
                    f"{r.valid:,} valid, {r.fitting:,} fit)")
    for col in ("rank", "layout", "iteration", "MFU", "memory GiB"):
        t.add_column(col)
    for i, pred in enumerate(cs.top):
        t.add_row(str(i + 1), pred.layout.describe(), _fmt_s(pred.iteration_time_s), f"{100 * pred.mfu:.1f} %",
                  f"{pred.memory_bytes / GIB:.1f}")
    out.print(t)


@app.command()
def catalog(json_out: bool = typer.Option(False, "--json")) -> None:
    """List the accelerators in the hardware catalog."""
    from xlayer.hardware import load_catalog
    parts = load_catalog()
    if json_out:
        print(json.dumps({n: a.model_dump() for n, a in parts.items()}, indent=1, default=str))
        return
    t = Table(title="hardware catalog")
    for col in ("name", "bf16 TFLOP/s", "fp8 TFLOP/s", "HBM GiB", "HBM TB/s", "scale-up GB/s", "domain", "NIC GB/s"):
        t.add_column(col)
    for n, a in parts.items():
        fp8 = a.peak_flops_per_s.get("fp8")
        t.add_row(n, f"{a.peak('bf16') / 1e12:.0f}", f"{fp8 / 1e12:.0f}" if fp8 else "-",
                  f"{a.hbm.capacity_bytes / GIB:.0f}", f"{a.hbm.bandwidth_bytes_per_s / 1e12:.2f}",
                  f"{a.scale_up.bandwidth_bytes_per_s / 1e9:.0f}", str(a.scale_up_domain),
                  f"{a.scale_out.bandwidth_bytes_per_s / 1e9:.0f}")
    out.print(t)


def _mount_optional() -> None:
    """Sub-commands that live beside their layer: ``xlayer/cli/cmd_*.py`` modules each define
    ``register(app)``; the local-learning app mounts as ``xlayer localtrain``."""
    import importlib
    import pkgutil

    import xlayer.cli as pkg
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if info.name.startswith("cmd_"):
            importlib.import_module(f"xlayer.cli.{info.name}").register(app)
    try:
        from xlayer.localtrain.cli import app as lt_app
    except ImportError:
        return
    app.add_typer(lt_app, name="localtrain", help="local-learning experiments (BackLink and baselines)")


_mount_optional()


def main() -> None:
    try:
        app()
    except InputError as exc:  # raised outside a command body
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
