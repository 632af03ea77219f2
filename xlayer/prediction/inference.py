"""Inference prediction: prefill (time to first token), decode step (time per output token),
static-batch generation, memory, per-operator boundedness, and a serving estimate.

Composition (formulas of every term in ``docs/inference-model.md``):

* one forward pass = Σ over pipeline stages of [layers on the stage × (Σ operator roofline
  times + 2 TP all-reduces)] + embedding (first stage) + output layer (last stage)
  + (p−1) point-to-point sends of the activation. For one batch the stages run one after
  another, so pipeline parallelism adds no speed to a single batch's latency.
* prefill: the whole prompt of every sequence (b·n tokens) with flash attention;
* decode step: one token per sequence (b tokens), every weight read once, the KV cache of
  every sequence read once (decode attention);
* static generation: prefill + (output_len − 1) decode steps (the prefill emits the first
  token), or output_len decode steps without a prefill (prompt_len 0); decode step k
  (k = 0, 1, …) finds context_len + prompt_len + k tokens in the KV cache — cached +
  prompt + generated so far — so the steps are timed at the mean of that over the
  generation (the KV read grows linearly with the context);
* throughput per GPU: every replica's GPUs count, busy or idle: request.batch sequences ×
  output_len tokens over the generation time of the busiest replica (⌈batch/dp⌉
  sequences) and all tp·pp·dp GPUs — never above one replica's own rate;
* serving (continuous batching, chunked prefill): each step decodes B sequences and
  prefills B·I/O prompt tokens in the same pass (a sequence of I input and O output tokens
  enters every O steps per B), weights read once per step. Every pipeline stage holds the
  KV cache of all B sequences for its own layers (the B/p sequences of each micro-batch pass
  through every stage), so the largest B at equal GPUs does not grow with p.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xlayer.cost.collectives import collective_time_s, ranks_in_domain
from xlayer.cost.kvcache import cached_kv_tokens, kv_bytes_per_token, stage_layers, weight_bytes, workspace_bytes
from xlayer.cost.compute import gemm_rate_flops_per_s
from xlayer.cost.measured_moe import FUSED_MOE_OPS, curve_time_s, moe_layer_curve
from xlayer.cost.roofline import OpCost, blend_costs, comm_cost, op_cost
from xlayer.errors import InputError
from xlayer.units import format_seconds as _fmt_s
from xlayer.hardware.spec import System
from xlayer.mapping.layout import check_tensor_parallel
from xlayer.prediction.case import Case, require_modelled
from xlayer.safe_yaml import package_constants
from xlayer.workload.inference_ops import AttentionSegment, embedding_ops, inference_layer, output_ops
from xlayer.workload.precision import weight_bytes_per_param
from xlayer.workload.transformer import windowed_segment
from xlayer.workload.model import ModelSpec
from xlayer.workload.operators import ACT_BYTES

from xlayer.units import GIB


@dataclass(frozen=True)
class InferenceCalibration:
    serving_memory_fraction: float


def inference_calibration() -> InferenceCalibration:
    """The constants of ``xlayer/data/inference.yaml`` (each with its source there)."""
    return package_constants(InferenceCalibration, "inference.yaml")


# --------------------------------------------------------------------------------------
# configuration resolved from a case

@dataclass(frozen=True)
class InferenceSetup:
    model: ModelSpec
    system: System
    tp: int
    pp: int
    dp: int
    precision: str
    kv_precision: str
    attention: str
    batch: int  # sequences per model replica (the busiest replica: ⌈request.batch/dp⌉)
    prompt_len: int
    context_len: int
    output_len: int | None
    decode_context: float  # mean tokens already in the KV cache at a decode step
    assumptions: tuple[str, ...]
    request_batch: int = 0  # sequences over all replicas (request.batch)
    # the software stack's kernel terms (xlayer.mapping.profiles): host time per launched kernel
    # of an eager host (None: the host runs ahead), per-kernel GPU floor (None: the catalog's)
    host_dispatch_s: float | None = None
    kernel_floor_s: float | None = None
    eager_kernels_per_layer: int | None = None
    fused_gated_mlp: bool = True  # the stack's gate and up projections as one GEMM
    # the stack's fused MoE timed from published measurements (xlayer.cost.measured_moe)
    moe_kernel_table: str | None = None
    logits_every_position: bool = False  # a prompt's forward runs the output layer on every position
    eager_modules: bool = False  # a dense Llama layer runs the Hugging Face modules' element-wise kernels
    eager_gelu_new: bool = False  # a GELU layer's activation is Hugging Face's written-out tanh GELU
    # BLAS workspace the framework allocates through its caching allocator (the profile's
    # StepMemory.library_workspace_bytes: PyTorch's cuBLAS workspace)
    library_workspace_bytes: float = 0.0
    # expert parallelism over the tensor-parallel ranks (ep = tp): each holds E/ep whole routed
    # experts, every rank sees the same tokens and the MLP's all-reduce combines the experts'
    # outputs (vLLM --enable-expert-parallel / TensorRT-LLM moe_expert_parallel_size with
    # tensor-parallel attention); 1: experts split over tp like the dense layers
    ep: int = 1
    # the eager modules' KV-cache update (StackProfile.kv_cache): "dynamic" torch.cat, "static" in place
    kv_cache: str = "dynamic"

    @property
    def decode_steps(self) -> int:
        """Decode steps of the generation: output_len − 1 after a prefill (it emits the first
        token), output_len without one (prompt_len 0); 0 when output_len is not stated."""
        return decode_steps(self.prompt_len, self.output_len)


def decode_steps(prompt_len: int, output_len: int | None) -> int:
    """output_len − 1 decode steps after a prefill, output_len without one."""
    if not output_len:
        return 0
    return output_len - 1 if prompt_len > 0 else output_len


def decode_context(context_len: int, prompt_len: int, output_len: int | None) -> float:
    """Mean number of tokens in the KV cache at a decode step of the generation: step k
    (k = 0 … steps−1) finds context_len + prompt_len + k (cached + prompt + the tokens
    generated and written so far), so the mean is context_len + prompt_len + (steps − 1)/2;
    with no decode step to average over (output_len 1 after a prefill, or not stated), the
    step right after the prompt: context_len + prompt_len."""
    n = decode_steps(prompt_len, output_len)
    return float(context_len + prompt_len) + (max(n, 1) - 1) / 2.0


def resolve_inference(case: Case) -> InferenceSetup:
    """Check the case and fill open choices (each default taken is listed)."""
    if case.kind != "inference":
        raise InputError("kind", case.kind, "predict_inference needs kind: inference")
    m, P, r = case.model, case.parallel, case.request
    if r.mode == "serving":
        raise InputError("request.mode", r.mode, "a serving case runs the continuous-batching model "
                                                 "(xlayer.serving.predict_serving; xlayer predict/validate/serve do)")
    require_modelled(case)
    notes: list[str] = list(m.defaults_taken)
    if m.mtp_inference_note():
        notes.append(m.mtp_inference_note())
    if m.sliding_window is not None:
        notes.append(f"{m.sliding_window.layers} of {m.layers} layers attend over a sliding window of "
                     f"{m.sliding_window.size} keys (their KV cache keeps the last {m.sliding_window.size} tokens)")
    tp, pp = P.tp, P.pp
    count = case.system.count
    check_tensor_parallel(m, tp)
    if pp > m.layers:
        raise InputError("parallel.pp", pp, f"pp={pp} exceeds layers={m.layers}")
    if P.cp not in (None, 1):
        raise InputError("parallel.cp", P.cp, "context parallelism is not modelled for inference; use cp: 1")
    ep = P.ep or 1
    if ep > 1 and not (m.is_moe and ep == tp):
        raise InputError("parallel.ep", P.ep, f"a static batch models expert parallelism over the tensor-parallel "
                                              f"ranks of an MoE model: ep = tp = {tp} (serving cases also "
                                              f"model attention data parallel)")
    if ep > 1:
        notes.append(f"parallel.ep={ep}: routed experts split whole over the {tp} tensor-parallel ranks, which see "
                     "the same tokens; the MLP's all-reduce combines them (no all-to-all)")
    if count % (tp * pp):
        raise InputError("system.count", count, f"tp*pp={tp * pp} must divide the accelerator count")
    dp = P.dp or count // (tp * pp)
    if dp * tp * pp != count:
        raise InputError("parallel.dp", P.dp, f"dp*tp*pp must equal system.count={count}")
    if dp > 1 and P.dp is None:
        notes.append(f"parallel.dp={dp} (replicas: system.count/(tp*pp)); request.batch split over them")
    batch = math.ceil(r.batch / dp)
    total_ctx = r.context_len + r.prompt_len + (r.output_len or 0)
    if m.max_seq_len is not None and total_ctx > m.max_seq_len:
        raise InputError("request", total_ctx,
                         f"context_len + prompt_len + output_len = {total_ctx} exceeds model.max_seq_len={m.max_seq_len}")
    if r.prompt_len == 0 and r.context_len == 0 and not r.output_len:
        raise InputError("request", "{...}", "give prompt_len > 0, or context_len/output_len for decode")
    kv = case.kv_precision
    if kv is None:
        kv = "fp16" if case.precision == "fp16" else "bf16"
        notes.append(f"kv_precision={kv} (16-bit KV cache unless stated)")
    attention = m.attention or "flash"
    if m.attention is None:
        notes.append("model.attention=flash (fused attention in inference engines)")
    if r.batch < dp:
        notes.append(f"request.batch={r.batch} < dp={dp}: {dp - r.batch} replicas idle (their GPUs still count "
                     "in per-GPU throughput)")
    dctx = decode_context(r.context_len, r.prompt_len, r.output_len)
    if r.output_len:
        n = decode_steps(r.prompt_len, r.output_len)
        notes.append(f"decode context {dctx:g} = context_len + prompt_len + (steps-1)/2, the mean KV length over "
                     f"{n} decode steps" + (" (no prefill: output_len steps)" if r.prompt_len == 0 else ""))
    else:
        notes.append(f"request.output_len not stated: decode step at context = context_len + prompt_len = {dctx:g}")
    from xlayer.mapping.profiles import profile_for
    prof, why = profile_for(case.software.framework, case.software.version, case.software.mode)
    notes.append(why)
    # the per-kernel GPU floor: the profile's where it states one (the PyTorch profiles: 2.4 us,
    # measured on PyTorch's own kernels replayed in CUDA graphs on our H200), else the catalog's
    # (the fused engines' kernels — inductor, TensorRT-LLM — have no measured floor: docs/stacks.md)
    floor = prof.kernel_floor_s
    notes.append((f"per-kernel overhead {floor * 1e6:g} us ({prof.name}: {prof.file}, kernel_floor_s)" if floor is not None
                  else f"per-kernel overhead {case.system_spec().accelerator.kernel_overhead_s * 1e6:g} us (catalog)")
                 + (f"; host dispatch {prof.host_dispatch_s * 1e6:g} us per kernel bounds each pass from below"
                    if prof.host_dispatch_s else ""))
    if _runs_llama_modules(prof.eager_llama_elementwise, m):
        notes.append({"dynamic": "KV cache updated by torch.cat of the cached and new tokens each layer and step "
                                 f"(transformers DynamicCache; {prof.name}: {prof.file}, kv_cache)",
                      "static": "KV cache preallocated and written in place at the new positions (a static "
                                f"cache, as a CUDA graph needs; {prof.name}: {prof.file}, kv_cache)"}[prof.kv_cache])
    per_layer = None
    family = "gated" if m.gated else "plain"
    if prof.host_dispatch_s and prof.eager_kernels_per_layer and family in prof.eager_kernels_per_layer:
        per_layer = prof.eager_kernels_per_layer[family]
        notes.append(f"{per_layer} kernels per layer forward in {prof.name} ({prof.file})")
    elif prof.host_dispatch_s:
        notes.append(f"{prof.name} counts no {family} layer's kernels ({prof.file}): one per fused operator")
    if m.gated and not prof.fused_gated_mlp:
        notes.append(f"gate and up projections as two GEMMs ({prof.name}: {prof.file}, fused_gated_mlp)")
    if prof.logits_every_position and r.prompt_len > 1:
        notes.append(f"the prefill computes the output layer on all {r.prompt_len} positions of each prompt "
                     f"({prof.name}: {prof.file}, logits_every_position)")
    curve = moe_layer_curve(prof.moe_kernel_table, case.system_spec().accelerator.name, case.precision, m, tp=tp)
    if curve is not None:
        notes.append(f"MoE layer (permute, experts, activation, finalize) timed from the {curve.source}")
    return InferenceSetup(m, case.system_spec(), tp, pp, dp, case.precision, kv, attention, batch,
                          r.prompt_len, r.context_len, r.output_len, dctx, tuple(notes), r.batch,
                          prof.host_dispatch_s, floor, per_layer, prof.fused_gated_mlp, prof.moe_kernel_table,
                          prof.logits_every_position, prof.eager_llama_elementwise, prof.eager_gelu_new,
                          prof.step_memory.library_workspace_bytes if prof.step_memory is not None else 0.0,
                          ep, prof.kv_cache)


def _layer_costs(s: InferenceSetup, layer, acc, floor) -> list[OpCost]:
    """One layer's operator costs (then its collectives): the roofline of each operator, the
    fused MoE's operators replaced by its measured time where the stack has one."""
    curve = moe_layer_curve(s.moe_kernel_table, acc.name, s.precision, s.model, tp=1 if s.ep > 1 else s.tp, ep=s.ep)
    ops = [op_cost(o, acc, floor) for o in layer.ops if curve is None or o.name not in FUSED_MOE_OPS]
    if curve is not None:  # one record with the FLOPs and bytes of the operators it stands for
        fused = [o for o in layer.ops if o.name in FUSED_MOE_OPS]
        t = float(curve_time_s(curve, layer.tokens))
        ops.append(OpCost("moe_fused_measured", "moe_measured", t, 0.0, 0.0, 0.0, 0.0, 0.0,
                          float(sum(o.flops for o in fused)), float(sum(o.bytes for o in fused)), "measured"))
    return ops


# --------------------------------------------------------------------------------------
# one forward pass

@dataclass
class PassResult:
    """One forward pass (prefill, decode step, or mixed serving step)."""

    name: str
    time_s: float
    tokens: float
    layer_ops: list[OpCost]  # one layer: operators then collectives
    extras: list[OpCost]  # embedding, output layer, logits gather
    layers: int
    breakdown_s: dict[str, float]

    def op_rows(self) -> list[dict[str, Any]]:
        """Every operator with its share of the pass (layer ops × layers)."""
        rows = []
        for c in self.layer_ops:
            total = c.time_s * self.layers
            rows.append(_row(c, self.name, total / self.time_s, per_layer=True))
        for c in self.extras:
            rows.append(_row(c, self.name, c.time_s / self.time_s, per_layer=False))
        return rows

    def bound_shares(self) -> dict[str, float]:
        """Share of the pass time by bound: each operator's roofline time goes to its bound,
        its fixed per-kernel cost to ``kernel overhead``, and the time an eager host's launches
        add beyond the GPU's work to ``host`` (the shares sum to 1)."""
        out: dict[str, float] = {}
        for r in self.op_rows():
            ov = r["overhead_s"] / r["time_s"] * r["share"] if r["time_s"] else 0.0
            out[r["bound"]] = out.get(r["bound"], 0.0) + r["share"] - ov
            if ov:
                out["kernel overhead"] = out.get("kernel overhead", 0.0) + ov
        host = self.breakdown_s.get("host_dispatch_bound", 0.0)
        if host > 0.0 and self.time_s:
            out["host"] = host / self.time_s
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    @property
    def bound(self) -> str:
        """The roofline bound (compute, hbm, l2, interconnect) holding the largest share, or
        ``host`` when an eager host's kernel launches set the pass time (the host floor is
        above the GPU's time: the pass would not get shorter with a faster GPU)."""
        if self.breakdown_s.get("host_dispatch_bound", 0.0) > 0.0:
            return "host"
        return next(k for k in self.bound_shares() if k not in ("kernel overhead", "host"))


def _row(c: OpCost, phase: str, share: float, per_layer: bool) -> dict[str, Any]:
    return {"phase": phase, "name": c.name, "kind": c.kind, "time_s": c.time_s, "flops": c.flops,
            "bytes": c.bytes, "intensity": (c.flops / c.bytes if c.bytes else None), "bound": c.bound,
            "compute_s": c.compute_s, "hbm_s": c.hbm_s, "l2_s": c.l2_s, "comm_s": c.comm_s,
            "overhead_s": c.overhead_s, "overhead_dominated": c.overhead_dominated, "share": share,
            "per_layer": per_layer}


def _runs_llama_modules(eager_modules: bool, m: ModelSpec) -> bool:
    """The stack runs a dense Llama-style layer (gated FFN, RMSNorm, RoPE, no MoE or MLA) as the
    Hugging Face modules do (``eager_llama_inference_ops``)."""
    return bool(eager_modules and m.gated and m.norm == "rmsnorm" and m.position == "rope" and not m.is_moe
                and m.mla is None)


def _stack_layer(s: InferenceSetup, layer, segments):
    """The layer's operators as the stack runs them: under ``eager_modules`` a dense Llama
    layer's element-wise kernels are the Hugging Face modules' (``eager_llama_inference_ops``);
    under ``eager_gelu_new`` a GELU layer's activation is ``NewGELUActivation``'s 8 kernels."""
    m = s.model
    if _runs_llama_modules(s.eager_modules, m):
        from dataclasses import replace as _replace
        from xlayer.workload.training_ops import eager_llama_inference_ops
        return _replace(layer, ops=eager_llama_inference_ops(m, layer.ops, segments, s.tp, s.precision,
                                                             s.kv_precision, s.kv_cache))
    if s.eager_gelu_new and m.activation == "gelu" and not m.is_moe:
        from dataclasses import replace as _replace
        from xlayer.workload.training_ops import eager_gelu_new_ops
        gelu, _ = eager_gelu_new_ops(m, sum(g.tokens for g in segments), s.tp)
        return _replace(layer, ops=[g for op in layer.ops for g in (gelu if op.name == "activation" else [op])])
    return layer


def _ep_kw(s: InferenceSetup, segments: list[AttentionSegment]) -> dict[str, Any]:
    """inference_layer's expert-parallel arguments: none at ep = 1; else the EP group (the TP
    ranks) routes the pass's tokens once, every rank holding them, with no all-to-all."""
    if s.ep <= 1:
        return {}
    return {"ep": s.ep, "group_tokens": sum(g.seqs * g.new for g in segments), "ep_comms": False}


def forward_pass(s: InferenceSetup, segments: list[AttentionSegment], name: str,
                 system: System | None = None) -> PassResult:
    """Latency of one forward pass of ``segments`` through all stages (module docstring)."""
    system = system or s.system
    acc = system.accelerator
    m = s.model
    layer = _stack_layer(s, inference_layer(m, segments, s.tp, s.precision, s.kv_precision, s.attention,
                                            fused_gate_up=s.fused_gated_mlp, **_ep_kw(s, segments)), segments)
    fl = s.kernel_floor_s
    ops = _layer_costs(s, layer, acc, fl) + [comm_cost(c, s.tp, system) for c in layer.comms]
    if m.sliding_window is not None:
        # the n sliding-window layers see windowed segments: the layer of the pass is the
        # layer-weighted mean of the two kinds (operator by operator, same names)
        wsegs = [windowed_segment(g, m.sliding_window.size) for g in segments]
        win = _stack_layer(s, inference_layer(m, wsegs, s.tp, s.precision, s.kv_precision, s.attention,
                                              fused_gate_up=s.fused_gated_mlp, **_ep_kw(s, wsegs)), wsegs)
        w_ops = _layer_costs(s, win, acc, fl) + [comm_cost(c, s.tp, system) for c in win.comms]
        ops = [blend_costs(a, b, m.sliding_window.layers / m.layers) for a, b in zip(ops, w_ops)]
    T = layer.tokens
    # the output layer's rows: the last position of each sequence, or every token of the pass
    # when the stack's forward computes all positions (logits_every_position)
    rows_out = T if s.logits_every_position else sum(seg.seqs for seg in segments)
    emb = [op_cost(o, acc, fl) for o in embedding_ops(m, T)]
    outs, out_comms = output_ops(m, rows_out, s.tp)
    last = [op_cost(o, acc, fl) for o in outs] + [comm_cost(c, s.tp, system) for c in out_comms]
    extras = emb + last
    p2p = 0.0
    if s.pp > 1:
        n_in = ranks_in_domain(2, s.tp, system.scale_up_size)
        p2p = float(collective_time_s("send_recv", T * m.hidden * ACT_BYTES, 2, n_in,
                                      system.scale_up, system.scale_out))
        extras = extras + [OpCost("pp_send_recv", "collective", p2p * (s.pp - 1), 0.0, 0.0, 0.0,
                                  p2p * (s.pp - 1), 0.0, 0.0, T * m.hidden * ACT_BYTES * (s.pp - 1),
                                  "interconnect")]
    L = m.layers
    bd: dict[str, float] = {}
    for c in ops:
        key = "tp_collective_time_s" if c.kind == "collective" else f"inference_op_time.{c.kind}"
        bd[key] = bd.get(key, 0.0) + c.time_s * L
    bd["embedding_ops"] = sum(c.time_s for c in emb)
    bd["output_ops"] = sum(c.time_s for c in last)
    if s.pp > 1:
        bd["pp_send_recv"] = p2p * (s.pp - 1)
    total = sum(bd.values())
    if s.host_dispatch_s:
        # an eager host issues every kernel of the pass; the GPU cannot finish before the host
        # has launched the last one (launches are asynchronous: max(GPU, kernels x host cost))
        per_layer = s.eager_kernels_per_layer or len(ops)
        host = (per_layer * L + len(extras)) * s.host_dispatch_s
        if host > total:
            bd["host_dispatch_bound"] = host - total
            total = host
    return PassResult(name, total, T, ops, extras, L, bd)


def stage_pass_time_s(s: InferenceSetup, segments: list[AttentionSegment], system: System | None = None) -> float:
    """Time of the busiest pipeline stage for one pass (⌈L/p⌉ layers + its edge work): the
    pace of a full pipeline in steady state."""
    full = forward_pass(s, segments, "stage", system)
    per_layer = sum(c.time_s for c in full.layer_ops)
    edge = max(full.breakdown_s["embedding_ops"], full.breakdown_s["output_ops"]) if s.pp > 1 else \
        full.breakdown_s["embedding_ops"] + full.breakdown_s["output_ops"]
    p2p = full.breakdown_s.get("pp_send_recv", 0.0) / max(1, s.pp - 1)
    return stage_layers(s.model.layers, s.pp) * per_layer + edge + (p2p if s.pp > 1 else 0.0)


# --------------------------------------------------------------------------------------
# memory

def memory_bytes(s: InferenceSetup, seqs: float, cached_tokens: float, pass_tokens: float,
                 pass_rows: float | None = None) -> dict[str, float]:
    """Weights + KV cache of ``seqs`` sequences × ``cached_tokens`` (every stage holds the KV
    of all of them for its own layers) + workspace of the largest pass (``pass_tokens``
    tokens, ``pass_rows`` sampled rows, default ``seqs``), busiest stage."""
    mb = weight_bytes(s.model, s.tp, s.pp, s.precision, s.ep)
    mb["kv_cache_bytes"] = seqs * cached_kv_tokens(s.model, cached_tokens) * kv_bytes_per_token(s.model, s.tp, s.pp,
                                                                                                 s.kv_precision)
    mb["workspace_bytes"] = workspace_bytes(s.model, pass_tokens, seqs if pass_rows is None else pass_rows, s.tp,
                                            pass_tokens if s.logits_every_position else 0.0)
    if s.library_workspace_bytes:
        mb["library_workspace_bytes"] = s.library_workspace_bytes
    return mb


def max_batch_fitting(s: InferenceSetup, cached_tokens: float, pass_tokens_per_seq: float, budget: float,
                      micro_batches: int = 1) -> int:
    """Largest number B of sequences whose weights + KV + workspace fit ``budget`` bytes on the
    busiest stage: B·cached·KV-per-token(stage) + workspace of one pass over B/micro_batches
    sequences (``micro_batches`` = p when a full pipeline splits B into p micro-batches)."""
    w = sum(weight_bytes(s.model, s.tp, s.pp, s.precision, s.ep).values()) + s.library_workspace_bytes
    per_seq = (cached_kv_tokens(s.model, cached_tokens) * kv_bytes_per_token(s.model, s.tp, s.pp, s.kv_precision)
               + workspace_bytes(s.model, pass_tokens_per_seq, 1, s.tp,
                                 pass_tokens_per_seq if s.logits_every_position else 0.0) / micro_batches)
    return max(0, int((budget - w) // per_seq))


# --------------------------------------------------------------------------------------
# the prediction

@dataclass
class InferencePrediction:
    case_id: str
    setup: InferenceSetup
    prefill: PassResult | None
    decode: PassResult
    generation_time_s: float | None
    memory_breakdown_bytes: dict[str, float]
    capacity_bytes: float
    crossover: dict[str, dict[str, int | None]]
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def memory_bytes(self) -> float:
        return sum(self.memory_breakdown_bytes.values())

    @property
    def assumptions(self) -> list[str]:
        return list(self.setup.assumptions)

    def to_dict(self) -> dict[str, Any]:
        s = self.setup
        phases = {}
        for p in (self.prefill, self.decode):
            if p is None:
                continue
            phases[p.name] = {"time_s": p.time_s, "tokens": p.tokens, "bound": p.bound,
                              "bound_shares": p.bound_shares(), "time_breakdown_s": p.breakdown_s,
                              "ops": p.op_rows()}
        return {
            "id": self.case_id, "kind": "inference",
            "layout": {"tp": s.tp, "pp": s.pp, "dp": s.dp, "ep": s.ep},
            "precision": s.precision, "kv_precision": s.kv_precision, "attention": s.attention,
            "request": {"batch_per_replica": s.batch, "prompt_len": s.prompt_len, "context_len": s.context_len,
                        "output_len": s.output_len, "decode_context": s.decode_context},
            "phases": phases, "generation_time_s": self.generation_time_s,
            "memory_gib": self.memory_bytes / GIB, "capacity_gib": self.capacity_bytes / GIB,
            "memory_breakdown_gib": {k: v / GIB for k, v in self.memory_breakdown_bytes.items()},
            "crossover_batch": self.crossover, "assumptions": self.assumptions, "metrics": self.metrics,
        }


    def to_frame(self):
        """One row (pandas): the headline numbers, layout and request, as
        ``TrainingPrediction``'s ``to_frame`` (xlayer.api.Prediction)."""
        import pandas as pd
        s = self.setup
        d = {"id": self.case_id, **self.metrics, "generation_time_s": self.generation_time_s,
             "memory_gib": self.memory_bytes / GIB, "capacity_gib": self.capacity_bytes / GIB,
             "decode_bound": self.decode.bound, "prefill_bound": self.prefill.bound if self.prefill else None,
             "layout.tp": s.tp, "layout.pp": s.pp, "layout.dp": s.dp, "precision": s.precision,
             "kv_precision": s.kv_precision, "request.batch": s.request_batch or s.batch * s.dp,
             "request.batch_per_replica": s.batch, "request.prompt_len": s.prompt_len,
             "request.context_len": s.context_len, "request.output_len": s.output_len,
             "decode_context": s.decode_context, "decode_steps": s.decode_steps}
        return pd.DataFrame([d]).set_index("id")

    def ops_frame(self):
        """Every operator of every phase with time, FLOPs, bytes, bound and share."""
        import pandas as pd
        rows = [r for p in (self.prefill, self.decode) if p is not None for r in p.op_rows()]
        return pd.DataFrame(rows).set_index(["phase", "name"])

    def memory_frame(self):
        """Memory terms in bytes and GiB."""
        import pandas as pd
        sr = pd.Series({k: float(v) for k, v in self.memory_breakdown_bytes.items()}, name="bytes")
        return pd.DataFrame({"bytes": sr, "gib": sr / GIB}).rename_axis("term")


def machine_balance(acc, precision: str) -> float:
    """Ridge point of the roofline, FLOP per HBM byte: the GEMM rate the model uses
    (``gemm_rate_flops_per_s``) ÷ the achievable HBM bandwidth (≈ 232 for an H100 in bf16)."""
    return gemm_rate_flops_per_s(acc, precision) / acc.hbm.achievable_bytes_per_s


def balance_crossover(build, acc, precision: str, hi: int = 1 << 16) -> dict[str, int | None]:
    """For every GEMM / attention operator of ``build(x)`` (x: an array of batch sizes or
    token counts), the smallest x in 1..hi at which its arithmetic intensity reaches the
    machine balance (:func:`machine_balance` of the operator's arithmetic): for a GEMM the
    FLOPs per weight byte, 2·m / bytes_per_weight (m = rows per GEMM); for attention FLOPs
    per HBM byte. None when it stays below up to ``hi``. The wave/tile effects of the
    compute rate do not enter: this is where the roofline's ridge is crossed."""
    xs = np.unique(np.concatenate([np.round(np.geomspace(1, hi, 400)), np.arange(1, 1025)]).astype(float))
    out: dict[str, int | None] = {}
    wb = weight_bytes_per_param(precision)
    for op in build(xs):
        if op.kind == "gemm":
            intensity = np.asarray(op.flops / (op.batch * op.k * op.n * wb), dtype=float)
        elif op.kind == "attention":
            intensity = np.asarray(op.flops / op.bytes, dtype=float)
        else:
            continue
        intensity = np.broadcast_to(intensity, xs.shape)
        hit = np.nonzero(intensity >= machine_balance(acc, op.precision) * (1 - 1e-12))[0]
        out[op.name] = int(xs[hit[0]]) if hit.size else None
    return out


def _decode_segments(s: InferenceSetup, batch: Any, context: float) -> list[AttentionSegment]:
    return [AttentionSegment(batch, 1, context)]


def _prefill_segments(s: InferenceSetup, batch: Any) -> list[AttentionSegment]:
    return [AttentionSegment(batch, s.prompt_len, s.context_len)]


def predict_inference(case: Case) -> InferencePrediction:
    """Predict prefill, decode and generation of an inference case."""
    s = resolve_inference(case)
    acc = s.system.accelerator
    prefill = forward_pass(s, _prefill_segments(s, s.batch), "prefill") if s.prompt_len > 0 else None
    decode = forward_pass(s, _decode_segments(s, s.batch, s.decode_context), "decode")

    # memory: KV of the longest context the request reaches, workspace of the largest pass
    max_ctx = s.context_len + s.prompt_len + (s.output_len or 0)
    pass_tokens = max(s.batch * s.prompt_len, s.batch)
    mem = memory_bytes(s, s.batch, max_ctx, pass_tokens)
    cap = acc.hbm.capacity_bytes
    need = sum(mem.values())
    if need > cap:
        fit = max_batch_fitting(s, max_ctx, max(1, s.prompt_len), cap)
        raise InputError("request.batch", case.request.batch,
                         f"weights + KV cache + workspace need {need / GIB:.1f} GiB per accelerator, "
                         f"HBM holds {cap / GIB:.1f} GiB (over by {(need - cap) / GIB:.1f} GiB); "
                         + (f"at most {fit * s.dp} sequences fit" if fit > 0 else
                            "the weights alone do not fit: raise tp/pp or lower the precision"))

    gen = None
    metrics: dict[str, float] = {}
    if prefill is not None:
        metrics["prefill_time_s"] = prefill.time_s
    metrics["decode_step_time_s"] = decode.time_s
    metrics["decode_tokens_per_s"] = 1.0 / decode.time_s
    if s.output_len:
        # the busiest replica (⌈batch/dp⌉ sequences) sets the time; every GPU of every replica counts
        gen = (prefill.time_s if prefill else 0.0) + s.decode_steps * decode.time_s
        total = (s.request_batch or s.batch * s.dp) * s.output_len
        metrics["output_tokens_per_s"] = total / gen
        metrics["output_tokens_per_s_per_gpu"] = total / gen / (s.tp * s.pp * s.dp)
    metrics["peak_memory_gib"] = need / GIB

    def dec_build(x):
        segs = _decode_segments(s, x, s.decode_context)
        return inference_layer(s.model, segs, s.tp, s.precision, s.kv_precision, s.attention,
                               fused_gate_up=s.fused_gated_mlp, **_ep_kw(s, segs)).ops
    cross = {"decode": balance_crossover(dec_build, acc, s.precision)}
    if s.prompt_len > 0:
        def pre_build(x):
            segs = _prefill_segments(s, x)
            return inference_layer(s.model, segs, s.tp, s.precision, s.kv_precision, s.attention,
                                   fused_gate_up=s.fused_gated_mlp, **_ep_kw(s, segs)).ops
        cross["prefill"] = balance_crossover(pre_build, acc, s.precision)
    return InferencePrediction(case.id, s, prefill, decode, gen, mem, cap, cross, metrics)


# --------------------------------------------------------------------------------------
# serving estimate

@dataclass
class ServingEstimate:
    case_id: str
    input_len: int
    output_len: int
    max_batch: int
    limit: str
    tokens_per_s_per_gpu: float
    tpot_s: float
    step_bound: str
    memory_breakdown_bytes: dict[str, float]
    budget_bytes: float
    curve: list[dict[str, float]]
    assumptions: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.case_id, "input_len": self.input_len, "output_len": self.output_len,
                "max_batch": self.max_batch, "limit": self.limit,
                "tokens_per_s_per_gpu": self.tokens_per_s_per_gpu, "tpot_s": self.tpot_s,
                "step_bound": self.step_bound,
                "memory_breakdown_gib": {k: v / GIB for k, v in self.memory_breakdown_bytes.items()},
                "budget_gib": self.budget_bytes / GIB, "curve": self.curve, "assumptions": self.assumptions}

    def to_frame(self):
        """One row (pandas): max batch, what limits it, tokens/s per GPU, TPOT."""
        import pandas as pd
        return pd.DataFrame([{"id": self.case_id, "input_len": self.input_len, "output_len": self.output_len,
                              "max_batch": self.max_batch, "limit": self.limit,
                              "tokens_per_s_per_gpu": self.tokens_per_s_per_gpu, "tpot_s": self.tpot_s,
                              "step_bound": self.step_bound,
                              "memory_gib": sum(self.memory_breakdown_bytes.values()) / GIB,
                              "budget_gib": self.budget_bytes / GIB}]).set_index("id")

    def curve_frame(self):
        """The throughput-vs-batch curve."""
        import pandas as pd
        return pd.DataFrame(self.curve).set_index("batch")


def serving_step(s: InferenceSetup, B: float, input_len: int, output_len: int) -> tuple[float, PassResult]:
    """TPOT of continuous batching at B concurrent sequences (module docstring): the busiest
    stage's pass over B/p decoding sequences + their share of prefill tokens, times p."""
    Bm = B / s.pp
    segs = [AttentionSegment(Bm, 1, input_len + output_len / 2.0)]
    if input_len > 0:
        segs.append(AttentionSegment(Bm / output_len, input_len, 0.0))
    stage = stage_pass_time_s(s, segs)
    full = forward_pass(s, segs, "serving")
    return s.pp * stage, full


def serving_estimate(case: Case, input_len: int | None = None, output_len: int | None = None,
                     max_batch: int | None = None, tpot_slo_s: float | None = None) -> ServingEstimate:
    """Largest batch whose weights + KV cache (+ workspace) fit the serving memory budget,
    and the tokens/s per GPU and TPOT of continuous batching at that batch."""
    s = resolve_inference(case)
    r = case.request
    I = input_len if input_len is not None else r.prompt_len
    O = output_len if output_len is not None else (r.output_len or 0)
    if O <= 0:
        raise InputError("--output-len", O, "the serving estimate needs output_len > 0 (option or request.output_len)")
    if s.model.max_seq_len is not None and I + O > s.model.max_seq_len:
        raise InputError("--input-len", I + O, f"input + output = {I + O} exceeds model.max_seq_len={s.model.max_seq_len}")
    cal = inference_calibration()
    cap = s.system.accelerator.hbm.capacity_bytes
    budget = cap * cal.serving_memory_fraction
    notes = list(s.assumptions) + [
        f"memory budget {cal.serving_memory_fraction:.0%} of HBM (vLLM gpu_memory_utilization default)",
        f"each sequence reserves KV for input + output = {I + O} tokens",
        f"chunked prefill: {I}/{O} prompt tokens per decoded token share every step"]
    pass_per_seq = 1.0 + I / O
    # every stage holds KV for all B sequences (its own layers); a pass carries B/p of them
    b_mem = max_batch_fitting(s, I + O, pass_per_seq, budget, micro_batches=s.pp)
    w = sum(weight_bytes(s.model, s.tp, s.pp, s.precision, s.ep).values())
    if b_mem < 1:
        raise InputError("system", f"{s.tp}x{s.pp} {s.system.accelerator.name}",
                         f"weights need {w / GIB:.1f} GiB per accelerator and one sequence's KV "
                         f"{(I + O) * kv_bytes_per_token(s.model, s.tp, s.pp, s.kv_precision) / GIB:.2f} GiB; "
                         f"the budget is {budget / GIB:.1f} GiB (over by "
                         f"{(w + (I + O) * kv_bytes_per_token(s.model, s.tp, s.pp, s.kv_precision) - budget) / GIB:.1f} GiB)"
                         ": raise tp/pp or lower the precision")
    limit = "HBM capacity: KV cache (weights + KV + workspace fill the budget)"
    B = b_mem
    if max_batch is not None and max_batch < B:
        B, limit = max_batch, f"engine max batch {max_batch}"
    # throughput curve over batch sizes
    grid = sorted({int(x) for x in np.unique(np.round(np.geomspace(1, max(B, 1), 24)))} | {B})
    curve = []
    for b in grid:
        tpot, _ = serving_step(s, b, I, O)
        curve.append({"batch": b, "tpot_s": tpot, "tokens_per_s_per_gpu": b / tpot / (s.tp * s.pp)})
    if tpot_slo_s is not None:
        ok = [c for c in curve if c["tpot_s"] <= tpot_slo_s]
        if not ok:
            raise InputError("--tpot-slo", tpot_slo_s, f"even batch 1 takes {curve[0]['tpot_s'] * 1e3:.2f} ms per token")
        if ok[-1]["batch"] < B:
            lo, hi = ok[-1]["batch"], next(c["batch"] for c in curve if c["tpot_s"] > tpot_slo_s)
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if serving_step(s, mid, I, O)[0] <= tpot_slo_s:
                    lo = mid
                else:
                    hi = mid
            B, limit = lo, f"TPOT SLO {tpot_slo_s * 1e3:g} ms"
    tpot, step = serving_step(s, B, I, O)
    mem = memory_bytes(s, B, I + O, B / s.pp * pass_per_seq, B / s.pp)
    return ServingEstimate(case.id, I, O, B, limit, B / tpot / (s.tp * s.pp), tpot, step.bound, mem, budget,
                           curve, notes)


# --------------------------------------------------------------------------------------
# human output



def print_inference(pred: InferencePrediction, console) -> None:
    """Rich, human-readable output of :func:`predict_inference`."""
    from rich.table import Table
    s = pred.setup
    console.print(f"[bold]{pred.case_id}[/bold]  {s.model.name} on {s.system.accelerator.name}  "
                  f"tp{s.tp} pp{s.pp} dp{s.dp}" + (f" ep{s.ep}" if s.ep > 1 else "") +
                  f"  weights {s.precision}, KV {s.kv_precision}, {s.attention} attention")
    line = []
    if pred.prefill is not None:
        line.append(f"prefill (TTFT) [bold]{_fmt_s(pred.prefill.time_s)}[/bold] ({pred.prefill.bound}-bound)")
    line.append(f"decode step (TPOT) [bold]{_fmt_s(pred.decode.time_s)}[/bold] ({pred.decode.bound}-bound, "
                f"{pred.metrics['decode_tokens_per_s']:.1f} tokens/s per sequence)")
    console.print("   ".join(line))
    if pred.generation_time_s is not None:
        console.print(f"static batch of {s.batch} x {s.output_len} tokens: {_fmt_s(pred.generation_time_s)}, "
                      f"{pred.metrics['output_tokens_per_s_per_gpu']:,.1f} output tokens/s per GPU")
    console.print(f"memory {pred.memory_bytes / GIB:.2f} GiB of {pred.capacity_bytes / GIB:.1f} GiB: " +
                  ", ".join(f"{k} {v / GIB:.2f}" for k, v in pred.memory_breakdown_bytes.items()))
    for p in (pred.prefill, pred.decode):
        if p is None:
            continue
        t = Table(title=f"{p.name}: {p.tokens:g} tokens, {_fmt_s(p.time_s)}; shares by bound: " +
                  ", ".join(f"{k} {100 * v:.0f} %" for k, v in p.bound_shares().items()))
        for col in ("op", "time/layer", "FLOP/B", "bound", "share", "crossover batch"):
            t.add_column(col, justify="left" if col in ("op", "bound") else "right")
        cross = pred.crossover.get(p.name, {})
        for r in p.op_rows():
            ai = "-" if r["intensity"] is None else f"{r['intensity']:.1f}"
            cb = "-"
            if r["name"] in cross:
                cb = str(cross[r["name"]]) if cross[r["name"]] is not None else "never"
            t.add_row(r["name"] + ("" if r["per_layer"] else " (once)"), _fmt_s(r["time_s"]), ai,
                      r["bound"] + ("*" if r["overhead_dominated"] else ""),
                      f"{100 * r['share']:.1f} %", cb)
        console.print(t)
    console.print("bound* : the fixed per-kernel overhead exceeds the roofline term. crossover batch: smallest "
                  "batch at which the operator's arithmetic intensity (GEMM: FLOP per weight byte) reaches the "
                  f"machine balance {machine_balance(s.system.accelerator, 'bf16'):.0f} FLOP/B in bf16 "
                  "(GEMM rate / HBM bandwidth; same prompt/context)")
    if pred.assumptions:
        console.print("assumed: " + "; ".join(pred.assumptions))


def print_serving(est: ServingEstimate, console) -> None:
    from rich.table import Table
    console.print(f"[bold]{est.case_id}[/bold]  serving, input {est.input_len} / output {est.output_len} tokens")
    console.print(f"max batch [bold]{est.max_batch}[/bold]   [bold]{est.tokens_per_s_per_gpu:,.0f}[/bold] "
                  f"output tokens/s per GPU   TPOT [bold]{_fmt_s(est.tpot_s)}[/bold]   step {est.step_bound}-bound")
    console.print(f"limited by: {est.limit}")
    console.print(f"memory at max batch (budget {est.budget_bytes / GIB:.1f} GiB): " +
                  ", ".join(f"{k} {v / GIB:.2f} GiB" for k, v in est.memory_breakdown_bytes.items()))
    t = Table(title="throughput vs batch")
    for col in ("batch", "TPOT", "tokens/s/GPU"):
        t.add_column(col, justify="right")
    for c in est.curve:
        t.add_row(str(c["batch"]), _fmt_s(c["tpot_s"]), f"{c['tokens_per_s_per_gpu']:,.0f}")
    console.print(t)
    console.print("assumed: " + "; ".join(est.assumptions))
