"""How fast a GEMM with few rows streams its weights, from NVIDIA's published timings.

    python benchmarks/gemm_stream.py [benchmarks/data/trtllm-gemm-small-m.csv.gz]

A decode step's GEMMs have as many rows as sequences in the batch: at m = 1-16 a GEMM reads
its whole weight matrix for almost no arithmetic, so its time is the weights' bytes over the
bandwidth the GEMM kernel reaches. That is not the bandwidth of a copy kernel (the catalog's
HBM ``efficiency``, from STREAM-like copies): NVIDIA's own timings of TensorRT-LLM's
``Linear`` (cuBLAS) in a CUDA graph (benchmarks/data/trtllm-gemm-small-m.csv.gz, its header
names the source) reach less. For each part this prints

* the weight-streaming efficiency: the median, over bf16 GEMMs with m <= 16 rows and at least
  ``MIN_WEIGHT_BYTES`` of weights (so that the kernel's fixed latency is small beside the
  transfer), of the weights' bytes / (HBM peak x (measured time - graph-node floor - the
  activations' bytes at the copy bandwidth)), the floor being ``GRAPH_FLOOR_S`` (the pytorch-cuda-graph profile's, xlayer/data/stacks/pytorch.yaml) —
  the value the catalog carries as ``gemm_stream_efficiency`` (tests/test_gemm_stream.py
  checks that they agree);
* the model's error on every such shape (``xlayer.cost.compute.op_time`` at that floor), median
  and mean absolute, over all m <= 16 shapes and over the large-weight ones.

Nothing here is fitted to a validation case: the efficiency is a property of the part's GEMM
kernels at few rows, measured by the vendor.
"""
from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from published_tables import read_commented_csv  # noqa: E402

from xlayer.cost.compute import op_time  # noqa: E402
from xlayer.hardware.catalog import get_accelerator  # noqa: E402
from xlayer.workload.operators import gemm  # noqa: E402

DEFAULT = Path(__file__).resolve().parent / "data" / "trtllm-gemm-small-m.csv.gz"
PART = {"NVIDIA A100-SXM4-80GB": "A100-SXM-80GB", "NVIDIA H100 80GB HBM3": "H100-SXM-80GB",
        "NVIDIA H200": "H200-SXM-141GB", "NVIDIA B200": "B200-SXM-180GB", "NVIDIA B300 SXM6 AC": "B300-SXM-288GB",
        "NVIDIA GB200": "GB200-NVL72", "NVIDIA GB300": "GB300-NVL72"}
MIN_WEIGHT_BYTES = 64e6
GRAPH_FLOOR_S = 2.4e-6


def rows(path: Path = DEFAULT) -> list[dict[str, str]]:
    return read_commented_csv(path)


def stream_efficiency(path: Path = DEFAULT) -> dict[str, float]:
    """Catalog part -> the median weight-streaming efficiency of its few-row bf16 GEMMs."""
    acc = {p: get_accelerator(p) for p in PART.values()}
    effs: dict[str, list[float]] = {}
    for r in rows(path):
        part = PART[r["gpu"]]
        m, n, k = int(r["m"]), int(r["n"]), int(r["k"])
        if 2.0 * n * k < MIN_WEIGHT_BYTES:
            continue
        op = gemm("g", m, k, n, "bf16")
        # what is left for the weights once the floor and the activations (at the copy
        # bandwidth, as op_time prices them) are taken off
        t = float(r["latency_ms"]) * 1e-3 - GRAPH_FLOOR_S - (op.bytes - op.weight_bytes) / acc[part].hbm.achievable_bytes_per_s
        effs.setdefault(part, []).append(op.weight_bytes / (acc[part].hbm.bandwidth_bytes_per_s * t))
    return {p: statistics.median(v) for p, v in effs.items()}


def errors(path: Path = DEFAULT) -> dict[str, tuple[list[float], list[float]]]:
    """Catalog part -> (model error % on every m <= 16 shape, on those with large weights)."""
    acc = {p: get_accelerator(p) for p in PART.values()}
    out: dict[str, tuple[list[float], list[float]]] = {}
    for r in rows(path):
        part = PART[r["gpu"]]
        m, n, k = int(r["m"]), int(r["n"]), int(r["k"])
        pred = op_time(gemm("g", m, k, n, "bf16"), acc[part], kernel_overhead_s=GRAPH_FLOOR_S).time_s
        e = 100.0 * (pred / (float(r["latency_ms"]) * 1e-3) - 1.0)
        every, large = out.setdefault(part, ([], []))
        every.append(e)
        if 2.0 * n * k >= MIN_WEIGHT_BYTES:
            large.append(e)
    return out


def main(argv: list[str]) -> int:
    path = Path(argv[1]) if len(argv) > 1 else DEFAULT
    eff = stream_efficiency(path)
    err = errors(path)
    print("| part | streaming efficiency (data) | catalog gemm_stream_efficiency | copy efficiency (catalog) | "
          "error m<=16: median / MAPE | large weights: median / MAPE |\n|---|---|---|---|---|---|")
    for part, e in eff.items():
        a = get_accelerator(part)
        every, large = err[part]
        print(f"| {part} | {e:.3f} | {a.gemm_stream_efficiency} | {a.hbm.efficiency} | "
              f"{statistics.median(every):+.1f} % / {statistics.mean(map(abs, every)):.1f} % | "
              f"{statistics.median(large):+.1f} % / {statistics.mean(map(abs, large)):.1f} % |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
