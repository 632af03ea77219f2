"""Out-of-sample check on NVIDIA's DGX Cloud weak-scaling tables (not a test, no fitting).

    python benchmarks/dgxc_weak_scaling.py          # every row, then per workload: MAPE and growth

The rows of benchmarks/data/dgxc-weak-scaling.csv are the step times NVIDIA/dgxc-benchmarking
published for NeMo pre-training on DGX Cloud H100 (READMEs at v24.11.1 35a9aec and v25.02
8f5cbb3): GPT-3 175B, Llama 3.1 8B / 70B and Nemotron-4 15B / 340B, bf16 and fp8, 8 to 2,048
GPUs, the global batch growing with the GPU count (weak scaling: the per-GPU work is fixed, so a
step takes longer only through what grows with the data-parallel group). Each row becomes a case:
dp = GPUs/(tp·pp·cp), SP / recompute / ZeRO left open (the titles do not state them), the
architecture from the model's published config. Two numbers per workload: the MAPE, and the
growth of the step time from the smallest to the largest scale, measured and predicted — the
latter isolates the data-parallel terms (overlap windows, buckets, collectives across nodes).
"""
from __future__ import annotations

import csv
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "data" / "dgxc-weak-scaling.csv"

_LLAMA = dict(activation="swiglu", position="rope", bias=False, tied_embeddings=False, norm="rmsnorm", vocab=128256)
# Nemotron-4 (arXiv 2402.16819 §2, 2406.11704 Table 1): squared-ReLU MLP (two matrices, as a GELU
# one), GQA with 8 KV heads, RoPE, no bias, untied embeddings, 256,000-token vocabulary
_NEMOTRON = dict(activation="gelu", position="rope", bias=False, tied_embeddings=False, norm="layernorm", vocab=256000)
MODELS = {
    "gpt3-175b": dict(name="GPT-3 175B", layers=96, hidden=12288, heads=96, ffn_hidden=49152, vocab=51200,
                      activation="gelu", bias=True),
    "llama3.1-8b": dict(name="Llama 3.1 8B", layers=32, hidden=4096, heads=32, kv_heads=8, ffn_hidden=14336, **_LLAMA),
    "llama3.1-70b": dict(name="Llama 3.1 70B", layers=80, hidden=8192, heads=64, kv_heads=8, ffn_hidden=28672,
                         **_LLAMA),
    "nemotron4-15b": dict(name="Nemotron-4 15B", layers=32, hidden=6144, heads=48, kv_heads=8, ffn_hidden=24576,
                          **_NEMOTRON),
    "nemotron4-340b": dict(name="Nemotron-4 340B", layers=96, hidden=18432, heads=96, kv_heads=8, ffn_hidden=73728,
                           **_NEMOTRON),
}


def rows() -> list[dict]:
    with open(DATA) as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))


def case_of(r: dict) -> dict:
    g, tp, pp, cp = int(r["gpus"]), int(r["tp"]), int(r["pp"]), int(r["cp"])
    return {"id": f"dgxc{r['release'].replace('.', '')}-{r['model']}-{r['precision']}-{g}", "kind": "training",
            "software": {"framework": "nemo", "version": r["release"]},
            "model": dict(MODELS[r["model"]], seq_len=int(r["seq"])),
            "system": {"accelerator": "H100-SXM-80GB", "count": g, "scale_up_size": 8},
            "parallel": {"tp": tp, "pp": pp, "dp": g // (tp * pp * cp), "cp": cp, "vp": int(r["vp"]), "sp": None,
                         "recompute": None, "zero": None},
            "batch": {"global": int(r["gbs"]), "micro": int(r["mbs"])}, "precision": r["precision"],
            "measured": {"iteration_time_s": float(r["step_s"])}}


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from xlayer.prediction.case import case_from_dict
    from xlayer.prediction.training import predict_training

    groups: dict[str, list[tuple[int, float, float]]] = {}
    print("| row | layout | measured s | predicted s | error | dp exposed s |\n|---|---|---|---|---|---|")
    for r in rows():
        c = case_of(r)
        p = predict_training(case_from_dict(c), energy=False)
        meas = c["measured"]["iteration_time_s"]
        dp_s = p.time_breakdown_s.get("comm.dp_exposed", 0.0)
        print(f"| {c['id']} | {p.layout.describe()} | {meas:.3f} | {p.iteration_time_s:.3f} | "
              f"{100.0 * (p.iteration_time_s / meas - 1.0):+.1f} % | {dp_s:.3f} |")
        groups.setdefault(f"{r['release']} {r['model']} {r['precision']}", []).append(
            (int(r["gpus"]), meas, p.iteration_time_s))
    print("\n| workload | GPUs | MAPE | mean error | growth measured | growth predicted |\n|---|---|---|---|---|---|")
    errs = []
    for k, v in groups.items():
        v.sort()
        e = [100.0 * (pr / me - 1.0) for _, me, pr in v]
        errs += e
        gm = 100.0 * (v[-1][1] / v[0][1] - 1.0)
        gp = 100.0 * (v[-1][2] / v[0][2] - 1.0)
        print(f"| {k} | {v[0][0]}–{v[-1][0]} | {statistics.mean(map(abs, e)):.1f} % | {statistics.mean(e):+.1f} % | "
              f"{gm:+.1f} % | {gp:+.1f} % |")
    print(f"\nall {len(errs)} rows: MAPE {statistics.mean(map(abs, errs)):.1f} %, mean {statistics.mean(errs):+.1f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
