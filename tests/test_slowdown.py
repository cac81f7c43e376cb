"""The emulated slowdowns of the elastic benchmark (`sticc.bench.slowdown`): the mechanism only, no
timing. The CPU hog spins only between start() and stop() and is gone after its context; a
slowdown sets (and unsets) a runner's read cap and mid-call drop; the standard set says it is
emulated."""

from __future__ import annotations

import threading
import time

import pytest
import torch
from helpers import compile_runner

from solvers.uniform import uniform_plan
from sticc.bench.slowdown import (
    BUSY_CORE,
    PROFILED,
    READ_DROP,
    SLOW_READS,
    SLOW_READS_BUSY_CORE,
    STANDARD_SLOWDOWNS,
    CpuHog,
    Slowdown,
    apply_slowdown,
    cpu_ticks,
    hog_began_after_s,
    process_alive,
    slowdown_named,
    slowed_call,
)
from sticc.model.store import Store

PATIENCE_S = 20.0  # how long a test waits for the hog to show CPU time (a loaded machine is slow)
SPIN_TICKS = 5  # CPU ticks that show the hog spinning
IDLE_TICKS = 2  # the most CPU ticks a blocked hog may show (start-up's tail, accounting granularity)


def _wait_for_ticks(pid: int, above: int) -> int:
    deadline = time.monotonic() + PATIENCE_S
    while time.monotonic() < deadline:
        ticks = cpu_ticks(pid)
        if ticks > above:
            return ticks
        time.sleep(0.02)
    raise AssertionError(f"the hog used no CPU within {PATIENCE_S} s of start()")


def _settled_ticks(pid: int) -> int:
    """CPU ticks once they stop changing (the hog is blocked)."""
    before = cpu_ticks(pid)
    for _ in range(100):
        time.sleep(0.05)
        now = cpu_ticks(pid)
        if now == before:
            return now
        before = now
    raise AssertionError("the hog kept using CPU")


def test_hog_spins_only_between_start_and_stop_and_is_gone_after() -> None:
    with CpuHog() as hog:
        pid = hog.pid
        idle = _settled_ticks(pid)
        time.sleep(0.2)
        assert cpu_ticks(pid) - idle <= IDLE_TICKS, "the hog spun before start()"
        assert not hog.started and hog.began_s is None
        before_s = time.monotonic()
        hog.start()
        assert hog.started
        _wait_for_ticks(pid, idle + SPIN_TICKS)
        hog.stop()
        assert not hog.started and hog.began_s is not None and hog.began_s >= before_s
        stopped = _settled_ticks(pid)
        time.sleep(0.2)
        assert cpu_ticks(pid) - stopped <= IDLE_TICKS, "the hog spun after stop()"
        hog.start(0.0)  # and again: it waits for the next start
        _wait_for_ticks(pid, stopped + SPIN_TICKS)
        # left spinning: the context's exit ends it anyway
    assert hog.process.poll() is not None
    assert not process_alive(pid)


def test_hog_start_called_off_before_its_delay_never_spins() -> None:
    with CpuHog() as hog:
        idle = _settled_ticks(hog.pid)
        hog.start(3600.0)
        time.sleep(0.2)
        hog.stop()
        assert hog.began_s is None
        assert cpu_ticks(hog.pid) - idle <= IDLE_TICKS
        timer = threading.Timer(0.0, hog.start)  # start() from another thread
        timer.start()
        timer.join()
        assert hog.started
        time.sleep(0.2)  # a stop that comes before the hog read its start would cancel it: let it begin
        hog.stop()
        assert hog.began_s is not None
    with pytest.raises(ValueError):
        hog.start(-1.0)


def test_hog_exits_when_idle() -> None:
    with CpuHog() as hog:
        pid = hog.pid
    assert not process_alive(pid)
    hog.start()  # after the exit: nothing to start
    assert not hog.started


def test_slowed_call_starts_the_hog_during_the_call_and_stops_it_after() -> None:
    right_away = Slowdown("now", hog_after_s=0.0)
    with CpuHog() as hog:
        idle = _settled_ticks(hog.pid)
        start_s = time.monotonic()
        with slowed_call(right_away, hog):
            assert hog.started
            _wait_for_ticks(hog.pid, idle + SPIN_TICKS)
        assert not hog.started
        after = hog_began_after_s(hog, start_s)
        assert after is not None and after >= 0
        # a hog timed after the call never starts
        late = Slowdown("late", hog_after_s=3600.0)
        with slowed_call(late, hog):
            pass
        assert not hog.started and hog_began_after_s(hog, time.monotonic()) is None
    with pytest.raises(ValueError, match="CpuHog"), slowed_call(BUSY_CORE):
        pass
    with slowed_call(SLOW_READS):  # no hog needed
        pass


def test_slowdown_sets_and_clears_the_readers_cap_and_drop(tiny_bert_store, tmp_path) -> None:
    runner = compile_runner(tiny_bert_store, uniform_plan(Store.open(tiny_bert_store), 8), tmp_path / "runner")
    try:
        reader = runner.reader
        profiled = 1e9
        apply_slowdown(runner, SLOW_READS, profiled)
        assert reader.bandwidth_cap_Bps == pytest.approx(profiled / 1.3)
        assert reader.bandwidth_drop is None
        apply_slowdown(runner, READ_DROP, profiled, deadline_s=0.04)
        assert reader.bandwidth_cap_Bps is None  # full speed until the drop
        after_s, cap = reader.bandwidth_drop
        assert after_s == pytest.approx(0.3 * 0.04) and cap == pytest.approx(profiled / 2)
        apply_slowdown(runner, SLOW_READS_BUSY_CORE, profiled)
        assert reader.bandwidth_cap_Bps == pytest.approx(profiled / 1.3) and reader.bandwidth_drop is None
        apply_slowdown(runner, PROFILED, profiled)
        assert reader.bandwidth_cap_Bps is None and reader.bandwidth_drop is None
        with pytest.raises(ValueError, match="deadline"):
            apply_slowdown(runner, READ_DROP, profiled)
        # a call runs under a slowdown (its result is not timed here)
        apply_slowdown(runner, READ_DROP, profiled, deadline_s=1.0)
        ids = torch.arange(1, 9).unsqueeze(0)
        with CpuHog() as hog, slowed_call(SLOW_READS_BUSY_CORE, hog):
            hidden = runner.forward(ids, deadline_s=10.0)
        assert hidden.shape[:2] == (1, 8) and torch.isfinite(hidden).all()
        assert runner.last_stats["deadline_s"] == 10.0
    finally:
        runner.close()


def test_standard_set_is_labelled_emulated() -> None:
    names = [s.name for s in STANDARD_SLOWDOWNS]
    assert names == ["profiled", "slow-reads", "busy-core", "slow-reads+busy-core", "read-drop"]
    assert not PROFILED.emulated and "no emulation" in PROFILED.label
    for slowdown in STANDARD_SLOWDOWNS[1:]:
        assert slowdown.emulated and "emulated" in slowdown.label, slowdown
        assert slowdown_named(slowdown.name) is slowdown
    assert SLOW_READS.read_factor == 1.3 and BUSY_CORE.hog_after_s == 0.002
    assert READ_DROP.at_deadline(0.02).drop_after_s == pytest.approx(0.006)
    with pytest.raises(ValueError):
        slowdown_named("faster")
    with pytest.raises(ValueError):
        Slowdown("drop without a time", drop_factor=2.0)
    with pytest.raises(ValueError):
        Slowdown("faster reads", read_factor=0.5)
