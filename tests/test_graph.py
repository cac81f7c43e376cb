"""The shard graph (sticc/ir/graph.py): its structure, its validator, and that it carries what
the profiles say (every later stage reads costs and losses off its nodes)."""

from __future__ import annotations

import dataclasses

import pytest
from planning_helpers import synthetic_device, synthetic_importance

from sticc.base.schema import PARTS, Part
from sticc.ir.graph import (
    ChunkNode,
    GraphError,
    JoinNode,
    NodeKind,
    Phase,
    ShardChoice,
    ShardNode,
    build_graph,
    by_position,
    store_shape,
)
from sticc.ir.lower import lower, lower_shape
from sticc.ir.plan import SolverInfo, make_plan
from sticc.model.sharding import piece_shape
from sticc.model.store import Store, write_store


@pytest.fixture(scope="module")
def small_store(tmp_path_factory, tiny_bert) -> Store:
    """2 layers x 4 shards, bits 4, 8 and 32."""
    out = tmp_path_factory.mktemp("stores") / "tiny-2x4"
    write_store(tiny_bert, out, bits=(4, 8, 32), shards_per_layer=4)
    return Store.open(out)


def _graph(store, phase=Phase.ENCODE, shards_per_chunk=2, seq_len=16, context=0):
    return build_graph(store_shape(store), shards_per_chunk, seq_len, phase, context)


def test_an_encoder_graph_chains_blocks_and_feeds_every_chunk_from_its_shards(small_store):
    graph = _graph(small_store)
    layers, spl = small_store.spec.layers, small_store.shards_per_layer
    kinds = [r.kind for r in graph.compute_chain]
    assert kinds[0] is NodeKind.EMBED and kinds[-1] is NodeKind.OUTPUT
    assert [(s.layer, s.part) for s in graph.steps if isinstance(s, JoinNode)] == [(layer, p) for layer in range(layers) for p in PARTS]
    assert len(graph.chunks) == layers * len(PARTS) * -(-spl // 2)
    for chunk in graph.chunks:
        for index in chunk.indices:
            assert graph.nx.has_edge(("shard", chunk.layer, index), chunk.key)
    assert len(graph.records(NodeKind.SHARD)) == layers * spl
    assert len(graph.records(NodeKind.HEADER)) == layers + 1
    assert not graph.records(NodeKind.KV_CACHE) and not any(c.part is Part.LM_HEAD for c in graph.chunks)
    with pytest.raises(GraphError, match="without an LM head"):
        _graph(small_store, Phase.PREFILL)


@pytest.mark.parametrize("phase", [Phase.PREFILL, Phase.DECODE])
def test_decoder_graphs_have_kv_caches_read_by_attention_and_an_lm_head(small_store, tiny_decoders, phase):
    seq_len, context = (12, 0) if phase is Phase.PREFILL else (1, 40)
    decoder = Store.open(tiny_decoders["gpt2"][1])
    graph = _graph(decoder, phase, seq_len=seq_len, context=context)
    spec = decoder.spec
    caches = graph.records(NodeKind.KV_CACHE)
    assert sorted(kv.layer for kv in caches) == list(range(spec.layers))
    for kv in caches:
        assert kv.tokens == seq_len + context and kv.nbytes_per_token == 2 * spec.kv_heads * spec.head_dim * 4
        readers = [graph.record(k) for k in graph.nx.successors(kv.key)]
        assert readers and all(r.part is Part.ATTN and r.layer == kv.layer for r in readers)
    assert graph.kv_cache_nbytes == spec.layers * (seq_len + context) * 2 * spec.kv_heads * spec.head_dim * 4
    # the LM head is the block after the last layer: its vocabulary slices' chunks, then its join
    lm_head = [c for c in graph.chunks if c.part is Part.LM_HEAD]
    assert [i for c in lm_head for i in c.indices] == list(range(decoder.lm_head_shards)) and decoder.lm_head_shards > 1
    assert graph.compute_chain[-2] == graph.join(spec.layers, Part.LM_HEAD)
    assert set(graph.nx.successors(("header", -1))) == {lm_head[0].key}  # the final norm
    assert graph.embed.io_nbytes == 4 * spec.hidden * 2 * seq_len  # distinct word and position rows


def _broken(graph, edit) -> None:
    edit(graph)
    graph.__dict__.pop("compute_chain", None)
    graph.__dict__.pop("steps", None)
    graph.__dict__.pop("chunks", None)
    graph.validate()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda g: g.nx.add_edge(("output",), ("embed",)), "cycle"),
        (lambda g: g.nx.remove_edge(("shard", 0, 1), next(iter(g.nx.successors(("shard", 0, 1))))), "must feed one chunk per part"),
        (lambda g: g.nx.remove_node(("shard", 1, 0)), "missing"),
        (lambda g: g.nx.nodes[("embed",)].update(record=ShardNode(0, 0)), "does not carry its own record"),
        (lambda g: g.nx.remove_edge(g.chunks[0].key, g.chunks[1].key), "not chained"),
        (lambda g: setattr(g, "info", dataclasses.replace(g.info, shards_per_chunk=1)), "must hold the chunks"),
        (lambda g: setattr(g, "info", dataclasses.replace(g.info, phase=Phase.DECODE)), "needs KV caches and an LM head"),
        (lambda g: g.nx.remove_edge(("header", 1), ("join", 1, "ffn")), "must feed its layer's joins"),
        (lambda g: g.nx.add_edge(("header", -1), g.chunks[0].key), "must feed the embedding"),
        (lambda g: g.nx.add_edge(("shard", 0, 0), ("join", 0, "attn")), "must feed one chunk per part"),
        (lambda g: g.nx.nodes[("join", 0, "attn")].update(record=JoinNode(0, Part.ATTN, 1e-3)), "costs must be on every"),
        (lambda g: g.nx.nodes[("shard", 0, 0)].update(record=ShardNode(0, 0, {0: 1.0, 4: 0.5})), "has losses for bits"),
    ],
)
def test_the_validator_names_a_broken_invariant(small_store, edit, message):
    graph = _graph(small_store)
    with pytest.raises(GraphError, match=message):
        _broken(graph, edit)


def test_lowering_puts_the_profiles_on_the_nodes(tiny_decoders, small_store):
    device, importance = synthetic_device(small_store), synthetic_importance(small_store)
    problem = lower(small_store, device, importance, 16, None, None, shards_per_chunk=2)
    graph = problem.graph
    graph.validate()
    spec, spl = small_store.spec, small_store.shards_per_layer
    for chunk in graph.chunks:
        costs = graph.costs(chunk)
        assert costs.part is chunk.part
        shape = piece_shape(spec, spl, chunk.part)
        for bits in small_store.bits:
            layout = small_store.version(0, 0, chunk.part, bits).layout
            assert costs.read_s[bits] == device.read_s(layout.slot_nbytes)
            assert costs.decode_piece_s[bits] == shape.rows * shape.cols * device.decode_weight_s(bits)
        assert costs.compute_s[2] == device.chunk_s(chunk.part, 2, 16)
    assert graph.join(1, Part.FFN).duration_s == device.join_s("ffn", 16)
    assert graph.embed.duration_s == device.embed_time_s(16)
    assert graph.lanes.handover_s == device.handover_s and graph.lanes.cap_Bps == device.emulated_bandwidth_Bps
    for position in graph.positions:
        assert dict(graph.loss(position)) == dict(importance.loss[position])
    bare = _graph(small_store)
    with pytest.raises(GraphError, match="no costs"):
        bare.costs(bare.chunks[0])
    with pytest.raises(GraphError, match="no losses"):
        bare.loss((0, 0))
    decode = _graph(Store.open(tiny_decoders["llama"][1]), Phase.DECODE, seq_len=1, context=8)
    with pytest.raises(GraphError, match="one token"):
        _broken(decode, lambda g: setattr(g, "info", dataclasses.replace(g.info, seq_len=2)))


def test_a_plans_load_order_is_the_graphs_schedule(small_store):
    choices = [
        ShardChoice(layer, i, (0, 4, 8, 32)[(layer + i) % 4], preload=(layer, i) == (0, 3))
        for layer in range(small_store.spec.layers) for i in range(small_store.shards_per_layer)
    ]
    plan = make_plan(small_store, tuple(choices), SolverInfo("hand", "GIVEN"), seq_len=16, shards_per_chunk=2)
    graph = _graph(small_store, shards_per_chunk=2)
    blocks = graph.schedule(by_position(plan.shards))
    order = [(b.layer, m.index, b.part) for b in blocks for c in b.chunks for m in c.members]
    assert list(plan.load_order) == order
    for block in blocks:
        for chunk in block.chunks:
            assert isinstance(chunk.node, ChunkNode) and chunk.node.layer == block.layer and chunk.node.part is block.part
            assert [(m.bits, m.preload, m.index) for m in chunk.members] == sorted((m.bits, m.preload, m.index) for m in chunk.members)
            assert all(m.bits and m.index in chunk.node.indices for m in chunk.members)


def test_a_hand_made_shape_lowers_like_a_store(small_store):
    """`lower_shape` takes a model given by hand (examples/bench_solver.py does): the same graph as
    the store's, given the store's shape."""
    device, importance = synthetic_device(small_store), synthetic_importance(small_store)
    from_store = lower(small_store, device, importance, 16, None, None, shards_per_chunk=2)
    by_hand = lower_shape(store_shape(small_store), device, importance.loss, 16, None, None, 2)
    assert by_hand.graph.nx.nodes.keys() == from_store.graph.nx.nodes.keys()
    assert [c.costs for c in by_hand.graph.chunks] == [c.costs for c in from_store.graph.chunks]
    assert by_hand.graph.info == from_store.graph.info
