"""A serving case (``request.mode: serving``) through the simulator: deployment, engine, KV pool,
simulation and the metrics ``xlayer validate`` compares (``output_tokens_per_s_per_gpu``,
``ttft_s``, ``tpot_s``: means over requests)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from xlayer.errors import InputError
from xlayer.mapping.layout import check_tensor_parallel
from xlayer.prediction.case import Case, require_modelled
from xlayer.serving.engine import EngineConfig, KVPool, default_kv_precision, engine_for, kv_pool, resolve_engine
from xlayer.serving.scheduler import SimResult, simulate
from xlayer.serving.steady import SteadyState, kv_concurrency, steady_state
from xlayer.serving.steptime import Deployment, StepTimer

from xlayer.units import GIB


# 30,000 requests simulate in ~1.3 s on one core (benchmarks/serving_speed.py)
MAX_SIMULATED_REQUESTS = 200_000


@dataclass
class ServingSetup:
    case: Case
    deployment: Deployment
    engine: EngineConfig
    pool: KVPool
    timer: StepTimer
    prompt_len: int
    output_len: int
    requests: int
    kv_precision: str
    assumptions: list[str] = field(default_factory=list)

    @property
    def rank_requests(self) -> int:
        """Requests one rank group (tp·pp GPUs) serves: requests / (replicas · ep), rounded up."""
        d = self.deployment
        return int(math.ceil(self.requests / (d.replicas * d.ep)))


def check_lengths(model, prompt_len: Any, output_len: Any, field_in: str = "request.prompt_len",
                  field_out: str = "request.output_len") -> None:
    for f, v, lo in ((field_in, prompt_len, 1), (field_out, output_len, 1)):
        if v is None or isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise InputError(f, v, f"serving needs a whole number of tokens >= {lo}")
    if model.max_seq_len is not None and prompt_len + output_len > model.max_seq_len:
        raise InputError(field_in, prompt_len, f"prompt + output = {prompt_len + output_len} tokens exceeds the "
                                               f"model's context model.max_seq_len={model.max_seq_len}")


def serving_setup(case: Case, deployment: Optional[Deployment] = None, engine: Optional[EngineConfig] = None,
                  prompt_len: Optional[int] = None, output_len: Optional[int] = None,
                  requests: Optional[int] = None, kv_precision: Optional[str] = None,
                  length_fields: tuple[str, str] = ("request.prompt_len", "request.output_len")) -> ServingSetup:
    """Resolve a serving case: the deployment (case parallel block unless given), the engine
    of ``software.framework`` with its open limits filled, the KV precision (the engine's
    choice when null) and the KV pool."""
    if case.kind != "inference":
        raise InputError("kind", case.kind, "serving needs kind: inference")
    m, r, P = case.model, case.request, case.parallel
    notes: list[str] = []
    I = prompt_len if prompt_len is not None else r.prompt_len
    O = output_len if output_len is not None else r.output_len
    check_lengths(m, I, O, *length_fields)
    require_modelled(case)
    if m.mtp_inference_note():
        notes.append(m.mtp_inference_note())
    if m.sliding_window is not None:
        notes.append(f"{m.sliding_window.layers} of {m.layers} layers attend over a window of {m.sliding_window.size} "
                     "keys; the KV pool counts every layer's cache at full length (freeing out-of-window blocks is not "
                     "modelled)")
    system = case.system_spec()
    if deployment is None:
        tp, pp = P.tp or 1, P.pp or 1
        ep = P.ep or 1
        if ep > 1 and tp > 1 and ep == tp:
            tp = 1  # TensorRT-LLM attention DP: the tp ranks become attention-DP ranks holding E/ep experts
            notes.append(f"parallel.ep={ep} with attention data parallel: {ep} attention ranks, experts split over them")
        per = tp * pp * ep
        if per > system.count:
            f, v = max((("parallel.tp", tp), ("parallel.pp", pp), ("parallel.ep", ep)), key=lambda x: x[1])
            raise InputError(f, v, f"tp*pp*ep = {per} GPUs per replica, more than the system's "
                                   f"{system.count} (system.count)")
        if system.count % per:
            raise InputError("system.count", system.count, f"tp*pp*ep={per} must divide the accelerator count")
        deployment = Deployment(tp, pp, ep, system.count // per)
    d = deployment
    if d.gpus > system.count:
        raise InputError("system.count", system.count, f"the deployment {d.label} needs {d.gpus} GPUs")
    check_tensor_parallel(m, d.tp)
    if d.ep > 1 and (not m.is_moe or m.experts % d.ep):
        raise InputError("parallel.ep", d.ep, "ep needs an MoE model whose expert count it divides")
    if d.pp > m.layers:
        raise InputError("parallel.pp", d.pp, f"pp={d.pp} exceeds layers={m.layers}")
    kvp = kv_precision or case.kv_precision
    if kvp is None:
        kvp = default_kv_precision(case.precision)
        notes.append(f"kv_precision={kvp} (the engine's choice for a {case.precision} checkpoint)")
    eng = engine or engine_for(case.software.framework)
    eng = resolve_engine(eng, m, case.precision, kvp, d.tp, d.pp, I, O, I, system.accelerator.hbm.capacity_bytes,
                         system.accelerator.name)
    notes.append(f"engine {eng.name}: max_batch_size {eng.max_batch_size}, max_num_tokens {eng.max_num_tokens}, "
                 f"KV fraction {eng.kv_fraction:g}, {eng.tokens_per_block}-token blocks, policy {eng.policy}, "
                 f"chunked prefill {'on' if eng.chunked_prefill else 'off'}")
    pool = kv_pool(m, case.precision, kvp, d.tp, d.pp, d.ep, eng, system.accelerator.hbm.capacity_bytes)
    if pool.blocks_for(I + (O if eng.policy == "no_evict" else 1)) > pool.blocks:
        raise InputError(length_fields[0], I, f"one request needs {pool.blocks_for(I + O)} KV blocks, the pool "
                                                  f"holds {pool.blocks} ({pool.pool_bytes / GIB:.1f} GiB)")
    n_req = requests if requests is not None else (r.requests or r.batch or 1)
    if n_req > MAX_SIMULATED_REQUESTS:
        raise InputError("request.requests", n_req, f"the event-level simulation takes at most "
                                                    f"{MAX_SIMULATED_REQUESTS:,} requests (about 10 s; the offline "
                                                    "throughput no longer changes with more)")
    timer = StepTimer(m, system, d, case.precision, kvp, m.attention or "flash",
                      t_max=int(math.ceil(eng.max_num_tokens / d.pp)) + 1,
                      rows_max=int(max(eng.max_batch_size, max(eng.graph_sizes())) / d.pp) + 1,
                      mixed_in_graph=eng.mixed_in_graph, moe_kernel_table=eng.moe_kernel_table)
    if timer.moe_curve is not None:
        notes.append(f"MoE layer (permute, experts, activation, finalize) timed from the {timer.moe_curve.source}, "
                     f"the case says {case.software.framework or 'trt-llm'} {case.software.version or ''}".rstrip())
    elif m.is_moe and eng.moe_kernel_table:
        notes.append(f"MoE layer priced by the roofline: no {eng.moe_kernel_table} measurement for "
                     f"{system.accelerator.name} {case.precision} h={m.hidden} f={m.moe.ffn_hidden} "
                     f"E={m.moe.experts} k={m.moe.top_k} tp={d.tp} ep={d.ep}")
    return ServingSetup(case, d, eng, pool, timer, int(I), int(O), int(n_req), kvp, notes)


@dataclass
class ServingPrediction:
    setup: ServingSetup
    sim: SimResult
    steady: SteadyState
    metrics: dict[str, float]

    @property
    def assumptions(self) -> list[str]:
        return list(self.setup.assumptions)

    def to_dict(self) -> dict[str, Any]:
        s = self.setup
        return {"id": s.case.id, "deployment": s.deployment.label, "engine": s.engine.__dict__ | {
                    "graph_batch_sizes": list(s.engine.graph_sizes())},
                "kv_precision": s.kv_precision, "kv_blocks": s.pool.blocks, "kv_pool_gib": s.pool.pool_bytes / GIB,
                "weights_gib": s.pool.weights_bytes / GIB, "metrics": self.metrics, "assumptions": s.assumptions}


def _pcts(x: np.ndarray, name: str) -> dict[str, float]:
    if x.size == 0:
        return {}
    return {f"{name}_mean": float(np.mean(x)), f"{name}_p50": float(np.percentile(x, 50)),
            f"{name}_p90": float(np.percentile(x, 90)), f"{name}_p99": float(np.percentile(x, 99))}


def sim_metrics(setup: ServingSetup, sim: SimResult) -> dict[str, float]:
    """Throughput per GPU (output and total tokens), per user, TTFT/TPOT/latency statistics."""
    d = setup.deployment
    span = sim.makespan_s
    out_tok = float(sim.output.sum())
    tot_tok = float((sim.output + sim.prompt).sum())
    gpus_rank = d.tp * d.pp
    m = {"output_tokens_per_s_per_gpu": out_tok / span / gpus_rank,
         "total_tokens_per_s_per_gpu": tot_tok / span / gpus_rank,
         "output_tokens_per_s": out_tok / span * d.replicas * d.ep,
         "window_output_tokens_per_s_per_gpu": sim.window_tokens_per_s() / gpus_rank,
         "makespan_s": span, "mean_concurrency": sim.mean_running, "max_concurrency": float(sim.max_running),
         "iterations": float(sim.iterations), "preemptions": float(sim.preemptions)}
    tp = sim.tpot_s()
    m.update(_pcts(sim.ttft_s(), "ttft_s"))
    m.update(_pcts(tp, "tpot_s"))
    m.update(_pcts(sim.latency_s(), "latency_s"))
    m["ttft_s"] = m["ttft_s_mean"]
    if tp.size:
        m["tpot_s"] = m["tpot_s_mean"]
        m["tokens_per_s_per_user"] = 1.0 / m["tpot_s_mean"]
    m["output_tokens_per_s_per_user"] = float(np.mean(sim.output / sim.latency_s()))
    return m


def predict_serving(case: Case, **kw) -> ServingPrediction:
    """Simulate the case's requests (all queued at once) on one rank group of its deployment."""
    s = serving_setup(case, **kw)
    sim = simulate(s.timer, s.engine, s.pool, s.prompt_len, s.output_len, np.zeros(s.rank_requests))
    B = min(s.engine.max_batch_size, kv_concurrency(s.pool, s.engine, s.prompt_len, s.output_len), s.rank_requests)
    st = steady_state(s.timer, s.engine, s.prompt_len, s.output_len, B)
    m = sim_metrics(s, sim)
    m["steady_output_tokens_per_s_per_gpu"] = float(st.tokens_per_s) / (s.deployment.tp * s.deployment.pp)
    m["steady_concurrency"] = float(B)
    return ServingPrediction(s, sim, st, m)
