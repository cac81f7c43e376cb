"""Plan: the one contract between planners, reports and codegen (schema: docs/plan-schema.md).

A plan gives every shard a bitwidth (0 = dropped) and a preload flag, the targets it was made for,
the weight-pool budget the runner enforces, and what it predicts. Plans come from a solver
(`solvers/`) or from a hand-written JSON file; both go through `validate_choices`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from sticc.base.errors import InfeasibleError, UserError
from sticc.base.schema import (
    STRICT,
    Bits,
    CapRate,
    Count,
    Elapsed,
    Finite,
    Name,
    Part,
    Positive,
    PositiveCount,
    PositiveSeconds,
    Rate,
    Seconds,
    Sha256,
    Threads,
    read_file,
    with_config,
)
from sticc.ir.graph import Block, Phase, ShardChoice, ShardGraph, build_graph, by_position, load_order, store_shape
from sticc.ir.memory import MemoryModel, held_nbytes, plan_memory
from sticc.model.sharding import default_shards_per_chunk, shard_positions
from sticc.model.store import Store
from sticc.profile.importance import AdditivityRecord
from sticc.runtime.core import ChunkLoad, Member

PLAN_FORMAT_VERSION = 2  # 2: the two-lane engine (pool memory, planned percentile, no io_threads)
DEFAULT_SEQ_LEN = 128
DEFAULT_PROMPT_LEN = 64  # decoders: the prompt length a plan is made for
DEFAULT_CONTEXT = 512  # decoders: positions the KV cache holds (prompt and generated tokens)


SeqLen = Annotated[int, Field(ge=1, le=1 << 20)]


@with_config(STRICT)
@dataclass(frozen=True)
class Targets:
    latency_s: PositiveSeconds | None
    memory_bytes: PositiveCount | None
    seq_len: SeqLen  # decoders: the prompt length
    context: SeqLen | None = None  # decoders: positions the KV cache holds
    first_token_s: PositiveSeconds | None = None  # decoders: time to first token (latency_s: per token)
    kv_memory_bytes: PositiveCount | None = None  # decoders: the KV cache's own budget


@with_config(STRICT)
@dataclass(frozen=True)
class SolverInfo:
    name: Name  # "uniform" | "hand" | a solver's name
    status: Name  # "GIVEN" for plans not found by a solver
    objective: Finite | None = None
    bound: Finite | None = None
    gap: Finite | None = None
    wall_s: Seconds | None = None


@with_config(STRICT)
@dataclass(frozen=True)
class Predicted:
    latency_s: Elapsed | None  # the median call (needs a device profile)
    peak_weight_bytes: Count  # the runner's weight pool, made at construction
    preload_bytes: Count  # preloaded pieces as held (stored, slot-rounded)
    io_bytes: Count  # per call at targets.seq_len (batch 1, all tokens distinct); decoders: the prefill
    fidelity_loss: Finite | None  # needs an importance profile
    planned_latency_s: Elapsed | None = None  # the latency at `planned_percentile`: what the target bounds
    planned_percentile: Annotated[float, Field(gt=0, lt=100)] | None = None  # e.g. 90: this share of calls is predicted to take at most planned_latency_s
    io_bytes_per_token: Count | None = None  # decoders: each generated token's call
    kv_cache_bytes: Count | None = None  # decoders: the KV cache for targets.context, apart from the weight pool
    first_token_s: Elapsed | None = None  # decoders: the prefill's median (latency_s: a decode step's, at the context's last position)
    planned_first_token_s: Elapsed | None = None  # decoders: the prefill at planned_percentile


@with_config(STRICT)
@dataclass(frozen=True)
class RuntimeSettings:
    """Settings a plan's runner starts with, from the device profile it was planned for."""

    io_bandwidth_cap_Bps: CapRate | None = None  # emulated flash bandwidth the runner's reads are capped to
    compute_threads: Threads | None = None  # torch compute threads (None: torch's default, every core)


@dataclass(frozen=True)
class Plan:
    store_id: str
    model: str
    targets: Targets
    solver: SolverInfo
    memory_budget_bytes: int  # the runner's weight pool capacity
    shards_per_chunk: int  # kept shards of a layer block loaded and computed together
    shards: tuple[ShardChoice, ...]  # every shard, sorted by (layer, index)
    load_order: tuple[tuple[int, int, Part], ...]  # (layer, index, part) of every kept piece, as the schedule consumes them
    predicted: Predicted
    runtime: RuntimeSettings = RuntimeSettings()
    findings: Findings | None = None  # what the planner found out, for reports; None without profiles

    def to_json(self) -> dict:
        data = {
            "format_version": PLAN_FORMAT_VERSION,
            "store_id": self.store_id,
            "model": self.model,
            "targets": _without_none(asdict(self.targets), DECODER_ONLY),
            "solver": asdict(self.solver),
            "memory_budget_bytes": self.memory_budget_bytes,
            "shards_per_chunk": self.shards_per_chunk,
            "predicted": _without_none(asdict(self.predicted), DECODER_ONLY),
            "shards": [asdict(c) for c in self.shards],
            "load_order": [list(step) for step in self.load_order],
            "runtime": asdict(self.runtime),
            **({} if self.findings is None else self.findings.to_json()),
        }
        data["plan_hash"] = plan_hash(data)
        return data


# keys only a decoder's plan has: an encoder's plan.json leaves them out
DECODER_ONLY = frozenset({
    "context", "io_bytes_per_token", "kv_cache_bytes", "first_token_s", "planned_first_token_s", "kv_memory_bytes",
})


def _without_none(record: dict, keys: frozenset[str]) -> dict:
    return {k: v for k, v in record.items() if not (k in keys and v is None)}


def plans_json(plans: tuple[Plan, ...]) -> dict:
    """plan.json of a runner's plans: the first (the most faithful) plan's object; an elastic
    runner's faster plans as its `alternatives` (each a whole plan.json object), hashed together."""
    data = plans[0].to_json()
    if len(plans) > 1:
        data["alternatives"] = [plan.to_json() for plan in plans[1:]]
        data["plan_hash"] = plan_hash(data)
    return data


def plan_hash(data: dict) -> str:
    body = {k: v for k, v in data.items() if k != "plan_hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class Lane(StrEnum):
    IO = "io"
    COMPUTE = "compute"


class EventKind(StrEnum):
    EMBED = "embed"
    LOAD = "load"
    COMPUTE = "compute"
    JOIN = "join"
    STALL = "stall"  # the compute lane waits for IO
    WAIT = "wait"  # the IO lane waits for ring space


@with_config(STRICT)
@dataclass(frozen=True)
class Event:
    """One bar of a plan's simulated timeline (`sticc.ir.simulate`)."""

    lane: Lane
    kind: EventKind
    label: Name
    start_s: Elapsed
    end_s: Elapsed

    def __post_init__(self) -> None:
        if self.end_s < self.start_s - 1e-9:
            raise ValueError(f"an event ends ({self.end_s}) before it starts ({self.start_s})")


# ----------------------------------------------------------------------------------------------
# plan.json: what `sticc compile` writes, and what `--plan` and `sticc report` read
# ----------------------------------------------------------------------------------------------


@with_config(STRICT)
@dataclass(frozen=True)
class TargetsFile:
    """`targets` of a plan file: each optional in a hand-written plan."""

    latency_s: PositiveSeconds | None = None
    memory_bytes: PositiveCount | None = None
    seq_len: SeqLen | None = None
    context: SeqLen | None = None
    first_token_s: PositiveSeconds | None = None
    kv_memory_bytes: PositiveCount | None = None


@with_config(STRICT)
@dataclass(frozen=True)
class MemoryRecord:
    pinned_bytes: Count
    scratch_bytes: Count
    ring_bytes: Count
    admit_bytes: Count
    full_precision_bytes: Count


@with_config(STRICT)
@dataclass(frozen=True)
class TimelineRecord:
    events: list[Event]
    compute_stall_s: Elapsed
    ring_wait_s: Elapsed


@with_config(STRICT)
@dataclass(frozen=True)
class LengthRecord:
    """An encoder plan's predicted call at an input length other than the planned one (the same
    plan: its pool, its shards), with the weight bytes the longer embedding needs beyond the pool."""

    seq_len: PositiveCount
    latency_s: Elapsed  # median
    planned_latency_s: Elapsed  # at the planned percentile
    peak_weight_bytes: Count
    compute_s: Elapsed = 0.0  # the chunks' compute-lane work (median): what a runner scales its chunks' compute by
    embed_s: Elapsed = 0.0  # the embedding (median)
    joins_s: Elapsed = 0.0  # every block's join (median)


@with_config(STRICT)
@dataclass(frozen=True)
class ShedRecord:
    """A chunk of a plan as a runner that falls behind may shed it (`sticc.compile.elastic.shed_order`):
    its key in the plan's load order, its shards, the importance lost and the lanes' work saved
    (median, at the planned length)."""

    key: Count
    layer: Count
    part: Part
    indices: list[Count]
    loss: Finite  # importance lost if shed: what the plan's fidelity loss grows by
    io_s: Elapsed  # IO-lane work of its streamed pieces (0: nothing streamed)
    compute_s: Elapsed  # compute-lane work: dequantization, kernel, overhead


@with_config(STRICT)
@dataclass(frozen=True)
class SolutionSummary:
    """Another solver's plan at the same targets (`sticc.compile.planner._summary`)."""

    objective: Finite
    status: Name
    predicted: Predicted
    kept: Count
    mean_bits: Annotated[float, Field(ge=0, le=32)]


@with_config(STRICT)
@dataclass(frozen=True)
class ComparisonRecord:
    greedy: SolutionSummary | None = None


@with_config(STRICT)
@dataclass(frozen=True)
class DeviceRecord:
    device: Name
    read_bandwidth_Bps: Rate
    emulated_bandwidth_Bps: CapRate | None
    compute_threads: Threads
    quantile_factor: Positive


@with_config(STRICT)
@dataclass(frozen=True)
class ImportanceRecord:
    metric: Name
    additivity: AdditivityRecord


@dataclass(frozen=True)
class Findings:
    """What the planner found out about a plan, for the reports (docs/plan-schema.md)."""

    memory: MemoryRecord
    timeline: TimelineRecord  # decoders: one decode step, at the context's last position
    comparison: ComparisonRecord
    device: DeviceRecord
    importance: ImportanceRecord | None
    prefill_timeline: TimelineRecord | None = None  # decoders: the prompt's call
    by_length: tuple[LengthRecord, ...] = ()  # encoders: the call at input lengths up to the truncation length
    shed_order: tuple[ShedRecord, ...] = ()  # encoders: the chunks a call that falls behind sheds, first first

    def to_json(self) -> dict:
        """plan.json's `memory`, `timeline`, `comparison`, `device` and `importance` (an empty
        comparison and an unmeasured additivity as `{}`), a decoder's `prefill_timeline` and an
        encoder's `by_length`."""
        data = asdict(self)
        if self.prefill_timeline is None:
            del data["prefill_timeline"]
        for key in ("by_length", "shed_order"):
            if not getattr(self, key):
                del data[key]
            else:
                data[key] = [asdict(record) for record in getattr(self, key)]
        if self.comparison.greedy is None:
            data["comparison"] = {}
        else:
            data["comparison"]["greedy"]["predicted"] = _without_none(data["comparison"]["greedy"]["predicted"], DECODER_ONLY)
        if self.importance is not None and not self.importance.additivity.plans:
            data["importance"]["additivity"] = {}
        return data


@with_config(STRICT)
@dataclass(frozen=True)
class PlanFile:
    """plan.json. `sticc compile` writes every key; a hand-written plan (`--plan`) needs only
    `shards` and/or `default_bits`. The outputs (`predicted`, `solver`, `load_order`, the findings
    `memory` ... `importance`) are read back by `sticc report` and recomputed by `--plan`."""

    format_version: Literal[PLAN_FORMAT_VERSION] | None = None
    store_id: Sha256 | None = None
    model: Name | None = None
    targets: TargetsFile = TargetsFile()
    solver: SolverInfo | None = None
    memory_budget_bytes: PositiveCount | None = None
    shards_per_chunk: PositiveCount | None = None
    shards: list[ShardChoice] = field(default_factory=list)
    default_bits: Bits | None = None
    predicted: Predicted | None = None
    load_order: list[tuple[Count, Count, Part]] | None = None
    runtime: RuntimeSettings = RuntimeSettings()
    plan_hash: Sha256 | None = None
    memory: MemoryRecord | None = None
    timeline: TimelineRecord | None = None
    comparison: ComparisonRecord | None = None
    device: DeviceRecord | None = None
    importance: ImportanceRecord | None = None
    prefill_timeline: TimelineRecord | None = None
    by_length: list[LengthRecord] | None = None
    shed_order: list[ShedRecord] | None = None
    alternatives: list[dict] | None = None  # an elastic runner's faster plans (`sticc.compile.elastic`), each a plan.json object


def plan_graph(store: Store, shards_per_chunk: int, seq_len: int, phase: Phase | None = None, context: int = 0) -> ShardGraph:
    """The shard graph (no costs) a plan of `store` is scheduled on: an encoder's call, or a
    decoder's prefill (default) or decode step; every phase has the same schedule."""
    if phase is None:
        phase = Phase.PREFILL if store.spec.is_decoder else Phase.ENCODE
    return build_graph(store_shape(store), shards_per_chunk, seq_len, phase, context)


def store_positions(store: Store) -> list[tuple[int, int]]:
    """(layer, index) of every shard a plan decides: the layers', then a decoder's LM head slices."""
    return shard_positions(store.spec.layers, store.shards_per_layer, store.lm_head_shards)


def block_loads(store: Store, blocks: tuple[Block, ...], first_key: int = 0) -> tuple[tuple[Block, tuple[ChunkLoad, ...]], ...]:
    """Every layer block of a schedule (`ShardGraph.schedule`) with its chunks as the runner's LOADS
    table has them: the stored versions' extents and checksums, keys in load order from `first_key`."""
    out, key = [], first_key
    for block in blocks:
        loads = []
        for chunk in block.chunks:
            members = []
            for choice in chunk.members:
                version = store.version(block.layer, choice.index, block.part, choice.bits)
                members.append(Member(version.key.describe(), version.extent.offset, version.layout, version.extent.checksum, choice.preload))
            loads.append(ChunkLoad(key, tuple(members)))
            key += 1
        out.append((block, tuple(loads)))
    return tuple(out)


def memory_model(store: Store, shards: tuple[ShardChoice, ...], shards_per_chunk: int, seq_len: int) -> MemoryModel:
    """The pool figures of a plan's shards (`sticc.ir.memory.plan_memory` on its schedule)."""
    graph = plan_graph(store, shards_per_chunk, seq_len)
    return plan_memory(graph, graph.schedule(by_position(shards)))


# ----------------------------------------------------------------------------------------------
# Building plans
# ----------------------------------------------------------------------------------------------


def validate_choices(store: Store, choices: list[ShardChoice]) -> tuple[ShardChoice, ...]:
    """Check a complete set of shard choices against the store; return them sorted."""
    spec = store.spec
    positions = store_positions(store)
    known = set(positions)
    seen: dict[tuple[int, int], ShardChoice] = {}
    for choice in choices:
        where = f"shard (layer {choice.layer}, index {choice.index})"
        if (choice.layer, choice.index) not in known:
            lm_head = f" and {store.lm_head_shards} LM head slices as layer {spec.layers}" if store.lm_head_shards else ""
            raise UserError(f"{where} does not exist: the store has {spec.layers} layers x {store.shards_per_layer} shards{lm_head}")
        if (choice.layer, choice.index) in seen:
            raise UserError(f"{where} appears twice in the plan")
        if choice.bits != 0 and choice.bits not in store.bits:
            raise UserError(f"{where}: bits {choice.bits} not in the store (has {list(store.bits)}; 0 drops)")
        if choice.preload and choice.bits == 0:
            raise UserError(f"{where} is dropped and preloaded at once")
        if choice.bits == 0 and choice.layer == spec.layers:
            raise UserError(f"{where} is an LM head slice: its vocabulary rows cannot be dropped")
        seen[(choice.layer, choice.index)] = choice
    missing = [p for p in positions if p not in seen]
    if missing:
        raise UserError(f"plan leaves {len(missing)} shards unspecified, first (layer {missing[0][0]}, index {missing[0][1]}); give default_bits")
    return tuple(sorted(seen.values()))


def make_plan(
    store: Store,
    shards: tuple[ShardChoice, ...],
    solver: SolverInfo,
    seq_len: int | None = None,
    memory_bytes: int | None = None,
    latency_s: float | None = None,
    shards_per_chunk: int | None = None,
    context: int | None = None,
    first_token_s: float | None = None,
    kv_memory_bytes: int | None = None,
) -> Plan:
    """A plan for `shards`, with the pool budget checked (or defaulted) and IO/memory predicted.

    `seq_len` (decoders: the prompt length) defaults to DEFAULT_SEQ_LEN (DEFAULT_PROMPT_LEN), or
    the model's positions if it has fewer; `context` (decoders only: the KV cache's positions) to
    DEFAULT_CONTEXT, at least `seq_len`; `shards_per_chunk` defaults to a quarter of a layer's
    shards (`sticc.model.sharding.default_shards_per_chunk`).
    """
    shards = validate_choices(store, list(shards))
    spec = store.spec
    targets = settle_targets(store, seq_len, memory_bytes, latency_s, context, first_token_s, kv_memory_bytes)
    seq_len, context = targets.seq_len, targets.context
    if shards_per_chunk is None:
        shards_per_chunk = default_shards_per_chunk(store.shards_per_layer)
    if not 1 <= shards_per_chunk <= store.shards_per_layer:
        raise UserError(f"--shards-per-chunk {shards_per_chunk} must lie in [1, {store.shards_per_layer}]")
    graph = plan_graph(store, shards_per_chunk, seq_len)
    blocks = graph.schedule(by_position(shards))
    memory = plan_memory(graph, blocks)
    if memory_bytes is None:
        budget = memory.default_budget_bytes
    elif memory_bytes < memory.minimum_budget_bytes:
        raise UserError(
            f"memory budget {memory_bytes} B is below this plan's minimum {memory.minimum_budget_bytes} B "
            f"(headers and preload {memory.pinned_bytes} B, scratch {memory.scratch_bytes} B, the largest "
            f"streamed chunk twice {2 * memory.slack_bytes} B; a smaller --shards-per-chunk lowers it)"
        )
    else:
        budget = memory_bytes
    streamed = held_nbytes(graph, blocks, preloaded=False)
    token = plan_graph(store, shards_per_chunk, 1, Phase.DECODE, context - 1) if spec.is_decoder else None
    predicted = Predicted(
        latency_s=None,
        peak_weight_bytes=memory.pool_layout(budget).nbytes,
        preload_bytes=held_nbytes(graph, blocks, preloaded=True),
        io_bytes=streamed + graph.embed.io_nbytes,
        fidelity_loss=None,
        io_bytes_per_token=None if token is None else streamed + token.embed.io_nbytes,
        kv_cache_bytes=None if token is None else token.kv_cache_nbytes,
    )
    check_kv_budget(targets, predicted.kv_cache_bytes)
    return Plan(store.store_id, store.spec.name, targets, solver, budget, shards_per_chunk, shards, load_order(blocks), predicted)


def settle_targets(
    store: Store, seq_len: int | None, memory_bytes: int | None, latency_s: float | None, context: int | None = None,
    first_token_s: float | None = None, kv_memory_bytes: int | None = None,
) -> Targets:
    """The targets with their defaults (see `make_plan`), checked against the model's positions."""
    spec = store.spec
    positions = spec.max_positions
    if spec.is_decoder:
        context = min(DEFAULT_CONTEXT, positions) if context is None else context
        if not 1 <= context <= positions:
            raise UserError(f"--context {context} must lie in [1, {positions}] (the model's positions)")
        seq_len = min(DEFAULT_PROMPT_LEN, context) if seq_len is None else seq_len
        positions = context
    elif context is not None or first_token_s is not None or kv_memory_bytes is not None:
        raise UserError(f"--context, --first-token and --kv-memory are for decoders; {spec.name} is an encoder")
    seq_len = min(DEFAULT_SEQ_LEN, positions) if seq_len is None else seq_len
    if seq_len <= 0 or seq_len > positions:
        raise UserError(f"--seq-len {seq_len} must lie in [1, {positions}]" + (" (the context)" if spec.is_decoder else ""))
    return Targets(latency_s, memory_bytes, seq_len, context, first_token_s, kv_memory_bytes)


def check_kv_budget(targets: Targets, kv_cache_bytes: int | None) -> None:
    """Raise InfeasibleError when a decoder's KV cache for its context (`kv_cache_bytes`) exceeds
    `--kv-memory`, naming the largest context within it (the cache is made whole at construction,
    every key and value head for every position of the context)."""
    budget, nbytes, context = targets.kv_memory_bytes, kv_cache_bytes, targets.context
    if budget is None or nbytes is None or nbytes <= budget:
        return
    raise InfeasibleError(
        f"the KV cache for a context of {context} positions takes {nbytes / 1e6:.2f} MB, over --kv-memory "
        f"{budget / 1e6:.2f} MB: the largest context within it is {budget // (nbytes // context)} positions"
    )


def read_plan(
    store: Store, path: str | Path, seq_len: int | None = None, memory_bytes: int | None = None,
    shards_per_chunk: int | None = None, context: int | None = None,
) -> Plan:
    """A hand-written (or previously emitted) plan file, validated against `store`.

    Read: `shards` (list of {layer, index, bits, preload?}), `default_bits` for shards not listed,
    optional `targets` {seq_len, memory_bytes, latency_s}, `shards_per_chunk` and `runtime`; the
    outputs of an emitted plan.json (`predicted`, `load_order`, the findings) are checked and
    recomputed, `solver` is kept as the record of who made the plan.
    """
    path = Path(path)
    data = read_file(PlanFile, path, "plan file")
    if data.store_id is not None and data.store_id != store.store_id:
        raise UserError(f"plan file {path} was made for another store (store_id differs)")
    if data.alternatives:
        raise UserError(
            f"plan file {path} holds the {len(data.alternatives) + 1} plans of an elastic runner: --plan takes one "
            "plan; compile with --latency T1,T2,... to plan them again"
        )
    choices: dict[tuple[int, int], ShardChoice] = {}
    for choice in data.shards:
        if (choice.layer, choice.index) in choices:
            raise UserError(f"plan file {path}: shard (layer {choice.layer}, index {choice.index}) appears twice")
        choices[(choice.layer, choice.index)] = choice
    if data.default_bits is not None:
        for layer, index in store_positions(store):
            choices.setdefault((layer, index), ShardChoice(layer, index, data.default_bits))
    plan = make_plan(
        store, tuple(choices.values()), data.solver or SolverInfo("hand", "GIVEN"),
        seq_len=seq_len or data.targets.seq_len,
        memory_bytes=memory_bytes if memory_bytes is not None else data.targets.memory_bytes,
        latency_s=data.targets.latency_s,
        shards_per_chunk=shards_per_chunk or data.shards_per_chunk,
        context=context or data.targets.context,
        first_token_s=data.targets.first_token_s,
        kv_memory_bytes=data.targets.kv_memory_bytes,
    )
    if data.load_order is not None and [list(s) for s in plan.load_order] != [list(s) for s in data.load_order]:
        raise UserError(f"plan file {path}: load_order must be the compute order of the kept pieces (omit it)")
    return replace(plan, runtime=data.runtime)
