"""Lowering a plan to runner source: every decision is made here, the template only renders.

`emit_runner` returns a `RunnerSource` (text plus metadata); `write_output` puts it on disk with the
plan, atomically. The runtime (`sticc/runtime/`: core, decode, and the family's kernels, encoder or
decoder) is inlined verbatim; the generated part is the literal tables (store extents, load list)
and the schedule: the shard graph's schedule of the plan (`sticc.ir.plan.block_loads`), one block
per layer block (and a decoder's LM head), commented with the join node closing it.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import json
import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from types import ModuleType

import jinja2

import sticc.runtime.core as core_module
import sticc.runtime.decode as decode_module
import sticc.runtime.decoder as decoder_module
import sticc.runtime.elastic as elastic_module
import sticc.runtime.encoder as encoder_module
import sticc.runtime.sentence as sentence_module
from codegen.literals import DECODER_RUNNER, ENCODER_RUNNER, check_runner_source, docstring_text, python_literal
from sticc.base.errors import UserError
from sticc.base.jsonfile import write_dir_atomic
from sticc.base.schema import Part
from sticc.ir.graph import Block, by_position, load_order
from sticc.ir.memory import plan_memory
from sticc.ir.plan import Plan, block_loads, plan_graph, plans_json
from sticc.model.sharding import decoder_shape
from sticc.model.store import Store
from sticc.runtime.core import BlobLayout, ChunkCost, Extent, LengthRow, PlanTable, PoolLayout
from sticc.runtime.sentence import BARE_PIPELINE

TEMPLATES = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class MemberLine:
    """One literal Member (a stored piece) of a chunk in the generated LOADS table."""

    what: str
    offset: int
    layout: BlobLayout
    checksum: int
    preloaded: bool


@dataclass(frozen=True)
class ChunkLine:
    """One literal ChunkLoad of the generated LOADS table."""

    key: int
    part: str
    members: tuple[MemberLine, ...]


class Kernel(Enum):
    """The runtime kernel a schedule block calls on each of its chunks (the template renders each
    one's call)."""

    ATTENTION = "attention_chunk"
    FFN = "ffn_chunk"
    LM_HEAD = "lm_head_chunk"


# the kernel of each part's blocks
KERNELS: dict[Part, Kernel] = {Part.ATTN: Kernel.ATTENTION, Part.FFN: Kernel.FFN, Part.LM_HEAD: Kernel.LM_HEAD}


@dataclass(frozen=True)
class BlockLines:
    """One schedule block: the compute node, its loads' keys, the kernel its chunks run, and its
    describing comment."""

    node: str
    layer: int
    part: str
    keys: tuple[int, ...]
    kernel: Kernel
    comment: str


@dataclass(frozen=True)
class ScheduleLines:
    """One plan's generated `schedule_<n>`: its name and its blocks."""

    name: str
    blocks: tuple[BlockLines, ...]


@dataclass(frozen=True)
class RunnerSource:
    text: str
    plan_hash: str
    plan_json: dict


# the runtime modules a runner inlines, in dependency order (each imports only earlier ones)
RUNTIME_MODULES = (core_module, decode_module, elastic_module, sentence_module, encoder_module)
DECODER_RUNTIME_MODULES = (core_module, decode_module, decoder_module)


@functools.lru_cache(maxsize=2)
def _runtime_body(modules: tuple[ModuleType, ...] = RUNTIME_MODULES) -> str:
    """The runtime modules without their docstrings and their imports of each other, one after
    another; the standard imports of all of them first."""
    imports, bodies = [], []
    for module in modules:
        source = Path(module.__file__).read_text(encoding="utf-8")
        tree = ast.parse(source)
        lines = source.splitlines()
        code_start = tree.body[1].lineno - 1  # after the module docstring
        skip: set[int] = set()
        for node in tree.body[1:]:
            if isinstance(node, ast.Import | ast.ImportFrom):
                skip.update(range(node.lineno - 1, node.end_lineno))
                if not (isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sticc.")):
                    imports.append("\n".join(lines[node.lineno - 1 : node.end_lineno]))
                elif not node.module.startswith("sticc.runtime."):
                    raise AssertionError(f"{module.__name__} imports {node.module}: a runner inlines only sticc.runtime")
        body = "\n".join(line for n, line in enumerate(lines) if n >= code_start and n not in skip)
        bodies.append(f"# ---- sticc/runtime/{Path(module.__file__).name} " + "-" * 60 + "\n\n" + body.strip("\n"))
    unique_imports = list(dict.fromkeys(imports))
    return "\n".join(unique_imports) + "\n\n\n" + "\n\n\n".join(bodies)


def _describe(block: Block, store: Store) -> str:
    members = [m for chunk in block.chunks for m in chunk.members]
    bits = sorted({m.bits for m in members})
    preloaded = sum(m.preload for m in members)
    detail = f"bits {'/'.join(map(str, bits))}" + (f", {preloaded} preloaded" if preloaded else "")
    if block.part is Part.LM_HEAD:
        return f"LM head: {len(members)}/{store.lm_head_shards} vocabulary slices, {detail}"
    what = "attention" if block.part is Part.ATTN else "FFN"
    if not members:
        return f"layer {block.layer} {what}: every shard dropped, only the bias and the join remain"
    return f"layer {block.layer} {what}: {len(members)}/{store.shards_per_layer} shards kept, {detail}"


def plan_name(plan: Plan) -> str:
    """A plan's name in an elastic runner: its latency target ("40ms"), else "plan"."""
    latency_s = plan.targets.latency_s
    return "plan" if latency_s is None else f"{latency_s * 1e3:g}ms"


def emit_runner(store: Store, plan: Plan, store_path: str | Path, alternatives: tuple[Plan, ...] = ()) -> RunnerSource:
    """The runner for `plan` (and an elastic runner's faster `alternatives`, which share its
    preload set: `sticc.compile.elastic`) over `store`; identical inputs give identical bytes. Each
    plan's schedule is the shard graph's (`ShardGraph.schedule`): one block per layer block, its
    chunks' loads in order; keys number every plan's chunks in one LOADS table."""
    plans = (plan, *alternatives)
    if alternatives and store.spec.is_decoder:
        raise UserError("an elastic runner (several plans) is for encoders")
    loads: list[ChunkLine] = []
    schedules: list[ScheduleLines] = []
    tables: list[PlanTable] = []
    indices: list[tuple[int, ...]] = []
    for one in plans:
        graph = plan_graph(store, one.shards_per_chunk, one.targets.seq_len)
        schedule = graph.schedule(by_position(one.shards))
        assert load_order(schedule) == one.load_order, "the plan's load order is not its shard graph's schedule"
        first_key = len(loads)
        blocks: list[BlockLines] = []
        for block, chunk_loads in block_loads(store, schedule, first_key):
            for load, chunk in zip(chunk_loads, block.chunks, strict=True):
                members = tuple(MemberLine(m.what, m.offset, m.layout, m.checksum, m.preloaded) for m in load.members)
                loads.append(ChunkLine(load.key, block.part.value, members))
                indices.append(tuple(m.index for m in chunk.members))
            keys = tuple(load.key for load in chunk_loads)
            blocks.append(BlockLines(
                repr(block.join.key), block.layer, block.part.value, keys, KERNELS[block.part], _describe(block, store),
            ))
        schedules.append(ScheduleLines(plan_name(one), tuple(blocks)))
        tables.append(_plan_table(one, first_key, len(loads), plan_memory(graph, schedule).pool_layout(one.memory_budget_bytes)))
    if len({table.pool.pinned_nbytes for table in tables}) > 1:
        raise AssertionError("the plans of an elastic runner pin different bytes (they must share one preload set)")
    plan_json = plans_json(plans)
    spec = store.spec
    pool = tables[0].pool
    decoder = spec.is_decoder
    runtime_body = _runtime_body(DECODER_RUNTIME_MODULES if decoder else RUNTIME_MODULES)
    template = "decoder_runner.py.j2" if decoder else "runner.py.j2"
    text = _environment().get_template(template).render(
        spec=spec, store=store, plan=plan, plan_hash=plan_json["plan_hash"], indices=tuple(indices),
        shape=decoder_shape(spec, store.shards_per_layer, store.lm_head_shards) if decoder else None,
        store_path=str(Path(store_path).resolve()), loads=loads, schedules=schedules, blocks=schedules[0].blocks,
        tables=tables, Kernel=Kernel, runtime_body=runtime_body, kept=sum(1 for c in plan.shards if c.bits),
        preloaded=sum(1 for c in plan.shards if c.preload), total=len(plan.shards),
        bits_histogram=_bits_histogram(plan), data_file=store.data_path.name, pool=pool,
        parts=tuple(load.part for load in loads), targets_text=_targets_text(plan),
        pool_text=_pool_text(plan, pool, tables), predicted_text=_predicted_text(plan), plans_text=_plans_text(plans),
        pipeline=store.sentence_pipeline.runtime() if store.sentence_pipeline else BARE_PIPELINE,
        pipeline_text=store.sentence_pipeline.describe() if store.sentence_pipeline else "none (bare: mean pooling, not normalized)",
    )
    text = re.sub(r"[ \t]+\n", "\n", text)
    check_runner(text, decoder)  # data never became code: refuse to write otherwise
    return RunnerSource(text, plan_json["plan_hash"], plan_json)


def _plan_table(plan: Plan, first_key: int, stop_key: int, pool: PoolLayout) -> PlanTable:
    """The runner's literal record of one plan (`sticc.runtime.core.PlanTable`)."""
    findings = plan.findings
    lengths = () if findings is None else tuple(
        LengthRow(r.seq_len, r.planned_latency_s, r.compute_s, r.embed_s, r.joins_s) for r in findings.by_length
    )
    shed = () if findings is None else tuple(
        ChunkCost(first_key + r.key, len(r.indices), r.loss, r.io_s, r.compute_s) for r in findings.shed_order
    )
    return PlanTable(
        plan_name(plan), first_key, stop_key, pool, plan.targets.latency_s, plan.predicted.fidelity_loss, lengths, shed,
    )


def _plans_text(plans: tuple[Plan, ...]) -> str:
    if len(plans) == 1:
        return "one; a call with a deadline sheds chunks of it when it falls behind"
    described = ", ".join(
        f"{plan_name(p)} (fidelity loss {p.predicted.fidelity_loss:.4f})" if p.predicted.fidelity_loss is not None else plan_name(p)
        for p in plans
    )
    return f"{len(plans)} sharing one preload set and pool, most faithful first: {described}"


def _environment() -> jinja2.Environment:
    """The template environment: data reaches the runner only through the `py` (a Python
    literal), `extent`/`hex64` (literals of store records) and `doc` (text for docstrings and
    comments, escaped) filters; anything else rendered raw is the template's own code."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True, autoescape=False,
    )
    environment.filters.update(py=python_literal, doc=docstring_text, hex64=_hex64, extent=_extent_literal)
    return environment


def _targets_text(plan: Plan) -> str:
    targets = plan.targets
    latency = "none" if targets.latency_s is None else f"{targets.latency_s * 1000:.1f} ms"
    memory = "none" if targets.memory_bytes is None else f"{targets.memory_bytes} B"
    if targets.context is not None:
        return f"latency {latency}, memory {memory}, prompt length {targets.seq_len}, context {targets.context}"
    return f"latency {latency}, memory {memory}, sequence length {targets.seq_len}"


def _pool_text(plan: Plan, pool, tables: list[PlanTable]) -> str:
    nbytes = max(table.pool.nbytes for table in tables)
    return (
        f"{nbytes} B made at construction (budget {plan.memory_budget_bytes} B): ring {pool.ring_nbytes} B "
        f"(admits {pool.admit_nbytes} B of chunks as stored), scratch {pool.scratch_nbytes} B, pinned "
        f"{pool.pinned_nbytes} B; {plan.shards_per_chunk} shards per chunk"
    )


def _predicted_text(plan: Plan) -> str:
    predicted = plan.predicted
    if predicted.io_bytes_per_token is not None:
        return (
            f"IO {predicted.io_bytes} B per prefill and {predicted.io_bytes_per_token} B per generated token, preload "
            f"{predicted.preload_bytes} B, KV cache {predicted.kv_cache_bytes} B (apart from the pool), latency not "
            f"predicted (decoders are not profiled yet)"
        )
    text = f"IO {predicted.io_bytes} B per call, preload {predicted.preload_bytes} B, latency "
    if predicted.latency_s is None:
        return text + "not predicted (no device profile)"
    text += f"{predicted.latency_s * 1000:.1f} ms median"
    if predicted.planned_latency_s is not None and predicted.planned_percentile is not None:
        text += f", {predicted.planned_latency_s * 1000:.1f} ms at p{predicted.planned_percentile:g}"
    return text


def _hex64(value: int) -> str:
    """A checksum as a 64-bit hexadecimal literal."""
    if type(value) is not int or not 0 <= value < 1 << 64:
        raise TypeError(f"a checksum must be a 64-bit unsigned integer, not {value!r}")
    return f"0x{value:016x}"


def _extent_literal(extent: Extent) -> str:
    return f"Extent({python_literal(extent.offset)}, {python_literal(extent.nbytes)}, {_hex64(extent.checksum)})"


def _bits_histogram(plan: Plan) -> str:
    counts: dict[int, int] = {}
    for choice in plan.shards:
        counts[choice.bits] = counts.get(choice.bits, 0) + 1
    return ", ".join(f"{n}x{'dropped' if b == 0 else f'{b}b'}" for b, n in sorted(counts.items(), reverse=True))


def check_runner(text: str, decoder: bool) -> None:
    """Refuse (`UserError`) runner source that is not exactly what `emit_runner` writes for an
    encoder (or a `decoder`) with this sticc's runtime: `check_runner_source` against that runtime."""
    runtime_body = _runtime_body(DECODER_RUNTIME_MODULES if decoder else RUNTIME_MODULES)
    check_runner_source(text, runtime_body, DECODER_RUNNER if decoder else ENCODER_RUNNER)


def load_runner(path: str | Path) -> ModuleType:
    """Import a generated runner.py from its path (the plain importlib recipe; nothing registered)."""
    path = Path(path)
    spec = importlib.util.spec_from_file_location(f"sticc_runner_{path.parent.name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


OUTPUT_FILES = ("runner.py", "plan.json", "report.md", "timeline.svg", "device.json", "importance.json")


def write_output(out_dir: str | Path, source: RunnerSource, extra: dict[str, str] | None = None) -> Path:
    """Write runner.py, plan.json and the `extra` files (reports, profiles) as the directory
    `out_dir`, replaced as a whole (`sticc.base.jsonfile.write_dir_atomic`: staged in a hidden sibling,
    fsynced, swapped in): a reader or a crash sees the old output or the new one, never a mix.
    An existing `out_dir` must be empty or a sticc output (runner.py or plan.json); the old
    output's files not written again (`OUTPUT_FILES`) are dropped, anything else in it is kept."""
    files = {
        "runner.py": source.text,
        "plan.json": json.dumps(source.plan_json, indent=1, sort_keys=True) + "\n",
        **(extra or {}),
    }
    write_dir_atomic(out_dir, files, markers=("runner.py", "plan.json"), owned=OUTPUT_FILES, what="a sticc output (runner.py, plan.json)")
    return Path(out_dir) / "runner.py"
