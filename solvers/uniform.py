"""The uniform planner: every shard at one bitwidth, nothing preloaded (a hand-given plan)."""

from __future__ import annotations

from sticc.ir.graph import ShardChoice
from sticc.ir.plan import Plan, SolverInfo, make_plan, store_positions
from sticc.model.store import Store


def uniform_plan(
    store: Store, bits: int, seq_len: int | None = None, memory_bytes: int | None = None,
    shards_per_chunk: int | None = None, context: int | None = None,
) -> Plan:
    """Every shard (a decoder's LM head slices too) at `bits`."""
    shards = tuple(ShardChoice(layer, i, bits) for layer, i in store_positions(store))
    return make_plan(
        store, shards, SolverInfo("uniform", "GIVEN"), seq_len, memory_bytes, shards_per_chunk=shards_per_chunk,
        context=context,
    )
