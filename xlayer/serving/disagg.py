"""Disaggregated prefill/decode pools: ``n_p`` prefill replicas of one shape and ``n_d`` decode
replicas of another, the KV cache of each prompt sent from its prefill GPUs to its decode GPUs.
Formulas and sources: ``docs/serving.md`` ("Disaggregated prefill and decode").

Per GPU of a rank group (tp·pp GPUs; ep attention-DP ranks each serve their own requests):

* prefill: iterations of k whole prompts, t_p(k) = :meth:`StepTimer.step_s` (0 decodes, k
  prompts of I tokens); k = 1 … min(max_num_tokens / I, max_batch_size, KV blocks / blocks
  of a prompt);
* KV transfer of one request: S = KV bytes of the prompt = 2·L·g·d·kv_bytes·I, spread over
  the tp·pp GPUs of a rank group on each side, t_x = send_recv(S / (tp·pp)) over the scale-up
  link when both pools sit in one scale-up domain (their GPUs ≤ system.scale_up_size), else
  over the scale-out link (``xlayer.cost.collectives``). Sending overlaps the next prefill,
  so a prefill rank group delivers k prompts every max(t_p(k), k·t_x,P) and a decode rank
  group receives at most one request per t_x,D;
* TTFT = t_p(k) + t_x (the prefill iteration carrying the prompt, then its KV transfer;
  the first token comes from the prefill);
* decode: generation-only iterations of B sequences at mean cached context I + (O − 2)/2,
  padded to a CUDA-graph batch, t_d(B) = step_s; TPOT = t_d; a decode rank group finishes
  B / (t_d·(O − 1)) requests per second (the prefill gave the first token);
* request rate R = min(N_p·r_p, N_d·r_d) with N = GPUs of each pool and r = requests/s per
  GPU; output tokens/s per GPU = R·O / (N_p + N_d) (both pools counted).

The search takes every pair of replica shapes (prefill, decode), every pool ratio with
n_p·g_P + n_d·g_D ≤ GPUs, every decode concurrency cap, and for each network (scale-up,
scale-out) the prefill batch k with the most requests/s per GPU within the TTFT target.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from xlayer.cost.collectives import collective_time_s
from xlayer.cost.kvcache import kv_bytes_per_token
from xlayer.serving.steady import kv_concurrency
from xlayer.serving.steptime import Deployment


@dataclass(frozen=True)
class Disaggregated:
    """A disaggregated deployment: ``prefill`` (its replicas = n_p) and ``decode`` (n_d)."""

    prefill: Deployment
    decode: Deployment
    prefill_batch: int              # prompts per prefill iteration (per rank group)
    kv_bytes_per_request: float
    kv_transfer_s: float
    network: str                    # scale-up | scale-out

    @property
    def gpus(self) -> int:
        return self.prefill.gpus + self.decode.gpus

    @property
    def label(self) -> str:
        return f"prefill {self.prefill.label} + decode {self.decode.label}"

    @property
    def pair(self) -> str:
        """The two replica shapes without their counts (the key of a curve)."""
        p = Deployment(self.prefill.tp, self.prefill.pp, self.prefill.ep)
        d = Deployment(self.decode.tp, self.decode.pp, self.decode.ep)
        return f"disagg {p.label} / {d.label}"

    def to_dict(self) -> dict[str, Any]:
        def one(d: Deployment) -> dict[str, int]:
            return {"tp": d.tp, "pp": d.pp, "ep": d.ep, "replicas": d.replicas, "gpus": d.gpus}
        return {"prefill": one(self.prefill), "decode": one(self.decode), "prefill_batch": self.prefill_batch,
                "kv_bytes_per_request": self.kv_bytes_per_request, "kv_transfer_s": self.kv_transfer_s,
                "network": self.network}


def kv_request_bytes(setup) -> float:
    """KV cache of one prompt, every layer and KV head: 2·L·g·d·kv_bytes·I."""
    return kv_bytes_per_token(setup.case.model, 1, 1, setup.kv_precision) * setup.prompt_len


def transfer_s(setup, ranks: int, same_domain: bool) -> float:
    """One request's KV over one side's ``ranks`` GPUs (each sends/receives its share)."""
    s = setup.timer.system
    return float(collective_time_s("send_recv", kv_request_bytes(setup) / ranks, 2, 2 if same_domain else 1,
                                   s.scale_up, s.scale_out))


@dataclass
class PrefillSide:
    """A prefill replica shape: per candidate batch k, the iteration time, TTFT, requests/s
    per GPU, for each network (0: scale-up, 1: scale-out)."""

    setup: Any
    k: np.ndarray
    t_p: np.ndarray
    k_max: int
    t_x: tuple[float, float]          # transfer of one request, per network
    ranks: int
    k_limit: str = "token budget"     # what sets k_max


def prefill_side(setup) -> PrefillSide:
    eng, pool, t = setup.engine, setup.pool, setup.timer
    I = setup.prompt_len
    d = setup.deployment
    ranks = d.tp * d.pp
    tok = int(eng.max_num_tokens)
    if I > tok:                                   # chunked engines: one prompt in ⌈I/C⌉ iterations
        ks = np.array([1])
        n = math.ceil(I / tok)
        tp = np.array([sum(float(t.step_s(0.0, 0.0, [(1.0, float(min(tok, I - j * tok)), float(j * tok))]))
                           for j in range(n))])
        k_max, why = 1, "token budget"
    else:
        lim = {"token budget": tok // I, "batch limit": int(eng.max_batch_size),
               "KV memory": pool.blocks // max(1, pool.blocks_for(I))}
        why = min(lim, key=lim.get)
        k_max = max(1, lim[why])
        ks = np.unique(np.round(np.geomspace(1, k_max, min(k_max, 24))).astype(int))
        tp = np.array([float(t.step_s(0.0, 0.0, [(float(k), float(I), 0.0)])) for k in ks])
    tx = (transfer_s(setup, ranks, True), transfer_s(setup, ranks, False))
    return PrefillSide(setup, ks, tp, k_max, tx, ranks, why)


@dataclass
class DecodeSide:
    setup: Any
    caps: np.ndarray
    t_d: np.ndarray
    b_max: int
    kv_b: int
    t_x: tuple[float, float]
    ranks: int
    padded: np.ndarray | None = None


def decode_side(setup, points: int) -> DecodeSide:
    eng, t = setup.engine, setup.timer
    I, O = float(setup.prompt_len), float(setup.output_len)
    d = setup.deployment
    kv_b = kv_concurrency(setup.pool, eng, I, O)
    b_max = max(1, min(int(eng.max_batch_size), kv_b))
    caps = np.unique(np.round(np.geomspace(1, b_max, points)).astype(int)).astype(float)
    ctx = I + (O - 2.0) / 2.0
    sizes = eng.graph_sizes() if eng.cuda_graph_padding else ()
    pad = np.array([t.graph_batch(int(math.ceil(x)), sizes) if sizes and x <= max(sizes) else x for x in caps],
                   dtype=float) if sizes else None
    td = np.asarray(t.step_s(caps, ctx, (), pad), dtype=float)
    ranks = d.tp * d.pp
    tx = (transfer_s(setup, ranks, True), transfer_s(setup, ranks, False))
    return DecodeSide(setup, caps, td, b_max, kv_b, tx, ranks, pad)


def _best_k(pre: PrefillSide, net: int, ttft_s: Optional[float]) -> Optional[tuple[int, float, float, str]]:
    """(k, requests/s per GPU, TTFT, what limits k) of the best prefill batch on ``net``."""
    tx = pre.t_x[net]
    period = np.maximum(pre.t_p, pre.k * tx)
    rate = pre.k / period / pre.ranks
    ttft = pre.t_p + tx
    ok = np.ones(pre.k.size, bool) if ttft_s is None else ttft <= ttft_s
    if not ok.any():
        return None
    i = int(np.argmax(np.where(ok, rate, -np.inf)))
    if pre.k[i] * tx > pre.t_p[i]:
        why = "network"
    elif i + 1 < pre.k.size and not ok[i + 1]:
        why = "latency target (TTFT)"
    elif int(pre.k[i]) >= pre.k_max:
        why = pre.k_limit
    else:
        why = "throughput peaks below the limits"
    return int(pre.k[i]), float(rate[i]), float(ttft[i]), why


def search_pairs(pres: list[PrefillSide], decs: list[DecodeSide], gpus: int, domain: int, O: int,
                 ttft_s: Optional[float], tpot_s: Optional[float]):
    """Every (prefill shape, decode shape, n_p, n_d, decode cap): yields per pair
    (label key, best feasible entry or None, closest infeasible entry, curve points, evaluated)."""
    for pre in pres:
        gP = pre.setup.deployment.gpus_per_replica
        for dec in decs:
            gD = dec.setup.deployment.gpus_per_replica
            if gP + gD > gpus:
                continue
            n_p = np.arange(1, (gpus - gD) // gP + 1)
            combos = [(a, b) for a in n_p for b in range(1, (gpus - a * gP) // gD + 1)]
            if not combos:
                continue
            npa = np.array([c[0] for c in combos], dtype=float)
            nda = np.array([c[1] for c in combos], dtype=float)
            NP, ND = npa * gP, nda * gD
            same = (NP + ND) <= domain
            net = np.where(same, 0, 1)
            ks = [_best_k(pre, 0, ttft_s), _best_k(pre, 1, ttft_s)]
            ks_free = [_best_k(pre, 0, None), _best_k(pre, 1, None)]
            rd = [np.minimum(dec.caps / (dec.t_d * max(O - 1, 1)), 1.0 / dec.t_x[n]) / dec.ranks for n in (0, 1)]
            rp_c = np.array([(ks[n] or ks_free[n])[1] for n in net])
            ttft_c = np.array([(ks[n] or ks_free[n])[2] for n in net])
            ttft_ok = np.array([ks[n] is not None for n in net])
            RD = np.where(net[:, None] == 0, rd[0][None, :], rd[1][None, :])
            pre_rate = (NP * rp_c)[:, None]
            dec_rate = ND[:, None] * RD
            R = np.minimum(pre_rate, dec_rate)
            tput = R * O / (NP + ND)[:, None]
            tpot = dec.t_d[None, :]
            ok = ttft_ok[:, None] & (np.ones_like(tput, bool) if tpot_s is None else tpot <= tpot_s)
            evaluated = tput.size
            viol = np.maximum(ttft_c[:, None] / (ttft_s or np.inf), tpot / (tpot_s or np.inf))
            viol = np.broadcast_to(viol, tput.shape)
            key = None
            curve = []
            for j in range(dec.caps.size):
                col = np.where(ttft_ok, tput[:, j], -np.inf) if ttft_ok.any() else tput[:, j]
                c = int(np.argmax(col))
                curve.append({"max_batch": int(dec.caps[j]), "output_tokens_per_s_per_gpu": float(tput[c, j]),
                              "tokens_per_s_per_user": float(1 / dec.t_d[j]), "ttft_s": float(ttft_c[c]),
                              "tpot_s": float(dec.t_d[j]), "prefill_replicas": int(npa[c]),
                              "decode_replicas": int(nda[c])})

            def entry(c: int, j: int, feasible: bool):
                n = int(net[c])
                kk = ks[n] or ks_free[n]
                dd = Disaggregated(Deployment(pre.setup.deployment.tp, pre.setup.deployment.pp,
                                              pre.setup.deployment.ep, int(npa[c])),
                                   Deployment(dec.setup.deployment.tp, dec.setup.deployment.pp,
                                              dec.setup.deployment.ep, int(nda[c])),
                                   kk[0], kv_request_bytes(pre.setup), pre.t_x[n], ("scale-up", "scale-out")[n])
                jn = min(j + 1, dec.caps.size - 1)
                if pre_rate[c, 0] <= dec_rate[c, jn] * (1 + 1e-9):   # more decode slots would not help
                    limit = "prefill pool: " + kk[3]
                elif rd[n][j] * dec.ranks * dec.t_x[n] >= 1.0 - 1e-12:
                    limit = "decode pool: network"
                elif j + 1 < dec.caps.size and tpot_s is not None and dec.t_d[j + 1] > tpot_s:
                    limit = "decode pool: latency target (TPOT)"
                elif int(dec.caps[j]) >= dec.b_max:
                    limit = "decode pool: " + ("KV memory" if dec.kv_b <= dec.setup.engine.max_batch_size
                                               else "batch limit")
                elif dec.padded is not None and dec.padded[jn] > dec.caps[jn] and tput[c, jn] < tput[c, j]:
                    limit = f"decode pool: CUDA-graph padding (a larger cap runs at batch {int(dec.padded[jn])})"
                else:
                    limit = "decode pool: throughput peaks below the limits"
                return dd, int(dec.caps[j]), float(tput[c, j]), float(1 / dec.t_d[j]), float(ttft_c[c]), \
                    float(dec.t_d[j]), limit, feasible
            best = None
            if ok.any():
                # ties (same tokens/s per GPU): the ratio using more of the GPUs
                score = np.where(ok, tput * (1.0 + 1e-9 * (NP + ND))[:, None], -np.inf)
                c, j = np.unravel_index(int(np.argmax(score)), tput.shape)
                best = entry(int(c), int(j), True)
                key = best[0].pair
            c, j = np.unravel_index(int(np.argmin(viol)), viol.shape)
            closest = (float(viol[c, j]), entry(int(c), int(j), False))
            key = key or closest[1][0].pair
            yield key, best, closest, curve, evaluated
