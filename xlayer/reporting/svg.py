"""A few charts as inline SVG strings, written by hand: no plotting library, no script,
no network. Every chart is an ``<svg class="chart-svg" data-chart=NAME>`` element whose
children are plain shapes and text, so a browser (or a test) can check it is non-empty.

Charts: horizontal stacked bars (``stacked_bars``), a log-log scatter with lines and
bands (``log_scatter``), and a Gantt chart (``gantt``).
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

from xlayer.units import format_seconds

# Okabe-Ito + Tableau-like colours, readable on white and for most colour-blind readers
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442",
           "#6A3D9A", "#8C564B", "#7F7F7F", "#17BECF", "#BCBD22", "#1F3B73", "#FF9DA7")
BAND = "#2a9d8f"
FONT = "font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif"


def esc(s: object) -> str:
    return html.escape(str(s), quote=True)


def _n(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".") if math.isfinite(x) else "0"


def color_for(names: Iterable[str]) -> dict[str, str]:
    """One palette colour per distinct name, in order of first appearance."""
    out: dict[str, str] = {}
    for n in names:
        if n not in out:
            out[n] = PALETTE[len(out) % len(PALETTE)]
    return out


@dataclass
class Canvas:
    """An SVG under construction: shapes are appended as strings."""

    name: str
    width: float
    height: float
    title: str = ""
    parts: list[str] = field(default_factory=list)

    def rect(self, x, y, w, h, fill, tip: str | None = None, stroke: str | None = None, opacity: float = 1.0):
        s = f' stroke="{stroke}" stroke-width="0.5"' if stroke else ""
        o = f' fill-opacity="{_n(opacity)}"' if opacity < 1 else ""
        t = f"<title>{esc(tip)}</title>" if tip else ""
        self.parts.append(f'<rect x="{_n(x)}" y="{_n(y)}" width="{_n(max(w, 0.0))}" height="{_n(max(h, 0.0))}" '
                          f'fill="{fill}"{s}{o}>{t}</rect>' if t else
                          f'<rect x="{_n(x)}" y="{_n(y)}" width="{_n(max(w, 0.0))}" height="{_n(max(h, 0.0))}" '
                          f'fill="{fill}"{s}{o}/>')

    def line(self, x1, y1, x2, y2, stroke="#333", width=1.0, dash: str | None = None):
        d = f' stroke-dasharray="{dash}"' if dash else ""
        self.parts.append(f'<line x1="{_n(x1)}" y1="{_n(y1)}" x2="{_n(x2)}" y2="{_n(y2)}" stroke="{stroke}" '
                          f'stroke-width="{_n(width)}"{d}/>')

    def polyline(self, pts: Sequence[tuple[float, float]], stroke="#333", width=1.5, dash: str | None = None):
        d = f' stroke-dasharray="{dash}"' if dash else ""
        p = " ".join(f"{_n(x)},{_n(y)}" for x, y in pts)
        self.parts.append(f'<polyline points="{p}" fill="none" stroke="{stroke}" stroke-width="{_n(width)}"{d}/>')

    def polygon(self, pts: Sequence[tuple[float, float]], fill, opacity=0.2):
        p = " ".join(f"{_n(x)},{_n(y)}" for x, y in pts)
        self.parts.append(f'<polygon points="{p}" fill="{fill}" fill-opacity="{_n(opacity)}" stroke="none"/>')

    def circle(self, x, y, r, fill, tip: str | None = None, shape: str = "circle"):
        t = f"<title>{esc(tip)}</title>" if tip else ""
        if shape == "square":
            self.parts.append(f'<rect x="{_n(x - r)}" y="{_n(y - r)}" width="{_n(2 * r)}" height="{_n(2 * r)}" '
                              f'fill="{fill}" stroke="#fff" stroke-width="0.6">{t}</rect>')
        elif shape == "diamond":
            pts = f"{_n(x)},{_n(y - r * 1.3)} {_n(x + r * 1.3)},{_n(y)} {_n(x)},{_n(y + r * 1.3)} {_n(x - r * 1.3)},{_n(y)}"
            self.parts.append(f'<polygon points="{pts}" fill="{fill}" stroke="#fff" stroke-width="0.6">{t}</polygon>')
        else:
            self.parts.append(f'<circle cx="{_n(x)}" cy="{_n(y)}" r="{_n(r)}" fill="{fill}" stroke="#fff" '
                              f'stroke-width="0.6">{t}</circle>')

    def text(self, x, y, s, size=11, anchor="start", color="#222", weight: str = "normal",
             rotate: float | None = None):
        r = f' transform="rotate({_n(rotate)} {_n(x)} {_n(y)})"' if rotate is not None else ""
        w = f' font-weight="{weight}"' if weight != "normal" else ""
        self.parts.append(f'<text x="{_n(x)}" y="{_n(y)}" font-size="{_n(size)}" text-anchor="{anchor}" '
                          f'fill="{color}"{w}{r}>{esc(s)}</text>')

    def legend(self, x, y, items: Sequence[tuple[str, str]], max_width: float, size=11):
        """Colour swatches with labels, wrapped into rows; returns the height used."""
        cx, cy = x, y
        for label, col in items:
            w = 18 + 6.2 * len(label) + 14
            if cx + w > x + max_width and cx > x:
                cx, cy = x, cy + 18
            self.rect(cx, cy - 9, 11, 11, col)
            self.text(cx + 15, cy, label, size=size)
            cx += w
        return cy - y + 18

    def render(self) -> str:
        return (f'<svg class="chart-svg" data-chart="{esc(self.name)}" viewBox="0 0 {_n(self.width)} '
                f'{_n(self.height)}" width="{_n(self.width)}" height="{_n(self.height)}" role="img" '
                f'aria-label="{esc(self.title or self.name)}" style="{FONT}">' + "".join(self.parts) + "</svg>")


# ---- scales --------------------------------------------------------------------------

def nice_step(span: float, target: int = 6) -> float:
    """A 1-2-5 step giving about ``target`` ticks over ``span``."""
    if span <= 0:
        return 1.0
    raw = span / target
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def log_ticks(lo: float, hi: float) -> list[float]:
    """Decades between ``lo`` and ``hi``; 1-2-5 steps when fewer than three decades show."""
    a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    ticks = []
    mult = (1, 2, 5) if b - a < 3 else (1,)
    for e in range(a, b + 1):
        for m in mult:
            v = m * 10.0 ** e
            if lo * (1 - 1e-9) <= v <= hi * (1 + 1e-9):
                ticks.append(v)
    return ticks


def log_range(values: Iterable[float], pad: float = 0.15) -> tuple[float, float]:
    vs = [v for v in values if v and v > 0 and math.isfinite(v)]
    if not vs:
        return 1.0, 10.0
    lo, hi = min(vs), max(vs)
    llo, lhi = math.log10(lo), math.log10(hi)
    span = max(lhi - llo, 0.5)
    return 10 ** (llo - pad * span), 10 ** (lhi + pad * span)


def si(v: float, unit: str = "", digits: int = 3) -> str:
    """1.23e12 → '1.23 T' + unit."""
    if v == 0 or not math.isfinite(v):
        return f"0 {unit}".strip()
    for p, s in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1, ""), (1e-3, "m"),
                 (1e-6, "µ"), (1e-9, "n")):
        if abs(v) >= p:
            return f"{v / p:.{digits}g} {s}{unit}".strip()
    return f"{v:.{digits}g} {unit}".strip()


def fmt_time(t: float) -> str:
    """Seconds for charts: ``xlayer.units.format_seconds`` with a plain 0 and a µ sign."""
    if t == 0:
        return "0"
    return format_seconds(t).replace(" us", " µs")


# ---- charts --------------------------------------------------------------------------

def stacked_bars(name: str, title: str, bars: Sequence[tuple[str, Sequence[tuple[str, float]]]],
                 fmt: Callable[[float], str], unit_label: str, width: float = 900,
                 marker: tuple[str, float] | None = None, colors: dict[str, str] | None = None) -> str:
    """Horizontal stacked bars: each bar is a label and (segment name, value) pairs.
    ``marker`` draws a vertical reference line (e.g. the memory capacity)."""
    seg_names = [s for _, segs in bars for s, _ in segs]
    colors = colors or color_for(seg_names)
    left, right, top = 150, 30, 34
    bar_h, gap = 30, 14
    plot_w = width - left - right
    total_max = max([sum(max(v, 0.0) for _, v in segs) for _, segs in bars] + [marker[1] if marker else 0.0, 1e-30])
    step = nice_step(total_max)
    x_max = math.ceil(total_max / step) * step
    legend_items = [(n, colors[n]) for n in dict.fromkeys(seg_names) if any(
        n == s and v > 0 for _, segs in bars for s, v in segs)]
    # legend height estimate (rows of ~width) before sizing the canvas
    probe = Canvas("probe", width, 100)
    leg_h = probe.legend(left, 0, legend_items, plot_w)
    plot_h = len(bars) * (bar_h + gap)
    height = top + plot_h + 40 + leg_h + 10
    c = Canvas(name, width, height, title)
    c.text(10, 20, title, size=14, weight="bold")

    def X(v: float) -> float:
        return left + plot_w * v / x_max

    t = 0.0
    while t <= x_max * (1 + 1e-9):
        c.line(X(t), top - 4, X(t), top + plot_h, stroke="#ddd")
        c.text(X(t), top + plot_h + 14, fmt(t), size=10, anchor="middle", color="#555")
        t += step
    c.text(left + plot_w / 2, top + plot_h + 30, unit_label, size=11, anchor="middle", color="#555")
    for i, (label, segs) in enumerate(bars):
        y = top + i * (bar_h + gap)
        c.text(left - 8, y + bar_h / 2 + 4, label, size=11, anchor="end")
        x0 = 0.0
        total = sum(max(v, 0.0) for _, v in segs)
        for s, v in segs:
            if v <= 0:
                continue
            share = 100 * v / total if total else 0
            c.rect(X(x0), y, X(x0 + v) - X(x0), bar_h, colors[s], tip=f"{label} · {s}: {fmt(v)} ({share:.1f} %)",
                   stroke="#fff")
            if X(x0 + v) - X(x0) > 44:
                c.text((X(x0) + X(x0 + v)) / 2, y + bar_h / 2 + 4, f"{share:.0f}%", size=10, anchor="middle",
                       color="#fff")
            x0 += v
        if X(x0) < left + plot_w - 50:
            c.text(X(x0) + 4, y + bar_h / 2 + 4, fmt(total), size=10, color="#333")
    if marker:
        mx = X(marker[1])
        c.line(mx, top - 8, mx, top + plot_h, stroke="#c00", width=2, dash="5,3")
        c.text(mx, top - 11, f"{marker[0]} {fmt(marker[1])}", size=10, anchor="end", color="#c00")
    c.legend(left, top + plot_h + 52, legend_items, plot_w)
    return c.render()


@dataclass
class Point:
    x: float
    y: float
    group: str
    tip: str = ""


@dataclass
class Series:
    """A line y = f(x) drawn over the x-range, or through given points."""

    label: str
    color: str
    fn: Callable[[float], float] | None = None
    points: Sequence[tuple[float, float]] = ()
    dash: str | None = None


def log_scatter(name: str, title: str, points: Sequence[Point], x_label: str, y_label: str,
                series: Sequence[Series] = (), band: tuple[float, float] | None = None,
                x_range: tuple[float, float] | None = None, y_range: tuple[float, float] | None = None,
                width: float = 760, height: float = 520, x_fmt: Callable[[float], str] = lambda v: si(v),
                y_fmt: Callable[[float], str] = lambda v: si(v), colors: dict[str, str] | None = None,
                shapes: dict[str, str] | None = None, band_label: str = "band") -> str:
    """Log-log scatter. ``band=(lo, hi)`` shades lo·x ≤ y ≤ hi·x (e.g. ±10 % around y = x)."""
    groups = list(dict.fromkeys(p.group for p in points))
    colors = colors or color_for(groups)
    left, right, top = 78, 24, 34
    legend_items = [(g, colors[g]) for g in groups] + [(s.label, s.color) for s in series]
    if band:
        legend_items.append((band_label, BAND))
    probe = Canvas("probe", width, 100)
    leg_h = probe.legend(left, 0, legend_items, width - left - right)
    plot_w, plot_h = width - left - right, height - top - 56 - leg_h
    xr = x_range or log_range([p.x for p in points])
    yr = y_range or log_range([p.y for p in points])
    lx0, lx1 = math.log10(xr[0]), math.log10(xr[1])
    ly0, ly1 = math.log10(yr[0]), math.log10(yr[1])

    def X(v: float) -> float:
        return left + plot_w * (math.log10(v) - lx0) / (lx1 - lx0)

    def Y(v: float) -> float:
        return top + plot_h * (1 - (math.log10(v) - ly0) / (ly1 - ly0))

    c = Canvas(name, width, height, title)
    c.text(10, 20, title, size=14, weight="bold")
    c.rect(left, top, plot_w, plot_h, "#fafafa", stroke="#ccc")
    for t in log_ticks(*xr):
        c.line(X(t), top, X(t), top + plot_h, stroke="#e4e4e4")
        c.text(X(t), top + plot_h + 14, x_fmt(t), size=10, anchor="middle", color="#555")
    for t in log_ticks(*yr):
        c.line(left, Y(t), left + plot_w, Y(t), stroke="#e4e4e4")
        c.text(left - 6, Y(t) + 3, y_fmt(t), size=10, anchor="end", color="#555")
    c.text(left + plot_w / 2, top + plot_h + 32, x_label, size=11, anchor="middle", color="#333")
    c.text(16, top + plot_h / 2, y_label, size=11, anchor="middle", color="#333", rotate=-90)
    xs = [10 ** (lx0 + (lx1 - lx0) * i / 200) for i in range(201)]

    def clip(pts):
        out = []
        for x, y in pts:
            if y > 0 and math.isfinite(y):
                yy = min(max(math.log10(y), ly0), ly1)
                out.append((X(x), top + plot_h * (1 - (yy - ly0) / (ly1 - ly0))))
        return out

    if band:
        lo, hi = band
        upper = clip([(x, hi * x) for x in xs])
        lower = clip([(x, lo * x) for x in xs])
        c.polygon(upper + lower[::-1], BAND, opacity=0.18)
    for s in series:
        pts = clip([(x, s.fn(x)) for x in xs]) if s.fn else clip(list(s.points))
        c.polyline(pts, stroke=s.color, width=1.6, dash=s.dash)
    shapes = shapes or {}
    for p in points:
        if p.x > 0 and p.y > 0:
            c.circle(X(p.x), Y(p.y), 4.5, colors[p.group], tip=p.tip, shape=shapes.get(p.group, "circle"))
    c.legend(left, top + plot_h + 52, legend_items, plot_w)
    return c.render()


@dataclass
class Task:
    row: int
    start: float
    end: float
    color: str
    label: str = ""
    tip: str = ""


def gantt(name: str, title: str, tasks: Sequence[Task], row_labels: Sequence[str],
          legend: Sequence[tuple[str, str]], x_fmt: Callable[[float], str] = fmt_time,
          width: float = 1100, tips: bool = True) -> str:
    """Rows of coloured blocks on a time axis (a pipeline schedule)."""
    left, right, top, row_h = 70, 20, 34, 24
    plot_w = width - left - right
    plot_h = len(row_labels) * row_h
    probe = Canvas("probe", width, 100)
    leg_h = probe.legend(left, 0, legend, plot_w)
    height = top + plot_h + 40 + leg_h + 10
    t_end = max([t.end for t in tasks] + [1e-30])
    step = nice_step(t_end, 10)
    x_max = math.ceil(t_end / step) * step

    def X(v: float) -> float:
        return left + plot_w * v / x_max

    c = Canvas(name, width, height, title)
    c.text(10, 20, title, size=14, weight="bold")
    t = 0.0
    while t <= x_max * (1 + 1e-9):
        c.line(X(t), top, X(t), top + plot_h, stroke="#e4e4e4")
        c.text(X(t), top + plot_h + 14, x_fmt(t), size=10, anchor="middle", color="#555")
        t += step
    for i, lab in enumerate(row_labels):
        c.text(left - 6, top + i * row_h + row_h / 2 + 4, lab, size=11, anchor="end")
    for task in tasks:
        y = top + task.row * row_h + 2
        w = X(task.end) - X(task.start)
        c.rect(X(task.start), y, w, row_h - 4, task.color, tip=task.tip if tips else None,
               stroke="#fff" if w > 3 else None)
        if task.label and w > 7 * len(task.label) + 4:
            c.text(X(task.start) + w / 2, y + row_h / 2 + 2, task.label, size=9, anchor="middle", color="#fff")
    c.text(left + plot_w / 2, top + plot_h + 30, "time", size=11, anchor="middle", color="#555")
    c.legend(left, top + plot_h + 52, legend, plot_w)
    return c.render()
