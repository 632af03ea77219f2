"""Time of one engine iteration (a mixed prefill + decode step) from the inference cost model.

One iteration on one rank = the operators of its prefill tokens and its decode tokens in one
pass (:func:`xlayer.workload.inference_ops.inference_layer`, priced by
:func:`xlayer.cost.compute.op_time` and the TP collectives of
:func:`xlayer.cost.roofline.tp_collective_time_s` — the functions of
:func:`xlayer.prediction.inference.forward_pass`):

    t = L_stage · [ layer(T) + Σ_segments attention(segment) ] + embedding(T) + output(rows)

``layer(T)`` is every per-layer operator but the attention core (norms, QKV, RoPE/KV append,
projection, FFN or MoE, collectives) for T tokens; it depends on T alone, so it is tabulated
for T = 0 … T_max once per deployment (numpy, exact at every integer T). Attention is priced
per segment: the decode sequences as one FlashDecoding kernel over their mean context
(bytes and FLOPs are linear in the context, so the mean is exact), each group of prefill
chunks as one flash-attention kernel. ``rows`` = sequences whose next token is sampled.

The host prepares each iteration while the GPU runs the previous one (TensorRT-LLM's overlap
scheduler), so an iteration takes max(GPU time, host time), host time = c_host · requests in
the batch (``xlayer/data/serving.yaml``: 29.4 µs, NVIDIA/TensorRT-LLM PR #10273).

A generation-only iteration runs as a CUDA graph padded to the next captured batch size:
the GEMM and element-wise work of the padded rows is paid, attention only for the real ones.

Pipeline parallelism p: the batch is split into p micro-batches that stream through the
stages, so one iteration of every sequence takes p × (the busiest stage over 1/p of the
work), the stage holding ⌈L/p⌉ layers, its edge work (embedding or output) and one
activation send. Expert parallelism with attention data parallel (ep ranks): every rank runs
attention over its own sequences; the MoE layers see the tokens of all ep ranks (T·ep) and
each rank computes its E/ep experts, with an all-to-all dispatch and combine.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from xlayer.cost.collectives import collective_time_s, ranks_in_domain
from xlayer.cost.measured_moe import FUSED_MOE_OPS, curve_time_s, moe_layer_curve
from xlayer.cost.kvcache import stage_layers
from xlayer.cost.compute import op_time
from xlayer.hardware.spec import System
from xlayer.mapping.profiles import get_profile
from xlayer.safe_yaml import package_constants
from xlayer.workload.inference_ops import AttentionSegment, embedding_ops, inference_layer, output_ops
from xlayer.workload.precision import inference_formats
from xlayer.workload.transformer import segment_attention_ops, windowed_segment
from xlayer.workload.model import ModelSpec
from xlayer.workload.operators import ACT_BYTES


@dataclass(frozen=True)
class ServingCalibration:
    host_s_per_request: float
    eager_ops_per_layer: float
    eager_ops_fixed: float
    grace_host_slowdown: float


def serving_calibration() -> ServingCalibration:
    """Constants of ``xlayer/data/serving.yaml`` (each with its source there)."""
    return package_constants(ServingCalibration, "serving.yaml")




@dataclass(frozen=True)
class Deployment:
    """How one replica is laid out: tp × pp GPUs, or (MoE) ep ranks of attention data
    parallel with the experts split over them (× pp); ``replicas`` copies of it."""

    tp: int = 1
    pp: int = 1
    ep: int = 1
    replicas: int = 1

    @property
    def gpus_per_replica(self) -> int:
        return self.tp * self.pp * self.ep

    @property
    def gpus(self) -> int:
        return self.gpus_per_replica * self.replicas

    @property
    def label(self) -> str:
        s = f"tp{self.tp}" + (f" pp{self.pp}" if self.pp > 1 else "") + \
            (f" ep{self.ep}+attn-dp" if self.ep > 1 else "")
        return s + (f" x{self.replicas}" if self.replicas > 1 else "")


def _comm_time(c, tp: int, ep: int, system: System) -> Any:
    """A layer collective: TP groups (consecutive ranks), or the EP all-to-all over ep ranks."""
    n = ep if c.group == "ep" else tp
    if n <= 1:
        return 0.0 * c.bytes
    stride = tp if c.group == "ep" else 1
    n_in = ranks_in_domain(n, stride, system.scale_up_size)
    return collective_time_s(c.collective, c.bytes, n, n_in, system.scale_up, system.scale_out)


class StepTimer:
    """Iteration times of one deployment (module docstring). ``t_max``: the largest token
    count per micro-batch tabulated (larger ones are priced directly)."""

    def __init__(self, model: ModelSpec, system: System, dep: Deployment, precision: str, kv_precision: str,
                 attention: str = "flash", t_max: int = 8192, rows_max: int | None = None,
                 host_s_per_request: float | None = None, mixed_in_graph: bool = False,
                 moe_kernel_table: str | None = None):
        self.model, self.system, self.dep = model, system, dep
        # the engine's fused MoE priced from its published measurements where the shape was
        # measured (xlayer.cost.measured_moe), else by the roofline of its operators
        self.moe_curve = moe_layer_curve(moe_kernel_table, system.accelerator.name, precision, model,
                                         tp=dep.tp, ep=dep.ep)
        cal = serving_calibration()
        self.host_s_per_request = cal.host_s_per_request if host_s_per_request is None else host_s_per_request
        # an iteration that carries a prompt runs the forward eagerly unless the engine graphs
        # mixed batches (``mixed_in_graph``): layers x Python-level ops x the host's dispatch
        # time per eager op (x86, the pytorch-eager profile) x the Grace slowdown on GB200/GB300
        grace = (system.accelerator.host_cpu or "").lower() == "grace"
        per_op = get_profile("pytorch-eager").host_dispatch_s * (cal.grace_host_slowdown if grace else 1.0)
        self.eager_host_s = 0.0 if mixed_in_graph else per_op * (
            stage_layers(model.layers, dep.pp) * cal.eager_ops_per_layer + cal.eager_ops_fixed)
        self.precision, self.kv_precision, self.attention = precision, kv_precision, attention
        self.formats = inference_formats(precision, kv_precision)
        self.acc = system.accelerator
        self.L = stage_layers(model.layers, dep.pp)
        self.t_max = int(t_max)
        T = np.arange(0, self.t_max + 1, dtype=float)
        self.layer_T = self._layer_time(T)
        self.emb_T = self._emb_time(T)
        R = np.arange(0, int(rows_max or self.t_max) + 1, dtype=float)
        self.out_R = self._out_time(R)
        self.p2p_T = self._p2p_time(T)

    # ---- tables ------------------------------------------------------------------
    def _layer_time(self, T: np.ndarray) -> np.ndarray:
        m, d = self.model, self.dep
        Tq = np.maximum(T, 1.0)
        lay = inference_layer(m, [AttentionSegment(Tq, 1.0, 0.0)], d.tp, self.precision, self.kv_precision,
                              self.attention, ep=d.ep, group_tokens=Tq * d.ep if d.ep > 1 else None)
        tot = np.zeros_like(T)
        for op in lay.ops:
            if op.name in lay.attention_ops or self._measured(op.name):
                continue
            tot = tot + np.broadcast_to(op_time(op, self.acc).time_s, T.shape)
        if self.moe_curve is not None:
            tot = tot + self._fused_moe_s(Tq)
        for c in lay.comms:
            tot = tot + np.broadcast_to(_comm_time(c, d.tp, d.ep, self.system), T.shape)
        return np.where(T > 0, tot, 0.0)

    def _measured(self, op_name: str) -> bool:
        """An operator the measured fused-MoE kernel stands for (priced by :meth:`_fused_moe_s`)."""
        return self.moe_curve is not None and op_name in FUSED_MOE_OPS

    def _fused_moe_s(self, T: Any) -> Any:
        """The measured fused MoE forward (:func:`xlayer.cost.measured_moe.curve_time_s`) for the
        tokens entering it on a rank: the EP group's with attention data parallel."""
        return curve_time_s(self.moe_curve, np.asarray(T, dtype=float) * self.dep.ep)

    def _emb_time(self, T: np.ndarray) -> np.ndarray:
        tot = np.zeros_like(T)
        for op in embedding_ops(self.model, np.maximum(T, 1.0)):
            tot = tot + np.broadcast_to(op_time(op, self.acc).time_s, T.shape)
        return np.where(T > 0, tot, 0.0)

    def _out_time(self, R: np.ndarray) -> np.ndarray:
        ops, comms = output_ops(self.model, np.maximum(R, 1.0), self.dep.tp)
        tot = np.zeros_like(R)
        for op in ops:
            tot = tot + np.broadcast_to(op_time(op, self.acc).time_s, R.shape)
        for c in comms:
            tot = tot + np.broadcast_to(_comm_time(c, self.dep.tp, 1, self.system), R.shape)
        return np.where(R > 0, tot, 0.0)

    def _p2p_time(self, T: np.ndarray) -> np.ndarray:
        if self.dep.pp <= 1:
            return np.zeros_like(T)
        s = self.system
        n_in = ranks_in_domain(2, self.dep.tp, s.scale_up_size)
        t = collective_time_s("send_recv", np.maximum(T, 1.0) * self.model.hidden * ACT_BYTES, 2, n_in,
                              s.scale_up, s.scale_out)
        return np.where(T > 0, np.broadcast_to(t, T.shape), 0.0)

    def _lookup(self, table: np.ndarray, x: Any, fn) -> Any:
        """table[x] for integer x ≤ t_max (rounded up), the direct formula above."""
        xi = np.ceil(np.asarray(x, dtype=float) - 1e-9).astype(np.int64)
        xi = np.maximum(xi, 0)
        if np.all(xi < table.shape[0]):
            v = table[xi]
        else:
            v = fn(np.asarray(xi, dtype=float))
        return v if np.ndim(v) else float(v)

    def layer_s(self, T: Any) -> Any:
        return self._lookup(self.layer_T, T, self._layer_time)

    def edge_s(self, T: Any, rows: Any) -> Any:
        """Embedding (first stage) and output layer (last stage): both for pp = 1, the larger
        for pp > 1 (the busiest stage), plus one activation send."""
        e = self._lookup(self.emb_T, T, self._emb_time)
        o = self._lookup(self.out_R, rows, self._out_time)
        if self.dep.pp > 1:
            return np.maximum(e, o) + self._lookup(self.p2p_T, T, self._p2p_time)
        return e + o

    # ---- attention ---------------------------------------------------------------
    def attention_s(self, seg: AttentionSegment) -> Any:
        """Per-layer attention-core time of one segment (sliding-window layers see it windowed:
        the layer-weighted mean of the two kinds)."""
        def core(g: AttentionSegment) -> Any:
            tot: Any = 0.0
            for op in segment_attention_ops(self.model, g, self.dep.tp, self.formats, self.attention):
                tot = tot + op_time(op, self.acc).time_s
            return tot
        sw = self.model.sliding_window
        if sw is None:
            return core(seg)
        share = sw.layers / self.model.layers
        return (1.0 - share) * core(seg) + share * core(windowed_segment(seg, sw.size))

    # ---- one iteration -----------------------------------------------------------
    def graph_batch(self, b: int, sizes: Sequence[int]) -> int:
        """The captured CUDA-graph batch size a generation-only batch b is padded to (b itself
        above the largest)."""
        for s in sizes:
            if s >= b:
                return s
        return b

    def step_s(self, decode_seqs: Any, decode_ctx: Any, prefills: Sequence[tuple[float, float, float]] = (),
               padded_tokens: Any = None) -> Any:
        """One iteration: ``decode_seqs`` sequences decoding one token at mean context
        ``decode_ctx`` (tokens already cached), and ``prefills`` = (seqs, new tokens, cached)
        groups of prompt chunks. ``padded_tokens``: the CUDA-graph batch the dense work runs
        at (generation-only iterations). Arrays broadcast (one value per iteration)."""
        p = self.dep.pp
        b = np.asarray(decode_seqs, dtype=float)
        T = b + sum(s * n for s, n, _ in prefills)
        rows = b + sum(s for s, _, _ in prefills)
        Td = T if padded_tokens is None else np.maximum(np.asarray(padded_tokens, dtype=float), T)
        Rd = rows if padded_tokens is None else np.maximum(np.asarray(padded_tokens, dtype=float), rows)
        att: Any = 0.0
        if np.any(b > 0):
            att = np.where(b > 0, self.attention_s(AttentionSegment(np.maximum(b, 1e-9) / p, 1.0,
                                                                    decode_ctx)), 0.0)
        for s, n, c in prefills:
            if s > 0 and n > 0:
                att = att + self.attention_s(AttentionSegment(s / p, n, c))
        t = p * (self.L * (self.layer_s(Td / p) + att) + self.edge_s(Td / p, Rd / p))
        t = np.maximum(t, self.host_s(rows, T - b))
        return t if np.ndim(t) else float(t)

    def breakdown(self, decode_seqs: float, decode_ctx: float,
                  prefills: Sequence[tuple[float, float, float]] = (), padded_tokens: float | None = None
                  ) -> dict[str, float]:
        """One iteration of :meth:`step_s` (scalars) split into its terms, seconds summing to
        ``step_s`` of the same arguments: the layer's GEMMs, attention core, element-wise
        kernels (norms, RoPE/KV append, activation, MoE routing and permutes), TP all-reduces,
        EP all-to-all, embedding + output layer, pipeline send, and the host time the GPU
        does not hide (max(GPU, host) − GPU)."""
        p, m, d = self.dep.pp, self.model, self.dep
        b = float(decode_seqs)
        T = b + sum(s * n for s, n, _ in prefills)
        rows = b + sum(s for s, _, _ in prefills)
        Td = T if padded_tokens is None else max(float(padded_tokens), T)
        Rd = rows if padded_tokens is None else max(float(padded_tokens), rows)

        def up(x: float) -> float:
            return float(max(math.ceil(x - 1e-9), 0))

        out: dict[str, float] = {}

        def add(k: str, v: float) -> None:
            out[k] = out.get(k, 0.0) + float(v)

        Tl = up(Td / p)
        if Tl > 0:
            Tq = max(Tl, 1.0)
            lay = inference_layer(m, [AttentionSegment(Tq, 1.0, 0.0)], d.tp, self.precision, self.kv_precision,
                                  self.attention, ep=d.ep, group_tokens=Tq * d.ep if d.ep > 1 else None)
            for op in lay.ops:
                if op.name in lay.attention_ops or self._measured(op.name):
                    continue
                add("GEMMs" if op.kind == "gemm" else "element-wise", p * self.L * op_time(op, self.acc).time_s)
            if self.moe_curve is not None:
                add("fused MoE (measured)", p * self.L * float(self._fused_moe_s(Tq)))
            for c in lay.comms:
                add("EP all-to-all" if c.group == "ep" else "TP all-reduce",
                    p * self.L * _comm_time(c, d.tp, d.ep, self.system))
        att = 0.0
        if b > 0:
            att += float(self.attention_s(AttentionSegment(b / p, 1.0, decode_ctx)))
        for s, n, c in prefills:
            if s > 0 and n > 0:
                att += float(self.attention_s(AttentionSegment(s / p, n, c)))
        add("attention", p * self.L * att)
        e = float(self._lookup(self.emb_T, Td / p, self._emb_time))
        o = float(self._lookup(self.out_R, Rd / p, self._out_time))
        if p > 1:
            add("embedding + output layer", p * max(e, o))
            add("pipeline send", p * float(self._lookup(self.p2p_T, Td / p, self._p2p_time)))
        else:
            add("embedding + output layer", e + o)
        gpu = sum(out.values())
        add("host (not hidden)", max(0.0, float(self.host_s(rows, T - b)) - gpu))
        return {k: v for k, v in out.items() if v > 0 or k in ("GEMMs", "attention")}

    def gpu_step_s(self, *a, **k) -> Any:
        """:meth:`step_s` without the host floor (the GPU's own time)."""
        h, self.host_s_per_request = self.host_s_per_request, 0.0
        e, self.eager_host_s = self.eager_host_s, 0.0
        try:
            return self.step_s(*a, **k)
        finally:
            self.host_s_per_request = h
            self.eager_host_s = e

    def host_s(self, requests: Any, prompt_tokens: Any = 0.0) -> Any:
        """Host time of an iteration over ``requests`` requests: c_host · requests
        (``xlayer/data/serving.yaml``), plus the eager launch of the forward when the iteration
        carries prompt tokens (no CUDA graph); the overlap scheduler hides it behind the GPU's
        work, so an iteration takes max(GPU, host)."""
        eager = np.where(np.asarray(prompt_tokens, dtype=float) > 0, self.eager_host_s, 0.0)
        return self.host_s_per_request * np.asarray(requests, dtype=float) + eager
