"""Lowering a plan to runner source: every decision is made here, the template only renders.

`emit_runner` returns a `RunnerSource` (text plus metadata); `write_output` puts it on disk with the
plan, atomically. The runtime (`sticc/runtime.py`) is inlined verbatim; the generated part is the
literal tables (store extents, load list) and the schedule, one block per compute node of the
shard graph, each block commented with the graph node it came from.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import jinja2

import sticc.runtime as runtime_module
from sticc.errors import UserError
from sticc.graph import ComputeStep, build_graph, linear_schedule
from sticc.jsonfile import write_files_atomic
from sticc.plan import Plan, by_position, chunks, memory_model
from sticc.store import Store

TEMPLATES = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class MemberLine:
    """One literal Member (a stored piece) of a chunk in the generated LOADS table."""

    what: str
    offset: int
    layout: str  # a blob_layout(...) call with literal arguments
    crc32: str
    preloaded: bool


@dataclass(frozen=True)
class ChunkLine:
    """One literal ChunkLoad of the generated LOADS table."""

    key: int
    members: tuple[MemberLine, ...]


@dataclass(frozen=True)
class BlockLines:
    """One schedule block: the compute node, its loads' keys, and its describing comment."""

    node: str
    layer: int
    part: str
    keys: tuple[int, ...]
    comment: str


@dataclass(frozen=True)
class RunnerSource:
    text: str
    plan_hash: str
    plan_json: dict


def _runtime_body() -> str:
    """runtime.py without its module docstring (the runner has its own)."""
    source = Path(runtime_module.__file__).read_text(encoding="utf-8")
    docstring_end = ast.parse(source).body[0].end_lineno
    return "\n".join(source.splitlines()[docstring_end:]).strip("\n")


def _layout_call(layout) -> str:
    return f"blob_layout({layout.rows}, {layout.cols}, {layout.bits}, {layout.group_size}, {layout.bias_len})"


def _describe(step: ComputeStep, shards_per_layer: int) -> str:
    what = "attention" if step.part == "attn" else "FFN"
    if not step.loads:
        return f"layer {step.layer} {what}: every shard dropped, only the bias and the join remain"
    bits = sorted({load.bits for load in step.loads})
    preloaded = sum(load.preload for load in step.loads)
    return (
        f"layer {step.layer} {what}: {len(step.loads)}/{shards_per_layer} shards kept, "
        f"bits {'/'.join(map(str, bits))}" + (f", {preloaded} preloaded" if preloaded else "")
    )


def emit_runner(store: Store, plan: Plan, store_path: str | Path) -> RunnerSource:
    """The runner for `plan` over `store`; identical inputs give identical bytes."""
    steps = linear_schedule(build_graph(store, plan))
    choices = by_position(plan.shards)
    planned = {}  # (layer, part) -> that block's chunks, each its shard indices in member order
    for layer, part, indices in chunks(plan.shards, plan.shards_per_chunk):
        planned.setdefault((layer, part), []).append(indices)
    loads: list[ChunkLine] = []
    blocks: list[BlockLines] = []
    for step in steps:
        assert sorted(i for c in planned.get((step.layer, step.part), []) for i in c) == [load.index for load in step.loads]
        keys = []
        # the block's kept shards by chunk: one arena allocation and one kernel call each
        for indices in planned.get((step.layer, step.part), []):
            members = []
            for index in indices:
                choice = choices[(step.layer, index)]
                version = store.version(step.layer, index, step.part, choice.bits)
                members.append(MemberLine(
                    version.key.describe(), version.extent.offset, _layout_call(version.layout),
                    f"0x{version.extent.crc32:08x}", choice.preload,
                ))
            keys.append(len(loads))
            loads.append(ChunkLine(len(loads), tuple(members)))
        blocks.append(BlockLines(repr(step.node), step.layer, step.part, tuple(keys), _describe(step, store.shards_per_layer)))
    plan_json = plan.to_json()
    spec = store.spec
    memory = memory_model(store, plan.shards, plan.shards_per_chunk, plan.targets.seq_len)
    if plan.runtime.io_threads > 1 and memory.staging_bytes:
        raise UserError("runtime.io_threads > 1 needs a plan whose pieces are all fp32 or preloaded (one staging buffer)")
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True, autoescape=False,
    )
    text = environment.get_template("runner.py.j2").render(
        spec=spec, store=store, plan=plan, plan_hash=plan_json["plan_hash"],
        store_path=str(Path(store_path).resolve()), loads=loads, blocks=blocks,
        runtime_body=_runtime_body(), kept=sum(1 for c in plan.shards if c.bits),
        preloaded=sum(1 for c in plan.shards if c.preload), total=len(plan.shards),
        bits_histogram=_bits_histogram(plan), data_file=store.data_path.name,
        arena_bytes=memory.arena_bytes(plan.memory_budget_bytes), staging_bytes=memory.staging_bytes,
    )
    text = re.sub(r"[ \t]+\n", "\n", text)
    return RunnerSource(text, plan_json["plan_hash"], plan_json)


def _bits_histogram(plan: Plan) -> str:
    counts: dict[int, int] = {}
    for choice in plan.shards:
        counts[choice.bits] = counts.get(choice.bits, 0) + 1
    return ", ".join(f"{n}x{'dropped' if b == 0 else f'{b}b'}" for b, n in sorted(counts.items(), reverse=True))


def load_runner(path: str | Path) -> ModuleType:
    """Import a generated runner.py from its path (the plain importlib recipe; nothing registered)."""
    path = Path(path)
    spec = importlib.util.spec_from_file_location(f"sticc_runner_{path.parent.name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_output(out_dir: str | Path, source: RunnerSource, extra: dict[str, str] | None = None) -> Path:
    """Write runner.py, plan.json and the `extra` files (reports) into `out_dir`, each replaced
    atomically, none until all are written (a staged rename)."""
    files = {
        "runner.py": source.text,
        "plan.json": json.dumps(source.plan_json, indent=1, sort_keys=True) + "\n",
        **(extra or {}),
    }
    write_files_atomic(out_dir, files)
    return Path(out_dir) / "runner.py"
