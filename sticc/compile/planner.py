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

import math
import time
from dataclasses import replace

from solvers.base import Choices, Solution, budget_bytes
from solvers.cpsat import cpsat_solve
from solvers.greedy import greedy_follow, greedy_solve
from sticc.base.schema import PARTS, Part
from sticc.ir.graph import Phase, by_position
from sticc.ir.lower import Problem, lower, lower_decoder
from sticc.ir.plan import (
    ComparisonRecord,
    DeviceRecord,
    Findings,
    ImportanceRecord,
    LengthRecord,
    MemoryRecord,
    Plan,
    Predicted,
    RuntimeSettings,
    ShedRecord,
    SolutionSummary,
    Targets,
    TimelineRecord,
    check_kv_budget,
    make_plan,
    settle_targets,
)
from sticc.ir.simulate import Simulation, chunk_work, memory_of, plan_work, simulate
from sticc.model.store import Store
from sticc.profile.device import DeviceProfile
from sticc.profile.importance import ImportanceProfile

SOLVERS = ("cpsat", "greedy")
PLANNED_PERCENTILE = 90


def solve(
    problem: Problem, solver: str, time_limit_s: float, seed: int = 0, shared_preload: Choices | None = None,
) -> tuple[Solution, Solution]:
    """(the chosen solver's solution, the greedy solution); both solvers raise InfeasibleError
    through `solvers.base.check_reachable` when no plan meets the targets. With `shared_preload` (a
    plan of a tighter target: `sticc.compile.elastic`) both keep its preload set."""
    start_s = time.perf_counter()
    if shared_preload is None:
        greedy = greedy_solve(problem, time_limit_s=time_limit_s if solver == "cpsat" else math.inf)
    else:
        greedy = greedy_follow(problem, shared_preload)
    if solver == "greedy":
        return greedy, greedy
    # the time limit covers both: CP-SAT gets what the greedy plan (its hint and floor) left
    left_s = max(0.0, time_limit_s - (time.perf_counter() - start_s))
    return cpsat_solve(problem, time_limit_s=left_s, seed=seed, hint=greedy.choices, shared_preload=shared_preload), greedy


def lower_targets(
    store: Store, device: DeviceProfile, importance: ImportanceProfile, targets: Targets, shards_per_chunk: int | None,
    percentile: int | None = None,
) -> Problem:
    """The problem of `targets`: an encoder's call, or a decoder's decode step and prefill
    (`sticc.ir.lower.lower_decoder`); `targets.memory_bytes` is the pool budget."""
    if store.spec.is_decoder:
        return lower_decoder(
            store, device, importance, targets.seq_len, targets.context, targets.latency_s, targets.first_token_s,
            targets.memory_bytes, shards_per_chunk, percentile,
        )
    return lower(store, device, importance, targets.seq_len, targets.latency_s, targets.memory_bytes, shards_per_chunk, percentile)


def simulate_phases(problem: Problem, choices, budget: int) -> list[Simulation]:
    """One simulated call per phase of `problem` (an encoder's call; a decoder's decode step, then its prefill)."""
    return [simulate(phase, choices, budget) for phase in problem.phases]


def _summary(median: Problem, solution: Solution, planned: Problem) -> SolutionSummary:
    """A solution's objective and predictions, for the report's comparison."""
    choices = solution.choices
    budget = budget_bytes(planned, choices)
    kept = [c for c in choices.values() if c.bits]
    predicted = predicted_from(median, choices, simulate_phases(median, choices, budget), simulate_phases(planned, choices, budget))
    return SolutionSummary(
        objective=planned.objective(choices),
        status=solution.info.status,
        predicted=predicted,
        kept=len(kept),
        mean_bits=sum(c.bits for c in kept) / len(kept) if kept else 0.0,
    )


def predicted_from(
    problem: Problem, choices, median: list[Simulation], at_percentile: list[Simulation] | None = None,
) -> Predicted:
    """What a plan is predicted to do: `median` simulates every phase of the median `problem`
    (`simulate_phases`), `at_percentile` (optional) of the problem at the planned percentile. A
    decoder's latency is its decode step's (at the context's last position), its first token the
    prefill's."""
    preload = sum(
        problem.graph.part_costs[part].slot_nbytes[c.bits] for c in choices.values() if c.preload for part in problem.graph.part_costs
        if (part is Part.LM_HEAD) == (c.layer == problem.layers)  # a layer shard's pieces, or an LM head slice
    )
    decoder = problem.graph.info.phase is Phase.DECODE
    first = median[0] if not decoder else median[1]  # the call whose bytes `io_bytes` counts: a decoder's prefill
    return Predicted(
        latency_s=median[0].latency_s,
        peak_weight_bytes=median[0].peak_weight_bytes,
        preload_bytes=preload,
        io_bytes=first.io_nbytes,
        fidelity_loss=problem.fidelity_loss(choices),
        planned_latency_s=None if at_percentile is None else at_percentile[0].latency_s,
        planned_percentile=None if at_percentile is None else PLANNED_PERCENTILE,
        io_bytes_per_token=median[0].io_nbytes if decoder else None,
        kv_cache_bytes=problem.graph.kv_cache_nbytes if decoder else None,
        first_token_s=median[1].latency_s if decoder else None,
        planned_first_token_s=at_percentile[1].latency_s if decoder and at_percentile is not None else None,
    )


def finish_plan(
    store: Store, problem: Problem, plan: Plan, device: DeviceProfile, importance: ImportanceProfile | None,
    comparison: ComparisonRecord | None = None, at_percentile: Problem | None = None,
) -> Plan:
    """`plan` with the simulator's predictions (median and planned percentile), the device's
    runtime settings and the findings; `problem` is the median problem, `at_percentile` the one at
    the planned percentile (lowered here when not given)."""
    choices = by_position(plan.shards)
    at_percentile = at_percentile or _at_percentile(store, plan, device, importance)
    median = simulate_phases(problem, choices, plan.memory_budget_bytes)
    predicted = predicted_from(problem, choices, median, simulate_phases(at_percentile, choices, plan.memory_budget_bytes))
    simulation, prefill = median[0], (median[1] if problem.also else None)
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
        prefill_timeline=None if prefill is None else TimelineRecord(list(prefill.events), prefill.compute_stall_s, prefill.ring_wait_s),
        by_length=() if problem.also else by_length(store, plan, device, importance, simulation),
        shed_order=() if problem.also else shed_order(problem, plan),
    )
    runtime = RuntimeSettings(device.emulated_bandwidth_Bps, device.compute_threads)
    return replace(plan, predicted=predicted, runtime=runtime, findings=findings)


def report_lengths(planned: int, longest: int) -> tuple[int, ...]:
    """The input lengths a report predicts: powers of two from 8 up to `longest` (what the runner
    truncates to), `longest` itself and the planned length."""
    powers = {1 << k for k in range(3, longest.bit_length()) if 1 << k < longest}
    return tuple(sorted(powers | {longest, planned}))


def by_length(
    store: Store, plan: Plan, device: DeviceProfile, importance: ImportanceProfile | None, planned: Simulation,
) -> tuple[LengthRecord, ...]:
    """The encoder plan's call simulated at `report_lengths`, median and at the planned percentile.
    The runner's pool is fixed at construction, so each length is simulated with the planned ring
    admission: the budget moves by the change of the scratch (the embedding rows grow with the
    input). A longer input's rows outgrow the scratch and take a counted temporary: its peak is the
    planned one plus that growth."""
    losses = importance or ImportanceProfile.flat(store)
    choices = by_position(plan.shards)
    budget = plan.memory_budget_bytes
    records = []
    for length in report_lengths(plan.targets.seq_len, store.text_tokens):
        targets = replace(plan.targets, seq_len=length, memory_bytes=budget, latency_s=None)
        median, tail = (lower_targets(store, device, losses, targets, plan.shards_per_chunk, p) for p in (None, PLANNED_PERCENTILE))
        growth = memory_of(median, plan_work(median, choices))[1] - planned.scratch_nbytes  # the scratch at this length
        calls = [simulate(problem, choices, budget + growth) for problem in (median, tail)]
        peak = planned.peak_weight_bytes + max(0, growth)
        records.append(LengthRecord(length, calls[0].latency_s, calls[1].latency_s, peak, *lane_work(median, choices)))
    return tuple(records)


def lane_work(problem: Problem, choices) -> tuple[float, float, float]:
    """The compute lane's work in one call of a plan, in seconds: (the chunks', the embedding's, the joins')."""
    graph = problem.graph
    compute_s = sum(w.compute_s for w in plan_work(problem, choices))
    joins_s = sum(graph.join(layer, part).duration_s for layer in range(graph.info.layers) for part in PARTS)
    return compute_s, graph.embed.duration_s, joins_s


def shed_order(problem: Problem, plan: Plan) -> tuple[ShedRecord, ...]:
    """Every kept chunk of an encoder plan in the order a runner that falls behind its predicted
    timeline sheds them: least importance lost per second of lane work saved first (IO and
    compute work together: which lane binds is the runner's to see, from what it measures).
    Keys number the chunks in load order, as the runner's LOADS does; `problem` is the plan's
    median problem at its planned length."""
    records = []
    key = 0
    for block in problem.graph.schedule(by_position(plan.shards)):
        for chunk in block.chunks:
            work = chunk_work(problem, chunk.node, list(chunk.members))
            loss = sum(problem.importance(m.layer, m.index, m.bits) for m in chunk.members) / len(PARTS)
            records.append(ShedRecord(
                key, block.layer, block.part, [m.index for m in chunk.members], loss, work.io_cpu_s + work.check_s, work.compute_s,
            ))
            key += 1
    return tuple(sorted(records, key=lambda r: (r.loss / max(r.io_s + r.compute_s, 1e-12), r.key)))



def _at_percentile(store: Store, plan: Plan, device: DeviceProfile, importance: ImportanceProfile | None) -> Problem:
    targets = replace(plan.targets, memory_bytes=plan.memory_budget_bytes)
    return lower_targets(store, device, importance or ImportanceProfile.flat(store), targets, plan.shards_per_chunk, PLANNED_PERCENTILE)


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
    context: int | None = None,
    first_token_s: float | None = None,
    kv_memory_bytes: int | None = None,
    shared_preload: Choices | None = None,
) -> tuple[Plan, Problem]:
    """The plan of `solver` for the targets, solved at the planned percentile; (plan, the problem
    it was solved on). A decoder's `latency_s` is per token (a decode step at the last position of
    `context`), `seq_len` its prompt and `first_token_s` the prefill's target. With
    `shared_preload` the plan keeps that plan's preload set (`sticc.compile.elastic`)."""
    targets = settle_targets(store, seq_len, memory_bytes, latency_s, context, first_token_s, kv_memory_bytes)
    problem = lower_targets(store, device, importance, targets, shards_per_chunk, PLANNED_PERCENTILE)
    check_kv_budget(targets, problem.graph.kv_cache_nbytes if store.spec.is_decoder else None)  # before solving
    chosen, greedy = solve(problem, solver, time_limit_s, shared_preload=shared_preload)
    budget = budget_bytes(problem, chosen.choices)
    plan = make_plan(
        store, tuple(chosen.choices.values()), chosen.info, seq_len=targets.seq_len, memory_bytes=budget,
        latency_s=latency_s, shards_per_chunk=problem.shards_per_chunk, context=targets.context,
        first_token_s=first_token_s, kv_memory_bytes=kv_memory_bytes,
    )
    plan = replace(plan, targets=replace(plan.targets, memory_bytes=memory_bytes))
    median = lower_targets(store, device, importance, targets, problem.shards_per_chunk)
    comparison = ComparisonRecord(None if solver == "greedy" else _summary(median, greedy, problem))
    return finish_plan(store, median, plan, device, importance, comparison, problem), problem


def predict_given_plan(store: Store, plan: Plan, device: DeviceProfile, importance: ImportanceProfile | None) -> Plan:
    """Predictions for a uniform or hand-written plan on a device (and fidelity, given importance)."""
    losses = importance or ImportanceProfile.flat(store)
    targets = replace(plan.targets, memory_bytes=plan.memory_budget_bytes)
    problem = lower_targets(store, device, losses, targets, plan.shards_per_chunk)
    return finish_plan(store, problem, plan, device, importance)
