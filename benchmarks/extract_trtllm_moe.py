"""Extract the fused-MoE kernel table ``xlayer/data/kernels/trtllm-moe.csv.gz`` from NVIDIA's
published TensorRT-LLM operator measurements (ai-dynamo/aiconfigurator, Apache-2.0).

Source: github.com/ai-dynamo/aiconfigurator @ 095f58a51c4ca8e61b66ec108d86f223f8d559ce,
``aic-core/src/aiconfigurator_core/systems/data/<gpu>/moe/trtllm/<version>/moe_perf.parquet``,
collected by ``collector/trtllm/collect_moe.py``: one ``create_moe`` forward of TensorRT-LLM's
PyTorch flow (router logits given, so no router GEMM; input quantize, permute, fc1 grouped
GEMM, gated activation, fc2 grouped GEMM, finalize), autotuned, timed under a CUDA graph,
``balanced_logits`` routing (every expert the same load). Rows kept: ``distribution ==
balanced`` and ``kernel_source == moe_torch_flow_cutlass`` (``moe_torch_flow`` in the H200
1.2.0rc5 files, which name no backend: the collector's default there is CUTLASS) — the CUTLASS backend, what
TensorRT-LLM's ``MoeConfig.backend`` default selects for a gated MoE in bf16, fp8 or nvfp4
(the collector sets ``moe_backend = "cutlass"`` for these types outside min-latency mode).
Per GPU the earliest TensorRT-LLM version measured there with balanced routing (nearest the v1.0
serving cases; A100's 1.0.0 file has power-law routing only and is left out).

Run (needs the repository fetched under /work/.mirror and pandas/pyarrow):
    python benchmarks/extract_trtllm_moe.py /work/.mirror/ai-dynamo+aiconfigurator/repo
"""
from __future__ import annotations

import gzip
import io
import subprocess
import sys
from pathlib import Path

import pandas as pd

COMMIT = "095f58a51c4ca8e61b66ec108d86f223f8d559ce"
ROOT = "aic-core/src/aiconfigurator_core/systems/data"
# aiconfigurator system folder -> (xlayer catalog accelerator, TensorRT-LLM version measured)
GPUS = {
    "h100_sxm": ("H100-SXM-80GB", "1.2.0rc5"),
    "h200_sxm": ("H200-SXM-141GB", "1.2.0rc5"),
    "b200_sxm": ("B200-SXM-180GB", "1.2.0rc5"),
    "b300_sxm": ("B300-SXM-288GB", "1.3.0rc10"),
    "gb200": ("GB200-NVL72", "1.3.0rc10"),
    "gb300": ("GB300-NVL72", "1.3.0rc10"),
}
DTYPES = {"bfloat16": "bf16", "fp8": "fp8", "nvfp4": "nvfp4"}
OUT = Path(__file__).resolve().parent.parent / "xlayer" / "data" / "kernels" / "trtllm-moe.csv.gz"


def main(repo: str) -> None:
    frames = []
    for folder, (acc, version) in GPUS.items():
        path = f"{ROOT}/{folder}/moe/trtllm/{version}/moe_perf.parquet"
        raw = subprocess.run(["git", "-C", repo, "show", f"{COMMIT}:{path}"], check=True,
                             capture_output=True).stdout
        d = pd.read_parquet(io.BytesIO(raw))
        source = "moe_torch_flow_cutlass" if (d.kernel_source == "moe_torch_flow_cutlass").any() else "moe_torch_flow"
        d = d[(d.distribution == "balanced") & (d.kernel_source == source) & d.moe_dtype.isin(list(DTYPES))]
        d = d.assign(accelerator=acc, precision=d.moe_dtype.map(DTYPES), latency_us=(d.latency * 1e3).round(2))
        frames.append(d[["accelerator", "version", "precision", "hidden_size", "inter_size", "num_experts",
                         "topk", "moe_tp_size", "moe_ep_size", "num_tokens", "latency_us"]])
    out = pd.concat(frames).rename(columns={"hidden_size": "hidden", "inter_size": "ffn_hidden",
                                            "num_experts": "experts", "topk": "top_k", "moe_tp_size": "tp",
                                            "moe_ep_size": "ep", "num_tokens": "tokens"})
    out = out.groupby([c for c in out.columns if c != "latency_us"], as_index=False).latency_us.median()
    out = out.sort_values(["accelerator", "precision", "hidden", "ffn_hidden", "experts", "top_k", "tp", "ep",
                           "tokens"])
    keys = ["accelerator", "version", "precision", "hidden", "ffn_hidden", "experts", "top_k", "tp", "ep"]
    wide = out.groupby(keys, sort=False).agg(
        tokens=("tokens", lambda x: ";".join(str(int(v)) for v in x)),
        latency_us=("latency_us", lambda x: ";".join(f"{v:g}" for v in x))).reset_index()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(OUT, "wt") as f:
        f.write(f"# TensorRT-LLM fused MoE (CUTLASS backend) forward latency in us at each token count, balanced routing; from "
                f"github.com/ai-dynamo/aiconfigurator@{COMMIT} {ROOT}/<gpu>/moe/trtllm/<version>/moe_perf.parquet "
                f"(Apache-2.0); made by benchmarks/extract_trtllm_moe.py\n")
        wide.to_csv(f, index=False)
    print(f"{len(wide)} rows ({len(out)} points) -> {OUT} ({OUT.stat().st_size / 1e6:.2f} MB)")
    print(out.groupby(["accelerator", "version", "precision"]).size().to_string())


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/work/.mirror/ai-dynamo+aiconfigurator/repo")
