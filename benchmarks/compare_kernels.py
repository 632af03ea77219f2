"""Set xlayer's per-operator times beside kernels measured by `benchmarks/gpu_kernels.py`,
and its eager-PyTorch layer times beside the H200 kernel file's layers.

    python benchmarks/compare_kernels.py [benchmarks/data/h200-megatron-llama-kernels.json]
    python benchmarks/compare_kernels.py --layers [shared/validation/kernels/h200-pytorch-kernels.json]

``--layers``: each measured GPT pre-LN layer (bf16, flash SDPA, biases, GELU-tanh, no dropout;
timed with CUDA events around the layer in eager PyTorch) predicted with the ``pytorch-eager``
stack profile (xlayer/data/stacks/pytorch.yaml): the kernels of ``layer_work`` (autograd's own
backward kernels included: one bias-gradient reduction per biased linear layer, one gradient
accumulation at each residual junction), each at its roofline time + the profile's per-kernel
floor at the burst GEMM rate; forward = first dispatch + max(GPU time, host ops × host
dispatch), backward likewise, the host ops being the aten ops autograd issues (views
included: the profile's ``eager_autograd_ops_per_layer``, ``xlayer.engine.training.eager_host_ops``);
torch.utils.checkpoint runs the first forward without grad (its kernels only) and re-runs it
with grad inside the backward.

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
from xlayer.engine.training import eager_host_ops
from xlayer.mapping.profiles import get_profile
from xlayer.hardware.catalog import get_accelerator
from xlayer.workload.inference_ops import AttentionSegment, inference_layer
from xlayer.workload.model import ModelSpec
from xlayer.workload.training_ops import layer_work

DEFAULT = Path(__file__).resolve().parent / "data" / "h200-megatron-llama-kernels.json"
LAYERS = Path(__file__).resolve().parents[2] / "shared" / "validation" / "kernels" / "h200-pytorch-kernels.json"
PART = {"NVIDIA H200": "H200-SXM-141GB", "NVIDIA H100 80GB HBM3": "H100-SXM-80GB"}


def model_ops(cfg: dict, family: str, torch_kernels: bool = True) -> dict:
    """name -> [Op] of the model for one measured configuration: the kernels a measured
    operator stands for (PyTorch's own ``name:part`` kernels summed under ``torch_kernels``,
    as gpu_kernels.py runs them: ``F.layer_norm``, ``torch.softmax``, ``native_dropout``)."""
    if family == "training":
        m = ModelSpec(name=cfg["name"], layers=1, hidden=cfg["h"], heads=cfg["heads"], ffn_hidden=cfg["ffn"],
                      vocab=51200, seq_len=cfg["s"], activation="gelu")
        w = layer_work(m, cfg["b"], cfg["tp"], cfg["sp"], 1, "fp16", "classic", 0.1, eager_modules=torch_kernels)
        grouped: dict[str, list] = {}
        for op in w.fwd + w.bwd:
            grouped.setdefault(op.name.split(":")[0], []).append(op)
        return grouped
    out = {}
    for prec in ("bf16", "fp8"):
        m = ModelSpec(name=cfg["name"], layers=1, hidden=cfg["h"], heads=cfg["heads"], kv_heads=cfg["kv_heads"],
                      ffn_hidden=cfg["ffn"], vocab=32000, seq_len=4096, activation="swiglu")
        layer = inference_layer(m, [AttentionSegment(1, cfg["tokens"], 0)], cfg["tp"], prec, "bf16", "flash")
        for op in layer.ops:
            if op.kind == "gemm":
                out[f"{op.name}@{prec}"] = [op]
            elif op.kind == "attention":
                out[op.name] = [op]
    return out


def eager_layer_work(row: dict):
    """(model, layer work) of one eager-PyTorch GPT layer of the H200 kernel file."""
    h, s, b = row["h"], row["s"], row["b"]
    m = ModelSpec(name="eager-layer", layers=1, hidden=h, heads=row["heads"], ffn_hidden=4 * h, vocab=51200,
                  seq_len=s, activation="gelu")
    prof = get_profile("pytorch-eager")
    w = layer_work(m, b, 1, False, 1, "bf16", "flash", 0.0, fused_bias_grad=prof.fused_bias_grad,
                   eager_modules=prof.eager_llama_elementwise)
    assert m.bias, "the file's layers have biases"
    return m, w


def eager_layer_ops(row: dict):
    """(forward ops, backward ops) of one eager-PyTorch GPT layer of the H200 kernel file."""
    _, w = eager_layer_work(row)
    return w.fwd, w.bwd


def compare_layers(path: Path = LAYERS, profile: str = "pytorch-eager") -> list[dict]:
    """One row per measured layer and metric (fwd, fwd_bwd): measured, model (see module doc)."""
    doc = json.loads(Path(path).read_text())
    acc = get_accelerator(PART.get(doc["device"].get("name"), "H200-SXM-141GB"))
    cal = calibration().isolated()
    prof = get_profile(profile)
    host = prof.host_dispatch_s or 0.0
    rows = []
    for r in doc["layer"]:
        m, w = eager_layer_work(r)
        rc = "full" if r["recompute"] else "none"
        n_f, n_b, n_rc = eager_host_ops(w, m, rc, prof.eager_autograd_ops_per_layer)
        gpu_f = sum(float(op_time(o, acc, cal, kernel_overhead_s=prof.kernel_floor_s).time_s) for o in w.fwd)
        gpu_b = sum(float(op_time(o, acc, cal, kernel_overhead_s=prof.kernel_floor_s).time_s) for o in w.bwd)
        t_f = max(gpu_f, n_f * host)
        t_b = max(gpu_b, n_b * host) + (max(gpu_f, n_rc * host) if r["recompute"] else 0.0)
        pred = {"fwd_s": host + t_f, "fwd_bwd_s": host + t_f + t_b}
        for k in ("fwd_s", "fwd_bwd_s"):
            rows.append({"config": f"h{r['h']}-b{r['b']}-s{r['s']}{'-rc' if r['recompute'] else ''}", "op": k,
                         "measured_s": r[k], "model_s": pred[k], "kind": "layer",
                         "bound": "host" if (n_f * host > gpu_f or n_b * host > gpu_b) else "gpu"})
    return rows


def compare(path: Path = DEFAULT, profile: str = "pytorch-cuda-graph") -> list[dict]:
    """The per-operator file (kernels captured in CUDA graphs): each op at its roofline time +
    the ``profile``'s per-kernel floor (None: the catalog's) at the burst GEMM rate; the
    training layer's element-wise operators as the profile's modules run them
    (``eager_llama_elementwise``: PyTorch's kernels, which the file timed)."""
    doc = json.loads(Path(path).read_text())
    acc = get_accelerator(PART.get(doc["device"].get("name"), doc["device"].get("name", "H200-SXM-141GB")))
    cal = calibration().isolated()
    prof = get_profile(profile)
    floor = prof.kernel_floor_s
    rows = []
    for family in ("training", "inference"):
        for cfg in doc[family]:
            ops = model_ops(cfg, family, torch_kernels=prof.eager_llama_elementwise)
            for k in (r for r in doc["kernels"] if r["config"] == cfg["name"]):
                parts = ops.get(k["op"])
                if not parts:
                    continue
                ts = [op_time(op, acc, cal, kernel_overhead_s=floor) for op in parts]
                rows.append({"config": cfg["name"], "op": k["op"], "measured_s": k["time_s"],
                             "model_s": sum(float(t.time_s) for t in ts), "bound": ts[0].bound,
                             "kind": parts[0].kind, "kernels": len(parts)})
    return rows


def main_layers(path: Path = LAYERS) -> None:
    rows = compare_layers(path)
    for r in rows:
        print(f"{r['config']:22s} {r['op']:10s} {r['bound']:5s} measured {r['measured_s'] * 1e3:8.3f} ms  "
              f"model {r['model_s'] * 1e3:8.3f} ms  {100 * (r['model_s'] / r['measured_s'] - 1):+6.1f} %")
    errs = [abs(r["model_s"] / r["measured_s"] - 1) for r in rows]
    print(f"layers: MAPE {100 * sum(errs) / len(errs):.1f} %, max {100 * max(errs):.1f} %, "
          f"within 10 %: {sum(e <= 0.10 for e in errs)}/{len(errs)}")


def main(path: Path = DEFAULT) -> None:
    rows = compare(path)
    by_cfg: dict[str, list[dict]] = {}
    for r in rows:
        by_cfg.setdefault(r["config"], []).append(r)
        print(f"{r['config']:22s} {r['op']:20s} {r['bound']:8s} measured {r['measured_s'] * 1e6:9.1f} us  "
              f"model {r['model_s'] * 1e6:9.1f} us  {100 * (r['model_s'] / r['measured_s'] - 1):+6.1f} %")
    ew = [abs(r["model_s"] / r["measured_s"] - 1) for r in rows if r["kind"] == "elementwise"]
    if ew:
        print(f"element-wise kernels: MAPE {100 * sum(ew) / len(ew):.1f} %, within 10 %: "
              f"{sum(e <= 0.10 for e in ew)}/{len(ew)}")
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
    import argparse
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", action="store_true", help="eager-PyTorch layers of the H200 kernel file")
    ap.add_argument("file", nargs="?", type=Path, help="kernel file (default: per mode, above)")
    a = ap.parse_args()
    f = a.file or (LAYERS if a.layers else DEFAULT)
    if not f.is_file():
        ap.error(f"kernel file {f} not found (give its path)")
    try:
        keys = set(json.loads(f.read_text()))
    except (ValueError, UnicodeDecodeError) as e:
        ap.error(f"kernel file {f} is not JSON: {e}")
    layers = a.layers or ("layer" in keys and "kernels" not in keys)  # the layer file needs no flag
    need = {"layer", "device"} if layers else {"kernels", "device", "training", "inference"}
    if not need <= keys:
        ap.error(f"kernel file {f} lacks {sorted(need - keys)} (a {'layer' if layers else 'per-operator'} file "
                 "has them: see the modes above)")
    (main_layers if layers else main)(f)
