"""Out-of-sample check on torchtitan's published A100 throughput (not a test, no fitting).

    python benchmarks/torchtitan_a100.py      # each row: measured vs predicted step, layout, memory

The rows of benchmarks/data/torchtitan-a100.csv are the tokens per second per GPU that
pytorch/torchtitan's docs/performance.md reports for Llama 3 8B / 70B and Llama 2 13B / 70B
trained with FSDP2 on 64 A100 SXM 80GB (eager, bf16, local batch 1-2). Each row becomes a
case with ``software: torchtitan`` (xlayer/data/stacks/pytorch.yaml, profile ``torchtitan``):
dp = 64 with ZeRO-3, the table's activation checkpointing as ``recompute`` — ``no`` → none,
``full`` → full, ``selective op`` → selective, which under this stack is PyTorch's selective
activation checkpointing with torchtitan's per-op policy (every second matmul re-run:
``xlayer.workload.training_ops.op_sac_split``). The ``selective layer`` rows (every second
block fully checkpointed) have no mode in the case format and are skipped.
"""
from __future__ import annotations

import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from published_tables import read_commented_csv  # noqa: E402

DATA = ROOT / "benchmarks" / "data" / "torchtitan-a100.csv"

_LLAMA = dict(activation="swiglu", position="rope", bias=False, tied_embeddings=False, norm="rmsnorm")
# the models' published configurations (Meta's params.json: Llama 2 13B is multi-head, 70B GQA-8)
MODELS = {
    "llama3-8b": dict(name="Llama 3 8B", layers=32, hidden=4096, heads=32, kv_heads=8, ffn_hidden=14336,
                      vocab=128256, **_LLAMA),
    "llama3-70b": dict(name="Llama 3 70B", layers=80, hidden=8192, heads=64, kv_heads=8, ffn_hidden=28672,
                       vocab=128256, **_LLAMA),
    "llama2-13b": dict(name="Llama 2 13B", layers=40, hidden=5120, heads=40, kv_heads=40, ffn_hidden=13824,
                       vocab=32000, **_LLAMA),
    "llama2-70b": dict(name="Llama 2 70B", layers=80, hidden=8192, heads=64, kv_heads=8, ffn_hidden=28672,
                       vocab=32000, **_LLAMA),
}
RECOMPUTE = {"no": "none", "full": "full", "selective op": "selective"}
GPUS = 64


def rows() -> list[dict]:
    """The table's rows whose checkpointing the case format can state."""
    return [r for r in read_commented_csv(DATA) if r["ac"] in RECOMPUTE]


def case_of(r: dict) -> dict:
    b, seq = int(r["local_batch"]), int(r["seq"])
    return {"id": f"torchtitan-a100-{r['model']}-{r['ac'].replace(' ', '-')}", "kind": "training",
            "software": {"framework": "torchtitan", "version": "2024-04", "mode": "eager"},
            "model": dict(MODELS[r["model"]], seq_len=seq),
            "system": {"accelerator": "A100-SXM-80GB", "count": GPUS, "scale_up_size": 8},
            "parallel": {"tp": 1, "pp": 1, "dp": GPUS, "cp": 1, "zero": 3, "recompute": RECOMPUTE[r["ac"]]},
            "batch": {"global": b * GPUS, "micro": b}, "precision": "bf16",
            "measured": {"iteration_time_s": b * seq / float(r["wps"])}}


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from xlayer.prediction.case import case_from_dict
    from xlayer.prediction.training import predict_training

    errs = []
    print("| row | layout | measured s | predicted s | error | memory GiB |\n|---|---|---|---|---|---|")
    for r in rows():
        c = case_of(r)
        p = predict_training(case_from_dict(c), energy=False)
        meas = c["measured"]["iteration_time_s"]
        e = 100.0 * (p.iteration_time_s / meas - 1.0)
        errs.append(e)
        print(f"| {c['id']} | {p.layout.describe()} | {meas:.3f} | {p.iteration_time_s:.3f} | {e:+.1f} % | "
              f"{p.memory_bytes / 2**30:.1f} |")
    print(f"\n{len(errs)} rows: MAPE {statistics.mean(map(abs, errs)):.1f} %, mean {statistics.mean(errs):+.1f} %, "
          f"max {max(map(abs, errs)):.1f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
