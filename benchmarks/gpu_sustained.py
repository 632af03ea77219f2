"""Three GPU questions behind the compute model's constants (run on a CUDA machine).

    python benchmarks/gpu_sustained.py --out sustained.json [--seconds 40]

1. ``sustained``: does a GEMM-bound training step keep the burst rate? One fp16 GEMM of a
   Megatron shape (8192 x 6144 x 3072) runs back to back for ``--seconds``; the rate of each
   0.5 s window is recorded with CUDA events, with the SM clock, power and temperature that
   nvidia-smi reports once per second beside it.
2. ``isolated``: the same GEMM shapes timed the way the H200 kernel file was (one kernel
   between CUDA events after the GPU idled) and back to back in a CUDA graph.
3. ``softmax``: Megatron's fused scale-mask-softmax reads each score row once and writes it
   once. A one-pass Triton kernel of that kind (row held in registers, causal mask applied
   in the kernel) against torch.softmax, on the score tensors of the Table 4 shapes.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import threading
import time

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - only on machines without Triton
    triton = None


def smi_sampler(samples: list, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=clocks.sm,power.draw,temperature.gpu",
                                  "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=5)
            clk, pw, temp = (float(x) for x in out.stdout.strip().split(","))
            samples.append({"t": time.time(), "sm_mhz": clk, "power_w": pw, "temp_c": temp})
        except Exception:  # noqa: BLE001
            pass
        stop.wait(1.0)


def sustained(seconds: float) -> dict:
    m, k, n = 8192, 6144, 3072
    A = torch.randn(m, k, device="cuda", dtype=torch.float16)
    Ws = [torch.randn(k, n, device="cuda", dtype=torch.float16) for _ in range(8)]
    C = torch.empty(m, n, device="cuda", dtype=torch.float16)
    flops = 2 * m * n * k
    for i in range(20):
        torch.mm(A, Ws[i % 8], out=C)
    torch.cuda.synchronize()
    samples: list = []
    stop = threading.Event()
    th = threading.Thread(target=smi_sampler, args=(samples, stop), daemon=True)
    th.start()
    windows = []
    t_start = time.time()
    per = 250  # GEMMs per window (~0.1 s at 770 TFLOP/s)
    while time.time() - t_start < seconds:
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        for i in range(per):
            torch.mm(A, Ws[i % 8], out=C)
        e1.record()
        e1.synchronize()
        dt = e0.elapsed_time(e1) / 1e3
        windows.append({"t": time.time() - t_start, "tflops": flops * per / dt / 1e12})
    stop.set()
    th.join()
    for s_ in samples:
        s_["t"] -= t_start
    rates = [w["tflops"] for w in windows]
    return {"shape": [m, k, n], "windows": windows, "smi": samples,
            "first_s_tflops": statistics.median([w["tflops"] for w in windows if w["t"] < 1.0] or rates[:1]),
            "last_10s_tflops": statistics.median([w["tflops"] for w in windows if w["t"] > seconds - 10] or rates)}


def isolated_vs_graph() -> list[dict]:
    shapes = [(8192, 6144, 2304), (8192, 6144, 3072), (8192, 3072, 6144), (2048, 12288, 4608),
              (2048, 12288, 6144), (2048, 6144, 12288), (16384, 4096, 4096)]
    rows = []
    for m, k, n in shapes:
        A = torch.randn(m, k, device="cuda", dtype=torch.float16)
        W = torch.randn(k, n, device="cuda", dtype=torch.float16)
        for _ in range(5):
            torch.mm(A, W)
        torch.cuda.synchronize()
        iso = []
        for _ in range(7):
            time.sleep(0.05)
            e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            e0.record()
            torch.mm(A, W)
            e1.record()
            e1.synchronize()
            iso.append(e0.elapsed_time(e1) / 1e3)
        g = torch.cuda.CUDAGraph()
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            torch.mm(A, W)
        torch.cuda.current_stream().wait_stream(s)
        with torch.cuda.graph(g):
            for _ in range(20):
                torch.mm(A, W)
        g.replay()
        torch.cuda.synchronize()
        bb = []
        for _ in range(5):
            e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            e0.record()
            g.replay()
            e1.record()
            e1.synchronize()
            bb.append(e0.elapsed_time(e1) / 1e3 / 20)
        rows.append({"m": m, "k": k, "n": n, "isolated_s": statistics.median(iso),
                     "back_to_back_s": statistics.median(bb)})
    return rows


if triton is not None:
    @triton.jit
    def _causal_softmax(out_ptr, in_ptr, n_cols, seq, scale, BLOCK: tl.constexpr):
        row = tl.program_id(0)
        q = row % seq  # query position: keys > q are masked (upper triangle)
        cols = tl.arange(0, BLOCK)
        x = tl.load(in_ptr + row * n_cols + cols, mask=cols < n_cols, other=0.0).to(tl.float32)
        x = tl.where(cols <= q, x * scale, -float("inf"))
        x = x - tl.max(x, axis=0)
        e = tl.exp(x)
        y = e / tl.sum(e, axis=0)
        tl.store(out_ptr + row * n_cols + cols, y.to(tl.float16), mask=cols < n_cols)


def softmax_rows() -> list[dict]:
    rows = []
    for name, b, a, s in (("gpt22b-tp8-b4", 4, 8, 2048), ("gpt175b-tp8-b1", 1, 12, 2048), ("gpt1t-tp8-b1", 1, 20, 2048)):
        x = torch.randn(b * a * s, s, device="cuda", dtype=torch.float16)
        y = torch.empty_like(x)
        nbytes = 2 * x.numel() * 2

        def fused():
            _causal_softmax[(x.shape[0],)](y, x, s, s, 0.125, BLOCK=triton.next_power_of_2(s), num_warps=8)

        def eager():
            torch.softmax(x, dim=-1)
        out = {"config": name, "elements": x.numel(), "bytes_min": nbytes}
        for label, fn in (("triton_fused", fused), ("torch_softmax", eager)):
            for _ in range(3):
                fn()
            torch.cuda.synchronize()
            ts = []
            for _ in range(5):
                e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                e0.record()
                for _ in range(10):
                    fn()
                e1.record()
                e1.synchronize()
                ts.append(e0.elapsed_time(e1) / 1e3 / 10)
            out[label + "_s"] = statistics.median(ts)
            out[label + "_GBps"] = nbytes / out[label + "_s"] / 1e9
        ref = torch.softmax((x.float() * 0.125).masked_fill(
            torch.ones(s, s, device="cuda", dtype=torch.bool).triu(1).repeat(b * a, 1), float("-inf")), -1)
        fused()
        out["triton_max_abs_err"] = float((y.float() - ref).abs().max())
        rows.append(out)
    # the copy ceiling, as the kernel file measured it (bytes read + written)
    big = torch.empty(int(2e9), device="cuda", dtype=torch.uint8)
    dst = torch.empty_like(big)
    for _ in range(3):
        dst.copy_(big)
    torch.cuda.synchronize()
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    e0.record()
    for _ in range(10):
        dst.copy_(big)
    e1.record()
    e1.synchronize()
    rows.append({"config": "copy", "GBps_read_plus_write": 2 * 2e9 * 10 / (e0.elapsed_time(e1) / 1e3) / 1e9})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--seconds", type=float, default=40.0)
    args = ap.parse_args()
    p = torch.cuda.get_device_properties(0)
    doc = {"about": __doc__, "device": {"name": p.name, "sms": p.multi_processor_count, "torch": torch.__version__}}
    for key, fn in (("softmax", softmax_rows), ("isolated", isolated_vs_graph),
                    ("sustained", lambda: sustained(args.seconds))):
        try:
            doc[key] = fn()
        except Exception as e:  # noqa: BLE001 - keep the other parts
            doc[key] = {"error": f"{type(e).__name__}: {e}"}
        print(key, "done", flush=True)
        with open(args.out, "w") as fh:
            json.dump(doc, fh, indent=1)
    print(json.dumps(doc["softmax"], indent=0)[:1500])
    print(json.dumps(doc["isolated"])[:1500])
    s = doc["sustained"]
    if "windows" in s:
        print("sustained first 1 s", s["first_s_tflops"], "last 10 s", s["last_10s_tflops"])
        print("smi", s["smi"][:2], s["smi"][-2:])


if __name__ == "__main__":
    main()
