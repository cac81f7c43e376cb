"""Codegen: determinism, a golden schedule, and the shard graph it is rendered from."""

from __future__ import annotations

import os
from pathlib import Path

from codegen import emit_runner
from codegen.emit import _runtime_body
from solvers.uniform import uniform_plan
from sticc.ir.graph import ShardChoice, build_graph, by_position, store_shape
from sticc.ir.plan import SolverInfo, make_plan
from sticc.model.store import Store

GOLDEN = Path(__file__).parent / "golden" / "tiny_bert_runner.py.txt"
RUNTIME_MARK = "# <the runtime: sticc/runtime/{core,decode,encoder}.py, inlined verbatim (checked separately)>"


def _mixed_plan(store: Store):
    bits = {(0, 0): 8, (0, 1): 0, (0, 2): 4, (0, 3): 32, (1, 0): 0, (1, 1): 0, (1, 2): 0, (1, 3): 0}
    shards = tuple(ShardChoice(layer, i, b, preload=(layer, i) == (0, 3)) for (layer, i), b in bits.items())
    return make_plan(store, shards, SolverInfo("hand", "GIVEN"))


def test_same_inputs_give_identical_runner_bytes(tiny_bert_store):
    store = Store.open(tiny_bert_store)
    first = emit_runner(store, uniform_plan(store, 4), tiny_bert_store).text
    second = emit_runner(Store.open(tiny_bert_store), uniform_plan(Store.open(tiny_bert_store), 4), tiny_bert_store).text
    assert first == second
    assert emit_runner(store, uniform_plan(store, 8), tiny_bert_store).text != first


def test_a_whole_generated_runner_matches_golden(tiny_bert_store):
    """The whole runner of a mixed plan, byte for byte: its header, literals and schedule against
    the golden file (paths and ids, which depend on where the test runs, replaced by marks), its
    runtime against sticc/runtime's sources."""
    store = Store.open(tiny_bert_store)
    source = emit_runner(store, _mixed_plan(store), tiny_bert_store)
    runtime = _runtime_body()
    assert source.text.count(runtime) == 1
    text = source.text.replace(runtime, RUNTIME_MARK)
    for value, mark in (
        (str(Path(tiny_bert_store).resolve()), "<STORE_PATH>"), (store.store_id, "<STORE_ID>"),
        (store.store_id[:16], "<STORE_ID16>"), (source.plan_hash, "<PLAN_HASH>"), (source.plan_hash[:16], "<PLAN_HASH16>"),
    ):
        text = text.replace(value, mark)
    if os.environ.get("STICC_UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()


def test_generated_runner_is_valid_python_with_the_plan_in_its_header(tiny_bert_store):
    store = Store.open(tiny_bert_store)
    plan = _mixed_plan(store)
    source = emit_runner(store, plan, tiny_bert_store)
    compile(source.text, "runner.py", "exec")
    assert source.plan_hash in source.text and store.store_id in source.text
    assert "3/8 shards kept" in source.text and "1 preloaded" in source.text


def test_the_schedule_has_loads_only_for_kept_shards(tiny_bert_store):
    """Codegen's schedule is the shard graph's: kept shards only, chunks fed by their shards, blocks
    in model order."""
    store = Store.open(tiny_bert_store)
    plan = _mixed_plan(store)
    graph = build_graph(store_shape(store), plan.shards_per_chunk, plan.targets.seq_len)
    blocks = graph.schedule(by_position(plan.shards))
    loads = sorted((b.layer, m.index, b.part.value) for b in blocks for c in b.chunks for m in c.members)
    assert loads == sorted((0, i, p) for i in (0, 2, 3) for p in ("attn", "ffn"))
    assert [m.preload for b in blocks for c in b.chunks for m in c.members if (b.layer, m.index) == (0, 3)] == [True, True]
    chunk_of_2 = next(c.node for c in blocks[0].chunks if 2 in c.node.indices)
    assert set(graph.nx.successors(("shard", 0, 2))) == {chunk_of_2.key, ("chunk", 0, "ffn", chunk_of_2.indices[0])}
    assert [(b.layer, b.part) for b in blocks] == [(0, "attn"), (0, "ffn"), (1, "attn"), (1, "ffn")]
    assert [m.index for c in blocks[0].chunks for m in c.members] == [0, 2, 3] and blocks[2].chunks == ()
