"""What every solver shares: the result type, the simulator-backed feasibility check, and the
check that some plan meets the targets at all (with the message naming what is reachable).

A solver takes a lowered `sticc.ir.lower.Problem` and returns a `Solution`: one `ShardChoice` per shard
(bits, 0 = dropped; preload flag), its summed importance, and the simulation of the plan on the
problem's device. A solution is feasible when the simulation fits the memory budget and finishes
within the latency target.
"""

from __future__ import annotations

from dataclasses import dataclass

from sticc.base.errors import InfeasibleError
from sticc.ir.graph import Phase, ShardChoice
from sticc.ir.lower import Problem
from sticc.ir.memory import admit_nbytes
from sticc.ir.plan import SolverInfo
from sticc.ir.simulate import ChunkWork, Simulation, chunk_work, latency_of, memory_of, plan_work, simulate

Choices = dict[tuple[int, int], ShardChoice]


@dataclass(frozen=True)
class Solution:
    choices: Choices
    info: SolverInfo
    objective: float  # summed importance (higher is better)
    simulation: Simulation


def budget_bytes(problem: Problem, choices: Choices) -> int:
    """The weight-pool budget a plan runs with: the memory target, or without one, enough to hold
    every chunk of the call at once (memory then never delays IO)."""
    if problem.memory_bytes is not None:
        return problem.memory_bytes
    return budget_for(problem, plan_work(problem, choices))


def budget_for(problem: Problem, work: list[ChunkWork]) -> int:
    """`budget_bytes` of a plan given as its chunks' work (`sticc.ir.simulate.plan_work`)."""
    if problem.memory_bytes is not None:
        return problem.memory_bytes
    pinned, scratch, slack = memory_of(problem, work)
    return pinned + scratch + slack + sum(w.ring_nbytes for w in work)


def admit_for(problem: Problem, work: list[ChunkWork]) -> int | None:
    """The ring's admission capacity of a plan's chunks within its budget; None when the budget
    cannot hold the plan (the largest streamed chunk must fit alone)."""
    pinned, scratch, slack = memory_of(problem, work)
    budget = budget_for(problem, work)
    admit = admit_nbytes(budget, pinned + scratch + slack, slack)
    return admit if budget >= pinned + scratch + slack and admit >= slack else None


def evaluate(problem: Problem, choices: Choices) -> Simulation:
    return simulate(problem, choices, budget_bytes(problem, choices))


def is_feasible(problem: Problem, simulation: Simulation) -> bool:
    """Whether one phase's simulation fits the pool and meets that phase's latency target."""
    if not simulation.fits:
        return False
    return problem.latency_s is None or simulation.latency_s <= problem.latency_s * (1 + 1e-9)


def meets(problem: Problem, choices: Choices) -> bool:
    """Whether the plan meets the targets of every phase (a decoder's decode step and prefill)."""
    return all(is_feasible(phase, evaluate(phase, choices)) for phase in problem.phases)


def dropped_all(problem: Problem) -> Choices:
    """The least plan: every shard dropped (a decoder's LM head slices, never droppable, at the
    lowest bitwidth)."""
    low = min(problem.bits)
    return {p: ShardChoice(p[0], p[1], 0 if problem.droppable(p) else low) for p in problem.positions}


def solution(problem: Problem, choices: Choices, info: SolverInfo) -> Solution:
    return Solution(dict(choices), info, problem.objective(choices), evaluate(problem, choices))


def _ms(seconds: float) -> str:
    return f"{seconds * 1e6:.0f} us" if seconds < 1e-3 else f"{seconds * 1e3:.1f} ms"


def _mb(nbytes: float) -> str:
    return f"{nbytes / 1e3:.1f} kB" if nbytes < 1e6 else f"{nbytes / 1e6:.2f} MB"


PHASE_TARGETS = {Phase.ENCODE: "latency", Phase.PREFILL: "time to first token", Phase.DECODE: "per-token latency"}


def check_reachable(problem: Problem) -> None:
    """Raise InfeasibleError naming what is reachable when no plan (not even dropping every shard)
    meets the targets: the smallest latency within the memory, the smallest memory for the latency
    (for a decoder, of the first phase that fails: the decode step, then the prefill)."""
    for phase in problem.phases:
        _check_phase(phase, dropped_all(problem))


def _check_phase(problem: Problem, least: Choices) -> None:
    floor = evaluate(problem, least)
    what = PHASE_TARGETS[problem.graph.info.phase]
    low = {c.bits for c in least.values()} - {0}
    dropped = "every shard dropped" if not low else f"every layer shard dropped, the LM head at {min(low)} bits"
    # the least memory any plan needs: headers plus the embedding rows' scratch, nothing else kept
    # (a decoder's LM head streams: the ring holds its largest chunk, with as much slack)
    least_memory = floor.pinned_nbytes + floor.scratch_nbytes + 2 * floor.slack_nbytes
    memory_ok = problem.memory_bytes is None or problem.memory_bytes >= least_memory
    latency_ok = problem.latency_s is None or floor.latency_s <= problem.latency_s
    if memory_ok and latency_ok:
        return
    asked = []
    if problem.latency_s is not None:
        encoder = problem.graph.info.phase is Phase.ENCODE
        asked.append(_ms(problem.latency_s) if encoder else f"a {what} of {_ms(problem.latency_s)}")
    if problem.memory_bytes is not None:
        asked.append(_mb(problem.memory_bytes))
    fastest = (
        f"the smallest {what} reachable with {_mb(problem.memory_bytes)} is {_ms(floor.latency_s)} ({dropped})"
        if memory_ok and problem.memory_bytes is not None
        else f"the smallest {what} reachable at all is {_ms(floor.latency_s)} ({dropped})"
        if memory_ok
        else f"no plan fits in {_mb(problem.memory_bytes)}"
    )
    smallest = (
        f"the smallest memory that reaches {_ms(problem.latency_s)} is {_mb(least_memory)}"
        if latency_ok and problem.latency_s is not None
        else f"no memory reaches {_ms(problem.latency_s)}" if not latency_ok
        else f"the smallest memory any plan needs is {_mb(least_memory)}"
    )
    raise InfeasibleError(f"no plan meets {' within '.join(asked)}: {fastest}; {smallest}")


class Checker:
    """`meets(problem, choices)`, answered faster and identically: chunk
    costs are cached by (chunk, members) (`sticc.ir.simulate.chunk_work` computes them, so every float
    is the simulator's), and the simulator's event loop runs without recording events and stops
    once it passes the target (`sticc.ir.simulate.latency_of`). The tests
    check it against the simulator on random plans."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        self.cache: dict[tuple[int, tuple[tuple[int, bool], ...]], ChunkWork] = {}
        self.others = [Checker(phase) for phase in problem.also]  # a decoder's prefill

    def work(self, choices: Choices) -> list[tuple[int, ChunkWork]]:
        """(chunk number, work) of every non-empty chunk, in load order (`sticc.ir.simulate.plan_work`)."""
        out = []
        graph = self.problem.graph
        for c, chunk in enumerate(graph.chunks):
            members = graph.chunk_members(chunk, choices)
            if not members:
                continue
            # a chunk's work depends on its members' (bits, preload) only
            key = (c, tuple((m.bits, m.preload) for m in members))
            w = self.cache.get(key)
            if w is None:
                w = chunk_work(self.problem, chunk, members)
                self.cache[key] = w
            out.append((c, w))
        return out

    def feasible(self, choices: Choices) -> bool:
        """Whether `choices` meets the targets of this problem's phase and of every other phase."""
        problem = self.problem
        numbered = self.work(choices)
        work = [w for _, w in numbered]
        admit = admit_for(problem, work)
        if admit is None:
            return False
        if problem.latency_s is not None:
            limit = problem.latency_s * (1 + 1e-9)
            if latency_of(problem, work, admit, limit) > limit:
                return False
        return all(other.feasible(choices) for other in self.others)
