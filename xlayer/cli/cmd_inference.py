"""Inference commands: ``xlayer roofline``, ``xlayer serve`` and ``xlayer study dram``.

(``xlayer predict`` / ``xlayer validate`` handle inference cases through
:mod:`xlayer.predict.inference`.)
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
ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MEMORY_CSV = ROOT.parent / "shared" / "reference" / "memory_tech.csv"


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
        from xlayer.predict.case import load_case
        from xlayer.predict.inference import predict_inference
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
        from xlayer.workload.inference_ops import gemm_precision
        out_file.write_text(roofline_svg(s.system.accelerator, pts, gemm_precision(s.precision), title))
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
              json_out: bool = typer.Option(False, "--json")) -> None:
        """Serving estimate: largest batch that fits, output tokens/s per GPU, TPOT, and what limits it."""
        from xlayer.predict.case import load_case
        from xlayer.predict.inference import print_serving, serving_estimate
        try:
            positive(input_len, "--input-len", maximum=MAX_TOKENS)
            positive(output_len, "--output-len", maximum=MAX_TOKENS)
            positive(max_batch, "--max-batch", maximum=MAX_TOKENS)
            positive(tpot_slo_ms, "--tpot-slo", integer=False)
            c = load_case(case)
            if c.kind != "inference":
                raise InputError("kind", c.kind, "serve estimates an inference case (kind: inference)")
            est = serving_estimate(c, input_len, output_len, max_batch,
                                   tpot_slo_ms / 1e3 if tpot_slo_ms is not None else None)
        except InputError as exc:
            _fail(exc)
        if json_out:
            _print_json(est.to_dict())
        else:
            print_serving(est, out)

    @study.command("dram")
    def dram(memory_csv: Path = typer.Option(DEFAULT_MEMORY_CSV, "--memory-csv", help="shared/reference/memory_tech.csv"),
             out_arg: str = typer.Option(str(ROOT / "docs" / "studies"), "--out-dir"),
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
