"""What every solver shares: the result type and the simulator-backed feasibility check.

A solver takes a lowered `sticc.lower.Problem` and returns a `Solution`: one `ShardChoice` per shard
(bits, 0 = dropped; preload flag), its summed importance, and the simulation of the plan on the
problem's device. A solution is feasible when the simulation fits the memory budget and finishes
within the latency target.
"""

from __future__ import annotations

from dataclasses import dataclass

from sticc.lower import Problem
from sticc.plan import ShardChoice, SolverInfo
from sticc.simulate import Simulation, memory_of, plan_work, simulate

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
    work = plan_work(problem, choices)
    pinned, staging = memory_of(problem, work)
    return pinned + staging + problem.embed_arena_nbytes + sum(w.arena_nbytes for w in work)


def evaluate(problem: Problem, choices: Choices) -> Simulation:
    return simulate(problem, choices, budget_bytes(problem, choices))


def is_feasible(problem: Problem, simulation: Simulation) -> bool:
    if not simulation.fits:
        return False
    return problem.latency_s is None or simulation.latency_s <= problem.latency_s * (1 + 1e-9)


def dropped_all(problem: Problem) -> Choices:
    return {(layer, index): ShardChoice(layer, index, 0) for layer, index in problem.positions}


def solution(problem: Problem, choices: Choices, info: SolverInfo) -> Solution:
    return Solution(dict(choices), info, problem.objective(choices), evaluate(problem, choices))
