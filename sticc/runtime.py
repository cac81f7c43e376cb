"""sticc runtime: the static half of every generated runner.

Codegen inlines this module's source verbatim above the generated schedule, so it may import only
the standard library, numpy and torch. sticc itself imports it too (blob layouts, dequantization,
kernels), so the store writer, the tests and every runner share one implementation.

Contents, in data-flow order:
- `blob_layout`: where codes, scales, zeros and bias live inside one stored shard piece.
- `WeightPool`: every weight byte a runner holds is allocated here; `peak_bytes` is exact.
- `StoreReader`: checked preads from the store's data file, with an optional emulated bandwidth cap.
- `dequantize_into`: packed codes -> fp32 weights, written into a pool buffer.
- `Loader`: the background IO thread of one call: read, check, dequantize, hand over, in plan order.
- encoder kernels: embeddings, attention and FFN over the kept shards of a layer, pooling.

Unlike the rest of sticc this module does not use `from __future__ import annotations`: a runner
loaded with `importlib.util.spec_from_file_location` but not registered in `sys.modules` must still
define its dataclasses, which string annotations would prevent.
"""

import json
import os
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

STORE_FORMAT_VERSION = 1
SEGMENT_ALIGN_BYTES = 64  # segments inside a blob start on this boundary (aligned tensor views)
FULL_PRECISION_BITS = (16, 32)


class StoreError(RuntimeError):
    """The store on disk does not match what the runner was generated for (or is corrupt)."""


def checksum_error(what: str) -> StoreError:
    return StoreError(f"checksum mismatch in {what}: the store is corrupt (run `sticc verify`)")


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
    def dequantized_nbytes(self) -> int:
        """fp32 bytes of the weight matrix and bias once dequantized."""
        return 4 * (self.weight_count + self.bias_len)


def _align(value: int, alignment: int) -> int:
    return -(-value // alignment) * alignment


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
    scales_offset = _align(weight_offset + weight_nbytes, SEGMENT_ALIGN_BYTES)
    zeros_offset = _align(scales_offset + 2 * groups, SEGMENT_ALIGN_BYTES)
    # bias: fp32, never quantized (a few hundred values per piece)
    bias_offset = _align(zeros_offset + 2 * groups, SEGMENT_ALIGN_BYTES)
    nbytes = bias_offset + 4 * bias_len
    return BlobLayout(
        rows, cols, bits, group_size, bias_len, weight_offset, weight_nbytes,
        scales_offset, zeros_offset, groups, bias_offset, nbytes,
    )


# ----------------------------------------------------------------------------------------------
# Weight pool: exact accounting of every weight byte held, with an optional capacity.
# ----------------------------------------------------------------------------------------------


def arena_nbytes(nbytes: int) -> int:
    """Bytes an allocation of `nbytes` takes in the arena (rounded up for aligned views)."""
    return _align(nbytes, SEGMENT_ALIGN_BYTES)


def chunk_arena_nbytes(rows: int, cols: int, bias_len: int, count: int) -> int:
    """Arena bytes of a chunk of `count` pieces in fp32: weights [count, rows, cols], biases [count, bias_len]."""
    return arena_nbytes(4 * count * (rows * cols + bias_len))


def piece_staging_nbytes(layout: BlobLayout, preloaded: bool) -> int:
    """Staging bytes a piece's stored form needs while it is read and dequantized (fp32 reads go
    straight into the arena, preloads are dequantized from their pinned bytes)."""
    return 0 if preloaded or layout.bits == 32 else layout.nbytes


class WeightPool:
    """Every weight byte a runner holds, accounted exactly.

    - pinned: headers and the preload set, held for the runner's lifetime;
    - staging: one buffer for the stored bytes of a run of pieces between pread and dequantization;
    - arena: at most `arena_bytes` of one call's embedding rows and fp32 chunks. Allocations are
      freed in the order they were made (compute consumes chunks in load order), and `allocate`
      waits while the live allocations plus the new one would exceed `arena_bytes`. That rule, and
      nothing finer (no placement, no fragmentation), is what the planner's latency model assumes.
    An allocation larger than the whole arena (an input longer than planned) is made at once and
    still counted, so the peak honestly exceeds the budget instead of deadlocking.
    """

    def __init__(self, arena_bytes: int, staging_bytes: int) -> None:
        self.arena_bytes = arena_bytes
        self._staging = torch.empty(staging_bytes, dtype=torch.uint8)
        self.live_bytes = 0
        self.peak_bytes = 0
        self._arena_live = 0
        self._fifo: list[int] = []  # sizes of live arena allocations, oldest first
        self._fifo_start = 0
        self._stopped = False
        self._cond = threading.Condition()

    def _count(self, nbytes: int) -> None:
        self.live_bytes += nbytes
        self.peak_bytes = max(self.peak_bytes, self.live_bytes)

    def pin(self, nbytes: int) -> torch.Tensor:
        """A buffer held for the runner's lifetime."""
        with self._cond:
            self._count(nbytes)
        return torch.empty(nbytes, dtype=torch.uint8)

    def staging(self, nbytes: int) -> torch.Tensor:
        """The staging buffer (IO thread only); counted until `release_staging`."""
        assert nbytes <= self._staging.numel(), "staging buffer smaller than a stored piece"
        with self._cond:
            self._count(nbytes)
        return self._staging[:nbytes]

    def release_staging(self, nbytes: int) -> None:
        with self._cond:
            self.live_bytes -= nbytes

    def allocate(self, nbytes: int) -> torch.Tensor:
        """`nbytes` of the arena (waiting for the compute side to free older allocations)."""
        size = arena_nbytes(nbytes)
        with self._cond:
            while size <= self.arena_bytes and self._arena_live + size > self.arena_bytes:
                if self._stopped:
                    raise StoreError("load cancelled")
                self._cond.wait()
            self._fifo.append(size)
            self._arena_live += size
            self._count(size)
        return torch.empty(size, dtype=torch.uint8)

    def free_oldest(self, nbytes: int) -> None:
        """Free the oldest live arena allocation (of `nbytes`): frees come in allocation order."""
        size = arena_nbytes(nbytes)
        with self._cond:
            held = self._fifo[self._fifo_start]
            assert held == size, "arena frees must come in allocation order"
            self._fifo_start += 1
            if self._fifo_start == len(self._fifo):
                self._fifo.clear()
                self._fifo_start = 0
            self._arena_live -= size
            self.live_bytes -= size
            self._cond.notify_all()

    def end_call(self) -> None:
        """Drop every arena allocation of the call (after its loader has stopped)."""
        with self._cond:
            for size in self._fifo[self._fifo_start :]:
                self.live_bytes -= size
            self._fifo.clear()
            self._fifo_start = 0
            self._arena_live = 0
            self._stopped = False

    def stop(self) -> None:
        """Wake and cancel an allocation waiting for space (the call is being abandoned)."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def reset_peak(self) -> None:
        with self._cond:
            self.peak_bytes = self.live_bytes


# ----------------------------------------------------------------------------------------------
# Store reads: checked preads, optional emulated bandwidth cap.
# ----------------------------------------------------------------------------------------------


class StoreReader:
    """Reads byte ranges of the store's data file into caller-provided buffers and checks them.

    `bandwidth_cap_Bps` emulates slower flash: reads are delayed so that the bytes read since the
    cap's clock was started never exceed cap x elapsed time. It is an emulation, labelled as such
    wherever it is reported.
    """

    def __init__(self, path: str, bandwidth_cap_Bps: float | None = None) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDONLY)
        # every read is sized exactly (a piece, a run of pieces, embedding rows): kernel readahead
        # would only read bytes no one asked for, which costs flash time
        os.posix_fadvise(self._fd, 0, 0, os.POSIX_FADV_RANDOM)
        self.bandwidth_cap_Bps = bandwidth_cap_Bps
        self.bytes_read = 0
        self._cap_lock = threading.Lock()
        self._cap_start_s = time.perf_counter()
        self._cap_bytes = 0

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def start_cap_clock(self) -> None:
        with self._cap_lock:
            self._cap_start_s = time.perf_counter()
            self._cap_bytes = 0

    def read_into(self, buffers: list[torch.Tensor], offset: int, crc32: int | None, what: str) -> None:
        """Read consecutive bytes at `offset` into the uint8 tensors `buffers` (one scattered
        pread) and check the crc32 of all of them together (None: the caller checks)."""
        views = [memoryview(b.numpy()).cast("B") for b in buffers]
        nbytes = sum(len(v) for v in views)
        done = 0
        while done < nbytes:
            pending, skip = [], done
            for view in views:
                if skip >= len(view):
                    skip -= len(view)
                    continue
                pending.append(view[skip:])
                skip = 0
            got = os.preadv(self._fd, pending, offset + done)
            if got <= 0:
                raise StoreError(f"store data file is truncated: cannot read {what}")
            done += got
        self._throttle(nbytes)
        self.bytes_read += nbytes
        if crc32 is None:
            return
        crc = 0
        for view in views:
            crc = zlib.crc32(view, crc)
        if crc != crc32:
            raise checksum_error(what)

    def _throttle(self, nbytes: int) -> None:
        if not self.bandwidth_cap_Bps:
            return
        with self._cap_lock:
            self._cap_bytes += nbytes
            due_s = self._cap_start_s + self._cap_bytes / self.bandwidth_cap_Bps
        delay_s = due_s - time.perf_counter()
        if delay_s > 0:
            time.sleep(delay_s)


# ----------------------------------------------------------------------------------------------
# Dequantization: w = code * scale + zero per group of `group_size` consecutive weights.
# ----------------------------------------------------------------------------------------------


def unpack_codes_into(packed: torch.Tensor, bits: int, out: torch.Tensor) -> None:
    """Write the integer codes packed in `packed` (uint8) into the flat float tensor `out`.

    Packing: every 8 consecutive codes occupy `bits` bytes, little-endian, code k at bit k*bits.
    """
    if bits == 8:
        out.copy_(packed)
    elif bits == 4:
        pairs = out.view(-1, 2)
        pairs[:, 0] = packed & 0x0F
        pairs[:, 1] = packed >> 4
    elif bits == 2:
        quads = out.view(-1, 4)
        for k in range(4):
            quads[:, k] = (packed >> (2 * k)) & 0x03
    else:
        octets = packed.view(-1, bits).to(torch.int64)
        word = octets[:, 0].clone()
        for j in range(1, bits):
            word |= octets[:, j] << (8 * j)
        mask = (1 << bits) - 1
        eights = out.view(-1, 8)
        for k in range(8):
            eights[:, k] = (word >> (bits * k)) & mask


def decode_weights_into(raw: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor, bits: int, group_size: int, weight: torch.Tensor) -> None:
    """Stored weights (packed codes with fp16 scales and zeros, or an fp16/fp32 matrix) of one or
    more pieces laid end to end -> fp32 `weight` (flat). The one place where w = code * scale + zero."""
    if bits == 32:
        weight.copy_(raw.view(torch.float32))
    elif bits == 16:
        weight.copy_(raw.view(torch.float16))
    else:
        unpack_codes_into(raw, bits, weight)
        grouped = weight.view(-1, group_size)
        grouped.mul_(scales.view(torch.float16).float().unsqueeze(1)).add_(zeros.view(torch.float16).float().unsqueeze(1))


def dequantize_into(blob: torch.Tensor, layout: BlobLayout, weight: torch.Tensor, bias: torch.Tensor) -> None:
    """Dequantize one stored piece into fp32 `weight` (flat, rows*cols) and `bias` (bias_len)."""
    decode_weights_into(
        blob[layout.weight_offset : layout.weight_offset + layout.weight_nbytes],
        blob[layout.scales_offset : layout.scales_offset + 2 * layout.groups],
        blob[layout.zeros_offset : layout.zeros_offset + 2 * layout.groups],
        layout.bits, layout.group_size, weight,
    )
    bias.copy_(blob[layout.bias_offset : layout.bias_offset + 4 * layout.bias_len].view(torch.float32))


def staged_runs(pieces: list[tuple[BlobLayout, bool]]) -> list[tuple[int, int]]:
    """[start, stop) runs of consecutive (layout, preloaded) pieces that are streamed through the
    staging buffer with one layout: each run is read with scattered preads and decoded at once."""
    runs: list[tuple[int, int]] = []
    for i, (layout, preloaded) in enumerate(pieces):
        if piece_staging_nbytes(layout, preloaded) == 0:
            continue
        if runs and runs[-1][1] == i and pieces[runs[-1][0]][0] == layout:
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    return runs


def staging_nbytes(pieces: list[tuple[BlobLayout, bool]]) -> int:
    """Staging bytes a chunk needs: its largest run of staged pieces, whole."""
    return max((sum(pieces[i][0].nbytes for i in range(a, b)) for a, b in staged_runs(pieces)), default=0)


@dataclass(frozen=True)
class Chunk:
    """Consecutive kept shards of one layer block, dequantized, handed from the loader to compute."""

    weight: torch.Tensor  # fp32 [shards, rows, cols]
    bias: torch.Tensor  # fp32 [shards, bias_len]
    nbytes: int  # arena bytes to free when done


@dataclass(frozen=True)
class Member:
    """One stored piece of a chunk (literals in the generated runner)."""

    what: str  # human-readable: "layer 3 shard 7 attn @4b"
    offset: int
    layout: BlobLayout
    crc32: int
    preloaded: bool


@dataclass(frozen=True)
class ChunkLoad:
    """One entry of the load list: the pieces of one chunk, loaded into one arena allocation."""

    key: int
    members: tuple[Member, ...]

    @property
    def arena_nbytes(self) -> int:
        first = self.members[0].layout
        return chunk_arena_nbytes(first.rows, first.cols, first.bias_len, len(self.members))

    @property
    def pinned_in_place(self) -> bool:
        """Every member a preloaded fp32 piece: the chunk is pinned in its final form, used in place."""
        return all(m.preloaded and m.layout.bits == 32 for m in self.members)


def chunk_views(out: torch.Tensor, first: BlobLayout, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The flat weights [count, rows*cols] and biases [count, bias_len] of a chunk buffer."""
    weight_count = first.weight_count
    weights = out[: 4 * count * weight_count].view(torch.float32).view(count, weight_count)
    biases = out[4 * count * weight_count : 4 * count * (weight_count + first.bias_len)].view(torch.float32)
    return weights, biases.view(count, first.bias_len)


def read_fp32_member(reader: StoreReader, member: Member, weight: torch.Tensor, bias: torch.Tensor) -> None:
    """Read a stored fp32 piece straight into its chunk slot (skipping the alignment gap)."""
    layout = member.layout
    gap = torch.empty(layout.bias_offset - layout.weight_nbytes, dtype=torch.uint8)
    reader.read_into([weight.view(torch.uint8), gap, bias.view(torch.uint8)], member.offset, member.crc32, member.what)


class Loader:
    """The background IO thread(s) of one call.

    For each chunk in plan order: take arena space for its fp32 form (waiting while the arena is
    full); for each of its pieces, pread the stored bytes into the staging buffer, check the crc32
    and dequantize into the chunk's slot (fp32 pieces are read straight into their slot; preloaded
    pieces are dequantized from their pinned bytes); then hand the chunk to the compute side.

    With `threads` > 1, thread k loads chunks k, k + threads, ... (several reads in flight, as
    PipeSwitch and PIPELOAD do); arena space is still taken in plan order, so frees stay in
    allocation order. Several threads need plans without staged pieces (one staging buffer).
    """

    def __init__(
        self,
        loads: tuple[ChunkLoad, ...],
        reader: StoreReader,
        pool: WeightPool,
        preloaded: dict[int, torch.Tensor],
        pinned_chunks: dict[int, Chunk],
        trace: list | None = None,
        threads: int = 1,
    ) -> None:
        self._loads = loads
        self._trace = trace  # (event, chunk key, perf_counter seconds) when tracing
        self._reader = reader
        self._pool = pool
        self._preloaded = preloaded
        self._pinned_chunks = pinned_chunks
        self._ready: dict[int, Chunk] = {}
        self._error: BaseException | None = None
        self._cond = threading.Condition()
        self._stop = False
        self._next_allocation = 0  # index into `loads` of the next chunk to take arena space
        threads = max(1, min(threads, len(loads)))
        self._threads = [
            threading.Thread(target=self._run, args=(k, threads), name=f"sticc-io-{k}", daemon=True) for k in range(threads)
        ]

    def start(self) -> "Loader":
        for thread in self._threads:
            thread.start()
        return self

    def _run(self, first: int, step: int) -> None:
        # one thread of intra-op work here (a thread-local setting): an OpenMP team in the IO thread
        # would compete with the compute thread's team for the same cores and stall both at barriers
        torch.set_num_threads(1)
        try:
            for position in range(first, len(self._loads), step):
                if self._stop:
                    return
                load = self._loads[position]
                chunk = self._load(load, position)
                if self._trace is not None:
                    self._trace.append(("io_end", load.key, time.perf_counter()))
                with self._cond:
                    self._ready[load.key] = chunk
                    self._cond.notify_all()
        except BaseException as error:  # handed to the waiting compute thread (the first one wins)
            with self._cond:
                self._error = self._error or error
                self._cond.notify_all()

    def _take_turn(self, position: int) -> None:
        """Wait until every earlier chunk has its arena space (a no-op with one thread)."""
        with self._cond:
            while self._next_allocation != position:
                if self._stop or self._error is not None:
                    raise StoreError("load cancelled")
                self._cond.wait()

    def _end_turn(self) -> None:
        with self._cond:
            self._next_allocation += 1
            self._cond.notify_all()

    def _load(self, load: ChunkLoad, position: int) -> Chunk:
        self._take_turn(position)
        if load.pinned_in_place:
            self._end_turn()
            return self._pinned_chunks[load.key]
        first = load.members[0].layout
        count = len(load.members)
        nbytes = load.arena_nbytes
        try:
            buffer = self._pool.allocate(nbytes)
        finally:
            self._end_turn()
        weights, biases = chunk_views(buffer, first, count)
        if self._trace is not None:
            self._trace.append(("io_start", load.key, time.perf_counter()))
        for i, member in enumerate(load.members):
            if member.preloaded:
                dequantize_into(self._preloaded[member.offset], member.layout, weights[i], biases[i])
            elif member.layout.bits == 32:
                read_fp32_member(self._reader, member, weights[i], biases[i])
        for start, stop in staged_runs([(m.layout, m.preloaded) for m in load.members]):
            self._load_run(load.members[start:stop], weights[start:stop], biases[start:stop])
        return Chunk(weights.view(count, first.rows, first.cols), biases, nbytes)

    def _load_run(self, members: tuple[Member, ...], weights: torch.Tensor, biases: torch.Tensor) -> None:
        """Pieces of one layout: scattered preads put every member's codes, scales and zeros end to
        end in the staging buffer (biases straight into the chunk), then one decode for them all."""
        layout, count = members[0].layout, len(members)
        nbytes = count * layout.nbytes
        staged = self._pool.staging(nbytes)
        try:
            scales_nbytes = 2 * layout.groups
            codes, rest = staged[: count * layout.weight_nbytes], staged[count * layout.weight_nbytes :]
            scales, rest = rest[: count * scales_nbytes], rest[count * scales_nbytes :]
            zeros, gaps = rest[: count * scales_nbytes], rest[count * scales_nbytes :]
            gap_sizes = (
                layout.scales_offset - layout.weight_nbytes,
                layout.zeros_offset - layout.scales_offset - scales_nbytes,
                layout.bias_offset - layout.zeros_offset - scales_nbytes,
            )
            gap = gaps[: max(gap_sizes)]  # alignment padding: read (the crc covers it), then dropped
            for i, member in enumerate(members):
                parts = [
                    codes[i * layout.weight_nbytes : (i + 1) * layout.weight_nbytes], gap[: gap_sizes[0]],
                    scales[i * scales_nbytes : (i + 1) * scales_nbytes], gap[: gap_sizes[1]],
                    zeros[i * scales_nbytes : (i + 1) * scales_nbytes], gap[: gap_sizes[2]],
                    biases[i].view(torch.uint8),
                ]
                self._reader.read_into(parts, member.offset, member.crc32, member.what)
            decode_weights_into(codes, scales, zeros, layout.bits, layout.group_size, weights.view(-1))
        finally:
            self._pool.release_staging(nbytes)

    def wait_all(self) -> None:
        """Block until every chunk is loaded (load-then-compute mode)."""
        with self._cond:
            while len(self._ready) < len(self._loads) and any(t.is_alive() for t in self._threads):
                if self._error is not None:
                    raise self._error
                self._cond.wait(timeout=0.1)
            if self._error is not None:
                raise self._error

    def wait(self, key: int) -> Chunk:
        """Block until chunk `key` is loaded; re-raise the IO thread's error if it failed."""
        with self._cond:
            while key not in self._ready:
                if self._error is not None:
                    raise self._error
                self._cond.wait()
            if self._trace is not None:
                self._trace.append(("compute_start", key, time.perf_counter()))
            return self._ready.pop(key)

    def free(self, chunk: Chunk) -> None:
        """The compute side is done with `chunk`: its arena bytes go back to the pool."""
        if self._trace is not None:
            self._trace.append(("compute_end", -1, time.perf_counter()))
        if chunk.nbytes:  # 0: a chunk pinned for the runner's lifetime
            self._pool.free_oldest(chunk.nbytes)

    def close(self) -> None:
        """Stop loading (waking a wait for arena space) and drop the call's arena allocations."""
        self._stop = True
        with self._cond:
            self._cond.notify_all()
        self._pool.stop()
        for thread in self._threads:
            if thread.ident is not None:
                thread.join()
        self._ready.clear()
        self._pool.end_call()


# ----------------------------------------------------------------------------------------------
# Embedding rows: read only the rows of the tokens seen, each row checked.
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RowTable:
    """A row-addressable fp32 table in the store, with one crc32 per row."""

    offset: int
    rows: int
    row_nbytes: int


def read_rows(
    reader: StoreReader,
    table: RowTable,
    row_crc32: np.ndarray,
    row_ids: torch.Tensor,
    out: torch.Tensor,
    what: str,
    io_threads: ThreadPoolExecutor,
    threads: int,
) -> None:
    """Read rows `row_ids` (unique, sorted) of `table` into `out` [len(row_ids), row_nbytes/4].

    Consecutive ids are read with one pread (position rows always are); every row is checked
    against its own crc32. The ranges are spread over the pool's threads, several reads in flight:
    a cold flash read is latency-bound, not bandwidth-bound.
    """
    raw = out.view(torch.uint8).view(len(row_ids), table.row_nbytes)
    ranges: list[tuple[int, int, int]] = []  # (first index in out, first row, row count)
    for i, row in enumerate(row_ids.tolist()):
        if ranges and ranges[-1][1] + ranges[-1][2] == row:
            ranges[-1] = (ranges[-1][0], ranges[-1][1], ranges[-1][2] + 1)
        else:
            ranges.append((i, row, 1))

    def read_ranges(batch: list[tuple[int, int, int]]) -> None:
        for index, row, count in batch:
            rows = raw[index : index + count]
            reader.read_into([rows], table.offset + row * table.row_nbytes, None, f"{what} rows {row}-{row + count - 1}")
            view, size = memoryview(rows.numpy()).cast("B"), table.row_nbytes
            for k in range(count):
                if zlib.crc32(view[k * size : (k + 1) * size]) != int(row_crc32[row + k]):
                    raise checksum_error(f"{what} row {row + k}")

    workers = max(1, min(threads, len(ranges)))
    list(io_threads.map(read_ranges, [ranges[w::workers] for w in range(workers)]))


# ----------------------------------------------------------------------------------------------
# Encoder kernels (post-LayerNorm BERT-style blocks; parameters come from the model spec).
# ----------------------------------------------------------------------------------------------

ACTIVATIONS = {
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
}


def attention_chunk(
    acc: torch.Tensor, x: torch.Tensor, mask: torch.Tensor, chunk: Chunk, heads: int, head_dim: int
) -> None:
    """Add the attention output of a chunk of S shards to `acc` [B*L, hidden], in batched kernels.

    Each shard's weight rows are [Wq; Wk; Wv] rows of its heads then the output projection's
    columns of those heads, transposed; its bias is the q/k/v bias of those heads.
    """
    batch, length, hidden = x.shape
    shards, width = chunk.weight.shape[0], heads * head_dim
    qkv = torch.matmul(x.view(1, batch * length, hidden), chunk.weight[:, : 3 * width].transpose(1, 2))
    qkv += chunk.bias.unsqueeze(1)  # [S, B*L, 3w]
    qkv = qkv.view(shards, batch, length, 3, heads, head_dim).permute(3, 1, 0, 4, 2, 5)
    q, k, v = qkv.reshape(3, batch, shards * heads, length, head_dim)
    context = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # [B, S*heads, L, d]
    context = context.view(batch, shards, heads, length, head_dim).permute(1, 0, 3, 2, 4)
    context = context.reshape(shards, batch * length, width)
    acc += torch.bmm(context, chunk.weight[:, 3 * width :]).sum(0)


def ffn_chunk(acc: torch.Tensor, x: torch.Tensor, chunk: Chunk, units: int, activation: str) -> None:
    """Add a chunk of S FFN slices: sum_s act(x Wup_s^T + b_s) Wdown_s^T, into `acc` [B*L, hidden]."""
    tokens = x.view(1, -1, x.shape[-1])
    hidden = torch.matmul(tokens, chunk.weight[:, :units].transpose(1, 2))
    hidden += chunk.bias.unsqueeze(1)  # [S, B*L, units]
    acc += torch.bmm(ACTIVATIONS[activation](hidden), chunk.weight[:, units:]).sum(0)


def residual_norm(
    acc: torch.Tensor, x: torch.Tensor, bias: torch.Tensor, ln_weight: torch.Tensor,
    ln_bias: torch.Tensor, eps: float,
) -> torch.Tensor:
    """LayerNorm(acc + bias + x): the join after a block's shards (post-LN)."""
    y = acc.view(x.shape).add_(bias).add_(x)
    return F.layer_norm(y, (x.shape[-1],), ln_weight, ln_bias, eps)


def attention_mask_bias(attention_mask: torch.Tensor) -> torch.Tensor:
    """Boolean [B, 1, 1, L] key mask for scaled_dot_product_attention."""
    return attention_mask.bool()[:, None, None, :]


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Attention-mask mean pooling of the last hidden state (not normalized)."""
    weights = attention_mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


def position_ids_for(input_ids: torch.Tensor, attention_mask: torch.Tensor, kind: str, pad_id: int) -> torch.Tensor:
    """Position ids as the family computes them ("absolute": 0..L-1; "roberta": offset past pad)."""
    length = input_ids.shape[1]
    if kind == "absolute":
        return torch.arange(length).expand(input_ids.shape[0], length)
    if kind == "roberta":
        not_pad = (input_ids != pad_id).to(torch.int64)
        return torch.cumsum(not_pad, dim=1) * not_pad + pad_id
    raise ValueError(f"unknown position kind {kind}")


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
    if not value > 0:
        raise ValueError(f"{text!r} must be positive")
    return value


def _bad(text: str, unit: str) -> float:
    examples = {"B/s": "200MB/s", "B": "2MB", "s": "40ms"}
    raise ValueError(f"cannot read {text!r} as a quantity in {unit} (e.g. {examples.get(unit, unit)})")


# ----------------------------------------------------------------------------------------------
# The runner: construction preloads; forward runs the generated schedule with a fresh Loader.
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EncoderShape:
    """What the kernels need to know of the model (from the store's model spec)."""

    layers: int
    hidden: int
    heads: int
    head_dim: int
    ffn: int
    shards_per_layer: int
    vocab: int
    type_vocab: int
    max_positions: int
    position_kind: str
    pad_token_id: int
    layer_norm_eps: float
    activation: str

    @property
    def heads_per_shard(self) -> int:
        return self.heads // self.shards_per_layer

    @property
    def ffn_per_shard(self) -> int:
        return self.ffn // self.shards_per_layer


@dataclass(frozen=True)
class Extent:
    """A checked byte range of the store's data file."""

    offset: int
    nbytes: int
    crc32: int


# per-layer header: these fp32 vectors of `hidden` values, in this order, in one blob
LAYER_HEADER_VECTORS = (
    "attn_out_bias", "attn_norm_weight", "attn_norm_bias",
    "ffn_out_bias", "ffn_norm_weight", "ffn_norm_bias",
)
# global header: embedding LayerNorm weight and bias [hidden] each, then token types [type_vocab, hidden]
GLOBAL_HEADER_VECTORS = ("embed_norm_weight", "embed_norm_bias")


class RunnerBase:
    """Everything of a runner but its schedule; the generated subclass fills in the literals."""

    MODEL_NAME: str
    PLAN_HASH: str
    STORE_ID: str
    DEFAULT_STORE: str
    DATA_FILE: str
    SHAPE: EncoderShape
    WORD_ROWS: RowTable
    WORD_CRC: Extent
    POSITION_ROWS: RowTable
    POSITION_CRC: Extent
    GLOBAL_HEADER: Extent
    LAYER_HEADERS: tuple[Extent, ...]
    LOADS: tuple[ChunkLoad, ...]
    MEMORY_BUDGET_BYTES: int  # pinned + staging + arena, as planned
    ARENA_BYTES: int
    STAGING_BYTES: int
    IO_BANDWIDTH_CAP_BPS: float | None
    COMPUTE_THREADS: int | None  # from the device profile the plan was made for
    IO_THREADS: int = 1  # loading threads (more than one: plans without staged pieces only)
    PLANNED_SEQ_LEN: int  # the sequence length the plan was made for (kernels are warmed up at it)
    EMBED_IO_THREADS = 8

    def __init__(
        self, store_dir: str | None = None, io_bandwidth_Bps: float | None = None, threads: int | None = None,
        pin_embeddings: bool = False, warm_up: bool = True,
    ) -> None:
        """Open the store, check it is the one compiled for, preload, warm up.

        `io_bandwidth_Bps` emulates slower flash; `threads` sets torch's compute threads (process-wide;
        default: the device profile's setting, if the plan had one). `pin_embeddings` reads the
        whole embedding tables now and holds them (counted in the pool) instead of reading one
        call's rows per call; `warm_up=False` skips the kernel warm-up (a cold start pays it in
        its first call).
        """
        self.store_dir = store_dir or self.DEFAULT_STORE
        threads = threads if threads is not None else self.COMPUTE_THREADS
        if threads is not None:
            torch.set_num_threads(threads)
        self._check_manifest()
        cap = io_bandwidth_Bps if io_bandwidth_Bps is not None else self.IO_BANDWIDTH_CAP_BPS
        self.io_bandwidth_cap_Bps = cap
        self.reader = StoreReader(os.path.join(self.store_dir, self.DATA_FILE), cap)
        self.pool = WeightPool(self.ARENA_BYTES, self.STAGING_BYTES)
        self._io_threads = ThreadPoolExecutor(self.EMBED_IO_THREADS, thread_name_prefix="sticc-rows")
        self._tokenizer = None
        self.last_stats: dict | None = None
        # checksum tables of the row-addressable embeddings (metadata, not weights)
        self._word_crc = self._read_metadata(self.WORD_CRC, "word embedding checksums").view(np.uint32)
        self._position_crc = self._read_metadata(self.POSITION_CRC, "position embedding checksums").view(np.uint32)
        # headers: small unsplittable parameters, held for the runner's lifetime
        shape = self.SHAPE
        globals_ = self._read_pinned(self.GLOBAL_HEADER, "global header").view(torch.float32)
        self.embed_norm_weight = globals_[: shape.hidden]
        self.embed_norm_bias = globals_[shape.hidden : 2 * shape.hidden]
        self.token_types = globals_[2 * shape.hidden :].view(shape.type_vocab, shape.hidden)
        self.layer_headers = []
        for layer, extent in enumerate(self.LAYER_HEADERS):
            vectors = self._read_pinned(extent, f"layer {layer} header").view(torch.float32)
            self.layer_headers.append(dict(zip(LAYER_HEADER_VECTORS, vectors.view(-1, shape.hidden), strict=True)))
        # the preload set: stored bytes held for the runner's lifetime, dequantized per call
        self.preloaded = {
            member.offset: self._read_pinned(Extent(member.offset, member.layout.nbytes, member.crc32), member.what)
            for load in self.LOADS
            if not load.pinned_in_place
            for member in load.members
            if member.preloaded
        }
        self.pinned_chunks = {load.key: self._pin_chunk(load) for load in self.LOADS if load.pinned_in_place}
        self.embedding_tables = (
            (self._pin_rows(self.WORD_ROWS, self._word_crc, "word embedding"),
             self._pin_rows(self.POSITION_ROWS, self._position_crc, "position embedding"))
            if pin_embeddings else None
        )
        self.reader.bytes_read = 0
        if warm_up:
            self._warm_up()

    def _warm_up(self) -> None:
        """Run every kernel once, at the planned sequence length and on every chunk shape of the
        plan, on zeros: torch's one-time lazy work (thread pools, kernel selection and the
        per-shape setup of its matmul libraries) happens at construction, not in the first call.
        The chunk-shaped scratch comes from the pool, so it is accounted like any weight."""
        shape = self.SHAPE
        width = shape.heads_per_shard * shape.head_dim
        units = shape.ffn_per_shard
        length = self.PLANNED_SEQ_LEN
        with torch.inference_mode():
            x = torch.zeros(1, length, shape.hidden)
            mask = attention_mask_bias(torch.ones(1, length, dtype=torch.int64))
            acc = torch.zeros(length, shape.hidden)
            for load in {(load.members[0].layout, len(load.members)): load for load in self.LOADS}.values():
                first, count = load.members[0].layout, len(load.members)
                buffer = self.pool.allocate(load.arena_nbytes)
                weights, biases = chunk_views(buffer, first, count)
                weights.zero_()
                biases.zero_()
                chunk = Chunk(weights.view(count, first.rows, first.cols), biases, 0)
                if first.rows == 4 * width and first.bias_len == 3 * width:
                    attention_chunk(acc, x, mask, chunk, shape.heads_per_shard, shape.head_dim)
                if first.rows == 2 * units and first.bias_len == units:
                    ffn_chunk(acc, x, chunk, units, shape.activation)
                del weights, biases, chunk, buffer
                self.pool.free_oldest(load.arena_nbytes)
            ones = torch.ones(shape.hidden)
            residual_norm(acc, x, ones, ones, ones, shape.layer_norm_eps)
            F.layer_norm(x, (shape.hidden,), ones, ones, shape.layer_norm_eps)
            for bits in sorted({member.layout.bits for load in self.LOADS for member in load.members}):
                layout = blob_layout(8, 8, bits, 64, 1)
                dequantize_into(torch.zeros(layout.nbytes, dtype=torch.uint8), layout, torch.empty(64), torch.empty(1))
            torch.unique(torch.arange(length), sorted=True, return_inverse=True)
        # start every embedding-row reader thread now (the pool creates them lazily)
        started = threading.Barrier(self.EMBED_IO_THREADS)
        list(self._io_threads.map(lambda _: started.wait(), range(self.EMBED_IO_THREADS)))

    def _pin_rows(self, table: RowTable, row_crc32: np.ndarray, what: str) -> torch.Tensor:
        """A whole row table, read and checked row by row, held for the runner's lifetime."""
        rows = self.pool.pin(table.rows * table.row_nbytes).view(torch.float32).view(table.rows, -1)
        read_rows(self.reader, table, row_crc32, torch.arange(table.rows), rows, what, self._io_threads, 1)
        return rows

    def _pin_chunk(self, load: ChunkLoad) -> Chunk:
        first = load.members[0].layout
        weights, biases = chunk_views(self.pool.pin(load.arena_nbytes), first, len(load.members))
        for i, member in enumerate(load.members):
            read_fp32_member(self.reader, member, weights[i], biases[i])
        return Chunk(weights.view(len(load.members), first.rows, first.cols), biases, 0)

    def _check_manifest(self) -> None:
        path = os.path.join(self.store_dir, "manifest.json")
        try:
            with open(path, encoding="utf-8") as handle:
                manifest = json.load(handle)
        except FileNotFoundError:
            raise StoreError(f"no sticc store at {self.store_dir} (missing manifest.json)") from None
        except (OSError, ValueError) as error:
            raise StoreError(f"cannot read {path}: {error}") from None
        if manifest.get("format_version") != STORE_FORMAT_VERSION:
            raise StoreError(f"{path}: store format {manifest.get('format_version')}, runner expects {STORE_FORMAT_VERSION}")
        if manifest.get("store_id") != self.STORE_ID:
            raise StoreError(f"{self.store_dir} is not the store this runner was compiled for (store id differs)")

    def _read_metadata(self, extent: Extent, what: str) -> np.ndarray:
        buffer = torch.empty(extent.nbytes, dtype=torch.uint8)
        self.reader.read_into([buffer], extent.offset, extent.crc32, what)
        return buffer.numpy()

    def _read_pinned(self, extent: Extent, what: str) -> torch.Tensor:
        buffer = self.pool.pin(extent.nbytes)
        self.reader.read_into([buffer], extent.offset, extent.crc32, what)
        return buffer

    # -- per call ----------------------------------------------------------------------------

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        overlap: bool = True,
        trace: list | None = None,
    ) -> torch.Tensor:
        """Last hidden state [B, L, hidden] for token ids [B, L]; sets `last_stats`.

        `overlap=False` lets the IO thread finish every load before compute starts (load, then
        compute: a baseline for measurements); the arena must then hold every chunk of the call.
        `trace`, a list, receives (event, chunk key, perf_counter seconds) tuples: "call_start",
        "embed_end", and per loaded chunk "io_start" (arena space taken), "io_end", "compute_start"
        and "compute_end" (key -1: chunks are freed in load order).
        """
        if not overlap and sum(load.arena_nbytes for load in self.LOADS if not load.pinned_in_place) > self.ARENA_BYTES:
            raise ValueError("overlap=False needs an arena that holds every chunk: compile with a larger --memory")
        input_ids = torch.as_tensor(input_ids, dtype=torch.int64)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        attention_mask = torch.as_tensor(attention_mask, dtype=torch.int64)
        start_s = time.perf_counter()
        self.pool.reset_peak()
        read_before = self.reader.bytes_read
        self.reader.start_cap_clock()
        if trace is not None:
            trace.append(("call_start", -1, start_s))
        with torch.inference_mode():
            loads = Loader(self.LOADS, self.reader, self.pool, self.preloaded, self.pinned_chunks, trace, self.IO_THREADS)
            try:
                # the embedding first, alone: its cold row reads gate every kernel, so they do not
                # queue behind the IO thread's; its rows are freed before any chunk is loaded
                x = self._embed(input_ids, attention_mask, token_type_ids)
                if trace is not None:
                    trace.append(("embed_end", -1, time.perf_counter()))
                loads.start()
                if not overlap:
                    loads.wait_all()
                x = self.schedule(x, attention_mask_bias(attention_mask), loads)
            finally:
                loads.close()
        self.last_stats = {
            "latency_s": time.perf_counter() - start_s,
            "peak_weight_bytes": self.pool.peak_bytes,
            "io_bytes": self.reader.bytes_read - read_before,
        }
        return x

    def schedule(self, x: torch.Tensor, mask: torch.Tensor, loads: Loader) -> torch.Tensor:
        raise NotImplementedError("generated runners define the schedule")

    def _embed(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None,
    ) -> torch.Tensor:
        shape = self.SHAPE
        if input_ids.ndim != 2:
            raise ValueError("input_ids must be [batch, length]")
        if int(input_ids.min()) < 0 or int(input_ids.max()) >= shape.vocab:
            raise ValueError(f"token ids must lie in [0, {shape.vocab})")
        position_ids = position_ids_for(input_ids, attention_mask, shape.position_kind, shape.pad_token_id)
        if int(position_ids.max()) >= shape.max_positions:
            raise ValueError(f"sequence too long: the model has {shape.max_positions} positions")
        if self.embedding_tables is not None:  # held: no reads
            word_table, position_table = self.embedding_tables
            x = word_table[input_ids] + position_table[position_ids]
            return self._finish_embedding(x, input_ids, token_type_ids)
        words, word_index = torch.unique(input_ids, sorted=True, return_inverse=True)
        positions, position_index = torch.unique(position_ids, sorted=True, return_inverse=True)
        nbytes = 4 * shape.hidden * (len(words) + len(positions))
        rows = self.pool.allocate(nbytes)[:nbytes].view(torch.float32).view(-1, shape.hidden)
        try:
            read_rows(self.reader, self.WORD_ROWS, self._word_crc, words, rows[: len(words)], "word embedding", self._io_threads, self.EMBED_IO_THREADS)
            read_rows(self.reader, self.POSITION_ROWS, self._position_crc, positions, rows[len(words) :], "position embedding", self._io_threads, self.EMBED_IO_THREADS)
            x = rows[: len(words)][word_index] + rows[len(words) :][position_index]
        finally:
            del rows
            self.pool.free_oldest(nbytes)
        return self._finish_embedding(x, input_ids, token_type_ids)

    def _finish_embedding(self, x: torch.Tensor, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None) -> torch.Tensor:
        """Token types and the embedding LayerNorm, on the summed word and position rows."""
        shape = self.SHAPE
        if shape.type_vocab:
            types = torch.zeros_like(input_ids) if token_type_ids is None else torch.as_tensor(token_type_ids, dtype=torch.int64)
            x += self.token_types[types]
        return F.layer_norm(x, (shape.hidden,), self.embed_norm_weight, self.embed_norm_bias, shape.layer_norm_eps)

    def join(self, acc: torch.Tensor, x: torch.Tensor, layer: int, part: str) -> torch.Tensor:
        """Residual add and LayerNorm closing block `part` ("attn" or "ffn") of `layer`."""
        header = self.layer_headers[layer]
        return residual_norm(
            acc, x, header[f"{part}_out_bias"], header[f"{part}_norm_weight"],
            header[f"{part}_norm_bias"], self.SHAPE.layer_norm_eps,
        )

    # -- text ----------------------------------------------------------------------------------

    def tokenize(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Token ids, attention mask and token types [n, L] for `texts`, padded to the longest."""
        if self._tokenizer is None:
            try:
                from tokenizers import Tokenizer
            except ImportError:
                raise StoreError("text input needs the `tokenizers` package; pass token ids instead") from None
            path = os.path.join(self.store_dir, "tokenizer.json")
            if not os.path.exists(path):
                raise StoreError(f"{self.store_dir} has no tokenizer.json; pass token ids instead")
            tokenizer = Tokenizer.from_file(path)
            limit = self.SHAPE.max_positions - (self.SHAPE.pad_token_id + 1 if self.SHAPE.position_kind == "roberta" else 0)
            tokenizer.enable_truncation(max_length=limit)
            tokenizer.enable_padding(pad_id=self.SHAPE.pad_token_id)
            self._tokenizer = tokenizer
        encodings = self._tokenizer.encode_batch(list(texts))
        ids = torch.tensor([e.ids for e in encodings], dtype=torch.int64)
        mask = torch.tensor([e.attention_mask for e in encodings], dtype=torch.int64)
        types = torch.tensor([e.type_ids for e in encodings], dtype=torch.int64)
        return ids, mask, types

    def encode(self, texts: list[str]) -> torch.Tensor:
        """Mean-pooled embeddings [n, hidden] of `texts` (one call; `last_stats` covers the forward)."""
        ids, mask, types = self.tokenize(texts)
        hidden = self.forward(ids, mask, types)
        return mean_pool(hidden, mask)

    def close(self) -> None:
        self._io_threads.shutdown()
        self.reader.close()


def runner_main(runner_class: type[RunnerBase], argv: list[str] | None = None) -> int:
    """The runner's command line: one JSON object per input text, then optional stats."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=f"sticc runner for {runner_class.MODEL_NAME} (plan {runner_class.PLAN_HASH[:12]})")
    parser.add_argument("texts", nargs="*", help="input texts (default: one per line of stdin)")
    parser.add_argument("--store", help=f"the shard store (default: {runner_class.DEFAULT_STORE})")
    parser.add_argument("--stats", action="store_true", help="print a last line with latency, peak weight bytes and IO bytes")
    parser.add_argument("--io-bandwidth", help="emulate slower flash, e.g. 200MB/s (an emulation: reads are delayed)")
    parser.add_argument("--threads", type=int, help="torch compute threads (default: the device profile's, else torch's)")
    args = parser.parse_args(argv)
    texts = args.texts or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    try:
        cap = parse_quantity(args.io_bandwidth, "B/s") if args.io_bandwidth else None
        if not texts:
            raise ValueError("no input texts (give them as arguments or on stdin)")
        if args.threads is not None and args.threads < 1:
            raise ValueError("--threads must be at least 1")
        runner = runner_class(args.store, io_bandwidth_Bps=cap, threads=args.threads)
        embeddings = runner.encode(texts)
    except (StoreError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for text, embedding in zip(texts, embeddings.tolist(), strict=True):
        print(json.dumps({"text": text, "embedding": embedding}))
    if args.stats:
        stats = dict(runner.last_stats)
        if runner.io_bandwidth_cap_Bps:
            stats["emulated_io_bandwidth_Bps"] = runner.io_bandwidth_cap_Bps
        print(json.dumps({"stats": stats}))
    runner.close()
    return 0
