"""Planner: lowering, the simulator, the greedy and exhaustive solvers, profiles, infeasible targets."""

from __future__ import annotations

import dataclasses
import json
import random
import re

import pytest
from planning_helpers import synthetic_device, synthetic_importance

from solvers.base import check_reachable, dropped_all, evaluate, is_feasible
from solvers.exhaustive import exhaustive_solve
from solvers.greedy import greedy_solve
from sticc.base.errors import InfeasibleError, UserError
from sticc.ir.graph import ShardChoice
from sticc.ir.lower import lower
from sticc.ir.plan import SolverInfo, make_plan, memory_model
from sticc.ir.simulate import simulate
from sticc.model.store import Store, write_store
from sticc.profile.device import DEVICE_FORMAT_VERSION, DeviceProfile, LaneFit


@pytest.fixture(scope="module")
def small_store(tmp_path_factory, tiny_bert) -> Store:
    """2 layers x 2 shards, bits 4 and 8: small enough to enumerate every plan."""
    out = tmp_path_factory.mktemp("stores") / "tiny-2x2"
    write_store(tiny_bert, out, bits=(4, 8), shards_per_layer=2)
    return Store.open(out)


def _random_choices(problem, rng: random.Random) -> dict:
    choices = {}
    for layer, index in problem.positions:
        bits = rng.choice([0, *problem.bits])
        choices[(layer, index)] = ShardChoice(layer, index, bits, bool(bits) and rng.random() < 0.3)
    return choices


def _span(problem):
    """Latency of the all-dropped and the all-top-bits plans (the range worth targeting)."""
    top = {p: ShardChoice(p[0], p[1], max(problem.bits)) for p in problem.positions}
    return evaluate(problem, dropped_all(problem)).latency_s, evaluate(problem, top).latency_s


@pytest.mark.parametrize("cap", [None, 2e6])
def test_simulated_memory_matches_the_runner_memory_model(tiny_bert_store, cap):
    store = Store.open(tiny_bert_store)
    problem = lower(store, synthetic_device(store, cap_Bps=cap), synthetic_importance(store), 32, None, None)
    rng = random.Random(0)
    for _ in range(20):
        choices = _random_choices(problem, rng)
        plan = make_plan(store, tuple(choices.values()), SolverInfo("t", "GIVEN"), seq_len=32)
        memory = memory_model(store, plan.shards, plan.shards_per_chunk, 32)
        simulation = simulate(problem, choices, plan.memory_budget_bytes)
        assert (simulation.pinned_nbytes, simulation.scratch_nbytes) == (memory.pinned_bytes, memory.scratch_bytes)
        assert simulation.slack_nbytes == memory.slack_bytes
        assert simulation.fits
        assert simulation.peak_weight_bytes == memory.pool_layout(plan.memory_budget_bytes).nbytes <= plan.memory_budget_bytes
        assert simulation.io_nbytes == plan.predicted.io_bytes


def test_simulator_on_a_hand_computed_pipeline(small_store):
    """One kept shard streamed at 8 bits: every step of its timeline computed by hand."""
    device = synthetic_device(small_store)
    problem = lower(small_store, device, synthetic_importance(small_store), 16, None, None, shards_per_chunk=1)
    choices = dropped_all(problem)
    choices[(0, 0)] = ShardChoice(0, 0, 8)
    simulation = simulate(problem, choices, 10**9)
    attn, ffn = problem.graph.part_costs["attn"], problem.graph.part_costs["ffn"]

    def io(costs):
        return problem.lanes.io_chunk_overhead_s + costs.read_s[8] + costs.check_s[8]

    def compute(costs):
        overhead = problem.lanes.chunk_overhead_s + problem.lanes.interference * io(costs)
        return overhead + costs.decode_call_s[8] + costs.decode_piece_s[8] + costs.compute_s[1]

    # compute runs the embedding; then IO loads attn and ffn back to back, compute dequantizes and
    # runs each chunk once it is handed over, then its join
    attn_io_end = problem.graph.embed.duration_s + io(attn)
    ffn_ready = attn_io_end + io(ffn) + problem.lanes.handover_s
    attn_join, ffn_join = problem.graph.join(0, "attn").duration_s, problem.graph.join(0, "ffn").duration_s
    t = attn_io_end + problem.lanes.handover_s + compute(attn) + attn_join
    t = max(t, ffn_ready) + compute(ffn) + ffn_join
    t += problem.graph.join(1, "attn").duration_s + problem.graph.join(1, "ffn").duration_s  # layer 1: nothing kept, joins only
    assert simulation.latency_s == pytest.approx(t, rel=1e-12)


def test_a_smaller_arena_delays_io_and_the_simulator_says_so(tiny_bert_store):
    store = Store.open(tiny_bert_store)
    problem = lower(store, synthetic_device(store, bandwidth_Bps=5e6), synthetic_importance(store), 32, None, None, shards_per_chunk=1)
    choices = {p: ShardChoice(p[0], p[1], 8) for p in problem.positions}
    roomy = simulate(problem, choices, 10**9)
    minimum = memory_model(store, make_plan(store, tuple(choices.values()), SolverInfo("t", "GIVEN"), seq_len=32, shards_per_chunk=1).shards, 1, 32).minimum_budget_bytes
    tight = simulate(problem, choices, minimum)
    assert tight.ring_wait_s > 0 and roomy.ring_wait_s == 0
    assert tight.latency_s > roomy.latency_s
    assert tight.peak_weight_bytes <= minimum


@pytest.mark.parametrize("cap", [None, 3e6])
@pytest.mark.parametrize("fraction", [0.25, 0.6, 0.95])
@pytest.mark.parametrize("memory", [None, 16_000])
def test_greedy_is_feasible_and_never_beats_the_exhaustive_optimum(small_store, cap, fraction, memory):
    base = lower(small_store, synthetic_device(small_store, cap_Bps=cap), synthetic_importance(small_store, seed=3), 16, None, None)
    low, high = _span(base)
    problem = dataclasses.replace(base, latency_s=low + fraction * (high - low), memory_bytes=memory)
    greedy = greedy_solve(problem)
    best = exhaustive_solve(problem)
    assert is_feasible(problem, greedy.simulation) and is_feasible(problem, best.simulation)
    assert greedy.objective <= best.objective + 1e-12
    assert best.objective == pytest.approx(problem.objective(best.choices))


def test_unreachable_targets_name_what_is_reachable(small_store):
    base = lower(small_store, synthetic_device(small_store), synthetic_importance(small_store), 16, None, None)
    floor = evaluate(base, dropped_all(base)).latency_s
    with pytest.raises(InfeasibleError, match=r"smallest latency reachable with .* is .*; no memory reaches"):
        check_reachable(dataclasses.replace(base, latency_s=floor / 2, memory_bytes=10**6))
    with pytest.raises(InfeasibleError, match=r"no plan fits in .*; the smallest memory that reaches .* is"):
        check_reachable(dataclasses.replace(base, latency_s=floor * 2, memory_bytes=1000))
    check_reachable(dataclasses.replace(base, latency_s=floor * 1.01, memory_bytes=10**6))
    with pytest.raises(InfeasibleError):
        greedy_solve(dataclasses.replace(base, latency_s=floor / 2))


def test_device_profile_round_trips_and_bad_fields_are_named(small_store, tmp_path):
    lane_fit = LaneFit(1.5, {4: 1.1, 8: 1.3}, 1.2, 1.3, 2.0, 0.2, 3e-5, 1e-4, {50: 1.01, 90: 1.2}, 3, 12, 0.4, 0.05)
    device = dataclasses.replace(synthetic_device(small_store, cap_Bps=2e8), lane_fit=lane_fit)
    path = tmp_path / "device.json"
    device.write(path)
    assert DeviceProfile.read(path) == device
    good = json.loads(path.read_text())
    cases = [
        ({"request_latency_s": -1}, "request_latency_s: input should be greater than or equal to 0 (got -1)"),
        ({"read_bandwidth_Bps": 0}, "read_bandwidth_Bps: input should be greater than or equal to 1 (got 0)"),
        ({"decode": {"7x": {"call_s": 0, "weights_per_s": 1}}}, "decode.7x (a key): input should be a valid integer"),
        ({"decode": {"4": {"call_s": 0}}}, "decode.4.weights_per_s: is required"),
        ({"compute": {"attn": good["compute"]["attn"]}}, "compute must give figures for the parts ['attn', 'ffn']"),
        ({"compute": {**good["compute"], "ffn": {"chunk_s": [1, 2], "join_s": [0, 0]}}}, "compute.ffn.chunk_s[2]: is required"),
        ({"format_version": 9}, f"format_version: input should be {DEVICE_FORMAT_VERSION} (got 9)"),
        ({"surprise": 1}, "surprise: is not a known key"),
        ({"lane_fit": {**good["lane_fit"], "read_scale": 0}}, "lane_fit.read_scale: input should be greater than or equal to 0.000000001 (got 0)"),
        ({"lane_fit": {**good["lane_fit"], "latency_quantiles": {"150": 1.0}}}, "lane_fit.latency_quantiles.150 (a key): input should be less than or equal to 99"),
        ({"lane_fit": {**good["lane_fit"], "decode_scales": {"x": 1.0}}}, "lane_fit.decode_scales.x (a key)"),
        ({"checksum_Bps": 0}, "checksum_Bps: input should be greater than or equal to 1 (got 0)"),
        ({"compute_threads": "2"}, "compute_threads: input should be a valid integer (got '2')"),
        ({"checksum_Bps": float("nan")}, "checksum_Bps: input should be a finite number"),
    ]
    for change, message in cases:
        path.write_text(json.dumps({**good, **change}))
        with pytest.raises(UserError, match=re.escape(f"{path}: ")) as raised:
            DeviceProfile.read(path)
        assert message in str(raised.value) and "\n" not in str(raised.value), str(raised.value)
    del good["embed_s"]
    path.write_text(json.dumps(good))
    with pytest.raises(UserError, match=r"embed_s: is required"):
        DeviceProfile.read(path)


def test_profiles_for_another_store_are_refused(small_store, tiny_bert_store):
    other = Store.open(tiny_bert_store)
    with pytest.raises(UserError, match="measured for pieces"):
        synthetic_device(other).check_store(small_store)
    with pytest.raises(UserError, match="another store"):
        synthetic_importance(other).check_store(small_store)


def test_lane_fit_scales_each_lane(small_store):
    device = synthetic_device(small_store)
    scaled = dataclasses.replace(device, lane_fit=LaneFit(2.0, {4: 5.0}, 3.0, 6.0, 4.0, 0.0, 2e-5, 1e-4, {50: 1.1, 90: 1.32}, 1, 4, 0.0, 0.0))
    assert scaled.read_s(4096) == pytest.approx(2 * device.read_s(4096))
    assert scaled.check_s(4096) == pytest.approx(2 * device.check_s(4096))
    assert scaled.io_chunk_s == pytest.approx(2 * device.io_chunk_overhead_s)
    assert scaled.decode_call_s(4) == pytest.approx(5 * device.decode[4].call_s)
    assert scaled.decode_weight_s(4) == pytest.approx(5 / device.decode[4].weights_per_s)
    assert scaled.decode_call_s(8) == pytest.approx(device.decode[8].call_s)  # no scale for 8 bits: 1
    assert scaled.chunk_s("attn", 2, 16) == pytest.approx(3 * device.chunk_s("attn", 2, 16))
    assert scaled.join_s("ffn", 16) == pytest.approx(6 * device.join_s("ffn", 16))
    assert scaled.compute_chunk_s == 2e-5
    assert scaled.embed_time_s(16) == pytest.approx(4 * device.embed_time_s(16))
    # percentiles are relative to the median: 1.32 / 1.1
    assert scaled.quantile_factor(90) == pytest.approx(1.2)
    assert scaled.quantile_factor(50) == 1.0


def test_planning_to_a_percentile_scales_every_duration(small_store):
    device = synthetic_device(small_store, cap_Bps=2e6)
    importance = synthetic_importance(small_store)
    median = lower(small_store, device, importance, 16, None, None)
    planned = lower(small_store, device, importance, 16, None, None, percentile=90)
    factor = device.quantile_factor(90)
    assert factor > 1
    assert planned.graph.embed.duration_s == pytest.approx(factor * median.graph.embed.duration_s)
    for part in median.graph.part_costs:
        assert planned.graph.part_costs[part].compute_s[1] == pytest.approx(factor * median.graph.part_costs[part].compute_s[1])
        assert planned.graph.part_costs[part].read_s[8] == pytest.approx(factor * median.graph.part_costs[part].read_s[8])
    assert planned.lanes.cap_Bps == median.lanes.cap_Bps  # an emulated flash speed is what it is


def test_lane_fit_recovers_a_device_from_its_traces(small_store):
    """Traces made by the simulator from a device whose lanes run slower than its isolated figures
    (a known lane fit): fitting them to the isolated figures predicts every traced call again."""
    from sticc.bench.lane_fit import Observation, fit_lane_scales, trace_from_json
    from sticc.ir.plan import make_plan
    from sticc.ir.simulate import plan_work
    from sticc.profile.device import LaneFit

    base = dataclasses.replace(synthetic_device(small_store), lane_fit=None)
    truth = dataclasses.replace(base, lane_fit=LaneFit(
        1.3, {4: 2.0, 8: 1.5}, 1.4, 1.0, 1.2, 0.0, 0.0, 0.0, {}, 0, 0, 0.0, 0.0,
    ))
    importance = synthetic_importance(small_store)
    rng = random.Random(5)
    observations = []
    for trial in range(8):
        problem = lower(small_store, truth, importance, 16, None, None, shards_per_chunk=1)
        choices = _random_choices(problem, rng)
        plan = make_plan(small_store, tuple(choices.values()), SolverInfo("t", "GIVEN"), seq_len=16, shards_per_chunk=1)
        budget = plan.memory_budget_bytes
        simulation = simulate(problem, choices, budget)
        work = plan_work(problem, choices)
        computes = [e for e in simulation.events if e.kind == "compute"]
        loads = [e for e in simulation.events if e.kind == "load"]
        trace = [("call_start", -1, 0.0), ("embed_end", -1, next(e.end_s for e in simulation.events if e.kind == "embed"))]
        for key, (w, event) in enumerate(zip(work, computes, strict=True)):
            decode_end = event.start_s + (event.end_s - event.start_s) * w.decode_s / w.compute_s
            trace += [("compute_start", key, event.start_s), ("decode_end", key, decode_end), ("compute_end", key, event.end_s)]
        for key, event in zip([k for k, w in enumerate(work) if w.ring_nbytes], loads, strict=True):
            trace += [("io_start", key, event.start_s), ("io_end", key, event.end_s)]
        trace = trace_from_json(json.loads(json.dumps(trace)))  # as a child's traces arrive
        assert trace[0] == ("call_start", -1, 0.0) and trace[0].event == "call_start"
        observations.append(Observation(choices, budget, 16, 1, [trace] * 2 if trial % 2 else [trace], [simulation.latency_s] * (2 if trial % 2 else 1)))
    fitted = fit_lane_scales(small_store, base, observations)
    assert fitted.calls == 12 and fitted.plans == 8
    assert fitted.latency_error_after < 0.02 < fitted.latency_error_before
    assert fitted.latency_quantiles[50] == pytest.approx(1.0, abs=0.02)
    assert fitted.read_scale == pytest.approx(1.3, rel=0.05)
