from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("XLAYER_SHARED", ROOT.parent / "shared"))
VALIDATION = SHARED / "validation"


@pytest.fixture
def shared_validation() -> Path:
    if not VALIDATION.is_dir():
        pytest.skip("shared/validation not present beside the repository")
    return VALIDATION


def load_benchmark(name: str):
    """The script ``benchmarks/<name>.py`` as a module (registered in sys.modules, so its
    dataclasses resolve), for tests that check what a benchmark measures."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def gpt(**kw):
    from xlayer.workload.model import ModelSpec
    base = dict(name="gpt", layers=96, hidden=12288, heads=96, ffn_hidden=49152, vocab=51200, seq_len=2048,
                activation="gelu")
    base.update(kw)
    return ModelSpec(**base)


LLAMA2_70B = dict(name="Llama 2 70B", layers=80, hidden=8192, heads=64, kv_heads=8, ffn_hidden=28672,
                  vocab=32000, seq_len=4096, activation="swiglu")
LLAMA2_7B = dict(name="Llama 2 7B", layers=32, hidden=4096, heads=32, kv_heads=32, ffn_hidden=11008,
                 vocab=32000, seq_len=4096, activation="swiglu")


def inference_case(model=LLAMA2_70B, acc="H100-SXM-80GB", tp=4, pp=1, count=None, precision="bf16", batch=1,
                   prompt=128, context=0, output=1, **extra):
    """An inference case in the shared/validation format, built in a test."""
    from xlayer.prediction.case import case_from_dict
    d = {"id": "t", "kind": "inference", "model": dict(model),
         "system": {"accelerator": acc, "count": count or tp * pp, "scale_up_size": 8},
         "parallel": {"tp": tp, "pp": pp}, "precision": precision,
         "request": {"batch": batch, "prompt_len": prompt, "context_len": context, "output_len": output}}
    d.update(extra)
    return case_from_dict(d)
