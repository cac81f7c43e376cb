"""Planning for targets: profiles -> lowering -> solvers -> a Plan with predictions and findings.

`compile` calls `plan_for_targets` when a latency or memory target is given. The greedy plan is
always computed: it is CP-SAT's hint and the report's baseline. Predictions come from the
simulator (sticc/ir/simulate.py), never from a solver's own bookkeeping.

A deadline should hold in most calls, not half of them: the solvers plan with every duration at
the device's `PLANNED_PERCENTILE`th percentile of calls (`DeviceProfile.quantile_factor`), and
plan.json reports both that latency (`predicted.planned_latency_s`) and the median
(`predicted.latency_s`).
"""

from __future__ import annotations

from dataclasses import replace

from solvers.base import Solution, budget_bytes
from solvers.cpsat import cpsat_solve
from solvers.greedy import greedy_solve
from sticc.ir.graph import by_position
from sticc.ir.lower import Problem, lower
from sticc.ir.plan import (
    ComparisonRecord,
    DeviceRecord,
    Findings,
    ImportanceRecord,
    MemoryRecord,
    Plan,
    Predicted,
    RuntimeSettings,
    SolutionSummary,
    TimelineRecord,
    make_plan,
)
from sticc.ir.simulate import Simulation, simulate
from sticc.model.store import Store
from sticc.profile.device import DeviceProfile
from sticc.profile.importance import ImportanceProfile

SOLVERS = ("cpsat", "greedy")
PLANNED_PERCENTILE = 90


def solve(problem: Problem, solver: str, time_limit_s: float, seed: int = 0) -> tuple[Solution, Solution]:
    """(the chosen solver's solution, the greedy solution); both solvers raise InfeasibleError
    through `solvers.base.check_reachable` when no plan meets the targets."""
    greedy = greedy_solve(problem)
    if solver == "greedy":
        return greedy, greedy

    return cpsat_solve(problem, time_limit_s=time_limit_s, seed=seed, hint=greedy.choices), greedy


def _summary(median: Problem, solution: Solution, planned: Problem) -> SolutionSummary:
    """A solution's objective and predictions, for the report's comparison."""
    choices = solution.choices
    budget = budget_bytes(planned, choices)
    kept = [c for c in choices.values() if c.bits]
    predicted = predicted_from(median, choices, simulate(median, choices, budget), simulate(planned, choices, budget))
    return SolutionSummary(
        objective=planned.objective(choices),
        status=solution.info.status,
        predicted=predicted,
        kept=len(kept),
        mean_bits=sum(c.bits for c in kept) / len(kept) if kept else 0.0,
    )


def predicted_from(problem: Problem, choices, simulation: Simulation, planned: Simulation | None = None) -> Predicted:
    """What a plan is predicted to do: `simulation` on the median problem, `planned` (optional) on
    the problem at its planned percentile."""
    preload = sum(
        problem.graph.part_costs[part].slot_nbytes[c.bits] for c in choices.values() if c.preload for part in problem.graph.part_costs
    )
    return Predicted(
        latency_s=simulation.latency_s,
        peak_weight_bytes=simulation.peak_weight_bytes,
        preload_bytes=preload,
        io_bytes=simulation.io_nbytes,
        fidelity_loss=problem.fidelity_loss(choices),
        planned_latency_s=None if planned is None else planned.latency_s,
        planned_percentile=None if planned is None else PLANNED_PERCENTILE,
    )


def finish_plan(
    store: Store, problem: Problem, plan: Plan, device: DeviceProfile, importance: ImportanceProfile | None,
    comparison: ComparisonRecord | None = None, at_percentile: Problem | None = None,
) -> Plan:
    """`plan` with the simulator's predictions (median and planned percentile), the device's
    runtime settings and the findings; `problem` is the median problem, `at_percentile` the one at
    the planned percentile (lowered here when not given)."""
    choices = by_position(plan.shards)
    simulation = simulate(problem, choices, plan.memory_budget_bytes)
    at_percentile = at_percentile or _at_percentile(store, problem, device, importance)
    planned = simulate(at_percentile, choices, plan.memory_budget_bytes)
    predicted = predicted_from(problem, choices, simulation, planned)
    if importance is None:
        predicted = replace(predicted, fidelity_loss=None)
    findings = Findings(
        memory=MemoryRecord(
            pinned_bytes=simulation.pinned_nbytes,
            scratch_bytes=simulation.scratch_nbytes,
            ring_bytes=simulation.admit_nbytes + simulation.slack_nbytes,
            admit_bytes=simulation.admit_nbytes,
            full_precision_bytes=store.spec.fp32_weight_nbytes,
        ),
        timeline=TimelineRecord(list(simulation.events), simulation.compute_stall_s, simulation.ring_wait_s),
        comparison=comparison or ComparisonRecord(),
        device=DeviceRecord(
            device=device.device,
            read_bandwidth_Bps=device.read_bandwidth_Bps,
            emulated_bandwidth_Bps=device.emulated_bandwidth_Bps,
            compute_threads=device.compute_threads,
            quantile_factor=device.quantile_factor(PLANNED_PERCENTILE),
        ),
        importance=None if importance is None else ImportanceRecord(importance.metric, importance.additivity),
    )
    runtime = RuntimeSettings(device.emulated_bandwidth_Bps, device.compute_threads)
    return replace(plan, predicted=predicted, runtime=runtime, findings=findings)


def _at_percentile(store: Store, problem: Problem, device: DeviceProfile, importance: ImportanceProfile | None) -> Problem:
    return lower(
        store, device, importance or ImportanceProfile.flat(store), problem.seq_len, problem.latency_s,
        problem.memory_bytes, problem.shards_per_chunk, PLANNED_PERCENTILE,
    )


def plan_for_targets(
    store: Store,
    device: DeviceProfile,
    importance: ImportanceProfile,
    seq_len: int,
    latency_s: float | None,
    memory_bytes: int | None,
    solver: str = "cpsat",
    time_limit_s: float = 10.0,
    shards_per_chunk: int | None = None,
) -> tuple[Plan, Problem]:
    """The plan of `solver` for the targets, solved at the planned percentile; (plan, the problem
    it was solved on)."""
    problem = lower(store, device, importance, seq_len, latency_s, memory_bytes, shards_per_chunk, PLANNED_PERCENTILE)
    chosen, greedy = solve(problem, solver, time_limit_s)
    budget = budget_bytes(problem, chosen.choices)
    plan = make_plan(
        store, tuple(chosen.choices.values()), chosen.info, seq_len=seq_len, memory_bytes=budget,
        latency_s=latency_s, shards_per_chunk=problem.shards_per_chunk,
    )
    plan = replace(plan, targets=replace(plan.targets, memory_bytes=memory_bytes))
    median = lower(store, device, importance, seq_len, latency_s, memory_bytes, problem.shards_per_chunk)
    comparison = ComparisonRecord(None if solver == "greedy" else _summary(median, greedy, problem))
    return finish_plan(store, median, plan, device, importance, comparison, problem), problem


def predict_given_plan(store: Store, plan: Plan, device: DeviceProfile, importance: ImportanceProfile | None) -> Plan:
    """Predictions for a uniform or hand-written plan on a device (and fidelity, given importance)."""
    losses = importance or ImportanceProfile.flat(store)
    problem = lower(
        store, device, losses, plan.targets.seq_len, plan.targets.latency_s, plan.memory_budget_bytes, plan.shards_per_chunk,
    )
    return finish_plan(store, problem, plan, device, importance)
