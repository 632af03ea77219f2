"""Work counts of an inference decode step, for :mod:`xlayer.cost.energy` to price.

The step is the one :func:`xlayer.prediction.inference.forward_pass` times — the operators of
:func:`xlayer.workload.inference_ops.inference_layer` on each of the L layers, the embedding
and the output layer, stages one after another (a pipeline adds no speed to one batch) —
and its counts are read off those same operators: FLOPs at each operator's arithmetic
(:func:`xlayer.cost.energy.flop_precision`), HBM bytes as declared, L2 bytes from each
operator's L2 time × the L2 bandwidth, the TP collectives' bytes per network tier
(:func:`xlayer.cost.energy.collective_bytes`) and the activation sends between stages.
Per-accelerator values × the tp ranks of a stage.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from xlayer.cost.collectives import ranks_in_domain
from xlayer.cost.energy import WorkCounts, collective_bytes, flop_precision
from xlayer.hardware.spec import System
from xlayer.prediction.inference import InferenceSetup, forward_pass
from xlayer.workload.inference_ops import AttentionSegment, embedding_ops, inference_layer, output_ops
from xlayer.workload.model import ModelSpec
from xlayer.workload.operators import ACT_BYTES


@dataclass
class DecodeStep:
    time_s: float
    tokens: float
    counts: WorkCounts
    breakdown_s: dict[str, float]
    bound: str
    method: str
    notes: list[str] = field(default_factory=list)


def decode_step(model: ModelSpec, system: System, tp: int, pp: int, batch: int, context: float,
                precision: str = "bf16", kv_precision: str = "bf16") -> DecodeStep:
    """One decode step of ``batch`` sequences at ``context`` cached tokens on one replica of
    tp·pp accelerators (module docstring); the breakdown splits the step into compute- and
    memory-bound roofline time, the per-kernel overhead, the TP collectives and the stage
    sends."""
    setup = InferenceSetup(model, system, tp, pp, 1, precision, kv_precision, "flash", batch, 0, int(context), 1,
                           float(context), (), batch)
    segs = [AttentionSegment(batch, 1, context)]
    res = forward_pass(setup, segs, "decode", system)
    L = res.layers
    bd = {"compute": 0.0, "memory": 0.0, "overhead": 0.0, "comm.tp": 0.0, "comm.pp": 0.0}
    for c, mult in [(c, L) for c in res.layer_ops] + [(c, 1) for c in res.extras]:
        if c.kind == "collective":
            bd["comm.pp" if c.name == "pp_send_recv" else "comm.tp"] += c.time_s * mult
            continue
        roof = max(c.compute_s, c.hbm_s, c.l2_s)
        bd["compute" if c.compute_s >= max(c.hbm_s, c.l2_s) else "memory"] += roof * mult
        bd["overhead"] += c.overhead_s * mult

    layer = inference_layer(model, segs, tp, precision, kv_precision, "flash")
    outs, out_comms = output_ops(model, batch, tp)
    flops: dict[str, float] = {}
    for op, mult in [(o, L) for o in layer.ops] + [(o, 1) for o in embedding_ops(model, layer.tokens) + outs]:
        fp = flop_precision(op, precision)
        flops[fp] = flops.get(fp, 0.0) + float(op.flops) * mult * tp
    compute_ops = [c for c in res.layer_ops if c.kind != "collective"]
    edge_ops = [c for c in res.extras if c.kind != "collective"]
    hbm = (sum(c.bytes for c in compute_ops) * L + sum(c.bytes for c in edge_ops)) * tp
    l2_bw = next((m.achievable_bytes_per_s for m in system.accelerator.memory if m.level == "l2"), 0.0)
    l2 = (sum(c.l2_s for c in compute_ops) * L + sum(c.l2_s for c in edge_ops)) * tp * l2_bw
    up = out = 0.0
    tp_in = ranks_in_domain(tp, 1, system.scale_up_size)
    for c in layer.comms:
        u, o = collective_bytes(c.collective, float(c.bytes), tp, tp_in)
        up, out = up + u * tp * L, out + o * tp * L
    act = batch * model.hidden * ACT_BYTES
    if pp > 1:
        if ranks_in_domain(2, tp, system.scale_up_size) >= 2:
            up += act * (pp - 1)
        else:
            out += act * (pp - 1)
    counts = WorkCounts(res.time_s, tp * pp, flops, l2, hbm, up, out, float(batch))
    return DecodeStep(res.time_s, float(batch), counts, bd, max(bd, key=bd.get),
                      "xlayer.prediction.inference.forward_pass")
