"""xlayer's flash-attention kernel model against NVIDIA's published cuDNN SDPA training times
(benchmarks/compare_sdpa.py; data: benchmarks/data/cudnn-sdpa-training.csv, its header names
the source). The flash constants were fitted on our H200 PyTorch-SDPA measurements, so this
is an out-of-sample check on the kernel library Megatron-Core runs and on Blackwell."""
from __future__ import annotations

import pytest

from conftest import load_benchmark


@pytest.fixture(scope="module")
def sdpa():
    return load_benchmark("compare_sdpa")


@pytest.fixture(scope="module")
def rows(sdpa):
    return sdpa.compare()


def test_every_part_and_pass_within_a_quarter(sdpa, rows):
    """Mean absolute error per part and pass (H200, GB200, GB300; forward, backward)."""
    s = sdpa.summary(rows)
    assert {g for g, _ in s} == {"NVIDIA H200", "NVIDIA GB200", "NVIDIA GB300"}
    for key, (n, _mean, mape) in s.items():
        assert n >= 10 and mape <= 25.0, (key, mape)


def _windowed_32k_forward(r) -> bool:
    """The published 128-window forward at 32 K tokens takes 3.2x the 16 K one on both Blackwell
    parts (2.634 vs 0.822 ms on GB200), though a windowed kernel's work is linear in the tokens
    (16 K → 8 K: 1.99x): a kernel-selection effect at that length, not a window cost; those two
    rows are reported by the script and left out of the bounds below."""
    return bool(r.window) and r.seq == 32768 and r.kernel_pass == "fwd" and r.gpu != "NVIDIA H200"


def test_no_row_of_head_dim_up_to_192_beyond_45_percent(rows):
    """Head dimensions 64-192 (Llama 3.1, DeepSeek-V3, Kimi, GPT-OSS); the 256-wide Qwen3.5
    heads at short sequences are the model's worst (+55…+76 % at 2-4 K on GB300)."""
    for r in rows:
        if r.head_dim <= 192 and not _windowed_32k_forward(r):
            assert abs(r.error_pct) <= 45.0, r


def test_sliding_window_tiles_are_skipped(rows):
    """GPT-OSS's windowed layers: cuDNN skips the key tiles outside the window, and so does the
    model — within 30 % from 2 K to 32 K tokens (a kernel over the whole causal triangle
    would be 8-130x slower at a 128-token window)."""
    swa = [r for r in rows if r.window]
    assert len(swa) == 30
    for r in swa:
        if not _windowed_32k_forward(r):
            assert abs(r.error_pct) <= 30.0, r


def test_missing_data_file_exits_2(sdpa, tmp_path, capsys):
    assert sdpa.main([str(tmp_path / "absent.csv")]) == 2
    assert "absent.csv" in capsys.readouterr().err
