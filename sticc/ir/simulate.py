"""The simulator: an event simulation of one runner call of a plan on a device profile.

A call is an encoder's forward, a decoder's prefill or one decoded token (the graph's phase): the
same engine runs each, only the graph's costs differ (`sticc.ir.lower`).

It is the reference for what a plan costs; solvers model the same machine in their own way, and the
tests check that their predictions equal the simulator's. The machine, as the runner behaves
(`sticc.runtime`):

- Two lanes. The compute lane runs the embedding, then for every layer block its chunks in order
  (each waits until the IO lane has handed it over), each dequantized (one call per run of pieces
  of one bitwidth and home) and computed, and the block's join. The IO lane starts when the
  embedding ends (its cold row reads gate every kernel, so they do not queue behind chunk reads)
  and walks the chunks that stream in the same order: it takes ring space for the chunk's streamed
  pieces as stored, reads them, checks them.
- Memory: a pool of pinned (headers, preloaded pieces as stored, chunks pinned in place decoded),
  scratch (the largest chunk dequantized, or the embedding rows) and ring (admission capacity plus
  the largest streamed chunk as slack). A chunk's ring space is taken when the IO lane starts it
  and given back when its compute ends. The IO lane waits while the live chunks plus the next
  exceed the admission capacity, `budget - pinned - scratch - slack` in whole read units. Space a
  chunk frees counts `handover_s` after its compute ends (the IO lane, waiting for it, wakes up).
- A chunk's IO time: a fixed overhead, plus one read per streamed piece, then one checksum each.
  With an emulated bandwidth cap, a chunk's reads cannot finish before (embedding bytes + bytes
  read so far, this chunk's included) / cap after the call starts; the checksums follow the reads.
- A loaded chunk reaches the compute lane `handover_s` after the IO lane finishes it (a thread
  wake-up); the IO lane goes on at once. A chunk with nothing streamed (every member preloaded) is
  not loaded: it is ready at once.
- The IO lane's work slows the compute lane (shared cores, caches, memory bandwidth, the GIL): a
  chunk's compute takes `interference` x its own IO work longer (the IO lane runs ahead, so its
  work overlaps compute; the lane fit fits the factor on traced calls).
- A chunk whose kept pieces are all preloaded at 32 bits is pinned in place (decoded at
  construction): no IO, no ring, no scratch, no dequantization.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from enum import Enum

from sticc.ir.graph import ChunkNode, JoinNode, Position, ShardChoice
from sticc.ir.lower import Problem
from sticc.ir.memory import ChunkBytes, admit_nbytes, chunk_bytes, pool_figures
from sticc.ir.plan import Event, EventKind, Lane


class _Tick(Enum):
    """What an event of the simulation's queue is."""

    EMBED_DONE = "embed_done"
    IO_DONE = "io_done"  # the IO lane finished a chunk
    READY = "ready"  # a loaded chunk reached the compute lane
    COMPUTE_DONE = "compute_done"
    JOIN_DONE = "join_done"
    RING_FREE = "ring_free"  # a computed chunk's ring space is free again


@dataclass(frozen=True)
class ChunkWork:
    """What one non-empty chunk costs, from its graph node's costs."""

    chunk: ChunkNode
    members: tuple[ShardChoice, ...]
    held: ChunkBytes  # what it takes of the pool (`sticc.ir.memory.chunk_bytes`)
    io_cpu_s: float  # overhead and reads
    check_s: float  # checksums, after the reads
    decode_s: float  # dequantization on the compute lane
    compute_s: float  # overhead, dequantization, kernel and what the chunk's IO work takes from the compute lane
    decode_by_bits: tuple[tuple[int, float], ...] = ()  # decode_s by bitwidth

    @property
    def pinned_in_place(self) -> bool:
        return self.held.pinned_in_place

    @property
    def ring_nbytes(self) -> int:
        """Its streamed pieces as stored (0: nothing streamed, not loaded); also what a call reads."""
        return self.held.ring_nbytes

    @property
    def pinned_nbytes(self) -> int:
        return self.held.pinned_nbytes

    @property
    def scratch_nbytes(self) -> int:
        return self.held.scratch_nbytes


def chunk_work(problem: Problem, chunk: ChunkNode, members: list[ShardChoice]) -> ChunkWork:
    costs, lanes = problem.graph.costs(chunk), problem.lanes
    n = len(members)
    held = chunk_bytes(chunk.sizes, members)
    if held.pinned_in_place:
        return ChunkWork(chunk, tuple(members), held, 0.0, 0.0, 0.0, lanes.chunk_overhead_s + costs.compute_s[n])
    streamed = [m for m in members if not m.preload]
    io_cpu = (lanes.io_chunk_overhead_s + sum(costs.read_s[m.bits] for m in streamed)) if streamed else 0.0
    check = sum(costs.check_s[m.bits] for m in streamed)
    # one dequantization call per run of one bitwidth and home (streamed or preloaded)
    runs: dict[tuple[int, bool], int] = {}
    for m in members:
        runs[(m.bits, m.preload)] = runs.get((m.bits, m.preload), 0) + 1
    by_bits: dict[int, float] = {}
    for (b, _), count in runs.items():
        by_bits[b] = by_bits.get(b, 0.0) + costs.decode_call_s[b] + count * costs.decode_piece_s[b]
    decode = sum(costs.decode_call_s[b] + count * costs.decode_piece_s[b] for (b, _), count in runs.items())
    interference = lanes.interference * (io_cpu + check)
    return ChunkWork(
        chunk, tuple(members), held, io_cpu, check, decode,
        lanes.chunk_overhead_s + decode + costs.compute_s[n] + interference, tuple(sorted(by_bits.items())),
    )


def plan_work(problem: Problem, choices: dict[Position, ShardChoice]) -> list[ChunkWork]:
    """Every non-empty chunk of a plan, in load order (`ShardGraph.schedule`)."""
    return [chunk_work(problem, c.node, list(c.members)) for block in problem.graph.schedule(choices) for c in block.chunks]


@dataclass(frozen=True)
class Simulation:
    latency_s: float
    pinned_nbytes: int
    scratch_nbytes: int
    slack_nbytes: int  # ring bytes beyond admission (the largest streamed chunk)
    admit_nbytes: int  # ring bytes the IO lane may hold at once
    peak_weight_bytes: int  # the pool: pinned + scratch + admission + slack
    io_nbytes: int  # per call, embedding rows included
    compute_stall_s: float  # compute lane waiting for the IO lane
    ring_wait_s: float  # IO lane waiting for ring space
    fits: bool  # the ring admits the largest streamed chunk
    events: tuple[Event, ...]


def memory_of(problem: Problem, work: list[ChunkWork]) -> tuple[int, int, int]:
    """(pinned, scratch, slack) bytes of a plan's chunks (`sticc.ir.memory.pool_figures`)."""
    memory = pool_figures(problem.graph.header_nbytes, problem.graph.embed.scratch_nbytes, (w.held for w in work))
    return memory.pinned_bytes, memory.scratch_bytes, memory.slack_bytes


def simulate(problem: Problem, choices: dict[Position, ShardChoice], budget_bytes: int) -> Simulation:
    """Simulate one call of the plan `choices` with a weight pool of `budget_bytes`."""
    work = plan_work(problem, choices)
    pinned, scratch, slack = memory_of(problem, work)
    admit = admit_nbytes(budget_bytes, pinned + scratch + slack, slack)
    fits = budget_bytes >= pinned + scratch + slack and admit >= slack
    events: list[Event] = []
    latency, read_so_far = _run(problem, work, admit, events, math.inf)
    stall = sum(e.end_s - e.start_s for e in events if e.kind is EventKind.STALL)
    wait = sum(e.end_s - e.start_s for e in events if e.kind is EventKind.WAIT)
    return Simulation(
        latency_s=latency, pinned_nbytes=pinned, scratch_nbytes=scratch, slack_nbytes=slack, admit_nbytes=admit,
        peak_weight_bytes=pinned + scratch + admit + slack, io_nbytes=read_so_far,
        compute_stall_s=stall, ring_wait_s=wait, fits=fits,
        events=tuple(sorted(events, key=lambda e: (e.lane, e.start_s))),
    )


def latency_of(problem: Problem, work: list[ChunkWork], admit_bytes: int, limit_s: float = math.inf) -> float:
    """`simulate(...).latency_s` of the chunks `work` with a ring admitting `admit_bytes`, without
    recording events; once the simulated time passes `limit_s` that time is returned at once
    (events pop in time order, so the latency can only be later). For planners' inner loops."""
    return _run(problem, work, admit_bytes, None, limit_s)[0]


def _run(
    problem: Problem, work: list[ChunkWork], admit: int, events: list[Event] | None, limit_s: float,
) -> tuple[float, int]:
    """The event loop: (latency, bytes read); `events`, if a list, receives the timeline."""
    graph = problem.graph
    record = events is not None
    lanes, embed = graph.lanes, graph.embed
    cap = lanes.cap_Bps
    embed_end = embed.duration_s if not cap else max(embed.duration_s, embed.io_nbytes / cap)

    # the compute lane: the graph's steps, each chunk step the index of its work (empty chunks skipped)
    steps: list[int | JoinNode] = []
    position = 0
    for step in graph.steps:
        if isinstance(step, JoinNode):
            steps.append(step)
        elif position < len(work) and work[position].chunk is step:
            steps.append(position)
            position += 1

    if record:
        events.append(Event(Lane.COMPUTE, EventKind.EMBED, "embedding", 0.0, embed_end))
    heap: list[tuple[float, int, _Tick, int]] = []
    counter = 0

    def push(time_s: float, kind: _Tick, item: int = -1) -> None:
        nonlocal counter
        heapq.heappush(heap, (time_s, counter, kind, item))
        counter += 1

    live = 0
    read_so_far = embed.io_nbytes
    # chunks with nothing streamed are not loaded: ready from the start
    ready: dict[int, float] = {i: 0.0 for i, w in enumerate(work) if not w.ring_nbytes}
    loaded = [i for i, w in enumerate(work) if w.ring_nbytes]
    io_next, io_idle_since, io_blocked = 0, embed_end, False
    comp_next, comp_waiting_since = 0, None

    def try_io(now: float) -> None:
        nonlocal io_next, io_idle_since, io_blocked, live, read_so_far
        if io_next == len(loaded):
            return
        item = loaded[io_next]
        w = work[item]
        if live and live + w.ring_nbytes > admit:
            io_blocked = True
            return
        io_blocked = False
        if record and now > io_idle_since:
            events.append(Event(Lane.IO, EventKind.WAIT, "ring full", io_idle_since, now))
        live += w.ring_nbytes
        read_so_far += w.ring_nbytes  # a call reads what it streams
        reads_done = now + w.io_cpu_s
        if cap:
            reads_done = max(reads_done, read_so_far / cap)
        end = reads_done + w.check_s
        if record:
            events.append(Event(Lane.IO, EventKind.LOAD, _label(w), now, end))
        push(end, _Tick.IO_DONE, item)

    def advance_compute(now: float) -> None:
        nonlocal comp_next, comp_waiting_since
        if comp_next == len(steps):
            return
        item = steps[comp_next]
        if isinstance(item, JoinNode):
            end = now + item.duration_s
            if record:
                events.append(Event(Lane.COMPUTE, EventKind.JOIN, f"layer {item.layer} {item.part} join", now, end))
            push(end, _Tick.JOIN_DONE)
            return
        if item not in ready:
            comp_waiting_since = now if comp_waiting_since is None else comp_waiting_since
            return
        if record and comp_waiting_since is not None and now > comp_waiting_since:
            events.append(Event(Lane.COMPUTE, EventKind.STALL, "waiting for IO", comp_waiting_since, now))
        comp_waiting_since = None
        end = now + work[item].compute_s
        if record:
            events.append(Event(Lane.COMPUTE, EventKind.COMPUTE, _label(work[item]), now, end))
        push(end, _Tick.COMPUTE_DONE, item)

    push(embed_end, _Tick.EMBED_DONE)
    latency = embed_end
    while heap:
        now, _, kind, item = heapq.heappop(heap)
        if kind is _Tick.RING_FREE:  # bookkeeping of the IO lane, not part of the call's latency
            live -= work[item].ring_nbytes
            if io_blocked:
                try_io(now)
            continue
        latency = max(latency, now)
        if latency > limit_s:
            return latency, read_so_far
        if kind is _Tick.IO_DONE:
            io_next += 1
            io_idle_since = now
            try_io(now)
            push(now + lanes.handover_s, _Tick.READY, item)
        elif kind is _Tick.READY:
            ready[item] = now
            if comp_waiting_since is not None:
                advance_compute(now)
        elif kind is _Tick.COMPUTE_DONE:
            comp_next += 1
            if work[item].ring_nbytes:
                push(now + lanes.handover_s, _Tick.RING_FREE, item)
            advance_compute(now)
        elif kind is _Tick.EMBED_DONE:
            try_io(now)  # the IO lane starts when the embedding ends
            advance_compute(now)
        elif kind is _Tick.JOIN_DONE:
            comp_next += 1
            advance_compute(now)
    assert comp_next == len(steps), "simulation ended with compute steps left (a plan the ring cannot hold)"
    return latency, read_so_far


def _label(w: ChunkWork) -> str:
    bits = "/".join(str(b) for b in sorted({m.bits for m in w.members}))
    return f"L{w.chunk.layer} {w.chunk.part} x{len(w.members)} @{bits}b"
