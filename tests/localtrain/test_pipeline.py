import pytest

from xlayer.errors import InputError
from xlayer.localtrain.measure import ModuleTimes
from xlayer.localtrain.pipeline import plot_timelines, simulate


def times(K, f=1.0, b=2.0, tail=0.5):
    return ModuleTimes([f] * K, [b] * K, [0.0] * K, [0.0] * K, [tail] * (K - 1) + [0.0])


def test_two_modules_two_devices_by_hand():
    t = times(2)
    # backprop: F0 F1 B1 B0 = 1+1+2+2 per batch, nothing overlaps
    assert simulate(t, 2, "backprop", 2).makespan_s == pytest.approx(12.0)
    # local: dev0 F0(0..1) B0(1..3) F0(3..4) B0(4..6); dev1 F1(1..2) B1(2..4) F1(4..5) B1(5..7)
    assert simulate(t, 2, "local", 2).makespan_s == pytest.approx(7.0)
    # backlink: L0(t) needs B1(t): L0 4..4.5, F0(1) 4.5..5.5, B0 5.5..7.5, F1 5.5..6.5,
    # B1 6.5..8.5, L0(1) 8.5..9
    assert simulate(t, 2, "backlink", 2).makespan_s == pytest.approx(9.0)


def test_single_device_is_sum_of_work():
    t = times(3)
    assert simulate(t, 1, "backprop", 2).makespan_s == pytest.approx(18.0)
    assert simulate(t, 1, "local", 2).makespan_s == pytest.approx(18.0)
    assert simulate(t, 1, "backlink", 2).makespan_s == pytest.approx(18.0 + 2 * 2 * 0.5)


def test_comm_delay_and_busy():
    t = times(2)
    r = simulate(t, 2, "backprop", 1, comm_s=0.25)
    assert r.makespan_s == pytest.approx(6.5)                    # two cross-device edges
    assert r.busy_s == pytest.approx([3.0, 3.0])


def test_more_devices_help_local_not_backprop():
    t = times(4)
    assert simulate(t, 4, "backprop", 4).makespan_s == pytest.approx(simulate(t, 1, "backprop", 4).makespan_s)
    assert simulate(t, 4, "local", 8).makespan_s < simulate(t, 4, "backlink", 8).makespan_s \
        < simulate(t, 4, "backprop", 8).makespan_s


def test_bad_pipeline_input_and_plot(tmp_path):
    with pytest.raises(InputError):
        simulate(times(2), 3, "local")
    with pytest.raises(InputError):
        simulate(times(2), 2, "gpipe")
    rs = [simulate(times(2), 2, m, 2) for m in ("backprop", "local", "backlink")]
    for suffix in ("png", "svg"):
        path = plot_timelines(rs, tmp_path / f"t.{suffix}")
        assert path.stat().st_size > 1000
