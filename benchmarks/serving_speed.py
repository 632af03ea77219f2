"""Serving speed (issue 16): simulate 30,000 requests (<= 2 s) and an SLO search over >= 1,000
deployments (<= 10 s), one core.

    .venv/bin/python benchmarks/serving_speed.py
"""
from __future__ import annotations

import time

from xlayer.prediction.case import case_from_dict
from xlayer.serving.deploy import slo_search
from xlayer.serving.predict import predict_serving

LLAMA8B = {"name": "Llama 3.1 8B", "layers": 32, "hidden": 4096, "heads": 32, "kv_heads": 8, "ffn_hidden": 14336,
           "vocab": 128256, "activation": "swiglu"}
LLAMA70B = {"name": "Llama 3.3 70B", "layers": 80, "hidden": 8192, "heads": 64, "kv_heads": 8, "ffn_hidden": 28672,
            "vocab": 128256, "activation": "swiglu"}


def case(model, acc, count, prompt, output, requests):
    return case_from_dict({"id": "bench", "kind": "inference", "software": {"framework": "trt-llm"}, "model": model,
                           "system": {"accelerator": acc, "count": count}, "precision": "fp8",
                           "request": {"mode": "serving", "prompt_len": prompt, "output_len": output,
                                       "requests": requests}})


def main() -> None:
    c = case(LLAMA8B, "H100-SXM-80GB", 1, 128, 128, 30000)
    t = time.perf_counter()
    p = predict_serving(c)
    sim_s = time.perf_counter() - t
    print(f"simulate 30,000 requests (Llama 3.1 8B fp8, H100, 128/128): {sim_s:.2f} s, "
          f"{int(p.metrics['iterations']):,} iterations, {p.sim.events:,} events, "
          f"{p.metrics['output_tokens_per_s_per_gpu']:,.0f} tokens/s/GPU")
    c2 = case(LLAMA70B, "H100-SXM-80GB", 8, 1000, 1000, 3000)
    t = time.perf_counter()
    r = slo_search(c2, 1.0, 0.05, points=512)
    s_s = time.perf_counter() - t
    print(f"SLO search (Llama 3.3 70B fp8, 8 H100, 1000/1000, TTFT<=1 s, TPOT<=50 ms): {r.evaluated:,} deployments "
          f"in {s_s:.2f} s; best {r.ranked[0].deployment.label} max batch {r.ranked[0].cap}: "
          f"{r.ranked[0].tokens_per_s_per_gpu:,.0f} tokens/s/GPU")
    assert sim_s <= 2.0 and r.evaluated >= 1000 and s_s <= 10.0


if __name__ == "__main__":
    main()
