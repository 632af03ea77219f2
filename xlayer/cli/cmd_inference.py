"""Inference commands: ``xlayer roofline``, ``xlayer serve`` and ``xlayer study dram``.

(``xlayer predict`` / ``xlayer validate`` handle inference cases through
:mod:`xlayer.prediction.inference`.)
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from xlayer.errors import InputError
from xlayer.cli.common import check_out_dir, check_out_file, positive
from xlayer.cli.common import console as _console
from xlayer.cli.common import fail as _fail
from xlayer.cli.common import print_json as _print_json
from xlayer.cli.common import spinner as _spinner

out = _console()
MAX_TOKENS = 2 ** 31      # a prompt or an output of more tokens than this is not a request
# the package's copy of shared/reference/memory_tech.csv (xlayer/technology/data/SOURCES.md)
DEFAULT_MEMORY_CSV = Path(__file__).resolve().parents[1] / "technology" / "data" / "memory_tech.csv"


def roofline_points(pred) -> list[dict]:
    """Operators of the prefill and decode passes (one layer + output layer) as roofline points:
    intensity = FLOP / HBM byte, attained = FLOP / time (kernel overhead included)."""
    pts = []
    for p in (pred.prefill, pred.decode):
        if p is None:
            continue
        for r in p.op_rows():
            if r["kind"] == "collective" or not r["flops"] or not r["bytes"]:
                continue
            pts.append({"name": r["name"], "phase": p.name, "kind": r["kind"], "intensity": r["intensity"],
                        "attained": r["flops"] / r["time_s"], "bound": r["bound"]})
    return pts


def register(app: typer.Typer) -> None:
    study = typer.Typer(no_args_is_help=True, help="technology studies (results written under docs/studies)")

    @app.command()
    def roofline(case: str = typer.Argument(..., help="inference case YAML"),
                 out_file: Path = typer.Option(..., "--out", help="SVG file to write")) -> None:
        """Draw the roofline of the case's accelerator with the prefill and decode operators on it."""
        from xlayer.cost.roofline import roofline_svg
        from xlayer.prediction.case import load_case
        from xlayer.prediction.inference import predict_inference
        try:
            check_out_file(out_file, "--out", (".svg",), "an .svg file to write")
            c = load_case(case)
            if c.kind != "inference":
                raise InputError("kind", c.kind, "the roofline command draws an inference case (kind: inference)")
            pred = predict_inference(c)
        except InputError as exc:
            _fail(exc)
        s = pred.setup
        pts = roofline_points(pred)
        title = f"{s.model.name}, {s.system.accelerator.name}, tp{s.tp}, {s.precision}, batch {s.batch}"
        from xlayer.workload.precision import inference_formats
        out_file.write_text(roofline_svg(s.system.accelerator, pts, inference_formats(s.precision, s.kv_precision).gemm, title))
        parts = []
        for p in (pred.prefill, pred.decode):
            if p is not None:
                parts.append(f"{p.name} {p.time_s * 1e3:.3f} ms {p.bound}-bound")
        out.print(f"wrote {out_file} ({len(pts)} operators); " + "; ".join(parts))

    @app.command()
    def serve(case: str = typer.Argument(..., help="inference case YAML (model, system, tp/pp, precision)"),
              input_len: Optional[int] = typer.Option(None, "--input-len", help="prompt tokens per request (default: request.prompt_len)"),
              output_len: Optional[int] = typer.Option(None, "--output-len", help="output tokens per request (default: request.output_len)"),
              max_batch: Optional[int] = typer.Option(None, "--max-batch", help="engine cap on concurrent sequences"),
              tpot_slo_ms: Optional[float] = typer.Option(None, "--tpot-slo", help="latency budget per output token, ms"),
              ttft: Optional[float] = typer.Option(None, "--ttft", help="SLO search: time-to-first-token target, s"),
              tpot: Optional[float] = typer.Option(None, "--tpot", help="SLO search: time-per-output-token target, s"),
              gpus: Optional[int] = typer.Option(None, "--gpus", help="SLO search: GPUs to deploy on (default system.count)"),
              curve: Optional[Path] = typer.Option(None, "--curve", help="write the throughput-vs-interactivity curve (.png/.svg)"),
              simulate: bool = typer.Option(False, "--simulate", help="run the continuous-batching simulator on the case's requests"),
              top: int = typer.Option(8, "--top", help="SLO search: deployments to list"),
              disagg: bool = typer.Option(True, "--disagg/--no-disagg",
                                          help="SLO search: also disaggregated prefill/decode pools"),
              json_out: bool = typer.Option(False, "--json")) -> None:
        """Serving: the SLO search (--ttft/--tpot: best deployment by tokens/s per GPU within the
        targets), the continuous-batching simulator (--simulate, or a request.mode: serving case),
        or the static serving estimate (largest batch that fits, tokens/s per GPU, TPOT)."""
        from xlayer.prediction.case import load_case
        from xlayer.prediction.inference import print_serving, serving_estimate
        try:
            positive(input_len, "--input-len", maximum=MAX_TOKENS)
            positive(output_len, "--output-len", maximum=MAX_TOKENS)
            positive(max_batch, "--max-batch", maximum=MAX_TOKENS)
            positive(tpot_slo_ms, "--tpot-slo", integer=False)
            positive(ttft, "--ttft", integer=False)
            positive(tpot, "--tpot", integer=False)
            positive(gpus, "--gpus", maximum=MAX_TOKENS)
            positive(top, "--top", maximum=10_000)
            check_out_file(curve, "--curve", (".png", ".svg"), "a .png or .svg file to write")
            c = load_case(case)
            if c.kind != "inference":
                raise InputError("kind", c.kind, "serve estimates an inference case (kind: inference)")
            lf = ("--input-len" if input_len is not None else "request.prompt_len",
                  "--output-len" if output_len is not None else "request.output_len")
            search = ttft is not None or tpot is not None or gpus is not None or curve is not None
            serving = c.request is not None and c.request.mode == "serving"
            if search:
                from xlayer.serving.deploy import plot_curves, slo_search
                res = slo_search(c, ttft, tpot, gpus, input_len, output_len, disaggregated=disagg,
                                 length_fields=lf)
                if curve is not None:
                    plot_curves(res, curve)
            elif simulate or serving:
                from xlayer.serving.engine import engine_for
                from xlayer.serving.predict import predict_serving
                from dataclasses import replace
                eng = engine_for(c.software.framework)
                if max_batch is not None:
                    eng = replace(eng, max_batch_size=max_batch)
                pred = predict_serving(c, engine=eng, prompt_len=input_len, output_len=output_len,
                                       length_fields=lf)
            else:
                est = serving_estimate(c, input_len, output_len, max_batch,
                                       tpot_slo_ms / 1e3 if tpot_slo_ms is not None else None)
        except InputError as exc:
            _fail(exc)
        if search:
            if json_out:
                _print_json(res.to_dict())
            else:
                _print_search(res, top, curve)
        elif simulate or serving:
            if json_out:
                _print_json(pred.to_dict())
            else:
                _print_sim(pred)
        elif json_out:
            _print_json(est.to_dict())
        else:
            print_serving(est, out)

    @study.command("dram")
    def dram(memory_csv: Path = typer.Option(DEFAULT_MEMORY_CSV, "--memory-csv", help="memory technology table (default: the package's copy of shared/reference/memory_tech.csv)"),
             out_arg: str = typer.Option("docs/studies", "--out-dir", help="folder for dram.md and its plots (relative "
                                                                           "to the current directory)"),
             stacks: int = typer.Option(5, "--stacks", help="HBM stacks (H100 SXM: 5)")) -> None:
        """Same inference workloads across HBM2e → HBM4 (same compute): latency and bounds."""
        from xlayer.studies.dram import run_dram_study
        out_dir = Path(out_arg)
        try:
            from xlayer.safe_yaml import read_text
            read_text(memory_csv, "--memory-csv", "a memory technology CSV")
            check_out_dir(out_arg, "--out-dir")
            positive(stacks, "--stacks", maximum=64)
            with _spinner("DRAM study: HBM2e → HBM4"):
                path = run_dram_study(memory_csv, out_dir, stacks)
        except InputError as exc:
            _fail(exc)
        out.print(f"wrote {path}")

    app.add_typer(study, name="study")


def _print_search(res, top: int, curve) -> None:
    from rich.table import Table
    tgt = []
    if res.ttft_target_s is not None:
        tgt.append(f"TTFT <= {res.ttft_target_s * 1e3:g} ms")
    if res.tpot_target_s is not None:
        tgt.append(f"TPOT <= {res.tpot_target_s * 1e3:g} ms")
    best = res.ranked[0]
    out.print(f"[bold]{res.case_id}[/bold]  {res.gpus} GPUs, {res.prompt_len}/{res.output_len} tokens, "
              f"{' and '.join(tgt) or 'no latency target'}: {res.evaluated} deployments")
    out.print(f"best: [bold]{best.deployment.label}[/bold] at max batch {best.cap}: "
              f"[bold]{best.tokens_per_s_per_gpu:,.0f}[/bold] output tokens/s per GPU, "
              f"{best.tokens_per_s_per_user:.1f} tokens/s per user, TTFT {best.ttft_s * 1e3:.0f} ms, "
              f"TPOT {best.tpot_s * 1e3:.1f} ms; limited by {best.limit}, iteration {best.bound}-bound")
    if best.disaggregated:
        d = best.deployment
        out.print(f"disaggregated: prefill on {d.prefill.gpus} GPU{'s' * (d.prefill.gpus > 1)} "
                  f"({d.prefill_batch} prompts per iteration), decode on {d.decode.gpus} "
                  f"GPU{'s' * (d.decode.gpus > 1)}; KV {d.kv_bytes_per_request / 2**20:.0f} MiB per request over "
                  f"{d.network} in {d.kv_transfer_s * 1e3:.2f} ms (in the TTFT)")
    t = Table(title="deployments within the targets (best max batch of each shape or pool pair)")
    for col in ("deployment", "GPUs", "max batch", "tok/s/GPU", "tok/s/user", "TTFT", "TPOT", "limit", "bound"):
        t.add_column(col, justify="left" if col in ("deployment", "limit", "bound") else "right")
    for c in res.ranked[:top]:
        t.add_row(c.deployment.label, str(c.deployment.gpus), str(c.cap), f"{c.tokens_per_s_per_gpu:,.0f}",
                  f"{c.tokens_per_s_per_user:.1f}",
                  f"{c.ttft_s * 1e3:.0f} ms", f"{c.tpot_s * 1e3:.1f} ms", c.limit, c.bound)
    out.print(t)
    if curve is not None:
        out.print(f"wrote {curve}")


def _print_sim(pred) -> None:
    s, m = pred.setup, pred.metrics
    out.print(f"[bold]{s.case.id}[/bold]  {s.case.model.name} on {s.deployment.gpus} x "
              f"{s.case.system.accelerator} ({s.deployment.label}), {s.requests} requests of "
              f"{s.prompt_len}/{s.output_len} tokens, KV {s.kv_precision}")
    out.print(f"[bold]{m['output_tokens_per_s_per_gpu']:,.0f}[/bold] output tokens/s per GPU "
              f"({m['total_tokens_per_s_per_gpu']:,.0f} total), {m.get('tokens_per_s_per_user', 0):.1f} tokens/s "
              f"per user; makespan {m['makespan_s']:.1f} s; concurrency mean {m['mean_concurrency']:.0f}, "
              f"max {m['max_concurrency']:.0f}; {int(m['iterations'])} iterations, {int(m['preemptions'])} preemptions")
    for k in ("ttft_s", "tpot_s", "latency_s"):
        if f"{k}_mean" in m:
            out.print(f"{k[:-2].upper():8s} mean {m[k + '_mean'] * 1e3:10.1f} ms   p50 {m[k + '_p50'] * 1e3:10.1f}   "
                      f"p90 {m[k + '_p90'] * 1e3:10.1f}   p99 {m[k + '_p99'] * 1e3:10.1f}")
    out.print(f"KV pool {s.pool.blocks:,} blocks of {s.pool.tokens_per_block} tokens ({s.pool.pool_bytes / 2**30:.1f} GiB); "
              f"closed-form steady state {m['steady_output_tokens_per_s_per_gpu']:,.0f} tokens/s per GPU at "
              f"concurrency {m['steady_concurrency']:.0f}")
    out.print("assumed: " + "; ".join(s.assumptions))
