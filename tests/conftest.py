from __future__ import annotations

import os
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


def gpt(**kw):
    from xlayer.workload.model import ModelSpec
    base = dict(name="gpt", layers=96, hidden=12288, heads=96, ffn_hidden=49152, vocab=51200, seq_len=2048,
                activation="gelu")
    base.update(kw)
    return ModelSpec(**base)
