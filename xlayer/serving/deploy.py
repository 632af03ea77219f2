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

import math
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from xlayer.errors import InputError
from xlayer.mapping.layout import tensor_parallel_ok
from xlayer.prediction.case import Case
from xlayer.serving.disagg import Disaggregated
from xlayer.serving.predict import check_lengths, serving_setup
from xlayer.serving.steady import kv_concurrency, steady_state
from xlayer.serving.steptime import Deployment


def _pow2_divisors(n: int, limit: int) -> list[int]:
    out, d = [], 1
    while d <= limit:
        if n % d == 0:
            out.append(d)
        d *= 2
    return out


def replica_shapes(case: Case, max_gpus: int) -> list[Deployment]:
    """Every replica shape of at most ``max_gpus`` GPUs (one replica each): tp (power of two
    dividing heads and KV heads) × pp (power of two ≤ layers), and for MoE models ep
    attention-DP ranks (power of two dividing the experts) × pp."""
    m = case.model
    out = []
    for pp in _pow2_divisors(1 << 20, min(max_gpus, m.layers)):
        for tp in _pow2_divisors(m.kv_heads, max_gpus // pp):
            if tensor_parallel_ok(m, tp):
                out.append(Deployment(tp, pp, 1, 1))
        if m.is_moe:
            for ep in _pow2_divisors(m.experts, max_gpus // pp):
                if ep > 1:
                    out.append(Deployment(1, pp, ep, 1))
    return out


def deployment_shapes(case: Case, gpus: int) -> list[Deployment]:
    """The aggregated deployments of ``gpus`` GPUs: every :func:`replica_shapes` shape whose
    size divides ``gpus``, replicas = gpus / GPUs per replica (whole replicas)."""
    return [Deployment(d.tp, d.pp, d.ep, gpus // d.gpus_per_replica) for d in replica_shapes(case, gpus)
            if gpus % d.gpus_per_replica == 0]


@dataclass
class Candidate:
    deployment: Any                  # Deployment (aggregated) or Disaggregated
    cap: int                         # max batch (the decode pool's when disaggregated)
    tokens_per_s_per_gpu: float
    tokens_per_s_per_user: float
    ttft_s: float
    tpot_s: float
    limit: str
    bound: str
    feasible: bool

    @property
    def disaggregated(self) -> bool:
        return isinstance(self.deployment, Disaggregated)

    def to_dict(self) -> dict[str, Any]:
        d = self.deployment
        agg = not self.disaggregated
        out = {"deployment": d.label, "mode": "aggregated" if agg else "disaggregated",
               "tp": d.tp if agg else None, "pp": d.pp if agg else None, "ep": d.ep if agg else None,
               "replicas": d.replicas if agg else None, "gpus": d.gpus, "max_batch": self.cap,
               "output_tokens_per_s_per_gpu": self.tokens_per_s_per_gpu,
               "tokens_per_s_per_user": self.tokens_per_s_per_user, "ttft_s": self.ttft_s, "tpot_s": self.tpot_s,
               "limit": self.limit, "bound": self.bound, "meets_targets": self.feasible}
        if not agg:
            out["disaggregated"] = d.to_dict()
        return out


@dataclass
class SearchResult:
    case_id: str
    gpus: int
    prompt_len: int
    output_len: int
    ttft_target_s: Optional[float]
    tpot_target_s: Optional[float]
    ranked: list[Candidate]          # best feasible cap of each shape (or pool pair), best first
    evaluated: int                   # deployments (shape × cap; pools × ratio × cap) evaluated
    curves: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    setups: dict[tuple[int, int, int], Any] = field(default_factory=dict, repr=False)

    @property
    def best(self) -> Candidate:
        return self.ranked[0]

    def curve_key(self, c: Candidate) -> str:
        return c.deployment.pair if c.disaggregated else c.deployment.label

    def step_breakdown(self, c: Optional[Candidate] = None) -> list[tuple[str, dict[str, float]]]:
        """The iterations of a ranked deployment (default: the best) split into their terms
        (:meth:`StepTimer.breakdown`), seconds: aggregated — the generation-only iteration,
        the iteration carrying prompts and their mean (= TPOT; the share f of iterations
        carrying prompts in brackets); disaggregated — the prefill
        iteration, the KV transfer of one request and the decode iteration."""
        c = c or self.best
        I, O = float(self.prompt_len), float(self.output_len)
        if c.disaggregated:
            d = c.deployment
            ps = self.setups[(d.prefill.tp, d.prefill.pp, d.prefill.ep)]
            ds = self.setups[(d.decode.tp, d.decode.pp, d.decode.ep)]
            pre = ps.timer.breakdown(0.0, 0.0, [(float(d.prefill_batch), min(I, float(ps.engine.max_num_tokens)),
                                                 0.0)])
            dec = _decode_breakdown(ds, float(c.cap), I + (O - 2.0) / 2.0)
            return [(f"prefill, {d.prefill_batch} prompts", pre),
                    ("KV transfer / request", {f"KV transfer ({d.network})": d.kv_transfer_s}),
                    (f"decode, batch {c.cap}", dec)]
        s = self.setups[(c.deployment.tp, c.deployment.pp, c.deployment.ep)]
        return aggregated_breakdown(s, float(c.cap))

    def to_dict(self) -> dict[str, Any]:
        bd = [{"iteration": k, "terms_s": v} for k, v in self.step_breakdown()] if self.ranked else []
        return {"id": self.case_id, "gpus": self.gpus, "prompt_len": self.prompt_len, "output_len": self.output_len,
                "ttft_target_s": self.ttft_target_s, "tpot_target_s": self.tpot_target_s,
                "deployments_evaluated": self.evaluated, "ranked": [c.to_dict() for c in self.ranked],
                "best_step_breakdown": bd, "curves": self.curves, "skipped": self.skipped}


def _decode_breakdown(setup, B: float, ctx: float) -> dict[str, float]:
    eng, t = setup.engine, setup.timer
    sizes = eng.graph_sizes() if eng.cuda_graph_padding else ()
    pad = t.graph_batch(int(math.ceil(B)), sizes) if sizes and B <= max(sizes) else None
    return t.breakdown(B, ctx, (), pad)


def aggregated_breakdown(setup, B: float) -> list[tuple[str, dict[str, float]]]:
    """The steady state's two iterations at concurrency B (:func:`steady_state`) and their
    mean t̄ = (1 − f)·t(generation only) + f·t(with prompts), term by term."""
    I, O, eng, t = float(setup.prompt_len), float(setup.output_len), setup.engine, setup.timer
    b = B * (O - 1.0) / O
    ctx = I + (O - 2.0) / 2.0 if O > 1 else I
    if eng.chunked_prefill:
        C = min(max(eng.max_num_tokens - b, 1.0), I)
        chunks = B * I / (O * C)
        f = min(1.0, chunks)
        mixed = t.breakdown(b, ctx, [(chunks / max(f, 1e-12), C, (I - C) / 2.0)])
    else:
        f = min(1.0, B / O)
        mixed = t.breakdown(b, ctx, [(B / (O * max(f, 1e-12)), I, 0.0)])
    dec = _decode_breakdown(setup, B, ctx)
    keys = list(dict.fromkeys(list(dec) + list(mixed)))
    mean = {k: (1.0 - f) * dec.get(k, 0.0) + f * mixed.get(k, 0.0) for k in keys}
    return [("generation only", dec), ("carrying prompts", mixed), (f"mean = TPOT ({100 * f:.0f} %)", mean)]


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
    from xlayer.prediction.inference import InferenceSetup, forward_pass
    from xlayer.workload.inference_ops import AttentionSegment
    s = InferenceSetup(setup.case.model, t.system, d.tp, d.pp, 1, setup.case.precision, setup.kv_precision,
                       t.attention, int(B), I, 0, O, I + O / 2.0, ())
    p = forward_pass(s, [AttentionSegment(b / d.pp, 1, I + O / 2.0), AttentionSegment(B / O / d.pp, I, 0)], "step")
    name = p.bound
    return {"hbm": "bandwidth", "l2": "bandwidth", "interconnect": "network"}.get(name, name)


def check_search_input(case: Case, gpus: Any, ttft_s: Any, tpot_s: Any, prompt_len: Any, output_len: Any,
                       length_fields: tuple[str, str] = ("request.prompt_len", "request.output_len")) -> tuple[int, int, int]:
    """(GPUs, I, O) of a search, or InputError naming the field: GPUs a whole number in
    1 … system.count, targets finite and > 0, lengths ≥ 1 within the model's context."""
    if case.kind != "inference":
        raise InputError("kind", case.kind, "serving needs kind: inference")
    count = case.system.count
    g = count if gpus is None else gpus
    if isinstance(g, bool) or not isinstance(g, (int, np.integer)) or g < 1:
        raise InputError("--gpus", g, "give a whole number of GPUs >= 1")
    if g > count:
        raise InputError("--gpus", g, f"the system has {count} accelerators (system.count)")
    for name, v in (("--ttft", ttft_s), ("--tpot", tpot_s)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer))
                              or not np.isfinite(v) or v <= 0):
            raise InputError(name, v, "a latency target is a finite number of seconds > 0")
    r = case.request
    I = prompt_len if prompt_len is not None else getattr(r, "prompt_len", None)
    O = output_len if output_len is not None else getattr(r, "output_len", None)
    check_lengths(case.model, I, O, *length_fields)
    return int(g), int(I), int(O)


def slo_search(case: Case, ttft_s: Optional[float] = None, tpot_s: Optional[float] = None,
               gpus: Optional[int] = None, prompt_len: Optional[int] = None, output_len: Optional[int] = None,
               points: int = 64, disaggregated: bool = True,
               length_fields: tuple[str, str] = ("request.prompt_len", "request.output_len")) -> SearchResult:
    """Rank deployments of ``gpus`` GPUs (default: system.count) by output tokens/s per GPU
    within the targets (module docstring), aggregated and (``disaggregated``) prefill/decode
    pools (:mod:`xlayer.serving.disagg`). Raises :class:`InputError` naming the closest
    deployment when none meets them."""
    from xlayer.serving.disagg import decode_side, prefill_side, search_pairs
    g, I, O = check_search_input(case, gpus, ttft_s, tpot_s, prompt_len, output_len, length_fields)
    ranked, skipped, curves, evaluated = [], [], {}, 0
    closest: tuple[float, Candidate] | None = None
    setups: dict[tuple[int, int, int], Any] = {}
    bad: dict[tuple[int, int, int], str] = {}

    def setup_of(dep: Deployment):
        key = (dep.tp, dep.pp, dep.ep)
        if key not in setups and key not in bad:
            try:
                setups[key] = serving_setup(case, deployment=Deployment(dep.tp, dep.pp, dep.ep, 1),
                                            prompt_len=I, output_len=O)
            except InputError as exc:
                bad[key] = f"{Deployment(dep.tp, dep.pp, dep.ep).label}: {exc.valid}"
                skipped.append(bad[key])
        return setups.get(key)

    def consider(c: Candidate, v: float) -> None:
        nonlocal closest
        if closest is None or v < closest[0]:
            closest = (v, c)

    for dep in deployment_shapes(case, g):
        s = setup_of(dep)
        if s is None:
            continue
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
            consider(Candidate(dep, int(caps[i]), float(tps[i]), float(1 / tpot[i]), float(ttft[i]), float(tpot[i]),
                               "latency target", "-", False), float(viol[i]))
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

    if disaggregated and g >= 2 and O >= 2:
        shapes = [s for s in (setup_of(d) for d in replica_shapes(case, g - 1)) if s is not None]
        pres = [prefill_side(s) for s in shapes]
        decs = [decode_side(s, points) for s in shapes]
        domain = case.system_spec().scale_up_size
        for key, best, near, curve, n in search_pairs(pres, decs, g, domain, O, ttft_s, tpot_s):
            evaluated += n
            curves[key] = curve
            if best is not None:
                dd = best[0]
                ranked.append(Candidate(*best[:7], _bound(setups[(dd.decode.tp, dd.decode.pp, dd.decode.ep)],
                                                          best[1]), True))
            else:
                v, e = near
                consider(Candidate(*e[:7], "-", False), v)
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
    return SearchResult(case.id, g, I, O, ttft_s, tpot_s, ranked, evaluated, curves, skipped, setups)


def plot_curves(res: SearchResult, path, top: int = 6) -> None:
    """Throughput vs interactivity (output tokens/s per GPU against tokens/s per user = 1/TPOT)
    of the best ``top`` shapes, best feasible point of each marked; PNG or SVG by suffix."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 5.5))
    labels = list(dict.fromkeys(res.curve_key(c) for c in res.ranked[:top])) or list(res.curves)[:top]
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
