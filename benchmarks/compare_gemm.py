"""Set xlayer's GEMM model beside NVIDIA's published dense-GEMM latencies on six parts.

    python benchmarks/compare_gemm.py [benchmarks/data/trtllm-gemm.csv.gz] [--rows]
    python benchmarks/compare_gemm.py --edges [benchmarks/data/trtllm-gemm-edges.csv.gz]

The data (benchmarks/data/trtllm-gemm.csv.gz, its header names the source) are one
TensorRT-LLM ``Linear`` per shape, timed in a CUDA graph by NVIDIA's aiconfigurator collector
on H100, H200, B200, B300, GB200 and GB300: bf16 (cuBLAS) and per-tensor fp8 on the grid
m = 2,048…32,768 rows, n, k = 1,024…16,384. The fp8 Linear quantizes its input dynamically;
the same repository times that scale computation and quantization on their own, and the fp8
GEMM here is the measured time minus both (as aiconfigurator derives its static-fp8 GEMM),
so it is the matmul alone — what xlayer's ``gemm`` operator costs (its input quantization
is a separate ``quantize`` operator).

Each shape is the operator ``xlayer.workload.operators.gemm(m, k, n)`` timed by
``xlayer.cost.compute.op_time`` on the catalog part at the burst GEMM rate
(``calibration().isolated()``: graph replays, not a power-capped training step). Nothing is
fitted to these data: the catalog's rates are from MAMF tables and datasheets. Prints the
error per part and format (median, mean absolute) and with ``--rows`` every shape.

``--edges``: the same source's bf16 GEMMs at tile multiples and one row past them (m = 256,
257, …, 4096, 4097; benchmarks/data/trtllm-gemm-edges.csv.gz). Prints per part the error and
what one more row costs, measured and modelled (median of t(m+1)/t(m)), and at how many such
steps each jumps by more than a fifth: a data-parallel grid pays a whole extra wave of tiles
there (the model's ``xlayer.cost.compute.wave_utilization``), a stream-K schedule of the last
partial wave only the padding of one tile row.
"""
from __future__ import annotations

import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from published_tables import compare_or_explain, data_path, error_summary, read_commented_csv  # noqa: E402

from xlayer.cost.compute import calibration, op_time  # noqa: E402
from xlayer.hardware.catalog import get_accelerator
from xlayer.workload.operators import gemm

DEFAULT = Path(__file__).resolve().parent / "data" / "trtllm-gemm.csv.gz"
EDGES = Path(__file__).resolve().parent / "data" / "trtllm-gemm-edges.csv.gz"
PART = {"NVIDIA H100 80GB HBM3": "H100-SXM-80GB", "NVIDIA H200": "H200-SXM-141GB", "NVIDIA B200": "B200-SXM-180GB",
        "NVIDIA B300 SXM6 AC": "B300-SXM-288GB", "NVIDIA GB200": "GB200-NVL72", "NVIDIA GB300": "GB300-NVL72"}
FORMAT = {"bfloat16": ("bf16", 2), "fp8": ("fp8", 1)}


@dataclass(frozen=True)
class GemmRow:
    gpu: str
    fmt: str
    m: int
    n: int
    k: int
    measured_s: float
    predicted_s: float

    @property
    def error_pct(self) -> float:
        return 100.0 * (self.predicted_s / self.measured_s - 1.0)


def read_rows(path: Path = DEFAULT) -> list[dict[str, str]]:
    return read_commented_csv(path)


def matmul_s(r: dict[str, str]) -> float:
    """The measured matmul alone: the Linear's time, less the fp8 input's scale and quantize."""
    t = float(r["latency_ms"])
    if r["gemm_dtype"] == "fp8":
        t -= float(r["compute_scale_ms"]) + float(r["scale_matrix_ms"])
    return t * 1e-3


def compare(path: Path = DEFAULT) -> list[GemmRow]:
    cal = calibration().isolated()
    out = []
    for r in read_rows(path):
        prec, in_bytes = FORMAT[r["gemm_dtype"]]
        m, n, k = int(r["m"]), int(r["n"]), int(r["k"])
        op = gemm("gemm", m, k, n, prec, in_bytes=in_bytes)
        t = op_time(op, get_accelerator(PART[r["gpu"]]), cal).time_s
        out.append(GemmRow(r["gpu"], prec, m, n, k, matmul_s(r), float(t)))
    return out


def summary(rows: list[GemmRow]) -> dict[tuple, tuple[int, float, float]]:
    """(gpu, format) -> (shapes, median error %, mean absolute error %)."""
    return error_summary(rows, lambda r: (r.gpu, r.fmt), statistics.median)


def one_more_row_ratios(rows: list[GemmRow]) -> dict[str, tuple[list[float], list[float]]]:
    """gpu -> (measured, modelled) t(m+1)/t(m) for every shape with m a multiple of 256."""
    by = {(r.gpu, r.m, r.n, r.k): r for r in rows}
    out: dict[str, tuple[list[float], list[float]]] = {}
    for (gpu, m, n, k), r in by.items():
        nxt = by.get((gpu, m + 1, n, k))
        if m % 256 == 0 and nxt is not None:
            meas, pred = out.setdefault(gpu, ([], []))
            meas.append(nxt.measured_s / r.measured_s)
            pred.append(nxt.predicted_s / r.predicted_s)
    return dict(sorted(out.items()))


def one_more_row(rows: list[GemmRow]) -> dict[str, tuple[float, float]]:
    """gpu -> (measured, modelled) median over shapes of t(m+1)/t(m), m a multiple of 256."""
    return {g: (statistics.median(a), statistics.median(b)) for g, (a, b) in one_more_row_ratios(rows).items()}


def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return 0
    edges = "--edges" in argv
    path = data_path(argv, EDGES if edges else DEFAULT)
    if path is None:
        return 2
    rows = compare_or_explain(compare, path)
    if rows is None:
        return 2
    if edges:
        errs = error_summary(rows, lambda r: (r.gpu,), statistics.median)
        print(f"{'gpu':22s} {'shapes':>6s} {'median error':>12s} {'MAPE':>6s} {'one more row: measured':>23s} "
              f"{'xlayer':>7s} {'steps > +20 %: measured':>24s} {'xlayer':>6s}")
        for gpu, (meas, pred) in one_more_row_ratios(rows).items():
            n, med, mape = errs[(gpu,)]
            jumps = f"{sum(x > 1.2 for x in meas)} / {len(meas)}"
            print(f"{gpu:22s} {n:6d} {med:+11.1f}% {mape:5.1f}% {statistics.median(meas):22.3f}x "
                  f"{statistics.median(pred):6.3f}x {jumps:>24s} {sum(x > 1.2 for x in pred):6d}")
        return 0
    if "--rows" in argv:
        print(f"{'gpu':22s} {'fmt':4s} {'m':>6s} {'n':>6s} {'k':>6s} "
              f"{'measured us':>11s} {'xlayer us':>9s} {'error':>7s}")
        for r in rows:
            print(f"{r.gpu:22s} {r.fmt:4s} {r.m:6d} {r.n:6d} {r.k:6d} {r.measured_s * 1e6:11.1f} "
                  f"{r.predicted_s * 1e6:9.1f} {r.error_pct:+6.1f}%")
        print()
    print(f"{'gpu':22s} {'fmt':4s} {'shapes':>6s} {'median error':>12s} {'MAPE':>6s}")
    for (gpu, fmt), (n, med, mape) in summary(rows).items():
        print(f"{gpu:22s} {fmt:4s} {n:6d} {med:+11.1f}% {mape:5.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
