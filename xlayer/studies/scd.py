"""The superconducting (SCD) study behind ``xlayer scd study`` (see docs/scd.md and
docs/studies/scd.md).

The study (``run_study``) compares GPT-3 175B training and Llama 2 70B decoding on the SCD
concept against DGX H100, DGX B200 and GB200 NVL72 clusters sized to equal peak FLOP/s and
to equal wall power, and sweeps the uncertain SCD parameters (tornado chart). Every number it
writes comes from the same cost engine (``evaluate_training``) and energy model
(``xlayer.cost.energy``) as ``xlayer predict``.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from xlayer.engine.breakdown import coarse_shares, op_rows, time_breakdown_s
from xlayer.engine.choose import fastest_fitting
from xlayer.errors import InputError
from xlayer.mapping.layout import tensor_parallel_ok
from xlayer.safe_yaml import trusted_load
from xlayer.units import GIB

MAX_BOARDS = 100_000      # 100 boards is the concept; a million chips is beyond any cryostat

MODELS = Path(__file__).resolve().parent.parent / "examples" / "models"




# ------------------------------------------------------------------------------------------
# workloads of the study

def model_preset(name: str):
    """A model of the study from its YAML preset under xlayer/examples/models/."""
    from xlayer.workload.model import ModelSpec
    return ModelSpec.model_validate(trusted_load((MODELS / f"{name}.yaml").read_text()))


def gpt3_175b():
    return model_preset("gpt3-175b")


def llama2_70b():
    return model_preset("llama2-70b")


TRAIN_GLOBAL_BATCH = 1536     # GPT-3's 3.2 M-token batch (Brown et al. 2020) at s = 2048
DECODE_BATCH = 64             # sequences per model replica
DECODE_CONTEXT = 2048         # tokens in the KV cache at the decode step
STUDY_BOARDS = 96             # the concept's 100 boards rounded to 2^5 x 3 (layouts need divisors)
GPUS = ("H100-SXM-80GB", "B200-SXM-180GB", "GB200-NVL72")
GPU_LABEL = {"H100-SXM-80GB": "DGX H100", "B200-SXM-180GB": "DGX B200", "GB200-NVL72": "GB200 NVL72"}


# ------------------------------------------------------------------------------------------
# sizing and layout search

def size_count(target: float, domain: int) -> int:
    """The count domain·2^a·3^b (or 2^a·3^b below one domain) closest to ``target`` in log."""
    best, err = domain, math.inf
    for a in range(0, 20):
        for b in range(0, 6):
            k = 2 ** a * 3 ** b
            for n in (k * domain, k):
                if n < 1:
                    continue
                if n > domain and n % domain:
                    continue
                e = abs(math.log(n / target))
                if e < err - 1e-12:
                    best, err = n, e
    return best


def make_system(acc, count: int):
    from xlayer.hardware.spec import System
    return System(accelerator=acc, count=count, scale_up_size=min(acc.scale_up_domain, count))


@dataclass
class TrainResult:
    label: str
    system: Any
    layout: Any
    result: dict[str, Any]
    energy: Any
    breakdown_s: dict[str, float]


def best_training_layout(model, system, precision: str, global_batch: int, max_vp: int = 4):
    """Fastest layout that fits memory (:func:`xlayer.engine.choose.fastest_fitting` over tp ≤
    domain, pp, dp, vp ≤ ``max_vp``, micro; sp on; recompute none/full; ZeRO 0/1)."""
    from xlayer.engine.training import recipe_for
    recipe = recipe_for(model, precision)
    lay, res = fastest_fitting(model, system, precision, global_batch, recipe=recipe, max_vp=max_vp, max_cp=1,
                               fixed={"sp": True, "cp": 1}, zero_stages=(0, 1), recompute=("none", "full"))
    if res.valid == 0:
        raise InputError("system.count", system.count, f"no valid layout for global batch {global_batch}")
    if lay is None:
        raise InputError("system.count", system.count,
                         f"no layout of {model.name} fits {system.accelerator.hbm.capacity_bytes / GIB:.0f} GiB "
                         "per accelerator")
    return lay, recipe


def training_breakdown(model, layout, r) -> dict[str, float]:
    """Iteration time split into compute-bound ops, memory-bound ops, communication, bubble,
    optimizer (busiest rank; :func:`xlayer.engine.breakdown.coarse_shares` of the breakdown)."""
    sh = coarse_shares(time_breakdown_s(r, layout, model), op_rows(r))
    return {"compute-bound ops": sh["compute_bound_s"] + sh["other_s"], "memory-bound ops": sh["memory_bound_s"],
            "communication": sh["comm_exposed_s"], "pipeline bubble": sh["bubble_s"],
            "optimizer step": sh["optimizer_s"]}


def run_training(label: str, model, system, spec, precision: str = "bf16",
                 global_batch: int = TRAIN_GLOBAL_BATCH) -> TrainResult:
    from xlayer.prediction.energy import training_energy
    from xlayer.engine.training import evaluate_training
    layout, recipe = best_training_layout(model, system, precision, global_batch)
    r = evaluate_training(model, system, precision, global_batch, layout.tp, layout.pp, layout.dp, layout.cp,
                          layout.vp, layout.micro, layout.sp, layout.recompute, layout.zero, layout.dp_overlap,
                          recipe, detail=True, tp_overlap=layout.tp_overlap)
    e = training_energy(model, system, precision, global_batch, layout, recipe, spec, result=r)
    return TrainResult(label, system, layout, r, e, training_breakdown(model, layout, r))


@dataclass
class DecodeResult:
    label: str
    replica: str
    replicas: int
    step: Any
    energy: Any
    tokens_per_s: float
    note: str = ""


def decode_replica(model, acc, batch: int, context: float, precision="bf16", kv="bf16",
                   fraction: float = 0.9, max_chips: Optional[int] = None):
    """Smallest tp (≤ kv_heads, ≤ domain), then pp, whose main memory holds weights + KV."""
    from xlayer.workload.precision import kv_bytes_per_element, weight_bytes_per_param
    params = model.layers * model.layer_params() + model.vocab * model.hidden * (1 if model.tied_embeddings else 2)
    need = params * weight_bytes_per_param(precision) + \
        batch * context * model.layers * 2 * model.kv_dim * kv_bytes_per_element(kv)
    cap = acc.hbm.capacity_bytes * fraction
    tps = [t for t in (1, 2, 4, 8, 16) if tensor_parallel_ok(model, t) and t <= acc.scale_up_domain]
    for tp in tps:
        if need <= tp * cap:
            return tp, 1, need
    tp = tps[-1]
    pp = math.ceil(need / (tp * cap))
    if pp > model.layers or (max_chips and tp * pp > max_chips):
        return None, None, need
    return tp, pp, need


def run_decode(label: str, model, acc, count: int, spec, batch=DECODE_BATCH, context=DECODE_CONTEXT,
               note: str = "") -> Optional[DecodeResult]:
    from xlayer.cost.energy import energy_from_counts
    from xlayer.prediction.decode_energy import decode_step
    tp, pp, need = decode_replica(model, acc, batch, context, max_chips=count)
    if tp is None:
        tpmax = max(t for t in (1, 2, 4, 8, 16) if tensor_parallel_ok(model, t) and t <= acc.scale_up_domain)
        ppmax = min(model.layers, count // tpmax)
        most = tpmax * ppmax * acc.hbm.capacity_bytes * 0.9
        return DecodeResult(label, f"does not fit: weights + KV {need / 1e9:.0f} GB > {most / 1e9:.0f} GB "
                                   f"(tp{tpmax} x pp{ppmax} x {acc.hbm.capacity_bytes * 0.9 / 1e9:.3g} GB)",
                            0, None, None, 0.0, note)
    sysr = make_system(acc, tp * pp)
    step = decode_step(model, sysr, tp, pp, batch, context)
    e = energy_from_counts(step.counts, spec)
    replicas = count // (tp * pp)
    return DecodeResult(label, f"tp{tp} pp{pp}", replicas, step, e, replicas * batch / step.time_s, note)


# ------------------------------------------------------------------------------------------
# the study

def _scd(spec_path: Optional[Path] = None, boards: int = STUDY_BOARDS, **updates):
    from xlayer.hardware.scd import build_scd, load_scd_spec, with_params
    spec = load_scd_spec(spec_path)
    if updates:
        spec = with_params(spec, **updates)
    return build_scd(spec, boards=boards)


TORNADO = [  # (label, {field: (low, high)}) over the SCD concept
    ("clock 20-50 GHz", {"logic.clock_hz": (20e9, 50e9)}),
    ("JSRAM 2-32 layers (40-640 MB/chip)", {"jsram.layers": (2, 32)}),
    ("cryo-DRAM BW 0.4-6.4 TB/s/chip", {"dram.bandwidth_bytes_per_s": (0.4e12, 6.4e12)}),
    ("link BW x0.25-x4", {"links.chip_to_chip.rate_bits_per_s": (12.5e9, 200e9),
                          "links.board_to_board.rate_bits_per_s": (7.5e9, 120e9)}),
    ("4 K cooling 100-1000 W/W", {"cooling.0.overhead_w_per_w": (100.0, 1000.0)}),
    ("switching energy 1-10e-20 J", {"logic.switching_energy_j": (1e-20, 10e-20)}),
]


def _scd_metrics(spec_path, updates) -> dict[str, float]:
    b = _scd(spec_path, **updates)
    tr = run_training("SCD", gpt3_175b(), b.system, b.energy)
    dec = _scd_decode(spec_path, updates, b.system.count)
    best = min((d for d in dec if d.energy is not None), key=lambda d: d.energy.per_token_j())
    return {"train_time_s": tr.result.iteration_time_s, "train_wall_j": tr.energy.wall_j,
            "decode_wall_j_per_token": best.energy.per_token_j(), "decode_step_s": best.step.time_s}


def _scd_decode(spec_path, updates, count) -> list[DecodeResult]:
    out = []
    model = llama2_70b()
    b = _scd(spec_path, **updates)
    out.append(run_decode("SCD (weights in cryo-DRAM)", model, b.accelerator, count, b.energy))
    bj = _scd(spec_path, **{**updates, "main_memory": "jsram"})
    out.append(run_decode("SCD (weights in JSRAM)", model, bj.accelerator, count, bj.energy))
    return out


def run_study(out_dir: Path, doc_path: Optional[Path], spec_path: Optional[Path] = None,
              log=print) -> dict[str, Any]:
    from xlayer.cost.energy import gpu_energy_spec, rated_system_wall_w
    from xlayer.hardware.catalog import get_accelerator
    t0 = time.time()
    out_dir.mkdir(parents=True, exist_ok=True)
    base = _scd(spec_path)
    rp = base.rated_power()
    peak_scd = base.derived["system_peak_bf16_flops_per_s"]
    wall_scd = rp["wall_w"]
    model = gpt3_175b()

    systems = [("SCD concept", base.accelerator, base.system.count, base.energy, "reference")]
    for name in GPUS:
        acc = get_accelerator(name)
        spec = gpu_energy_spec(acc)
        dom = acc.scale_up_domain
        n_peak = size_count(peak_scd / acc.peak("bf16"), dom)
        n_pow = size_count(wall_scd / (acc.tdp_w + spec.overhead_w), dom)
        systems.append((f"{GPU_LABEL[name]} (equal peak)", acc, n_peak, spec, "equal peak"))
        systems.append((f"{GPU_LABEL[name]} (equal power)", acc, n_pow, spec, "equal power"))

    rows = []
    train: dict[str, TrainResult] = {}
    for label, acc, count, spec, basis in systems:
        sysm = base.system if label == "SCD concept" else make_system(acc, count)
        tr = run_training(label, model, sysm, spec)
        train[label] = tr
        if label == "SCD concept":
            wall_rated = wall_scd
        else:
            wall_rated = rated_system_wall_w(acc, spec, count)
        e = tr.energy
        rows.append({
            "system": label, "basis": basis, "accelerators": count,
            "peak_ef": acc.peak("bf16") * count / 1e18, "rated_wall_kw": wall_rated / 1e3,
            "layout": tr.layout.describe(), "iteration_s": tr.result.iteration_time_s,
            "mfu_pct": 100 * float(tr.result.mfu),
            "device_mj": e.device_j / 1e6, "wall_mj": e.wall_j / 1e6, "avg_wall_kw": e.wall_w / 1e3,
            "wall_j_per_token": e.wall_j / (TRAIN_GLOBAL_BATCH * model.seq_len),
            **{f"share_{k}": 100 * v / tr.result.iteration_time_s for k, v in tr.breakdown_s.items()},
        })
        log(f"train {label:28s} n={count:6d} {tr.layout.describe():38s} t={tr.result.iteration_time_s:.3f} s "
            f"E_wall={e.wall_j / 1e6:.2f} MJ")

    # inference: decode of Llama 2 70B on each system (replicas of the smallest fitting group)
    dmodel = llama2_70b()
    drows = []
    dec_results: list[DecodeResult] = []
    for label, acc, count, spec, basis in systems:
        if label == "SCD concept":
            dec_results += _scd_decode(spec_path, {}, count)
            continue
        dec_results.append(run_decode(label, dmodel, acc, count, spec))
    for d in dec_results:
        if d.energy is None:
            drows.append({"system": d.label, "replica": d.replica})
            log(f"decode {d.label:28s} {d.replica}")
            continue
        drows.append({"system": d.label, "replica": d.replica, "replicas": d.replicas,
                      "step_ms": d.step.time_s * 1e3, "bound": d.step.bound,
                      "system_tokens_per_s": d.tokens_per_s,
                      "device_j_per_token": d.energy.per_token_j(False), "wall_j_per_token": d.energy.per_token_j(True),
                      **{f"share_{k}": 100 * v / d.step.time_s for k, v in d.step.breakdown_s.items()}})
        log(f"decode {d.label:28s} {d.replica:9s} step={d.step.time_s * 1e3:.3f} ms  "
            f"{d.energy.per_token_j():.3f} J/token (wall)  bound={d.step.bound}")

    # tornado over the SCD parameters
    basem = _scd_metrics(spec_path, {})
    tornado = []
    for label, upd in TORNADO:
        lo = _scd_metrics(spec_path, {k: v[0] for k, v in upd.items()})
        hi = _scd_metrics(spec_path, {k: v[1] for k, v in upd.items()})
        tornado.append({"parameter": label, **{f"{m}_low": lo[m] for m in basem}, **{f"{m}_high": hi[m] for m in basem}})
        log(f"tornado {label:36s} train {lo['train_time_s']:.3f}/{hi['train_time_s']:.3f} s  "
            f"E {lo['train_wall_j'] / 1e6:.2f}/{hi['train_wall_j'] / 1e6:.2f} MJ  "
            f"decode {lo['decode_wall_j_per_token']:.3f}/{hi['decode_wall_j_per_token']:.3f} J/token")

    methods = sorted({d.step.method for d in dec_results if d.step is not None})
    result = {"scd": {"derived": base.derived, "rated_power": rp}, "training": rows, "decode": drows,
              "decode_method": ", ".join(methods),
              "tornado": {"base": basem, "rows": tornado}, "seconds": time.time() - t0}
    (out_dir / "scd_study.json").write_text(json.dumps(result, indent=1, default=float))
    _write_csv(out_dir / "training.csv", rows)
    _write_csv(out_dir / "decode.csv", drows)
    _write_csv(out_dir / "tornado.csv", tornado)
    plots = _plots(out_dir, rows, drows, tornado, basem)
    result["plots"] = plots
    if doc_path is not None:
        doc_path.parent.mkdir(parents=True, exist_ok=True)
        doc_path.write_text(_study_markdown(result, out_dir, doc_path))
    result["seconds"] = time.time() - t0
    return result


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    lines = [",".join(keys)]
    for r in rows:
        lines.append(",".join(_csv_cell(r.get(k, "")) for k in keys))
    path.write_text("\n".join(lines) + "\n")


def _csv_cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    s = str(v)
    return f'"{s}"' if "," in s else s


def _plots(out_dir: Path, rows, drows, tornado, basem) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    files = []
    # training: time and wall energy per system, with the time breakdown stacked
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    labels = [r["system"] for r in rows]
    cats = [k for k in rows[0] if k.startswith("share_")]
    bottom = np.zeros(len(rows))
    for c in cats:
        vals = np.array([r["iteration_s"] * r.get(c, 0.0) / 100 for r in rows])
        axes[0].barh(labels, vals, left=bottom, label=c.removeprefix("share_"))
        bottom += vals
    axes[0].set_xscale("log")
    axes[0].set_xlabel("GPT-3 175B iteration time (s), split by bound")
    axes[0].legend(fontsize=7)
    axes[0].invert_yaxis()
    axes[1].barh(labels, [r["wall_mj"] for r in rows], color="tab:red", label="wall")
    axes[1].barh(labels, [r["device_mj"] for r in rows], color="tab:orange", label="device")
    axes[1].set_xscale("log")
    axes[1].set_xlabel("energy per iteration (MJ)")
    axes[1].legend(fontsize=7)
    axes[1].invert_yaxis()
    fig.tight_layout()
    fig.savefig(out_dir / "training.png", dpi=110)
    plt.close(fig)
    files.append("training.png")
    # decode
    ok = [d for d in drows if "step_ms" in d]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    axes[0].barh([d["system"] for d in ok], [d["step_ms"] for d in ok])
    axes[0].set_xscale("log")
    axes[0].set_xlabel("Llama 2 70B decode step (ms), batch 64, context 2048")
    axes[0].invert_yaxis()
    axes[1].barh([d["system"] for d in ok], [d["wall_j_per_token"] for d in ok], color="tab:red")
    axes[1].set_xscale("log")
    axes[1].set_xlabel("wall energy per generated token (J)")
    axes[1].invert_yaxis()
    fig.tight_layout()
    fig.savefig(out_dir / "decode.png", dpi=110)
    plt.close(fig)
    files.append("decode.png")
    # tornado
    metrics = [("train_time_s", "GPT-3 iteration time (s)"), ("train_wall_j", "GPT-3 wall energy / iteration (J)"),
               ("decode_wall_j_per_token", "Llama 2 70B wall J / token")]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for ax, (m, title) in zip(axes, metrics):
        base = basem[m]
        order = sorted(tornado, key=lambda r: abs(math.log(r[f"{m}_high"] / base)) + abs(math.log(r[f"{m}_low"] / base)))
        y = np.arange(len(order))
        lo = [100 * (r[f"{m}_low"] / base - 1) for r in order]
        hi = [100 * (r[f"{m}_high"] / base - 1) for r in order]
        ax.barh(y, lo, color="tab:blue", label="low value")
        ax.barh(y, hi, color="tab:orange", label="high value")
        ax.set_yticks(y)
        ax.set_yticklabels([r["parameter"] for r in order], fontsize=7)
        ax.axvline(0, color="k", lw=0.8)
        ax.set_xlabel(f"change of {title} (%)", fontsize=8)
        ax.set_xscale("symlog", linthresh=10)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / "tornado.png", dpi=110)
    plt.close(fig)
    files.append("tornado.png")
    return files


def _md_table(rows: list[dict[str, Any]], cols: list[tuple[str, str, str]]) -> str:
    head = "| " + " | ".join(c[1] for c in cols) + " |\n|" + "---|" * len(cols) + "\n"
    body = ""
    for r in rows:
        cells = []
        for key, _, fmt in cols:
            v = r.get(key, "")
            cells.append(format(v, fmt) if isinstance(v, (int, float)) and fmt else str(v))
        body += "| " + " | ".join(cells) + " |\n"
    return head + body


def _study_markdown(res: dict[str, Any], out_dir: Path, doc_path: Path) -> str:
    try:
        rel = out_dir.resolve().relative_to(doc_path.parent.resolve())
    except ValueError:
        rel = out_dir.resolve()
    d, rp = res["scd"]["derived"], res["scd"]["rated_power"]
    rows, drows, tor = res["training"], res["decode"], res["tornado"]
    shares = [k for k in rows[0] if k.startswith("share_")]
    lines = [
        "# Study: superconducting digital (SCD) vs DGX H100, DGX B200, GB200 NVL72",
        "",
        "Generated by `xlayer scd study` (this file is overwritten on every run; numbers below are the ones "
        f"it printed; run time {res['seconds']:.1f} s). Inputs: `xlayer/data/scd-concept.yaml` (SCD, every "
        "assumption marked there and in docs/scd.md), `xlayer/data/energy.yaml` (GPU energies, calibrated to TDP), "
        "the hardware catalog. Method: docs/scd.md.",
        "",
        "## Systems",
        "",
        f"SCD: the imec concept at {int(d['boards'])} boards x {int(d['chips'] / d['boards'])} chips = {int(d['chips'])} chips "
        f"(the concept's 100 boards rounded to a count whose divisors the layouts need), "
        f"{d['system_peak_bf16_flops_per_s'] / 1e18:.2f} EFLOP/s bf16 peak, rated wall power {rp['wall_w'] / 1e3:.0f} kW. "
        "GPU clusters are sized to the same peak FLOP/s and to the same rated wall power (GPU TDP + its share of the "
        "DGX / NVL72 maximum system power), rounded to domain x 2^a x 3^b accelerators.",
        "",
        "## GPT-3 175B training (global batch 1536 x 2048 tokens, bf16, best layout per system)",
        "",
        _md_table(rows, [("system", "system", ""), ("accelerators", "N", "d"), ("peak_ef", "peak EF", ".2f"),
                         ("rated_wall_kw", "rated kW", ".0f"), ("layout", "layout", ""),
                         ("iteration_s", "iteration s", ".3f"), ("mfu_pct", "MFU %", ".1f"),
                         ("device_mj", "device MJ", ".2f"), ("wall_mj", "wall MJ", ".2f"),
                         ("avg_wall_kw", "avg wall kW", ".0f")]),
        "Where the time goes (% of the iteration, busiest pipeline rank):",
        "",
        _md_table(rows, [("system", "system", "")] + [(k, k.removeprefix("share_"), ".1f") for k in shares]),
        f"![training]({rel}/training.png)",
        "",
        "## Llama 2 70B decode (batch 64 per replica, context 2048, bf16 weights and KV)",
        "",
        "Each system is filled with replicas of the smallest tensor/pipeline group whose main memory holds "
        "weights + KV cache (90 %); the decode step uses `xlayer.workload.inference_ops` with the roofline of "
        "`xlayer.cost.compute.op_time` through `xlayer.prediction.decode_energy.decode_step` (per-operator overhead: the accelerator's "
        f"own; method used: {res.get('decode_method', '?')}).",
        "",
        _md_table(drows, [("system", "system", ""), ("replica", "replica", ""), ("replicas", "replicas", "d"),
                          ("step_ms", "step ms", ".3f"), ("bound", "bound", ""),
                          ("system_tokens_per_s", "system tokens/s", ",.0f"),
                          ("device_j_per_token", "device J/token", ".4f"), ("wall_j_per_token", "wall J/token", ".4f")]),
        f"![decode]({rel}/decode.png)",
        "",
        "## Sensitivity (SCD only; each parameter at its low and high value, the rest at the concept)",
        "",
        _md_table(tor["rows"], [("parameter", "parameter", ""), ("train_time_s_low", "iter s (low)", ".3f"),
                                ("train_time_s_high", "iter s (high)", ".3f"),
                                ("train_wall_j_low", "wall J (low)", ".3g"), ("train_wall_j_high", "wall J (high)", ".3g"),
                                ("decode_wall_j_per_token_low", "J/token (low)", ".4f"),
                                ("decode_wall_j_per_token_high", "J/token (high)", ".4f")]),
        f"Base: iteration {tor['base']['train_time_s']:.3f} s, {tor['base']['train_wall_j'] / 1e6:.2f} MJ at the wall, "
        f"decode {tor['base']['decode_wall_j_per_token']:.4f} J/token.",
        "",
        f"![tornado]({rel}/tornado.png)",
        "",
        "## Conclusions (from the numbers above)",
        "",
    ]
    lines += _conclusions(res)
    return "\n".join(lines) + "\n"


def _ratio(gpu: float, scd: float, better: str, worse: str) -> str:
    """'SCD 2.0x faster' when the GPU number is larger (time or energy), else 'SCD 2.0x slower'."""
    return f"SCD {gpu / scd:.1f}x {better}" if gpu >= scd else f"SCD {scd / gpu:.1f}x {worse}"


def _conclusions(res) -> list[str]:
    rows, drows, tor = res["training"], res["decode"], res["tornado"]
    by = {r["system"]: r for r in rows}
    scd = by["SCD concept"]
    out = []
    for gpu in GPUS:
        g = GPU_LABEL[gpu]
        ep, eq = by[f"{g} (equal peak)"], by[f"{g} (equal power)"]
        out.append(f"- vs {g}: at equal peak ({ep['accelerators']} GPUs) an iteration takes {ep['iteration_s']:.3f} s "
                   f"vs SCD {scd['iteration_s']:.3f} s ({_ratio(ep['iteration_s'], scd['iteration_s'], 'faster', 'slower')}) "
                   f"and {ep['wall_mj']:.2f} MJ vs {scd['wall_mj']:.2f} MJ at the wall "
                   f"({_ratio(ep['wall_mj'], scd['wall_mj'], 'less energy', 'more energy')}); at equal power "
                   f"({eq['accelerators']} GPUs) {eq['iteration_s']:.3f} s "
                   f"({_ratio(eq['iteration_s'], scd['iteration_s'], 'faster', 'slower')}) and {eq['wall_mj']:.2f} MJ "
                   f"({_ratio(eq['wall_mj'], scd['wall_mj'], 'less energy', 'more energy')}).")
    top = max((k for k in scd if k.startswith("share_")), key=lambda k: scd[k])
    comm_scd = scd.get("share_communication", 0.0)
    comm_gpu = by["DGX H100 (equal peak)"].get("share_communication", 0.0)
    out.append(f"- Which limit SCD removes: communication is {comm_scd:.1f} % of the SCD iteration vs "
               f"{comm_gpu:.1f} % on DGX H100 at equal peak (superconducting links: "
               f"{res['scd']['derived']['chip_to_chip_bytes_per_s'] / 1e12:.1f} TB/s per chip on the board, "
               f"{res['scd']['derived']['chip_to_chip_latency_s'] * 1e9:.2f} ns time of flight); and energy: the 4 K "
               f"logic costs {res['scd']['derived']['energy_per_flop_j_cold'] * 1e18:.0f} aJ/FLOP before cooling.")
    out.append(f"- Which it does not: the largest SCD term is '{top.removeprefix('share_')}' at {scd[top]:.1f} %; "
               f"memory-bound operators take {scd.get('share_memory-bound ops', 0.0):.1f} % because the cryo-DRAM "
               f"feeds {res['scd']['derived']['machine_balance_dram_flop_per_byte']:.0f} FLOP per byte "
               "(H100: 295) — the 77 K DRAM bandwidth, not the logic, sets the pace of everything that streams "
               "weights or activations.")
    ok = [d for d in drows if "step_ms" in d]
    if ok:
        best = min(ok, key=lambda d: d["wall_j_per_token"])
        fast = min(ok, key=lambda d: d["step_ms"])
        out.append(f"- Decode: lowest wall energy per token {best['wall_j_per_token']:.4f} J on {best['system']} "
                   f"({best['replica']}); shortest step {fast['step_ms']:.3f} ms on {fast['system']} "
                   f"({fast['replica']}).")
    miss = [d for d in drows if "step_ms" not in d]
    for d in miss:
        out.append(f"- {d['system']}: {d['replica']} — with the concept's JSRAM the 70B weights cannot live on chip; "
                   "the tornado's JSRAM row shows what a larger JSRAM changes.")
    base = tor["base"]
    swing = sorted(tor["rows"], key=lambda r: -abs(r["train_time_s_high"] - r["train_time_s_low"]))
    e_swing = sorted(tor["rows"], key=lambda r: -abs(r["train_wall_j_high"] - r["train_wall_j_low"]))
    out.append(f"- Sensitivity: training time moves most with '{swing[0]['parameter']}' "
               f"({swing[0]['train_time_s_low']:.3f}-{swing[0]['train_time_s_high']:.3f} s vs {base['train_time_s']:.3f} s); "
               f"wall energy with '{e_swing[0]['parameter']}' ({e_swing[0]['train_wall_j_low'] / 1e6:.2f}-"
               f"{e_swing[0]['train_wall_j_high'] / 1e6:.2f} MJ vs {base['train_wall_j'] / 1e6:.2f} MJ).")
    out.append("- Caveats: every SCD number rests on the assumptions in docs/scd.md (the split of the concept's "
               "totals into chips is ours); the GPU energies are calibrated to TDP, not measured per kernel; the "
               "engine's GEMM efficiency (catalog MAMF × 0.93 sustained) is a GPU measurement applied to SCD as an "
               "assumption.")
    return out


# ------------------------------------------------------------------------------------------
# commands
