"""The family-agnostic engine of every runner: store format, weight pool, reader, IO lane, call driver.

Codegen inlines `sticc/runtime/core.py`, `decode.py` and the family's kernels (`encoder.py`) verbatim
into each runner, so these modules import only the standard library, numpy, torch and xxhash, and
each other through `from sticc.runtime.<module> import ...` lines, which the inliner drops.

Two lanes that do not fight (docs/performance.md measures them):
- the IO lane, one thread per runner, only reads and checks: it takes ring space for a chunk's
  stored bytes, reads them (O_DIRECT where the file system allows it: no page-cache copy), checks
  every piece's xxh3 checksum (a C library call that releases the GIL) and hands the chunk over.
  It runs no torch op, so it never joins torch's thread team;
- the compute lane, the caller's thread with torch's threads on every core, dequantizes each chunk
  just in time into a small reusable fp32 scratch (`sticc.runtime.decode`) and runs the kernels.

Bits buy memory as well as IO: the pool (`WeightPool`) is one allocation made at construction,
[ring | scratch | pinned]. The ring holds streamed chunks as stored (packed codes, scales, bias);
the pinned region holds headers and the preload set, also as stored; the scratch holds one chunk
dequantized. `peak_weight_bytes` is the pool's size, plus any temporary an input longer than
planned needs.

Unlike the rest of sticc these modules do not use `from __future__ import annotations`: a runner
loaded with `importlib.util.spec_from_file_location` but not registered in `sys.modules` must still
define its dataclasses, which string annotations would prevent.
"""

import collections
import enum
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
import xxhash

STORE_FORMAT_VERSION = 2
SEGMENT_ALIGN_BYTES = 64  # segments inside a blob start on this boundary (aligned tensor views)
READ_ALIGN_BYTES = 4096  # blobs start on this boundary in the data file; O_DIRECT reads whole units of it
FULL_PRECISION_BITS = (16, 32)


class StoreError(RuntimeError):
    """The store on disk does not match what the runner was generated for (or is corrupt)."""


def checksum(data) -> int:
    """The store's checksum of a bytes-like object: xxh3 (64 bits). It releases the GIL."""
    return xxhash.xxh3_64_intdigest(data)


def checksum_error(what: str) -> StoreError:
    return StoreError(f"checksum mismatch in {what}: the store is corrupt (run `sticc verify`)")


def align_up(value: int, alignment: int) -> int:
    return -(-value // alignment) * alignment


# ----------------------------------------------------------------------------------------------
# Blob layout: one stored piece = weight matrix [rows, cols] at some bitwidth, plus an fp32 bias.
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BlobLayout:
    """Byte layout of one stored piece. Offsets are relative to the blob start."""

    rows: int
    cols: int
    bits: int
    group_size: int  # weights sharing one (scale, zero) pair; 0 for 16/32 bits
    bias_len: int
    weight_offset: int  # packed codes, or the fp16/fp32 matrix
    weight_nbytes: int
    scales_offset: int  # fp16 per group (empty for 16/32 bits)
    zeros_offset: int  # fp16 per group (empty for 16/32 bits)
    groups: int
    bias_offset: int  # fp32 [bias_len]
    nbytes: int

    @property
    def weight_count(self) -> int:
        return self.rows * self.cols

    @property
    def slot_nbytes(self) -> int:
        """Bytes the piece takes in memory as stored: rounded up to whole read units, as read."""
        return align_up(self.nbytes, READ_ALIGN_BYTES)


def blob_layout(rows: int, cols: int, bits: int, group_size: int, bias_len: int) -> BlobLayout:
    """The byte layout of a piece; the store writer and every runner derive offsets from this."""
    count = rows * cols
    if bits in FULL_PRECISION_BITS:
        weight_nbytes = count * bits // 8
        groups = 0
        group_size = 0
    else:
        if not 1 <= bits <= 8:
            raise ValueError(f"unsupported bitwidth {bits}")
        if count % 8 or count % group_size:
            raise ValueError(f"{rows}x{cols} weights do not split into bytes and groups of {group_size}")
        # codes: 8 codes of `bits` bits pack into exactly `bits` bytes
        weight_nbytes = count * bits // 8
        groups = count // group_size
    weight_offset = 0
    # scales: one fp16 per group; zeros: one fp16 per group
    scales_offset = align_up(weight_offset + weight_nbytes, SEGMENT_ALIGN_BYTES)
    zeros_offset = align_up(scales_offset + 2 * groups, SEGMENT_ALIGN_BYTES)
    # bias: fp32, never quantized (a few hundred values per piece)
    bias_offset = align_up(zeros_offset + 2 * groups, SEGMENT_ALIGN_BYTES)
    nbytes = bias_offset + 4 * bias_len
    return BlobLayout(
        rows, cols, bits, group_size, bias_len, weight_offset, weight_nbytes,
        scales_offset, zeros_offset, groups, bias_offset, nbytes,
    )


# the FFN activations of every family, by the names configs give them
ACTIVATIONS = {
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
}


def piece_blocks(part: str, query_groups: int = 1, gated: bool = False, qkv_bias: bool = True) -> tuple:
    """(row blocks, bias blocks) of a stored piece (`sticc.model.sharding` cuts pieces so): an
    attention piece is `query_groups` query blocks, a key and a value block, and as many output
    blocks as query blocks; an FFN piece is [gate,] up and down blocks; an LM head slice is one
    block. A piece without a bias has one empty bias block."""
    if part == "attn":
        return 2 * query_groups + 2, query_groups + 2 if qkv_bias else 1
    if part == "ffn":
        return (3 if gated else 2), 1
    if part == "lm_head":
        return 1, 1
    raise ValueError(f"unknown part {part!r}")


@dataclass(frozen=True)
class Extent:
    """A checked byte range of the store's data file."""

    offset: int
    nbytes: int
    checksum: int


@dataclass(frozen=True)
class Member:
    """One stored piece of a chunk (literals in the generated runner)."""

    what: str  # human-readable: "layer 3 shard 7 attn @4b"
    offset: int
    layout: BlobLayout
    checksum: int
    preloaded: bool


@dataclass(frozen=True)
class ChunkLoad:
    """One entry of the load list: the kept pieces of one chunk slot of a layer block, in member
    order (by bits, streamed before preloaded, then by index)."""

    key: int
    members: tuple  # of Member

    @property
    def pinned_in_place(self) -> bool:
        """Every member a preloaded fp32 piece: pinned in its final (decoded) form at construction."""
        return all(m.preloaded and m.layout.bits == 32 for m in self.members)

    @property
    def streamed(self) -> tuple:
        return tuple(m for m in self.members if not m.preloaded)

    @property
    def ring_nbytes(self) -> int:
        """Ring bytes of one call's copy of the streamed members, as stored (0: nothing streamed)."""
        return 0 if self.pinned_in_place else sum(m.layout.slot_nbytes for m in self.streamed)


@dataclass(frozen=True)
class Run:
    """Consecutive members of a chunk with one layout and one home (ring or pinned), laid out at a
    stride of one slot: dequantized together, with one call."""

    start: int  # first member, in member order
    count: int
    layout: BlobLayout
    pinned: bool  # the bytes live in the pinned region (preloaded), else in the call's ring space
    offset: int  # of the first member: from the pool's start (pinned), or from the chunk's ring start


@dataclass(frozen=True)
class Read:
    """Streamed members that lie back to back in the data file: one read into the ring."""

    file_offset: int
    ring_offset: int  # from the chunk's ring start
    nbytes: int  # up to the end of the last member's blob (the last read unit may be partial)
    members: tuple  # of (ring offset, Member), each checked after the read


def chunk_reads(load: ChunkLoad) -> tuple:
    """The reads of a chunk's streamed members: a new read wherever the next member does not start
    where the previous one's slot ends in the file."""
    reads = []
    ring_offset = 0
    for member in load.streamed:
        slot = member.layout.slot_nbytes
        last = reads[-1] if reads else None
        if last is not None and last.file_offset + align_up(last.nbytes, READ_ALIGN_BYTES) == member.offset:
            reads[-1] = Read(
                last.file_offset, last.ring_offset, member.offset + member.layout.nbytes - last.file_offset,
                (*last.members, (ring_offset, member)),
            )
        else:
            reads.append(Read(member.offset, ring_offset, member.layout.nbytes, ((ring_offset, member),)))
        ring_offset += slot
    return tuple(reads)


# ----------------------------------------------------------------------------------------------
# The weight pool: one allocation at construction, [ring | scratch | pinned], accounted exactly.
# ----------------------------------------------------------------------------------------------


class Ring:
    """The ring of a weight pool: one call's streamed chunks as stored, allocated in load order and
    freed in the same order (compute consumes chunks in load order).

    Admission is by live bytes, the rule the planner's latency model assumes: `allocate` waits while
    the live allocations plus the new one exceed `admit_nbytes`. The ring is `admit_nbytes` plus
    the largest chunk long, which is what guarantees a contiguous place for every admitted chunk
    even when it wraps around the end (docs/performance.md has the argument).
    """

    def __init__(self, buffer: torch.Tensor, admit_nbytes: int) -> None:
        self.buffer = buffer
        self.capacity = buffer.numel()
        self.admit_nbytes = admit_nbytes
        self._live = collections.deque()  # (start, nbytes) of live allocations, oldest first
        self._live_nbytes = 0
        self._stopped = False
        self._cond = threading.Condition()

    def allocate(self, nbytes: int) -> int:
        """Start offset of `nbytes` of contiguous ring space, waiting for frees if the ring is full."""
        with self._cond:
            while self._live and self._live_nbytes + nbytes > self.admit_nbytes:
                if self._stopped:
                    raise StoreError("load cancelled")
                self._cond.wait()
            if self._stopped:
                raise StoreError("load cancelled")
            start = self._place(nbytes)
            self._live.append((start, nbytes))
            self._live_nbytes += nbytes
            return start

    def _place(self, nbytes: int) -> int:
        if not self._live:
            start = 0
        else:
            oldest, newest = self._live[0][0], self._live[-1][0] + self._live[-1][1]
            wrapped = newest <= oldest
            if not wrapped and newest + nbytes <= self.capacity:
                start = newest
            elif not wrapped and nbytes <= oldest:
                start = 0
            elif wrapped and newest + nbytes <= oldest:
                start = newest
            else:
                start = -1
        if start < 0 or start + nbytes > self.capacity:
            raise AssertionError(f"ring of {self.capacity} B has no room for {nbytes} B (admit {self.admit_nbytes} B)")
        return start

    def free_oldest(self) -> None:
        with self._cond:
            _, nbytes = self._live.popleft()
            self._live_nbytes -= nbytes
            self._cond.notify_all()

    def stop(self) -> None:
        """Wake and cancel a wait for space (the call is being abandoned)."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def reset(self) -> None:
        """Forget every allocation (between calls, with the IO lane idle)."""
        with self._cond:
            self._live.clear()
            self._live_nbytes = 0
            self._stopped = False


@dataclass(frozen=True)
class PoolLayout:
    """Sizes of the pool's three regions (literals in the generated runner)."""

    ring_nbytes: int  # admit_nbytes + the largest streamed chunk (0 with nothing streamed)
    admit_nbytes: int  # live ring bytes the IO lane may hold at once
    scratch_nbytes: int  # one chunk dequantized, or one call's embedding rows at the planned length
    pinned_nbytes: int  # headers, preloaded pieces as stored, chunks pinned in place

    @property
    def nbytes(self) -> int:
        return self.ring_nbytes + self.scratch_nbytes + self.pinned_nbytes


class WeightPool:
    """Every weight byte a runner holds: one aligned allocation made (and touched) at construction.

    The pinned region sits at the pool's end; pinned buffers are handed out by `pin` in a fixed
    order at construction. Below it each plan of the runner (`layouts`, one per plan; an elastic
    runner has several) has its own split into ring and scratch, as it was planned: `use(plan)`
    selects one for a call. The pool is as large as the largest layout. An input longer than the
    plan's needs more scratch than there is: `scratch_or_temporary` allocates it and counts it, so
    the peak honestly exceeds the budget.
    """

    def __init__(self, layouts) -> None:
        layouts = (layouts,) if isinstance(layouts, PoolLayout) else tuple(layouts)
        self.layouts = layouts
        self.nbytes = max(layout.nbytes for layout in layouts)
        pinned = max(layout.pinned_nbytes for layout in layouts)
        raw = torch.zeros(self.nbytes + READ_ALIGN_BYTES, dtype=torch.uint8)
        shift = (-raw.data_ptr()) % READ_ALIGN_BYTES
        self._raw = raw
        self.buffer = raw[shift : shift + self.nbytes]
        self._pinned_start = self.nbytes - pinned
        self._pinned = self.buffer[self._pinned_start :]
        self._pinned_used = 0
        self.rings = tuple(Ring(self.buffer[: layout.ring_nbytes], layout.admit_nbytes) for layout in layouts)
        self.peak_bytes = self.nbytes
        self.use(0)

    def use(self, plan: int) -> None:
        """Make plan `plan`'s ring and scratch the pool's (between calls, with the IO lane idle)."""
        layout = self.layouts[plan]
        self.layout = layout
        self.ring = self.rings[plan]
        self.scratch = self.scratch_of(plan)

    def scratch_of(self, plan: int) -> torch.Tensor:
        layout = self.layouts[plan]
        return self.buffer[layout.ring_nbytes : layout.ring_nbytes + layout.scratch_nbytes]

    def pin(self, nbytes: int, alignment: int = SEGMENT_ALIGN_BYTES) -> tuple[int, torch.Tensor]:
        """(offset in the pool, buffer) of `nbytes` of the pinned region, held for the runner's lifetime."""
        start = align_up(self._pinned_used, alignment)
        if start + nbytes > self._pinned.numel():
            raise AssertionError(f"pinned region of {self._pinned.numel()} B overflows (plan and runner disagree)")
        self._pinned_used = start + nbytes
        return self._pinned_start + start, self._pinned[start : start + nbytes]

    def scratch_or_temporary(self, nbytes: int) -> torch.Tensor:
        """`nbytes` of the scratch, or a counted temporary when the scratch is smaller."""
        if nbytes <= self.scratch.numel():
            return self.scratch[:nbytes]
        self.peak_bytes = max(self.peak_bytes, self.nbytes + nbytes)
        return torch.empty(nbytes, dtype=torch.uint8)

    def reset_peak(self) -> None:
        self.peak_bytes = self.nbytes


@dataclass(frozen=True)
class LengthRow:
    """A plan's predicted call at one input length (tokens: batch x padded length)."""

    seq_len: int
    planned_latency_s: float  # at the planned percentile: what a deadline is compared with
    compute_s: float  # the chunks' compute-lane work (median)
    embed_s: float  # the embedding (median)
    joins_s: float  # every block's join (median)


@dataclass(frozen=True)
class ChunkCost:
    """A chunk of a plan as the deadline keeper sheds it: its key, its pieces (one per shard), the
    importance lost, and its lanes' work (median, at the planned length)."""

    key: int
    pieces: int
    loss: float
    io_s: float
    compute_s: float


@dataclass(frozen=True)
class PlanTable:
    """One plan of a runner (literals in the generated runner): its chunks `LOADS[first_key:stop_key]`,
    its split of the pool, and what the elastic runtime needs (`sticc.runtime.elastic`): its
    predicted latency by input length and its chunks in shed order."""

    name: str
    first_key: int
    stop_key: int
    pool: PoolLayout
    latency_target_s: float = None  # the target it was planned for (None: a given plan)
    fidelity_loss: float = None  # predicted (None: no importance profile)
    lengths: tuple = ()  # of LengthRow, by increasing length (empty: no device profile)
    shed_order: tuple = ()  # of ChunkCost, the first shed first


def pinned_nbytes(loads: tuple, header_nbytes: tuple) -> int:
    """Bytes of the pinned region, an upper bound of what `WeightPool.pin` hands out at
    construction, additive over its items: every chunk pinned in place (decoded) and every
    preloaded piece (as stored) in whole read units, then the headers (segment-aligned) in whole
    read units. The planner's memory model and the solvers count the same."""
    used = 0
    for load in loads:
        if load.pinned_in_place:
            used += align_up(decoded_nbytes(load.members), READ_ALIGN_BYTES)
        else:
            used += sum(m.layout.slot_nbytes for m in load.members if m.preloaded)
    return used + align_up(sum(align_up(n, SEGMENT_ALIGN_BYTES) for n in header_nbytes), READ_ALIGN_BYTES)


def decoded_nbytes(members: tuple) -> int:
    """fp32 bytes of a chunk's members dequantized: weights, then biases (segment-aligned)."""
    first = members[0].layout
    return decoded_chunk_nbytes(len(members), first.weight_count, first.bias_len)


def decoded_chunk_nbytes(count: int, weight_count: int, bias_len: int) -> int:
    """fp32 bytes of `count` pieces dequantized, each `weight_count` weights and `bias_len` biases."""
    return align_up(4 * count * weight_count, SEGMENT_ALIGN_BYTES) + 4 * count * bias_len


# ----------------------------------------------------------------------------------------------
# Store reads: direct reads of blobs into the ring, buffered reads of rows and metadata.
# ----------------------------------------------------------------------------------------------


def pread_into(fd: int, view: memoryview, offset: int) -> int:
    """Read from `fd` at `offset` into `view`; the bytes read (0 at the end of the file). Where the
    platform has no preadv (macOS) the bytes are read, then copied in."""
    if hasattr(os, "preadv"):
        return os.preadv(fd, [view], offset)
    data = os.pread(fd, len(view), offset)  # platforms without preadv: one copy
    view[: len(data)] = data
    return len(data)


def _open_direct(path: str):
    """An O_DIRECT descriptor of `path`, or None where the platform or file system has none
    (macOS, tmpfs): a 4096-byte aligned read at offset 0 must work."""
    flag = getattr(os, "O_DIRECT", 0)
    if not flag:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | flag)
    except OSError:
        return None
    probe = torch.empty(2 * READ_ALIGN_BYTES, dtype=torch.uint8)
    shift = (-probe.data_ptr()) % READ_ALIGN_BYTES
    try:
        pread_into(fd, memoryview(probe[shift : shift + READ_ALIGN_BYTES].numpy()), 0)
    except OSError:
        os.close(fd)
        return None
    return fd


class StoreReader:
    """Reads the store's data file: blobs straight into the ring (O_DIRECT where available, which
    skips the page cache and its copy), rows and metadata through the page cache.

    `bandwidth_cap_Bps` emulates slower flash: reads are delayed so that the bytes read since the
    cap's clock was started (at each call) never exceed cap x elapsed time. `drop_bandwidth` makes
    the cap fall to a lower rate at a given time into each call (flash that slows mid-call: a
    throttled phone, another app reading). Both are emulations, labelled as such wherever they
    are reported.
    """

    def __init__(self, path: str, bandwidth_cap_Bps=None, direct: bool = True) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDONLY)
        if hasattr(os, "posix_fadvise"):
            # every buffered read is sized exactly (rows, headers): readahead would read bytes no one asked for
            os.posix_fadvise(self._fd, 0, 0, os.POSIX_FADV_RANDOM)
        self._direct_fd = _open_direct(path) if direct else None
        self.size = os.fstat(self._fd).st_size
        self.bandwidth_cap_Bps = bandwidth_cap_Bps
        self.bandwidth_drop = None  # (seconds into the call, the cap from then on), or None
        self._lock = threading.Lock()
        self._bytes_read = 0
        self._cap_start_s = time.perf_counter()
        self._cap_bytes = 0
        self._bytes_at_drop = 0

    @property
    def direct(self) -> bool:
        return self._direct_fd is not None

    @property
    def bytes_read(self) -> int:
        with self._lock:
            return self._bytes_read

    def close(self) -> None:
        for fd in (self._fd, self._direct_fd):
            if fd is not None and fd >= 0:
                os.close(fd)
        self._fd, self._direct_fd = -1, None

    def drop_bandwidth(self, after_s: float, cap_Bps: float) -> None:
        """From `after_s` seconds into each call on, cap reads at `cap_Bps` (an emulation; before
        then the cap is `bandwidth_cap_Bps`, or none)."""
        with self._lock:
            self.bandwidth_drop = (after_s, cap_Bps)

    def start_cap_clock(self) -> None:
        with self._lock:
            self._cap_start_s = time.perf_counter()
            self._cap_bytes = 0
            self._bytes_at_drop = 0

    def read(self, buffer: torch.Tensor, offset: int, what: str) -> None:
        """Fill the uint8 tensor `buffer` with the bytes at `offset` (through the page cache)."""
        view = memoryview(buffer.numpy()).cast("B")
        self._read_exactly(self._fd, view, offset, len(view), what)

    def read_span(self, view: memoryview, offset: int, needed: int, what: str) -> None:
        """Read at `offset` into `view`, an aligned span as `read_blobs` takes (whole read units for
        direct reads, exactly `needed` bytes otherwise): the IO lane's read."""
        self._read_exactly(self._direct_fd if self._direct_fd is not None else self._fd, view, offset, needed, what)

    def read_blobs(self, buffer: torch.Tensor, offset: int, nbytes: int, what: str) -> None:
        """Read `nbytes` at `offset` into the start of `buffer`, a READ_ALIGN_BYTES-aligned tensor
        with room for `nbytes` rounded up to whole read units (direct reads read whole units)."""
        span = align_up(nbytes, READ_ALIGN_BYTES) if self._direct_fd is not None else nbytes
        self.read_span(memoryview(buffer.numpy()).cast("B")[:span], offset, nbytes, what)

    def _read_exactly(self, fd: int, view: memoryview, offset: int, needed: int, what: str) -> None:
        """Read into `view` until at least `needed` bytes came (a direct read of the file's last
        unit stops short at its end)."""
        if offset + needed > self.size:
            raise StoreError(f"store data file is truncated: cannot read {what}")
        done = 0
        while done < needed:
            got = pread_into(fd, view[done:], offset + done)
            if got <= 0:
                raise StoreError(f"store data file is truncated: cannot read {what}")
            done += got
        self._account(done)  # what the device transferred: a direct read's whole units

    def _account(self, nbytes: int) -> None:
        with self._lock:
            self._bytes_read += nbytes
            if not self.bandwidth_cap_Bps and self.bandwidth_drop is None:
                return
            self._cap_bytes += nbytes
            due_s = self._cap_start_s + self._due_s(self._cap_bytes)
        delay_s = due_s - time.perf_counter()
        if delay_s > 0:
            time.sleep(delay_s)


    def _due_s(self, nbytes: int) -> float:
        """Seconds after the cap's clock started by which `nbytes` may have been read (under the lock)."""
        cap = self.bandwidth_cap_Bps
        if self.bandwidth_drop is None:
            return nbytes / cap
        after_s, low = self.bandwidth_drop
        if cap:
            before = cap * after_s  # bytes the cap allows before the drop
            return nbytes / cap if nbytes <= before else after_s + (nbytes - before) / low
        # no cap before the drop: what was read by then is free, the rest comes at `low`
        if time.perf_counter() - self._cap_start_s < after_s:
            self._bytes_at_drop = nbytes
            return 0.0
        return after_s + (nbytes - self._bytes_at_drop) / low


# ----------------------------------------------------------------------------------------------
# Row-addressable tables (embeddings): read only the rows of the tokens seen, each row checked.
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RowTable:
    """A row-addressable fp32 table in the store, with one checksum (uint64) per row."""

    offset: int
    rows: int
    row_nbytes: int


def read_rows(
    reader: StoreReader,
    table: RowTable,
    row_checksums: np.ndarray,
    row_ids: torch.Tensor,
    out: torch.Tensor,
    what: str,
    io_threads: ThreadPoolExecutor,
    threads: int,
) -> None:
    """Read rows `row_ids` (unique, sorted) of `table` into `out` [len(row_ids), row_nbytes/4].

    Consecutive ids are read with one pread (position rows always are); every row is checked
    against its own checksum. The ranges are spread over the pool's threads, several reads in
    flight: a cold flash read is latency-bound, not bandwidth-bound.
    """
    raw = out.view(torch.uint8).view(len(row_ids), table.row_nbytes)
    ranges: list = []  # (first index in out, first row, row count)
    for i, row in enumerate(row_ids.tolist()):
        if ranges and ranges[-1][1] + ranges[-1][2] == row:
            ranges[-1] = (ranges[-1][0], ranges[-1][1], ranges[-1][2] + 1)
        else:
            ranges.append((i, row, 1))

    def read_ranges(batch: list) -> None:
        for index, row, count in batch:
            rows = raw[index : index + count]
            reader.read(rows, table.offset + row * table.row_nbytes, f"{what} rows {row}-{row + count - 1}")
            view, size = memoryview(rows.numpy()).cast("B"), table.row_nbytes
            for k in range(count):
                if checksum(view[k * size : (k + 1) * size]) != int(row_checksums[row + k]):
                    raise checksum_error(f"{what} row {row + k}")

    workers = max(1, min(threads, len(ranges)))
    if workers == 1:
        read_ranges(ranges)
    else:
        list(io_threads.map(read_ranges, [ranges[w::workers] for w in range(workers)]))


# ----------------------------------------------------------------------------------------------
# The IO lane: one thread per runner; per call it walks the streamed chunks in load order.
# ----------------------------------------------------------------------------------------------


class TraceEventName(enum.Enum):
    """What a trace event marks; its value is the name a trace records (and serializes)."""

    CALL_START = "call_start"  # the call began (key -1)
    EMBED_END = "embed_end"  # the embedding is done, the IO lane starts (key -1)
    IO_START = "io_start"  # IO lane: ring space taken for the chunk
    IO_END = "io_end"  # IO lane: the chunk read, checked and handed over
    COMPUTE_START = "compute_start"  # compute lane: the chunk handed over (or pinned)
    DECODE_END = "decode_end"  # compute lane: the chunk dequantized
    COMPUTE_END = "compute_end"  # compute lane: done with the chunk
    IO_ALL_DONE = "io_all_done"  # every chunk loaded before compute (`sticc.bench.modes.with_io_first`; key -1)
    SHED = "shed"  # compute lane: the chunk shed to keep the deadline (`sticc.runtime.elastic`)


class TraceEvent(NamedTuple):
    """One event of a traced call (`forward(trace=...)`); as JSON, the list [event, key, time_s]."""

    event: str  # a `TraceEventName` value
    key: int  # the chunk's key; -1 for the call's own events
    time_s: float  # time.perf_counter() seconds


class Call:
    """One call's hand-over between the lanes: its plan's chunks and ring, which chunks are loaded
    (their ring offsets), which were shed, the IO lane's error, cancellation, and the optional trace.

    Shedding (`sticc.runtime.elastic.DeadlineKeeper`) and the IO lane meet here, under one lock: the
    IO lane `claim`s a chunk before taking ring space for it; a chunk shed before it was claimed is
    never read, one shed after is read and only its compute is saved."""

    def __init__(self, trace: list[TraceEvent] | None, plan: int = 0, loads: tuple = (), ring=None) -> None:
        self.trace = trace  # `TraceEvent`s when tracing
        self.plan = plan  # index of the plan the call runs (`RunnerCore.PLANS`)
        self.loads = loads  # the plan's streamed chunks, in load order
        self.ring = ring
        self.keeper = None  # a `DeadlineKeeper` when the call keeps a deadline
        self._ready: dict = {}
        self._claimed: set = set()
        self._shed: dict = {}  # key -> whether its IO was saved (shed before the IO lane claimed it)
        self.read_s: dict = {}  # key -> seconds the IO lane took to read and check it
        self._error = None
        self._done = False
        self.cancelled = False
        self._cond = threading.Condition()

    def note(self, event: TraceEventName, key: int) -> None:
        """Record `event` of chunk `key` (-1: of the call) when tracing; `event` may also be its value."""
        if self.trace is not None:
            now = time.perf_counter()
            self.trace.append(TraceEvent(TraceEventName(event).value, key, now))

    def claim(self, key: int) -> bool:
        """The IO lane is about to load chunk `key`: False if it was shed (skip it)."""
        with self._cond:
            if key in self._shed:
                return False
            self._claimed.add(key)
            return True

    def shed(self, key: int) -> bool:
        """Shed chunk `key` (the compute lane will skip it): whether its IO is saved too."""
        with self._cond:
            saved = key not in self._claimed
            self._shed[key] = saved
            return saved

    def is_shed(self, key: int) -> bool:
        return key in self._shed

    def claimed(self, key: int) -> bool:
        with self._cond:
            return key in self._claimed

    def read_times(self) -> dict:
        """{key: seconds the IO lane took to read and check it} of the chunks read so far."""
        with self._cond:
            return dict(self.read_s)

    @property
    def shed_keys(self) -> dict:
        """{key: IO saved} of the chunks shed so far."""
        with self._cond:
            return dict(self._shed)

    def publish(self, key: int, ring_start: int, read_s: float = 0.0) -> None:
        self.note(TraceEventName.IO_END, key)
        with self._cond:
            self._ready[key] = ring_start
            self.read_s[key] = read_s
            self._cond.notify_all()

    def fail(self, error: BaseException) -> None:
        with self._cond:
            self._error = self._error or error
            self._cond.notify_all()

    def finish(self) -> None:
        with self._cond:
            self._done = True
            self._cond.notify_all()

    def wait(self, key: int) -> int:
        """The ring start of chunk `key`, once the IO lane has it; re-raise the IO lane's error."""
        with self._cond:
            while key not in self._ready:
                if self._error is not None:
                    raise self._error
                if self._done:
                    raise StoreError("the IO lane stopped before loading every chunk")
                self._cond.wait()
            return self._ready.pop(key)

    def wait_done(self) -> None:
        with self._cond:
            while not self._done:
                self._cond.wait()


class IOLane:
    """The runner's IO thread. For each streamed chunk of the call's plan, in load order: claim it
    (skipping a shed one), take ring space (waiting while the ring is full), read its members (one
    read per back-to-back run), check each member's checksum, hand the chunk over. Only reads and
    checksums: both release the GIL."""

    def __init__(self, loads: tuple, reader: StoreReader, buffer: torch.Tensor) -> None:
        # per chunk, worked out once: (ring offset, bytes to read into, file offset, bytes needed,
        # ((ring offset, bytes, checksum, what) of each member read))
        span = READ_ALIGN_BYTES if reader.direct else 1
        self._reads = {
            load.key: tuple(
                (read.ring_offset, align_up(read.nbytes, span), read.file_offset, read.nbytes,
                 tuple((offset, m.layout.nbytes, m.checksum, m.what) for offset, m in read.members))
                for read in chunk_reads(load)
            )
            for load in loads if load.ring_nbytes
        }
        self._reader = reader
        self._view = memoryview(buffer.numpy())
        self._calls = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="sticc-io", daemon=True)
        self._thread.start()

    def submit(self, call: Call) -> None:
        with self._cond:
            self._calls.append(call)
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join()

    def _serve(self) -> None:
        while True:
            with self._cond:
                while not self._calls and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                call = self._calls.popleft()
            try:
                self._load(call)
            except BaseException as error:  # handed to the waiting compute lane
                call.fail(error)
            finally:
                call.finish()

    def _load(self, call: Call) -> None:
        # the IO lane's Python between its reads and checksums holds the GIL the compute lane needs:
        # it is kept to a few steps per chunk (everything else was worked out at construction)
        ring, reader, view = call.ring, self._reader, self._view
        for load in call.loads:
            if call.cancelled:
                return
            if not call.claim(load.key):
                continue
            start = ring.allocate(load.ring_nbytes)
            call.note(TraceEventName.IO_START, load.key)
            began_s = time.perf_counter()
            for ring_offset, span, file_offset, needed, members in self._reads[load.key]:
                at = start + ring_offset
                reader.read_span(view[at : at + span], file_offset, needed, members[0][3])
                for offset, nbytes, expected, what in members:
                    if checksum(view[start + offset : start + offset + nbytes]) != expected:
                        raise checksum_error(what)
            call.publish(load.key, start, time.perf_counter() - began_s)


# ----------------------------------------------------------------------------------------------
# Quantities on the command line ("200MB/s", "2MB", "40ms").
# ----------------------------------------------------------------------------------------------

_SCALES = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "ki": 2.0**10, "mi": 2.0**20, "gi": 2.0**30}


def parse_quantity(text: str, unit: str) -> float:
    """Parse "200MB/s" (unit "B/s"), "2MiB" (unit "B") or "40ms" (unit "s") into base units."""
    body = text.strip().replace(" ", "")
    if unit == "s":
        for suffix, factor in (("ms", 1e-3), ("us", 1e-6), ("s", 1.0), ("", 1.0)):
            number = body[: len(body) - len(suffix)]
            if body.endswith(suffix) and _is_number(number):
                return _positive(float(number) * factor, text)
        return _bad(text, unit)
    if not body.lower().endswith(unit.lower()):
        return _positive(float(body), text) if _is_number(body) else _bad(text, unit)
    number = body[: -len(unit)]
    prefix = ""
    while number and not (number[-1].isdigit() or number[-1] == "."):
        prefix = number[-1] + prefix
        number = number[:-1]
    if prefix.lower() not in _SCALES or not _is_number(number):
        return _bad(text, unit)
    return _positive(float(number) * _SCALES[prefix.lower()], text)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _positive(value: float, text: str) -> float:
    if not 0 < value < float("inf"):
        raise ValueError(f"{text!r} must be positive and finite")
    return value


def _bad(text: str, unit: str) -> float:
    examples = {"B/s": "200MB/s", "B": "2MB", "s": "40ms"}
    raise ValueError(f"cannot read {text!r} as a quantity in {unit} (e.g. {examples.get(unit, unit)})")


# ----------------------------------------------------------------------------------------------
# The call driver: construction pins; each call embeds, runs the generated schedule, accounts.
# ----------------------------------------------------------------------------------------------


def json_value(data):
    """The JSON value of `data` (bytes or text) as Python's json module reads it; a ValueError for
    anything that is not JSON, a document nested too deeply to parse included (there json itself
    raises RecursionError)."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deeply to read") from None


def read_manifest(store_dir: str, store_id: str) -> dict:
    """The store's manifest, checked to be the store a runner was compiled for."""
    path = os.path.join(store_dir, "manifest.json")
    try:
        with open(path, "rb") as handle:
            manifest = json_value(handle.read())
    except FileNotFoundError:
        raise StoreError(f"no sticc store at {store_dir} (missing manifest.json)") from None
    except (OSError, ValueError) as error:
        raise StoreError(f"cannot read {path}: {error}") from None
    if not isinstance(manifest, dict):
        raise StoreError(f"{path} is not a sticc store manifest")
    if manifest.get("format_version") != STORE_FORMAT_VERSION:
        raise StoreError(
            f"{store_dir} is a store of format {manifest.get('format_version')!r}; this runner reads format "
            f"{STORE_FORMAT_VERSION}: re-shard the model with `sticc shard`"
        )
    if manifest.get("store_id") != store_id:
        raise StoreError(f"{store_dir} is not the store this runner was compiled for (store id differs)")
    return manifest


# the ranges of a runner's --threads and --io-bandwidth: sticc's own (a plan's compute threads, its
# --io-bandwidth flag); more threads than this abort in OpenMP, a slower emulated read takes hours
MAX_THREADS = 1024
EMULATED_BANDWIDTH_BPS = (1e6, 1e13)


def error_line(error) -> str:
    """`error` as a runner's one `error: ` line: its line breaks and other unprintable characters
    (which may come from an input: a path, a flag's value) escaped."""
    return "error: " + "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(error))


def runner_arguments(runner_class, stats_help: str):
    """The command-line parser every runner starts from: --store, --stats, --io-bandwidth, --threads."""
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message):  # a usage error is one line too (argparse's would print the usage first)
            self.exit(2, error_line(message) + "\n")

    parser = Parser(description=f"sticc runner for {runner_class.MODEL_NAME} (plan {runner_class.PLAN_HASH[:12]})")
    parser.add_argument("--store", help=f"the shard store (default: {runner_class.DEFAULT_STORE})")
    parser.add_argument("--stats", action="store_true", help=stats_help)
    parser.add_argument("--io-bandwidth", help="emulate slower flash, e.g. 200MB/s (an emulation: reads are delayed)")
    parser.add_argument("--threads", type=int, help="torch compute threads (default: the plan's, else every core)")
    return parser


def open_runner(runner_class, args):
    """The runner the parsed common arguments (`runner_arguments`) ask for; ValueError for bad ones."""
    cap = parse_quantity(args.io_bandwidth, "B/s") if args.io_bandwidth else None
    if cap is not None and not EMULATED_BANDWIDTH_BPS[0] <= cap <= EMULATED_BANDWIDTH_BPS[1]:
        raise ValueError(f"--io-bandwidth {args.io_bandwidth!r} must lie in [1MB/s, 10TB/s]")
    if args.threads is not None and not 1 <= args.threads <= MAX_THREADS:
        raise ValueError(f"--threads must lie in [1, {MAX_THREADS}]")
    return runner_class(args.store, io_bandwidth_Bps=cap, threads=args.threads)


def tokenizer_from_json(data: bytes, where: str):
    """`data`, the bytes of a tokenizer.json, as a `tokenizers.Tokenizer` set up as the file says;
    a one-line StoreError naming `where` for a file the `tokenizers` package refuses (not UTF-8,
    not JSON, nested too deeply, not a tokenizer)."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise StoreError("text input needs the `tokenizers` package; pass token ids instead") from None
    try:
        return Tokenizer.from_str(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise StoreError(f"{where} is not a tokenizer: it is not UTF-8 text") from None
    except Exception as error:  # tokenizers raises a bare Exception for every malformed file
        reason = " ".join(str(error).split())[:200]
        raise StoreError(f"{where} is not a tokenizer the `tokenizers` package can read: {reason}") from None


def load_tokenizer(store_dir: str):
    """The store's tokenizer.json as a `tokenizers.Tokenizer` (optional: text input needs it),
    with no truncation and no padding of its own: the family sets what it wants."""
    path = os.path.join(store_dir, "tokenizer.json")
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise StoreError(f"{store_dir} has no tokenizer.json; pass token ids instead") from None
    except OSError as error:
        raise StoreError(f"cannot read {path}: {error.strerror or error}") from None
    tokenizer = tokenizer_from_json(data, path)
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


class RunnerCore:
    """What every runner does whatever its model family: open and check the store, lay out the
    pool, pin headers and the preload set, start the IO lane; per call, drive the lanes and
    account. A family subclass adds its embedding and kernels; the generated subclass adds the
    literals and the schedule."""

    MODEL_NAME: str
    PLAN_HASH: str
    STORE_ID: str
    DEFAULT_STORE: str
    DATA_FILE: str
    LOADS: tuple  # of ChunkLoad, every plan's, in load (and compute) order; keys number them
    PLANS: tuple  # of PlanTable: the runner's plans, the most faithful (the default) first
    IO_BANDWIDTH_CAP_BPS = None
    COMPUTE_THREADS = None  # torch threads of the compute lane (None: torch's default, every core)
    PLANNED_SEQ_LEN: int
    EMBED_IO_THREADS = 4
    WORD_ROWS: RowTable
    WORD_CHECKSUMS: Extent
    POSITION_ROWS = None  # RowTable of learned positions, or None (rotary positions)
    POSITION_CHECKSUMS = None

    def __init__(self, store_dir=None, io_bandwidth_Bps=None, threads=None, warm_up: bool = True) -> None:
        """Open the store, check it is the one compiled for, pin, start the IO lane, warm up.

        `io_bandwidth_Bps` emulates slower flash; `threads` sets torch's compute threads (process
        wide; default: the plan's setting, else torch's). `warm_up=False` skips running every
        kernel once at construction (the first call then pays torch's one-time setup)."""
        self.store_dir = store_dir or self.DEFAULT_STORE
        threads = threads if threads is not None else self.COMPUTE_THREADS
        if threads is not None:
            torch.set_num_threads(threads)
        self.manifest = read_manifest(self.store_dir, self.STORE_ID)
        cap = io_bandwidth_Bps if io_bandwidth_Bps is not None else self.IO_BANDWIDTH_CAP_BPS
        self.io_bandwidth_cap_Bps = cap
        self.reader = StoreReader(os.path.join(self.store_dir, self.DATA_FILE), cap)
        self.pool = WeightPool(tuple(plan.pool for plan in self.PLANS))
        self._row_threads = ThreadPoolExecutor(self.EMBED_IO_THREADS, thread_name_prefix="sticc-rows")
        self._call_lock = threading.Lock()  # calls are served one at a time (they share the pool and the IO lane)
        self._stats = threading.local()  # the calling thread's last stats (`last_stats`)
        self._latest_stats = None
        self.pinned_chunks = {}  # key -> a chunk pinned in place, in kernel form
        self.prepared = {}  # key -> what the family prepared to dequantize the chunk (`prepare_chunk`)
        self._pin_loads()
        self.open_family()
        self.io_lane = IOLane(self.LOADS, self.reader, self.pool.buffer)
        # each plan's streamed chunks, in load order: what the IO lane walks in a call of that plan
        self._streamed = tuple(
            tuple(load for load in self.LOADS[plan.first_key : plan.stop_key] if load.ring_nbytes) for plan in self.PLANS
        )
        if warm_up:
            self.warm_up()
        # start every row-reader thread now (the pool creates them lazily)
        started = threading.Barrier(self.EMBED_IO_THREADS)
        list(self._row_threads.map(lambda _: started.wait(), range(self.EMBED_IO_THREADS)))

    @property
    def POOL(self) -> PoolLayout:
        """The pool layout of the runner's first (most faithful) plan."""
        return self.PLANS[0].pool

    def plan_of(self, key: int) -> int:
        """The index of the plan chunk `key` belongs to."""
        return next(n for n, plan in enumerate(self.PLANS) if plan.first_key <= key < plan.stop_key)

    def _pin_loads(self) -> None:
        """Chunks pinned in place (decoded once), then every preloaded run as stored, in the order
        `pinned_nbytes` lays them out; then the family prepares every other chunk's decoding, into
        its plan's scratch. The plans of an elastic runner share their preload set: a chunk pinned
        in place or a preloaded run that an earlier plan pinned is not pinned again."""
        in_place, runs_pinned = {}, {}
        for load in self.LOADS:
            if load.pinned_in_place:
                if load.members not in in_place:
                    stored = [self._read_member(member) for member in load.members]
                    in_place[load.members] = self.pin_decoded(load, stored)
                self.pinned_chunks[load.key] = in_place[load.members]
        for load in self.LOADS:
            if load.pinned_in_place:
                continue
            runs, ring_offset, i = [], 0, 0
            members = load.members
            while i < len(members):
                first = members[i]
                j = i
                while j < len(members) and members[j].layout == first.layout and members[j].preloaded == first.preloaded:
                    j += 1
                if first.preloaded:
                    run = members[i:j]
                    if run not in runs_pinned:
                        offset = None
                        for member in run:
                            at, buffer = self.pool.pin(member.layout.slot_nbytes, READ_ALIGN_BYTES)
                            offset = at if offset is None else offset
                            self._read_checked(buffer, member)
                        runs_pinned[run] = offset
                    runs.append(Run(i, j - i, first.layout, True, runs_pinned[run]))
                else:
                    runs.append(Run(i, j - i, first.layout, False, ring_offset))
                    ring_offset += (j - i) * first.layout.slot_nbytes
                i = j
            self.pool.use(self.plan_of(load.key))
            self.prepare_chunk(load, tuple(runs))
        self.pool.use(0)

    def _read_member(self, member: Member) -> torch.Tensor:
        buffer = torch.empty(member.layout.slot_nbytes + READ_ALIGN_BYTES, dtype=torch.uint8)
        shift = (-buffer.data_ptr()) % READ_ALIGN_BYTES
        buffer = buffer[shift : shift + member.layout.slot_nbytes]
        self._read_checked(buffer, member)
        return buffer

    def _read_checked(self, buffer: torch.Tensor, member: Member) -> None:
        self.reader.read_blobs(buffer, member.offset, member.layout.nbytes, member.what)
        if checksum(memoryview(buffer.numpy())[: member.layout.nbytes]) != member.checksum:
            raise checksum_error(member.what)

    def open_embeddings(self) -> None:
        """Read the embedding tables' per-row checksums (the rows themselves are read per call)."""
        self._word_checksums = self.read_metadata(self.WORD_CHECKSUMS, "word embedding checksums").view(np.uint64)
        if self.POSITION_ROWS is not None:
            self._position_checksums = self.read_metadata(self.POSITION_CHECKSUMS, "position embedding checksums").view(np.uint64)

    def embedding_rows(self, input_ids: torch.Tensor, position_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Word (+ position, unless None) rows [..., hidden] of the ids: each distinct row read once,
        checked, into the scratch (or a counted temporary)."""
        hidden = self.WORD_ROWS.row_nbytes // 4
        words, word_index = torch.unique(input_ids, sorted=True, return_inverse=True)
        positions = position_index = None
        if position_ids is not None:
            positions, position_index = torch.unique(position_ids, sorted=True, return_inverse=True)
        nbytes = 4 * hidden * (len(words) + (0 if positions is None else len(positions)))
        rows = self.pool.scratch_or_temporary(nbytes).view(torch.float32).view(-1, hidden)
        threads = self.EMBED_IO_THREADS
        read_rows(self.reader, self.WORD_ROWS, self._word_checksums, words, rows[: len(words)], "word embedding", self._row_threads, threads)
        if positions is None:
            return rows[: len(words)][word_index]
        read_rows(self.reader, self.POSITION_ROWS, self._position_checksums, positions, rows[len(words) :], "position embedding", self._row_threads, threads)
        return rows[: len(words)][word_index] + rows[len(words) :][position_index]

    def read_pinned(self, extent: Extent, what: str) -> torch.Tensor:
        """A checked extent (a header) held in the pinned region for the runner's lifetime."""
        return self._read_extent(self.pool.pin(extent.nbytes)[1], extent, what)

    def read_metadata(self, extent: Extent, what: str) -> np.ndarray:
        """A checked extent that is not a weight (checksum tables), held outside the pool."""
        return self._read_extent(torch.empty(extent.nbytes, dtype=torch.uint8), extent, what).numpy()

    def _read_extent(self, buffer: torch.Tensor, extent: Extent, what: str) -> torch.Tensor:
        self.reader.read(buffer, extent.offset, what)
        if checksum(memoryview(buffer.numpy())) != extent.checksum:
            raise checksum_error(what)
        return buffer

    # -- family hooks --------------------------------------------------------------------------

    def open_family(self) -> None:
        """Read and pin what the family needs besides the chunks (headers, checksum tables)."""
        raise NotImplementedError

    def pin_decoded(self, load: ChunkLoad, stored: list) -> tuple:
        """A chunk pinned in place: its members decoded into the pinned region, in kernel form."""
        raise NotImplementedError

    def prepare_chunk(self, load: ChunkLoad, runs: tuple) -> None:
        """Work out once how chunk `load`, made of `runs`, is dequantized into the scratch."""
        raise NotImplementedError

    def warm_up(self) -> None:
        raise NotImplementedError

    # -- per call ------------------------------------------------------------------------------

    def run_call(self, compute, trace: list[TraceEvent] | None = None, plan: int = 0, keeper=None):
        """Drive one call of plan `plan`: reset the pool's per-call state, start the IO lane after
        `compute`'s embedding (see `start_io`), run `compute(call)`, wait for the IO lane, account.
        `keeper` (a `sticc.runtime.elastic.DeadlineKeeper`) sheds chunks when the call falls behind."""
        with self._call_lock:
            start_s = time.perf_counter()
            self.pool.use(plan)
            self.pool.reset_peak()
            read_before = self.reader.bytes_read
            self.reader.start_cap_clock()
            self.pool.ring.reset()
            table = self.PLANS[plan]
            call = Call(trace, plan, self._streamed[plan], self.pool.ring)
            call.keeper = keeper
            if keeper is not None:
                keeper.start(call, start_s)
            call.note(TraceEventName.CALL_START, -1)
            self._io_started = False
            try:
                result = compute(call)
            finally:
                # normally the IO lane is done by now; after an error it is stopped where it is
                call.cancelled = True
                self.pool.ring.stop()
                if self._io_started:
                    call.wait_done()
                if keeper is not None:
                    keeper.end(call)
            stats = {
                "latency_s": time.perf_counter() - start_s,
                "peak_weight_bytes": self.pool.peak_bytes,
                "io_bytes": self.reader.bytes_read - read_before,
            }
            if len(self.PLANS) > 1 or keeper is not None:
                stats["plan"] = table.name
            if keeper is not None:
                stats.update(keeper.stats(call))
                stats["met_deadline"] = stats["latency_s"] <= keeper.deadline_s
            self.publish_stats(stats)
            return result

    def publish_stats(self, stats: dict) -> None:
        """Make `stats` the calling thread's (and the runner's latest) `last_stats`."""
        self._stats.value = self._latest_stats = stats

    @property
    def last_stats(self):
        """{"latency_s", "peak_weight_bytes", "io_bytes"} of the calling thread's last call on this
        runner (an encoder's `encode` adds per-batch figures), else of the runner's last call from
        any thread; None before any call."""
        mine = getattr(self._stats, "value", None)
        return mine if mine is not None else self._latest_stats

    def start_io(self, call: Call) -> None:
        """Hand the call to the IO lane (the family calls this when its embedding is done: the
        embedding's cold row reads gate every kernel, so they do not queue behind chunk reads)."""
        call.note(TraceEventName.EMBED_END, -1)
        self._io_started = True
        self.io_lane.submit(call)

    def chunks(self, call: Call, keys: tuple):
        """The keys of a block's chunks the call computes: all of them, unless the call keeps a
        deadline and sheds some (the keeper decides before each chunk). A shed chunk the IO lane
        already claimed is waited for and its ring space given back (frees follow allocation order)."""
        keeper = call.keeper
        for key in keys:
            if keeper is not None:
                keeper.before(call, key)
                if call.is_shed(key):
                    call.note(TraceEventName.SHED, key)
                    if self.LOADS[key].ring_nbytes and call.claimed(key):
                        call.wait(key)
                        call.ring.free_oldest()
                    continue
            yield key

    def take(self, call: Call, key: int) -> tuple:
        """Chunk `key` in kernel form: pinned in place, or waited for and dequantized into scratch."""
        pinned = self.pinned_chunks.get(key)
        if pinned is not None:
            call.note(TraceEventName.COMPUTE_START, key)
            if call.keeper is not None:
                call.keeper.computing(key)
            return pinned
        ring_start = call.wait(key) if self.LOADS[key].ring_nbytes else 0
        call.note(TraceEventName.COMPUTE_START, key)
        if call.keeper is not None:
            call.keeper.computing(key)
        out = self.decode_chunk(key, ring_start)
        call.note(TraceEventName.DECODE_END, key)
        return out

    def release(self, call: Call, key: int) -> None:
        """The compute lane is done with chunk `key`: its ring space goes back."""
        call.note(TraceEventName.COMPUTE_END, key)
        if call.keeper is not None:
            call.keeper.computed(key)
        if self.LOADS[key].ring_nbytes:
            call.ring.free_oldest()

    def decode_chunk(self, key: int, ring_start: int) -> tuple:
        """Chunk `key`, whose streamed members start at `ring_start` in the ring, in kernel form."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop the IO lane and close the store, after any call in progress."""
        with self._call_lock:
            self.io_lane.close()
            self._row_threads.shutdown()
            self.reader.close()
