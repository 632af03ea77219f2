"""How long one scalar prediction takes in-process (target: <= 1 ms).

    python benchmarks/scalar_predict.py [CASE.yaml]

Times ``predict_training`` on an already-loaded case with its layout given (the work a
search or an API user repeats), and the bare ``evaluate_training`` composition.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from xlayer.prediction.training import predict_training, resolve_layout
from xlayer.prediction.case import load_case
from xlayer.engine.training import evaluate_training, recipe_for

DEFAULT = Path(__file__).resolve().parents[1] / "xlayer" / "examples" / "gpt3-175b-1024xa100.yaml"


def best_of(fn, repeat: int = 15, number: int = 100) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - t0) / number)
    return best


def main(path: Path = DEFAULT) -> None:
    case = load_case(path)
    layout, _ = resolve_layout(case)
    system = case.system_spec()
    recipe = recipe_for(case.model, case.precision)
    t_full = best_of(lambda: predict_training(case, layout, energy=False))
    t_energy = best_of(lambda: predict_training(case, layout))
    t_eval = best_of(lambda: evaluate_training(case.model, system, case.precision, case.batch.global_, layout.tp,
                                               layout.pp, layout.dp, layout.cp, layout.vp, layout.micro, layout.sp,
                                               layout.recompute, layout.zero, layout.dp_overlap, recipe))
    print(f"predict_training (time + memory, with breakdown): {t_full * 1e3:.3f} ms per prediction")
    print(f"predict_training (also energy):                   {t_energy * 1e3:.3f} ms per prediction")
    print(f"evaluate_training (scalar core):   {t_eval * 1e3:.3f} ms per prediction")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT)
