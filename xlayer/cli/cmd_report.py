"""``xlayer report``: a self-contained HTML report (inline SVG, no network) of a predicted
case or of a validation run.

    xlayer report CASE.yaml --out report.html [--hf-config config.json]
    xlayer report PATH... --out report.html --kind validate
    xlayer report CASE.yaml --out report.html --kind search [--top N]
    xlayer report CASE.yaml --out report.html --kind serving [--ttft S] [--tpot S] [--gpus N]
    xlayer report SWEEP_OUTPUT_DIR --out report.html [--kind sweep]
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from xlayer.errors import InputError

KINDS = ("predict", "validate", "search", "serving", "sweep")


def _available(kind: str) -> bool:
    import importlib.util
    mod = {"search": "xlayer.explore.search", "sweep": "xlayer.explore.sweep"}.get(kind)
    return mod is None or importlib.util.find_spec(mod) is not None


def _is_sweep_output(path: str) -> bool:
    p = Path(path)
    return p.is_dir() and ((p / "sweep.json").is_file() or any(p.glob("part-*.parquet")))


def guess_kind(paths: list[str]) -> str:
    """One case file → predict; one folder written by ``xlayer sweep`` → sweep; several paths
    or another folder → validate."""
    if len(paths) == 1 and Path(paths[0]).is_file():
        return "predict"
    if len(paths) == 1 and _is_sweep_output(paths[0]):
        return "sweep"
    return "validate"


def build(paths: list[str], out: Path, kind: Optional[str], hf_config: Optional[Path],
          progress: bool = True, top: int = 10, ttft: Optional[float] = None, tpot: Optional[float] = None,
          gpus: Optional[int] = None) -> tuple[str, Path]:
    """Make the report; returns (kind, written path). Raises InputError on bad input."""
    from xlayer.cli.common import check_out_file, positive
    for p in paths:
        if str(p).strip() == "":
            raise InputError("PATH", p, "empty; give a case file, case folders or a sweep folder")
    check_out_file(out, "--out", (".html", ".htm"), "an .html file to write")
    if top < 1 or top > 10_000:
        raise InputError("--top", top, "valid: 1..10000")
    kind = kind or guess_kind(paths)
    if kind not in KINDS:
        raise InputError("--kind", kind, f"valid: {', '.join(k for k in KINDS if _available(k))}")
    if kind != "serving":
        for name, v in (("--ttft", ttft), ("--tpot", tpot), ("--gpus", gpus)):
            if v is not None:
                raise InputError(name, v, "only a serving report (--kind serving) takes latency targets and --gpus")
    if not _available(kind):
        raise InputError("--kind", kind, f"{kind} reports need xlayer.explore.{kind}, which this version lacks; "
                                         "valid: predict, validate")
    from xlayer import reporting as rep
    if kind == "predict":
        if len(paths) != 1:
            raise InputError("CASE", " ".join(paths), "a predict report takes exactly one case file")
        from xlayer.cli.common import load_case_arg
        from xlayer.prediction.training import predict_training
        case = load_case_arg(paths[0], hf_config)
        if case.kind != "training":
            raise InputError("kind", case.kind, "predict reports cover training cases; for an inference case "
                                                "use --kind serving")
        return kind, rep.write(rep.training_report(case, predict_training(case)), out)
    if kind == "validate":
        if hf_config is not None:
            raise InputError("--hf-config", str(hf_config), "only a predict report takes a Hugging Face config")
        from xlayer.prediction.case import load_case as load_case_file
        from xlayer.validation.runner import collect_case_files, validate_files
        files = collect_case_files(paths)
        bad = []
        for f in files:
            try:
                load_case_file(f)
            except InputError as exc:
                bad.append(f"{f}: {exc}")
        if bad:
            raise InputError("PATH", bad[0].split(": ")[0], f"{len(bad)} of {len(files)} files do not load; "
                                                            f"first: {bad[0]}")
        if not files:
            raise InputError("PATH", " ".join(paths), "no *.yaml case files found")
        if progress:
            from rich.console import Console
            from rich.progress import Progress
            console = Console(stderr=True)
            with Progress(console=console, transient=True, disable=not console.is_terminal) as prog:
                task = prog.add_task("validating", total=len(files))
                result = validate_files(files, progress=lambda f: prog.advance(task))
        else:
            result = validate_files(files)
        return kind, rep.write(rep.validate_report(result), out)
    if kind == "search":
        if len(paths) != 1:
            raise InputError("CASE", " ".join(paths), "a search report takes exactly one case file")
        from xlayer.cli.common import load_case_arg
        from xlayer.explore.search import search_case
        case = load_case_arg(paths[0], hf_config)
        return kind, rep.write(rep.search_report(case, search_case(case, top=top)), out)
    if kind == "serving":
        if len(paths) != 1:
            raise InputError("CASE", " ".join(paths), "a serving report takes exactly one case file")
        positive(ttft, "--ttft", integer=False)
        positive(tpot, "--tpot", integer=False)
        positive(gpus, "--gpus", maximum=2 ** 31)
        from xlayer.cli.common import load_case_arg
        from xlayer.serving.deploy import slo_search
        case = load_case_arg(paths[0], hf_config)
        if case.kind != "inference":
            raise InputError("kind", case.kind, "a serving report needs an inference case (kind: inference)")
        return kind, rep.write(rep.serving_report(case, slo_search(case, ttft, tpot, gpus), top=top), out)
    # sweep
    if hf_config is not None:
        raise InputError("--hf-config", str(hf_config), "only a predict report takes a Hugging Face config")
    if len(paths) != 1 or not _is_sweep_output(paths[0]):
        raise InputError("SWEEP_OUTPUT_DIR", " ".join(paths),
                         "a sweep report takes one folder written by xlayer sweep (sweep.json, part-*.parquet)")
    return kind, rep.write(rep.sweep_report(paths[0]), out)


def register(app: typer.Typer) -> None:
    @app.command()
    def report(paths: List[str] = typer.Argument(..., help="a case YAML (predict, search), case files/folders "
                                                            "(validate) or a sweep's output folder (sweep)"),
               out: Path = typer.Option(Path("report.html"), "--out", "-o", help="HTML file to write"),
               kind: Optional[str] = typer.Option(None, "--kind",
                                                  help="predict | validate | search | serving | sweep (default: one "
                                                       "file → predict, a sweep output folder → sweep, else "
                                                       "validate)"),
               hf_config: Optional[Path] = typer.Option(None, "--hf-config",
                                                        help="Hugging Face config.json replacing the case's model"),
               top: int = typer.Option(10, "--top", help="search, serving: how many best layouts to show"),
               ttft: Optional[float] = typer.Option(None, "--ttft", help="serving: time-to-first-token target, s"),
               tpot: Optional[float] = typer.Option(None, "--tpot", help="serving: time-per-output-token target, s"),
               gpus: Optional[int] = typer.Option(None, "--gpus", help="serving: GPUs to deploy on (default "
                                                                        "system.count)")
               ) -> None:
        """Write a self-contained HTML report (inline SVG charts, no network needed)."""
        try:
            k, path = build(paths, out, kind, hf_config, top=top, ttft=ttft, tpot=tpot, gpus=gpus)
        except InputError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(2)
        print(f"wrote {path} ({k} report, {path.stat().st_size / 1024:.0f} KiB)")
