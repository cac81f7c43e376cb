"""A plan.json as a report reads it: `read_plan_json`, and what the report shows of the plan, apart
from how it is drawn (docs/report.md).

Everything a report shows is read from the plan.json dict that `sticc compile` writes
(docs/plan-schema.md), so a report can be redrawn later from the file alone (`sticc report
OUT/plan.json`). The optional keys (`memory`, `timeline`, `prefill_timeline`, `by_length`,
`comparison`, `device`, `importance`) may be missing or null: a plan made without a device profile
has no timeline, one without an importance profile no fidelity loss.

Here are the records a report is made of (`Section`: a heading, a note and a table of strings) and
the facts it shows: whether the plan is a decoder's, the plans of its runner, its shards by layer,
its resident set, and its simulated calls (`TimelineView`) with their totals (`TimelineSummary`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import TypeVar

from sticc.base.errors import UserError
from sticc.base.schema import Part, read_file
from sticc.ir.plan import Event, EventKind, Lane, PlanFile

NO_TIMELINE = "no device profile: no timeline"
WARNING_KINDS = (EventKind.STALL, EventKind.WAIT)  # drawn as warnings: in the text bar and the SVG


# what a plan.json written by `sticc compile` has, and a hand-written one lacks
_REQUIRED_KEYS = (
    "format_version", "store_id", "model", "solver", "memory_budget_bytes", "shards_per_chunk", "predicted", "plan_hash",
)


def read_plan_json(path: str | Path) -> dict:
    """The plan.json at `path` (or inside the directory `path`), validated (`sticc.ir.plan.PlanFile`)
    and complete enough to report on, as a JSON object.

    Every problem is one `UserError` line: a missing or unreadable file, invalid JSON, a field of
    the wrong type or range, or a hand-written plan (no predictions).
    """
    path = Path(path)
    if path.is_dir():
        path = path / "plan.json"
    plan = read_file(PlanFile, path, "plan file")
    missing = [key for key in _REQUIRED_KEYS if getattr(plan, key) is None]
    missing += [] if plan.shards else ["shards"]
    missing += [] if plan.targets.seq_len is not None else ["targets.seq_len"]
    if missing:
        raise UserError(f"{path} is not a sticc plan.json (no {', '.join(missing)}; hand-written plans have no predictions: compile them first)")
    # as JSON, without the sections it lacks (a missing key and a null one read the same below)
    return {key: value for key, value in json.loads(json.dumps(asdict(plan))).items() if value is not None}


@dataclass(frozen=True)
class TimelineView:
    """One simulated call a report shows: where plan.json keeps it, and its prediction and target."""

    key: str  # plan.json's key: "timeline" (an encoder's call, a decoder's decode step) or "prefill_timeline"
    panel: str  # the SVG panel's id (decoders)
    title: str  # the report section's heading
    predicted_key: str  # `predicted[...]`: the call's median latency
    target_key: str  # `targets[...]`: its target
    noun: str  # what its latency is called


CALL = TimelineView("timeline", "call", "Timeline", "latency_s", "latency_s", "latency")
PREFILL = TimelineView("prefill_timeline", "prefill", "Timeline: prefill", "first_token_s", "first_token_s", "time to first token")
DECODE = TimelineView("timeline", "decode", "Timeline: one decode step", "latency_s", "latency_s", "per-token latency")


@dataclass(frozen=True)
class Section:
    """One part of the report: a heading, an optional sentence, and a table of strings."""

    title: str
    note: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    shard_cells: bool = False  # the per-layer table: cells are bits, "-" dropped, "8*" preloaded
    lane_bar: TimelineView | None = None  # followed by the text bar of this call's two lanes
    lane_plan: int = 0  # whose call the bar draws: `runner_plans(plan)[lane_plan]` (0: the plan itself)


@dataclass(frozen=True)
class LayerRow:
    layer: int
    bits: tuple[int | None, ...]  # per shard index; None where the plan lists no such shard
    preload: tuple[bool, ...]
    first_index: int = 0  # the shard index of the first cell (a decoder's LM head wraps over several rows)
    lm_head: bool = False  # a decoder's LM head slices (layer `layers`)
    wrapped: bool = False  # one of several rows of the LM head

    @property
    def kept(self) -> int:
        return sum(1 for b in self.bits if b)

    @property
    def listed(self) -> int:
        return sum(1 for b in self.bits if b is not None)

    @property
    def name(self) -> str:
        if not self.lm_head:
            return str(self.layer)
        return f"LM head {self.first_index}-{self.first_index + len(self.bits) - 1}" if self.wrapped else "LM head"


@dataclass(frozen=True)
class TimelineSummary:
    events: tuple[Event, ...]
    end_s: float  # the last event's end
    compute_stall_s: float
    ring_wait_s: float
    io_busy_s: float  # loads on the IO lane
    compute_busy_s: float  # embedding, chunk compute and joins

    def busy_fraction(self, busy_s: float) -> float:
        return busy_s / self.end_s if self.end_s > 0 else 0.0


def is_decoder(plan: dict) -> bool:
    """A decoder's plan: its targets name the context its KV cache holds."""
    return (plan.get("targets") or {}).get("context") is not None


def lm_head_layer(plan: dict) -> int | None:
    """The layer index of a decoder's LM head slices (one past its last layer); None for an encoder.

    The slices cannot be dropped, so `load_order` names each with part "lm_head"; a plan without
    a load order takes the last layer of its shards."""
    if not is_decoder(plan):
        return None
    heads = {step[0] for step in plan.get("load_order") or [] if len(step) > 2 and step[2] == Part.LM_HEAD}
    if heads:
        return max(heads)
    return max((s["layer"] for s in plan.get("shards", [])), default=None)


LM_HEAD_COLUMNS = 12  # an LM head with more slices than this (and than a layer has shards) wraps over rows


def layer_rows(plan: dict) -> list[LayerRow]:
    """One row per layer of the plan's shards, cells by shard index. A decoder's LM head slices
    follow as their own row, wrapped over several when they outnumber the table's columns."""
    by_position = {(s["layer"], s["index"]): s for s in plan.get("shards", [])}
    head = lm_head_layer(plan)
    layers = sorted({layer for layer, _ in by_position} - {head})
    indices = sorted({index for layer, index in by_position if layer != head})

    def row(layer: int, at: list[int], **flags) -> LayerRow:
        shards = [by_position.get((layer, index)) for index in at]
        return LayerRow(
            layer,
            tuple(None if s is None else s["bits"] for s in shards),
            tuple(bool(s and s.get("preload")) for s in shards),
            at[0] if at else 0,
            **flags,
        )

    rows = [row(layer, indices) for layer in layers]
    if head is not None and any(layer == head for layer, _ in by_position):
        slices = sorted(index for layer, index in by_position if layer == head)
        count = slices[-1] + 1
        width = max(len(indices), min(count, LM_HEAD_COLUMNS))
        wrapped = count > width
        for first in range(0, count, width):
            rows.append(row(head, list(range(first, min(count, first + width))), lm_head=True, wrapped=wrapped))
    return rows


def mean_kept_bits(bits: list[int | None] | tuple[int | None, ...]) -> float | None:
    """The mean bitwidth of the kept (non-dropped) shards; None when every shard is dropped."""
    kept = [b for b in bits if b]
    return sum(kept) / len(kept) if kept else None


_E = TypeVar("_E", bound=StrEnum)


def _member(enum: type[_E], value: str) -> _E | str:
    """`value` as the member of `enum` it names, or unchanged where it names none: a plan.json
    dict that did not come through `read_plan_json` may carry a kind this report does not know,
    which it still draws (in grey)."""
    try:
        return enum(value)
    except ValueError:
        return value


def _timeline_event(event: dict) -> Event:
    """One event of plan.json's timeline as an `Event`, its lane and kind as `Lane` and `EventKind`
    members (unknown ones stay strings, see `_member`)."""
    return Event(
        _member(Lane, event["lane"]),
        _member(EventKind, event["kind"]),
        str(event.get("label", "")),
        float(event["start_s"]),
        float(event["end_s"]),
    )


def timeline_views(plan: dict) -> tuple[TimelineView, ...]:
    """The simulated calls the report shows: an encoder's call; a decoder's prefill and one decode
    step (the decode step alone when plan.json has no `prefill_timeline`)."""
    if not is_decoder(plan) or not plan.get("timeline"):
        return (CALL,)
    return (PREFILL, DECODE) if plan.get("prefill_timeline") else (DECODE,)


def timeline_summary(plan: dict, view: TimelineView = CALL) -> TimelineSummary | None:
    """The plan's timeline (`view`'s: a decoder's decode step by default) with its totals, or None
    without a device profile."""
    timeline = plan.get(view.key)
    if not timeline:
        return None
    events = tuple(_timeline_event(e) for e in timeline.get("events", []))

    def total(lane: Lane, kinds: tuple[EventKind, ...]) -> float:
        return sum(e.end_s - e.start_s for e in events if e.lane == lane and e.kind in kinds)

    stall = timeline.get("compute_stall_s")
    wait = timeline.get("ring_wait_s")
    return TimelineSummary(
        events=events,
        end_s=max((e.end_s for e in events), default=0.0),
        compute_stall_s=total(Lane.COMPUTE, (EventKind.STALL,)) if stall is None else float(stall),
        ring_wait_s=total(Lane.IO, (EventKind.WAIT,)) if wait is None else float(wait),
        io_busy_s=total(Lane.IO, (EventKind.LOAD,)),
        compute_busy_s=total(Lane.COMPUTE, (EventKind.EMBED, EventKind.COMPUTE, EventKind.JOIN)),
    )


def drawn_end_s(plan: dict, summary: TimelineSummary, view: TimelineView = CALL) -> float:
    """Where a drawing of the timeline ends: the last event or the predicted latency, and the
    target latency too unless it lies far beyond (it is then only named, not drawn)."""
    end_s = max(summary.end_s, plan["predicted"].get(view.predicted_key) or 0.0)
    target = plan["targets"].get(view.target_key)
    if target is not None and target <= 1.25 * end_s:
        end_s = max(end_s, target)
    return end_s


def title_of(plan: dict) -> str:
    return f"sticc plan: {plan.get('model', '?')} ({plan.get('solver', {}).get('name', '?')})"


def runner_plans(plan: dict) -> tuple[dict, ...]:
    """The plans of the runner `plan` describes, most faithful first: the plan itself, then its
    `alternatives` (faster plans, decreasing latency targets); a single plan alone."""
    return (plan, *(plan.get("alternatives") or ()))


def plan_name(plan: dict, n: int = 0) -> str:
    """'20ms plan', as `--latency` names its target; 'plan <n + 1>' for one without a latency target."""
    target_s = (plan.get("targets") or {}).get("latency_s")
    return f"plan {n + 1}" if target_s is None else f"{round(target_s * 1e3, 3):g}ms plan"


def preload_set(plan: dict) -> frozenset[tuple[int, int, int]]:
    """The (layer, index, bits) of the plan's preloaded shards."""
    return frozenset((s["layer"], s["index"], s["bits"]) for s in plan.get("shards", []) if s.get("preload"))


@dataclass(frozen=True)
class ResidentSplit:
    """A decoder plan's kept pieces by where they live between tokens: the bits of each."""

    layer_resident: list[int]  # preloaded layer shards: held across tokens
    layer_streamed: list[int]  # kept layer shards read again by every token
    layer_dropped: int
    head_resident: list[int]  # preloaded LM head slices
    head_streamed: list[int]
    head_total: int


def resident_split(plan: dict) -> ResidentSplit:
    head = lm_head_layer(plan)
    split: dict[tuple[bool, bool], list[int]] = {(h, p): [] for h in (False, True) for p in (False, True)}
    dropped = 0
    for s in plan.get("shards", []):
        if not s["bits"]:
            dropped += 1
            continue
        split[(s["layer"] == head, bool(s.get("preload")))].append(s["bits"])
    return ResidentSplit(
        split[(False, True)], split[(False, False)], dropped, split[(True, True)], split[(True, False)],
        len(split[(True, True)]) + len(split[(True, False)]),
    )
