"""Elastic runners: several plans for several latency targets in one runner, sharing one preload set.

`sticc compile --latency 20ms,40ms,80ms` plans one encoder plan per target. The plans share the
runner's pinned region (headers and the preload set: the same shards at the same bits, pinned
alike) and its pool budget; each call runs the most faithful plan predicted to meet its deadline
(`sticc.runtime.elastic`).

The shared preload set is chosen by a decomposition, measured in docs/elastic.md:
1. Every target is solved alone, at half the time limit: each plan's preload set is a candidate.
2. Each candidate is scored by the summed importance of every target's plan under it, each
   estimated by `solvers.greedy.greedy_follow` (the candidate's own plan for its own target); a
   candidate some target cannot meet under is out. The best candidate is the shared set.
3. Every target whose plan alone does not keep that set is solved again with it fixed
   (`solvers.cpsat.PlanModel.share_preload`), at half the time limit, hinted by greedy_follow.
4. More time never buys a less faithful plan: a looser target whose plan came out less faithful
   than a tighter one's takes the tighter one's shards (feasible: the same pool, a later deadline).
Preloading trades ring space for IO: the tightest target's set can starve a looser plan's
streaming (MiniLM at 4 MB: the 20 ms plan alone preloads 2.7 MB; under it the 80 ms plan loses
0.32 of fidelity it keeps with nothing preloaded), which is why every plan's set is a candidate.

Each plan keeps its own split of the pool below the pinned region (ring admission and scratch), so
each call runs exactly as its plan was simulated; the pool is as large as the largest plan's.
"""

from __future__ import annotations

from dataclasses import replace

from solvers.greedy import greedy_follow, keeps_preload
from sticc.base.errors import InfeasibleError, UserError
from sticc.compile.planner import PLANNED_PERCENTILE, lower_targets, plan_for_targets, predict_given_plan
from sticc.ir.graph import by_position
from sticc.ir.plan import Plan, SolverInfo, make_plan, settle_targets
from sticc.model.store import Store
from sticc.profile.device import DeviceProfile
from sticc.profile.importance import ImportanceProfile


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
    """One plan per latency target, all sharing one preload set, most faithful (loosest target)
    first (see the module's docstring). `time_limit_s` bounds each solve's time as for one plan:
    the elastic set solves every target twice at half of it, at most. `progress(done, total)`, if
    given, is called after each solve."""
    if store.spec.is_decoder:
        raise UserError(f"several latency targets make an elastic encoder runner; {store.spec.name} is a decoder: give one --token-latency")
    targets = sorted(latencies_s)
    if len(set(targets)) != len(targets):
        raise UserError("--latency lists a target twice")
    half_s = time_limit_s / 2
    total = 2 * len(targets)
    done = 0

    def solved() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    alone = []
    for latency_s in targets:
        plan, _ = plan_for_targets(store, device, importance, seq_len, latency_s, memory_bytes, solver, half_s, shards_per_chunk)
        alone.append(plan)
        solved()
    spc = alone[0].shards_per_chunk
    problems = [
        lower_targets(store, device, importance, settle_targets(store, seq_len, memory_bytes, t), spc, PLANNED_PERCENTILE)
        for t in targets
    ]
    leader = _best_preload(problems, [by_position(p.shards) for p in alone])
    plans = []
    for plan, problem, latency_s in zip(alone, problems, targets, strict=True):
        if not keeps_preload(problem, leader, by_position(plan.shards)):
            plan, _ = plan_for_targets(
                store, device, importance, seq_len, latency_s, memory_bytes, solver, half_s, spc, shared_preload=leader,
            )
        solved()
        if not keeps_preload(problem, leader, by_position(plan.shards)):
            raise AssertionError(f"the {latency_s * 1e3:g} ms plan does not keep the shared preload set")
        plans.append(plan)
    for n in range(1, len(plans)):
        tighter = plans[n - 1]
        if plans[n].predicted.fidelity_loss > tighter.predicted.fidelity_loss:
            plans[n] = _for_target(store, tighter, targets[n], device, importance)
    return tuple(reversed(plans))


def _for_target(store: Store, plan: Plan, latency_s: float, device: DeviceProfile, importance: ImportanceProfile) -> Plan:
    """`plan`'s shards (a tighter target's) as the plan of a looser target, with its predictions."""
    again = make_plan(
        store, plan.shards, SolverInfo("elastic", "TIGHTER_PLAN"), seq_len=plan.targets.seq_len, memory_bytes=plan.memory_budget_bytes,
        latency_s=latency_s, shards_per_chunk=plan.shards_per_chunk,
    )
    again = replace(again, targets=replace(again.targets, memory_bytes=plan.targets.memory_bytes))
    return predict_given_plan(store, again, device, importance)


def _best_preload(problems: list, candidates: list) -> dict:
    """Of the plans solved alone (`candidates`, one per target), the one whose preload set (and
    pinning) gives the most summed importance over every target, each target's plan under it
    estimated by `solvers.greedy.greedy_follow` (the candidate's own plan for its own target); a
    candidate some target cannot meet under is skipped (the tightest's never is: it is feasible
    for every looser target)."""
    best, best_score = None, -float("inf")
    for candidate in candidates:
        score = 0.0
        for problem, own in zip(problems, candidates, strict=True):
            if own is candidate:
                score += problem.objective(own)
                continue
            try:
                score += greedy_follow(problem, candidate).objective
            except InfeasibleError:
                score = -float("inf")
                break
        if score > best_score:
            best, best_score = candidate, score
    return best
