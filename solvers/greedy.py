"""STI's greedy planner: the baseline every CP-SAT plan is compared with, and CP-SAT's hint.

Following STI (Guo, Choe, Lin, ASPLOS 2023), in four passes, each checked with the simulator:
1. the largest submodel whose compute fits: the same number of shards kept per layer, the most
   important ones (by what dropping them loses), as many as the latency target allows with IO free;
2. the highest uniform bitwidth whose IO the pipeline hides (the accumulated IO budget stays
   non-negative): the first bitwidth, from the top, whose plan is feasible; with none, one shard
   fewer per layer and again;
3. upgrades: the most important shards, in turn, take the most important version that still fits;
4. preload: with memory left, the first shards in load order are preloaded while the plan stays
   feasible, then the upgrade pass runs once more on what that freed.

The checks give the simulator's answers but run its event loop on cached chunk costs, without
recording events and stopping once past the latency target (`Checker`): 5-7x faster on BERT-large
shapes, the same plan (`fast=False` runs the full simulator for every check).
"""

from __future__ import annotations

import math
import time

from solvers.base import Checker, Choices, Solution, check_reachable, dropped_all, meets, solution
from sticc.base.errors import InfeasibleError
from sticc.ir.graph import JoinNode, ShardChoice
from sticc.ir.lower import Problem
from sticc.ir.plan import SolverInfo


def _compute_only_s(problem: Problem, choices: Choices) -> float:
    """The latency of `choices` with IO and dequantization free: the embedding, every non-empty
    chunk's kernel and every join, in the graph's steps (a lower bound of the simulated latency of
    this phase)."""
    graph = problem.graph
    total = graph.embed.duration_s
    for step in graph.steps:
        if isinstance(step, JoinNode):
            total += step.duration_s
        else:
            kept = sum(1 for i in step.indices if choices[(step.layer, i)].bits)
            total += graph.costs(step).compute_s[kept] if kept else 0.0
    return total


def _feasible(problem: Problem, choices: Choices, checker: Checker | None = None) -> bool:
    if checker is None:
        return meets(problem, choices)
    return checker.feasible(choices)


def _submodel(problem: Problem, kept: int, bits: int) -> Choices:
    """`kept` most important shards of every layer at `bits`, the rest dropped (a decoder's LM head
    slices, never dropped, all at `bits`)."""
    choices = {}
    for layer in range(problem.layers):
        ranked = sorted(range(problem.shards_per_layer), key=lambda i: (-problem.graph.loss((layer, i))[0], i))
        keep = set(ranked[:kept])
        for index in range(problem.shards_per_layer):
            choices[(layer, index)] = ShardChoice(layer, index, bits if index in keep else 0)
    for layer, index in problem.positions:
        if not problem.droppable((layer, index)):
            choices[(layer, index)] = ShardChoice(layer, index, bits)
    return choices


def _upgrade(problem: Problem, choices: Choices, checker: Checker | None = None, deadline_s: float = math.inf) -> Choices:
    """Most important shards first: each takes its most important version that keeps the plan
    feasible (until `deadline_s`)."""
    choices = dict(choices)
    order = sorted(choices, key=lambda p: (-problem.graph.loss(p)[0], p))
    for position in order:
        if time.perf_counter() > deadline_s:
            break
        current = choices[position]
        if not current.bits:
            continue
        better = sorted(
            (b for b in problem.bits if problem.graph.loss(position)[b] < problem.graph.loss(position)[current.bits]),
            key=lambda b: (problem.graph.loss(position)[b], b),
        )
        for bits in better:
            trial = dict(choices)
            trial[position] = ShardChoice(position[0], position[1], bits, current.preload)
            if _feasible(problem, trial, checker):
                choices = trial
                break
    return choices


def _preload(problem: Problem, choices: Choices, checker: Checker | None = None, deadline_s: float = math.inf) -> Choices:
    """Preload kept shards in load order while the plan stays feasible (until `deadline_s`)."""
    choices = dict(choices)
    for position in sorted(choices):
        if time.perf_counter() > deadline_s:
            break
        current = choices[position]
        if not current.bits or current.preload:
            continue
        trial = dict(choices)
        trial[position] = ShardChoice(position[0], position[1], current.bits, True)
        if not _feasible(problem, trial, checker):
            break
        choices = trial
    return choices


def greedy_solve(problem: Problem, fast: bool = True, time_limit_s: float = math.inf) -> Solution:
    """STI's greedy plan. `fast` answers the feasibility checks with `Checker` (the same answers
    as the simulator, several times faster); `fast=False` runs the simulator for every check.
    Past `time_limit_s` the passes stop where they are: every step keeps the plan feasible (the
    first feasible plan is the submodel found, or every shard dropped)."""
    start_s = time.perf_counter()
    deadline_s = start_s + time_limit_s
    check_reachable(problem)
    checker = Checker(problem) if fast else None
    kept = problem.shards_per_layer
    def too_slow(kept: int) -> bool:
        choices = _submodel(problem, kept, max(problem.bits))
        return any(p.latency_s is not None and _compute_only_s(p, choices) > p.latency_s for p in problem.phases)

    while kept > 0 and too_slow(kept):
        kept -= 1
    choices = None
    while choices is None and kept > 0 and time.perf_counter() <= deadline_s:
        for bits in sorted(problem.bits, reverse=True):
            trial = _submodel(problem, kept, bits)
            if _feasible(problem, trial, checker):
                choices = trial
                break
        else:
            kept -= 1
    if choices is None:
        choices = dropped_all(problem)  # reachable, checked above
    choices = _upgrade(problem, choices, checker, deadline_s)
    choices = _upgrade(problem, _preload(problem, choices, checker, deadline_s), checker, deadline_s)
    info = SolverInfo("greedy", "FEASIBLE", problem.objective(choices), None, None, time.perf_counter() - start_s)
    return solution(problem, choices, info)


def pinned_alike(problem: Problem, leader: Choices) -> frozenset[tuple[int, int]]:
    """The shards a plan sharing `leader`'s preload set may not change: the leader's preloaded
    ones, and the other members of every group the leader pins in place (a chunk whose kept
    members are all preloaded at 32 bits; adding a member would unpin it)."""
    frozen = {p for p, c in leader.items() if c.preload}
    for chunk in problem.graph.chunks:
        members = [leader[(chunk.layer, i)] for i in chunk.indices]
        kept = [c for c in members if c.bits]
        if kept and all(c.preload and c.bits == 32 for c in kept):
            frozen.update((chunk.layer, i) for i in chunk.indices)
    return frozenset(frozen)


def keeps_preload(problem: Problem, leader: Choices, choices: Choices) -> bool:
    """Whether `choices` shares `leader`'s preload set as `greedy_follow` and CP-SAT's
    `share_preload` make plans do: the same preloaded shards at the same bits, the leader's
    pinned-in-place groups kept alike, no other group pinned in place."""
    if {p: c for p, c in choices.items() if c.preload} != {p: c for p, c in leader.items() if c.preload}:
        return False
    frozen = pinned_alike(problem, leader)
    if any(choices[p] != leader[p] for p in frozen):
        return False
    for chunk in problem.graph.chunks:
        kept = [choices[(chunk.layer, i)] for i in chunk.indices if choices[(chunk.layer, i)].bits]
        in_place = kept and all(c.preload and c.bits == 32 for c in kept)
        if in_place and not all((chunk.layer, i) in frozen for i in chunk.indices):
            return False
    return True


def greedy_follow(problem: Problem, leader: Choices) -> Solution:
    """The greedy plan of another target that shares `leader`'s preload set (an elastic runner's
    plans). It starts from the leader's plan where that meets the targets (a looser target), else
    from the leader's preload set alone with every other shard dropped; then every shard it may
    change (`pinned_alike`), most important first, takes its most important version that keeps
    the plan feasible (dropped shards may come back). InfeasibleError when even the preload set
    alone misses the targets."""
    start_s = time.perf_counter()
    checker = Checker(problem)
    frozen = pinned_alike(problem, leader)
    choices = dict(leader)
    if not checker.feasible(choices):
        choices = {p: c if p in frozen else ShardChoice(p[0], p[1], 0) for p, c in leader.items()}
        if not checker.feasible(choices):
            raise InfeasibleError("the shared preload set alone misses this target")
    for position in sorted(choices, key=lambda p: (-problem.graph.loss(p)[0], p)):
        if position in frozen:
            continue
        losses = problem.graph.loss(position)
        current = choices[position]
        for bits in sorted((b for b in problem.bits if losses[b] < losses[current.bits]), key=lambda b: (losses[b], -b)):
            trial = dict(choices)
            trial[position] = ShardChoice(position[0], position[1], bits)
            if checker.feasible(trial):
                choices = trial
                break
    info = SolverInfo("greedy", "FEASIBLE", problem.objective(choices), None, None, time.perf_counter() - start_s)
    return solution(problem, choices, info)
