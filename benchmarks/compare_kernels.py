"""Set xlayer's per-operator times beside kernels measured by `benchmarks/gpu_kernels.py`.

    python benchmarks/compare_kernels.py [benchmarks/data/h200-megatron-llama-kernels.json]

For each measured configuration the model builds the same operator list (training:
xlayer.workload.operators.layer_work, fp16, classic attention, dropout 0.1; inference:
xlayer.workload.inference_ops.inference_layer for one prefill segment) and times each operator
with xlayer.cost.compute.op_time on the catalog part the file was measured on, at the burst GEMM
rate (``calibration().isolated()``: the kernels were timed in short CUDA-graph bursts, not at
the power-capped steady state a training step runs at). Prints one row
per operator (measured, model, error) and the summed layer per configuration. Nothing here
feeds the calibration file by itself: it is the evidence behind the constants that cite it.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from xlayer.cost.compute import calibration, op_time
from xlayer.hardware.catalog import get_accelerator
from xlayer.workload.inference_ops import AttentionSegment, inference_layer
from xlayer.workload.model import ModelSpec
from xlayer.workload.operators import layer_work

DEFAULT = Path(__file__).resolve().parent / "data" / "h200-megatron-llama-kernels.json"
PART = {"NVIDIA H200": "H200-SXM-141GB", "NVIDIA H100 80GB HBM3": "H100-SXM-80GB"}


def model_ops(cfg: dict, family: str) -> dict:
    """name -> Op of the model for one measured configuration."""
    if family == "training":
        m = ModelSpec(name=cfg["name"], layers=1, hidden=cfg["h"], heads=cfg["heads"], ffn_hidden=cfg["ffn"],
                      vocab=51200, seq_len=cfg["s"], activation="gelu")
        w = layer_work(m, cfg["b"], cfg["tp"], cfg["sp"], 1, "fp16", "classic", 0.1)
        return {op.name: op for op in w.fwd + w.bwd}
    out = {}
    for prec in ("bf16", "fp8"):
        m = ModelSpec(name=cfg["name"], layers=1, hidden=cfg["h"], heads=cfg["heads"], kv_heads=cfg["kv_heads"],
                      ffn_hidden=cfg["ffn"], vocab=32000, seq_len=4096, activation="swiglu")
        layer = inference_layer(m, [AttentionSegment(1, cfg["tokens"], 0)], cfg["tp"], prec, "bf16", "flash")
        for op in layer.ops:
            if op.kind == "gemm":
                out[f"{op.name}@{prec}"] = op
            elif op.kind == "attention":
                out[op.name] = op
    return out


def compare(path: Path = DEFAULT) -> list[dict]:
    doc = json.loads(Path(path).read_text())
    acc = get_accelerator(PART.get(doc["device"].get("name"), doc["device"].get("name", "H200-SXM-141GB")))
    cal = calibration().isolated()
    rows = []
    for family in ("training", "inference"):
        for cfg in doc[family]:
            ops = model_ops(cfg, family)
            for k in (r for r in doc["kernels"] if r["config"] == cfg["name"]):
                op = ops.get(k["op"])
                if op is None:
                    continue
                t = op_time(op, acc, cal)
                rows.append({"config": cfg["name"], "op": k["op"], "measured_s": k["time_s"],
                             "model_s": float(t.time_s), "bound": t.bound, "kind": op.kind})
    return rows


def main(path: Path = DEFAULT) -> None:
    rows = compare(path)
    by_cfg: dict[str, list[dict]] = {}
    for r in rows:
        by_cfg.setdefault(r["config"], []).append(r)
        print(f"{r['config']:22s} {r['op']:20s} {r['bound']:8s} measured {r['measured_s'] * 1e6:9.1f} us  "
              f"model {r['model_s'] * 1e6:9.1f} us  {100 * (r['model_s'] / r['measured_s'] - 1):+6.1f} %")
    print()
    for cfg, rs in by_cfg.items():
        for kind in ("gemm", "elementwise", "attention", None):
            sel = [r for r in rs if kind is None or r["kind"] == kind]
            if not sel:
                continue
            mt, md = sum(r["measured_s"] for r in sel), sum(r["model_s"] for r in sel)
            print(f"{cfg:22s} {kind or 'all':12s} measured {mt * 1e3:8.3f} ms  model {md * 1e3:8.3f} ms  "
                  f"{100 * (md / mt - 1):+6.1f} %")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT)
