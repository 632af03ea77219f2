"""Serving-engine settings: batch limit, token budget, KV-cache pool, CUDA-graph batch sizes,
scheduling policy — the knobs of an in-flight-batching engine, with the defaults of the engine
a case names (``software.framework``). Formulas and sources: ``docs/serving.md``.

TensorRT-LLM (PyTorch backend, ``trtllm-bench throughput``; sources fetched from
github.com/NVIDIA/TensorRT-LLM):

* KV-cache dtype: an FP8 or NVFP4 checkpoint runs an FP8 KV cache
  (``tensorrt_llm/bench/benchmark/utils/general.py`` ``_KV_CACHE_MAP``: FP8 → fp8, NVFP4 → fp8;
  ``tensorrt_llm/bench/build/build.py``: "If the quantization is NVFP4 or FP8, force the KV cache
  dtype to FP8"); otherwise the model's 16-bit dtype.
* ``max_batch_size`` / ``max_num_tokens`` when not given: ``calc_engine_setting`` and
  ``finetune_setting`` of ``tensorrt_llm/bench/build/tuning.py`` (reproduced in
  :func:`trtllm_bench_settings`); chunked prefill is off by default in trtllm-bench
  (``enable_chunked_prefill`` False in ``general.py get_settings``), and then
  ``max_num_tokens = max(max_num_tokens, max_isl + max_batch_size)``.
* KV pool: ``KvCacheConfig.free_gpu_memory_fraction`` "Default is 90%" of the memory free after
  the weights and the activation buffers (``tensorrt_llm/llmapi/llm_args.py``); blocks of
  ``tokens_per_block`` = 32 tokens (same file).
* Capacity scheduler ``GUARANTEED_NO_EVICT`` (``SchedulerConfig.capacity_scheduler_policy``
  default, ``llm_args.py``): a request is admitted only when blocks for its whole length
  (prompt + max output) are free, so nothing is ever evicted.
* Iterations that carry a prompt run without a CUDA graph (``can_run_cuda_graph`` needs no
  context requests): the host launches the forward op by op (``xlayer/data/serving.yaml``).
* CUDA graphs with padding for generation-only iterations at the batch sizes of the
  perf-overview's ``llm_options.yml`` (1, 2, 4, …, 256, 384, 512, 1024, 2048, 4096, 8192;
  ``docs/source/performance/perf-overview.md``), those up to the engine's max batch size.

vLLM-style engines (``framework: vllm``, or ``policy="max_utilization"``): admission needs
blocks for the prompt only; a decode step that finds no free block preempts the most recently
admitted request, which is recomputed later (vLLM's preemption by recompute).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Optional

from xlayer.cost.kvcache import kv_bytes_per_token, weight_bytes, workspace_bytes
from xlayer.errors import InputError
from xlayer.workload.model import ModelSpec

from xlayer.units import GIB
# trtllm-bench perf-overview llm_options.yml cuda_graph_config.batch_sizes
TRTLLM_GRAPH_BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 384, 512, 1024, 2048, 4096, 8192)
TRTLLM_TOKENS_PER_BLOCK = 32          # llm_args.py KvCacheConfig.tokens_per_block
TRTLLM_KV_FRACTION = 0.90             # llm_args.py KvCacheConfig.free_gpu_memory_fraction ("Default is 90%")
# tuning.py BYTES_PER_ELEM (bytes per weight / KV element the heuristic assumes)
_TUNING_BYTES = {"fp8": 1.0, "nvfp4": 0.5}


@dataclass(frozen=True)
class EngineConfig:
    """The scheduler's limits. ``max_batch_size``/``max_num_tokens`` None: the engine's
    heuristic for the workload (:func:`resolve_engine`)."""

    name: str = "trt-llm"
    max_batch_size: Optional[int] = None
    max_num_tokens: Optional[int] = None
    kv_fraction: float = TRTLLM_KV_FRACTION
    tokens_per_block: int = TRTLLM_TOKENS_PER_BLOCK
    chunked_prefill: bool = False
    policy: str = "no_evict"            # no_evict (TRT-LLM default) | max_utilization (vLLM-style)
    graph_batch_sizes: tuple[int, ...] = TRTLLM_GRAPH_BATCH_SIZES
    cuda_graph_padding: bool = True
    # iterations that carry a prompt also replay a CUDA graph (vLLM V1's piecewise graphs);
    # False: TensorRT-LLM's PyTorch executor runs them eagerly
    # (tensorrt_llm/_torch/pyexecutor/scheduler.py ScheduledRequests.can_run_cuda_graph:
    # ``not self.context_requests``)
    mixed_in_graph: bool = False
    # the engine's fused-MoE kernel measurements (xlayer.cost.measured_moe.TABLES; None: the
    # roofline of the MoE operators): the stack profile's ``moe_kernel_table``
    moe_kernel_table: Optional[str] = None
    # the engine also captures a graph at max_batch_size (TensorRT-LLM's cuda_graph_config with
    # enable_padding); False: only the listed sizes (vLLM's cudagraph_capture_sizes)
    capture_max_batch: bool = True

    def graph_sizes(self) -> tuple[int, ...]:
        """Captured CUDA-graph batch sizes: the list up to max_batch_size, plus max_batch_size
        where the engine captures it too (``capture_max_batch``; vLLM does not: a batch above
        its largest capture size runs without a graph)."""
        mb = self.max_batch_size or max(self.graph_batch_sizes)
        sizes = {s for s in self.graph_batch_sizes if s <= mb} | ({mb} if self.capture_max_batch else set())
        return tuple(sorted(sizes))


def engine_for(framework: Optional[str]) -> EngineConfig:
    """Defaults of the engine a case names (``software.framework``); TensorRT-LLM otherwise."""
    from xlayer.mapping.profiles import get_profile
    f = (framework or "trt-llm").lower().replace("_", "-")
    if f in ("vllm", "sglang"):
        # vLLM V1: chunked prefill on, preemption by recompute, gpu_memory_utilization 0.9; the
        # batch limits are vLLM's per-GPU defaults (vllm_batch_defaults, filled by resolve_engine);
        # SGLang keeps the fixed vLLM-style 8192 tokens / 256 sequences (not re-checked)
        return EngineConfig(name=f, kv_fraction=0.90, tokens_per_block=16, chunked_prefill=True,
                            policy="max_utilization", max_num_tokens=None if f == "vllm" else 8192,
                            max_batch_size=None if f == "vllm" else 256,
                            graph_batch_sizes=(1, 2, 4) + tuple(range(8, 513, 8)), mixed_in_graph=True,
                            capture_max_batch=False,
                            moe_kernel_table=get_profile(f).moe_kernel_table)
    return EngineConfig(name="trt-llm", moe_kernel_table=get_profile("trt-llm").moe_kernel_table)


def default_kv_precision(precision: str) -> str:
    """The engine's KV-cache dtype when the case leaves it open (module docstring): FP8 for
    fp8 / nvfp4 / mxfp8 checkpoints, else 16-bit (fp16 stays fp16)."""
    if precision in ("fp8", "nvfp4", "mxfp8", "fp4"):
        return "fp8"
    return "fp16" if precision == "fp16" else "bf16"


def trtllm_bench_settings(model: ModelSpec, precision: str, kv_precision: str, tp: int, pp: int,
                          input_len: float, output_len: float, hbm_bytes: float,
                          kv_fraction: float = 0.95) -> tuple[int, int]:
    """(max_batch_size, max_num_tokens) of trtllm-bench's heuristic (tuning.py
    ``calc_engine_setting`` with its default fraction 0.95 and ``finetune_setting``):

    bytes/token = 2·L·max(tp, g)·d·kv_bytes; requests = (tp·pp·HBM − params·w_bytes)·0.95 /
    (bytes/token·(I+O)); raw_bs = min(requests, 4096)/pp; raw_tokens = min(raw_bs·(1 + I/O),
    32768); max_bs = max(64, 32⌈raw_bs/32⌉) below 256, 128⌈raw_bs/128⌉ below 1024, else
    256⌈raw_bs/256⌉; max_tokens = max(2048, 256⌈·/256⌉) below 4096, 512⌈·/512⌉ below 8192,
    else 1024⌈·/1024⌉."""
    wb = _TUNING_BYTES.get(precision, 2.0)
    kvb = _TUNING_BYTES.get(kv_precision, 2.0) if kv_precision != "fp8" else 1.0
    per_token = 2.0 * model.layers * max(tp, model.kv_heads) * model.head_dim * kvb / GIB
    engine = model.total_params() * wb / GIB
    avail = hbm_bytes / GIB * tp * pp - engine
    requests = avail * kv_fraction / (per_token * (input_len + output_len))
    raw_bs = min(requests, 4096) / pp
    raw_tok = min(raw_bs * (1.0 + input_len / output_len), 32768)
    if raw_bs < 256:
        bs = max(64, 32 * math.ceil(raw_bs / 32))
    elif raw_bs < 1024:
        bs = 128 * math.ceil(raw_bs / 128)
    else:
        bs = 256 * math.ceil(raw_bs / 256)
    if raw_tok < 4096:
        tok = max(2048, 256 * math.ceil(raw_tok / 256))
    elif raw_tok < 8192:
        tok = 512 * math.ceil(raw_tok / 512)
    else:
        tok = 1024 * math.ceil(raw_tok / 1024)
    return int(bs), int(tok)


def vllm_batch_defaults(accelerator: str, hbm_bytes: float) -> tuple[int, int]:
    """(max_num_seqs, max_num_batched_tokens) vLLM takes when they are not given, for the
    offline ``LLM`` class that ``vllm bench throughput`` builds (UsageContext.LLM_CLASS):
    1,024 sequences and 16,384 tokens on a GPU with at least 70 GiB that is not an A100, else
    256 and 8,192 (vllm/engine/arg_utils.py ``EngineArgs.get_batch_defaults``; the A100
    exception from vllm-project/vllm PR #17885, where the larger budget lowered throughput)."""
    if hbm_bytes >= 70 * GIB and "a100" not in accelerator.lower():
        return 1024, 16384
    return 256, 8192


def resolve_engine(engine: EngineConfig, model: ModelSpec, precision: str, kv_precision: str, tp: int, pp: int,
                   input_len: float, output_len: float, max_input_len: float, hbm_bytes: float,
                   accelerator: str = "") -> EngineConfig:
    """Fill the open limits: vLLM's per-GPU defaults (:func:`vllm_batch_defaults`), else
    TensorRT-LLM's trtllm-bench heuristic; then, without chunked prefill, the token floor
    max_isl + max_batch_size."""
    bs, tok = engine.max_batch_size, engine.max_num_tokens
    if (bs is None or tok is None) and engine.name == "vllm":
        vb, vt = vllm_batch_defaults(accelerator, hbm_bytes)
        bs, tok = bs or vb, tok or vt
    if bs is None or tok is None:
        # trtllm-bench passes its --kv_cache_free_gpu_mem_fraction (default 0.90) to the heuristic
        hb, ht = trtllm_bench_settings(model, precision, kv_precision, tp, pp, input_len, max(output_len, 1),
                                       hbm_bytes, engine.kv_fraction)
        bs, tok = bs or hb, tok or ht
    if not engine.chunked_prefill:
        tok = max(tok, int(max_input_len) + bs)
    return replace(engine, max_batch_size=int(bs), max_num_tokens=int(tok))


@dataclass(frozen=True)
class KVPool:
    """KV-cache blocks of one rank (the busiest pipeline stage)."""

    blocks: int
    tokens_per_block: int
    bytes_per_token: float
    pool_bytes: float
    weights_bytes: float
    activation_bytes: float
    capacity_bytes: float

    @property
    def tokens(self) -> int:
        return self.blocks * self.tokens_per_block

    def blocks_for(self, tokens: float) -> int:
        return int(math.ceil(tokens / self.tokens_per_block))


def kv_pool(model: ModelSpec, precision: str, kv_precision: str, tp: int, pp: int, ep: int,
            engine: EngineConfig, capacity_bytes: float, field: str = "system") -> KVPool:
    """Blocks = ⌊(HBM − weights − activations of a max_num_tokens pass) · kv_fraction /
    (tokens_per_block · KV bytes per token)⌋ on the busiest stage (weights, KV per token and
    workspace from :mod:`xlayer.cost.kvcache`). Raises when the weights do not fit."""
    w = sum(weight_bytes(model, tp, pp, precision, ep=ep).values())
    tok = engine.max_num_tokens or 8192
    act = workspace_bytes(model, tok / pp, min(tok, engine.max_batch_size or tok) / pp, tp)
    per_tok = kv_bytes_per_token(model, tp, pp, kv_precision)
    free = capacity_bytes - w - act
    if free <= 0:
        raise InputError(field, f"tp{tp} pp{pp} ep{ep}",
                         f"weights {w / GIB:.1f} GiB + activations {act / GIB:.1f} GiB exceed the "
                         f"{capacity_bytes / GIB:.1f} GiB of HBM per accelerator (over by {-free / GIB:.1f} GiB); "
                         "use more GPUs per replica or a smaller format")
    pool = free * engine.kv_fraction
    blocks = int(pool // (per_tok * engine.tokens_per_block))
    return KVPool(blocks, engine.tokens_per_block, per_tok, pool, w, act, capacity_bytes)
