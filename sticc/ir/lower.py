"""Lowering: store + device profile + importance profile + targets -> the shard graph with costs.

The result, a `Problem`, is the single input of every solver and of the simulator. Its networkx
graph has one node per shard (every version's bytes, IO and decode time, and fidelity loss), one
node per chunk slot (a fixed group of `shards_per_chunk` shard indices of one layer block, with its
compute time and scratch bytes by how many of its shards are kept), one node per block join, and
the embedding; edges are data dependencies, in the order compute consumes them.

Costs are uniform across the shards of a part (every piece of a part has the same shape), so the
per-part tables in `PartCosts` are what solvers read; the graph carries them on its nodes for
inspection and for the report. All times are in seconds, all sizes in bytes. With a `percentile`,
every duration is the device's at that percentile of calls (`DeviceProfile.quantile_factor`): what
the planner plans to; without, the median.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from sticc.base.schema import PARTS
from sticc.ir.plan import (
    ShardChoice,
    header_extents,
    member_order,
    slot_groups,
)
from sticc.model.sharding import default_shards_per_chunk, piece_shape
from sticc.model.store import Store
from sticc.profile.device import DeviceProfile
from sticc.profile.importance import ImportanceProfile
from sticc.runtime.core import READ_ALIGN_BYTES, align_up, decoded_chunk_nbytes, pinned_nbytes
from sticc.runtime.encoder import embed_rows_nbytes


@dataclass(frozen=True)
class PartCosts:
    """What one piece of `part` costs at each bitwidth, and one chunk by its number of kept shards."""

    part: str
    weights: int  # weight count of one piece
    stored_nbytes: dict[int, int]  # by bits: the piece as stored
    slot_nbytes: dict[int, int]  # by bits: the piece as held (ring or pinned) and read: whole read units
    read_s: dict[int, float]  # by bits: one streamed piece's read (IO lane)
    check_s: dict[int, float]  # by bits: its checksum, after the read (IO lane)
    decode_call_s: dict[int, float]  # by bits: fixed cost of dequantizing one run (compute lane)
    decode_piece_s: dict[int, float]  # by bits: per piece in a run (compute lane)
    decoded_nbytes: tuple[int, ...]  # by kept shards in a chunk, 0..shards_per_chunk: the chunk dequantized (read units)
    compute_s: tuple[float, ...]  # by kept shards in a chunk, 0..shards_per_chunk: its kernel
    join_s: float  # the block's join (residual + LayerNorm), paid even with every shard dropped


@dataclass(frozen=True)
class ChunkSlot:
    layer: int
    part: str
    indices: tuple[int, ...]  # the shard indices whose kept pieces this chunk holds


@dataclass(frozen=True)
class Problem:
    """A planning instance: the model's shard graph with costs, and the targets."""

    model: str
    store_id: str
    layers: int
    shards_per_layer: int
    shards_per_chunk: int
    bits: tuple[int, ...]  # stored bitwidths, ascending; 0 (dropped) is always allowed too
    parts: dict[str, PartCosts]
    slots: tuple[ChunkSlot, ...]  # in load and compute order
    loss: dict[tuple[int, int], dict[int, float]]  # (layer, index) -> {bits: fidelity loss}; 0 = dropped
    header_nbytes: int  # the headers as the runner pins them (read units)
    embed_scratch_nbytes: int  # one call's embedding rows in the scratch (read units)
    embed_io_nbytes: int  # bytes of one call's embedding rows read
    embed_s: float
    io_chunk_overhead_s: float
    handover_s: float  # a loaded chunk reaches a waiting compute lane this much later
    interference: float  # a chunk's compute takes this many seconds more per second of its IO work
    chunk_overhead_s: float  # the compute lane's steps around every chunk
    cap_Bps: float | None  # emulated flash bandwidth, or None
    latency_s: float | None  # targets
    memory_bytes: int | None
    seq_len: int
    percentile: int | None  # durations at this percentile of calls (None: the median)
    graph: nx.DiGraph

    @property
    def positions(self) -> list[tuple[int, int]]:
        return [(layer, index) for layer in range(self.layers) for index in range(self.shards_per_layer)]

    def importance(self, layer: int, index: int, bits: int) -> float:
        losses = self.loss[(layer, index)]
        return losses[0] - losses[bits]

    def objective(self, choices: dict[tuple[int, int], ShardChoice]) -> float:
        """Summed importance of a plan: what solvers maximize."""
        return sum(self.importance(layer, index, c.bits) for (layer, index), c in choices.items())

    def fidelity_loss(self, choices: dict[tuple[int, int], ShardChoice]) -> float:
        return sum(self.loss[position][c.bits] for position, c in choices.items())


def headers_pinned_nbytes(store: Store) -> int:
    """The headers' share of the pinned region (`sticc.runtime.core.pinned_nbytes` with no chunk)."""
    return pinned_nbytes((), tuple(e.nbytes for e in header_extents(store)))


def lower(
    store: Store,
    device: DeviceProfile,
    importance: ImportanceProfile,
    seq_len: int,
    latency_s: float | None,
    memory_bytes: int | None,
    shards_per_chunk: int | None = None,
    percentile: int | None = None,
) -> Problem:
    """The shard graph of `store` with the costs of `device` (at `percentile` of calls, or the
    median) and the losses of `importance`."""
    device.check_store(store)
    importance.check_store(store)
    spec = store.spec
    spc = shards_per_chunk or default_shards_per_chunk(store.shards_per_layer)
    factor = 1.0 if percentile is None else device.quantile_factor(percentile)
    parts = {}
    for part in PARTS:
        shape = piece_shape(spec, store.shards_per_layer, part)
        weights = shape.rows * shape.cols
        layouts = {bits: store.version(0, 0, part, bits).layout for bits in store.bits}
        decoded = [0] + [align_up(decoded_chunk_nbytes(n, weights, shape.bias_len), READ_ALIGN_BYTES) for n in range(1, spc + 1)]
        parts[part] = PartCosts(
            part=part,
            weights=weights,
            stored_nbytes={bits: layout.nbytes for bits, layout in layouts.items()},
            slot_nbytes={bits: layout.slot_nbytes for bits, layout in layouts.items()},
            read_s={bits: factor * device.read_s(layout.slot_nbytes) for bits, layout in layouts.items()},
            check_s={bits: factor * device.check_s(layout.nbytes) for bits, layout in layouts.items()},
            decode_call_s={bits: factor * device.decode_call_s(bits) for bits in store.bits},
            decode_piece_s={bits: factor * weights * device.decode_weight_s(bits) for bits in store.bits},
            decoded_nbytes=tuple(decoded),
            compute_s=tuple(factor * device.chunk_s(part, n, seq_len) for n in range(spc + 1)),
            join_s=factor * device.join_s(part, seq_len),
        )
    slots = tuple(
        ChunkSlot(layer, part, group)
        for layer in range(spec.layers) for part in PARTS for group in slot_groups(store.shards_per_layer, spc)
    )
    rows = embed_rows_nbytes(spec.hidden, seq_len, spec.vocab)
    problem = Problem(
        model=spec.name, store_id=store.store_id, layers=spec.layers, shards_per_layer=store.shards_per_layer,
        shards_per_chunk=spc, bits=tuple(sorted(store.bits)), parts=parts, slots=slots,
        loss={position: dict(losses) for position, losses in importance.loss.items()},
        header_nbytes=headers_pinned_nbytes(store), embed_scratch_nbytes=align_up(rows, READ_ALIGN_BYTES),
        embed_io_nbytes=rows, embed_s=factor * device.embed_time_s(seq_len),
        io_chunk_overhead_s=factor * device.io_chunk_s, handover_s=factor * device.handover_s,
        interference=device.interference, chunk_overhead_s=factor * device.compute_chunk_s,
        cap_Bps=device.emulated_bandwidth_Bps, latency_s=latency_s, memory_bytes=memory_bytes, seq_len=seq_len,
        percentile=percentile, graph=nx.DiGraph(),
    )
    _build_graph(problem)
    return problem


def _build_graph(problem: Problem) -> None:
    graph = problem.graph
    graph.add_node(("embed",), kind="compute", duration_s=problem.embed_s, scratch_nbytes=problem.embed_scratch_nbytes)
    for layer, index in problem.positions:
        versions = {
            bits: {
                part: {"slot_nbytes": c.slot_nbytes[bits], "read_s": c.read_s[bits], "decode_s": c.decode_piece_s[bits]}
                for part, c in problem.parts.items()
            }
            for bits in problem.bits
        }
        graph.add_node(("shard", layer, index), kind="shard", versions=versions, loss=problem.loss[(layer, index)])
    previous = ("embed",)
    for layer in range(problem.layers):
        for part in PARTS:
            costs = problem.parts[part]
            block = ("join", layer, part)
            graph.add_node(block, kind="compute", duration_s=costs.join_s)
            for slot in (s for s in problem.slots if s.layer == layer and s.part == part):
                node = ("chunk", layer, part, slot.indices[0])
                graph.add_node(node, kind="chunk", indices=slot.indices, compute_s=costs.compute_s, decoded_nbytes=costs.decoded_nbytes)
                for index in slot.indices:
                    graph.add_edge(("shard", layer, index), node)
                graph.add_edge(previous, node)
                previous = node
            graph.add_edge(previous, block)
            previous = block
    graph.add_node(("output",), kind="compute", duration_s=0.0)
    graph.add_edge(previous, ("output",))


def chunk_members(problem: Problem, slot: ChunkSlot, choices: dict[tuple[int, int], ShardChoice]) -> list[ShardChoice]:
    """The kept shards of a chunk slot, in the runner's member order (see `sticc.ir.plan.member_order`)."""
    return member_order([choices[(slot.layer, index)] for index in slot.indices if choices[(slot.layer, index)].bits])
