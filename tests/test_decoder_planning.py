"""Planning decoders: the decode step and the prefill as two phases of one plan, the solvers on
both, the LM head never dropped, the KV cache's own budget, and the command line (synthetic
profiles: no timing)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from planning_helpers import synthetic_device, synthetic_importance

from solvers.base import Checker, dropped_all, evaluate, meets
from solvers.cpsat import PlanModel, Scale, cpsat_solve
from solvers.exhaustive import exhaustive_solve
from solvers.greedy import greedy_solve
from sticc.base.errors import InfeasibleError
from sticc.cli.main import main
from sticc.compile.planner import plan_for_targets
from sticc.ir.graph import Phase, ShardChoice
from sticc.ir.lower import lower_decoder
from sticc.ir.simulate import simulate
from sticc.model.store import Store, write_store

PROMPT, CONTEXT = 16, 64


@pytest.fixture(scope="module")
def llama(tiny_decoders) -> Store:
    return Store.open(tiny_decoders["llama"][1])


def _problem(store: Store, token_s: float | None, first_s: float | None = None, memory: int | None = None):
    return lower_decoder(
        store, synthetic_device(store), synthetic_importance(store), PROMPT, CONTEXT, token_s, first_s, memory,
    )


def _uniform(problem, bits: int) -> dict:
    return {p: ShardChoice(*p, bits) for p in problem.positions}


def test_a_decoder_problem_is_a_decode_step_and_a_prefill_in_one_pool(llama):
    problem = _problem(llama, None)
    decode, prefill = problem.phases
    assert decode.graph.info.phase is Phase.DECODE and prefill.graph.info.phase is Phase.PREFILL
    assert decode.graph.info.seq_len == 1 and decode.graph.info.context == CONTEXT - 1
    assert prefill.graph.info.seq_len == PROMPT
    # one pool for both: the embedding's scratch holds the prompt in every call
    assert decode.graph.embed.scratch_nbytes == prefill.graph.embed.scratch_nbytes
    assert decode.graph.embed.io_nbytes * PROMPT == prefill.graph.embed.io_nbytes
    choices = _uniform(problem, 8)
    budget = 10**8
    one, other = simulate(decode, choices, budget), simulate(prefill, choices, budget)
    assert one.peak_weight_bytes == other.peak_weight_bytes and one.io_nbytes < other.io_nbytes
    assert one.latency_s < other.latency_s  # a token is cheaper than a 16-token prompt
    # the prompt's LM head runs on its last position only: the same kernel time as a decode step's
    lm_head = [c for c in prefill.graph.chunks if c.part == "lm_head"]
    assert prefill.graph.costs(lm_head[0]).compute_s == decode.graph.costs(lm_head[0]).compute_s


def test_the_lm_head_is_never_dropped(llama):
    problem = _problem(llama, None)
    floor = dropped_all(problem)
    assert all(c.bits == min(llama.bits) for p, c in floor.items() if p[0] == llama.spec.layers)
    assert all(c.bits == 0 for p, c in floor.items() if p[0] < llama.spec.layers)
    assert problem.options((llama.spec.layers, 0)) == llama.bits


def _targets(problem) -> list[float]:
    low = evaluate(problem, dropped_all(problem)).latency_s
    high = evaluate(problem, _uniform(problem, 32)).latency_s
    return [low + f * (high - low) for f in (0.2, 0.5, 0.8)]


def test_cpsat_meets_both_phases_and_is_at_least_greedy(llama):
    loose = _problem(llama, None)
    prefill_floor = evaluate(loose.also[0], dropped_all(loose)).latency_s
    for token_s in _targets(loose):
        for memory in (None, 60_000):
            problem = _problem(llama, token_s, prefill_floor * 1.5, memory)
            greedy = greedy_solve(problem)
            best = cpsat_solve(problem, time_limit_s=5, hint=greedy.choices)
            for solution in (greedy, best):
                assert meets(problem, solution.choices)
                assert all(c.bits for p, c in solution.choices.items() if p[0] == llama.spec.layers)
            assert best.objective >= greedy.objective - 1e-9


def test_the_first_token_target_binds_on_its_own(llama):
    loose = _problem(llama, None)
    full = _uniform(loose, 32)
    prefill_s = evaluate(loose.also[0], full).latency_s
    problem = _problem(llama, None, prefill_s * 0.7)
    assert not meets(problem, full) and not Checker(problem).feasible(full)
    best = cpsat_solve(problem, time_limit_s=5)
    assert evaluate(problem.also[0], best.choices).latency_s <= prefill_s * 0.7 * (1 + 1e-9)
    with pytest.raises(InfeasibleError, match="time to first token"):
        greedy_solve(_problem(llama, None, 1e-6))


def test_the_model_schedules_both_phases_as_the_simulator(llama):
    problem = _problem(llama, None, None, 60_000)
    plan = PlanModel(problem, Scale.for_problem(problem))
    for choices in (_uniform(problem, 8), greedy_solve(_problem(llama, _targets(problem)[1], None, 60_000)).choices):
        values = plan.values(choices)
        for timeline in plan.timelines:
            simulated = simulate(timeline.problem, choices, 60_000).latency_s
            assert plan.scale.seconds(values[timeline.latency.index]) == pytest.approx(simulated, rel=2e-3)


def test_cpsat_equals_the_exhaustive_optimum_on_a_tiny_decoder(tiny_decoders, tmp_path):
    store = write_store(tiny_decoders["llama"][0], tmp_path / "store", bits=(8, 32), shards_per_layer=1)
    loose = _problem(store, None)
    for token_s in _targets(loose)[:2]:
        problem = _problem(store, token_s, None, None)
        best = exhaustive_solve(problem)
        found = cpsat_solve(problem, time_limit_s=10)
        assert found.objective == pytest.approx(best.objective, rel=1e-6, abs=1e-9)
        assert greedy_solve(problem).objective <= best.objective + 1e-9


def test_planned_decoder_plans_predict_tokens_and_the_first_token(llama):
    device, importance = synthetic_device(llama), synthetic_importance(llama)
    loose = _problem(llama, None)
    token_s = _targets(loose)[1] * 1.1  # planned at the 90th percentile: 10% slower
    plan, _ = plan_for_targets(llama, device, importance, PROMPT, token_s, None, "cpsat", 5, context=CONTEXT, first_token_s=1.0)
    predicted = plan.predicted
    assert predicted.planned_latency_s <= token_s * (1 + 1e-9) and predicted.latency_s < predicted.planned_latency_s
    assert predicted.first_token_s < predicted.planned_first_token_s <= 1.0
    assert predicted.io_bytes_per_token < predicted.io_bytes and predicted.kv_cache_bytes > 0
    assert plan.targets.first_token_s == 1.0 and plan.targets.context == CONTEXT
    assert plan.findings.prefill_timeline is not None and plan.findings.prefill_timeline.events
    data = plan.to_json()
    assert data["targets"]["first_token_s"] == 1.0 and "prefill_timeline" in data


def _write_profiles(store: Store, tmp_path):
    device, importance = tmp_path / "device.json", tmp_path / "importance.json"
    synthetic_device(store).write(device)
    synthetic_importance(store).write(importance)
    return device, importance


def _cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_compile_plans_a_decoder_whose_runner_generates(llama, tmp_path, capsys):
    device, importance = _write_profiles(llama, tmp_path)
    loose = _problem(llama, None)
    token_ms = _targets(loose)[2] * 1.1 * 1e3
    out = tmp_path / "out"
    code, stdout, err = _cli(
        capsys, "compile", llama.path, "-o", out, "--token-latency", f"{token_ms:.3f}ms", "--first-token", "1s",
        "--prompt-len", PROMPT, "--context", CONTEXT, "--device", device, "--importance", importance,
    )
    assert code == 0, err
    assert "tokens/s" in stdout and "first token" in stdout
    plan = json.loads((out / "plan.json").read_text())
    assert plan["targets"]["latency_s"] == pytest.approx(token_ms / 1e3, rel=1e-3)
    from codegen import load_runner

    runner = load_runner(out / "runner.py").Runner(str(llama.path))
    try:
        tokens = list(runner.generate_ids(torch.tensor([[1, 5, 9, 2]]), 5))
        assert 1 <= len(tokens) <= 5
    finally:
        runner.close()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--token-latency", "1us", "--memory", "1MB"], "no plan meets a per-token latency of 1 us"),
        (["--token-latency", "1s", "--first-token", "1us"], "no plan meets a time to first token of 1 us"),
        (["--token-latency", "1s", "--kv-memory", "1kB"], "the largest context within it is"),
    ],
)
def test_unreachable_decoder_targets_exit_2(llama, tmp_path, capsys, flags, message):
    device, importance = _write_profiles(llama, tmp_path)
    code, _, err = _cli(
        capsys, "compile", llama.path, "-o", tmp_path / "out", *flags, "--context", CONTEXT, "--device", device,
        "--importance", importance,
    )
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert message in err and not (tmp_path / "out").exists()


def test_encoder_and_decoder_flags_do_not_mix(llama, tiny_bert_store, tmp_path, capsys):
    code, _, err = _cli(capsys, "compile", llama.path, "-o", tmp_path / "a", "--latency", "10ms")
    assert code == 1 and "--latency does not apply" in err and "--token-latency" in err
    code, _, err = _cli(capsys, "compile", tiny_bert_store, "-o", tmp_path / "b", "--token-latency", "10ms")
    assert code == 1 and "--token-latency does not apply" in err


def test_a_decoder_device_profile_needs_one_token_figures(llama, tmp_path):
    device = synthetic_device(llama)
    with pytest.raises(ValueError, match="token must give figures"):
        dataclasses.replace(device, token={"attn": device.token["attn"]})
    assert device.token_chunk_s("attn", 2, 100) > device.token_chunk_s("attn", 2, 10) > device.token_chunk_s("attn", 1, 10)
