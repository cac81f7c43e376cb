"""Scratch tiers, priced rounding and CP-SAT's bound: every plan in exactly one tier, bounds that
are true bounds (against enumerating every plan, also when the time runs out), starting plans that
are feasible, and the time limit honoured with the greedy plan as the floor."""

from __future__ import annotations

import itertools
import random
import time
from dataclasses import replace
from pathlib import Path

import pytest
from planning_helpers import synthetic_device, synthetic_importance

import solvers.cpsat as cpsat
from solvers.base import Checker, dropped_all, evaluate, is_feasible, meets
from solvers.exhaustive import exhaustive_solve
from solvers.greedy import greedy_solve
from solvers.priced import Pricing, improve, priced_rounding
from solvers.tiers import capacity_bound, groups, scratch_of, scratch_tiers, tier_of
from sticc.bench.solver_instances import instances
from sticc.ir.graph import ShardChoice
from sticc.ir.lower import Problem, lower
from sticc.model.store import Store, write_store

SEQ_LEN = 16


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> dict[str, Store]:
    """2 layers x 2 shards at 4/8/32 bits, and 2 layers x 4 shards at 8 bits (groups of 2)."""
    root = tmp_path_factory.mktemp("tier-stores")
    out = {}
    for name, bits, shards in (("b48f", (4, 8, 32), 2), ("b8x4", (8,), 4)):
        write_store(tiny_bert, root / name, bits=bits, shards_per_layer=shards)
        out[name] = Store.open(root / name)
    return out


def _problem(store: Store, shards_per_chunk: int, cap_Bps: float | None = None) -> Problem:
    device = synthetic_device(store, cap_Bps=cap_Bps)
    return lower(store, device, synthetic_importance(store), SEQ_LEN, None, None, shards_per_chunk=shards_per_chunk)


def _tight(loose: Problem, latency_share: float, chunks_of_memory: float) -> Problem:
    low = evaluate(loose, dropped_all(loose)).latency_s
    top = {p: ShardChoice(p[0], p[1], max(loose.bits)) for p in loose.positions}
    high = evaluate(loose, top).latency_s
    least = loose.graph.header_nbytes + loose.graph.embed.scratch_nbytes
    chunk = max(max(c.decoded_nbytes) + loose.shards_per_chunk * max(c.slot_nbytes.values()) for c in loose.graph.part_costs.values())
    return replace(loose, latency_s=low + latency_share * (high - low), memory_bytes=int(least + chunks_of_memory * chunk))


def _every_plan(problem: Problem):
    options = [
        [ShardChoice(p[0], p[1], b, pre) for b in problem.options(p) for pre in ((False,) if b == 0 else (False, True))]
        for p in problem.positions
    ]
    for combo in itertools.product(*options):
        yield {(c.layer, c.index): c for c in combo}


CASES = [("b48f", 1), ("b48f", 2), ("b8x4", 2)]


@pytest.mark.parametrize(("store_name", "shards_per_chunk"), CASES)
def test_every_plan_lies_in_one_tier_within_its_caps_and_bound(stores, store_name, shards_per_chunk) -> None:
    """Every plan that fits the memory lies in the tier of its scratch: no group beyond its cap
    unless pinned in place, and the tier's capacity bound is at least its importance."""
    problem = _tight(_problem(stores[store_name], shards_per_chunk), 1.0, 2.5)
    tiers = scratch_tiers(problem)
    assert [t.scratch_nbytes for t in tiers] == sorted({t.scratch_nbytes for t in tiers})
    keys = groups(problem)
    seen = set()
    rng = random.Random(store_name)
    plans = list(_every_plan(problem))
    for choices in [dropped_all(problem), *rng.sample(plans, min(len(plans), 400))]:
        if not evaluate(problem, choices).fits:
            continue
        t = tier_of(problem, tiers, choices)
        seen.add(t)
        assert scratch_of(problem, choices) == tiers[t].scratch_nbytes
        for (layer, indices), cap in zip(keys, tiers[t].caps, strict=True):
            kept = [choices[(layer, i)] for i in indices if choices[(layer, i)].bits]
            in_place = kept and all(c.preload and c.bits == 32 for c in kept)
            assert in_place or len(kept) <= cap
        assert capacity_bound(problem, tiers[t]) >= problem.objective(choices) - 1e-12
    assert len(seen) > 1, "the sample covered one tier only"


@pytest.mark.parametrize("time_limit_s", [0.0, 0.05, 20.0])
@pytest.mark.parametrize(("store_name", "shards_per_chunk"), CASES)
def test_bound_is_a_true_bound_whatever_the_time(stores, store_name, shards_per_chunk, time_limit_s) -> None:
    """Against enumerating every plan: the plan is feasible and never better than the optimum, the
    bound never below it, also when the time runs out first; with time enough, both equal it."""
    loose = _problem(stores[store_name], shards_per_chunk)
    for latency_share, memory_chunks in ((0.3, 2.0), (0.5, 3.0), (0.25, 1.5)):
        problem = _tight(loose, latency_share, memory_chunks)
        best = exhaustive_solve(problem).objective
        found = cpsat.cpsat_solve(problem, time_limit_s=time_limit_s, workers=1)
        assert is_feasible(problem, found.simulation)
        assert found.objective <= best + 1e-12
        assert found.info.bound >= best - 1e-12
        assert found.info.gap == pytest.approx((found.info.bound - found.objective) / found.info.bound)
        if time_limit_s >= 20.0:
            assert found.info.status == "OPTIMAL"
            assert found.objective == pytest.approx(best, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize(("store_name", "shards_per_chunk"), CASES)
def test_priced_rounding_gives_feasible_plans_within_the_tier(stores, store_name, shards_per_chunk) -> None:
    problem = _tight(_problem(stores[store_name], shards_per_chunk, cap_Bps=20e6), 0.4, 2.0)
    pricing, checker = Pricing(problem), Checker(problem)
    found = 0
    for tier in scratch_tiers(problem):
        choices = priced_rounding(problem, tier, pricing, checker, time.perf_counter() + 10)
        if choices is None:
            continue
        better = improve(problem, tier, checker, choices, time.perf_counter() + 10)
        for plan in (choices, better):
            assert meets(problem, plan)
            assert scratch_of(problem, plan) <= tier.scratch_nbytes
        assert problem.objective(better) >= problem.objective(choices)
        found += 1
    assert found


def test_time_limit_is_honoured_and_greedy_is_the_floor(monkeypatch) -> None:
    """A BERT-base-shaped instance: CP-SAT's runs get no more than the time asked, the answer
    comes within it (plus the solver's stop latency, generously), and it is never worse than the
    greedy plan it was given."""
    given: list[float] = []
    make = cpsat._solver

    def recording(time_limit_s, workers, seed):
        given.append(time_limit_s)
        return make(time_limit_s, workers, seed)

    monkeypatch.setattr(cpsat, "_solver", recording)
    case = instances({"bert-base": 1.0}, (0.02,), (0.3,), (None,))[0]
    greedy = greedy_solve(case.problem)
    start_s = time.perf_counter()
    found = cpsat.cpsat_solve(case.problem, time_limit_s=1.0, hint=greedy.choices)
    wall_s = time.perf_counter() - start_s
    assert sum(given) <= 1.0
    assert wall_s < 1.0 + 1.0, wall_s
    assert found.objective >= greedy.objective - 1e-12
    assert meets(case.problem, found.choices)
    assert found.info.bound >= found.objective
