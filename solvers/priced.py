"""Priced rounding: CP-SAT's starting plans, one per scratch tier (a Lagrangian heuristic).

The problem is close to a multiple-choice knapsack: every shard takes one version (dropped, or a
bitwidth), each worth its importance and costing time on the two lanes. Pricing time at `price`
importance per second, a rounding gives every shard the version of highest `importance - price *
(IO + share * dequantization)` and keeps each group's best members up to the tier's cap; a
uniform rounding gives each group one bitwidth and a member count, its fixed costs (IO overhead,
dequantization calls, the kernel) priced too, optionally one bitwidth for the whole model. The
simulator (`solvers.base.Checker`) decides feasibility; a bisection on the price finds the
cheapest feasible price for each rounding and `share` of the compute lane's time (0: the IO lane
binds, 1: the lanes serialize, as they do when the ring holds one chunk). The best plan then takes
upgrades, most important shards first, and dropped shards come back where the plan stays
feasible (`improve`).

Measured (docs/solver.md): on `examples/bench_solver.py`'s BERT-base instances 0.29-0.69 where the
greedy planner finds 0.11-0.48; MiniLM at 4 MB, 32 tokens, 12-30 ms: 0.57-1.12 against 0.15-0.95.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass

import numpy as np

from solvers.base import Checker, Choices
from solvers.tiers import ScratchTier, group_costs, groups
from sticc.ir.graph import ShardChoice
from sticc.ir.lower import Problem

SHARES = (0.0, 0.25, 0.5, 0.75, 1.0)  # of the dequantization time priced with the IO time
BISECTION_STEPS = 10  # prices within 1% of the feasible boundary (PRICE_RANGE ** (1 / 2 ** 10))
PRICE_RANGE = 1e4  # the bisection spans prices from the highest useful one down by this factor


class Pricing:
    """Per shard and bitwidth: importance, IO seconds and dequantization seconds (both chunks)."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        self.groups = groups(problem)
        self.bits = np.array(problem.bits)
        io: dict[tuple[int, int], np.ndarray] = {}
        decode: dict[tuple[int, int], np.ndarray] = {}
        for chunk in problem.graph.chunks:
            costs = problem.graph.costs(chunk)
            for i in chunk.indices:
                p = (chunk.layer, i)
                io[p] = io.get(p, 0.0) + np.array([costs.read_s[b] + costs.check_s[b] for b in problem.bits])
                decode[p] = decode.get(p, 0.0) + np.array([costs.decode_piece_s[b] for b in problem.bits])
        # rows: every group's members in group order
        self.positions = [(layer, i) for layer, indices in self.groups for i in indices]
        self.value = np.array([[problem.importance(layer, i, b) for b in problem.bits] for layer, i in self.positions])
        self.io_s = np.array([io[p] for p in self.positions])
        self.decode_s = np.array([decode[p] for p in self.positions])
        self.droppable = np.array([problem.droppable(p) for p in self.positions])
        self.group_rows = []
        row = 0
        for _, indices in self.groups:
            self.group_rows.append(np.arange(row, row + len(indices)))
            row += len(indices)
        # groups of one size in arrays [group, member, bitwidth], for the uniform rounding: members
        # by value at each bitwidth (forced ones first) and the value of the best n; per group what
        # does not scale with its members: the IO overhead per chunk loaded, a dequantization call
        # per chunk and bitwidth, the kernel by members kept (both chunks)
        lanes = problem.lanes
        chunks = group_costs(problem)
        self.sizes: list[_SameSize] = []
        for size in sorted({len(rows) for rows in self.group_rows}):
            which = np.array([g for g, rows in enumerate(self.group_rows) if len(rows) == size])
            rows = np.stack([self.group_rows[g] for g in which])
            forced = ~self.droppable[rows]
            value = self.value[rows]
            order = np.argsort(-(value + np.where(forced, 1e9, 0.0)[:, :, None]), axis=1, kind="stable")
            keys = [self.groups[g] for g in which]
            self.sizes.append(_SameSize(
                which=which, rows=rows, forced=forced.sum(axis=1), order=order,
                kept_value=np.cumsum(np.take_along_axis(value, order, axis=1), axis=1),
                per_member_io_s=self.io_s[rows[:, 0]], per_member_decode_s=self.decode_s[rows[:, 0]],
                fixed_io_s=np.array([lanes.io_chunk_overhead_s * len(chunks[k]) for k in keys]),
                call_s=np.array([[sum(c.decode_call_s[b] for c in chunks[k]) for b in problem.bits] for k in keys]),
                kernel_s=np.array([[sum(lanes.chunk_overhead_s + c.compute_s[n] for c in chunks[k]) for n in range(1, size + 1)] for k in keys]),
            ))

    def top_price(self, share: float) -> float:
        """A price at which no version of any droppable shard is worth its time."""
        cost = self.io_s + share * self.decode_s
        return float(np.max(self.value / np.maximum(cost, 1e-12))) * 2 + 1e-12

    def rounded(self, tier: ScratchTier, price: float, share: float, uniform: bool, only: int | None = None) -> Choices:
        """Every shard at its version of highest reduced value, each group's best members up to
        its cap; `uniform`: every group at one bitwidth, its count and bitwidth chosen with the
        group's fixed costs (IO overhead, dequantization calls, the kernel) priced too (`only`:
        that bitwidth for every group)."""
        if uniform:
            return self._rounded_uniform(tier, price, share, only)
        reduced = self.value - price * (self.io_s + share * self.decode_s)
        best = np.argmax(reduced, axis=1)
        gain = reduced[np.arange(len(best)), best]
        keep = np.zeros(len(best), dtype=bool)
        for rows, cap in zip(self.group_rows, tier.caps, strict=True):
            forced = rows[~self.droppable[rows]]
            keep[forced] = True
            free = rows[self.droppable[rows]]
            take = free[np.argsort(-gain[free], kind="stable")][: max(0, cap - len(forced))]
            keep[take[gain[take] > 0]] = True
        return {
            p: ShardChoice(p[0], p[1], int(self.bits[best[r]]) if keep[r] else 0) for r, p in enumerate(self.positions)
        }

    def _rounded_uniform(self, tier: ScratchTier, price: float, share: float, only: int | None) -> Choices:
        bits = np.zeros(len(self.positions), dtype=int)
        caps = np.array(tier.caps)
        for same in self.sizes:
            size = same.rows.shape[1]
            n = np.arange(1, size + 1)
            cost = (
                n[None, :, None] * (same.per_member_io_s + share * same.per_member_decode_s)[:, None, :]
                + same.fixed_io_s[:, None, None] + share * (same.call_s[:, None, :] + same.kernel_s[:, :, None])
            )
            gain = same.kept_value - price * cost  # [group, n - 1, bitwidth]
            cap = caps[same.which]
            allowed = (n[None, :] <= cap[:, None]) & (n[None, :] >= np.maximum(same.forced, 1)[:, None])
            gain = np.where(allowed[:, :, None], gain, -np.inf)
            if only is not None:
                gain[:, :, self.bits != only] = -np.inf
            flat = gain.reshape(len(same.which), -1).argmax(axis=1)
            n_best, b_best = np.unravel_index(flat, gain.shape[1:])
            for g in range(len(same.which)):
                if cap[g] < same.forced[g] or not (gain[g, n_best[g], b_best[g]] > 0 or same.forced[g]):
                    continue  # a group the tier allows only pinned in place is left to the search
                chosen = same.order[g, : n_best[g] + 1, b_best[g]]
                bits[same.rows[g, chosen]] = self.bits[b_best[g]]
        return {p: ShardChoice(p[0], p[1], int(bits[r])) for r, p in enumerate(self.positions)}


@dataclass(frozen=True)
class _SameSize:
    """The groups of one size, as arrays (`Pricing`)."""

    which: np.ndarray  # group numbers
    rows: np.ndarray  # [group, member]: rows of `Pricing.value`
    forced: np.ndarray  # members that may not be dropped, per group
    order: np.ndarray  # [group, rank, bitwidth]: members by value at that bitwidth, forced ones first
    kept_value: np.ndarray  # [group, n - 1, bitwidth]: the value of the first n in that order
    per_member_io_s: np.ndarray  # [group, bitwidth]
    per_member_decode_s: np.ndarray  # [group, bitwidth]
    fixed_io_s: np.ndarray  # [group]
    call_s: np.ndarray  # [group, bitwidth]
    kernel_s: np.ndarray  # [group, n - 1]


def priced_rounding(problem: Problem, tier: ScratchTier, pricing: Pricing, checker: Checker, deadline_s: float) -> Choices | None:
    """The best feasible plan of the tier that priced rounding finds (None: no feasible rounding
    before `deadline_s`)."""
    best: Choices | None = None
    modes = [(uniform, share, None) for uniform, share in itertools.product((False, True), SHARES)]
    modes += [(True, 1.0, bits) for bits in problem.bits]  # one bitwidth everywhere, lanes serialized
    for uniform, share, only in modes:
        high = pricing.top_price(share)
        low = high / PRICE_RANGE
        for _ in range(BISECTION_STEPS):
            if time.perf_counter() > deadline_s:
                return best
            price = math.sqrt(low * high)
            choices = pricing.rounded(tier, price, share, uniform, only)
            if checker.feasible(choices):
                high = price
                if best is None or problem.objective(choices) > problem.objective(best):
                    best = choices
            else:
                low = price
    return best


def improve(problem: Problem, tier: ScratchTier, checker: Checker, choices: Choices, deadline_s: float) -> Choices:
    """Kept shards, most important first, take their most important version that keeps the plan
    feasible; then dropped shards come back the same way where their group is under its cap.
    Stops at `deadline_s` with what it has."""
    choices = dict(choices)
    cap = {}
    for (layer, indices), n in zip(groups(problem), tier.caps, strict=True):
        for i in indices:
            cap[(layer, i)] = ((layer, indices), n)
    kept = {}
    for p, c in choices.items():
        kept[cap[p][0]] = kept.get(cap[p][0], 0) + bool(c.bits)
    for adding in (False, True):
        for position in sorted(choices, key=lambda p: (-problem.graph.loss(p)[0], p)):
            if time.perf_counter() > deadline_s:
                return choices
            current = choices[position]
            if bool(current.bits) == adding:
                continue
            group, most = cap[position]
            if adding and kept[group] >= most:
                continue
            losses = problem.graph.loss(position)
            for bits in sorted((b for b in problem.bits if losses[b] < losses[current.bits]), key=lambda b: (losses[b], -b)):
                trial = dict(choices)
                trial[position] = ShardChoice(position[0], position[1], bits, current.preload)
                if checker.feasible(trial):
                    choices = trial
                    kept[group] += adding
                    break
    return choices
