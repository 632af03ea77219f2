"""Deployments and the SLO search: which layout gives the most tokens/s per GPU within a
time-to-first-token and a time-per-output-token target.

A deployment is a :class:`~xlayer.serving.steptime.Deployment` shape (tp, pp; for MoE, ep
attention-data-parallel ranks holding E/ep experts each) replicated over the GPUs, and a cap
on its concurrency (the engine's max batch size). For each shape the closed form
(:func:`xlayer.serving.steady.steady_state`) is evaluated at every concurrency from 1 to the
most the KV pool and the engine hold (numpy, one call per shape); each (shape, cap) pair is
one deployment. A deployment meets the targets when its steady-state TTFT ≤ ``ttft`` and
TPOT ≤ ``tpot``; the best of a shape is its feasible cap with the most output tokens/s per
GPU; the binding limit says what stops it going higher: the latency target (a larger cap
would break it), the KV memory, or the engine's batch limit — and what its iteration is
bound by (host, compute, HBM bandwidth, network).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from xlayer.errors import InputError
from xlayer.predict.case import Case
from xlayer.serving.predict import serving_setup
from xlayer.serving.steady import kv_concurrency, steady_state
from xlayer.serving.steptime import Deployment


def _pow2_divisors(n: int, limit: int) -> list[int]:
    out, d = [], 1
    while d <= limit:
        if n % d == 0:
            out.append(d)
        d *= 2
    return out


def deployment_shapes(case: Case, gpus: int) -> list[Deployment]:
    """Every replica shape that fits ``gpus`` GPUs: tp (power of two dividing heads and KV
    heads) × pp (power of two ≤ layers), and for MoE models ep attention-DP ranks (power of
    two dividing the experts) × pp; replicas = gpus / GPUs per replica (whole replicas)."""
    m = case.model
    out = []
    for pp in _pow2_divisors(1 << 20, min(gpus, m.layers)):
        for tp in _pow2_divisors(m.kv_heads, gpus // pp):
            if m.heads % tp:
                continue
            per = tp * pp
            if gpus % per == 0:
                out.append(Deployment(tp, pp, 1, gpus // per))
        if m.is_moe:
            for ep in _pow2_divisors(m.experts, gpus // pp):
                if ep > 1 and gpus % (ep * pp) == 0:
                    out.append(Deployment(1, pp, ep, gpus // (ep * pp)))
    return out


@dataclass
class Candidate:
    deployment: Deployment
    cap: int
    tokens_per_s_per_gpu: float
    tokens_per_s_per_user: float
    ttft_s: float
    tpot_s: float
    limit: str
    bound: str
    feasible: bool

    def to_dict(self) -> dict[str, Any]:
        return {"deployment": self.deployment.label, "tp": self.deployment.tp, "pp": self.deployment.pp,
                "ep": self.deployment.ep, "replicas": self.deployment.replicas, "max_batch": self.cap,
                "output_tokens_per_s_per_gpu": self.tokens_per_s_per_gpu,
                "tokens_per_s_per_user": self.tokens_per_s_per_user, "ttft_s": self.ttft_s, "tpot_s": self.tpot_s,
                "limit": self.limit, "bound": self.bound, "meets_targets": self.feasible}


@dataclass
class SearchResult:
    case_id: str
    gpus: int
    prompt_len: int
    output_len: int
    ttft_target_s: Optional[float]
    tpot_target_s: Optional[float]
    ranked: list[Candidate]          # best feasible cap of each shape, best first
    evaluated: int                   # deployments (shape × cap) evaluated
    curves: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.case_id, "gpus": self.gpus, "prompt_len": self.prompt_len, "output_len": self.output_len,
                "ttft_target_s": self.ttft_target_s, "tpot_target_s": self.tpot_target_s,
                "deployments_evaluated": self.evaluated, "ranked": [c.to_dict() for c in self.ranked],
                "curves": self.curves, "skipped": self.skipped}


def _bound(setup, B: float) -> str:
    """What one iteration at concurrency B is bound by: the host (its floor is the larger
    term), else the roofline bound holding the largest share of the GPU time."""
    t, I, O = setup.timer, setup.prompt_len, setup.output_len
    b = B * (O - 1) / O
    gpu = t.gpu_step_s(b, I + O / 2.0, [(B / O, float(I), 0.0)])
    if t.host_s(B) >= gpu:
        return "host"
    d = setup.deployment
    if d.ep > 1:
        return "gpu"
    from xlayer.predict.inference import InferenceSetup, forward_pass
    from xlayer.workload.inference_ops import AttentionSegment
    s = InferenceSetup(setup.case.model, t.system, d.tp, d.pp, 1, setup.case.precision, setup.kv_precision,
                       t.attention, int(B), I, 0, O, I + O / 2.0, ())
    p = forward_pass(s, [AttentionSegment(b / d.pp, 1, I + O / 2.0), AttentionSegment(B / O / d.pp, I, 0)], "step")
    name = p.bound
    return {"hbm": "bandwidth", "l2": "bandwidth", "interconnect": "network"}.get(name, name)


def slo_search(case: Case, ttft_s: Optional[float] = None, tpot_s: Optional[float] = None,
               gpus: Optional[int] = None, prompt_len: Optional[int] = None, output_len: Optional[int] = None,
               points: int = 64) -> SearchResult:
    """Rank deployments of ``gpus`` GPUs (default: system.count) by output tokens/s per GPU
    within the targets (module docstring). Raises :class:`InputError` naming the closest
    deployment when none meets them."""
    count = case.system.count
    g = count if gpus is None else gpus
    if isinstance(g, bool) or not isinstance(g, int) or g < 1:
        raise InputError("--gpus", g, "give a whole number of GPUs >= 1")
    if g > count:
        raise InputError("--gpus", g, f"the system has {count} accelerators (system.count)")
    for name, v in (("--ttft", ttft_s), ("--tpot", tpot_s)):
        if v is not None and (isinstance(v, bool) or not np.isfinite(v) or v <= 0):
            raise InputError(name, v, "a latency target is a finite number of seconds > 0")
    shapes = deployment_shapes(case, g)
    ranked, skipped, curves, evaluated = [], [], {}, 0
    closest: tuple[float, Candidate] | None = None
    I = O = None
    for dep in shapes:
        try:
            s = serving_setup(case, deployment=dep, prompt_len=prompt_len, output_len=output_len)
        except InputError as exc:
            skipped.append(f"{dep.label}: {exc.valid}")
            continue
        I, O = s.prompt_len, s.output_len
        kv_b = kv_concurrency(s.pool, s.engine, I, O)
        bmax = max(1, min(s.engine.max_batch_size, kv_b))
        caps = np.unique(np.round(np.geomspace(1, bmax, points)).astype(int))
        st = steady_state(s.timer, s.engine, I, O, caps.astype(float))
        gpr = dep.tp * dep.pp
        tps = np.asarray(st.tokens_per_s) / gpr
        ttft, tpot = np.asarray(st.ttft_s), np.asarray(st.tpot_s)
        evaluated += caps.size
        curves[dep.label] = [{"max_batch": int(c), "output_tokens_per_s_per_gpu": float(x),
                              "tokens_per_s_per_user": float(1 / p), "ttft_s": float(f), "tpot_s": float(p)}
                             for c, x, f, p in zip(caps, tps, ttft, tpot)]
        ok = np.ones(caps.size, bool)
        if ttft_s is not None:
            ok &= ttft <= ttft_s
        if tpot_s is not None:
            ok &= tpot <= tpot_s
        viol = np.maximum(ttft / (ttft_s or np.inf), tpot / (tpot_s or np.inf))
        if not ok.any():
            i = int(np.argmin(viol))
            c = Candidate(dep, int(caps[i]), float(tps[i]), float(1 / tpot[i]), float(ttft[i]), float(tpot[i]),
                          "latency target", "-", False)
            if closest is None or viol[i] < closest[0]:
                closest = (float(viol[i]), c)
            continue
        i = int(np.argmax(np.where(ok, tps, -np.inf)))
        cap = int(caps[i])
        if cap < bmax and not ok[min(i + 1, caps.size - 1)]:
            limit = "latency target (" + ("TTFT" if ttft_s is not None and ttft[min(i + 1, caps.size - 1)] > ttft_s
                                          else "TPOT") + ")"
        elif cap >= bmax:
            limit = "KV memory" if kv_b <= s.engine.max_batch_size else "batch limit"
        else:
            limit = "throughput peaks below the limits"
        ranked.append(Candidate(dep, cap, float(tps[i]), float(1 / tpot[i]), float(ttft[i]), float(tpot[i]),
                                limit, _bound(s, cap), True))
    if not ranked:
        if closest is None:
            raise InputError("system", f"{g} x {case.system.accelerator}",
                             "no deployment fits: " + "; ".join(skipped[:3]))
        v, c = closest
        miss = []
        if ttft_s is not None and c.ttft_s > ttft_s:
            miss.append(f"TTFT {c.ttft_s * 1e3:.1f} ms vs {ttft_s * 1e3:g} ms (+{100 * (c.ttft_s / ttft_s - 1):.0f} %)")
        if tpot_s is not None and c.tpot_s > tpot_s:
            miss.append(f"TPOT {c.tpot_s * 1e3:.2f} ms vs {tpot_s * 1e3:g} ms (+{100 * (c.tpot_s / tpot_s - 1):.0f} %)")
        field_ = "--tpot" if tpot_s is not None and c.tpot_s > tpot_s else "--ttft"
        raise InputError(field_, tpot_s if field_ == "--tpot" else ttft_s,
                         f"no deployment of {g} GPUs meets the targets; closest: {c.deployment.label} at max batch "
                         f"{c.cap}: " + ", ".join(miss))
    ranked.sort(key=lambda c: -c.tokens_per_s_per_gpu)
    return SearchResult(case.id, g, int(I), int(O), ttft_s, tpot_s, ranked, evaluated, curves, skipped)


def plot_curves(res: SearchResult, path, top: int = 6) -> None:
    """Throughput vs interactivity (output tokens/s per GPU against tokens/s per user = 1/TPOT)
    of the best ``top`` shapes, best feasible point of each marked; PNG or SVG by suffix."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 5.5))
    labels = [c.deployment.label for c in res.ranked[:top]] or list(res.curves)[:top]
    for lab in labels:
        pts = res.curves[lab]
        ax.plot([p["tokens_per_s_per_user"] for p in pts], [p["output_tokens_per_s_per_gpu"] for p in pts],
                marker=".", label=lab)
    for c in res.ranked[:top]:
        ax.plot([c.tokens_per_s_per_user], [c.tokens_per_s_per_gpu], "k*", ms=11)
    if res.tpot_target_s:
        ax.axvline(1 / res.tpot_target_s, color="r", ls="--", lw=1, label=f"TPOT {res.tpot_target_s * 1e3:g} ms")
    ax.set_xscale("log")
    ax.set_xlabel("tokens/s per user (1 / TPOT)")
    ax.set_ylabel("output tokens/s per GPU")
    ax.set_title(f"{res.case_id}: {res.gpus} GPUs, {res.prompt_len}/{res.output_len} tokens")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(str(path))
    plt.close(fig)
