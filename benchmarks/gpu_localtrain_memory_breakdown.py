"""Where a local-learning step's GPU memory goes (ResNet-110, batch 1024, 3x32x32).

    python benchmarks/gpu_localtrain_memory_breakdown.py --out RESULT.json

For backprop and greedy / BackLink (p = 1) at K = 16: the allocator's live bytes before the
measured step (parameters, gradients, momentum, input), its peak during the step, with cuDNN
on and off (cuDNN convolution workspaces are temporaries that no saved-tensor accounting
sees), and the live blocks at the peak grouped by the Python frame that allocated them
(torch.cuda.memory._record_memory_history).
"""
from __future__ import annotations

import argparse
import collections
import json

import torch

from xlayer.localtrain.methods import LocalLearner, MethodConfig, make_optimizer
from xlayer.localtrain.nets import resnet


def run(mc: MethodConfig, cudnn: bool, history: bool) -> dict:
    torch.backends.cudnn.enabled = cudnn
    torch.manual_seed(0)
    learner = LocalLearner(resnet("resnet110", 3, 32), mc).cuda().train()
    x = torch.rand(1024, 3, 32, 32, device="cuda")
    y = torch.randint(0, 10, (1024,), device="cuda")
    opt = make_optimizer(learner)
    learner.train_step(x, y)
    opt.step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    if history:
        torch.cuda.memory._record_memory_history(max_entries=200000)
    learner.train_step(x, y)
    opt.step()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    out = {"method": mc.method, "K": mc.K, "cudnn": cudnn, "base_bytes": base, "peak_bytes": peak}
    if history:
        snap = torch.cuda.memory._snapshot()
        torch.cuda.memory._record_memory_history(enabled=None)
        # replay the trace to find the live blocks at the peak
        live: dict[int, tuple[int, str]] = {}
        cur, best, best_live = 0, -1, {}
        for dev_trace in snap["device_traces"]:
            for ev in dev_trace:
                if ev["action"] == "alloc":
                    fr = next((f for f in ev.get("frames", []) if "xlayer" in f["filename"] or "torch/nn" in f["filename"]), None)
                    where = f"{fr['filename'].split('/')[-1]}:{fr['line']} {fr['name']}" if fr else "?"
                    live[ev["addr"]] = (ev["size"], where)
                    cur += ev["size"]
                    if cur > best:
                        best, best_live = cur, dict(live)
                elif ev["action"] in ("free_requested", "free_completed") and ev["addr"] in live:
                    if ev["action"] == "free_requested":
                        cur -= live.pop(ev["addr"])[0]
        groups = collections.Counter()
        for size, where in best_live.values():
            groups[where] += size
        out["trace_peak_bytes_over_base"] = best
        out["live_at_peak_by_frame"] = groups.most_common(12)
    del learner, opt, x, y
    torch.cuda.empty_cache()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    rows = []
    for mc in (MethodConfig("backprop", 1, 0), MethodConfig("greedy", 16, 0), MethodConfig("backlink", 16, 1)):
        for cudnn in (True, False):
            r = run(mc, cudnn, history=cudnn)
            rows.append(r)
            print(f"{mc.method:9s} K={mc.K:2d} cudnn={cudnn!s:5s} base {r['base_bytes'] / 2**30:.3f} GiB  "
                  f"peak {r['peak_bytes'] / 2**30:.3f} GiB", flush=True)
            for where, size in r.get("live_at_peak_by_frame", [])[:6]:
                print(f"    {size / 2**20:9.1f} MiB  {where}")
    json.dump({"about": __doc__, "rows": rows}, open(args.out, "w"), indent=1)


if __name__ == "__main__":
    main()
