"""``xlayer scd build|study`` and ``xlayer energy``: superconducting digital systems and the
energy of every system (see docs/scd.md and docs/studies/scd.md). The study itself is
:mod:`xlayer.studies.scd`; this module parses, calls and prints."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from xlayer.cli.common import check_out_dir, check_out_file, check_yaml_file, positive
from xlayer.cli.common import fail as _fail
from xlayer.cli.common import print_json as _print_json
from xlayer.errors import InputError
from xlayer.studies.scd import GPUS, MAX_BOARDS, TORNADO, best_training_layout, run_study

ROOT = Path.cwd()

scd_app = typer.Typer(add_completion=False, no_args_is_help=True,
                      help="superconducting digital systems: build from device parameters, compare (docs/scd.md)")


@scd_app.command("build")
def scd_build(spec: Optional[Path] = typer.Argument(None, help="SCD spec YAML (default: the imec concept)"),
              boards: Optional[int] = typer.Option(None, "--boards", help="override system.boards"),
              json_out: bool = typer.Option(False, "--json")) -> None:
    """Build chip and system from device/circuit parameters; print peak, memory, links and power."""
    from xlayer.hardware.scd import build_scd, load_scd_spec
    try:
        positive(boards, "--boards", maximum=MAX_BOARDS)
        if spec is not None:
            check_yaml_file(spec, "SPEC", "an SCD spec YAML file")
        b = build_scd(load_scd_spec(spec), boards=boards)
    except InputError as exc:
        _fail(exc)
    rp = b.rated_power()
    if json_out:
        _print_json({"derived": b.derived, "rated_power": rp, "accelerator": b.accelerator.model_dump()})
        return
    d = b.derived
    chips = int(d["chips"])
    per_board = int(chips / d["boards"])
    print(f"{b.spec.name}: {int(d['boards'])} boards x {per_board} chips = {chips} chips")
    print(f"chip: JJ budget for MACs {d['mac_jj_budget']:.3g} -> {int(d['mac_units']):,} bf16 MACs x 2 x "
          f"{b.spec.logic.clock_hz / 1e9:g} GHz = {d['peak_bf16_flops_per_s'] / 1e15:.2f} PFLOP/s bf16; "
          f"{d['energy_per_flop_j_cold'] * 1e18:.1f} aJ/FLOP at {b.spec.logic.temperature_k:g} K")
    print(f"      JSRAM {d['jsram_capacity_bytes'] / 1e6:.0f} MB (limit {d['jsram_capacity_limit_bytes'] / 1e6:.0f} MB) "
          f"at {d['jsram_bandwidth_bytes_per_s'] / 1e12:.2f} TB/s; cryo-DRAM {b.spec.dram.capacity_bytes / 1e9:.0f} GB at "
          f"{b.spec.dram.bandwidth_bytes_per_s / 1e12:.2f} TB/s ({d['machine_balance_dram_flop_per_byte']:.0f} FLOP/B)")
    print(f"      links: chip-to-chip {d['chip_to_chip_bytes_per_s'] / 1e12:.2f} TB/s, {d['chip_to_chip_latency_s'] * 1e9:.2f} ns; "
          f"board-to-board {d['board_to_board_bytes_per_s'] / 1e9:.0f} GB/s, {d['board_to_board_latency_s'] * 1e9:.2f} ns")
    print(f"      rated power per chip: logic {rp['chip_logic_w']:.3f} W + JSRAM {rp['chip_jsram_w']:.2e} W + links "
          f"{rp['chip_links_w']:.3f} W + DRAM interface {rp['chip_dram_interface_w']:.3f} W + static {rp['chip_static_w']:.3f} W "
          f"= {rp['chip_cold_w']:.3f} W at 4 K; DRAM {rp['chip_dram_w']:.2f} W at 77 K; {rp['wall_per_chip_w']:.0f} W at the wall")
    print(f"board: {d['peak_bf16_flops_per_s'] * per_board / 1e15:.0f} PFLOP/s, {rp['wall_per_board_w'] / 1e3:.2f} kW at the wall")
    print(f"system: {d['system_peak_bf16_flops_per_s'] / 1e18:.2f} EFLOP/s bf16 peak, {rp['wall_w'] / 1e3:.0f} kW at the wall "
          f"(4 K stage {rp['system_cold_w']:.0f} W -> {rp['wall_cold_w'] / 1e3:.0f} kW; 77 K {rp['system_dram_w'] / 1e3:.1f} kW -> "
          f"{rp['wall_dram_w'] / 1e3:.0f} kW; 300 K {rp['system_room_w'] / 1e3:.0f} kW), "
          f"{rp['flops_per_w_wall'] / 1e12:.1f} TFLOP/s per W")


@scd_app.command("study")
def scd_study(out_arg: str = typer.Option(str(ROOT / "docs" / "studies" / "scd"), "--out",
                                         help="folder for tables and plots"),
              doc: Path = typer.Option(ROOT / "docs" / "studies" / "scd.md", "--doc", help="markdown report to write"),
              spec: Optional[Path] = typer.Option(None, "--spec", help="SCD spec YAML (default: the imec concept)")) -> None:
    """SCD vs DGX H100 / DGX B200 / GB200 NVL72: GPT-3 175B training, Llama 2 70B decode, tornado."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    out = Path(out_arg)
    try:
        check_out_dir(out_arg, "--out")
        check_out_file(doc, "--doc", (".md",), "a markdown file to write")
        if spec is not None:
            check_yaml_file(spec, "--spec", "an SCD spec YAML file")
    except InputError as exc:
        _fail(exc)
    # one step per line the study logs: training and decode per system, then the tornado rows;
    # the bar is drawn on stderr (terminals only) and the logged lines still go to stdout
    steps = 2 * (1 + 2 * len(GPUS)) + 1 + len(TORNADO)
    console = Console(stderr=True)
    prog = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=True, redirect_stdout=sys.stdout.isatty(), redirect_stderr=False,
                    disable=not console.is_terminal)
    task = prog.add_task("SCD study", total=steps)

    def log(line: str) -> None:
        print(line)
        prog.advance(task)

    try:
        with prog:
            res = run_study(out, doc, spec, log=log)
    except InputError as exc:
        _fail(exc)
    print(f"wrote {out}/ (training.csv, decode.csv, tornado.csv, scd_study.json, {', '.join(res['plots'])}) "
          f"and {doc} in {res['seconds']:.1f} s")


def energy_cmd(case: str = typer.Argument(..., help="case YAML (shared/validation format), kind: training"),
               scd: Optional[Path] = typer.Option(None, "--scd", help="run the case on an SCD build of this spec "
                                                  "(count = the spec's chips)"),
               json_out: bool = typer.Option(False, "--json")) -> None:
    """Energy per training iteration of a case, at the device and at the wall."""
    from xlayer.prediction.energy import case_training_energy
    from xlayer.prediction.case import load_case
    try:
        if scd is not None:
            check_yaml_file(scd, "--scd", "an SCD spec YAML file")
        c = load_case(case)
        if scd is not None:
            from xlayer.hardware.scd import build_scd, load_scd_spec
            b = build_scd(load_scd_spec(scd))
            from xlayer.prediction.energy import training_energy
            if c.kind != "training":
                raise InputError("kind", c.kind, "energy per iteration needs kind: training")
            layout, recipe = best_training_layout(c.model, b.system, c.precision, c.batch.global_)
            e = training_energy(c.model, b.system, c.precision, c.batch.global_, layout, recipe, b.energy)
            lay = layout.describe()
        else:
            from xlayer.prediction.training import resolve_layout
            if c.kind != "training":
                raise InputError("kind", c.kind, "energy per iteration needs kind: training")
            layout, _ = resolve_layout(c)
            e = case_training_energy(c, layout)
            lay = layout.describe()
    except InputError as exc:
        _fail(exc)
    if json_out:
        _print_json({"id": c.id, "layout": lay, **e.to_dict()})
        return
    print(f"{c.id}  {e.name} x {e.accelerators}  layout: {lay}")
    print(f"iteration {e.time_s:.3f} s   device {e.device_j / 1e6:.3f} MJ ({e.device_w / 1e3:.1f} kW)   "
          f"wall {e.wall_j / 1e6:.3f} MJ ({e.wall_w / 1e3:.1f} kW)   {e.per_token_j():.4g} J/token at the wall")
    for k in e.wall_by_term_j:
        print(f"  {k:10s} device {e.device_by_term_j.get(k, 0.0) / 1e3:12.2f} kJ   wall {e.wall_by_term_j[k] / 1e3:12.2f} kJ")


def register(app: typer.Typer) -> None:
    app.add_typer(scd_app, name="scd")
    app.command("energy")(energy_cmd)
