"""Extract the fused-MoE kernel tables ``xlayer/data/kernels/{trtllm,vllm}-moe.csv.gz`` from
NVIDIA's published serving-engine operator measurements (ai-dynamo/aiconfigurator, Apache-2.0).

Source: github.com/ai-dynamo/aiconfigurator @ 095f58a51c4ca8e61b66ec108d86f223f8d559ce,
``aic-core/src/aiconfigurator_core/systems/data/<gpu>/moe/<engine>/<version>/moe_perf.parquet``.

* ``trtllm-moe`` (``collector/trtllm/collect_moe.py``): one ``create_moe`` forward of
  TensorRT-LLM's PyTorch flow (router logits given, so no router GEMM; input quantize, permute,
  fc1 grouped GEMM, gated activation, fc2 grouped GEMM, finalize), autotuned, timed under a
  CUDA graph. Rows ``kernel_source == moe_torch_flow_cutlass`` (``moe_torch_flow`` in the H200
  1.2.0rc5 files, which name no backend: the collector's default there is CUTLASS) — the
  CUTLASS backend, what TensorRT-LLM's ``MoeConfig.backend`` default selects for a gated MoE in
  bf16, fp8 or nvfp4 (the collector sets ``moe_backend = "cutlass"`` for these types outside
  min-latency mode).
* ``vllm-moe`` (``collector/vllm/collect_moe.py``): one forward of vLLM's ``FusedMoE`` layer
  built as for model execution, "so vLLM owns routing, TP/EP sharding, weight
  post-processing, and backend selection" (the collector's docstring); every kernel source but
  the int4 Marlin ones (weight-only formats xlayer does not name).
* ``sglang-moe`` (``collector/sglang/collect_moe.py``): SGLang's MoE layer the same way (triton
  ``fused_moe`` in bf16, FlashInfer CuTe-DSL in nvfp4; SGLang's fp8 timings are block-scaled
  only, a format xlayer does not name, so fp8 cases get the roofline).

Rows kept: ``distribution == balanced`` (every expert the same load), formats bf16 / fp8 /
nvfp4. Per GPU the earliest engine version measured there with balanced routing (nearest the
validation runs; A100's TensorRT-LLM 1.0.0 file has power-law routing only and is left out).

Run (needs the repository fetched under /work/.mirror and pandas/pyarrow):
    python benchmarks/extract_moe_tables.py /work/.mirror/ai-dynamo+aiconfigurator/repo
"""
from __future__ import annotations

import gzip
import io
import subprocess
import sys
from pathlib import Path

import pandas as pd

from xlayer.hardware.catalog import get_accelerator

COMMIT = "095f58a51c4ca8e61b66ec108d86f223f8d559ce"
ROOT = "aic-core/src/aiconfigurator_core/systems/data"
CATALOG = {"h100_sxm": "H100-SXM-80GB", "h200_sxm": "H200-SXM-141GB", "b200_sxm": "B200-SXM-180GB",
           "b300_sxm": "B300-SXM-288GB", "gb200": "GB200-NVL72", "gb300": "GB300-NVL72"}
# table -> (engine folder, {aiconfigurator system folder: engine version}, description)
TABLES = {
    "trtllm-moe": ("trtllm", {"h100_sxm": "1.2.0rc5", "h200_sxm": "1.2.0rc5", "b200_sxm": "1.2.0rc5",
                              "b300_sxm": "1.3.0rc10", "gb200": "1.3.0rc10", "gb300": "1.3.0rc10"},
                   "TensorRT-LLM fused MoE (CUTLASS backend)"),
    "vllm-moe": ("vllm", {"h100_sxm": "0.14.0", "h200_sxm": "0.14.0", "b200_sxm": "0.19.0", "b300_sxm": "0.19.0",
                          "gb200": "0.14.0", "gb300": "0.14.0"},
                 "vLLM FusedMoE (the backend vLLM selects)"),
    "sglang-moe": ("sglang", {"h100_sxm": "0.5.9", "h200_sxm": "0.5.9", "b200_sxm": "0.5.9", "b300_sxm": "0.5.10",
                              "gb200": "0.5.9", "gb300": "0.5.9"},
                   "SGLang fused MoE (the backend SGLang selects)"),
}
DTYPES = {"bfloat16": "bf16", "fp8": "fp8", "nvfp4": "nvfp4"}
# bytes per weight of each format (nvfp4: 4-bit values plus one 8-bit scale per 16)
WEIGHT_BYTES = {"bf16": 2.0, "fp8": 1.0, "nvfp4": 0.5 + 1.0 / 16}
OUT_DIR = Path(__file__).resolve().parent.parent / "xlayer" / "data" / "kernels"


def _kernel_rows(engine: str, d: pd.DataFrame) -> pd.DataFrame:
    if engine == "trtllm":
        source = "moe_torch_flow_cutlass" if (d.kernel_source == "moe_torch_flow_cutlass").any() else "moe_torch_flow"
        return d[d.kernel_source == source]
    return d[~d.kernel_source.str.contains("marlin")]


def extract(repo: str, table: str) -> None:
    engine, versions, what = TABLES[table]
    frames = []
    for folder, version in versions.items():
        path = f"{ROOT}/{folder}/moe/{engine}/{version}/moe_perf.parquet"
        raw = subprocess.run(["git", "-C", repo, "show", f"{COMMIT}:{path}"], check=True,
                             capture_output=True).stdout
        d = pd.read_parquet(io.BytesIO(raw))
        d = _kernel_rows(engine, d)
        d = d[(d.distribution == "balanced") & d.moe_dtype.isin(list(DTYPES))]
        if d.empty:
            print(f"{table}: no balanced bf16/fp8/nvfp4 rows in {path}, skipped")
            continue
        d = d.assign(accelerator=CATALOG[folder], version=version, precision=d.moe_dtype.map(DTYPES),
                     latency_us=(d.latency * 1e3).round(2))
        frames.append(d[["accelerator", "version", "precision", "hidden_size", "inter_size", "num_experts",
                         "topk", "moe_tp_size", "moe_ep_size", "num_tokens", "latency_us"]])
    out = pd.concat(frames).rename(columns={"hidden_size": "hidden", "inter_size": "ffn_hidden",
                                            "num_experts": "experts", "topk": "top_k", "moe_tp_size": "tp",
                                            "moe_ep_size": "ep", "num_tokens": "tokens"})
    out = out.groupby([c for c in out.columns if c != "latency_us"], as_index=False).latency_us.median()
    out = out.sort_values(["accelerator", "precision", "hidden", "ffn_hidden", "experts", "top_k", "tp", "ep",
                           "tokens"])
    keys = ["accelerator", "version", "precision", "hidden", "ffn_hidden", "experts", "top_k", "tp", "ep"]
    # a curve with any point faster than reading the touched experts' weights once from HBM at
    # the datasheet bandwidth cannot be a real timing (SGLang's nvfp4 rows at 384/512 experts are):
    # it is dropped, and tests/test_measured_moe.py checks the bound on every kept point
    bw = out.accelerator.map(lambda a: get_accelerator(a).hbm.bandwidth_bytes_per_s)
    touched = (out.experts / out.ep).clip(upper=out.tokens * out.top_k / out.ep)
    floor_us = touched * 3 * out.hidden * out.ffn_hidden / out.tp * out.precision.map(WEIGHT_BYTES) / bw * 1e6
    bad = out[out.latency_us < floor_us].groupby(keys).size()
    if len(bad):
        print(f"{table}: {len(bad)} curves dropped (faster than their weight read): "
              f"{sorted({k[2:7] for k in bad.index})}")
        out = out.set_index(keys).drop(index=bad.index).reset_index()
    wide = out.groupby(keys, sort=False).agg(
        tokens=("tokens", lambda x: ";".join(str(int(v)) for v in x)),
        latency_us=("latency_us", lambda x: ";".join(f"{v:g}" for v in x))).reset_index()
    dest = OUT_DIR / f"{table}.csv.gz"
    dest.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(dest, "wt") as f:
        f.write(f"# {what} forward latency in us at each token count, balanced routing; from "
                f"github.com/ai-dynamo/aiconfigurator@{COMMIT} {ROOT}/<gpu>/moe/{engine}/<version>/moe_perf.parquet "
                f"(Apache-2.0); made by benchmarks/extract_moe_tables.py\n")
        wide.to_csv(f, index=False)
    print(f"{table}: {len(wide)} curves ({len(out)} points) -> {dest} ({dest.stat().st_size / 1e6:.2f} MB)")
    print(out.groupby(["accelerator", "version", "precision"]).size().to_string())


if __name__ == "__main__":
    repo = sys.argv[1] if len(sys.argv) > 1 else "/work/.mirror/ai-dynamo+aiconfigurator/repo"
    for name in TABLES:
        extract(repo, name)
