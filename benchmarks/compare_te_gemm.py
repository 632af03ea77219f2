"""Set xlayer's GEMM and quantize kernels beside Transformer Engine's own published GEMM profile
(out of sample, nothing fitted).

    python benchmarks/compare_te_gemm.py

benchmarks/data/te-gemm-profiling-b300.csv is the example of TE's GEMM-profiling guide
(docs/features/low_precision_training/gemm_profiling/gemm_profiling.rst @332941783): a 4096 /
16384 transformer layer at 15,872 tokens on a B300, in BF16, MXFP8 and NVFP4 (FP8 block scaling
too, which xlayer does not model). Two modes:

* **autocast**: one ``te.Linear`` forward per GEMM shape under ``te.autocast``, so each timing
  holds the GEMM plus the quantization of its input (row-wise and column-wise copies: the weight
  requires grad, so the input is kept for the weight gradient) and of its weight (quantized on
  every call, as with ``is_first_microbatch=None``) — priced here as
  ``xlayer.workload.training_ops.quantize`` of each (an NVFP4 weight with ``rht=False``: 2D
  scales, no Hadamard transform) + the GEMM;
* **prequant**: the 12 GEMMs of the layer (forward, data and weight gradients) on operands
  quantized before the timed loop — the GEMMs alone.

Timings are short CUDA-event bursts, so the model runs at the burst GEMM rate
(``calibration().isolated()``) with the catalog's per-kernel floor.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from published_tables import read_commented_csv  # noqa: E402
from xlayer.cost.compute import calibration, op_time  # noqa: E402
from xlayer.hardware import get_accelerator  # noqa: E402
from xlayer.workload.operators import gemm  # noqa: E402
from xlayer.workload.training_ops import quantize  # noqa: E402

DATA = ROOT / "benchmarks" / "data" / "te-gemm-profiling-b300.csv"
PART = "B300-SXM-288GB"
PRECISIONS = ("bf16", "mxfp8", "nvfp4")
HIDDEN, FFN = 4096, 16384
FORWARD = ((HIDDEN, 3 * HIDDEN), (HIDDEN, HIDDEN), (HIDDEN, FFN), (FFN, HIDDEN))  # (k, n) per GEMM


def _t(op, acc, cal) -> float:
    return float(op_time(op, acc, cal).time_s)


def autocast_s(m: int, k: int, n: int, precision: str, acc, cal) -> float:
    """One te.Linear forward under autocast: the input's and the weight's casts and the GEMM."""
    t = _t(gemm("gemm", m, k, n, precision), acc, cal)
    if precision != "bf16":
        t += _t(quantize("input", m * k, precision), acc, cal)
        t += _t(quantize("weight", k * n, precision, rht=False), acc, cal)
    return t


def layer_gemms_s(m: int, precision: str, acc, cal, autocast: bool) -> float:
    """The layer's 12 GEMMs (each forward GEMM's data gradient [m, n] x [n, k] and weight
    gradient [k, m] x [m, n]), as the guide's tool times them: each as a te.Linear of its own
    shape under autocast, or on pre-quantized operands."""
    total = 0.0
    for k, n in FORWARD:
        for shape in ((m, k, n), (m, n, k), (k, m, n)):
            total += autocast_s(*shape, precision, acc, cal) if autocast else \
                _t(gemm("gemm", *shape, precision), acc, cal)
    return total


def compare() -> list[dict]:
    acc, cal = get_accelerator(PART), calibration().isolated()
    rows = []
    for r in read_commented_csv(DATA):
        for p in PRECISIONS:
            meas = float(r[f"{p}_ms"]) * 1e-3
            m = int(r["m"])
            if r["kind"] == "fprop":
                model = autocast_s(m, int(r["k"]), int(r["n"]), p, acc, cal)
            else:
                model = layer_gemms_s(m, p, acc, cal, autocast=r["mode"] == "autocast")
            rows.append({"kind": r["kind"], "op": r["op"], "mode": r["mode"], "precision": p,
                         "measured_s": meas, "model_s": model, "error_pct": 100.0 * (model / meas - 1.0)})
    return rows


def main() -> int:
    rows = compare()
    print(f"{'kind':6s} {'op':9s} {'mode':9s} {'precision':9s} {'measured ms':>12s} {'model ms':>9s} {'error':>8s}")
    for r in rows:
        print(f"{r['kind']:6s} {r['op']:9s} {r['mode']:9s} {r['precision']:9s} {r['measured_s'] * 1e3:12.3f} "
              f"{r['model_s'] * 1e3:9.3f} {r['error_pct']:+7.1f} %")
    by = {(r["mode"], r["precision"]): r for r in rows if r["kind"] == "layer"}
    for mode in ("autocast", "prequant"):
        for p in ("mxfp8", "nvfp4"):
            meas = by[(mode, "bf16")]["measured_s"] / by[(mode, p)]["measured_s"]
            mod = by[(mode, "bf16")]["model_s"] / by[(mode, p)]["model_s"]
            print(f"{mode:9s} {p} speed-up over bf16: measured {meas:.2f}x, model {mod:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
