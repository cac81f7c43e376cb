"""The CP-SAT planner: optimal on tiny instances, exact against the simulator, honest about infeasibility."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import pytest
from planning_helpers import synthetic_device, synthetic_importance

from solvers.base import dropped_all, evaluate, is_feasible
from solvers.cpsat import PlanModel, Scale, cpsat_solve, model_check
from solvers.exhaustive import exhaustive_solve
from sticc.base.errors import InfeasibleError
from sticc.ir.graph import ShardChoice
from sticc.ir.lower import Problem, lower
from sticc.ir.simulate import memory_of, plan_work
from sticc.model.store import Store, write_store

SEQ_LEN = 16
CAP_BPS = 20e6  # slow enough that the cap binds on the tiny model


@pytest.fixture(scope="module")
def tiny_stores(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> dict[str, Store]:
    """Tiny BERT stores: 2 layers x 2 shards at 4/8 bits (the brief's), the same with fp32 (preloads
    pinned in place), and 2 layers x 4 shards at 8 bits (groups of 2 members)."""
    root = tmp_path_factory.mktemp("cpsat-stores")
    stores = {}
    for name, bits, shards in (("b48", (4, 8), 2), ("b48f", (4, 8, 32), 2), ("b8x4", (8,), 4)):
        write_store(tiny_bert, root / name, bits=bits, shards_per_layer=shards)
        stores[name] = Store.open(root / name)
    return stores


def _problem(store: Store, shards_per_chunk: int, cap_Bps: float | None) -> Problem:
    device = synthetic_device(store, cap_Bps=cap_Bps)
    return lower(store, device, synthetic_importance(store), SEQ_LEN, None, None, shards_per_chunk=shards_per_chunk)


def _all_bits(problem: Problem, bits: int) -> dict:
    return {(layer, index): ShardChoice(layer, index, bits) for layer, index in problem.positions}


def _targets(problem: Problem) -> list[tuple[float | None, int | None]]:
    """(latency, memory) targets from loose to tight: some shards must be dropped or cut."""
    low = evaluate(problem, dropped_all(problem)).latency_s
    high = evaluate(problem, _all_bits(problem, max(problem.bits))).latency_s
    least = problem.graph.header_nbytes + problem.graph.embed.scratch_nbytes
    chunk = max(max(c.decoded_nbytes) + problem.shards_per_chunk * max(c.slot_nbytes.values()) for c in problem.graph.part_costs.values())
    return [
        (low + 0.3 * (high - low), None),
        (None, least + chunk + chunk // 2),
        (low + 0.5 * (high - low), least + 2 * chunk),
        (low + 0.25 * (high - low), least + 3 * chunk),
    ]


CASES = [("b48", 1), ("b48f", 1), ("b48f", 2), ("b8x4", 2)]


@pytest.mark.parametrize("cap_Bps", [None, CAP_BPS])
@pytest.mark.parametrize(("store_name", "shards_per_chunk"), CASES)
def test_optimal_on_tiny_instances(tiny_stores, store_name, shards_per_chunk, cap_Bps) -> None:
    """CP-SAT's objective equals the best feasible plan found by enumerating every plan."""
    loose = _problem(tiny_stores[store_name], shards_per_chunk, cap_Bps)
    for latency_s, memory_bytes in _targets(loose):
        problem = replace(loose, latency_s=latency_s, memory_bytes=memory_bytes)
        best = exhaustive_solve(problem)
        found = cpsat_solve(problem, time_limit_s=20, workers=1)
        assert found.info.status == "OPTIMAL"
        assert found.objective == pytest.approx(best.objective, rel=1e-9, abs=1e-12), (latency_s, memory_bytes)
        assert is_feasible(problem, found.simulation)
        assert found.info.bound == pytest.approx(found.objective, rel=1e-6)


def _random_plan(problem: Problem, rng: random.Random) -> dict:
    choices = {}
    for layer, index in problem.positions:
        bits = rng.choice((0, *problem.bits))
        choices[(layer, index)] = ShardChoice(layer, index, bits, bits != 0 and rng.random() < 0.3)
    return choices


@pytest.mark.parametrize("cap_Bps", [None, CAP_BPS])
@pytest.mark.parametrize(("store_name", "shards_per_chunk"), CASES)
def test_model_matches_simulator_on_fixed_plans(tiny_stores, store_name, shards_per_chunk, cap_Bps) -> None:
    """With the decisions fixed and the latency minimized, the model gives the simulator's latency
    (never less; more by at most a tick per constraint) and exactly its pinned, scratch and slack
    bytes, also with budgets that make the IO lane wait for ring space."""
    loose = _problem(tiny_stores[store_name], shards_per_chunk, cap_Bps)
    rng = random.Random(f"{store_name}-{shards_per_chunk}-{cap_Bps}")
    waited = 0
    for trial in range(12):
        choices = _random_plan(loose, rng)
        work = plan_work(loose, choices)
        pinned, scratch, slack = memory_of(loose, work)
        budget = None if trial % 4 == 0 else pinned + scratch + 2 * slack + rng.randrange(0, 2 * slack + 1)
        problem = replace(loose, memory_bytes=budget)
        simulation = evaluate(problem, choices)
        scale = Scale.for_problem(problem)
        check = model_check(problem, choices, scale=scale)
        assert check.status == "OPTIMAL"
        memory = (simulation.pinned_nbytes, simulation.scratch_nbytes, simulation.slack_nbytes)
        assert (check.pinned_nbytes, check.scratch_nbytes, check.slack_nbytes) == memory
        tolerance_s = scale.time_unit_s * (3 * len(problem.graph.chunks) + 2)
        assert simulation.latency_s - 1e-12 <= check.latency_s <= simulation.latency_s + tolerance_s
        # the hint's schedule (the simulator's rules in the model's integers) is the model's least latency
        plan = PlanModel(problem, scale, latency_target=False)
        assert scale.seconds(plan.values(choices)[plan.latency.index]) == pytest.approx(check.latency_s)
        waited += simulation.ring_wait_s > 0
    assert waited, "no plan made the IO lane wait for ring space: the admission model went unchecked"


def test_hint_is_a_floor(tiny_stores) -> None:
    """A feasible hint is never beaten by the result, even with no time to search."""
    loose = _problem(tiny_stores["b48f"], 2, None)
    latency_s, memory_bytes = _targets(loose)[3]
    problem = replace(loose, latency_s=latency_s, memory_bytes=memory_bytes)
    best = exhaustive_solve(problem)
    found = cpsat_solve(problem, time_limit_s=0.0, workers=1, hint=best.choices)
    assert found.objective >= best.objective - 1e-12
    assert is_feasible(problem, found.simulation)


def test_infeasible_targets_raise(tiny_stores) -> None:
    loose = _problem(tiny_stores["b48"], 1, None)
    low = evaluate(loose, dropped_all(loose)).latency_s
    with pytest.raises(InfeasibleError, match=r"the smallest latency reachable at all is .* \(every shard dropped\); no memory reaches"):
        cpsat_solve(replace(loose, latency_s=0.9 * low), workers=1)
    least = loose.graph.header_nbytes + loose.graph.embed.scratch_nbytes
    with pytest.raises(InfeasibleError, match=r"no plan fits in .*; the smallest memory any plan needs is"):
        cpsat_solve(replace(loose, memory_bytes=least - 1), workers=1)


@pytest.mark.parametrize("cap_Bps", [None, CAP_BPS])
@pytest.mark.parametrize(("store_name", "shards_per_chunk"), CASES)
def test_greedy_fast_check_is_the_simulator(tiny_stores, store_name, shards_per_chunk, cap_Bps) -> None:
    """The greedy planner's fast feasibility check answers as the simulator does (the same latency,
    to the last bit), and the greedy plan is the same with either check."""
    from solvers.base import Checker
    from solvers.greedy import greedy_solve
    from sticc.ir.simulate import latency_of

    loose = _problem(tiny_stores[store_name], shards_per_chunk, cap_Bps)
    rng = random.Random(f"greedy-{store_name}-{shards_per_chunk}-{cap_Bps}")
    for trial in range(20):
        choices = _random_plan(loose, rng)
        work = plan_work(loose, choices)
        pinned, scratch, slack = memory_of(loose, work)
        budget = None if trial % 4 == 0 else pinned + scratch + 2 * slack + rng.randrange(-slack // 4 - 4096, 2 * slack + 1)
        simulation = evaluate(replace(loose, memory_bytes=budget), choices)
        for latency_s in (None, simulation.latency_s, simulation.latency_s * 0.999):
            problem = replace(loose, memory_bytes=budget, latency_s=latency_s)
            checker = Checker(problem)
            assert checker.feasible(choices) == is_feasible(problem, simulation)
            if simulation.fits:
                numbered = checker.work(choices)
                assert latency_of(problem, [w for _, w in numbered], simulation.admit_nbytes) == simulation.latency_s
    for latency_s, memory_bytes in _targets(loose):
        problem = replace(loose, latency_s=latency_s, memory_bytes=memory_bytes)
        assert greedy_solve(problem).choices == greedy_solve(problem, fast=False).choices
