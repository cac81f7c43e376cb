"""Elastic runners: several plans for several latency targets in one runner, sharing one preload set.

`sticc compile --latency 20ms,40ms,80ms` plans one encoder plan per target. The plans share the
runner's pinned region (headers and the preload set, the same shards at the same bits) and its pool
budget; each call runs the most faithful plan predicted to meet its deadline
(`sticc.runtime.elastic`).

The shared preload set is chosen by a decomposition, argued here and measured in
docs/elastic.md:
1. The tightest target is solved alone, with the whole budget: its preload set is the one that
   matters most, since preloading is what lets a short call hide its IO; a looser plan can stream
   what the tight one preloads.
2. Every looser target is solved with that preload set fixed (`solvers.cpsat.PlanModel.share_preload`,
   `solvers.greedy.greedy_follow`). The tight plan itself is feasible for every looser target
   (the same pool, a later deadline), so each looser plan is at least as faithful as the tighter
   ones: more time never buys a worse plan.
The price is what a looser plan would gain from a preload set of its own; the report gives every
plan's objective and bound, and docs/elastic.md compares them with independent solves.

Each plan keeps its own split of the pool below the pinned region (ring admission and scratch), so
each call runs exactly as its plan was simulated; the pool is as large as the largest plan's.
"""

from __future__ import annotations

from sticc.base.errors import UserError
from sticc.compile.planner import plan_for_targets
from sticc.ir.graph import by_position
from sticc.ir.plan import Plan
from sticc.model.store import Store
from sticc.profile.device import DeviceProfile
from sticc.profile.importance import ImportanceProfile


def preload_set(plan: Plan) -> dict[tuple[int, int], int]:
    """{(layer, index): bits} of a plan's preloaded shards."""
    return {(c.layer, c.index): c.bits for c in plan.shards if c.preload}


def plan_elastic(
    store: Store,
    device: DeviceProfile,
    importance: ImportanceProfile,
    seq_len: int,
    latencies_s: list[float],
    memory_bytes: int | None,
    solver: str = "cpsat",
    time_limit_s: float = 10.0,
    shards_per_chunk: int | None = None,
    progress=None,
) -> tuple[Plan, ...]:
    """One plan per latency target sharing the tightest plan's preload set, most faithful
    (loosest target) first. `progress(done, total)`, if given, is called after each solve."""
    if store.spec.is_decoder:
        raise UserError(f"several latency targets make an elastic encoder runner; {store.spec.name} is a decoder: give one --token-latency")
    targets = sorted(latencies_s)
    if len(set(targets)) != len(targets):
        raise UserError("--latency lists a target twice")
    leader, _ = plan_for_targets(store, device, importance, seq_len, targets[0], memory_bytes, solver, time_limit_s, shards_per_chunk)
    shared = by_position(leader.shards)
    plans = [leader]
    if progress is not None:
        progress(1, len(targets))
    for n, latency_s in enumerate(targets[1:], start=2):
        plan, _ = plan_for_targets(
            store, device, importance, seq_len, latency_s, memory_bytes, solver, time_limit_s, leader.shards_per_chunk,
            shared_preload=shared,
        )
        if preload_set(plan) != preload_set(leader):
            raise AssertionError(f"the {latency_s * 1e3:g} ms plan does not keep the shared preload set")
        plans.append(plan)
        if progress is not None:
            progress(n, len(targets))
    return tuple(reversed(plans))

