"""Out-of-sample check on NVIDIA's DGX Cloud step-time tables (not a test, no fitting).

    python benchmarks/dgxc_weak_scaling.py          # every row, then per workload: MAPE and growth

The rows of benchmarks/data/dgxc-weak-scaling.csv are the step times NVIDIA/dgxc-benchmarking
published for NeMo pre-training on DGX Cloud (READMEs at v24.11.1 35a9aec, v25.02 8f5cbb3 and
v25.05.01 60d6fd3): GPT-3 175B, Llama 3.1 8B / 70B / 405B and Nemotron-4 15B / 340B on H100,
bf16 and fp8, 8 to 2,048 GPUs, the global batch growing with the GPU count (weak scaling: the
per-GPU work is fixed, so a step takes longer only through what grows with the data-parallel
group); and from v25.05.01 the MoE workloads (DeepSeek-V3 on 1,024 H100 and 128-512 GB200,
Grok-1 314B) and the GB200 NVL72 rows of Llama 3.1 405B and Nemotron-4 340B (with its
strong-scaling rows at GBS 512). Each row becomes a case:
dp = GPUs/(tp·pp·cp), SP / recompute / ZeRO left open (the titles do not state them), the
architecture from the model's published config. Two numbers per workload: the MAPE, and the
growth of the step time from the smallest to the largest scale, measured and predicted — under
weak scaling it isolates the data-parallel terms (overlap windows, buckets, collectives across
nodes); under strong scaling (fixed GBS) it is the speed-up.
"""
from __future__ import annotations

import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from published_tables import read_commented_csv  # noqa: E402

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
    "llama3.1-405b": dict(name="Llama 3.1 405B", layers=126, hidden=16384, heads=128, kv_heads=8, ffn_hidden=53248,
                          **_LLAMA),
    # Grok-1 (xai-org/grok-1 model.py): 8 experts, 2 per token, gated-GELU experts of 32,768
    "grok1-314b": dict(name="Grok-1 314B", layers=64, hidden=6144, heads=48, kv_heads=8, ffn_hidden=32768,
                       vocab=131072, activation="swiglu", position="rope", bias=False, tied_embeddings=False,
                       norm="rmsnorm", moe={"experts": 8, "top_k": 2, "ffn_hidden": 32768, "shared_experts": 0,
                                            "dense_layers": 0}),
}
SYSTEMS = {"H100": ("H100-SXM-80GB", 8), "GB200": ("GB200-NVL72", 72)}


def model_of(key: str) -> dict:
    if key == "deepseek-v3":  # the same Hugging Face architecture as the Megatron-Bridge archive's
        from mbridge_archive import MODELS as MB
        return dict(MB["ds"])
    return dict(MODELS[key])


def rows() -> list[dict]:
    return read_commented_csv(DATA)


def case_of(r: dict) -> dict:
    g, tp, pp, cp = int(r["gpus"]), int(r["tp"]), int(r["pp"]), int(r["cp"])
    acc, domain = SYSTEMS[r["system"]]
    model = dict(model_of(r["model"]), seq_len=int(r["seq"]))
    moe = "moe" in model
    return {"id": f"dgxc{r['release'].replace('.', '')}-{r['system'].lower()}-{r['model']}-{r['precision']}-{g}"
                  f"-gbs{r['gbs']}", "kind": "training",
            "software": {"framework": "nemo", "version": r["release"]}, "model": model,
            "system": {"accelerator": acc, "count": g, "scale_up_size": domain},
            "parallel": {"tp": tp, "pp": pp, "dp": g // (tp * pp * cp), "cp": cp, "vp": int(r["vp"]), "sp": None,
                         "recompute": None, "zero": None, "ep": int(r["ep"]) if moe else None,
                         "etp": int(r["etp"]) if moe else None},
            "batch": {"global": int(r["gbs"]), "micro": int(r["mbs"])}, "precision": r["precision"],
            "measured": {"iteration_time_s": float(r["step_s"])}}


def _moe(group: str) -> bool:
    return "moe" in model_of(group.split()[2])


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
        scaling = "strong" if r["file"] == "nemotron/README.md" and r["gbs"] == "512" else "weak"
        groups.setdefault(f"{r['release']} {r['system']} {r['model']} {r['precision']} {scaling}", []).append(
            (int(r["gpus"]), meas, p.iteration_time_s))
    print("\n| workload (scaling) | GPUs | MAPE | mean error | step growth measured | predicted |\n|---|---|---|---|---|---|")
    for k, v in groups.items():
        v.sort()
        e = [100.0 * (pr / me - 1.0) for _, me, pr in v]
        gm = 100.0 * (v[-1][1] / v[0][1] - 1.0)
        gp = 100.0 * (v[-1][2] / v[0][2] - 1.0)
        print(f"| {k} | {v[0][0]}–{v[-1][0]} | {statistics.mean(map(abs, e)):.1f} % | {statistics.mean(e):+.1f} % | "
              f"{gm:+.1f} % | {gp:+.1f} % |")
    print("\n| rows | n | MAPE | mean error |\n|---|---|---|---|")
    for name, sel in (("H100 dense", lambda k: " H100 " in k and not _moe(k)), ("GB200 dense", lambda k: "GB200" in k and not _moe(k)),
                      ("H100 MoE", lambda k: " H100 " in k and _moe(k)), ("GB200 MoE", lambda k: "GB200" in k and _moe(k)),
                      ("all", lambda k: True)):
        e = [100.0 * (pr / me - 1.0) for k, v in groups.items() if sel(k) for _, me, pr in v]
        if e:
            print(f"| {name} | {len(e)} | {statistics.mean(map(abs, e)):.1f} % | {statistics.mean(e):+.1f} % |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
