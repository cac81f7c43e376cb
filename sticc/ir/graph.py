"""The shard graph: the IR that lowering produces and every later stage reads.

`build_graph` lowers a store's structure for one phase and sequence length; `sticc.ir.lower`
builds the same graph with the device's costs and the shards' losses on its nodes. The solvers
(CP-SAT, greedy, exhaustive), the simulator, the pool's memory model (`sticc.ir.memory`) and
codegen read this graph for structure, sizes and costs, and nothing else; the reports render what
the simulator computed on it (plan.json). A plan is a `ShardChoice` per SHARD node;
`ShardGraph.schedule` applies it, giving the blocks, chunks and members in the order the runner
loads and computes them.

Nodes (networkx, keyed by tuples; attribute "record" holds the node's typed record):
  EMBED     ("embed",)                 EmbedNode: token, position and type embeddings (cold row reads)
  HEADER    ("header", L)              HeaderNode: unsplittable parameters, pinned at construction
                                       (L = -1: the global header)
  SHARD     ("shard", L, i)            ShardNode: a shard (heads + FFN slice) and its loss by bitwidth
  CHUNK     ("chunk", L, part, i0)     ChunkNode: the kernel over the kept pieces of a fixed group of
                                       shards of one block, with its part's costs
  JOIN      ("join", L, part)          JoinNode: the residual (and the post-LN norm) closing the block
  KV_CACHE  ("kv", L)                  KVCacheNode: decoders: layer L's cache, read by its attention
  OUTPUT    ("output",)                the last hidden state (or logits)
A decoder's LM head is the block after the last layer (L = layers, part "lm_head"): SHARD nodes
("shard", layers, i) for its vocabulary slices, its chunks, and a JOIN where every slice's logits
are written. Edges are data dependencies: every layer shard feeds one chunk per part of its layer,
an LM head slice one LM head chunk; the compute nodes (embed, chunks, joins, output) form one
chain in compute order; the global header feeds the embedding (encoders: its LayerNorm) or the
first LM head chunk (decoders: the final norm), a layer's header its joins; a KV cache feeds its
layer's attention chunks.

Every piece of a part has the same layout (`store_shape` checks), so the chunks of a part share
one `PieceSizes` record (always there) and one `PartCosts` record (the device's times; lowering
adds it). Times are in seconds, sizes in bytes.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property

import networkx as nx

from sticc.base.schema import PARTS, STRICT, Bits, Count, Part, with_config
from sticc.model.sharding import piece_shape, shard_positions, stored_parts
from sticc.model.store import Store
from sticc.runtime.core import READ_ALIGN_BYTES, align_up, decoded_chunk_nbytes, pinned_nbytes
from sticc.runtime.encoder import embed_rows_nbytes


class NodeKind(StrEnum):
    EMBED = "embed"
    HEADER = "header"
    SHARD = "shard"
    CHUNK = "chunk"
    JOIN = "join"
    KV_CACHE = "kv"
    OUTPUT = "output"


class Phase(StrEnum):
    """What one runner call does: an encoder's forward, a decoder's prompt, or one decoded token."""

    ENCODE = "encode"
    PREFILL = "prefill"
    DECODE = "decode"


# ----------------------------------------------------------------------------------------------
# What a plan decides per shard
# ----------------------------------------------------------------------------------------------


@with_config(STRICT)
@dataclass(frozen=True, order=True)
class ShardChoice:
    layer: Count
    index: Count
    bits: Bits  # 0: dropped
    preload: bool = False


Position = tuple[int, int]  # (layer, shard index)


def by_position(shards: Iterable[ShardChoice]) -> dict[Position, ShardChoice]:
    """{(layer, index): choice} for looking shards up by position."""
    return {(c.layer, c.index): c for c in shards}


def member_order(members: Iterable[ShardChoice]) -> list[ShardChoice]:
    """A chunk's kept shards in the order the runner loads and stacks them: by bits, streamed
    before preloaded, then by index, so the pieces of one bitwidth and home are dequantized in one
    run and adjacent streamed pieces are read with one read."""
    return sorted(members, key=lambda c: (c.bits, c.preload, c.index))


def slot_groups(shards_per_layer: int, shards_per_chunk: int) -> list[tuple[int, ...]]:
    """The fixed index groups of a layer block: a chunk holds the kept shards of one group, so
    which chunk a shard lands in never depends on which other shards are dropped."""
    return [
        tuple(range(start, min(start + shards_per_chunk, shards_per_layer)))
        for start in range(0, shards_per_layer, shards_per_chunk)
    ]


# ----------------------------------------------------------------------------------------------
# Node records
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PieceLayout:
    """One stored piece of a part, the same for every shard of every layer (`store_shape` checks)."""

    weights: int  # weight count
    bias_len: int
    stored_nbytes: Mapping[int, int]  # by bits: as stored
    slot_nbytes: Mapping[int, int]  # by bits: as held (ring or pinned) and read: whole read units


@dataclass(frozen=True)
class PieceSizes:
    """The bytes of a part's pieces and chunks, device-independent: on every chunk node."""

    part: Part
    weights: int  # weight count of one piece
    stored_nbytes: Mapping[int, int]  # by bits: the piece as stored
    slot_nbytes: Mapping[int, int]  # by bits: the piece as held (ring or pinned) and read: whole read units
    decoded_nbytes: tuple[int, ...]  # by kept shards in a chunk, 0..shards_per_chunk: the chunk dequantized (read units)


@dataclass(frozen=True)
class PartCosts:
    """What one piece of `part` costs at each bitwidth on a device, and one chunk by its number of
    kept shards (the sizes are the chunk node's `PieceSizes`, read through)."""

    sizes: PieceSizes
    read_s: Mapping[int, float]  # by bits: one streamed piece's read (IO lane)
    check_s: Mapping[int, float]  # by bits: its checksum, after the read (IO lane)
    decode_call_s: Mapping[int, float]  # by bits: fixed cost of dequantizing one run (compute lane)
    decode_piece_s: Mapping[int, float]  # by bits: per piece in a run (compute lane)
    compute_s: tuple[float, ...]  # by kept shards in a chunk, 0..shards_per_chunk: its kernel

    @property
    def part(self) -> Part:
        return self.sizes.part

    @property
    def weights(self) -> int:
        return self.sizes.weights

    @property
    def stored_nbytes(self) -> Mapping[int, int]:
        return self.sizes.stored_nbytes

    @property
    def slot_nbytes(self) -> Mapping[int, int]:
        return self.sizes.slot_nbytes

    @property
    def decoded_nbytes(self) -> tuple[int, ...]:
        return self.sizes.decoded_nbytes


@dataclass(frozen=True)
class EmbedNode:
    scratch_nbytes: int  # one call's embedding rows in the scratch (read units)
    io_nbytes: int  # bytes of one call's embedding rows read
    duration_s: float | None = None  # None in a graph without costs

    kind = NodeKind.EMBED

    @property
    def key(self) -> tuple:
        return ("embed",)


@dataclass(frozen=True)
class HeaderNode:
    layer: int  # -1: the global header
    nbytes: int  # as stored

    kind = NodeKind.HEADER

    @property
    def key(self) -> tuple:
        return ("header", self.layer)


@dataclass(frozen=True)
class ShardNode:
    layer: int
    index: int
    loss: Mapping[int, float] | None = None  # bits -> fidelity loss (0: dropped); None without importance

    kind = NodeKind.SHARD

    @property
    def key(self) -> tuple:
        return ("shard", self.layer, self.index)


@dataclass(frozen=True)
class ChunkNode:
    layer: int
    part: Part
    indices: tuple[int, ...]  # the shard indices whose kept pieces this chunk holds
    sizes: PieceSizes
    costs: PartCosts | None = None  # None in a graph without costs

    kind = NodeKind.CHUNK

    @property
    def key(self) -> tuple:
        return ("chunk", self.layer, self.part.value, self.indices[0])


@dataclass(frozen=True)
class JoinNode:
    layer: int
    part: Part
    duration_s: float | None = None  # paid even with every shard dropped; None without costs

    kind = NodeKind.JOIN

    @property
    def key(self) -> tuple:
        return ("join", self.layer, self.part.value)


@dataclass(frozen=True)
class KVCacheNode:
    """A decoder layer's key/value cache for `tokens` positions: read by the layer's attention."""

    layer: int
    nbytes_per_token: int
    tokens: int

    kind = NodeKind.KV_CACHE

    @property
    def key(self) -> tuple:
        return ("kv", self.layer)


@dataclass(frozen=True)
class OutputNode:
    kind = NodeKind.OUTPUT

    @property
    def key(self) -> tuple:
        return ("output",)


Record = EmbedNode | HeaderNode | ShardNode | ChunkNode | JoinNode | KVCacheNode | OutputNode
Step = ChunkNode | JoinNode  # what the compute lane runs for a layer block


@dataclass(frozen=True)
class Lanes:
    """The engine's per-chunk constants on this device (`sticc.profile.device.DeviceProfile`)."""

    io_chunk_overhead_s: float  # the IO lane's work per loaded chunk
    handover_s: float  # a loaded chunk reaches a waiting compute lane this much later
    interference: float  # a chunk's compute takes this many seconds more per second of its IO work
    chunk_overhead_s: float  # the compute lane's steps around every chunk
    cap_Bps: float | None  # emulated flash bandwidth, or None


@dataclass(frozen=True)
class GraphInfo:
    model: str
    store_id: str
    phase: Phase
    seq_len: int  # tokens per call (PREFILL: the prompt; DECODE: 1, with `context` cached)
    layers: int
    shards_per_layer: int
    shards_per_chunk: int
    bits: tuple[int, ...]  # stored bitwidths, ascending; 0 (dropped) is always allowed too
    context: int = 0  # DECODE: cached positions
    lm_head_shards: int = 0  # decoders: the LM head's vocabulary slices
    percentile: int | None = None  # durations at this percentile of calls (None: the median)
    lanes: Lanes | None = None  # None in a graph without costs


# ----------------------------------------------------------------------------------------------
# What a plan makes of the graph
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduledChunk:
    node: ChunkNode
    members: tuple[ShardChoice, ...]  # kept shards, in member order


@dataclass(frozen=True)
class Block:
    """A layer block as the runner runs it: its non-empty chunks, then its join."""

    join: JoinNode
    chunks: tuple[ScheduledChunk, ...]

    @property
    def layer(self) -> int:
        return self.join.layer

    @property
    def part(self) -> Part:
        return self.join.part


def load_order(blocks: Iterable[Block]) -> tuple[tuple[int, int, Part], ...]:
    """(layer, index, part) of every kept piece of a schedule, in the order it is loaded and consumed."""
    return tuple((block.layer, m.index, block.part) for block in blocks for chunk in block.chunks for m in chunk.members)


class GraphError(ValueError):
    """A shard graph that breaks an invariant of the IR (a bug in whoever built it)."""


# ----------------------------------------------------------------------------------------------
# The graph
# ----------------------------------------------------------------------------------------------


class ShardGraph:
    """A networkx DiGraph (`.nx`) with typed records on its nodes and typed accessors."""

    def __init__(self, info: GraphInfo) -> None:
        self.info = info
        self.nx = nx.DiGraph()

    # -- building ----------------------------------------------------------------------------

    def add(self, record: Record, after: Iterable[Record] = ()) -> Record:
        """Add `record`'s node with edges from the nodes of `after`."""
        self.nx.add_node(record.key, record=record, kind=record.kind)
        for source in after:
            self.nx.add_edge(source.key, record.key)
        return record

    # -- reading -----------------------------------------------------------------------------

    def record(self, key: tuple) -> Record:
        return self.nx.nodes[key]["record"]

    def records(self, kind: NodeKind) -> list[Record]:
        return [data["record"] for _, data in self.nx.nodes(data=True) if data["kind"] is kind]

    @cached_property
    def compute_chain(self) -> tuple[Record, ...]:
        """The compute nodes in the order the compute lane runs them (the chain's topological order)."""
        compute = (NodeKind.EMBED, NodeKind.CHUNK, NodeKind.JOIN, NodeKind.OUTPUT)
        chain = self.nx.subgraph([k for k, d in self.nx.nodes(data=True) if d["kind"] in compute])
        return tuple(self.record(key) for key in nx.topological_sort(chain))

    @cached_property
    def steps(self) -> tuple[Step, ...]:
        """Chunks and joins in compute order: the layer blocks."""
        return tuple(r for r in self.compute_chain if isinstance(r, ChunkNode | JoinNode))

    @cached_property
    def chunks(self) -> tuple[ChunkNode, ...]:
        """Every chunk node in compute (and load) order."""
        return tuple(r for r in self.steps if isinstance(r, ChunkNode))

    def join(self, layer: int, part: Part) -> JoinNode:
        return self.record(("join", layer, Part(part).value))

    @property
    def kv_cache_nbytes(self) -> int:
        """Decoders: the KV caches' bytes at this call's positions (budgeted apart from the weights)."""
        return sum(kv.nbytes_per_token * kv.tokens for kv in self.records(NodeKind.KV_CACHE))

    @cached_property
    def last_chunks(self) -> frozenset[tuple]:
        """Keys of the chunks a join follows in compute order: each block's last chunk."""
        return frozenset(a.key for a, b in itertools.pairwise(self.steps) if isinstance(a, ChunkNode) and isinstance(b, JoinNode))

    @property
    def embed(self) -> EmbedNode:
        return self.record(("embed",))

    @cached_property
    def header_nbytes(self) -> int:
        """The headers as the runner pins them: each segment-aligned, the whole in read units
        (`sticc.runtime.core.pinned_nbytes` with no chunk)."""
        return pinned_nbytes((), tuple(h.nbytes for h in self.records(NodeKind.HEADER)))

    @property
    def lanes(self) -> Lanes:
        if self.info.lanes is None:
            raise GraphError("this shard graph carries no costs (lowered without a device profile)")
        return self.info.lanes

    @cached_property
    def positions(self) -> tuple[Position, ...]:
        """Every SHARD node's (layer, index): the layers' shards, then a decoder's LM head slices."""
        return tuple(shard_positions(self.info.layers, self.info.shards_per_layer, self.info.lm_head_shards))

    def shard(self, position: Position) -> ShardNode:
        return self.record(("shard", *position))

    def loss(self, position: Position) -> Mapping[int, float]:
        """The shard's fidelity loss by bitwidth (0: dropped)."""
        return self._losses[position]

    @cached_property
    def _losses(self) -> dict[Position, Mapping[int, float]]:
        """Every SHARD node's losses by position, read once (planners look them up in inner loops)."""
        losses = {(s.layer, s.index): s.loss for s in self.records(NodeKind.SHARD)}
        if any(loss is None for loss in losses.values()):
            raise GraphError("this shard graph carries no losses (lowered without an importance profile)")
        return losses

    def costs(self, chunk: ChunkNode) -> PartCosts:
        if chunk.costs is None:
            raise GraphError("this shard graph carries no costs (lowered without a device profile)")
        return chunk.costs

    @cached_property
    def part_costs(self) -> Mapping[Part, PartCosts]:
        """The costs every chunk of a part shares, by part (read off the chunk nodes)."""
        return {chunk.part: self.costs(chunk) for chunk in self.chunks}

    def chunk_members(self, chunk: ChunkNode, choices: Mapping[Position, ShardChoice]) -> list[ShardChoice]:
        """The kept shards of `chunk` under `choices`, in the runner's member order."""
        return member_order(c for c in (choices[(chunk.layer, i)] for i in chunk.indices) if c.bits)

    def schedule(self, choices: Mapping[Position, ShardChoice]) -> tuple[Block, ...]:
        """The layer blocks in compute order with the non-empty chunks `choices` leave."""
        blocks, pending = [], []
        for step in self.steps:
            if isinstance(step, ChunkNode):
                members = self.chunk_members(step, choices)
                if members:
                    pending.append(ScheduledChunk(step, tuple(members)))
            else:
                blocks.append(Block(step, tuple(pending)))
                pending = []
        return tuple(blocks)

    # -- checking ----------------------------------------------------------------------------

    def validate(self) -> None:
        """Raise `GraphError` naming the first broken invariant (see the module docstring)."""
        g, info = self.nx, self.info
        if not nx.is_directed_acyclic_graph(g):
            raise GraphError("the shard graph has a cycle")
        for key, data in g.nodes(data=True):
            record = data.get("record")
            if record is None or record.key != key or data["kind"] is not record.kind:
                raise GraphError(f"node {key} does not carry its own record")
        chain = self.compute_chain
        for a, b in itertools.pairwise(chain):
            if not g.has_edge(a.key, b.key):
                raise GraphError(f"compute nodes {a.key} and {b.key} are not chained")
        if not chain or chain[0].kind is not NodeKind.EMBED or chain[-1].kind is not NodeKind.OUTPUT:
            raise GraphError("the compute chain must run from the embedding to the output")
        decoder = info.phase is not Phase.ENCODE
        if decoder != bool(info.lm_head_shards) or decoder != bool(self.records(NodeKind.KV_CACHE)):
            raise GraphError(f"a {info.phase} graph {'needs' if decoder else 'has no'} KV caches and an LM head")
        expected = [(layer, part) for layer in range(info.layers) for part in PARTS]
        expected += [(info.layers, Part.LM_HEAD)] if decoder else []
        if [(s.layer, s.part) for s in self.steps if isinstance(s, JoinNode)] != expected:
            raise GraphError("the blocks must run layer by layer, attention before FFN, then a decoder's LM head")
        block_chunks: dict[tuple[int, Part], list[tuple[int, ...]]] = {}
        for chunk in self.chunks:
            block_chunks.setdefault((chunk.layer, chunk.part), []).append(chunk.indices)
        for layer, part in expected:
            count = info.lm_head_shards if part is Part.LM_HEAD else info.shards_per_layer
            groups = slot_groups(count, info.shards_per_chunk)
            if block_chunks.get((layer, part), []) != groups:
                raise GraphError(f"block {(layer, part)} must hold the chunks {groups}, has {block_chunks.get((layer, part))}")
        for layer, index in self.positions:
            shard = ("shard", layer, index)
            if shard not in g:
                raise GraphError(f"shard {(layer, index)} is missing")
            fed = [self.record(k) for k in g.successors(shard)]
            parts = [Part.LM_HEAD] if layer == info.layers else sorted(PARTS)
            if sorted((r.kind, getattr(r, "layer", None), getattr(r, "part", "")) for r in fed) != [
                (NodeKind.CHUNK, layer, part) for part in parts
            ]:
                raise GraphError(f"shard {(layer, index)} must feed one chunk per part of its block")
            loss = self.shard((layer, index)).loss
            if loss is not None and set(loss) != {0, *info.bits}:
                raise GraphError(f"shard {(layer, index)} has losses for bits {sorted(loss)}, not {[0, *info.bits]}")
        first_lm_head = next((c.key for c in self.chunks if c.part is Part.LM_HEAD), None)
        for header in self.records(NodeKind.HEADER):
            fed = set(g.successors(header.key))
            if header.layer >= 0:
                wanted, what = {self.join(header.layer, part).key for part in PARTS}, "its layer's joins"
            elif decoder:
                wanted, what = {first_lm_head}, "the first LM head chunk (the final norm)"
            else:
                wanted, what = {self.embed.key}, "the embedding"
            if fed != wanted:
                raise GraphError(f"header {header.key} must feed {what}")
        if info.phase is Phase.DECODE and info.seq_len != 1:
            raise GraphError(f"a decode graph runs one token, not {info.seq_len}")
        durations = [r.duration_s for r in [*self.records(NodeKind.JOIN), self.embed]]
        costed = {chunk.costs is not None for chunk in self.chunks} | {info.lanes is not None} | {d is not None for d in durations}
        if len(costed) > 1:
            raise GraphError("costs must be on every chunk, join, the embedding and the lanes, or on none")
        for chunk in self.chunks:
            if chunk.sizes.part is not chunk.part or len(chunk.sizes.decoded_nbytes) != info.shards_per_chunk + 1:
                raise GraphError(f"chunk {chunk.key} carries sizes of another part or chunk size")
            if chunk.costs is not None and (
                set(chunk.costs.read_s) != set(info.bits) or chunk.costs.sizes != chunk.sizes
                or len(chunk.costs.compute_s) != info.shards_per_chunk + 1
            ):
                raise GraphError(f"chunk {chunk.key} carries costs of other sizes, bitwidths or chunk size")
        for kv in self.records(NodeKind.KV_CACHE):
            for successor in g.successors(kv.key):
                record = self.record(successor)
                if not (isinstance(record, ChunkNode) and record.part is Part.ATTN and record.layer == kv.layer):
                    raise GraphError(f"KV cache {kv.key} may feed only its layer's attention chunks, feeds {successor}")


# ----------------------------------------------------------------------------------------------
# Lowering a store's structure
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeCosts:
    """The costed records `sticc.ir.lower` hands `build_graph` (all None: a graph without costs)."""

    parts: Mapping[Part, PartCosts] | None = None
    join_s: Mapping[Part, float] | None = None
    embed_s: float | None = None
    loss: Mapping[Position, Mapping[int, float]] | None = None
    lanes: Lanes | None = None
    percentile: int | None = None


@dataclass(frozen=True)
class GraphShape:
    """The facts of a model the graph's structure depends on (`store_shape` reads them off a store;
    a benchmark may give them by hand)."""

    model: str
    store_id: str
    layers: int
    shards_per_layer: int
    bits: tuple[int, ...]  # stored bitwidths
    hidden: int
    vocab: int
    kv_nbytes_per_token: int  # decoders: one layer's keys and values per position (fp32)
    header_nbytes: tuple[int, ...]  # the global header, then one per layer, as stored
    pieces: Mapping[Part, PieceLayout]  # by part (a decoder's LM head slices too)
    lm_head_shards: int = 0  # decoders: the LM head's vocabulary slices
    position_rows: bool = True  # a call reads a position row per token (False: rotary positions)


def store_shape(store: Store) -> GraphShape:
    """The shape of `store`; every stored piece of a part must have its part's layout."""
    spec = store.spec
    pieces = {}
    for part in stored_parts(store.lm_head_shards):
        shape = piece_shape(spec, store.shards_per_layer, part, store.lm_head_shards)
        first = spec.layers if part is Part.LM_HEAD else 0
        layouts = {bits: store.version(first, 0, part, bits).layout for bits in store.bits}
        layers = [spec.layers] if part is Part.LM_HEAD else range(spec.layers)
        indices = range(store.lm_head_shards if part is Part.LM_HEAD else store.shards_per_layer)
        for layer, index, bits in itertools.product(layers, indices, store.bits):
            if store.version(layer, index, part, bits).layout != layouts[bits]:
                raise GraphError(f"piece ({layer}, {index}, {part}) at {bits} bits is laid out unlike its part's others")
        pieces[part] = PieceLayout(
            shape.rows * shape.cols, shape.bias_len, {b: layout.nbytes for b, layout in layouts.items()},
            {b: layout.slot_nbytes for b, layout in layouts.items()},
        )
    return GraphShape(
        spec.name, store.store_id, spec.layers, store.shards_per_layer, tuple(sorted(store.bits)), spec.hidden, spec.vocab,
        2 * spec.kv_heads * spec.head_dim * 4, tuple(e.nbytes for e in (store.global_header, *store.layer_headers)), pieces,
        store.lm_head_shards, spec.position_rows > 0,
    )


def piece_sizes(shape: GraphShape, shards_per_chunk: int) -> dict[Part, PieceSizes]:
    """Every part's `PieceSizes` with chunks of up to `shards_per_chunk` shards."""
    out = {}
    for part, piece in shape.pieces.items():
        decoded = [0] + [
            align_up(decoded_chunk_nbytes(n, piece.weights, piece.bias_len), READ_ALIGN_BYTES)
            for n in range(1, shards_per_chunk + 1)
        ]
        out[part] = PieceSizes(part, piece.weights, piece.stored_nbytes, piece.slot_nbytes, tuple(decoded))
    return out


def build_graph(
    shape: GraphShape, shards_per_chunk: int, seq_len: int, phase: Phase = Phase.ENCODE, context: int = 0,
    costs: NodeCosts = NodeCosts(), scratch_tokens: int | None = None,
) -> ShardGraph:
    """The shard graph of a model of `shape` for one call of `phase` at `seq_len` tokens (DECODE:
    one token over `context` cached positions), with `costs` on its nodes when given; validated.
    The embedding's scratch holds `scratch_tokens` rows (default `seq_len`): a decoder's pool is
    made once, for its planned prompt, and every decode step runs in that same pool."""
    decoder = phase is not Phase.ENCODE
    if decoder != bool(shape.lm_head_shards):
        raise GraphError(f"a {phase} graph of a model {'without' if decoder else 'with'} an LM head")
    info = GraphInfo(
        shape.model, shape.store_id, phase, seq_len, shape.layers, shape.shards_per_layer, shards_per_chunk,
        tuple(sorted(shape.bits)), context=context, lm_head_shards=shape.lm_head_shards, percentile=costs.percentile,
        lanes=costs.lanes,
    )
    graph = ShardGraph(info)
    sizes = piece_sizes(shape, shards_per_chunk)
    rows = embed_rows_nbytes(shape.hidden, seq_len, shape.vocab, shape.position_rows)
    held = embed_rows_nbytes(shape.hidden, scratch_tokens or seq_len, shape.vocab, shape.position_rows)
    previous = graph.add(EmbedNode(align_up(held, READ_ALIGN_BYTES), rows, costs.embed_s))
    global_header = graph.add(HeaderNode(-1, shape.header_nbytes[0]))
    if not decoder:
        graph.nx.add_edge(global_header.key, previous.key)  # the embedding's LayerNorm
    headers = [graph.add(HeaderNode(layer, nbytes)) for layer, nbytes in enumerate(shape.header_nbytes[1:])]
    shards = {p: graph.add(ShardNode(*p, None if costs.loss is None else costs.loss[p])) for p in graph.positions}
    for layer in range(shape.layers):
        kv = graph.add(KVCacheNode(layer, shape.kv_nbytes_per_token, seq_len + context)) if decoder else None
        for part in PARTS:
            for group in slot_groups(shape.shards_per_layer, shards_per_chunk):
                chunk = ChunkNode(layer, part, group, sizes[part], None if costs.parts is None else costs.parts[part])
                sources = [previous, *(shards[(layer, i)] for i in group)]
                if kv is not None and part is Part.ATTN:
                    sources.append(kv)
                previous = graph.add(chunk, after=sources)
            join = JoinNode(layer, part, None if costs.join_s is None else costs.join_s[part])
            previous = graph.add(join, after=(previous, headers[layer]))
    if decoder:  # the final norm (in the global header), then the LM head's vocabulary slices
        lm_head = Part.LM_HEAD
        for number, group in enumerate(slot_groups(shape.lm_head_shards, shards_per_chunk)):
            chunk = ChunkNode(shape.layers, lm_head, group, sizes[lm_head], None if costs.parts is None else costs.parts[lm_head])
            sources = [previous, *(shards[(shape.layers, i)] for i in group)] + ([global_header] if number == 0 else [])
            previous = graph.add(chunk, after=sources)
        join = JoinNode(shape.layers, lm_head, None if costs.join_s is None else costs.join_s[lm_head])
        previous = graph.add(join, after=(previous,))
    graph.add(OutputNode(), after=(previous,))
    graph.validate()
    return graph
