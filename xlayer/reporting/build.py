"""HTML reports: one self-contained static file (inline CSS and SVG, no script, no network).

* ``training_report(case, pred)`` — a predicted training case: summary, iteration-time
  breakdown, one layer's forward/backward breakdown, memory breakdown against capacity,
  roofline of the layer's operators, pipeline timeline (1F1B or interleaved), operator table
  and the assumptions taken.
* ``validate_report(result)`` — the ``validate_files`` object: predicted-vs-measured log-log
  scatter with a ±10 % band, error per source and per metric, every case.
* ``search_report(case, cs)`` — a layout search (``xlayer.explore.search.search_case``).
* ``serving_report(case, res)`` — an SLO search (``xlayer.serving.deploy.slo_search``): the
  throughput-vs-interactivity curve, the chosen deployment and its step-time breakdown, the
  ranked deployments with their binding limits.
* ``sweep_report(folder_or_frame, meta)`` — a sweep's Parquet results: Pareto plots of
  iteration time against accelerator count, memory, energy and cost, the front and every point.

Numbers are converted to display units only here; the charts read the same fields that
``xlayer predict --json`` / ``xlayer validate --json`` print.
"""
from __future__ import annotations

import datetime as _dt
import math
from pathlib import Path
from typing import Any, Iterable, Sequence

from xlayer.workload.precision import gemm_precision
from xlayer.reporting.svg import (Point, Series, Task, esc, fmt_time, gantt, log_range, log_scatter, si,
                               stacked_bars)
from xlayer.reporting.timeline import chunk_layers, pipeline_timeline
from xlayer.units import GIB


CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:0;color:#222;background:#f4f5f7}
main{max-width:1160px;margin:0 auto;padding:18px 24px 40px}
header{background:#1f3b73;color:#fff;padding:16px 24px}
header h1{margin:0;font-size:22px}header p{margin:4px 0 0;opacity:.85;font-size:13px}
h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d0d4da;padding-bottom:4px}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:14px 0}
.card{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:8px 14px;min-width:120px}
.card b{display:block;font-size:19px}.card span{font-size:12px;color:#666}
figure.chart{background:#fff;border:1px solid #dde1e6;border-radius:6px;margin:12px 0;padding:8px;overflow-x:auto}
figcaption{font-size:12px;color:#555;margin:4px 6px}
table{border-collapse:collapse;background:#fff;font-size:12.5px;margin:8px 0}
th,td{border:1px solid #dde1e6;padding:3px 8px;text-align:left}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
th{background:#eef0f3}.bad{color:#b00020}.good{color:#1b7f3b}.muted{color:#777}
ul.assumed{font-size:12.5px;color:#444}footer{font-size:11px;color:#888;margin-top:30px}
"""


# ---- page ------------------------------------------------------------------------------

def page(title: str, subtitle: str, body: Sequence[str]) -> str:
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{esc(title)}</title>"
            f"<style>{CSS}</style></head><body><header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header>"
            "<main>" + "\n".join(body) +
            f"<footer>made by xlayer report on {stamp}; every chart is inline SVG, the file needs no network."
            "</footer></main></body></html>\n")


def figure(svg: str, chart_id: str, caption: str) -> str:
    return f'<figure class="chart" id="{esc(chart_id)}">{svg}<figcaption>{esc(caption)}</figcaption></figure>'


def cards(items: Iterable[tuple[str, str]]) -> str:
    return '<div class="cards">' + "".join(f'<div class="card"><b>{esc(v)}</b><span>{esc(k)}</span></div>'
                                           for k, v in items) + "</div>"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Sequence[bool] | None = None,
          css: Sequence[str] | None = None, table_id: str | None = None) -> str:
    """``rows`` of already formatted cells (escaped here); ``css`` gives one class per row."""
    numeric = numeric or [False] * len(headers)
    tid = f' id="{esc(table_id)}"' if table_id else ""
    head = "".join(f'<th class="n">{esc(h)}</th>' if n else f"<th>{esc(h)}</th>" for h, n in zip(headers, numeric))
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{css[i]}"' if css and css[i] else ""
        body.append(f"<tr{cls}>" + "".join(f'<td class="n">{esc(c)}</td>' if n else f"<td>{esc(c)}</td>"
                                           for c, n in zip(row, numeric)) + "</tr>")
    return f"<table{tid}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def write(html_text: str, out: str | Path) -> Path:
    p = Path(out)
    if p.parent and not p.parent.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(html_text, encoding="utf-8")
    return p


# ---- training --------------------------------------------------------------------------

def _gemm_precision(precision: str) -> str:
    """The precision the GEMMs run in (the one policy, xlayer.workload.precision)."""
    return gemm_precision(precision)


def _term_colors(pred) -> dict[str, str]:
    """One colour per term, shared by the iteration and layer charts."""
    from xlayer.reporting.svg import color_for
    extra = ["compute.gemm", "compute.attention", "compute.elementwise", "compute.recompute",
             "comm.tp_exposed", "comm.cp_exposed", "comm.fsdp_exposed"]
    return color_for(list(pred.time_breakdown_s) + extra)


def time_breakdown_chart(pred) -> str:
    segs = [(k, float(v)) for k, v in pred.time_breakdown_s.items() if float(v) > 0]
    return stacked_bars("time-breakdown", "Iteration time, busiest pipeline rank",
                        [("iteration", segs)], fmt_time, "seconds per iteration", colors=_term_colors(pred))


def layer_breakdown_chart(pred) -> str:
    """One layer and one micro-batch: forward and backward split into operators and exposed
    communication (fields of ``TrainingPrediction.ops`` and ``.layer``)."""
    bars = []
    lay = pred.layer
    for phase, label in (("fwd", "forward"), ("bwd", "backward")):
        segs: dict[str, float] = {}
        for op in pred.ops:
            if op["phase"] == phase:
                key = f"compute.{op['kind']}"
                segs[key] = segs.get(key, 0.0) + float(op["time_s"])
        if phase == "bwd":
            segs["compute.recompute"] = float(lay.get("recompute_s", 0.0))
        for comm in ("tp", "cp", "fsdp"):
            v = float(lay.get(f"{comm}_{phase}_s", 0.0)) + (float(lay.get("tp_recompute_s", 0.0))
                                                             if comm == "tp" and phase == "bwd" else 0.0)
            segs[f"comm.{comm}_exposed"] = v
        bars.append((label, [(k, v) for k, v in segs.items() if v > 0]))
    return stacked_bars("layer-breakdown", "One transformer layer, one micro-batch", bars, fmt_time,
                        "seconds per layer and micro-batch", colors=_term_colors(pred))


def memory_chart(pred) -> str:
    segs = [(k, float(v) / GIB) for k, v in pred.memory_breakdown_bytes.items() if float(v) > 0]
    return stacked_bars("memory-breakdown", "Memory per accelerator, busiest rank",
                        [("memory", segs)], lambda v: f"{v:.3g} GiB", "GiB",
                        marker=("capacity", float(pred.capacity_bytes) / GIB))


def roofline_chart(pred, accelerator, precision: str) -> str:
    """Operators of one layer on the roofline: arithmetic intensity F/B (FLOP per HBM byte)
    against achieved rate F/t from ``xlayer.cost.compute.op_time``; roofs min(peak, BW·I)
    with the datasheet peak and HBM bandwidth (solid) and the achievable GEMM rate and
    bandwidth (dashed)."""
    from xlayer.cost.compute import gemm_rate_flops_per_s

    gp = _gemm_precision(precision)
    peak = float(accelerator.peak(gp))
    bw = float(accelerator.hbm.bandwidth_bytes_per_s)
    bw_ach = float(accelerator.hbm.achievable_bytes_per_s)
    gemm = float(gemm_rate_flops_per_s(accelerator, gp))
    shapes = {"compute": "circle", "hbm": "square", "l2": "diamond"}
    pts, shape_of = [], {}
    for op in pred.ops:
        f, b, t = float(op["flops"]), float(op["bytes"]), float(op["time_s"])
        if f <= 0 or b <= 0 or t <= 0:
            continue
        ai, rate = f / b, f / t
        group = op["kind"]
        pts.append(Point(ai, rate, group, f"{op['name']} ({op['kind']}, {op['bound']}-bound): "
                                          f"{ai:.3g} FLOP/B, {si(rate, 'FLOP/s')}, {fmt_time(t)}"))
        shape_of[group] = shapes.get(op["bound"], "circle")
    ridge = peak / bw
    xr = log_range([p.x for p in pts] + [ridge / 10, ridge * 10], pad=0.1)
    yr = log_range([p.y for p in pts] + [peak * 1.3], pad=0.08)
    series = [Series(f"roof: {si(peak, 'FLOP/s')} {gp} peak, {si(bw, 'B/s')} HBM", "#222",
                     fn=lambda x: min(peak, bw * x)),
              Series(f"achievable: GEMM {si(gemm, 'FLOP/s')}, HBM {si(bw_ach, 'B/s')}", "#888",
                     fn=lambda x: min(gemm, bw_ach * x), dash="6,4")]
    # marker shape reflects the bound of the group's first op; the tooltip names each op's bound
    return log_scatter("roofline", f"Roofline: one layer's operators on {accelerator.name}", pts,
                       "arithmetic intensity (FLOP per HBM byte)", "achieved FLOP/s", series=series,
                       x_range=xr, y_range=yr, width=900, height=540,
                       x_fmt=lambda v: f"{v:g}", y_fmt=lambda v: si(v), shapes=shape_of)


FWD_COLORS = ("#0072B2", "#56B4E9", "#1F3B73", "#6BAED6")
BWD_COLORS = ("#E69F00", "#D55E00", "#F0B86E", "#A6611A")


def pipeline_chart(pred, model, global_batch: int) -> tuple[str, str]:
    """Gantt of one iteration's pipeline schedule: ranks × time, forward/backward blocks of
    each micro-batch (and model chunk when interleaved). Block lengths: the layers of the
    chunk × the predicted layer forward / backward time (recompute and exposed communication
    included); embedding, output layer and p2p are not drawn."""
    lay = pred.layout
    m = lay.microbatches(global_batch)
    per_stage = chunk_layers(model.layers, lay.pp, lay.vp)
    f1 = float(pred.metrics["layer_forward_time_s"])
    b1 = float(pred.metrics["layer_backward_time_s"])
    blocks = pipeline_timeline(lay.pp, lay.vp, m, [n * f1 for n in per_stage], [n * b1 for n in per_stage])
    tips = len(blocks) <= 2000
    tasks = []
    for blk in blocks:
        col = (FWD_COLORS if blk.phase == "F" else BWD_COLORS)[blk.chunk % 4]
        name = "forward" if blk.phase == "F" else "backward"
        tasks.append(Task(blk.rank, blk.start_s, blk.end_s, col, label=str(blk.micro + 1),
                          tip=f"rank {blk.rank}, {name} of micro-batch {blk.micro + 1}"
                              + (f", chunk {blk.chunk}" if lay.vp > 1 else "")
                              + f": {fmt_time(blk.start_s)} – {fmt_time(blk.end_s)}"))
    if lay.vp > 1:
        legend = [(f"forward, chunk {c}", FWD_COLORS[c % 4]) for c in range(min(lay.vp, 4))] + \
                 [(f"backward, chunk {c}", BWD_COLORS[c % 4]) for c in range(min(lay.vp, 4))]
        kind = f"interleaved 1F1B, {lay.vp} chunks per rank"
    else:
        legend = [("forward", FWD_COLORS[0]), ("backward", BWD_COLORS[0])]
        kind = "1F1B"
    end = max(b.end_s for b in blocks)
    busy = sum(b.end_s - b.start_s for b in blocks)
    idle = 1 - busy / (end * lay.pp)
    svg = gantt("pipeline-timeline", f"Pipeline timeline: {kind}, p={lay.pp}, m={m} micro-batches",
                tasks, [f"rank {r}" for r in range(lay.pp)], legend, tips=tips)
    caption = (f"Schedule computed from the layout (xlayer.reporting.timeline): {len(blocks)} blocks, span "
               f"{fmt_time(end)}, idle (bubble) {100 * idle:.1f} % of rank time; block numbers are micro-batches. "
               "Embedding, output layer and p2p transfers are not drawn.")
    return svg, caption


def training_report(case, pred) -> str:
    """The HTML page for one predicted training case (``xlayer.prediction.training.TrainingPrediction``)."""
    acc = case.system_spec().accelerator
    model = case.model
    lay = pred.layout
    total_params = model.total_params()
    subtitle = (f"{model.name}: {total_params / 1e9:.2f} B parameters, {model.layers} layers, hidden {model.hidden}, "
                f"seq {model.seq_len} · {case.system.count} × {acc.name} · layout {lay.describe()} · "
                f"global batch {case.batch.global_} · {case.precision}")
    body = [cards([("iteration time", fmt_time(pred.iteration_time_s)), ("MFU", f"{100 * pred.mfu:.1f} %"),
                   ("HFU", f"{100 * pred.hfu:.1f} %"), ("tokens/s", f"{pred.tokens_per_s:,.0f}"),
                   ("memory / capacity", f"{pred.memory_bytes / GIB:.1f} / {pred.capacity_bytes / GIB:.0f} GiB"),
                   ("fits memory", "yes" if pred.fits_memory else "NO"),
                   ("micro-batches", str(lay.microbatches(case.batch.global_)))])]
    body.append("<h2>Where the time goes</h2>")
    body.append(figure(time_breakdown_chart(pred), "chart-time",
                       "Terms of one iteration on the busiest pipeline rank; each is named after the function that "
                       "computed it (docs/training-model.md). They add up to the iteration time."))
    body.append(figure(layer_breakdown_chart(pred), "chart-layer",
                       "One layer, one micro-batch: operator time by kind and exposed communication."))
    body.append("<h2>Memory</h2>")
    body.append(figure(memory_chart(pred), "chart-memory",
                       "Model states (weights, gradients, optimizer), activations in flight and communication "
                       "buffers on the busiest rank; the dashed line is the HBM capacity."))
    body.append("<h2>Roofline</h2>")
    body.append(figure(roofline_chart(pred, acc, case.precision), "chart-roofline",
                       "Every forward and backward operator of one layer (xlayer.cost.compute.op_time). Colour: kind; "
                       "marker: circle compute-bound, square HBM-bound, diamond L2-bound (hover for each op)."))
    body.append("<h2>Pipeline</h2>")
    svg, cap = pipeline_chart(pred, model, case.batch.global_)
    body.append(figure(svg, "chart-pipeline", cap))
    body.append("<h2>Operators of one layer</h2>")
    rows = [(o["name"], o["kind"], o["phase"], fmt_time(float(o["time_s"])), f"{float(o['flops']) / 1e9:.2f}",
             f"{float(o['bytes']) / 1e6:.2f}",
             f"{float(o['flops']) / float(o['bytes']):.1f}" if float(o["bytes"]) else "-", o["bound"])
            for o in pred.ops]
    body.append(table(["op", "kind", "phase", "time", "GFLOP", "MB", "FLOP/B", "bound"], rows,
                      [False, False, False, True, True, True, True, False], table_id="ops"))
    if pred.assumptions:
        body.append("<h2>Assumed</h2><ul class=\"assumed\">" +
                    "".join(f"<li>{esc(a)}</li>" for a in pred.assumptions) + "</ul>")
    return page(f"xlayer: {case.id}", subtitle, body)


# ---- validation ------------------------------------------------------------------------

def _err_cls(e: float | None) -> str:
    if e is None:
        return "muted"
    return "good" if abs(e) <= 10 else ("bad" if abs(e) > 25 else "")


def validate_report(result: dict[str, Any], title: str = "xlayer: predicted vs measured") -> str:
    """The HTML page for a ``validate_files`` result (the ``validate --json`` object)."""
    rows = result["cases"]
    ok = [r for r in rows if r.get("predicted") is not None and r.get("measured")]
    pts = [Point(float(r["measured"]), float(r["predicted"]), str(r["metric"]),
                 f"{r['id']} · {r['metric']}: measured {r['measured']:.4g}, predicted {r['predicted']:.4g} "
                 f"({r['error_pct']:+.1f} %)") for r in ok]
    allv = [p.x for p in pts] + [p.y for p in pts]
    rng = log_range(allv, pad=0.08)
    summ = result.get("summary", {}).get("all", {})
    body = [cards([("cases", str(len({r['id'] for r in rows}))), ("metrics predicted", str(len(ok))),
                   ("not predicted", str(summ.get("not_predicted", len(rows) - len(ok)))),
                   ("MAPE", f"{summ['mape_pct']:.1f} %" if summ.get("mape_pct") is not None else "-"),
                   ("max |error|", f"{summ['max_abs_error_pct']:.1f} %"
                    if summ.get("max_abs_error_pct") is not None else "-")])]
    body.append("<h2>Predicted vs measured</h2>")
    svg = log_scatter("validate-scatter", "Predicted vs measured (each metric in its own unit)", pts,
                      "measured", "predicted",
                      series=[Series("predicted = measured", "#222", fn=lambda x: x)],
                      band=(0.9, 1.1), band_label="±10 %", x_range=rng, y_range=rng, width=760, height=600,
                      x_fmt=lambda v: f"{v:g}", y_fmt=lambda v: f"{v:g}")
    body.append(figure(svg, "chart-validate", "Log-log; the shaded band is ±10 % around predicted = measured. "
                                              "Hover a point for its case."))
    body.append("<h2>Error per source</h2>")
    src = result.get("by_source") or {}
    body.append(table(["source", "metrics", "MAPE %", "max |error| %"],
                      [(k, v["count"], _pct(v["mape_pct"]), _pct(v["max_abs_error_pct"])) for k, v in src.items()],
                      [False, True, True, True], table_id="by-source"))
    body.append("<h2>Error per metric</h2>")
    body.append(table(["metric", "count", "MAPE %", "max |error| %"],
                      [(k, v["count"], _pct(v["mape_pct"]), _pct(v["max_abs_error_pct"]))
                       for k, v in result.get("summary", {}).items()],
                      [False, True, True, True], table_id="by-metric"))
    body.append("<h2>Every case</h2>")
    crow, ccls = [], []
    for r in rows:
        e = r.get("error_pct")
        crow.append((r["id"], r.get("metric") or "-", _num(r.get("measured")), _num(r.get("predicted")),
                     f"{e:+.1f} %" if e is not None else (r.get("reason") or "")[:90]))
        ccls.append(_err_cls(e))
    body.append(table(["case", "metric", "measured", "predicted", "error"], crow,
                      [False, False, True, True, True], css=ccls, table_id="cases"))
    return page(title, f"{len(rows)} rows from {len({r['id'] for r in rows})} case files; "
                       "error = (predicted − measured) / measured", body)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def _num(v: float | None) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4g}"


# ---- search ----------------------------------------------------------------------------

def search_report(case, cs) -> str:
    """The HTML page for ``xlayer.explore.search.search_case``: the top layouts' iteration
    breakdowns as stacked bars, every fitting layout's memory against time with the Pareto
    front, and the top-N table (with the case's own layout when it states one)."""
    import numpy as np

    d = cs.to_dict()
    res = cs.result
    top = d["top"]
    body = [cards([("layouts considered", f"{d['counts']['considered']:,}"),
                   ("valid", f"{d['counts']['valid']:,}"), ("fit in memory", f"{d['counts']['fitting']:,}"),
                   ("best iteration", fmt_time(top[0]["iteration_time_s"]) if top else "-"),
                   ("best MFU", f"{100 * top[0]['mfu']:.1f} %" if top else "-"),
                   ("search time", f"{d['elapsed_s']:.2f} s")])]
    if top:
        body.append("<h2>Top layouts</h2>")
        bars = [(f"#{r['rank']} {r['describe'].split(' rc=')[0]}",
                 [(k, float(v)) for k, v in r["time_breakdown_s"].items() if float(v) > 0]) for r in top]
        body.append(figure(stacked_bars("search-top", "Iteration time of the best layouts", bars, fmt_time,
                                        "seconds per iteration", width=1000), "chart-search-top",
                           "Each bar is one layout's iteration, split into the terms of xlayer predict."))
        rows = [(r["rank"], r["describe"], fmt_time(r["iteration_time_s"]), f"{100 * r['mfu']:.1f}",
                 f"{r['memory_gib']:.1f}", f"{r['tokens_per_s_per_gpu']:,.0f}") for r in top]
        css = [""] * len(rows)
        cl = d.get("case_layout") or {}
        if cl.get("describe"):
            rows.append((cl.get("position") or "-", "case: " + cl["describe"], fmt_time(cl["iteration_time_s"]),
                         f"{100 * cl['mfu']:.1f}", f"{cl['memory_gib']:.1f}", "-"))
            css.append("muted")
        body.append(table(["rank", "layout", "iteration", "MFU %", "memory GiB", "tokens/s/GPU"], rows,
                          [True, False, True, True, True, True], css=css, table_id="top-layouts"))
    n = res.fitting
    if n:
        t = res.table
        mem = np.asarray(t["memory_bytes"][:n], dtype=float) / GIB
        tim = np.asarray(t["iteration_time_s"][:n], dtype=float)
        front = set(int(i) for i in np.asarray(res.pareto()).ravel())
        pts = []
        step = max(1, n // 3000)  # at most ~3000 points on the page
        for i in range(0, n, step):
            if i not in front:
                pts.append(Point(float(mem[i]), float(tim[i]), "fitting layout"))
        fr = sorted(front, key=lambda i: mem[i])
        for i in fr:
            pts.append(Point(float(mem[i]), float(tim[i]), "Pareto front",
                             f"{res.layout(i).describe()}: {mem[i]:.1f} GiB, {fmt_time(tim[i])}"))
        svg = log_scatter("search-pareto", "Every fitting layout: memory vs iteration time", pts,
                          "memory per accelerator (GiB)", "iteration time (s)",
                          series=[Series("front", "#D55E00", points=[(float(mem[i]), float(tim[i])) for i in fr])],
                          colors={"fitting layout": "#9aa7b8", "Pareto front": "#D55E00"}, width=900, height=520,
                          x_fmt=lambda v: f"{v:g}", y_fmt=lambda v: fmt_time(v))
        body.append("<h2>Memory vs time</h2>")
        body.append(figure(svg, "chart-search-pareto", "No layout is both faster and smaller than a point on the "
                                                       "front (xlayer.explore.search.pareto_front)."))
    if d.get("notes"):
        body.append("<h2>Notes</h2><ul class=\"assumed\">" + "".join(f"<li>{esc(x)}</li>" for x in d["notes"]) +
                    "</ul>")
    return page(f"xlayer search: {case.id}",
                f"{case.model.name} on {case.system.count} × {case.system.accelerator}, global batch "
                f"{case.batch.global_}, ranked by {d['rank']}", body)


# ---- serving ---------------------------------------------------------------------------

def serving_curve_chart(res, top: int = 6) -> str:
    """Throughput vs interactivity: output tokens/s per GPU against tokens/s per user
    (1/TPOT) along the concurrency caps of the best shapes / pool pairs; the best point of each
    within the targets, the chosen one, and the TPOT target as a vertical line."""
    from xlayer.reporting.svg import PALETTE
    keys = list(dict.fromkeys(res.curve_key(c) for c in res.ranked))[:top]
    series, pts = [], []
    xs, ys = [], []
    for i, k in enumerate(keys):
        cur = [(p["tokens_per_s_per_user"], p["output_tokens_per_s_per_gpu"]) for p in res.curves.get(k, [])
               if p["tokens_per_s_per_user"] > 0 and p["output_tokens_per_s_per_gpu"] > 0]
        cur.sort()
        pal = [c for c in PALETTE if c != "#D55E00"]          # that one marks the chosen point
        series.append(Series(k, pal[i % len(pal)], points=cur))
        xs += [x for x, _ in cur]
        ys += [y for _, y in cur]
    for c in res.ranked[:top]:
        pts.append(Point(c.tokens_per_s_per_user, c.tokens_per_s_per_gpu, "best within the targets",
                         f"{c.deployment.label}, max batch {c.cap}: {c.tokens_per_s_per_gpu:,.0f} tokens/s/GPU, "
                         f"{c.tokens_per_s_per_user:.1f} tokens/s/user, TTFT {fmt_time(c.ttft_s)}, "
                         f"TPOT {fmt_time(c.tpot_s)}"))
    b = res.best
    pts.append(Point(b.tokens_per_s_per_user, b.tokens_per_s_per_gpu, "chosen", f"chosen: {b.deployment.label}"))
    xs += [p.x for p in pts]
    ys += [p.y for p in pts]
    if res.tpot_target_s:
        xs.append(1.0 / res.tpot_target_s)
    xr, yr = log_range(xs, 0.05), log_range(ys, 0.08)
    if res.tpot_target_s:
        x = 1.0 / res.tpot_target_s
        series.append(Series(f"TPOT target {res.tpot_target_s * 1e3:g} ms", "#c00",
                             points=[(x, yr[0]), (x, yr[1])], dash="5,3"))
    return log_scatter("serving-curve", "Throughput vs interactivity", pts, "tokens/s per user (1 / TPOT)",
                       "output tokens/s per GPU", series=series, x_range=xr, y_range=yr, width=1000, height=560,
                       x_fmt=lambda v: f"{v:g}", y_fmt=lambda v: f"{v:,.0f}",
                       colors={"best within the targets": "#222", "chosen": "#D55E00"},
                       shapes={"chosen": "diamond"})


def serving_breakdown_chart(res) -> str:
    """The chosen deployment's iterations split into their terms (SearchResult.step_breakdown)."""
    bars = [(label, [(k, v) for k, v in terms.items() if v > 0]) for label, terms in res.step_breakdown()]
    return stacked_bars("serving-breakdown", f"Iterations of {res.best.deployment.label}", bars, fmt_time,
                        "seconds per iteration", width=1000)


def serving_report(case, res, top: int = 10) -> str:
    """The HTML page of an SLO search (``xlayer.serving.deploy.slo_search``): the
    throughput-vs-interactivity curve, the chosen deployment with its step-time breakdown,
    and the ranked deployments with their binding limits."""
    b = res.best
    tg = []
    if res.ttft_target_s is not None:
        tg.append(f"TTFT ≤ {fmt_time(res.ttft_target_s)}")
    if res.tpot_target_s is not None:
        tg.append(f"TPOT ≤ {fmt_time(res.tpot_target_s)}")
    body = [cards([("chosen deployment", b.deployment.label), ("output tokens/s per GPU", f"{b.tokens_per_s_per_gpu:,.0f}"),
                   ("tokens/s per user", f"{b.tokens_per_s_per_user:.1f}"), ("TTFT", fmt_time(b.ttft_s)),
                   ("TPOT", fmt_time(b.tpot_s)), ("max batch", f"{b.cap}"), ("GPUs used", f"{b.deployment.gpus}"),
                   ("limited by", b.limit), ("deployments evaluated", f"{res.evaluated:,}")])]
    body.append("<h2>Throughput vs interactivity</h2>")
    body.append(figure(serving_curve_chart(res), "chart-serving-curve",
                       "Each line is one replica shape (or prefill/decode pool pair at its best pool ratio) as its "
                       "concurrency cap grows from 1 to the KV and batch limits; the markers are the best cap of "
                       "each within the targets (steady state, xlayer.serving.steady and xlayer.serving.disagg)."))
    body.append("<h2>Chosen deployment</h2>")
    rows = [("deployment", b.deployment.label), ("mode", "disaggregated" if b.disaggregated else "aggregated"),
            ("GPUs used", f"{b.deployment.gpus} of {res.gpus}"), ("max batch (concurrency cap)", str(b.cap)),
            ("binding limit", b.limit), ("iteration bound by", b.bound)]
    if b.disaggregated:
        d = b.deployment
        rows += [("prefill pool", f"{d.prefill.label}: {d.prefill.gpus} GPUs, {d.prefill_batch} prompts per iteration"),
                 ("decode pool", f"{d.decode.label}: {d.decode.gpus} GPUs"),
                 ("KV transfer per request", f"{d.kv_bytes_per_request / 2 ** 20:,.1f} MiB over {d.network} in "
                                             f"{fmt_time(d.kv_transfer_s)} (part of the TTFT)")]
    body.append(table(["", ""], rows, table_id="serving-chosen"))
    body.append(figure(serving_breakdown_chart(res), "chart-serving-breakdown",
                       "Each bar is one iteration of the chosen deployment split into the terms of "
                       "StepTimer.breakdown (layer GEMMs, attention core, element-wise kernels, collectives, "
                       "embedding and output layer, host time not hidden behind the GPU)."))
    body.append("<h2>Deployments within the targets</h2>")
    trows = [(i + 1, c.deployment.label, c.deployment.gpus, c.cap, f"{c.tokens_per_s_per_gpu:,.0f}",
              f"{c.tokens_per_s_per_user:.1f}", fmt_time(c.ttft_s), fmt_time(c.tpot_s), c.limit, c.bound)
             for i, c in enumerate(res.ranked[:top])]
    body.append(table(["rank", "deployment", "GPUs", "max batch", "tokens/s/GPU", "tokens/s/user", "TTFT", "TPOT",
                       "limit", "bound"], trows, [True, False, True, True, True, True, True, True, False, False],
                      table_id="serving-ranked"))
    notes = []
    s = res.setups.get((b.deployment.tp, b.deployment.pp, b.deployment.ep)) if not b.disaggregated else \
        res.setups.get((b.deployment.decode.tp, b.deployment.decode.pp, b.deployment.decode.ep))
    if s is not None:
        notes += s.assumptions
    notes += [f"skipped {x}" for x in res.skipped]
    if notes:
        body.append("<h2>Assumptions</h2><ul class=\"assumed\">" + "".join(f"<li>{esc(x)}</li>" for x in notes) +
                    "</ul>")
    return page(f"xlayer serving: {case.id}",
                f"{case.model.name} on {res.gpus} × {case.system.accelerator}, {res.prompt_len}/{res.output_len} "
                f"tokens per request, {' and '.join(tg) or 'no latency target'}", body)


# ---- sweep -----------------------------------------------------------------------------

# (column, label, tick format, caption words) of the Pareto charts; time is always the y axis
SWEEP_AXES = (
    ("accelerators", "accelerators", lambda v: f"{v:g}", "accelerator count"),
    ("memory_gib", "memory per accelerator (GiB)", lambda v: f"{v:g}", "memory per accelerator"),
    ("energy_j", "energy per iteration (J, TDP × count × time)", lambda v: si(v, "J"), "energy per iteration"),
    ("gpu_hours_per_mtok", "accelerator-hours per million tokens", lambda v: f"{v:g}", "cost"),
)
SWEEP_CHART = {"accelerators": "sweep-pareto-accelerators", "memory_gib": "sweep-pareto-memory",
               "energy_j": "sweep-pareto-energy", "gpu_hours_per_mtok": "sweep-pareto-cost"}


def load_sweep_output(folder: str | Path) -> tuple[Any, dict[str, Any]]:
    """(results DataFrame, sweep.json metadata) of a folder written by ``xlayer sweep``."""
    import json

    from xlayer.explore.sweep import read_results
    p = Path(folder)
    meta: dict[str, Any] = {}
    if (p / "sweep.json").is_file():
        meta = json.loads((p / "sweep.json").read_text())
    return read_results(p), meta


def is_sweep_output(path: str | Path) -> bool:
    p = Path(path)
    return p.is_dir() and ((p / "sweep.json").is_file() or any(p.glob("part-*.parquet")))


def _finite(v: Any) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _sweep_layout(r: dict[str, Any]) -> str:
    if not _finite(r.get("tp")):
        return "-"
    vp = int(r["vp"])
    return (f"tp{int(r['tp'])} pp{int(r['pp'])}" + (f"x{vp}" if vp > 1 else "") + f" dp{int(r['dp'])}" +
            (f" cp{int(r['cp'])}" if int(r["cp"]) > 1 else "") + (" sp" if bool(r["sp"]) else "") +
            f" rc={r['recompute']} z{int(r['zero'])} mb{int(r['micro'])}")


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return "-" if math.isnan(v) else f"{v:.4g}"
    return "-" if v is None else str(v)


def _sweep_axes(df) -> list[tuple[str, str, Any, str]]:
    """The Pareto x axes this result set can draw: the column exists and has positive values."""
    import numpy as np
    axes = []
    for col, label, fmt, words in SWEEP_AXES:
        if col in df.columns:
            v = np.asarray(df[col], dtype=float)
            if np.any(np.isfinite(v) & (v > 0)):
                axes.append((col, label, fmt, words))
    return axes


def _sweep_front(ok, x: str) -> list[int]:
    """Row positions of ``ok`` on the (x, iteration time) front, sorted by x."""
    from xlayer.engine.choose import pareto_front
    return [int(i) for i in pareto_front(ok[x].to_numpy(dtype=float), ok["iteration_time_s"].to_numpy(dtype=float))]


def _point_tip(r: dict[str, Any], params: Sequence[str], x: str) -> str:
    vals = ", ".join(f"{p}={_cell(r[p])}" for p in params if p in r)
    return (f"point {int(r['point_id'])} ({vals}): {_sweep_layout(r)}; {x} {_cell(r[x])}, "
            f"{fmt_time(float(r['iteration_time_s']))}")


def sweep_pareto_chart(df, params: Sequence[str], axis: tuple[str, str, Any, str]) -> tuple[str, list[int]]:
    """Log-log scatter of iteration time against ``axis`` for every point with a layout, the
    points whose best layout fits memory and the staircase of their Pareto front; returns the
    SVG and the front's positions in the fitting rows."""
    x, label, fmt, words = axis
    ok_mask = (df["status"] == "ok") & df["fits"].astype(bool) if "fits" in df.columns else df["status"] == "ok"
    ok = df[ok_mask].reset_index(drop=True)
    nofit = df[(df["status"] == "no_fit")].reset_index(drop=True)
    front = _sweep_front(ok, x) if len(ok) else []
    on_front = set(front)
    pts = []
    step = max(1, len(ok) // 3000)  # at most ~3000 points on the page
    for i in range(0, len(ok), step):
        if i not in on_front:
            r = ok.iloc[i].to_dict()
            pts.append(Point(float(r[x]), float(r["iteration_time_s"]), "point", _point_tip(r, params, x)))
    for i in range(0, len(nofit), max(1, len(nofit) // 1000)):
        r = nofit.iloc[i].to_dict()
        if _finite(r[x]) and _finite(r["iteration_time_s"]):
            pts.append(Point(float(r[x]), float(r["iteration_time_s"]), "does not fit memory",
                             _point_tip(r, params, x) + " (does not fit)"))
    fx = [float(ok.iloc[i][x]) for i in front]
    fy = [float(ok.iloc[i]["iteration_time_s"]) for i in front]
    for i in front:
        r = ok.iloc[i].to_dict()
        pts.append(Point(float(r[x]), float(r["iteration_time_s"]), "Pareto front", _point_tip(r, params, x)))
    stairs: list[tuple[float, float]] = []
    for k in range(len(front)):
        if k:
            stairs.append((fx[k], fy[k - 1]))
        stairs.append((fx[k], fy[k]))
    xs = [p.x for p in pts] or [1.0]
    ys = [p.y for p in pts] or [1.0]
    svg = log_scatter(SWEEP_CHART[x], f"Iteration time vs {words}", pts, label, "iteration time (s)",
                      series=[Series("front", "#D55E00", points=stairs)] if stairs else (),
                      x_range=log_range(xs, pad=0.08), y_range=log_range(ys, pad=0.08),
                      colors={"point": "#6b8fbf", "does not fit memory": "#c9ced6", "Pareto front": "#D55E00"},
                      width=900, height=500, x_fmt=fmt, y_fmt=lambda v: fmt_time(v))
    return svg, front


def sweep_report(results: Any, meta: dict[str, Any] | None = None, source: str = "") -> str:
    """The HTML page for a sweep's results (``xlayer.explore.sweep.read_results``, or the folder
    itself): Pareto plots of iteration time against accelerator count, memory per accelerator,
    energy and cost (each when the results have the column), the front and every point."""
    if isinstance(results, (str, Path)):
        source = source or str(results)
        results, meta = load_sweep_output(results)
    df = results
    meta = meta or {}
    name = str(meta.get("name") or "sweep")
    n_def = int(meta.get("points") or len(df))
    params = [p for p in (meta.get("parameters") or []) if p in df.columns]
    if not params:
        from xlayer.explore.sweep import RESULT_COLUMNS
        params = [c for c in df.columns if c not in RESULT_COLUMNS]
    if not len(df):
        body = [cards([("points defined", f"{n_def:,}"), ("points finished", "0")]),
                "<p>No finished points yet (no part-*.parquet file).</p>"]
        return page(f"xlayer sweep: {name}", source or name, body)
    status = df["status"].value_counts().to_dict() if "status" in df.columns else {}
    ok = df[(df["status"] == "ok") & df["fits"].astype(bool)].reset_index(drop=True)
    best = ok.loc[ok["iteration_time_s"].idxmin()].to_dict() if len(ok) else None
    body = [cards([("points defined", f"{n_def:,}"), ("points finished", f"{len(df):,}"),
                   ("fit memory (ok)", f"{int(status.get('ok', 0)):,}"),
                   ("no fitting layout", f"{int(status.get('no_fit', 0)):,}"),
                   ("no valid layout", f"{int(status.get('no_valid', 0)):,}"),
                   ("fastest iteration", fmt_time(float(best["iteration_time_s"])) if best else "-"),
                   ("evaluation time", f"{float(df['eval_s'].sum()):.1f} s" if "eval_s" in df.columns else "-")])]
    axes = _sweep_axes(df)
    fronts: dict[str, set[int]] = {}
    primary = None
    if len(ok) and axes:
        body.append("<h2>Pareto fronts</h2>")
        for axis in axes:
            svg, front = sweep_pareto_chart(df, params, axis)
            fronts[axis[0]] = {int(ok.iloc[i]["point_id"]) for i in front}
            body.append(figure(svg, f"chart-{SWEEP_CHART[axis[0]]}",
                               f"Every point's best layout: iteration time against {axis[3]}, both minimised. "
                               f"{len(front)} of {len(ok)} fitting points are on the front (no other point is "
                               "better on both axes); grey points have no layout that fits memory (their "
                               "least-memory layout is shown)."))
        primary = "accelerators" if df["accelerators"].nunique() > 1 else "memory_gib"
        if primary not in fronts:
            primary = next(iter(fronts))
    lead = ["point_id"] + params
    extra = [c for c in ("accelerators",) if c not in params]

    def row_cells(r: dict[str, Any]) -> list[str]:
        return ([_cell(r[c]) for c in lead] + [str(r.get("status", "-")), _sweep_layout(r)] +
                [_cell(r[c]) for c in extra] +
                [fmt_time(float(r["iteration_time_s"])) if _finite(r["iteration_time_s"]) else "-",
                 f"{_cell(r['memory_gib'])} / {_cell(r['capacity_gib'])}",
                 f"{100 * float(r['mfu']):.1f}" if _finite(r.get("mfu")) else "-",
                 si(float(r["energy_j"]), "J") if _finite(r.get("energy_j")) else "-",
                 _cell(r.get("gpu_hours_per_mtok"))])

    heads = lead + ["status", "best layout"] + extra + ["iteration", "memory / capacity GiB", "MFU %",
                                                         "energy", "GPU-h/Mtok"]
    num = ([True] + [str(df[p].dtype) not in ("object", "string", "bool") for p in params] + [False, False] +
           [True] * len(extra) + [True] * 5)
    if primary is not None:
        by = df.set_index("point_id", drop=False)
        pid = sorted(fronts[primary], key=lambda p: float(by.loc[p, primary]))
        body.append(f"<h2>Pareto front: iteration time vs {esc(dict((a[0], a[3]) for a in axes)[primary])}</h2>")
        body.append(table(heads, [row_cells(by.loc[p].to_dict()) for p in pid], num, table_id="front"))
    limit = 2000
    body.append("<h2>Every point</h2>")
    if len(df) > limit:
        body.append(f"<p class=\"muted\">The first {limit:,} of {len(df):,} points (by point id).</p>")
    rows, css = [], []
    short = {"accelerators": "count", "memory_gib": "memory", "energy_j": "energy", "gpu_hours_per_mtok": "cost"}
    for r in df.head(limit).to_dict(orient="records"):
        on = [short[a] for a in fronts if int(r["point_id"]) in fronts[a]]
        rows.append(row_cells(r) + [", ".join(on) or "-"])
        css.append("good" if on else ("" if r.get("status") == "ok" else "muted"))
    body.append(table(heads + ["on front"], rows, num + [False], css=css, table_id="points"))
    sub = (f"{len(df):,} of {n_def:,} points finished; parameters: {', '.join(params) or '-'}"
           + (f" · {source}" if source else ""))
    return page(f"xlayer sweep: {name}", sub, body)
