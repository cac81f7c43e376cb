"""The weight bytes a plan's runner holds, from the shard graph: one definition of the pool.

The runner makes one pool at construction (`sticc.runtime.core.WeightPool`): [ring | scratch |
pinned]. `chunk_bytes` is what one scheduled chunk takes of it (from its node's `PieceSizes`);
`pool_figures` sums a plan's chunks with the headers and the embedding's scratch. The simulator,
the solvers (through it), `make_plan` and codegen's POOL all size the pool here.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass

from sticc.ir.graph import Block, PieceSizes, ShardChoice, ShardGraph
from sticc.runtime.core import READ_ALIGN_BYTES, PoolLayout


@dataclass(frozen=True)
class ChunkBytes:
    """What one non-empty chunk takes of the pool."""

    pinned_in_place: bool  # every kept piece preloaded at full precision: decoded once, at construction
    ring_nbytes: int  # its streamed pieces as stored (0: nothing streamed, not loaded)
    pinned_nbytes: int  # preloaded pieces as stored (or the whole chunk decoded when pinned in place)
    scratch_nbytes: int  # the chunk dequantized (0 when pinned in place)


def chunk_bytes(sizes: PieceSizes, members: Iterable[ShardChoice]) -> ChunkBytes:
    members = list(members)
    decoded = sizes.decoded_nbytes[len(members)]
    if all(m.preload and m.bits == 32 for m in members):
        return ChunkBytes(True, 0, decoded, 0)
    pinned = sum(sizes.slot_nbytes[m.bits] for m in members if m.preload)
    ring = sum(sizes.slot_nbytes[m.bits] for m in members if not m.preload)
    return ChunkBytes(False, ring, pinned, decoded)


def admit_nbytes(budget_bytes: int, fixed_bytes: int, slack_bytes: int) -> int:
    """Ring bytes the IO lane may hold at once within `budget_bytes`, beside `fixed_bytes` (pinned,
    scratch and the ring's slack): whole read units (every chunk is, so rounding down admits exactly
    the same chunks); 0 when nothing streams (no slack: no ring)."""
    if not slack_bytes:
        return 0
    return max(0, budget_bytes - fixed_bytes) // READ_ALIGN_BYTES * READ_ALIGN_BYTES


@dataclass(frozen=True)
class MemoryModel:
    """The weight bytes a plan's runner holds (`sticc.runtime.core.WeightPool`): one pool made at
    construction, [ring | scratch | pinned], sized from these figures and the budget."""

    pinned_bytes: int  # headers, preloaded pieces as stored, chunks pinned in place (decoded)
    scratch_bytes: int  # the largest chunk dequantized, or one call's embedding rows at seq_len
    chunk_bytes: tuple[int, ...]  # ring bytes of every chunk that streams (stored, slot-rounded), in load order

    @property
    def slack_bytes(self) -> int:
        """Ring bytes beyond admission: the largest chunk, so every admitted chunk finds a
        contiguous place even where it wraps around the ring's end."""
        return max(self.chunk_bytes, default=0)

    @property
    def fixed_bytes(self) -> int:
        return self.pinned_bytes + self.scratch_bytes + self.slack_bytes

    @property
    def minimum_budget_bytes(self) -> int:
        """Enough to admit the largest chunk alone: correct, but IO and compute then take turns."""
        return self.fixed_bytes + max(self.chunk_bytes, default=0)

    @property
    def default_budget_bytes(self) -> int:
        """Enough to admit any two consecutive chunks: one computed while the next is loaded."""
        pairs = [a + b for a, b in itertools.pairwise(self.chunk_bytes)] or list(self.chunk_bytes)
        return self.fixed_bytes + max(pairs, default=0)

    @property
    def all_chunks_bytes(self) -> int:
        return self.fixed_bytes + sum(self.chunk_bytes)

    def admit_bytes(self, budget_bytes: int) -> int:
        return admit_nbytes(budget_bytes, self.fixed_bytes, self.slack_bytes)

    def pool_layout(self, budget_bytes: int) -> PoolLayout:
        admit = self.admit_bytes(budget_bytes)
        return PoolLayout(admit + self.slack_bytes, admit, self.scratch_bytes, self.pinned_bytes)


def pool_figures(header_nbytes: int, embed_scratch_nbytes: int, chunks: Iterable[ChunkBytes]) -> MemoryModel:
    """The pool figures of a plan's non-empty chunks (in load order)."""
    chunks = list(chunks)
    return MemoryModel(
        pinned_bytes=header_nbytes + sum(c.pinned_nbytes for c in chunks),
        scratch_bytes=max([embed_scratch_nbytes, *(c.scratch_nbytes for c in chunks)]),
        chunk_bytes=tuple(c.ring_nbytes for c in chunks if c.ring_nbytes),
    )


def plan_memory(graph: ShardGraph, blocks: Iterable[Block]) -> MemoryModel:
    """The pool figures of a schedule (`ShardGraph.schedule`) of `graph`."""
    return pool_figures(
        graph.header_nbytes, graph.embed.scratch_nbytes,
        (chunk_bytes(c.node.sizes, c.members) for block in blocks for c in block.chunks),
    )


def held_nbytes(graph: ShardGraph, blocks: Iterable[Block], preloaded: bool) -> int:
    """Bytes of the kept pieces as held (stored, slot-rounded): the preloaded ones, or the streamed."""
    return sum(
        c.node.sizes.slot_nbytes[m.bits] for block in blocks for c in block.chunks for m in c.members if m.preload == preloaded
    )
