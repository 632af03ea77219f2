"""Measure, on one GPU, the kernels of the operator lists xlayer predicts, named as the model
names them, so that `python benchmarks/compare_kernels.py FILE` can set the model beside them.

    python benchmarks/gpu_kernels.py --out kernels.json          # on a CUDA machine
    python benchmarks/gpu_kernels.py --smoke --out /tmp/k.json    # tiny shapes on the CPU

Two families, each the per-accelerator shard of a real configuration:

* ``training``: one Megatron GPT layer in fp16 with classic attention and dropout 0.1 (the
  recipe of Korthikanti et al. 2022 and Narayanan et al. 2021), tensor-parallel shard of 8,
  forward and backward operators (data and weight gradients), no communication.
* ``inference``: one Llama 2 prefill layer (7B tp1 and 70B tp4 shards, 128 and 2048
  tokens), GEMMs in bf16 and in fp8 (torch._scaled_mm, per-tensor scales, bf16 out) with
  the activation quantization kernel, causal flash attention (GQA) in bf16.

Timing: each operator is captured N times into a CUDA graph (no host launch gaps, as an
inference engine or a busy training step runs them); the replay is timed with CUDA events
and the median of 5 replays / N is kept. Weight buffers rotate over more bytes than the L2
holds, so a GEMM reads its weights from HBM as a real layer stack does.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import time

import torch
import torch.nn.functional as F

L2_DEFEAT_BYTES = 256e6


def timer(fn_for, device: str, target_s: float = 1.5e-3, repeats: int = 5) -> float:
    """Seconds per call of ``fn_for(i)`` (i = call index, for buffer rotation)."""
    if device == "cpu":
        fn_for(0)
        t0 = time.perf_counter()
        fn_for(1)
        return time.perf_counter() - t0
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for i in range(3):
            fn_for(i)
    torch.cuda.current_stream().wait_stream(s)
    torch.cuda.synchronize()
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    e0.record()
    for i in range(3):
        fn_for(i)
    e1.record()
    torch.cuda.synchronize()
    est = max(e0.elapsed_time(e1) / 3e3, 1e-6)
    n = int(min(50, max(4, math.ceil(target_s / est))))
    try:
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            for i in range(n):
                fn_for(i)
        run = g.replay
        mode = "graph"
    except Exception:  # noqa: BLE001 - fall back to eager launches
        torch.cuda.synchronize()

        def run():
            for i in range(n):
                fn_for(i)
        mode = "eager"
    run()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        e0.record()
        run()
        e1.record()
        torch.cuda.synchronize()
        times.append(e0.elapsed_time(e1) / 1e3 / n)
    timer.last_mode = mode
    return statistics.median(times)


timer.last_mode = "cpu"


def _record(out: list, config: str, name: str, fn, device: str, shape: dict) -> None:
    try:
        t = timer(fn, device)
    except Exception as e:  # noqa: BLE001 - one failing kernel must not lose the others
        print(f"{config} {name}: {type(e).__name__}: {e}", flush=True)
        return
    out.append({"config": config, "op": name, "time_s": t, "mode": timer.last_mode, **shape})


def rotating(make, nbytes_each: float, device: str) -> list:
    n = 1 if device == "cpu" else max(1, min(16, math.ceil(L2_DEFEAT_BYTES / max(nbytes_each, 1.0))))
    return [make() for _ in range(n)]


def training_ops(cfg: dict, device: str) -> list[dict]:
    """Megatron fp16 layer shard: names as xlayer.workload.operators.layer_work."""
    dt = torch.float16
    h, heads, f, s, b, tp, sp = cfg["h"], cfg["heads"], cfg["ffn"], cfg["s"], cfg["b"], cfg["tp"], cfg["sp"]
    d = h // heads
    a = heads // tp
    T = b * s
    rows = T // tp if sp else T
    q3 = 3 * h // tp
    ft = f // tp
    dev = device
    rnd = lambda *shape: torch.randn(*shape, device=dev, dtype=dt)  # noqa: E731
    out: list[dict] = []

    def rec(name, fn, **shape):
        _record(out, cfg["name"], name, fn, device, shape)

    def gemm(name, m, k, n):
        A = rnd(m, k)
        Ws = rotating(lambda: rnd(k, n), k * n * 2, dev)
        rec(name, lambda i: torch.mm(A, Ws[i % len(Ws)]), m=m, k=k, n=n)

    # forward, in layer order
    x = rnd(rows, h)
    ln_w, ln_b = rnd(h), rnd(h)
    rec("norm1", lambda i: F.layer_norm(x, (h,), ln_w, ln_b), rows=rows)
    gemm("qkv", T, h, q3)
    q = rnd(b * a, s, d)
    kt = rnd(b * a, d, s)
    rec("attn_scores", lambda i: torch.bmm(q, kt), batch=b * a, s=s, d=d)
    sc = rnd(b, a, s, s)
    # Megatron's fused scaled upper-triangular masked softmax: one read, one write
    rec("attn_softmax", lambda i: torch.softmax(sc, dim=-1), elements=sc.numel())
    probs = torch.softmax(sc, dim=-1)
    rec("attn_dropout", lambda i: torch.native_dropout(probs, 0.1, True), elements=sc.numel())
    p3 = rnd(b * a, s, s)
    v = rnd(b * a, s, d)
    rec("attn_context", lambda i: torch.bmm(p3, v), batch=b * a, s=s, d=d)
    gemm("proj", T, h // tp, h)
    y, res = rnd(rows, h), rnd(rows, h)
    rec("dropout_add1", lambda i: res + torch.native_dropout(y, 0.1, True)[0], rows=rows)
    rec("norm2", lambda i: F.layer_norm(x, (h,), ln_w, ln_b), rows=rows)
    gemm("fc1", T, h, ft)
    u = rnd(T, ft)
    rec("activation", lambda i: F.gelu(u, approximate="tanh"), elements=u.numel())
    gemm("fc2", T, ft, h)

    # backward (layer_work order: reversed forward; GEMM dgrad then wgrad)
    gy = rnd(rows, h)
    mask = torch.rand(rows, h, device=dev) > 0.1
    rec("dropout_add2.bwd", lambda i: torch.ops.aten.native_dropout_backward(gy, mask, 1 / 0.9), rows=rows)

    def gemm_bwd(name, m, k, n):
        # forward C[m,n] = A[m,k] W[k,n]; dgrad dA = dC W^T ([m,n]x[n,k]); wgrad dW = A^T dC
        dC = rnd(m, n)
        Ws = rotating(lambda: rnd(k, n), k * n * 2, dev)
        rec(name + ".dgrad", lambda i: torch.mm(dC, Ws[i % len(Ws)].t()), m=m, k=n, n=k)
        A = rnd(m, k)
        rec(name + ".wgrad", lambda i: torch.mm(A.t(), dC), m=k, k=m, n=n)

    gemm_bwd("fc2", T, ft, h)
    gu = rnd(T, ft)
    rec("activation.bwd", lambda i: torch.ops.aten.gelu_backward(gu, u, approximate="tanh"), elements=u.numel())
    gemm_bwd("fc1", T, h, ft)
    xr = rnd(rows, h).requires_grad_(True)
    w_ = ln_w.clone().requires_grad_(True)
    b_ = ln_b.clone().requires_grad_(True)
    _, mean, rstd = torch.native_layer_norm(xr.detach(), (h,), ln_w, ln_b, 1e-5)
    rec("norm2.bwd", lambda i: torch.ops.aten.native_layer_norm_backward(
        gy, xr, (h,), mean, rstd, w_, b_, [True, True, True]), rows=rows)
    rec("dropout_add1.bwd", lambda i: torch.ops.aten.native_dropout_backward(gy, mask, 1 / 0.9), rows=rows)
    gemm_bwd("proj", T, h // tp, h)
    gctx = rnd(b * a, s, d)
    rec("attn_context.dgrad", lambda i: torch.bmm(gctx, v.transpose(1, 2)), batch=b * a, s=s, d=d)
    rec("attn_context.wgrad", lambda i: torch.bmm(p3.transpose(1, 2), gctx), batch=b * a, s=s, d=d)
    dmask = torch.rand(b, a, s, s, device=dev) > 0.1
    gp = rnd(b, a, s, s)
    rec("attn_dropout.bwd", lambda i: torch.ops.aten.native_dropout_backward(gp, dmask, 1 / 0.9),
        elements=gp.numel())
    rec("attn_softmax.bwd", lambda i: torch.ops.aten._softmax_backward_data(gp, probs, -1, dt),
        elements=gp.numel())
    gsc = rnd(b * a, s, s)
    k_ = rnd(b * a, s, d)
    rec("attn_scores.dgrad", lambda i: torch.bmm(gsc, k_), batch=b * a, s=s, d=d)
    rec("attn_scores.wgrad", lambda i: torch.bmm(gsc.transpose(1, 2), q), batch=b * a, s=s, d=d)
    gemm_bwd("qkv", T, h, q3)
    rec("norm1.bwd", lambda i: torch.ops.aten.native_layer_norm_backward(
        gy, xr, (h,), mean, rstd, w_, b_, [True, True, True]), rows=rows)
    return out


def inference_ops(cfg: dict, device: str) -> list[dict]:
    """Llama prefill layer shard: GEMMs bf16 and fp8, quantize kernel, flash attention (GQA)."""
    h, heads, kvh, f, T, tp = cfg["h"], cfg["heads"], cfg["kv_heads"], cfg["ffn"], cfg["tokens"], cfg["tp"]
    d = h // heads
    dev = device
    bf = torch.bfloat16
    out: list[dict] = []

    def rec(name, fn, **shape):
        _record(out, cfg["name"], name, fn, device, shape)

    shapes = {"qkv": (T, h, (heads + 2 * kvh) * d // tp), "proj": (T, heads * d // tp, h),
              "fc1": (T, h, 2 * f // tp), "fc2": (T, f // tp, h)}
    fp8 = device != "cpu" and hasattr(torch, "float8_e4m3fn") and torch.cuda.get_device_capability()[0] >= 9
    for name, (m, k, n) in shapes.items():
        A = torch.randn(m, k, device=dev, dtype=bf)
        Ws = rotating(lambda: torch.randn(k, n, device=dev, dtype=bf), k * n * 2, dev)
        rec(name + "@bf16", lambda i: torch.mm(A, Ws[i % len(Ws)]), m=m, k=k, n=n)
        if fp8:
            A8 = A.to(torch.float8_e4m3fn)
            # column-major weight operand, as cuBLASLt fp8 requires
            W8s = rotating(lambda: torch.randn(n, k, device=dev, dtype=bf).to(torch.float8_e4m3fn).t(),
                           k * n, dev)
            one = torch.ones((), device=dev, dtype=torch.float32)
            rec(name + "@fp8", lambda i: torch._scaled_mm(A8, W8s[i % len(W8s)], scale_a=one, scale_b=one,
                                                          out_dtype=bf), m=m, k=k, n=n)
            scale = torch.tensor(0.5, device=dev)
            rec(name + ".quantize", lambda i: (A * scale).to(torch.float8_e4m3fn), elements=m * k)
    q = torch.randn(1, heads // tp, T, d, device=dev, dtype=bf)
    kk = torch.randn(1, kvh // tp, T, d, device=dev, dtype=bf)
    vv = torch.randn(1, kvh // tp, T, d, device=dev, dtype=bf)
    rec("flash_attn", lambda i: F.scaled_dot_product_attention(q, kk, vv, is_causal=True, enable_gqa=True),
        heads=heads // tp, kv_heads=kvh // tp, s=T, d=d)
    return out


TRAINING = [
    {"name": "gpt22b-tp8-b4-sp", "h": 6144, "heads": 64, "ffn": 24576, "s": 2048, "b": 4, "tp": 8, "sp": True},
    {"name": "gpt175b-tp8-b1-sp", "h": 12288, "heads": 96, "ffn": 49152, "s": 2048, "b": 1, "tp": 8, "sp": True},
    {"name": "gpt1t-tp8-b1-sp", "h": 25600, "heads": 160, "ffn": 102400, "s": 2048, "b": 1, "tp": 8, "sp": True},
]
INFERENCE = [
    {"name": f"llama2-{size}-tp{tp}-T{T}", "h": h, "heads": 64 if size == "70b" else 32,
     "kv_heads": 8 if size == "70b" else 32, "ffn": f, "tokens": T, "tp": tp}
    for size, h, f, tp in (("7b", 4096, 11008, 1), ("70b", 8192, 28672, 4)) for T in (128, 2048)
]
SMOKE_TRAINING = [{"name": "tiny", "h": 256, "heads": 8, "ffn": 1024, "s": 64, "b": 2, "tp": 2, "sp": True}]
SMOKE_INFERENCE = [{"name": "tiny-inf", "h": 256, "heads": 8, "kv_heads": 2, "ffn": 512, "tokens": 64, "tp": 1}]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU (checks the script only)")
    args = ap.parse_args()
    device = "cpu" if args.smoke or not torch.cuda.is_available() else "cuda"
    torch.manual_seed(0)
    info = {"device": device, "torch": torch.__version__}
    if device == "cuda":
        p = torch.cuda.get_device_properties(0)
        info.update(name=p.name, sms=p.multi_processor_count, mem_bytes=p.total_memory)
    rows: list[dict] = []
    t0 = time.time()
    for cfg in (SMOKE_TRAINING if args.smoke else TRAINING):
        try:
            rows += training_ops(cfg, device)
        except Exception as e:  # noqa: BLE001 - keep what the other configurations give
            print(f"training {cfg['name']}: {type(e).__name__}: {e}")
        print(f"{cfg['name']}: done at {time.time() - t0:.0f} s", flush=True)
        if device == "cuda":
            torch.cuda.empty_cache()
    for cfg in (SMOKE_INFERENCE if args.smoke else INFERENCE):
        try:
            rows += inference_ops(cfg, device)
        except Exception as e:  # noqa: BLE001
            print(f"inference {cfg['name']}: {type(e).__name__}: {e}")
        print(f"{cfg['name']}: done at {time.time() - t0:.0f} s", flush=True)
    doc = {"about": __doc__, "device": info, "training": TRAINING, "inference": INFERENCE, "kernels": rows}
    with open(args.out, "w") as fh:
        json.dump(doc, fh, indent=1)
    for r in rows:
        print(f"{r['config']:22s} {r['op']:22s} {r['time_s'] * 1e6:10.1f} us {r['mode']}")


if __name__ == "__main__":
    main()
