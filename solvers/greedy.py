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
recording events and stopping once past the latency target (`_Checker`): 5-7x faster on BERT-large
shapes, the same plan (`fast=False` runs the full simulator for every check).
"""

from __future__ import annotations

import time

from solvers.base import Choices, Solution, admit_for, check_reachable, evaluate, is_feasible, solution
from sticc.lower import Problem
from sticc.plan import ShardChoice, SolverInfo, member_order
from sticc.schema import PARTS
from sticc.simulate import ChunkWork, chunk_work, latency_of


def _compute_only_s(problem: Problem, kept: int) -> float:
    """Latency with IO free: embedding, every chunk of `kept` shards per layer, every join."""
    total = problem.embed_s
    spc = problem.shards_per_chunk
    for part in PARTS:
        costs = problem.parts[part]
        full, rest = divmod(kept, spc)
        per_layer = full * costs.compute_s[spc] + (costs.compute_s[rest] if rest else 0.0) + costs.join_s
        total += problem.layers * per_layer
    return total


class _Checker:
    """`is_feasible(problem, evaluate(problem, choices))`, answered faster and identically: chunk
    costs are cached by (slot, members) (`sticc.simulate.chunk_work` computes them, so every float
    is the simulator's), and the simulator's event loop runs without recording events and stops
    once it passes the target (`sticc.simulate.latency_of`). The tests
    check it against the simulator on random plans."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        self.cache: dict[tuple[int, tuple[tuple[int, bool], ...]], ChunkWork] = {}

    def work(self, choices: Choices) -> list[tuple[int, ChunkWork]]:
        """(slot number, work) of every non-empty chunk, in load order (`sticc.simulate.plan_work`)."""
        out = []
        for c, slot in enumerate(self.problem.slots):
            members = [choices[(slot.layer, i)] for i in slot.indices]
            kept = sorted((m.bits, m.preload) for m in members if m.bits)
            if not kept:
                continue
            # a slot's work depends on its members' (bits, preload) only
            key = (c, tuple(kept))
            w = self.cache.get(key)
            if w is None:
                w = chunk_work(self.problem, slot, member_order([m for m in members if m.bits]))
                self.cache[key] = w
            out.append((c, w))
        return out

    def feasible(self, choices: Choices) -> bool:
        problem = self.problem
        numbered = self.work(choices)
        work = [w for _, w in numbered]
        admit = admit_for(problem, work)
        if admit is None:
            return False
        if problem.latency_s is None:
            return True
        limit = problem.latency_s * (1 + 1e-9)
        return latency_of(problem, work, admit, limit) <= limit


def _feasible(problem: Problem, choices: Choices, checker: _Checker | None = None) -> bool:
    if checker is None:
        return is_feasible(problem, evaluate(problem, choices))
    return checker.feasible(choices)


def _submodel(problem: Problem, kept: int, bits: int) -> Choices:
    """`kept` most important shards of every layer at `bits`, the rest dropped."""
    choices = {}
    for layer in range(problem.layers):
        ranked = sorted(range(problem.shards_per_layer), key=lambda i: (-problem.loss[(layer, i)][0], i))
        keep = set(ranked[:kept])
        for index in range(problem.shards_per_layer):
            choices[(layer, index)] = ShardChoice(layer, index, bits if index in keep else 0)
    return choices


def _upgrade(problem: Problem, choices: Choices, checker: _Checker | None = None) -> Choices:
    """Most important shards first: each takes its most important version that keeps the plan feasible."""
    choices = dict(choices)
    order = sorted(choices, key=lambda p: (-problem.loss[p][0], p))
    for position in order:
        current = choices[position]
        if not current.bits:
            continue
        better = sorted(
            (b for b in problem.bits if problem.loss[position][b] < problem.loss[position][current.bits]),
            key=lambda b: (problem.loss[position][b], b),
        )
        for bits in better:
            trial = dict(choices)
            trial[position] = ShardChoice(position[0], position[1], bits, current.preload)
            if _feasible(problem, trial, checker):
                choices = trial
                break
    return choices


def _preload(problem: Problem, choices: Choices, checker: _Checker | None = None) -> Choices:
    """Preload kept shards in load order while the plan stays feasible."""
    choices = dict(choices)
    for position in sorted(choices):
        current = choices[position]
        if not current.bits or current.preload:
            continue
        trial = dict(choices)
        trial[position] = ShardChoice(position[0], position[1], current.bits, True)
        if not _feasible(problem, trial, checker):
            break
        choices = trial
    return choices


def greedy_solve(problem: Problem, fast: bool = True) -> Solution:
    """STI's greedy plan. `fast` answers the feasibility checks with `_Checker` (the same answers
    as the simulator, several times faster); `fast=False` runs the simulator for every check."""
    start_s = time.perf_counter()
    check_reachable(problem)
    checker = _Checker(problem) if fast else None
    kept = problem.shards_per_layer
    if problem.latency_s is not None:
        while kept > 0 and _compute_only_s(problem, kept) > problem.latency_s:
            kept -= 1
    choices = None
    while choices is None and kept > 0:
        for bits in sorted(problem.bits, reverse=True):
            trial = _submodel(problem, kept, bits)
            if _feasible(problem, trial, checker):
                choices = trial
                break
        else:
            kept -= 1
    if choices is None:
        choices = _submodel(problem, 0, min(problem.bits))  # every shard dropped: reachable, checked above
    choices = _upgrade(problem, choices, checker)
    choices = _upgrade(problem, _preload(problem, choices, checker), checker)
    info = SolverInfo("greedy", "FEASIBLE", problem.objective(choices), None, None, time.perf_counter() - start_s)
    return solution(problem, choices, info)
