"""Set xlayer's flash-attention kernel model beside NVIDIA's published cuDNN SDPA training times.

    python benchmarks/compare_sdpa.py [benchmarks/data/cudnn-sdpa-training.csv] [--rows]

The data (benchmarks/data/cudnn-sdpa-training.csv, its header names the source) are cuDNN's
fused-attention forward and backward kernels — the kernels Transformer Engine runs for
Megatron-Core on Hopper and Blackwell (TE v2.14.1 ``get_attention_backend`` disables
FlashAttention "to give FusedAttention preference on Hopper+") — timed by NVIDIA for the
attention shapes of Llama 3.1, DeepSeek-V3, Kimi K2.6, Qwen3.5 and GPT-OSS (its 64-wide heads
with a 128-token sliding window on GB200/GB300, a 1,024-token one on H200) on H200, GB200 and
GB300, bf16, causal.

Each row is predicted with the operators a training step uses: the segment of
``xlayer.workload.transformer.training_segment`` (b sequences of s queries, the window's
keys where there is one), the flash operator of ``attention_ops`` (head dimension
(d_qk + d_v)/2, as for multi-head latent attention), its backward from
``xlayer.workload.training_ops.attention_backward``, each timed by
``xlayer.cost.compute.op_time`` on the catalog part at the burst GEMM rate
(``calibration().isolated()``: ten back-to-back calls, not a power-capped training step).
The flash constants were fitted on our own H200 (PyTorch SDPA) measurements, not on these:
this is an out-of-sample check of that fit on another kernel library and on Blackwell.
Prints the error per part and pass, and with ``--rows`` every row.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from published_tables import compare_or_explain, data_path, error_summary, read_commented_csv  # noqa: E402

from xlayer.cost.compute import calibration, op_time  # noqa: E402
from xlayer.hardware.catalog import get_accelerator
from xlayer.workload.model import ModelSpec
from xlayer.workload.training_ops import attention_backward
from xlayer.workload.transformer import attention_ops, training_segment

DEFAULT = Path(__file__).resolve().parent / "data" / "cudnn-sdpa-training.csv"
PART = {"NVIDIA H200": "H200-SXM-141GB", "NVIDIA GB200": "GB200-NVL72", "NVIDIA GB300": "GB300-NVL72"}


@dataclass(frozen=True)
class SdpaRow:
    gpu: str
    model: str
    seq: int
    q_heads: int
    head_dim: float
    window: int
    kernel_pass: str
    measured_s: float
    predicted_s: float

    @property
    def error_pct(self) -> float:
        return 100.0 * (self.predicted_s / self.measured_s - 1.0)


def read_rows(path: Path = DEFAULT) -> list[dict[str, str]]:
    return read_commented_csv(path)


def predict_row(r: dict[str, str]) -> SdpaRow:
    """xlayer's time for one published kernel (module docstring)."""
    b, s, h, g = int(r["batch"]), int(r["seq"]), int(r["q_heads"]), int(r["kv_heads"])
    d_qk, d_v, w = int(r["d_qk"]), int(r["d_v"]), int(r["window"])
    d = (d_qk + d_v) / 2.0
    model = ModelSpec(layers=1, hidden=h * d_v, heads=h, kv_heads=g, head_dim=d_v, vocab=1, seq_len=s)
    seg = training_segment(b, s, 1, w if w else None)
    (fwd,) = attention_ops(model, seg, 1, 2.0, "flash", head_dim=d, q_n=h * d, kv_n=g * d)
    op = fwd if r["pass"] == "fwd" else attention_backward(fwd)
    t = op_time(op, get_accelerator(PART[r["gpu"]]), calibration().isolated()).time_s
    return SdpaRow(r["gpu"], r["model"], s, h, d, w, r["pass"], float(r["time_ms"]) * 1e-3, float(t))


def compare(path: Path = DEFAULT) -> list[SdpaRow]:
    return [predict_row(r) for r in read_rows(path)]


def summary(rows: list[SdpaRow]) -> dict[tuple, tuple[int, float, float]]:
    """(gpu, pass) -> (rows, mean error %, mean absolute error %)."""
    return error_summary(rows, lambda r: (r.gpu, r.kernel_pass))


def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return 0
    path = data_path(argv, DEFAULT)
    if path is None:
        return 2
    rows = compare_or_explain(compare, path)
    if rows is None:
        return 2
    if "--rows" in argv:
        print(f"{'gpu':13s} {'model':9s} {'seq':>6s} {'heads':>5s} {'d':>5s} {'window':>6s} {'pass':4s} "
              f"{'measured ms':>11s} {'xlayer ms':>9s} {'error':>7s}")
        for r in rows:
            print(f"{r.gpu:13s} {r.model:9s} {r.seq:6d} {r.q_heads:5d} {r.head_dim:5.0f} {r.window:6d} "
                  f"{r.kernel_pass:4s} {r.measured_s * 1e3:11.3f} {r.predicted_s * 1e3:9.3f} {r.error_pct:+6.1f}%")
        print()
    print(f"{'gpu':13s} {'pass':4s} {'rows':>4s} {'mean error':>10s} {'MAPE':>6s}")
    for (gpu, p), (n, mean, mape) in summary(rows).items():
        print(f"{gpu:13s} {p:4s} {n:4d} {mean:+9.1f}% {mape:5.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
