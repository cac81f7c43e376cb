"""Scratch tiers: the plan space cut by the size of the plan's scratch.

A plan's scratch is the largest of the embedding rows and every chunk it dequantizes (each chunk
not pinned in place, `sticc.ir.memory`), so it takes one of a few values: the embedding rows, or
some part's chunk of n members decoded. Fixing it turns the memory's one `max` term into a
constant and caps the members every group may keep (unless the group is pinned in place): a
group keeps at most n members when each of its chunks, decoded at n members, fits the scratch.

Every plan lies in the tier of its own scratch, so the best plan is the best over the tiers, and
the largest of the tiers' bounds bounds every plan. The LP relaxation of one tier is far tighter
than that of the whole problem: it can no longer average chunk sizes against one scratch
(docs/solver.md has the figures).
"""

from __future__ import annotations

from dataclasses import dataclass

from solvers.base import Choices
from sticc.ir.graph import PartCosts
from sticc.ir.lower import Problem
from sticc.ir.simulate import memory_of, plan_work

GroupKey = tuple[int, tuple[int, ...]]  # (layer, member indices): the members of one attn and one ffn chunk


@dataclass(frozen=True)
class ScratchTier:
    """Plans whose scratch is `scratch_nbytes`: each group keeps at most its cap of members
    unless pinned in place."""

    scratch_nbytes: int
    caps: tuple[int, ...]  # per group, in `groups(problem)` order


def groups(problem: Problem) -> tuple[GroupKey, ...]:
    """Every group once, in load order."""
    return tuple(group_costs(problem))


def group_costs(problem: Problem) -> dict[GroupKey, list[PartCosts]]:
    """Every group (in load order) with the costs of its chunks (its attn chunk's, its ffn chunk's)."""
    out: dict[GroupKey, list[PartCosts]] = {}
    for chunk in problem.graph.chunks:
        out.setdefault((chunk.layer, chunk.indices), []).append(problem.graph.costs(chunk))
    return out


def scratch_tiers(problem: Problem) -> list[ScratchTier]:
    """The tiers a plan of `problem` can lie in, by increasing scratch. A tier whose scratch and
    headers alone exceed the memory target is left out, and so is one with the caps of a smaller
    tier (no plan's scratch is its value: every chunk it allows fits the smaller scratch)."""
    graph = problem.graph
    least = graph.embed.scratch_nbytes
    decoded = {key: [c.decoded_nbytes for c in costs] for key, costs in group_costs(problem).items()}
    values = {least} | {n for tables in decoded.values() for table in tables for n in table if n > least}
    tiers: list[ScratchTier] = []
    for scratch in sorted(values):
        if problem.memory_bytes is not None and graph.header_nbytes + scratch > problem.memory_bytes:
            break
        caps = tuple(
            max(n for n in range(len(key[1]) + 1) if all(table[n] <= scratch for table in tables)) for key, tables in decoded.items()
        )
        if tiers and caps == tiers[-1].caps:
            continue
        tiers.append(ScratchTier(scratch, caps))
    return tiers


def scratch_of(problem: Problem, choices: Choices) -> int:
    """The scratch bytes of a plan, as the simulator counts them."""
    return memory_of(problem, plan_work(problem, choices))[1]


def tier_of(problem: Problem, tiers: list[ScratchTier], choices: Choices) -> int:
    """The index in `tiers` (`scratch_tiers(problem)`) of the tier a plan that fits the memory
    target lies in."""
    scratch = scratch_of(problem, choices)
    return next(t for t, tier in enumerate(tiers) if tier.scratch_nbytes == scratch)


def capacity_bound(problem: Problem, tier: ScratchTier) -> float:
    """An upper bound of the importance of any plan in the tier, from its caps and memory alone:
    every group keeps its best members up to its cap at their best versions, and the memory left
    beside the headers and the scratch pins further members in place (fp32, a chunk decoded
    each), as many as the cheapest such member allows, the most important first. Tiers whose
    bound is below a plan already found need no search."""
    per_member, members = [], []
    top = 0.0
    for ((layer, indices), costs), cap in zip(group_costs(problem).items(), tier.caps, strict=True):
        best = sorted((max(problem.importance(layer, i, b) for b in problem.bits) for i in indices), reverse=True)
        top += sum(best[:cap])
        members += best[cap:]
        per_member.append(min(sum(c.decoded_nbytes[n] for c in costs) / n for n in range(1, len(indices) + 1)))
    if problem.memory_bytes is None:
        return top + sum(members)
    left = problem.memory_bytes - problem.graph.header_nbytes - tier.scratch_nbytes
    extra = int(left // min(per_member)) if per_member and min(per_member) > 0 else len(members)
    return top + sum(sorted(members, reverse=True)[:extra])
