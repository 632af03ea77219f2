"""Re-derive the compute-model calibration (xlayer/data/calibration.yaml) from the measured
H200 kernels, and report how well the fitted model reproduces them.

    python benchmarks/fit_kernels.py [path/to/h200-pytorch-kernels.json]

Grid-search least squares (mean absolute relative error) over:
* GEMMs with m >= 2048 and time > 60 us: isolated/best ratio and the isolated-kernel floor;
* causal flash attention: rho_max, s_half, tiles_half and the backward/forward time ratio.
And the steady-state (power-limited) ratio from our own 40 s run of back-to-back GEMMs
(benchmarks/data/h200-sustained-gemm.json, made by benchmarks/gpu_sustained.py):
    sustained/best = median TFLOP/s of the last 10 s / (best GEMM of the kernel file x wave utilization).
Nothing here looks at the validation cases.
"""
from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

from xlayer.cost.compute import wave_utilization

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "validation" / "kernels" / "h200-pytorch-kernels.json"
SUSTAINED = Path(__file__).resolve().parent / "data" / "h200-sustained-gemm.json"


def main(path: Path = DEFAULT) -> dict:
    d = json.loads(Path(path).read_text())
    best_gemm = d["peak"]["bf16_gemm_tflops"] * 1e12
    sms = d["device"]["sms"]
    gemms = [g for g in d["gemm"] if g["m"] >= 2048 and g["time_s"] > 6e-5]
    fits = []
    for sust, floor in itertools.product([0.86 + 0.01 * i for i in range(15)], [4e-6, 1e-5, 2e-5, 3e-5]):
        errs = [(2 * g["m"] * g["n"] * g["k"] / (best_gemm * sust * wave_utilization(g["m"], g["n"], 1, sms))
                 + floor) / g["time_s"] - 1 for g in gemms]
        fits.append((sum(map(abs, errs)) / len(errs), max(map(abs, errs)), sust, floor))
    fits.sort()
    mape, worst, sust, floor = fits[0]
    print(f"GEMM: isolated_over_best={sust:.2f} floor={floor:.0e}s  MAPE={100 * mape:.1f}% max={100 * worst:.0f}% n={len(gemms)}")
    steady = None
    if SUSTAINED.exists():
        run = json.loads(SUSTAINED.read_text())["sustained"]
        m, k, n = run["shape"]
        steady = run["last_10s_tflops"] * 1e12 / (best_gemm * wave_utilization(m, n, 1, sms))
        print(f"GEMM steady state: {run['last_10s_tflops']:.1f} TFLOP/s over the last 10 s of {m}x{k}x{n} -> "
              f"sustained_over_best={steady:.3f}")

    rate = best_gemm * sust
    afits = []
    for rmax, s_half, w_half, ratio in itertools.product([0.9 + 0.025 * i for i in range(9)],
                                                        [256, 512, 1024, 2048], [0.5, 1, 2, 4],
                                                        [2.6, 2.8, 3.0, 3.2, 3.4]):
        errs = []
        for a in d["attention"]:
            flops = 4 * a["b"] * a["heads"] * a["s"] ** 2 * a["d"] * 0.5
            w = a["b"] * a["heads"] * a["s"] / 128 / sms
            rho = rmax * a["s"] / (a["s"] + s_half) * w / (w + w_half)
            fwd = flops / (rate * rho) + floor
            errs += [fwd / a["fwd_s"] - 1, (fwd + flops / (rate * rho) * ratio + floor) / a["fwd_bwd_s"] - 1]
        afits.append((sum(map(abs, errs)) / len(errs), max(map(abs, errs)), rmax, s_half, w_half, ratio))
    afits.sort()
    amape, aworst, rmax, s_half, w_half, ratio = afits[0]
    print(f"flash: rel_max={rmax:.3f} seq_half={s_half} tiles_half={w_half} bwd/fwd={ratio}  "
          f"MAPE={100 * amape:.1f}% max={100 * aworst:.0f}%")
    return {"sustained_over_best_matmul": steady, "isolated_over_best_matmul": sust, "eager_isolated_kernel_s": floor, "flash_rel_max": rmax,
            "flash_seq_half": s_half, "flash_tiles_half": w_half, "flash_bwd_time_over_fwd": ratio}


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT)
