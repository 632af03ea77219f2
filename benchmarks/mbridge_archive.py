"""Out-of-sample check on the older Megatron-Bridge performance tables (not a test, no fitting).

    python benchmarks/mbridge_archive.py            # markdown table of every row + MAPE by group
    python benchmarks/mbridge_archive.py --moe      # the MoE rows only

The rows of benchmarks/data/mbridge-archive.csv are Megatron-Bridge's published pre-training
throughput for NeMo 25.09 (dropless rows), 25.11 and 26.02 (docs/performance-summary-archive.md),
the releases before the 26.04 cases of shared/validation/training. Each row becomes a case the
way those are written: iteration time = GBS x seq / (tokens/s/GPU x GPUs), dp = GPUs/(tp·pp·cp),
FSDP > 0 as ZeRO-3, SP / recompute / ZeRO / etp left open (the tables do not state them), the
architecture from the model's Hugging Face config. Nothing here feeds back into the model: it
says how the mechanisms carry to other releases, models (DeepSeek-V3: MLA, shared expert, dense
layers, MTP) and clusters (1,024 H100).
"""
from __future__ import annotations

import argparse
import csv
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "data" / "mbridge-archive.csv"

_LLAMA = dict(activation="swiglu", position="rope", bias=False, tied_embeddings=False, norm="rmsnorm", vocab=128256)
# architectures from the models' published Hugging Face config.json
MODELS = {
    "l8": dict(name="Llama 3 8B", layers=32, hidden=4096, heads=32, kv_heads=8, ffn_hidden=14336, **_LLAMA),
    "l70": dict(name="Llama 3 70B", layers=80, hidden=8192, heads=64, kv_heads=8, ffn_hidden=28672, **_LLAMA),
    "l405": dict(name="Llama 3.1 405B", layers=126, hidden=16384, heads=128, kv_heads=8, ffn_hidden=53248, **_LLAMA),
    "oss": dict(name="GPT-OSS 120B", layers=36, hidden=2880, heads=64, kv_heads=8, head_dim=64, ffn_hidden=2880,
                vocab=201088, activation="swiglu", position="rope", bias=True, tied_embeddings=False, norm="rmsnorm",
                sliding_window={"size": 128, "layers": 18},
                moe={"experts": 128, "top_k": 4, "ffn_hidden": 2880, "shared_experts": 0, "dense_layers": 0}),
    "q30": dict(name="Qwen3 30B-A3B", layers=48, hidden=2048, heads=32, kv_heads=4, head_dim=128, ffn_hidden=6144,
                vocab=151936, activation="swiglu", position="rope", bias=False, tied_embeddings=False, norm="rmsnorm",
                moe={"experts": 128, "top_k": 8, "ffn_hidden": 768, "shared_experts": 0, "dense_layers": 0}),
    "q235": dict(name="Qwen3 235B-A22B", layers=94, hidden=4096, heads=64, kv_heads=4, head_dim=128,
                 ffn_hidden=12288, vocab=151936, activation="swiglu", position="rope", bias=False,
                 tied_embeddings=False, norm="rmsnorm",
                 moe={"experts": 128, "top_k": 8, "ffn_hidden": 1536, "shared_experts": 0, "dense_layers": 0}),
    "ds": dict(name="DeepSeek-V3", layers=61, hidden=7168, heads=128, kv_heads=128, ffn_hidden=18432, vocab=129280,
               activation="swiglu", position="rope", bias=False, tied_embeddings=False, norm="rmsnorm",
               moe={"experts": 256, "top_k": 8, "ffn_hidden": 2048, "shared_experts": 1, "dense_layers": 3},
               mla={"q_lora_rank": 1536, "kv_lora_rank": 512, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64,
                    "v_head_dim": 128}),
}
MODELS["dsmtp"] = dict(MODELS["ds"], mtp_layers=1)  # the row says "w/ MTP"
ACCELERATORS = {"GB300": ("GB300-NVL72", 72), "GB200": ("GB200-NVL72", 72), "B300": ("B300-SXM-288GB", 8),
                "B200": ("B200-SXM-180GB", 8), "H100": ("H100-SXM-80GB", 8)}
PRECISIONS = {"NVFP4": "nvfp4", "MXFP8": "mxfp8", "FP8": "fp8", "FP8-CS": "fp8", "FP8-MX": "mxfp8", "BF16": "bf16"}


def rows() -> list[dict]:
    with open(DATA) as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))


def case_of(r: dict) -> dict:
    acc, domain = ACCELERATORS[r["system"]]
    g, tp, pp, cp = int(r["gpus"]), int(r["tp"]), int(r["pp"]), int(r["cp"])
    vp = int(r["vp"]) if r["vp"] else 1  # "n/a" in the table: no interleaving
    gbs, seq = int(r["gbs"]), int(r["seq"])
    model = dict(MODELS[r["model"]], seq_len=seq)
    prec = PRECISIONS[r["precision"]]
    return {"id": f"mb{r['release'].replace('.', '')}-{r['system'].lower()}-{r['model']}-{g}-{prec}",
            "kind": "training", "software": {"framework": "megatron-bridge", "version": r["release"]},
            "model": model, "system": {"accelerator": acc, "count": g, "scale_up_size": domain},
            "parallel": {"tp": tp, "pp": pp, "dp": g // (tp * pp * cp), "cp": cp, "vp": vp, "sp": None,
                         "recompute": None, "zero": 3 if int(r["fsdp"]) else None, "ep": int(r["ep"]), "etp": None},
            "batch": {"global": gbs, "micro": int(r["mbs"])}, "precision": prec,
            "measured": {"iteration_time_s": gbs * seq / (float(r["tokens_per_s_per_gpu"]) * g)}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--moe", action="store_true", help="MoE rows only")
    a = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from xlayer.prediction.case import case_from_dict
    from xlayer.prediction.training import predict_training

    groups: dict[str, list[float]] = {}
    print("| row | layout chosen | measured s | predicted s | error |\n|---|---|---|---|---|")
    for r in rows():
        moe = "moe" in MODELS[r["model"]]
        if a.moe and not moe:
            continue
        c = case_of(r)
        p = predict_training(case_from_dict(c), energy=False)
        meas = c["measured"]["iteration_time_s"]
        err = 100.0 * (p.iteration_time_s / meas - 1.0)
        groups.setdefault(f"{'MoE' if moe else 'dense'} {r['system']}", []).append(err)
        print(f"| {c['id']} | {p.layout.describe()} | {meas:.2f} | {p.iteration_time_s:.2f} | {err:+.1f} % |")
    print("\n| group | rows | MAPE | mean error |\n|---|---|---|---|")
    for k in sorted(groups):
        e = groups[k]
        print(f"| {k} | {len(e)} | {statistics.mean(abs(x) for x in e):.1f} % | {statistics.mean(e):+.1f} % |")
    every = [x for e in groups.values() for x in e]
    print(f"| all | {len(every)} | {statistics.mean(abs(x) for x in every):.1f} % | {statistics.mean(every):+.1f} % |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
