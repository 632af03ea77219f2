"""Collectives timed from measured nccl-tests curves (xlayer/hardware/nccl_curves.yaml)."""
from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from xlayer.cost.collectives import _formula_time_s, curve_time_s, ring_time_s
from xlayer.hardware.catalog import get_accelerator
from xlayer.hardware.spec import BusBandwidthCurve

PARTS = ["A100-SXM-80GB", "A100-SXM-40GB", "H100-SXM-80GB", "H200-SXM-141GB"]


def test_curve_reproduces_a_measured_point():
    link = get_accelerator("A100-SXM-80GB").scale_up
    curve = link.measured["all_reduce"]
    # 64 MiB, median busbw 176.76 GB/s of the six runs: t = 2*7/8 * S / busbw
    assert curve_time_s("all_reduce", 2 ** 26, 8, curve) == pytest.approx(1.75 * 2 ** 26 / 176.76e9)
    # half way (in log size) between 32 and 64 MiB: the geometric mean of the two times
    t32, t64 = 1.75 * 2 ** 25 / 138.69e9, 1.75 * 2 ** 26 / 176.76e9
    assert curve_time_s("all_reduce", 2 ** 25.5, 8, curve) == pytest.approx((t32 * t64) ** 0.5)
    # 4 ranks: the 8-rank time scaled by f(4)/f(8) = 1.5/1.75
    assert curve_time_s("all_reduce", 2 ** 26, 4, curve) == pytest.approx(1.5 * 2 ** 26 / 176.76e9)
    # all-gather: (n-1)/n * S / busbw, 1 GiB at 212.88 GB/s
    assert curve_time_s("all_gather", 2 ** 30, 8, link.measured["all_gather"]) == pytest.approx(
        0.875 * 2 ** 30 / 212.88e9)


def test_host_share_removed_at_the_smallest_size():
    link = get_accelerator("A100-SXM-80GB").scale_up
    s_min = link.measured["all_reduce"].sizes_bytes[0]
    # at 64 KiB the result is the alpha-beta formula (the rest of the measured time is host launch)
    assert ring_time_s("all_reduce", s_min, 8, link) == pytest.approx(_formula_time_s("all_reduce", s_min, 8, link))
    # at 1 GiB the measurement rules, less that host share (tens of microseconds)
    t = ring_time_s("all_reduce", 2 ** 30, 8, link)
    assert 1.75 * 2 ** 30 / 228.10e9 - 50e-6 < t < 1.75 * 2 ** 30 / 228.10e9
    # the formula alone is faster than the measurement at medium sizes (protocol switches)
    assert ring_time_s("all_reduce", 8 * 2 ** 20, 8, link) > 1.5 * _formula_time_s("all_reduce", 8 * 2 ** 20, 8, link)


@pytest.mark.parametrize("part", PARTS)
@pytest.mark.parametrize("coll", ["all_reduce", "all_gather", "reduce_scatter"])
def test_time_grows_with_size_and_paths_agree(part, coll):
    link = get_accelerator(part).scale_up
    sizes = np.geomspace(1e3, 4e9, 60)
    for n in (2, 4, 8):
        vec = ring_time_s(coll, sizes, n, link)
        scal = np.array([ring_time_s(coll, float(s), n, link) for s in sizes])
        assert np.allclose(vec, scal, rtol=1e-12)
        assert np.all(np.diff(scal) >= -1e-12) and np.all(scal > 0)
    assert ring_time_s(coll, 1e6, 1, link) == 0.0


def test_parts_without_curves_keep_the_formula():
    link = get_accelerator("B200-SXM-180GB").scale_up
    assert not link.measured
    assert ring_time_s("all_reduce", 5e7, 8, link) == _formula_time_s("all_reduce", 5e7, 8, link)


def test_bad_curve_is_rejected():
    with pytest.raises(ValidationError):
        BusBandwidthCurve(sizes_bytes=(2.0, 1.0), busbw_bytes_per_s=(1.0, 2.0))
    with pytest.raises(ValidationError):
        BusBandwidthCurve(sizes_bytes=(1.0,), busbw_bytes_per_s=(1.0,))
