"""Lowering: store + device profile + importance profile + targets -> a `Problem`.

A problem is the shard graph (`sticc.ir.graph`) with the device's costs and the shards' losses on
its nodes, and the targets. It is the single input of every solver and of the simulator. All times
are in seconds, all sizes in bytes. With a `percentile`, every duration is the device's at that
percentile of calls (`DeviceProfile.quantile_factor`): what the planner plans to; without, the
median.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from sticc.base.schema import PARTS, Part
from sticc.ir.graph import (
    GraphShape,
    Lanes,
    NodeCosts,
    PartCosts,
    Phase,
    Position,
    ShardChoice,
    ShardGraph,
    build_graph,
    piece_sizes,
    store_shape,
)
from sticc.model.sharding import default_shards_per_chunk
from sticc.model.store import Store
from sticc.profile.device import DeviceProfile
from sticc.profile.importance import ImportanceProfile


@dataclass(frozen=True)
class Problem:
    """A planning instance: the costed shard graph, and the targets.

    A decoder's plan serves two kinds of call with one pool: its graph is the decode step (one
    token, `latency_s` the per-token target) and `also` holds the prefill (the prompt, its
    latency the time-to-first-token target). Both graphs have the same shards, chunks, sizes and
    pool; a plan is feasible when it meets every phase (`phases`)."""

    graph: ShardGraph
    latency_s: float | None
    memory_bytes: int | None
    also: tuple[Problem, ...] = ()  # further phases the same plan must meet (a decoder's prefill)

    @property
    def phases(self) -> tuple[Problem, ...]:
        return (self, *self.also)

    # the graph's facts planners use most, read off `graph.info`
    @property
    def bits(self) -> tuple[int, ...]:
        return self.graph.info.bits

    @property
    def layers(self) -> int:
        return self.graph.info.layers

    @property
    def shards_per_layer(self) -> int:
        return self.graph.info.shards_per_layer

    @property
    def shards_per_chunk(self) -> int:
        return self.graph.info.shards_per_chunk

    @property
    def seq_len(self) -> int:
        return self.graph.info.seq_len

    @property
    def positions(self) -> tuple[Position, ...]:
        return self.graph.positions

    @property
    def lanes(self) -> Lanes:
        return self.graph.lanes

    def droppable(self, position: Position) -> bool:
        """Whether a plan may drop the shard: a layer's, never a decoder's LM head slice (its
        vocabulary rows would have no logits)."""
        return position[0] < self.layers

    def options(self, position: Position) -> tuple[int, ...]:
        """The bitwidths a plan may give the shard (0: dropped)."""
        return (0, *self.bits) if self.droppable(position) else self.bits

    def importance(self, layer: int, index: int, bits: int) -> float:
        losses = self.graph.loss((layer, index))
        return losses[0] - losses[bits]

    def objective(self, choices: Mapping[Position, ShardChoice]) -> float:
        """Summed importance of a plan: what solvers maximize."""
        return sum(self.importance(layer, index, c.bits) for (layer, index), c in choices.items())

    def fidelity_loss(self, choices: Mapping[Position, ShardChoice]) -> float:
        return sum(self.graph.loss(position)[c.bits] for position, c in choices.items())


def _one_token(part: Part, phase: Phase) -> bool:
    """Whether `part` of a `phase` call runs on one token: a decode step's every part, and a
    prompt's LM head (generation needs only its last position's logits)."""
    return phase is Phase.DECODE or (phase is Phase.PREFILL and part is Part.LM_HEAD)


def _kernel_s(device: DeviceProfile, part: Part, shards: int, seq_len: int, phase: Phase, context: int) -> float:
    """One chunk's kernel: at `seq_len` tokens, or at one token over `context` cached positions."""
    return device.token_chunk_s(part, shards, context) if _one_token(part, phase) else device.chunk_s(part, shards, seq_len)


def _join_s(device: DeviceProfile, part: Part, seq_len: int, phase: Phase) -> float:
    return device.token_join_s(part) if _one_token(part, phase) else device.join_s(part, seq_len)


def _part_costs(
    shape: GraphShape, device: DeviceProfile, seq_len: int, shards_per_chunk: int, factor: float, phase: Phase, context: int,
) -> dict[Part, PartCosts]:
    """{part: PartCosts} of pieces of `shape` on `device` for one call of `phase`, durations times `factor`."""
    out = {}
    for part, sizes in piece_sizes(shape, shards_per_chunk).items():
        out[part] = PartCosts(
            sizes=sizes,
            read_s={bits: factor * device.read_s(n) for bits, n in sizes.slot_nbytes.items()},
            check_s={bits: factor * device.check_s(n) for bits, n in sizes.stored_nbytes.items()},
            decode_call_s={bits: factor * device.decode_call_s(bits) for bits in shape.bits},
            decode_piece_s={bits: factor * sizes.weights * device.decode_weight_s(bits) for bits in shape.bits},
            compute_s=tuple(factor * _kernel_s(device, part, n, seq_len, phase, context) for n in range(shards_per_chunk + 1)),
        )
    return out


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
    """The shard graph of an encoder `store` with the costs of `device` (at `percentile` of calls,
    or the median) and the losses of `importance`, and the targets."""
    device.check_store(store)
    importance.check_store(store)
    spc = shards_per_chunk or default_shards_per_chunk(store.shards_per_layer)
    return lower_shape(store_shape(store), device, importance.loss, seq_len, latency_s, memory_bytes, spc, percentile)


def lower_decoder(
    store: Store,
    device: DeviceProfile,
    importance: ImportanceProfile,
    prompt_len: int,
    context: int,
    token_latency_s: float | None,
    first_token_s: float | None,
    memory_bytes: int | None,
    shards_per_chunk: int | None = None,
    percentile: int | None = None,
) -> Problem:
    """A decoder `store`'s problem: the decode step at the last position of `context` (the slowest
    token: its attention reads every cached position) against `token_latency_s`, and the prefill
    of a `prompt_len`-token prompt against `first_token_s` (`Problem.also`)."""
    device.check_store(store)
    importance.check_store(store)
    spc = shards_per_chunk or default_shards_per_chunk(store.shards_per_layer)
    shape = store_shape(store)
    prefill = lower_shape(shape, device, importance.loss, prompt_len, first_token_s, memory_bytes, spc, percentile, Phase.PREFILL)
    decode = lower_shape(
        shape, device, importance.loss, 1, token_latency_s, memory_bytes, spc, percentile, Phase.DECODE, context - 1,
        scratch_tokens=prompt_len,
    )
    return replace(decode, also=(prefill,))


def lower_shape(
    shape: GraphShape,
    device: DeviceProfile,
    loss: Mapping[Position, Mapping[int, float]],
    seq_len: int,
    latency_s: float | None,
    memory_bytes: int | None,
    shards_per_chunk: int,
    percentile: int | None = None,
    phase: Phase = Phase.ENCODE,
    context: int = 0,
    scratch_tokens: int | None = None,
) -> Problem:
    """`lower` of a model given by its shape and its shards' losses (a benchmark's hand-made
    instance, `examples/bench_solver.py`); `lower` checks a store and its profiles, then calls this.
    `phase`, `context` and `scratch_tokens` as for `sticc.ir.graph.build_graph`."""
    factor = 1.0 if percentile is None else device.quantile_factor(percentile)
    parts = (*PARTS, Part.LM_HEAD) if shape.lm_head_shards else PARTS
    costs = NodeCosts(
        parts=_part_costs(shape, device, seq_len, shards_per_chunk, factor, phase, context),
        join_s={part: factor * _join_s(device, part, seq_len, phase) for part in parts},
        embed_s=factor * device.embed_time_s(seq_len),
        loss={position: dict(losses) for position, losses in loss.items()},
        lanes=Lanes(
            io_chunk_overhead_s=factor * device.io_chunk_s, handover_s=factor * device.handover_s,
            interference=device.interference, chunk_overhead_s=factor * device.compute_chunk_s,
            cap_Bps=device.emulated_bandwidth_Bps,
        ),
        percentile=percentile,
    )
    graph = build_graph(shape, shards_per_chunk, seq_len, phase, context, costs, scratch_tokens)
    return Problem(graph, latency_s, memory_bytes)
