"""Local learning on a GPU: allocator-peak memory and a longer-budget accuracy grid.

    python benchmarks/gpu_localtrain.py --data DIR --out RESULT.json [--budget-s 330]

1. ``memory``: ``torch.cuda.max_memory_allocated`` of one training step of ResNet-110 at batch
   1024 (3x32x32 inputs), backprop and greedy / BackLink (p = 1) at K = 2, 4, 8, 16 — the GPU
   ground truth beside the CPU accounting of ``xlayer localtrain memory`` (docs/local-learning.md).
2. ``accuracy``: ResNet-32 on the full Fashion-MNIST (60,000 / 10,000), K = 16, methods
   backprop, greedy, DGL and BackLink (p = 1), ``--epochs`` epochs, seeds in turn; runs
   stop being started once ``--budget-s`` has passed, and the file is rewritten after every
   run, so what is there is complete runs only.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from xlayer.localtrain.data import load_fashion_mnist
from xlayer.localtrain.measure import memory_of_step
from xlayer.localtrain.methods import LocalLearner, MethodConfig
from xlayer.localtrain.nets import resnet
from xlayer.localtrain.train import TrainConfig, train


def memory_rows() -> list[dict]:
    rows = []
    configs = [MethodConfig("backprop", 1, 0)]
    for k in (2, 4, 8, 16):
        configs += [MethodConfig("greedy", k, 0), MethodConfig("backlink", k, 1)]
    for mc in configs:
        torch.manual_seed(0)
        learner = LocalLearner(resnet("resnet110", 3, 32), mc)
        x = torch.rand(1024, 3, 32, 32)
        y = torch.randint(0, 10, (1024,))
        r = memory_of_step(learner, x, y, "cuda").as_dict()
        r["peak_GiB"] = r["peak_bytes"] / 2**30
        rows.append(r)
        print(f"memory {mc.method:9s} K={mc.K:2d} {r['peak_GiB']:.3f} GiB", flush=True)
        del learner
        torch.cuda.empty_cache()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--budget-s", type=float, default=330.0)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--methods", default="backprop,greedy,dgl,backlink")
    ap.add_argument("--skip-memory", action="store_true")
    args = ap.parse_args()
    t0 = time.time()
    doc: dict = {"about": __doc__, "device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    if not args.skip_memory:
        doc["memory"] = memory_rows()
        json.dump(doc, open(args.out, "w"), indent=1)
    data = load_fashion_mnist(args.data)
    doc["accuracy"] = []
    methods = [(m, 1 if m == "backprop" else 16) for m in args.methods.split(",")]
    for seed in (int(x) for x in args.seeds.split(",")):
        for m, k in methods:
            if time.time() - t0 > args.budget_s:
                break
            cfg = TrainConfig(net="resnet32", method=MethodConfig(m, k, 1 if m == "backlink" else 0),
                              epochs=args.epochs, batch_size=128, lr=0.1, seed=seed)
            ts = time.time()
            r = train(cfg, data, device="cuda").as_dict()
            r["wall_s"] = time.time() - ts
            doc["accuracy"].append(r)
            json.dump(doc, open(args.out, "w"), indent=1)
            print(f"seed {seed} {m:9s} K={k:2d} acc {r['final_test_acc']:.4f} "
                  f"per-epoch {[round(e['test_acc'], 4) for e in r['epochs']]} {r['wall_s']:.0f} s", flush=True)
    print(f"total {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
