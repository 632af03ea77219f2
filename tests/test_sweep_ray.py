"""The Ray backend on a local instance (2 CPUs) gives the local backend's results."""
from __future__ import annotations

import pytest

from xlayer.explore.sweep import read_results, run_sweep, sweep_from_dict

ray = pytest.importorskip("ray")

BASE = {"id": "small", "kind": "training",
        "model": {"name": "gpt-small", "layers": 8, "hidden": 1024, "heads": 16, "vocab": 32000, "seq_len": 1024},
        "system": {"accelerator": "H100-SXM-80GB", "count": 8},
        "batch": {"global": 32}, "precision": "bf16"}

COMPARED = ("point_id", "system.count", "hardware.hbm_capacity_gib", "status", "tp", "pp", "dp", "cp", "vp",
            "micro", "sp", "recompute", "zero", "iteration_time_s", "memory_gib", "mfu", "fits", "considered",
            "valid", "fitting")


def test_ray_matches_local(tmp_path):
    sw = sweep_from_dict({"name": "ray", "base": BASE, "chunk_size": 2,
                          "parameters": {"system.count": [8, 16, 32], "hardware.hbm_capacity_gib": [8, 80]}})
    local = run_sweep(sw, tmp_path / "local", backend="local", workers=2)
    remote = run_sweep(sw, tmp_path / "ray", backend="ray", workers=2)
    assert local.evaluated == remote.evaluated == 6 and remote.chunks_written == 3
    a = read_results(tmp_path / "local")[list(COMPARED)]
    b = read_results(tmp_path / "ray")[list(COMPARED)]
    assert a.equals(b)
    assert not ray.is_initialized()  # the local instance it started is shut down
