"""Technology commands: ``xlayer synth`` and ``xlayer tech-study a100-gb200 | nodes``.

Bad input (unknown node, a budget that cannot hold one compute unit, a shoreline shorter than
one HBM PHY) exits with status 2 and one line ``error: <field>: <value> is not valid; ...``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from xlayer.errors import InputError
from xlayer.cli.common import check_out_dir, positive
from xlayer.cli.common import fail as _fail
from xlayer.cli.common import print_json as _print_json
from xlayer.cli.common import spinner as _spinner

tech_app = typer.Typer(add_completion=False, no_args_is_help=True,
                       help="technology studies: A100 → GB200 waterfall, 12 nm → 1 nm node sweep")


def synth(node: str = typer.Option(..., "--node", help="logic node: N12, N7, N5 (4N), N3, N2, A14, A10"),
          area_mm2: float = typer.Option(..., "--area-mm2", help="die area budget (mm²)"),
          power_w: float = typer.Option(..., "--power-w", help="power budget (W)"),
          perimeter_mm: Optional[float] = typer.Option(None, "--perimeter-mm", help="die perimeter (default: 26:33 rectangle)"),
          hbm_shoreline_mm: Optional[float] = typer.Option(None, "--hbm-mm", help="die edge for HBM PHYs (default: both long edges)"),
          link_shoreline_mm: Optional[float] = typer.Option(None, "--link-mm", help="die edge for scale-up links (default: 70 % of the short edges)"),
          memory: Optional[str] = typer.Option(None, "--memory", help="HBM generation (default: the node's era)"),
          scale_up: Optional[str] = typer.Option(None, "--scale-up", help="link generation, e.g. 'NVLink 4'"),
          scale_out: Optional[str] = typer.Option(None, "--scale-out", help="NIC, e.g. 'InfiniBand NDR 400G'"),
          hbm_gb_per_stack: Optional[float] = typer.Option(None, "--hbm-gb-per-stack"),
          l2_mib: float = typer.Option(50.0, "--l2-mib"),
          domain: int = typer.Option(8, "--domain", help="scale-up domain size"),
          json_out: bool = typer.Option(False, "--json", help="print the accelerator spec and derivation as JSON")) -> None:
    """Synthesize an accelerator from a node and budgets; print its spec and how it was derived."""
    from xlayer.technology.synth import Budget, synthesize
    try:
        positive(area_mm2, "--area-mm2", integer=False, maximum=1e6)
        positive(power_w, "--power-w", integer=False, maximum=1e7)
        for v, f in ((perimeter_mm, "--perimeter-mm"), (hbm_shoreline_mm, "--hbm-mm"),
                     (link_shoreline_mm, "--link-mm"), (hbm_gb_per_stack, "--hbm-gb-per-stack")):
            positive(v, f, integer=False, maximum=1e6)
        positive(l2_mib, "--l2-mib", integer=False, allow_zero=True, maximum=1e6)
        positive(domain, "--domain", maximum=1_000_000)
        r = synthesize(Budget(node=node, area_mm2=area_mm2, power_w=power_w, perimeter_mm=perimeter_mm,
                              hbm_shoreline_mm=hbm_shoreline_mm, link_shoreline_mm=link_shoreline_mm, memory=memory,
                              scale_up=scale_up, scale_out=scale_out, hbm_gb_per_stack=hbm_gb_per_stack,
                              l2_mib=l2_mib, scale_up_domain=domain))
    except InputError as exc:
        _fail(exc)
    a, d = r.accelerator, r.derivation
    if json_out:
        _print_json({"accelerator": a.model_dump(), "derivation": d})
        return
    print(f"{a.name}: {a.compute_units} units x {a.clock_hz / 1e9:.2f} GHz ({d['binding']}-limited)")
    print(f"  peak bf16 {a.peak('bf16') / 1e12:.0f} TFLOP/s, fp8 {a.peak('fp8') / 1e12:.0f} TFLOP/s")
    print(f"  HBM {d['hbm_stacks']} x {d['memory']}: {a.hbm.bandwidth_bytes_per_s / 1e12:.2f} TB/s, "
          f"{a.hbm.capacity_bytes / 1e9:.0f} GB")
    print(f"  scale-up {d['scale_up_links']} x {d['scale_up']}: {a.scale_up.bandwidth_bytes_per_s / 1e9:.0f} GB/s per "
          f"direction; scale-out {d['scale_out']}")
    print(f"  area: compute {d['area_compute_mm2']:.0f}, HBM PHY {d['area_hbm_phy_mm2']:.0f}, link PHY "
          f"{d['area_link_phy_mm2']:.0f}, uncore {d['area_uncore_mm2']:.0f}, L2 {d['area_l2_mm2']:.0f} mm2; "
          f"unit {d['unit_area_mm2']:.2f} mm2")
    print(f"  power: compute {d['power_compute_w']:.0f} W, HBM I/O {d['power_hbm_w']:.0f} W, links "
          f"{d['power_link_w']:.0f} W; {d['energy_per_flop_pj']:.3f} pJ/FLOP, f_max {d['f_max_hz'] / 1e9:.2f} GHz")


@tech_app.command("a100-gb200")
def study_a(out_arg: str = typer.Option("docs/studies", "--out", help="folder for the table, plots and markdown")) -> None:
    """Study A: A100 → H100 → B200 → GB200 NVL72 waterfall for GPT-3 175B (one factor at a time)."""
    from xlayer.studies.technology import STUDY_A_NAME, run_study_a
    out = Path(out_arg)
    try:
        check_out_dir(out_arg, "--out")
        with _spinner("study A: A100 → GB200 waterfall"):
            r = run_study_a(out)
    except InputError as exc:
        _fail(exc)
    for s in r["steps"]:
        print(f"{s.stage:20s} {s.label:58s} {s.time_s:8.3f} s  x{s.ratio:.3f}  {s.cumulative:6.2f}x")
    print(f"product of ratios {r['product']:.4f} = end-to-end {r['end_to_end']:.4f}")
    print(f"wrote {out / STUDY_A_NAME}.csv, .md, .png, .svg")


@tech_app.command("nodes")
def study_b(out_arg: str = typer.Option("docs/studies", "--out", help="folder for the table, plots and markdown")) -> None:
    """Study B: synthesize a chip per node (12 nm → 1 nm) at fixed area/power; time GPT-3 175B."""
    from xlayer.studies.technology import STUDY_B_NAME, run_study_b
    out = Path(out_arg)
    try:
        check_out_dir(out_arg, "--out")
        with _spinner("study B: synthesizing a chip per node"):
            r = run_study_b(out)
    except InputError as exc:
        _fail(exc)
    for row in r["rows"]:
        print(f"{row['precision']:4s} {row['series']:10s} {row['node']:4s} {row['peak_bf16_tflops']:7.0f} TFLOP/s "
              f"{row['iteration_s']:7.2f} s  compute {100 * row['compute_bound_share']:3.0f} %  comm "
              f"{100 * row['comm_exposed_share']:3.0f} %  next: {row['scale_next']}")
    for (p, s), node in r["stops"].items():
        print(f"compute stops leading ({s}, {p}): {node or 'not within 1 nm'}")
    print(f"wrote {out / STUDY_B_NAME}.csv, .md, .png, .svg")


def register(app: typer.Typer) -> None:
    app.command("synth")(synth)
    app.add_typer(tech_app, name="tech-study")
