"""The simulator: an event simulation of one runner call of a plan on a device profile.

It is the reference for what a plan costs; solvers model the same machine in their own way, and the
tests check that their predictions equal the simulator's. The machine, as the runner behaves:

- Two lanes. The compute lane runs the embedding, then for every layer block its chunks in order
  (each waits until the IO lane has handed it over) and the block's join. The IO lane starts when
  the embedding ends (its cold row reads gate every kernel, so they do not queue behind chunk
  reads) and walks the same chunks in order: it takes arena space for the chunk's fp32 form, then
  reads, checks and dequantizes its pieces.
- The arena holds `budget - pinned - staging` bytes. The embedding rows take `embed_arena_nbytes`
  of it until the embedding is computed; a chunk's space is taken when the IO lane starts it and
  given back when its compute ends. The IO lane waits while the live allocations plus the next
  chunk would exceed the arena.
- A chunk's IO time: a fixed overhead, plus for preloaded pieces one decode each (their stored
  bytes are pinned), plus for streamed fp32 pieces one read each, plus for each bitwidth b < 32 of
  its streamed pieces one read per piece and one decode call for all of them. With an emulated
  bandwidth cap, a chunk's reads cannot finish before (embedding bytes + bytes read so far,
  this chunk's included) / cap after the call starts; the decode calls follow the reads.
- A loaded chunk reaches the compute lane `handover_s` after the IO lane finishes it (a thread
  wake-up); the IO lane goes on at once.
- A chunk whose kept pieces are all preloaded at 32 bits is pinned in its final form: no IO time,
  no arena.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

from sticc.lower import ChunkSlot, Problem, chunk_members
from sticc.plan import ShardChoice
from sticc.sharding import PARTS


@dataclass(frozen=True)
class ChunkWork:
    """What one non-empty chunk costs, from the problem's tables."""

    slot: ChunkSlot
    members: tuple[ShardChoice, ...]
    pinned_in_place: bool
    arena_nbytes: int  # 0 when pinned in place
    pinned_nbytes: int  # preloaded stored bytes (or the whole fp32 chunk when pinned in place)
    staging_nbytes: int  # the largest same-bitwidth run of streamed stored bytes
    read_nbytes: int  # bytes read from the store per call
    io_cpu_s: float  # overhead, preloaded decodes, reads
    decode_s: float  # decode calls of the streamed runs, after their reads
    compute_s: float


def chunk_work(problem: Problem, slot: ChunkSlot, members: list[ShardChoice]) -> ChunkWork:
    costs = problem.parts[slot.part]
    n = len(members)
    if all(m.preload and m.bits == 32 for m in members):
        arena = costs.arena_nbytes[n]
        return ChunkWork(slot, tuple(members), True, 0, arena, 0, 0, 0.0, 0.0, costs.compute_s[n])
    pinned = sum(costs.stored_nbytes[m.bits] for m in members if m.preload)
    io_cpu = problem.io_chunk_overhead_s
    io_cpu += sum(costs.decode_call_s[m.bits] + costs.decode_piece_s[m.bits] for m in members if m.preload)
    streamed = [m for m in members if not m.preload]
    io_cpu += sum(costs.read_s[m.bits] for m in streamed)
    runs: dict[int, int] = {}
    for m in streamed:
        if m.bits != 32:
            runs[m.bits] = runs.get(m.bits, 0) + 1
    decode = sum(costs.decode_call_s[b] + count * costs.decode_piece_s[b] for b, count in runs.items())
    staging = max((count * costs.stored_nbytes[b] for b, count in runs.items()), default=0)
    return ChunkWork(
        slot, tuple(members), False, costs.arena_nbytes[n], pinned, staging,
        sum(costs.stored_nbytes[m.bits] for m in streamed), io_cpu, decode, costs.compute_s[n],
    )


def plan_work(problem: Problem, choices: dict[tuple[int, int], ShardChoice]) -> list[ChunkWork]:
    """Every non-empty chunk of a plan, in load order."""
    out = []
    for slot in problem.slots:
        members = chunk_members(problem, slot, choices)
        if members:
            out.append(chunk_work(problem, slot, members))
    return out


@dataclass(frozen=True)
class Event:
    lane: str  # "io" | "compute"
    kind: str  # "embed" | "load" | "compute" | "join" | "stall" (compute waits for IO) | "wait" (IO waits for arena)
    label: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class Simulation:
    latency_s: float
    pinned_nbytes: int
    staging_nbytes: int
    arena_nbytes: int  # budget - pinned - staging
    peak_weight_bytes: int
    io_nbytes: int  # per call, embedding rows included
    compute_stall_s: float  # compute lane waiting for the IO lane
    arena_wait_s: float  # IO lane waiting for arena space
    fits: bool  # the arena holds the embedding rows and the largest chunk
    events: tuple[Event, ...]


def memory_of(problem: Problem, work: list[ChunkWork]) -> tuple[int, int]:
    """(pinned, staging) bytes of a plan's chunks."""
    pinned = problem.header_nbytes + sum(w.pinned_nbytes for w in work)
    return pinned, max((w.staging_nbytes for w in work), default=0)


def simulate(problem: Problem, choices: dict[tuple[int, int], ShardChoice], budget_bytes: int) -> Simulation:
    """Simulate one call of the plan `choices` with a weight pool of `budget_bytes`."""
    work = plan_work(problem, choices)
    pinned, staging = memory_of(problem, work)
    arena = budget_bytes - pinned - staging
    fits = arena >= max([problem.embed_arena_nbytes, *(w.arena_nbytes for w in work)])
    events: list[Event] = []
    latency, peak_arena, read_so_far = _run(problem, work, arena, events, math.inf)
    stall = sum(e.end_s - e.start_s for e in events if e.kind == "stall")
    wait = sum(e.end_s - e.start_s for e in events if e.kind == "wait")
    return Simulation(
        latency_s=latency, pinned_nbytes=pinned, staging_nbytes=staging, arena_nbytes=arena,
        peak_weight_bytes=pinned + peak_arena, io_nbytes=read_so_far, compute_stall_s=stall, arena_wait_s=wait,
        fits=fits, events=tuple(sorted(events, key=lambda e: (e.lane, e.start_s))),
    )


def latency_of(problem: Problem, work: list[ChunkWork], arena_bytes: int, limit_s: float = math.inf) -> float:
    """`simulate(...).latency_s` of the chunks `work` with an arena of `arena_bytes`, without
    recording events; once the simulated time passes `limit_s` that time is returned at once
    (events pop in time order, so the latency can only be later). For planners' inner loops."""
    return _run(problem, work, arena_bytes, None, limit_s)[0]


def _run(
    problem: Problem, work: list[ChunkWork], arena: int, events: list[Event] | None, limit_s: float,
) -> tuple[float, int, int]:
    """The event loop: (latency, peak arena bytes incl. staging, bytes read); `events`, if a list,
    receives the timeline."""
    record = events is not None
    cap = problem.cap_Bps
    embed_end = problem.embed_s if not cap else max(problem.embed_s, problem.embed_io_nbytes / cap)

    steps: list[tuple[str, int | tuple[int, str]]] = []  # compute lane: ("chunk", i) or ("join", (layer, part))
    position = 0
    for layer in range(problem.layers):
        for part in PARTS:
            while position < len(work) and (work[position].slot.layer, work[position].slot.part) == (layer, part):
                steps.append(("chunk", position))
                position += 1
            steps.append(("join", (layer, part)))

    if record:
        events.append(Event("compute", "embed", "embedding", 0.0, embed_end))
    heap: list[tuple[float, int, str, int]] = []
    counter = 0

    def push(time_s: float, kind: str, item: int = -1) -> None:
        nonlocal counter
        heapq.heappush(heap, (time_s, counter, kind, item))
        counter += 1

    live = problem.embed_arena_nbytes
    peak_arena = live
    read_so_far = problem.embed_io_nbytes
    ready: dict[int, float] = {}
    io_next, io_idle_since, io_blocked = 0, embed_end, False
    comp_next, comp_waiting_since = 0, None

    def try_io(now: float) -> None:
        nonlocal io_next, io_idle_since, io_blocked, live, peak_arena, read_so_far
        while io_next < len(work) and work[io_next].pinned_in_place:
            ready[io_next] = now
            io_next += 1
        if io_next == len(work):
            return
        w = work[io_next]
        if live + w.arena_nbytes > arena and w.arena_nbytes <= arena:
            io_blocked = True
            return
        io_blocked = False
        if record and now > io_idle_since:
            events.append(Event("io", "wait", "arena full", io_idle_since, now))
        live += w.arena_nbytes
        peak_arena = max(peak_arena, live + w.staging_nbytes)
        read_so_far += w.read_nbytes
        reads_done = now + w.io_cpu_s
        if cap:
            reads_done = max(reads_done, read_so_far / cap)
        end = reads_done + w.decode_s
        if record:
            events.append(Event("io", "load", _label(w), now, end))
        push(end, "io_done", io_next)

    def advance_compute(now: float) -> None:
        nonlocal comp_next, comp_waiting_since
        if comp_next == len(steps):
            return
        kind, item = steps[comp_next]
        if kind == "join":
            layer, part = item
            end = now + problem.parts[part].join_s
            if record:
                events.append(Event("compute", "join", f"layer {layer} {part} join", now, end))
            push(end, "join_done")
            return
        if item not in ready:
            comp_waiting_since = now if comp_waiting_since is None else comp_waiting_since
            return
        if record and comp_waiting_since is not None and now > comp_waiting_since:
            events.append(Event("compute", "stall", "waiting for IO", comp_waiting_since, now))
        comp_waiting_since = None
        end = now + work[item].compute_s
        if record:
            events.append(Event("compute", "compute", _label(work[item]), now, end))
        push(end, "compute_done", item)

    push(embed_end, "embed_done")
    latency = embed_end
    while heap:
        now, _, kind, item = heapq.heappop(heap)
        latency = max(latency, now)
        if latency > limit_s:
            return latency, peak_arena, read_so_far
        if kind == "io_done":
            io_next += 1
            io_idle_since = now
            try_io(now)
            push(now + problem.handover_s, "ready", item)
        elif kind == "ready":
            ready[item] = now
            if comp_waiting_since is not None:
                advance_compute(now)
        elif kind in ("compute_done", "embed_done"):
            live -= work[item].arena_nbytes if kind == "compute_done" else problem.embed_arena_nbytes
            if kind == "compute_done":
                comp_next += 1
            if io_blocked or kind == "embed_done":  # the IO lane starts when the embedding ends
                try_io(now)
            advance_compute(now)
        elif kind == "join_done":
            comp_next += 1
            advance_compute(now)
    assert comp_next == len(steps), "simulation ended with compute steps left (a plan the arena cannot hold)"
    return latency, peak_arena, read_so_far


def _label(w: ChunkWork) -> str:
    bits = "/".join(str(b) for b in sorted({m.bits for m in w.members}))
    return f"L{w.slot.layer} {w.slot.part} x{len(w.members)} @{bits}b"
