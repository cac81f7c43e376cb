"""Emulated slower devices for the elastic runners' benchmark (`examples/bench_elastic.py`).

A `Slowdown` is what one call of a runner meets on a device slower than the one it was profiled on.
Every effect is an emulation on this machine, and is labelled as one wherever it is reported:

- slower reads: the runner's `StoreReader` caps its reads at the profiled read bandwidth divided
  by `read_factor` from the start of each call (`bandwidth_cap_Bps`);
- a mid-call drop: from `drop_after_s` seconds into the call (or `drop_after_share` of the call's
  deadline) reads are capped at the profiled bandwidth divided by `drop_factor` (`drop_bandwidth`);
- a busy core: a `CpuHog`, one helper process started before the call (so interpreter start-up is
  not in it) that begins spinning `hog_after_s` seconds into the call and stops when it ends: a CPU
  hog started during the call, as another app waking up would be. The hog times its own start: a
  `threading.Timer` in the caller's process fires only once it gets the GIL (seen 20 ms late).

`apply_slowdown` sets a runner's reader for a slowdown (and undoes an earlier one); `slowed_call`
wraps one call: at the call's start it has the hog begin spinning `hog_after_s` later, and stops
it after the call.
`STANDARD_SLOWDOWNS` is the benchmark's set: the profiled device, reads 30% slower, a core busy from
2 ms into the call, both, and reads halving at 30% of the deadline.
"""

from __future__ import annotations

import contextlib
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace

# The hog's own program. It says "ready", then waits (blocked, no CPU) for a start message: b"s" and
# the delay in seconds (a double). It waits that long unless the stop (b"x") comes first, spins until
# the stop comes, and answers the stop with the monotonic time it began spinning (-1.0: it did not).
# End of input (the parent closing the pipe, or exiting) ends it, whatever it is doing.
HOG_SOURCE = """
import os, select, struct, sys, time
fd = sys.stdin.fileno()
def read(n):
    data = b""
    while len(data) < n:
        part = os.read(fd, n - len(data))
        if not part:
            sys.exit(0)
        data += part
    return data
def message_within(timeout_s):
    return bool(select.select([fd], [], [], timeout_s)[0])
os.write(1, b"ready\\n")
while True:
    if read(1) != b"s":
        os.write(1, b"-1.0\\n")
        continue
    (after_s,) = struct.unpack("d", read(8))
    began = -1.0
    if not message_within(after_s):
        began = time.monotonic()
        while not message_within(0):
            for _ in range(5000):
                pass
    read(1)
    os.write(1, repr(began).encode() + b"\\n")
"""
HOG_EXIT_WAIT_S = 5.0


class CpuHog:
    """One helper process that busy-loops on a core between `start()` and `stop()` (an emulated
    competing load). Use it as a context manager: entering starts the process and waits until it is
    ready (blocked, using no CPU); leaving closes its input, which ends it, and kills it if it lingers.

    `start(after_s)` has the hog itself begin spinning `after_s` seconds later (timed in its own
    process, so a busy caller holding the GIL does not delay it); `start()` may also be called from
    another thread, e.g. a `threading.Timer`. `stop()` stops the spinning (or the pending start) and
    records in `began_s` when the spinning began (`time.monotonic()`, a clock shared by processes;
    None: it did not). Both are idempotent."""

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None
        self.began_s: float | None = None  # the last start's spinning began (monotonic s), after its stop()
        self._lock = threading.Lock()
        self._started = False

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("the CPU hog is not running: use it as a context manager")
        return self.process.pid

    @property
    def started(self) -> bool:
        """Whether a start is in force (pending or spinning) and not yet stopped."""
        with self._lock:
            return self._started

    def __enter__(self) -> CpuHog:
        self.process = subprocess.Popen(
            [sys.executable, "-c", HOG_SOURCE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0,
        )
        line = self.process.stdout.readline()
        if line.strip() != b"ready":
            self._end()
            raise RuntimeError(f"the CPU hog did not start (said {line!r})")
        return self

    def __exit__(self, *exc) -> None:
        self._end()

    def _alive(self) -> bool:
        return self.process is not None and self.process.poll() is None and not self.process.stdin.closed

    def start(self, after_s: float = 0.0) -> None:
        """Begin spinning `after_s` seconds from now."""
        if after_s < 0:
            raise ValueError(f"after_s must not be negative, not {after_s!r}")
        with self._lock:
            if self._started or not self._alive():
                return
            self.began_s = None
            self.process.stdin.write(b"s" + struct.pack("d", after_s))
            self._started = True

    def stop(self) -> None:
        """Stop spinning (the process stays, blocked, for the next `start()`); sets `began_s`."""
        with self._lock:
            if not self._started:
                return
            self._started = False
            try:
                self.process.stdin.write(b"x")
                answer = self.process.stdout.readline()
            except (BrokenPipeError, ValueError):
                return
            began = float(answer) if answer.strip() else -1.0
            self.began_s = began if began >= 0 else None

    def _end(self) -> None:
        process = self.process
        if process is None:
            return
        with self._lock:
            self._started = False
            for stream in (process.stdin, process.stdout):
                with contextlib.suppress(OSError):
                    stream.close()
        try:
            process.wait(timeout=HOG_EXIT_WAIT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass(frozen=True)
class Slowdown:
    """An emulated slower device for one call (see the module's docstring). Factors are relative to
    the profiled device: 1 is no change. `drop_after_s` fixes the drop's time into the call;
    `drop_after_share` places it at that share of the call's deadline instead (`at_deadline`)."""

    name: str
    read_factor: float = 1.0  # reads this much slower than profiled from the call's start
    drop_after_s: float | None = None  # seconds into the call the read bandwidth drops (None: no drop)
    drop_after_share: float | None = None  # ... or this share of the call's deadline
    drop_factor: float = 1.0  # after the drop reads are this much slower than profiled
    hog_after_s: float | None = None  # seconds into the call a CPU hog starts (None: no hog)

    def __post_init__(self) -> None:
        if self.read_factor < 1 or self.drop_factor < 1:
            raise ValueError(f"{self.name}: read_factor and drop_factor must be at least 1 (slower than profiled)")
        if self.drop_after_s is not None and self.drop_after_share is not None:
            raise ValueError(f"{self.name}: give drop_after_s or drop_after_share, not both")
        timed = self.drop_after_s is not None or self.drop_after_share is not None
        if timed != (self.drop_factor > 1):
            raise ValueError(f"{self.name}: a drop needs both a time (drop_after_s or drop_after_share) and drop_factor > 1")
        for value in (self.drop_after_s, self.drop_after_share, self.hog_after_s):
            if value is not None and value < 0:
                raise ValueError(f"{self.name}: times into the call must not be negative")

    @property
    def has_drop(self) -> bool:
        return self.drop_factor > 1

    @property
    def emulated(self) -> bool:
        """Whether the slowdown changes anything (the profiled device does not)."""
        return self.read_factor > 1 or self.has_drop or self.hog_after_s is not None

    @property
    def label(self) -> str:
        """A description for tables and figures, saying it is an emulation."""
        if not self.emulated:
            return f"{self.name} (the profiled device, no emulation)"
        parts = []
        if self.read_factor > 1:
            parts.append(f"reads capped at profiled/{self.read_factor:g}")
        if self.has_drop:
            when = (f"{self.drop_after_s * 1e3:g} ms" if self.drop_after_s is not None
                    else f"{self.drop_after_share:.0%} of the deadline")
            parts.append(f"reads fall to profiled/{self.drop_factor:g} at {when} into the call")
        if self.hog_after_s is not None:
            parts.append(f"a CPU hog process started {self.hog_after_s * 1e3:g} ms into the call")
        return f"{self.name} (emulated: {'; '.join(parts)})"

    def at_deadline(self, deadline_s: float | None) -> Slowdown:
        """This slowdown with its drop's time in seconds for a call of `deadline_s`."""
        if self.drop_after_share is None:
            return self
        if deadline_s is None:
            raise ValueError(f"{self.name}: its read drop is timed by the deadline; give one")
        return replace(self, drop_after_s=self.drop_after_share * deadline_s, drop_after_share=None)


PROFILED = Slowdown("profiled")
SLOW_READS = Slowdown("slow-reads", read_factor=1.3)
BUSY_CORE = Slowdown("busy-core", hog_after_s=0.002)
SLOW_READS_BUSY_CORE = Slowdown("slow-reads+busy-core", read_factor=1.3, hog_after_s=0.002)
READ_DROP = Slowdown("read-drop", drop_after_share=0.3, drop_factor=2.0)
STANDARD_SLOWDOWNS = (PROFILED, SLOW_READS, BUSY_CORE, SLOW_READS_BUSY_CORE, READ_DROP)


def slowdown_named(name: str) -> Slowdown:
    """A slowdown of `STANDARD_SLOWDOWNS` by name."""
    for slowdown in STANDARD_SLOWDOWNS:
        if slowdown.name == name:
            return slowdown
    raise ValueError(f"no slowdown {name!r}: choose from {', '.join(s.name for s in STANDARD_SLOWDOWNS)}")


def apply_slowdown(runner, slowdown: Slowdown, profiled_read_Bps: float, deadline_s: float | None = None) -> None:
    """Set `runner.reader` for `slowdown` on a device whose profiled read bandwidth is
    `profiled_read_Bps`: the cap from each call's start (with `read_factor` 1, the runner's own cap
    from its construction, normally none) and the drop (none without one). `deadline_s` times a drop
    given as a share of the deadline. Applies to every later call until the next `apply_slowdown`."""
    if not profiled_read_Bps > 0:
        raise ValueError(f"profiled_read_Bps must be positive, not {profiled_read_Bps!r}")
    slowdown = slowdown.at_deadline(deadline_s)
    reader = runner.reader
    if slowdown.read_factor > 1:
        reader.bandwidth_cap_Bps = profiled_read_Bps / slowdown.read_factor
    else:
        reader.bandwidth_cap_Bps = getattr(runner, "io_bandwidth_cap_Bps", None)
    if slowdown.has_drop:
        reader.drop_bandwidth(slowdown.drop_after_s, profiled_read_Bps / slowdown.drop_factor)
    else:
        reader.bandwidth_drop = None


@contextlib.contextmanager
def slowed_call(slowdown: Slowdown, hog: CpuHog | None = None) -> Iterator[None]:
    """Wrap one call (the reader's part is `apply_slowdown`'s): with a hog, have it begin spinning
    `hog_after_s` seconds from here (timed by the hog itself); after the call, stop it (a start
    still pending is called off). Enter it right before the call; `hog.began_s` then says when the
    hog began (`hog_began_after_s`)."""
    if slowdown.hog_after_s is None:
        yield
        return
    if hog is None or hog.process is None:
        raise ValueError(f"{slowdown.name} starts a CPU hog during the call: pass a running CpuHog")
    hog.start(slowdown.hog_after_s)
    try:
        yield
    finally:
        hog.stop()


def cpu_ticks(pid: int) -> int:
    """User plus system CPU time of process `pid` in clock ticks (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        fields = handle.read().rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat(5))


def hog_began_after_s(hog: CpuHog | None, call_start_s: float) -> float | None:
    """Seconds from `call_start_s` (`time.monotonic()`) to when the hog's last start began spinning;
    None without a hog, or if it did not spin."""
    if hog is None or hog.began_s is None:
        return None
    return hog.began_s - call_start_s


def process_alive(pid: int) -> bool:
    """Whether a process `pid` exists (and is not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False
