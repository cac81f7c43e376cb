"""Weight memory: exact accounting, the budget the runner enforces, and the 4-bit MiniLM bar."""

from __future__ import annotations

import dataclasses
import math

import torch
from helpers import compile_runner
from safetensors import safe_open

from solvers.uniform import uniform_plan
from sticc.base.schema import PARTS
from sticc.ir.graph import ShardChoice
from sticc.ir.plan import SolverInfo, make_plan, memory_model
from sticc.model.checkpoint import Checkpoint
from sticc.model.store import Store

SENTENCE = "Streaming shards keeps only a few percent of the weights in memory at any moment."


def test_spec_counts_every_weight_the_runner_uses(minilm):
    spec = Checkpoint.open(minilm).spec
    with safe_open(minilm / "model.safetensors", framework="pt") as handle:
        used = sum(
            math.prod(handle.get_slice(name).get_shape())
            for name in handle.keys()  # noqa: SIM118 - safe_open is not a mapping
            if not name.startswith("pooler") and "position_ids" not in name
        )
    assert spec.weight_count == used


def test_uniform_4bit_minilm_peak_is_under_10_percent_of_fp32(minilm_store, tmp_path):
    store = Store.open(minilm_store)
    runner = compile_runner(minilm_store, uniform_plan(store, 4), tmp_path / "out")
    ids = torch.randint(1000, 30000, (1, 128), generator=torch.Generator().manual_seed(0))
    runner.forward(ids)
    peak = runner.last_stats["peak_weight_bytes"]
    assert peak <= 0.10 * store.spec.fp32_weight_nbytes
    assert peak == runner.POOL.nbytes <= uniform_plan(store, 4).memory_budget_bytes


def test_tightest_budget_is_enforced_and_still_correct(minilm_store, tmp_path):
    store = Store.open(minilm_store)
    loose = compile_runner(minilm_store, uniform_plan(store, 8), tmp_path / "loose")
    plan = uniform_plan(store, 8)
    minimum = memory_model(store, plan.shards, plan.shards_per_chunk, 128).minimum_budget_bytes
    tight = compile_runner(minilm_store, uniform_plan(store, 8, memory_bytes=minimum), tmp_path / "tight")
    ids, mask, types = tight.tokenize([SENTENCE, "and a second input"])
    expected = loose.forward(ids, mask, types)
    got = tight.forward(ids, mask, types)
    assert torch.equal(got, expected)
    assert tight.last_stats["peak_weight_bytes"] <= minimum < loose.last_stats["peak_weight_bytes"]


def test_smaller_chunks_need_less_memory_and_give_the_same_output(minilm_store, tmp_path):
    store = Store.open(minilm_store)
    whole = compile_runner(minilm_store, uniform_plan(store, 4, shards_per_chunk=12), tmp_path / "whole")
    plan = uniform_plan(store, 4, shards_per_chunk=1)
    minimum = memory_model(store, plan.shards, 1, 128).minimum_budget_bytes
    single = compile_runner(minilm_store, uniform_plan(store, 4, memory_bytes=minimum, shards_per_chunk=1), tmp_path / "one")
    ids, mask, types = single.tokenize([SENTENCE])
    expected = whole.forward(ids, mask, types)
    assert torch.allclose(single.forward(ids, mask, types), expected, atol=1e-5)
    assert single.last_stats["peak_weight_bytes"] <= minimum
    assert single.last_stats["peak_weight_bytes"] < 0.2 * whole.last_stats["peak_weight_bytes"]


def test_io_bytes_and_pool_are_exact(minilm_store, tmp_path):
    store = Store.open(minilm_store)
    plan = uniform_plan(store, 4)
    runner = compile_runner(minilm_store, plan, tmp_path / "out")
    ids, mask, types = runner.tokenize([SENTENCE])
    runner.forward(ids, mask, types)
    # direct reads read whole units (each blob's slot), buffered reads the blob's bytes
    size = "slot_nbytes" if runner.reader.direct else "nbytes"
    blobs = sum(getattr(store.version(c.layer, c.index, part, c.bits).layout, size) for c in plan.shards for part in PARTS)
    rows = 4 * store.spec.hidden * (len(torch.unique(ids)) + ids.shape[1])
    assert runner.last_stats["io_bytes"] == blobs + rows
    memory = memory_model(store, plan.shards, plan.shards_per_chunk, plan.targets.seq_len)
    assert dataclasses.astuple(runner.POOL) == dataclasses.astuple(memory.pool_layout(plan.memory_budget_bytes))
    assert runner.last_stats["peak_weight_bytes"] == runner.POOL.nbytes == plan.predicted.peak_weight_bytes
    runner.forward(ids, mask, types)
    assert runner.last_stats["peak_weight_bytes"] == runner.POOL.nbytes  # the pool is all a call holds


def test_preloaded_shards_cost_no_io(minilm_store, tmp_path):
    store = Store.open(minilm_store)
    shards = tuple(ShardChoice(layer, i, 4, preload=layer == 0) for layer in range(6) for i in range(12))
    plan = make_plan(store, shards, SolverInfo("hand", "GIVEN"))
    runner = compile_runner(minilm_store, plan, tmp_path / "out")
    reference = compile_runner(minilm_store, uniform_plan(store, 4), tmp_path / "ref")
    ids, mask, types = runner.tokenize([SENTENCE])
    assert torch.equal(runner.forward(ids, mask, types), reference.forward(ids, mask, types))
    assert reference.last_stats["io_bytes"] - runner.last_stats["io_bytes"] == plan.predicted.preload_bytes


def test_fp32_preloaded_chunks_are_pinned_in_place_and_accounted_exactly(minilm_store, tmp_path):
    store = Store.open(minilm_store)
    shards = tuple(ShardChoice(c.layer, c.index, 32, preload=c.layer < 2) for c in uniform_plan(store, 32).shards)
    plan = make_plan(store, shards, SolverInfo("hand", "GIVEN"))
    runner = compile_runner(minilm_store, plan, tmp_path / "out")
    memory = memory_model(store, plan.shards, plan.shards_per_chunk, plan.targets.seq_len)
    assert runner.POOL.pinned_nbytes == memory.pinned_bytes  # the runner pins what the plan says
    assert runner.pool._pinned_used <= memory.pinned_bytes
    assert len(runner.pinned_chunks) == 2 * 2 * 4  # layers 0-1, two blocks, four chunks of three shards
    reference = compile_runner(minilm_store, uniform_plan(store, 32), tmp_path / "ref")
    ids, mask, types = runner.tokenize([SENTENCE])
    assert torch.equal(runner.forward(ids, mask, types), reference.forward(ids, mask, types))
    assert reference.last_stats["io_bytes"] - runner.last_stats["io_bytes"] == plan.predicted.preload_bytes


def test_an_input_longer_than_planned_is_counted_beyond_the_pool(minilm_store, tmp_path):
    store = Store.open(minilm_store)
    plan = uniform_plan(store, 8, seq_len=16)
    runner = compile_runner(minilm_store, plan, tmp_path / "out")
    short = torch.randint(1000, 30000, (1, 16), generator=torch.Generator().manual_seed(0))
    runner.forward(short)
    assert runner.last_stats["peak_weight_bytes"] == runner.POOL.nbytes
    long = torch.randint(1000, 30000, (4, 300), generator=torch.Generator().manual_seed(1))
    runner.forward(long)
    rows = 4 * store.spec.hidden * (len(torch.unique(long)) + 300)
    if rows > runner.POOL.scratch_nbytes:
        assert runner.last_stats["peak_weight_bytes"] == runner.POOL.nbytes + rows
