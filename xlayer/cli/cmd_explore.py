"""``xlayer search``, ``xlayer sweep`` and ``xlayer pareto`` (mounted by xlayer.cli.main).

Bad input exits with status 2 and one line naming the entry, as every xlayer command does.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from xlayer.errors import InputError
from xlayer.cli.common import PLOT_SUFFIXES, check_out_dir, check_out_file
from xlayer.cli.common import console as _console
from xlayer.cli.common import fail as _fail
from xlayer.cli.common import print_json as _print_json
from xlayer.units import format_seconds as _fmt_s
from xlayer.units import GIB

out = _console()
err = _console(stderr=True)


def _bar():
    """A transient progress bar on stderr (drawn only on a terminal; never on stdout)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err, transient=True, redirect_stdout=False, redirect_stderr=False,
                    disable=not err.is_terminal)






def _check_sweep_file(path: Path) -> None:
    """Parse the sweep file (and a base case it names) with the bounded YAML reader first, so a
    bomb, a binary file or a duplicate key is refused before the sweep loader reads it."""
    from xlayer.cli.common import check_yaml_file
    data = check_yaml_file(path, "SWEEP", "a sweep YAML file")
    if isinstance(data, dict):
        _check_sweep_size(data)
    base = data.get("base") if isinstance(data, dict) else None
    if isinstance(base, str):
        p = Path(base)
        if not p.is_absolute():
            p = Path(path).parent / p
        check_yaml_file(p, "base", "a case YAML file")


def _check_sweep_size(data: dict) -> None:
    """Refuse a sweep of more than MAX_SWEEP_POINTS points before they are listed."""
    samples = data.get("samples")
    if data.get("mode") == "random" and isinstance(samples, int) and not isinstance(samples, bool) \
            and samples > MAX_SWEEP_POINTS:
        raise InputError("samples", samples, f"at most {MAX_SWEEP_POINTS:,} points per sweep; split it")
    params = data.get("parameters")
    if data.get("mode", "grid") == "grid" and isinstance(params, dict):
        n = 1
        for v in params.values():
            if isinstance(v, list):
                n *= max(len(v), 1)
            if n > MAX_SWEEP_POINTS:
                raise InputError("parameters", f"{n:,}+ points", f"at most {MAX_SWEEP_POINTS:,} points per "
                                                                 "sweep; split it or use mode: random")


RAY_CONNECT_TIMEOUT_S = 2.0
MAX_SWEEP_POINTS = 1_000_000


def _check_ray(address: Optional[str]) -> None:
    """Ray is importable and, for ``--address host:port``, something listens there (one TCP
    connect, at most RAY_CONNECT_TIMEOUT_S): an unreachable cluster is one line, not a hang."""
    import importlib.util
    import socket
    if importlib.util.find_spec("ray") is None:
        raise InputError("--backend", "ray", "ray is not installed here (pip install 'ray[default]'); use local")
    if address is None or address in ("auto", "local"):
        return
    if address.strip() == "":
        raise InputError("--address", address, "empty; give host:port of a Ray head node, or leave it out")
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port_s = hostport.rpartition(":")
    if not sep or not host:
        raise InputError("--address", address, "valid: host:port (e.g. 10.0.0.1:6379), ray://host:port, auto")
    try:
        port = int(port_s)
        if not 0 < port < 65536:
            raise ValueError
    except ValueError:
        raise InputError("--address", address, "the port must be an integer in 1..65535") from None
    try:
        with socket.create_connection((host.strip("[]"), port), timeout=RAY_CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        why = "timed out" if isinstance(exc, socket.timeout) else (exc.strerror or type(exc).__name__)
        raise InputError("--address", address, f"no Ray cluster answers there ({why} within "
                                               f"{RAY_CONNECT_TIMEOUT_S:g} s); start one with `ray start "
                                               "--head` or leave --address out") from None
    from xlayer.explore.sweep import _probe_ray
    _probe_ray(address)   # something listens: is it a Ray head? (bounded; the result is cached)


def _print_search(cs, top: int) -> None:
    from xlayer.explore.search import describe_diff, layout_diff
    r = cs.result
    out.print(f"[bold]{cs.case_id}[/bold]  ranked by {r.rank}")
    out.print(f"layouts: {r.considered:,} considered, {r.valid:,} valid, {r.fitting:,} fit in "
              f"{r.capacity_bytes / GIB:.1f} GiB   (search {r.elapsed_s:.2f} s)")
    if not cs.top:
        out.print("[red]no valid layout fits memory[/red]")
    else:
        t = Table(title=f"top {len(cs.top)} layouts")
        for col in ("#", "layout", "time", "MFU", "tokens/s/GPU", "memory GiB", "GPU-h/Mtok"):
            t.add_column(col, justify="left" if col == "layout" else "right", no_wrap=col == "layout")
        for i, p in enumerate(cs.top):
            row = r.row(i)
            t.add_row(str(i + 1), p.layout.describe(), _fmt_s(p.iteration_time_s), f"{100 * p.mfu:.1f} %",
                      f"{row['tokens_per_s_per_gpu']:,.0f}", f"{p.memory_bytes / GIB:.2f}",
                      f"{row['gpu_hours_per_mtok']:.3f}")
        out.print(t)
        b = Table(title="breakdowns (predict_training of each layout)")
        b.add_column("term (function)")
        for i in range(len(cs.top)):
            b.add_column(f"#{i + 1}", justify="right")
        keys: list[str] = []
        for p in cs.top:
            keys += [k for k in p.time_breakdown_s if k not in keys]
        for k in keys:
            b.add_row(k, *[_fmt_s(p.time_breakdown_s.get(k, 0.0)) for p in cs.top])
        b.add_row("[bold]iteration_time_s[/bold]", *[_fmt_s(p.iteration_time_s) for p in cs.top])
        mkeys: list[str] = []
        for p in cs.top:
            mkeys += [k for k in p.memory_breakdown_bytes if k not in mkeys]
        for k in mkeys:
            b.add_row(k + " (GiB)", *[f"{p.memory_breakdown_bytes.get(k, 0.0) / GIB:.2f}" for p in cs.top])
        out.print(b)
    if cs.case_prediction is not None:
        p = cs.case_prediction
        pos = f"rank {cs.case_position:,} of {r.fitting:,}" if cs.case_position else "does not fit memory"
        out.print(f"case layout: {p.layout.describe()}  {_fmt_s(p.iteration_time_s)}  "
                  f"{p.memory_bytes / GIB:.2f} GiB  ({pos})")
        if cs.top:
            best = cs.top[0]
            out.print(f"best vs case: {describe_diff(layout_diff(p.layout, best.layout))}; "
                      f"{_fmt_s(best.iteration_time_s)} vs {_fmt_s(p.iteration_time_s)} "
                      f"({p.iteration_time_s / best.iteration_time_s:.3f}x)")
    elif cs.case_error:
        out.print(f"case layout: cannot be predicted ({cs.case_error})")
    for n in r.notes:
        out.print(f"note: {n}")


def _layout_str(row) -> str:
    if row.get("tp") is None or (isinstance(row.get("tp"), float) and math.isnan(row["tp"])):
        return "-"
    vp = int(row["vp"])
    return (f"tp{int(row['tp'])} pp{int(row['pp'])}" + (f"x{vp}" if vp > 1 else "") + f" dp{int(row['dp'])}" +
            (f" cp{int(row['cp'])}" if int(row["cp"]) > 1 else "") + (" sp" if bool(row["sp"]) else "") +
            f" rc={row['recompute']} z{int(row['zero'])} mb{int(row['micro'])}")


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _rows_table(df, lead: list[str], title: str, limit: int = 40) -> Table:
    """One row per point: the lead columns, the layout in one string, time, memory, MFU."""
    t = Table(title=title)
    for c in lead:
        t.add_column(c, justify="right")
    t.add_column("layout", no_wrap=True)
    for c in ("time s", "GiB", "MFU"):
        t.add_column(c, justify="right")
    for _, row in df.head(limit).iterrows():
        r = row.to_dict()
        t.add_row(*[_cell(r[c]) for c in lead], _layout_str(r), _cell(r["iteration_time_s"]),
                  _cell(r["memory_gib"]), f"{100 * r['mfu']:.1f} %" if r["mfu"] == r["mfu"] else "-")
    return t


def _pareto_table(df, x: str, y: str, title: str, limit: int = 30) -> Table:
    lead = [c for c in dict.fromkeys([x, y]) if c not in ("iteration_time_s", "memory_gib")]
    if y != "iteration_time_s":
        lead = [c for c in dict.fromkeys([x, y])]
    return _rows_table(df, lead, title, limit)


def register(app: typer.Typer) -> None:
    @app.command()
    def search(case: str = typer.Argument(..., help="case YAML (shared/validation format)"),
               top: int = typer.Option(5, "--top", min=1, help="how many layouts to print with breakdowns"),
               json_out: bool = typer.Option(False, "--json", help="print one JSON object"),
               rank: str = typer.Option("time", "--rank", help="time | tokens_per_s_per_gpu | cost"),
               tp_beyond_domain: bool = typer.Option(False, "--tp-beyond-domain",
                                                     help="let tp span more than one scale-up domain"),
               max_vp: int = typer.Option(8, "--max-vp", min=1, help="largest interleaving factor enumerated"),
               max_cp: int = typer.Option(8, "--max-cp", min=1, help="largest context-parallel size enumerated"),
               pareto_arg: Optional[str] = typer.Option(None, "--pareto-plot",
                                                          help="save time vs memory of fitting layouts (png/svg)"),
               hf_config: Optional[str] = typer.Option(None, "--hf-config",
                                                       help="Hugging Face config.json replacing the case's model "
                                                            "(the case's model block may then be just {seq_len: N})"),
               ) -> None:
        """Best layouts for the case's model, system and global batch (every valid layout, ranked)."""
        from xlayer.cli.common import load_case_arg
        from xlayer.explore.search import RANKS, search_case
        pareto_plot = Path(pareto_arg) if pareto_arg is not None else None
        try:
            if rank not in RANKS:
                raise InputError("--rank", rank, f"valid: {', '.join(RANKS)}")
            check_out_file(pareto_arg, "--pareto-plot", PLOT_SUFFIXES, "a plot file (.png, .svg or .pdf)")
            c = load_case_arg(case, hf_config)
            kw = dict(top=top, rank=rank, tp_beyond_domain=tp_beyond_domain, max_vp=max_vp, max_cp=max_cp)
            if json_out:
                cs = search_case(c, **kw)
            else:
                with _bar() as prog:
                    task = prog.add_task("searching layouts", total=None)
                    cs = search_case(c, **kw, progress=lambda d, n: prog.update(task, completed=d, total=n))
        except InputError as exc:
            _fail(exc)
        if pareto_plot is not None:
            from xlayer.explore.pareto import plot_front
            r = cs.result
            n = r.fitting
            front = r.pareto("memory_bytes", "iteration_time_s")
            plot_front(r.table["memory_bytes"][:n] / GIB, r.table["iteration_time_s"][:n], front, pareto_plot,
                       "memory per accelerator (GiB)", "iteration time (s)", title=f"{cs.case_id}: fitting layouts")
        if json_out:
            d = cs.to_dict()
            if pareto_plot is not None:
                d["pareto_plot"] = str(pareto_plot)
            _print_json(d)
            return
        _print_search(cs, top)
        if pareto_plot is not None:
            out.print(f"Pareto plot (time vs memory): {pareto_plot}")

    @app.command()
    def sweep(sweep_arg: str = typer.Argument(..., metavar="SWEEP.yaml", help="sweep definition"),
              backend: str = typer.Option("local", "--backend", help="local (processes) | ray"),
              address: Optional[str] = typer.Option(None, "--address",
                                                    help="Ray cluster address (default: start a local instance)"),
              out_arg: Optional[str] = typer.Option(None, "--out",
                                                     help="Parquet dataset folder (default: <SWEEP>-results "
                                                          "beside the sweep file)"),
              resume: bool = typer.Option(False, "--resume", help="continue: skip the points already written"),
              workers: Optional[int] = typer.Option(None, "--workers", min=1,
                                                    help="processes (local) or CPUs of a local Ray instance"),
              plot_arg: Optional[str] = typer.Option(None, "--plot", help="save the Pareto plot (png/svg)"),
              json_out: bool = typer.Option(False, "--json", help="print a JSON summary")) -> None:
        """Evaluate a sweep over model, layout and hardware parameters; results go to Parquet."""
        from xlayer.explore.sweep import load_sweep, read_results, run_sweep
        sweep_file = Path(sweep_arg)
        out_dir = Path(out_arg) if out_arg is not None else None
        plot = Path(plot_arg) if plot_arg is not None else None
        try:
            _check_sweep_file(sweep_arg)
            check_out_dir(out_arg, "--out")
            check_out_file(plot_arg, "--plot", PLOT_SUFFIXES, "a plot file (.png, .svg or .pdf)")
            if backend not in ("local", "ray"):
                raise InputError("--backend", backend, "local or ray")
            if address is not None and backend != "ray":
                raise InputError("--address", address, "only with --backend ray")
            if backend == "ray":
                _check_ray(address)
            dest = out_dir or sweep_file.with_name(sweep_file.stem + "-results")
            if json_out:
                sw = load_sweep(sweep_file)  # every point is checked here, before any work
                summary = run_sweep(sw, dest, backend=backend, resume=resume, workers=workers, address=address)
            else:
                with _bar() as prog:
                    check = prog.add_task("checking points", total=None)
                    sw = load_sweep(sweep_file,
                                    progress=lambda d, n: prog.update(check, completed=d, total=n))
                err.print(f"{sw.name}: {len(sw.points)} points in {len(sw.chunks())} chunks -> {dest} "
                          f"({backend})")
                with _bar() as prog:
                    task = prog.add_task(f"sweep {sw.name}", total=len(sw.points))

                    def started(skipped: int, todo: int) -> None:
                        if skipped:
                            prog.update(task, completed=skipped,
                                        description=f"sweep {sw.name} ({skipped} already done, skipped)")

                    summary = run_sweep(sw, dest, backend=backend, resume=resume, workers=workers, address=address,
                                        started=started, progress=lambda k, n: prog.advance(task, k))
        except InputError as exc:
            _fail(exc)
        df = read_results(dest)
        x = "accelerators" if "accelerators" in df and df["accelerators"].nunique() > 1 else "memory_gib"
        from xlayer.explore.pareto import front_rows
        front = front_rows(df, x) if len(df) else df
        if plot is not None and len(df):
            from xlayer.explore.pareto import plot_front
            ok = df[(df["status"] == "ok")].reset_index(drop=True)
            from xlayer.explore.search import pareto_front
            idx = pareto_front(ok[x].to_numpy(float), ok["iteration_time_s"].to_numpy(float))
            plot_front(ok[x], ok["iteration_time_s"], idx, plot, x, "iteration time (s)", title=sw.name,
                       logx=(x == "accelerators"))
        if json_out:
            _print_json({"name": sw.name, "out": str(dest), "points": summary.points,
                         "skipped": summary.skipped, "evaluated": summary.evaluated,
                         "chunks_written": summary.chunks_written, "elapsed_s": summary.elapsed_s,
                         "rows": int(len(df)), "pareto_x": x,
                         "pareto": front.to_dict(orient="records") if len(front) else []})
            return
        out.print(f"{summary.points} points: {summary.evaluated} evaluated, {summary.skipped} already done; "
                  f"{summary.chunks_written} files written in {summary.elapsed_s:.1f} s -> {dest}")
        if len(df):
            lead = ["point_id"] + [c for c in sw.parameters] + ["status"]
            out.print(_rows_table(df, lead, f"results ({len(df)} points; first 40)"))
            out.print(_pareto_table(front, x, "iteration_time_s", f"Pareto front: iteration time vs {x}"))
        if plot is not None:
            out.print(f"Pareto plot: {plot}")

    @app.command()
    def pareto(results_arg: str = typer.Argument(..., metavar="RESULTS", help="a sweep's Parquet folder"),
               x: str = typer.Option("accelerators", "--x",
                                     help="accelerators | memory_gib | energy_j | gpu_hours_per_mtok"),
               y: str = typer.Option("iteration_time_s", "--y", help="the other minimised column"),
               plot_arg: Optional[str] = typer.Option(None, "--plot", help="save the plot (png/svg/pdf)"),
               json_out: bool = typer.Option(False, "--json")) -> None:
        """Pareto front of a sweep's results (both axes minimised), as a table and a plot."""
        results = Path(results_arg)
        plot = Path(plot_arg) if plot_arg is not None else None
        from xlayer.explore.pareto import front_rows, plot_front
        from xlayer.explore.search import pareto_front
        from xlayer.explore.sweep import read_results
        try:
            if results_arg.strip() == "" or not results.is_dir():
                raise InputError("RESULTS", results_arg, "a folder written by xlayer sweep")
            check_out_file(plot_arg, "--plot", PLOT_SUFFIXES, "a plot file (.png, .svg or .pdf)")
            try:
                df = read_results(results)
            except (OSError, ValueError) as exc:   # pyarrow: ArrowInvalid is a ValueError
                raise InputError("RESULTS", str(results), f"its part files cannot be read "
                                                          f"({str(exc).splitlines()[0][:150]})") from None
            if not len(df):
                raise InputError("RESULTS", str(results), "holds no finished points (part-*.parquet)")
            front = front_rows(df, x, y)
        except InputError as exc:
            _fail(exc)
        if plot is not None:
            ok = df[df["status"] == "ok"].reset_index(drop=True)
            idx = pareto_front(ok[x].to_numpy(float), ok[y].to_numpy(float))
            plot_front(ok[x], ok[y], idx, plot, x, y, logx=(x == "accelerators"))
        if json_out:
            _print_json({"x": x, "y": y, "front": front.to_dict(orient="records")})
            return
        out.print(_pareto_table(front, x, y, f"Pareto front: {y} vs {x} ({len(front)} of {len(df)} points)"))
        if plot is not None:
            out.print(f"plot: {plot}")
