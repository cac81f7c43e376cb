"""Elastic runners: several plans sharing one preload set, the per-call plan choice, and shedding to keep a
deadline. Mechanism only: no assertion depends on how fast this machine is (an impossible deadline
sheds every chunk whatever the speed; a generous one sheds nothing; what a call behind its deadline
sheds is driven by a fake clock)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from helpers import compile_runner
from planning_helpers import synthetic_device, synthetic_importance

from codegen import emit_runner, load_runner, write_output
from solvers.base import meets
from solvers.cpsat import cpsat_solve
from solvers.greedy import greedy_follow, pinned_alike
from solvers.uniform import uniform_plan
from sticc.base.errors import UserError
from sticc.cli.main import main
from sticc.compile.elastic import plan_elastic
from sticc.compile.planner import predict_given_plan
from sticc.ir.graph import ShardChoice
from sticc.ir.lower import lower
from sticc.ir.plan import SolverInfo, make_plan
from sticc.model.store import Store, write_store
from sticc.runtime import elastic
from sticc.runtime.core import Call, ChunkCost, LengthRow, PlanTable, PoolLayout, StoreReader
from sticc.runtime.elastic import (
    CONTENDED_CALLS,
    Adaptation,
    DeadlineKeeper,
    choose_plan,
    one_thread,
    predicted_latency_s,
)

TARGETS_S = (0.6e-3, 1e-3, 2e-3)
MEMORY = 60_000
SEQ_LEN = 16


@pytest.fixture(scope="module")
def store(tmp_path_factory, tiny_bert) -> Store:
    """2 layers x 4 shards, bits 4, 8 and 32."""
    out = tmp_path_factory.mktemp("elastic") / "store"
    write_store(tiny_bert, out, bits=(4, 8, 32), shards_per_layer=4)
    return Store.open(out)


@pytest.fixture(scope="module")
def plans(store):
    return plan_elastic(store, synthetic_device(store), synthetic_importance(store), SEQ_LEN, list(TARGETS_S), MEMORY, "cpsat", 5.0)


@pytest.fixture(scope="module")
def minilm_elastic(minilm_store, tmp_path_factory) -> Path:
    """The output folder of two uniform MiniLM plans (nothing preloaded: they share the empty set) as one runner."""
    store = Store.open(minilm_store)
    device = synthetic_device(store)
    plans = [predict_given_plan(store, uniform_plan(store, bits, 32), device, None) for bits in (8, 4)]
    out = tmp_path_factory.mktemp("elastic") / "minilm"
    write_output(out, emit_runner(store, plans[0], minilm_store, (plans[1],)))
    return out


@pytest.fixture(scope="module")
def elastic_runner(store, plans, tmp_path_factory):
    out = tmp_path_factory.mktemp("elastic") / "out"
    write_output(out, emit_runner(store, plans[0], store.path, plans[1:]))
    return load_runner(out / "runner.py").Runner(str(store.path))


def preload_set(plan) -> dict:
    """{(layer, index): bits} of a plan's preloaded shards."""
    return {(c.layer, c.index): c.bits for c in plan.shards if c.preload}


def _ids(store, length: int = SEQ_LEN) -> torch.Tensor:
    return torch.randint(0, store.spec.vocab, (1, length), generator=torch.Generator().manual_seed(length))


# -- planning ---------------------------------------------------------------------------------


def test_plans_share_one_preload_set_and_more_time_is_never_less_faithful(store, plans):
    importance = synthetic_importance(store)
    assert [p.targets.latency_s for p in plans] == sorted(TARGETS_S, reverse=True)  # most faithful first
    assert all(preload_set(p) == preload_set(plans[-1]) for p in plans)
    losses = [p.predicted.fidelity_loss for p in plans]
    assert losses == sorted(losses)
    for plan in plans:
        assert plan.predicted.planned_latency_s <= plan.targets.latency_s * (1 + 1e-9)
        assert plan.memory_budget_bytes == MEMORY
        # every kept chunk can be shed, least loss per second saved first
        shed = plan.findings.shed_order
        kept = sum(1 for c in plan.shards if c.bits)
        assert sum(len(r.indices) for r in shed) == 2 * kept  # a shard's attention piece and its FFN piece
        # shedding every chunk loses what dropping every shard does
        everything = sum(importance.loss[(c.layer, c.index)][0] for c in plan.shards)
        assert sum(r.loss for r in shed) + plan.predicted.fidelity_loss == pytest.approx(everything)
        ratios = [r.loss / (r.io_s + r.compute_s) for r in shed]
        assert ratios == sorted(ratios)
        assert all(r.compute_s > 0 for r in plan.findings.by_length)


def test_a_follower_is_the_best_plan_that_keeps_the_leaders_preload_set(tmp_path, tiny_bert):
    """CP-SAT with a shared preload set against every plan that keeps it (2 layers x 2 shards)."""
    out = tmp_path / "store"
    write_store(tiny_bert, out, bits=(4, 8), shards_per_layer=2)
    store = Store.open(out)
    device, importance = synthetic_device(store), synthetic_importance(store, seed=2)
    tight = lower(store, device, importance, 16, 0.5e-3, 30_000)
    leader = cpsat_solve(tight, time_limit_s=5.0).choices
    assert any(c.preload for c in leader.values())
    loose = lower(store, device, importance, 16, 1.2e-3, 30_000)
    frozen = pinned_alike(loose, leader)
    best = None
    free = [p for p in loose.positions if p not in frozen]
    for bits in itertools.product((0, *loose.bits), repeat=len(free)):
        choices = dict(leader)
        choices.update({p: ShardChoice(p[0], p[1], b) for p, b in zip(free, bits, strict=True)})
        if meets(loose, choices) and (best is None or loose.objective(choices) > best):
            best = loose.objective(choices)
    follower = cpsat_solve(loose, time_limit_s=5.0, hint=greedy_follow(loose, leader).choices, shared_preload=leader)
    assert {p: c for p, c in follower.choices.items() if c.preload} == {p: c for p, c in leader.items() if c.preload}
    assert meets(loose, follower.choices)
    assert follower.objective == pytest.approx(best)
    assert greedy_follow(loose, leader).objective <= follower.objective + 1e-12


# -- the runner -------------------------------------------------------------------------------


def test_each_plan_of_an_elastic_runner_computes_what_its_own_runner_does(store, plans, elastic_runner, tmp_path):
    ids = _ids(store)
    assert [t.name for t in elastic_runner.PLANS] == ["2ms", "1ms", "0.6ms"]
    pinned = {t.pool.pinned_nbytes for t in elastic_runner.PLANS}
    assert len(pinned) == 1  # one pinned region: the shared preload set is held once
    assert elastic_runner.pool.nbytes == max(t.pool.nbytes for t in elastic_runner.PLANS) <= MEMORY
    for n, plan in enumerate(plans):
        alone = compile_runner(store.path, plan, tmp_path / f"alone-{n}")
        torch.testing.assert_close(elastic_runner.forward(ids, plan=n), alone.forward(ids), rtol=0, atol=0)
        assert elastic_runner.last_stats["plan"] == elastic_runner.PLANS[n].name
        alone.close()


def test_an_impossible_deadline_sheds_every_chunk(store, plans, elastic_runner, tmp_path):
    ids = _ids(store)
    dropped = make_plan(store, tuple(ShardChoice(c.layer, c.index, 0) for c in plans[-1].shards), SolverInfo("hand", "GIVEN"), seq_len=SEQ_LEN)
    nothing = compile_runner(store.path, dropped, tmp_path / "dropped")
    out = elastic_runner.forward(ids, deadline_s=1e-9)
    stats = elastic_runner.last_stats
    assert stats["plan"] == elastic_runner.PLANS[-1].name  # none is predicted to meet it: the fastest
    assert stats["shed_chunks"] == len(plans[-1].findings.shed_order)
    assert stats["shed_pieces"] == 2 * sum(1 for c in plans[-1].shards if c.bits)
    assert stats["shed_fidelity_loss"] == pytest.approx(sum(r.loss for r in plans[-1].findings.shed_order))
    assert stats["met_deadline"] is False and stats["shedding"] is True
    torch.testing.assert_close(out, nothing.forward(ids), rtol=0, atol=0)
    nothing.close()


def test_without_shedding_the_plan_runs_whole(store, elastic_runner):
    ids = _ids(store)
    whole = elastic_runner.forward(ids, plan=len(elastic_runner.PLANS) - 1)
    out = elastic_runner.forward(ids, deadline_s=1e-9, keep_deadline=False)
    assert elastic_runner.last_stats["shed_chunks"] == 0 and elastic_runner.last_stats["shedding"] is False
    torch.testing.assert_close(out, whole, rtol=0, atol=0)


def test_a_generous_deadline_runs_the_most_faithful_plan_whole(store, elastic_runner):
    ids = _ids(store)
    out = elastic_runner.forward(ids, deadline_s=60.0)
    stats = elastic_runner.last_stats
    assert stats["plan"] == elastic_runner.PLANS[0].name and stats["shed_chunks"] == 0
    torch.testing.assert_close(out, elastic_runner.forward(ids), rtol=0, atol=0)


def test_encode_shares_its_deadline_among_batches(minilm_store, minilm_elastic):
    store = Store.open(minilm_store)
    runner = load_runner(minilm_elastic / "runner.py").Runner(str(minilm_store))
    texts = ["a short text", "a somewhat longer text with a few more words in it", "mid length text"]
    embeddings = runner.encode(texts, batch_size=1, deadline_s=60.0)
    stats = runner.last_stats
    assert embeddings.shape == (3, store.spec.hidden)
    assert stats["deadline_s"] == 60.0 and stats["met_deadline"] is True
    assert stats["plans"] == ["plan"] * 3 and stats["shed_chunks"] == 0  # 60 s: the most faithful, whole
    shares = [b["deadline_s"] for b in stats["batches"]]
    # each batch gets its part of the time left, in proportion to the predicted latencies of those left
    assert all(0 < share <= 60.0 for share in shares) and shares[0] < shares[1] < shares[2]
    assert shares[0] == pytest.approx(60.0 / 3, rel=0.2)
    torch.testing.assert_close(torch.from_numpy(embeddings), torch.from_numpy(runner.encode(texts, batch_size=1)), rtol=0, atol=0)
    runner.close()


def test_deadlines_are_checked(elastic_runner, store):
    with pytest.raises(ValueError, match="deadline_s"):
        elastic_runner.forward(_ids(store), deadline_s=0.0)
    with pytest.raises(ValueError, match="plan"):
        elastic_runner.forward(_ids(store), plan=7)


# -- the choice -------------------------------------------------------------------------------


def _table(name: str, latencies_s: tuple[float, ...], lengths=(8, 32, 128)) -> PlanTable:
    rows = tuple(LengthRow(n, t, t / 2, 0.0, 0.0) for n, t in zip(lengths, latencies_s, strict=True))
    return PlanTable(name, 0, 0, PoolLayout(0, 0, 0, 0), lengths=rows, shed_order=(ChunkCost(0, 1, 0.1, 1e-3, 1e-3),))


def test_more_tokens_never_get_a_more_faithful_plan():
    plans = (_table("80ms", (0.03, 0.05, 0.08)), _table("40ms", (0.012, 0.025, 0.04)), _table("20ms", (0.006, 0.012, 0.02)))
    for deadline_s in (0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.09):
        chosen = [choose_plan(plans, deadline_s, tokens) for tokens in range(1, 400)]
        assert chosen == sorted(chosen)  # the index only grows: less faithful plans for more tokens
    assert choose_plan(plans, None, 50) == 0
    assert choose_plan(plans, 1e-6, 50) == 2  # none meets it: the fastest
    assert choose_plan(plans, 0.04, 128) == 1 and choose_plan(plans, 0.05, 32) == 0
    # a table that dips with length is read as never falling
    dipping = _table("odd", (0.03, 0.02, 0.04))
    assert predicted_latency_s(dipping, 32) == pytest.approx(0.03)
    assert predicted_latency_s(dipping, 256) > predicted_latency_s(dipping, 128)


def test_a_bandwidth_drop_delays_reads_from_its_time_on(tmp_path):
    data = tmp_path / "data"
    data.write_bytes(b"\0" * 4096)
    reader = StoreReader(str(data), bandwidth_cap_Bps=1e6, direct=False)
    reader.drop_bandwidth(0.01, 0.5e6)
    reader.start_cap_clock()
    assert reader._due_s(5_000) == pytest.approx(0.005)  # before the drop: the cap
    assert reader._due_s(20_000) == pytest.approx(0.01 + 10_000 / 0.5e6)  # after it: the lower cap
    uncapped = StoreReader(str(data), direct=False)
    uncapped.drop_bandwidth(60.0, 1e3)
    uncapped.start_cap_clock()
    assert uncapped._due_s(1 << 20) == 0.0  # no cap before the drop
    reader.close()
    uncapped.close()


# -- shedding, chunk by chunk -----------------------------------------------------------------

MS = 1e-3
# a plan of five chunks in load order: key -> (IO ms, compute ms, loss); chunk 1 is preloaded (no IO)
CHUNKS = {0: (2, 2, 0.5), 1: (0, 1, 0.01), 2: (10, 4, 0.02), 3: (1, 4, 0.04), 4: (1, 4, 0.1)}
SHED_ORDER = (1, 2, 3, 4, 0)  # as the planner would give it: least loss per second saved first
JOINS_S = 0.6 * MS


class _Clock:
    """`time.perf_counter` as the keeper reads it: seconds the test sets."""

    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


def _keeper(monkeypatch, chunks: dict, order: tuple, deadline_s: float, joins_s: float = 0.0) -> tuple[DeadlineKeeper, _Clock]:
    """A keeper of a call at the planned length (compute costs as planned, no adaptation: glue 1)
    of a plan of `chunks` ({key: (IO ms, compute ms, loss)}, 2 pieces each) shed in `order`, on a
    fake clock at 0, the call's start."""
    clock = _Clock()
    monkeypatch.setattr(elastic, "time", SimpleNamespace(perf_counter=clock))
    shed = tuple(ChunkCost(k, 2, chunks[k][2], chunks[k][0] * MS, chunks[k][1] * MS) for k in order)
    rows = (LengthRow(SEQ_LEN, 30 * MS, 15 * MS, 1 * MS, joins_s),)
    table = PlanTable("40ms", 0, len(chunks), PoolLayout(0, 0, 0, 0), 40 * MS, fidelity_loss=0.3, lengths=rows, shed_order=shed)
    return DeadlineKeeper(table, deadline_s, SEQ_LEN, SEQ_LEN), clock


def _behind(monkeypatch, call: Call) -> DeadlineKeeper:
    """A 40 ms call whose keeper has let chunk 0 run (read in 2 ms, computed in 2 ms, both as
    predicted: each lane's pace is 1) and is asked before chunk 1 at 20 ms, with chunk 2 claimed by
    the IO lane and not yet read. The rest, through the lanes in load order:
        chunk 1 computes 0-1 ms; chunk 2 reads 0-10, computes 10-14; chunk 3 reads 10-11, computes
        14-18; chunk 4 reads 11-12, computes 18-22; plus the joins of 4 chunks of 5: 22.48 ms,
    times the margin 25.85 ms, past the 20 ms left."""
    keeper, clock = _keeper(monkeypatch, CHUNKS, SHED_ORDER, 40 * MS, JOINS_S)
    keeper.start(call, 0.0)
    keeper.before(call, 0)  # 24.6 ms estimated, 28.3 with the margin, 40 left: nothing shed
    assert call.shed_keys == {}
    assert call.claim(0)
    call.publish(0, 0, read_s=2 * MS)
    clock.now_s = 2 * MS
    keeper.computing(0)
    clock.now_s = 4 * MS
    keeper.computed(0)
    assert call.claim(2)
    clock.now_s = 20 * MS  # the compute lane fell behind (descheduled, say)
    keeper.before(call, 1)
    keeper.end(call)
    return keeper


def test_a_call_behind_sheds_in_the_planners_order_until_the_rest_fits(monkeypatch):
    """In the shed order: the preloaded chunk 1 is skipped (its compute waits on chunk 2's read
    anyway: shedding it saves nothing); the claimed chunk 2 is shed and read all the same, which saves
    its compute alone, 3 ms of it (chunk 3's read then binds: 22 to 19 ms); chunk 3, unclaimed, is
    never read (19 to 15 ms). 15.48 ms x 1.15 fits the 20 ms left, so chunk 4 is kept, and chunk 0,
    computed already, is never a candidate."""
    call = Call(None)
    keeper = _behind(monkeypatch, call)
    assert call.shed_keys == {2: False, 3: True}  # key -> whether its IO was saved
    assert keeper.pending == {1, 4}
    assert not call.claim(3) and call.claim(4)  # the IO lane skips the shed chunk it had not claimed
    stats = keeper.stats(call)
    assert stats["shed_chunks"] == 2 and stats["shed_pieces"] == 4 and stats["shed_io_saved_chunks"] == 1
    assert stats["shed_saved_s"] == pytest.approx(7 * MS)
    assert stats["shed_fidelity_loss"] == pytest.approx(0.06) and stats["fidelity_loss"] == pytest.approx(0.36)
    assert stats["shedding"] is True and stats["threads"] == "planned"


class _RacedCall(Call):
    """A call whose IO lane claims chunk 3 between the keeper's look at it and its shedding."""

    def shed(self, key: int) -> bool:
        if key == 3:
            self.claim(key)
        return super().shed(key)


def test_a_chunk_claimed_while_being_shed_saves_only_its_compute(monkeypatch):
    """As above, but chunk 3 is read after all: shedding it saves its 4 ms of compute less what chunk
    4's read then binds, 3 ms (19 to 16 ms); 16.48 ms x 1.15 still fits the 20 ms left."""
    call = _RacedCall(None)
    keeper = _behind(monkeypatch, call)
    assert call.shed_keys == {2: False, 3: False}
    assert keeper.pending == {1, 4}
    stats = keeper.stats(call)
    assert stats["shed_chunks"] == 2 and stats["shed_io_saved_chunks"] == 0
    assert stats["shed_saved_s"] == pytest.approx(6 * MS)


def test_a_claimed_chunk_whose_compute_waits_on_reads_is_not_shed(monkeypatch):
    """Chunk 0 claimed (read 0-10 ms, computed 10-11), chunk 1 not (read 10-20, computed 20-21): 21
    ms at 5 ms into a 20 ms call. Shedding chunk 0 would save its compute alone, which chunk 1's read
    hides: it is kept; chunk 1 is shed, its read too (11 ms, x 1.15 within the 15 ms left). Had
    chunk 0 been read by then (in 10 ms, as predicted), the rest is 11 ms: nothing is shed."""
    chunks = {0: (10, 1, 0.01), 1: (10, 1, 0.02)}
    keeper, clock = _keeper(monkeypatch, chunks, (0, 1), 20 * MS)
    call = Call(None)
    keeper.start(call, 0.0)
    assert call.claim(0)
    clock.now_s = 5 * MS
    keeper.before(call, 0)
    assert call.shed_keys == {1: True} and keeper.pending == {0}
    keeper.end(call)
    stats = keeper.stats(call)
    assert stats["shed_chunks"] == 1 and stats["shed_io_saved_chunks"] == 1
    assert stats["shed_saved_s"] == pytest.approx(10 * MS)
    keeper, clock = _keeper(monkeypatch, chunks, (0, 1), 20 * MS)
    call = Call(None)
    keeper.start(call, 0.0)
    assert call.claim(0)
    call.publish(0, 0, read_s=10 * MS)
    clock.now_s = 5 * MS
    keeper.before(call, 0)
    assert call.shed_keys == {} and keeper.saved_s == 0.0


# -- the command line -------------------------------------------------------------------------


def test_compile_several_latencies_and_report_the_deadline_ranges(store, tmp_path, capsys):
    device, importance = tmp_path / "device.json", tmp_path / "importance.json"
    synthetic_device(store).write(device)
    importance.write_text(json.dumps(synthetic_importance(store).to_json()))
    out = tmp_path / "out"
    argv = ["compile", str(store.path), "-o", str(out), "--latency", "2ms,0.6ms,1ms", "--memory", str(MEMORY),
            "--device", str(device), "--importance", str(importance), "--seq-len", str(SEQ_LEN), "--time-limit", "3s"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "and its 1 ms plan" in printed and "and its 0.6 ms plan" in printed
    plan = json.loads((out / "plan.json").read_text())
    assert [p["targets"]["latency_s"] for p in plan["alternatives"]] == [1e-3, 0.6e-3]
    runner = load_runner(out / "runner.py").Runner(str(store.path))
    assert len(runner.PLANS) == 3
    runner.close()
    assert main(["report", str(out / "plan.json")]) == 0
    assert "Deadline ranges" in capsys.readouterr().out
    assert main(["compile", str(store.path), "-o", str(tmp_path / "again"), "--plan", str(out / "plan.json")]) != 0
    assert "elastic runner" in capsys.readouterr().err


def test_the_runner_command_line_keeps_a_deadline(minilm_elastic, capsys):
    """`python OUT/runner.py --deadline 10s --stats`: the stats name the plan each batch ran and
    the deadline; --no-shedding without --deadline is one line of error and exit status 1."""
    done = subprocess.run(
        [sys.executable, str(minilm_elastic / "runner.py"), "--deadline", "10s", "--stats", "a first sentence", "and another one"],
        capture_output=True, text=True, check=False, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["text"] for line in lines[:2]] == ["a first sentence", "and another one"]
    stats = lines[2]["stats"]
    assert stats["deadline_s"] == 10.0 and "met_deadline" in stats
    assert stats["plans"] == [b["plan"] for b in stats["batches"]] and len(stats["plans"]) == 1
    module = load_runner(minilm_elastic / "runner.py")
    assert stats["plans"][0] in [t.name for t in module.Runner.PLANS]
    assert stats["batches"][0]["shedding"] is True and stats["batches"][0]["deadline_s"] <= 10.0
    # checked before the runner opens: no store read, one line, status 1
    assert module.runner_main(module.Runner, ["--no-shedding", "a text"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == "error: --no-shedding applies to a --deadline\n"


def test_a_decoder_takes_no_elastic_plans(tiny_decoders):
    store = Store.open(tiny_decoders["llama"][1])
    with pytest.raises(UserError, match="decoder"):
        plan_elastic(store, synthetic_device(store), synthetic_importance(store), 8, [1e-3, 2e-3], None)


# -- what a runner learns from its calls --------------------------------------------------------


class _Keeper:
    """What `Adaptation.after` reads of a finished call's keeper."""

    def __init__(self, single: bool, contended: bool = False, compute_pace=None, predicted_s=0.01, saved_s=0.0) -> None:
        self.single_thread, self.contended, self.on_one_thread = single, contended, single or contended
        self._compute_pace, self.predicted_s, self.saved_s = compute_pace, predicted_s, saved_s

    def call_paces(self):
        return 1.0, self._compute_pace, None


def test_calls_run_on_one_thread_while_it_affords_the_deadline():
    adaptation = Adaptation()
    assert adaptation.single_for(0.015, 0.02)  # the one-thread pace is unknown: the first call measures it
    adaptation.after(_Keeper(single=True, compute_pace=1.5), latency_s=0.012)
    assert adaptation.single_for(0.01, 0.02)  # 10 ms x 1.5 x margin fits 20 ms
    assert not adaptation.single_for(0.015, 0.02)  # 15 ms x 1.5 does not: the planned threads
    adaptation.after(_Keeper(single=False, contended=True), latency_s=0.05)  # another process on the cores
    assert all(adaptation.single_for(0.015, 0.02) for _ in range(3))
    for _ in range(CONTENDED_CALLS):
        adaptation.after(_Keeper(single=True, compute_pace=1.5), latency_s=0.012)
    assert not adaptation.single_for(0.015, 0.02)  # the contention is forgotten after CONTENDED_CALLS calls


def test_recent_slow_calls_make_the_plan_choice_cautious():
    adaptation = Adaptation()
    assert adaptation.slowdown == 1.0
    adaptation.after(_Keeper(single=True, compute_pace=1.0, predicted_s=0.02, saved_s=0.01), latency_s=0.03)
    assert adaptation.slowdown == pytest.approx(2.0)  # (30 ms + 10 ms saved by shedding) / 20 ms predicted
    adaptation.after(_Keeper(single=True, compute_pace=1.0, predicted_s=0.02), latency_s=0.01)
    assert adaptation.slowdown == pytest.approx(1.25)  # averaged with a fast call
    plans = (_table("80ms", (0.03, 0.05, 0.08)), _table("40ms", (0.012, 0.025, 0.04)))
    assert choose_plan(plans, 0.05, 32) == 0 and choose_plan(plans, 0.05, 32, slowdown=1.25) == 1


def test_one_thread_restores_torch_threads():
    before = torch.get_num_threads()
    with one_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with one_thread(active=False):
        assert torch.get_num_threads() == before
