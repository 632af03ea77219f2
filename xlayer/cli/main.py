"""The ``xlayer`` command.

User mistakes (bad YAML, unknown fields or parts, impossible layouts) exit with status 2 and
one line on stderr naming the field, the value and what would be valid.
"""
from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from xlayer.errors import InputError, cut
from xlayer.cli.common import console as _console
from xlayer.cli.common import fail as _fail
from xlayer.cli.common import print_json as _print_json
from xlayer.units import format_seconds as _fmt_s
from xlayer.units import GIB

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="xlayer: time, memory and bottlenecks of large-model training and inference, "
                       "from technology node to cluster.")
out = _console()
err = _console(stderr=True)







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
def predict(case: str = typer.Argument(..., help="case YAML (shared/validation format)"),
            json_out: bool = typer.Option(False, "--json", help="print one JSON object"),
            hf_config: Optional[str] = typer.Option(None, "--hf-config",
                                                    help="Hugging Face config.json replacing the case's model "
                                                         "(the case's model block may then be just {seq_len: N})"),
            ) -> None:
    """Predict one case: time per iteration (or token), memory, MFU, with breakdowns."""
    from xlayer.cli.common import load_case_arg
    try:
        c = load_case_arg(case, hf_config)
        if c.kind == "training":
            from xlayer.prediction.training import predict_training
            pred = predict_training(c)
            if json_out:
                _print_json(pred.to_dict())
            else:
                print_training(pred)
        elif c.request is not None and c.request.mode == "serving":
            from xlayer.serving.predict import predict_serving
            sp = predict_serving(c)
            if json_out:
                _print_json(sp.to_dict())
            else:
                d = sp.to_dict()
                out.print(f"{d['id']}  serving: {d['deployment']}  KV {d['kv_precision']}, "
                          f"{d['kv_pool_gib']:.1f} GiB pool, weights {d['weights_gib']:.1f} GiB")
                for k, v in d["metrics"].items():
                    out.print(f"  {k:36s} {v:,.4g}")
                out.print("assumed: " + "; ".join(d["assumptions"]))
        else:
            from xlayer.prediction.inference import predict_inference, print_inference
            pred = predict_inference(c)
            if json_out:
                _print_json(pred.to_dict())
            else:
                print_inference(pred, out)
    except InputError as exc:
        _fail(exc)


def _load_failures(files: list[Path]) -> list[tuple[Path, InputError]]:
    """Every file of ``files`` that does not load as a case, with its error."""
    from xlayer.prediction.case import load_case
    bad = []
    for f in files:
        try:
            load_case(f)
        except InputError as exc:
            bad.append((f, exc))
    return bad


@app.command()
def validate(paths: List[str] = typer.Argument(..., help="case files or folders"),
             json_out: bool = typer.Option(False, "--json", help="print the validate JSON object")) -> None:
    """Predict measured cases and report predicted vs measured.

    Files that do not load are listed on stderr, one line each, after the results of the
    others; the status is then 2."""
    from xlayer.validation.runner import collect_case_files, summarize, summarize_by_source, validate_files
    try:
        for p in paths:
            if str(p).strip() == "":
                raise InputError("PATH", p, "empty; give case files or folders")
        files = collect_case_files(paths)
        if not files:
            raise InputError("PATH", " ".join(paths), "no *.yaml / *.yml case files found there")
    except InputError as exc:
        _fail(exc)
    bad = _load_failures(files)
    bad_set = {f for f, _ in bad}
    good = [f for f in files if f not in bad_set]

    def run(progress=None):
        result = validate_files(good, progress=progress) if good else {"cases": []}
        for f, exc in bad:
            result["cases"].append({"id": f.stem, "kind": None, "metric": None, "measured": None,
                                    "predicted": None, "error_pct": None, "reason": f"does not load: {exc}",
                                    "file": str(f)})
        result["summary"] = summarize(result["cases"])
        result["by_source"] = summarize_by_source(result["cases"])
        return result

    if json_out:
        _print_json(run())
    else:
        from rich.progress import Progress
        with Progress(console=err, transient=True, disable=not err.is_terminal) as prog:
            task = prog.add_task("validating", total=len(good))
            result = run(progress=lambda f: prog.advance(task))
        _print_validate(result)
    for f, exc in bad:
        field = str(f) if exc.field in (f.name, "CASE") else f"{f}: {exc.field}"
        print(f"error: {InputError(field, exc.value, exc.valid)}", file=sys.stderr)
    if bad:
        why = f"{len(bad)} of {len(files)} case files do not load (listed above)"
        print(f"error: {InputError('PATH', ' '.join(paths), why)}", file=sys.stderr)
        raise typer.Exit(2)


def _print_validate(result) -> None:
    t = Table(title="predicted vs measured")
    for col in ("case", "metric", "measured", "predicted", "error"):
        t.add_column(col, justify="right" if col in ("measured", "predicted", "error") else "left")
    for r in result["cases"]:
        if r["predicted"] is None:
            t.add_row(str(r["id"]), str(r["metric"]), str(r["measured"]), "-", cut(str(r.get("reason") or ""), 200))
        else:
            mark = " (m)" if r.get("memory_warning") else ""
            t.add_row(str(r["id"]), str(r["metric"]), f"{r['measured']:.4g}", f"{r['predicted']:.4g}{mark}",
                      f"{r['error_pct']:+.1f} %" if r.get("error_pct") is not None else "-")
    out.print(t)
    if any(r.get("memory_warning") for r in result["cases"]):
        out.print("(m): the case ran, but the model's memory estimate says it would not fit "
                  "(memory_warning in --json); predicted with the choices that fit best")
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
    from xlayer.prediction.training import predict_training
    from xlayer.prediction.case import load_case
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
        _print_json({n: a.model_dump() for n, a in parts.items()})
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
    """Sub-commands: ``xlayer/cli/cmd_*.py`` modules each define ``register(app)`` (the
    local-learning app mounts itself as ``xlayer localtrain``)."""
    import importlib
    import pkgutil

    import xlayer.cli as pkg
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if info.name.startswith("cmd_"):
            importlib.import_module(f"xlayer.cli.{info.name}").register(app)


_mount_optional()


def _argv_value(argv: list[str], hint: str) -> str | None:
    """The value given on the command line for the option ``hint`` (``--x v`` or ``--x=v``)."""
    names = [h.strip().strip("'\"") for h in hint.split("/")]
    for i, a in enumerate(argv):
        for n in names:
            if a == n and i + 1 < len(argv):
                return argv[i + 1]
            if a.startswith(n + "="):
                return a[len(n) + 1:]
    return None


def _usage_line(exc, argv: list[str]) -> str:
    """One line for a click usage error, in the ``<field>: <value> is not valid; <why>`` form."""
    import re

    from typer._click import exceptions as cx
    ctx = getattr(exc, "ctx", None)
    where = ctx.command_path if ctx is not None else "xlayer"
    where = "xlayer" + where[where.index(" "):] if " " in where else "xlayer"
    msg = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    help_hint = f"see {where} --help"
    if isinstance(exc, cx.NoSuchOption):
        extra = f" (did you mean {', '.join(sorted(exc.possibilities)[:3])}?)" if exc.possibilities else ""
        return str(InputError(where, exc.option_name, f"no such option{extra}; {help_hint}"))
    if isinstance(exc, cx.MissingParameter):
        hint = exc.param_hint if isinstance(exc.param_hint, str) else (
            exc.param.get_error_hint() if exc.param is not None else "argument")
        return str(InputError(f"{where} {hint.strip(chr(39))}", None, f"required; {help_hint}"))
    if isinstance(exc, cx.BadParameter):
        hint = exc.param_hint if isinstance(exc.param_hint, str) else (
            exc.param.get_error_hint() if exc.param is not None else "value")
        hint = " / ".join(h.strip().strip("'\"") for h in str(hint).split("/"))
        value = _argv_value(argv, hint)
        why = exc.message.removeprefix("Value error, ")
        return str(InputError(hint, value if value is not None else "?", f"{why}; {help_hint}"))
    quoted = re.findall(r"'([^']*)'", msg)
    paren = re.findall(r"\(([^()]*)\)", msg)
    value = quoted[0] if quoted else (paren[-1] if paren else " ".join(argv))
    return str(InputError(where, value, f"{msg.rstrip('.')}; {help_hint}"))


def run(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); returns the exit status.

    0: done; 2: bad input (one line on stderr, ``error: <field>: <value> is not valid; <why>``);
    1: an internal error (one line naming it; ``XLAYER_TRACEBACK=1`` re-raises it with the
    traceback); 130: interrupted."""
    import os
    import warnings

    from typer._click import exceptions as cx
    from typer.exceptions import Abort, Exit
    argv = list(sys.argv[1:] if argv is None else argv)
    warnings.filterwarnings("ignore", category=RuntimeWarning)   # numpy overflow etc.: the result says it
    cmd = typer.main.get_command(app)
    try:
        rv = cmd.main(args=argv, prog_name="xlayer", standalone_mode=False)
        return rv if isinstance(rv, int) and not isinstance(rv, bool) else 0
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exit as exc:
        return int(exc.exit_code or 0)
    except cx.NoArgsIsHelpError as exc:  # "xlayer scd": the help, as before
        from typer import rich_utils
        rich_utils.rich_format_error(exc)
        return exc.exit_code
    except cx.UsageError as exc:
        print(f"error: {_usage_line(exc, argv)}", file=sys.stderr)
        return 2
    except cx.ClickException as exc:
        print(f"error: {InputError('xlayer', ' '.join(argv), exc.format_message())}", file=sys.stderr)
        return 2
    except (Abort, KeyboardInterrupt):
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except RecursionError:
        print("error: input: <nested data> is not valid; nested too deeply to process", file=sys.stderr)
        return 2
    except MemoryError:
        print("error: input: <data> is not valid; too large to process in memory", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - a bug: one line, never a traceback flood
        if os.environ.get("XLAYER_TRACEBACK"):
            raise
        print(f"error: internal error: {type(exc).__name__}: {cut(str(exc), 300)} (a bug in xlayer; "
              "XLAYER_TRACEBACK=1 shows where)", file=sys.stderr)
        return 1


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
