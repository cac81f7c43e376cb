"""Plan reports: report.md, timeline.svg and the terminal view of a plan.json (docs/report.md).

Everything here reads the plan.json dict that `sticc compile` writes (docs/plan-schema.md), so a
report can be redrawn later from the file alone (`sticc report OUT/plan.json`). The optional keys
(`memory`, `timeline`, `prefill_timeline`, `by_length`, `comparison`, `device`, `importance`) may be
missing or null: a plan made without a device profile has no timeline, one without an importance
profile no fidelity loss. An encoder's `by_length` becomes the "Latency by input length" section.

The report is built once as `Section`s (a title, a note, a table of strings) and rendered twice:
as markdown and as rich tables, so the file and the terminal always say the same thing. The
timeline is drawn twice too: as a text bar of the two lanes (in both) and as an SVG, written as
text (no plotting library).

A decoder's plan (its `targets` have a `context`) is read as a user of generation reads it: time
to first token (the prefill, `prefill_timeline`) and per-token latency (one decode step at the
context's last position, `timeline`) with tokens/s, IO per token and per prefill, the KV cache
apart from the weight pool, and the resident set: the pieces held across tokens against those
read again by every token, the layers' shards apart from the LM head's vocabulary slices (the
shards of layer `layers`). Encoders' reports do not change with it.

An elastic runner's plan.json (`sticc compile --latency 20ms,40ms,80ms`) is its most faithful plan
with the faster ones as `alternatives` (`runner_plans`): the report adds the plans side by side, the
deadline range each serves at every input length (`deadline_ranges`: a call takes the most faithful
plan whose predicted latency meets its deadline, else the fastest, which sheds), the preload set
they share, each plan's `shed_order` (what the runner drops first when a call falls behind) and each
plan's timeline. A single plan with a `shed_order` gets its deadline ranges and shed order too.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import TypeVar
from xml.sax.saxutils import escape

from rich.console import Console
from rich.markup import escape as escape_markup
from rich.table import Table
from rich.text import Text

from sticc.base.errors import UserError
from sticc.base.jsonfile import write_files_atomic
from sticc.base.schema import Part, read_file
from sticc.ir.plan import Event, EventKind, Lane, PlanFile
from sticc.runtime.core import LengthRow
from sticc.runtime.elastic import latency_at

REPORT_MD = "report.md"
TIMELINE_SVG = "timeline.svg"
NO_TIMELINE = "no device profile: no timeline"

# ----------------------------------------------------------------------------------------------
# Reading plan.json
# ----------------------------------------------------------------------------------------------

# what a plan.json written by `sticc compile` has, and a hand-written one lacks
_REQUIRED_KEYS = (
    "format_version", "store_id", "model", "solver", "memory_budget_bytes", "shards_per_chunk", "predicted", "plan_hash",
)
_LANES = (Lane.IO, Lane.COMPUTE)


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


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# ----------------------------------------------------------------------------------------------
# Formatting: one place for units
# ----------------------------------------------------------------------------------------------

NA = "n/a"


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return NA
    ms = seconds * 1e3
    if ms == 0:
        return "0 ms"
    if abs(ms) >= 1000:
        return f"{ms:.0f} ms"
    if abs(ms) >= 10:
        return f"{ms:.1f} ms"
    if abs(ms) >= 1:
        return f"{ms:.2f} ms"
    return f"{ms:.3f} ms"


def _bytes(nbytes: float | None) -> str:
    """MB (10^6 bytes, as the CLI prints), or kB for small tiny-model sizes."""
    if nbytes is None:
        return NA
    if abs(nbytes) >= 1e6 or nbytes == 0:
        return f"{nbytes / 1e6:.2f} MB"
    if abs(nbytes) >= 1e3:
        return f"{nbytes / 1e3:.1f} kB"
    return f"{nbytes:.0f} B"


def _bandwidth(bandwidth_Bps: float | None) -> str:
    return NA if bandwidth_Bps is None else f"{bandwidth_Bps / 1e6:.1f} MB/s"


def _percent(part: float | None, whole: float | None) -> str:
    if part is None or not whole:
        return ""
    return f"{100 * part / whole:.1f}%"


def _of_fp32(nbytes: float | None, full_precision_bytes: float | None) -> str:
    share = _percent(nbytes, full_precision_bytes)
    return _bytes(nbytes) + (f" ({share} of fp32)" if share else "")


def _number(value: float | None, digits: int = 6) -> str:
    return NA if value is None else f"{value:.{digits}g}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _bits(value: float | None) -> str:
    return NA if value is None else f"{value:.2f}"


def _rate(per_s: float | None) -> str:
    """A rate (tokens/s) with three significant digits or so."""
    if per_s is None:
        return NA
    if per_s >= 100:
        return f"{per_s:.0f}"
    return f"{per_s:.1f}" if per_s >= 10 else f"{per_s:.2f}"


def _tokens_per_s(latency_s: float | None) -> float | None:
    """Tokens per second at one token per `latency_s` (None when unknown)."""
    return 1.0 / latency_s if latency_s else None


def _histogram(bits: list[int]) -> str:
    """'20x 8-bit, 42x 4-bit, 10x dropped', widest first."""
    counts: dict[int, int] = {}
    for b in bits:
        counts[b] = counts.get(b, 0) + 1
    return ", ".join(f"{n}x {'dropped' if b == 0 else f'{b}-bit'}" for b, n in sorted(counts.items(), reverse=True))


# ----------------------------------------------------------------------------------------------
# The report's content, renderer-independent
# ----------------------------------------------------------------------------------------------


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


def _full_precision_bytes(plan: dict) -> int | None:
    return (plan.get("memory") or {}).get("full_precision_bytes")


def _is_cosine_metric(plan: dict) -> bool:
    metric = ((plan.get("importance") or {}).get("metric") or "").lower()
    return "cos" in metric


def _fidelity(plan: dict, loss: float | None) -> str:
    if loss is None:
        return NA + " (no importance profile)" if not plan.get("importance") else NA
    text = f"{loss:.4g}"
    if _is_cosine_metric(plan):
        text += f" (cosine ≈ {1 - loss:.4f})"
    return text


def title_of(plan: dict) -> str:
    return f"sticc plan: {plan.get('model', '?')} ({plan.get('solver', {}).get('name', '?')})"


def targets_line(plan: dict) -> str:
    """The targets in one line, for the SVG title."""
    targets = plan.get("targets", {})
    parts = []
    if is_decoder(plan):
        if targets.get("first_token_s") is not None:
            parts.append(f"first token {_ms(targets['first_token_s'])}")
        if targets.get("latency_s") is not None:
            parts.append(f"per token {_ms(targets['latency_s'])} ({_rate(_tokens_per_s(targets['latency_s']))} tokens/s)")
        if targets.get("memory_bytes") is not None:
            parts.append(f"weight memory {_bytes(targets['memory_bytes'])}")
        if targets.get("kv_memory_bytes") is not None:
            parts.append(f"KV cache {_bytes(targets['kv_memory_bytes'])}")
        parts.append(f"prompt {targets.get('seq_len', NA)} tokens, context {targets['context']}")
        return "targets: " + ", ".join(parts)
    plans = runner_plans(plan)
    if len(plans) > 1:
        latencies = ", ".join(_ms((p.get("targets") or {}).get("latency_s")) for p in plans)
        parts.append(f"latency {latencies} ({len(plans)} plans, one runner)")
    elif targets.get("latency_s") is not None:
        parts.append(f"latency {_ms(targets['latency_s'])}")
    if targets.get("memory_bytes") is not None:
        parts.append(f"memory {_bytes(targets['memory_bytes'])}")
    parts.append(f"seq_len {targets.get('seq_len', NA)}")
    return "targets: " + ", ".join(parts)


def sections(plan: dict) -> list[Section]:
    """The report's sections, in order; markdown and the terminal render these. An elastic runner's
    (`alternatives`) adds its plans, their shared preload set, the deadline ranges, each plan's shed
    order and each plan's timeline."""
    out = [_targets_section(plan), _solver_section(plan), _predicted_section(plan)]
    if len(runner_plans(plan)) > 1:
        out += [_plans_section(plan), _preload_section(plan)]
    if is_decoder(plan):
        out.append(_resident_section(plan))
    if plan.get("by_length"):
        out.append(_length_section(plan))
    deadlines = _deadline_section(plan)
    if deadlines:
        out.append(deadlines)
    out.append(_shards_section(plan))
    out += _shed_sections(plan)
    comparison = _comparison_section(plan)
    if comparison:
        out.append(comparison)
    out += _timeline_sections(plan)
    return out


def headline(plan: dict) -> str:
    """A decoder's plan in one sentence (above the sections): tokens/s, time to first token, the
    resident set and what each token reads; "" for an encoder."""
    if not is_decoder(plan):
        return ""
    predicted = plan["predicted"]
    parts = []
    if predicted.get("latency_s") is not None:
        text = f"{_rate(_tokens_per_s(predicted['latency_s']))} tokens/s"
        if predicted.get("planned_latency_s") is not None:
            text += f" ({_rate(_tokens_per_s(predicted['planned_latency_s']))} at p{_percentile(predicted)})"
        parts.append(text)
    else:
        parts.append("no device profile: no timing")
    if predicted.get("first_token_s") is not None:
        text = f"first token in {_ms(predicted['first_token_s'])}"
        if predicted.get("planned_first_token_s") is not None:
            text += f" ({_ms(predicted['planned_first_token_s'])} at p{_percentile(predicted)})"
        parts.append(text)
    split = resident_split(plan)
    resident = f"resident across tokens: {_count(len(split.layer_resident), 'layer shard')} and " \
               f"{len(split.head_resident)} of {split.head_total} LM head slices ({_bytes(predicted.get('preload_bytes'))})"
    streamed = f"read by every token: {_bytes(predicted.get('io_bytes_per_token'))}"
    kv = f"KV cache {_bytes(predicted.get('kv_cache_bytes'))} for {plan['targets']['context']} positions"
    return ", ".join(parts) + f"; {resident}; {streamed}; {kv}."


def _percentile(predicted: dict) -> str:
    """The planned percentile, 90 rather than 90.0 (plan.json's float read back)."""
    value = predicted.get("planned_percentile")
    return "?" if value is None else f"{value:g}"


def _targets_section(plan: dict) -> Section:
    targets = plan["targets"]
    full = _full_precision_bytes(plan)
    memory = targets.get("memory_bytes")
    memory_text = "none (the weight pool budget below is what the plan needs)" if memory is None else _of_fp32(memory, full)
    if is_decoder(plan):  # the prompt's first token, then one token at a time; the KV cache apart from the weights
        latency = targets.get("latency_s")
        kv = targets.get("kv_memory_bytes")
        rows = [
            ("time to first token", "none" if targets.get("first_token_s") is None else _ms(targets["first_token_s"])),
            ("per-token latency", "none" if latency is None else f"{_ms(latency)} ({_rate(_tokens_per_s(latency))} tokens/s)"),
            ("weight memory", memory_text),
            ("KV cache memory", "none (the KV cache is reported below, apart from the weights)" if kv is None else _bytes(kv)),
            ("prompt length", f"{targets.get('seq_len', NA)} tokens"),
            ("context", f"{targets['context']} positions (prompt and generated tokens)"),
        ]
    else:
        latency = "none" if targets.get("latency_s") is None else _ms(targets["latency_s"])
        faster = [(p.get("targets") or {}).get("latency_s") for p in runner_plans(plan)[1:]]
        if faster:
            latency += f" (this plan); alternatives {', '.join(_ms(t) for t in faster)} (see Plans of this runner)"
        rows = [
            ("latency", latency),
            ("memory", memory_text),
            ("sequence length", str(targets.get("seq_len", NA))),
        ]
    if full:
        rows.append(("fp32 model", _bytes(full)))
    return Section("Targets", "", ("", "value"), tuple(rows))


def _solver_section(plan: dict) -> Section:
    solver = plan["solver"]
    gap = solver.get("gap")
    rows = (
        ("solver", str(solver.get("name", NA))),
        ("status", str(solver.get("status", NA))),
        ("objective", _number(solver.get("objective"))),
        ("bound", _number(solver.get("bound"))),
        ("gap", NA if gap is None else f"{100 * gap:.2f}%"),
        ("wall time", NA if solver.get("wall_s") is None else f"{solver['wall_s']:.2f} s"),
    )
    note = f"plan {plan.get('plan_hash', '?')[:12]}, store {plan.get('store_id', '?')[:12]}"
    return Section("Solver", note, ("", "value"), rows)


def _latency(plan: dict, median_key: str, planned_key: str, target_key: str) -> str:
    """'<median> median, <planned> at p90, within the target': the planned latency is the one the
    target bounds (the median's, for plans without one)."""
    predicted, targets = plan["predicted"], plan["targets"]
    text = _ms(predicted.get(median_key))
    if predicted.get(median_key) is None and not plan.get("device"):
        return text + " (no device profile)"
    if predicted.get(planned_key) is not None:
        text += f" median, {_ms(predicted[planned_key])} at p{_percentile(predicted)}"
        return text + _against(predicted.get(planned_key), targets.get(target_key), _ms)
    return text + _against(predicted.get(median_key), targets.get(target_key), _ms)


def _predicted_section(plan: dict) -> Section:
    predicted = plan["predicted"]
    full = _full_precision_bytes(plan)
    targets = plan["targets"]
    peak = _of_fp32(predicted.get("peak_weight_bytes"), full)
    peak += _against(predicted.get("peak_weight_bytes"), targets.get("memory_bytes"), _bytes)
    decoder = is_decoder(plan)
    if decoder:  # a prefill (the first token), then one call per generated token
        tokens_per_s = NA
        if predicted.get("latency_s") is not None:
            tokens_per_s = f"{_rate(_tokens_per_s(predicted['latency_s']))} median"
            if predicted.get("planned_latency_s") is not None:
                tokens_per_s += f", {_rate(_tokens_per_s(predicted['planned_latency_s']))} at p{_percentile(predicted)}"
            if targets.get("latency_s") is not None:
                tokens_per_s += f" (target {_rate(_tokens_per_s(targets['latency_s']))})"
        kv = _bytes(predicted.get("kv_cache_bytes")) + f" for {targets['context']} positions, beside the weight pool"
        kv += _against(predicted.get("kv_cache_bytes"), targets.get("kv_memory_bytes"), _bytes)
        rows = [
            ("time to first token", _latency(plan, "first_token_s", "planned_first_token_s", "first_token_s")),
            ("per-token latency", _latency(plan, "latency_s", "planned_latency_s", "latency_s")),
            ("tokens/s", tokens_per_s),
            ("peak weight memory", peak),
            ("IO per token", _bytes(predicted.get("io_bytes_per_token"))),
            ("IO per prefill", f"{_bytes(predicted.get('io_bytes'))} ({targets.get('seq_len', NA)}-token prompt)"),
            ("KV cache", kv),
            ("resident across tokens", _bytes(predicted.get("preload_bytes"))),
            ("fidelity loss", _fidelity(plan, predicted.get("fidelity_loss"))),
        ]
    else:
        rows = [
            ("latency", _latency(plan, "latency_s", "planned_latency_s", "latency_s")),
            ("peak weight memory", peak),
            ("IO per call", _bytes(predicted.get("io_bytes"))),
            ("preload", _bytes(predicted.get("preload_bytes"))),
            ("fidelity loss", _fidelity(plan, predicted.get("fidelity_loss"))),
        ]
    budget = plan.get("memory_budget_bytes")
    memory = plan.get("memory") or {}
    plans = runner_plans(plan)
    pool = _of_fp32(budget, full)
    if {"pinned_bytes", "scratch_bytes", "ring_bytes"} <= set(memory):
        pool += (f" = pinned {_bytes(memory['pinned_bytes'])} + scratch {_bytes(memory['scratch_bytes'])}"
                 f" + ring {_bytes(memory['ring_bytes'])}")
    rows.append(("weight pool budget", pool))
    notes = []
    if len(plans) > 1:
        notes.append(f"the most faithful of this runner's {len(plans)} plans ({plan_name(plan)}), whose pool and preload "
                     "set the others share; the others: Plans of this runner")
    if decoder:
        notes.append(f"per token: one decode step at the context's last position ({targets['context']}), the slowest, "
                     "its attention reading every cached position")
    device = plan.get("device")
    if device:
        text = f"device: {device.get('device', '?')}, reads {_bandwidth(device.get('read_bandwidth_Bps'))}"
        if device.get("emulated_bandwidth_Bps") is not None:
            text += f", emulated flash cap {_bandwidth(device['emulated_bandwidth_Bps'])} (emulated)"
        notes.append(text)
    importance = plan.get("importance")
    if importance:
        text = f"fidelity metric: {importance.get('metric') or 'unnamed'} (additive over shards)"
        additivity = importance.get("additivity") or {}
        if not additivity.get("plans"):  # not measured: plan.json's `{}`, read back as zeros
            additivity = {}
        shown = ", ".join(f"{k} {_number(v, 3) if _is_number(v) else v}" for k, v in sorted(additivity.items())
                          if _is_number(v) or isinstance(v, str))
        if shown:
            text += f"; additivity check: {shown}"
        notes.append(text)
    title = "Predicted, per prompt and per token" if decoder else "Predicted, per call"
    return Section(title, "; ".join(notes), ("", "value"), tuple(rows))


def _length_section(plan: dict) -> Section:
    """An encoder plan's call at other input lengths than planned, up to the truncation length."""
    targets, predicted = plan["targets"], plan["predicted"]
    records = plan["by_length"]
    planned, longest = targets.get("seq_len"), records[-1]["seq_len"]
    compute = any(record.get("compute_s") for record in records)  # older plans: absent, or 0 read back
    rows = []
    for record in records:
        tokens = str(record["seq_len"]) + (" (planned)" if record["seq_len"] == planned else "")
        rows.append((
            tokens, _ms(record["latency_s"]),
            _ms(record["planned_latency_s"]) + _against(record["planned_latency_s"], targets.get("latency_s"), _ms),
            *((_ms(record.get("compute_s")),) if compute else ()),
            _bytes(record["peak_weight_bytes"]),
        ))
    note = (
        f"the same plan at other input lengths: a text is cut at {longest} tokens (the runner's truncation length: the "
        f"checkpoint's max_seq_length where it has one, else the model's positions) and a call pads to its longest text. IO is the same at every length "
        f"({_bytes(predicted.get('io_bytes'))}); compute grows with the tokens, so short inputs wait on reads and long "
        "ones on compute. Past the planned length the embedding rows outgrow the pool's scratch and take a counted "
        "temporary. A batch of B texts padded to L tokens computes about as much as one text of B x L tokens (its "
        "matrix products see B x L rows; attention is per text)"
    )
    if compute:
        note += "; compute lane: its work at that length (dequantization and kernels, stalls left out)"
    if len(runner_plans(plan)) > 1:
        note += f". These are the most faithful plan's ({plan_name(plan)}); every plan's give the deadline ranges"
    header = ("tokens", "median", f"p{_percentile(predicted)}", *(("compute lane",) if compute else ()), "peak weight memory")
    return Section("Latency by input length", note, header, tuple(rows))


def _against(value: float | None, target: float | None, unit) -> str:
    """ ", within the target" or ", over the target by ..." when both are known."""
    if value is None or target is None:
        return ""
    return ", within the target" if value <= target else f", over the target by {unit(value - target)}"


# ----------------------------------------------------------------------------------------------
# Elastic runners: several plans in one runner, the deadline each serves, what each sheds
# ----------------------------------------------------------------------------------------------


def runner_plans(plan: dict) -> tuple[dict, ...]:
    """The plans of the runner `plan` describes, most faithful first: the plan itself, then its
    `alternatives` (faster plans, decreasing latency targets); a single plan alone."""
    return (plan, *(plan.get("alternatives") or ()))


def plan_name(plan: dict, n: int = 0) -> str:
    """'20ms plan', as `--latency` names its target; 'plan <n + 1>' for one without a latency target."""
    target_s = (plan.get("targets") or {}).get("latency_s")
    return f"plan {n + 1}" if target_s is None else f"{round(target_s * 1e3, 3):g}ms plan"


def _ms_value(seconds: float) -> str:
    """`_ms` without its unit, for ranges: '21.3' of '21.3-38.0 ms'."""
    return _ms(seconds).removesuffix(" ms")


@dataclass(frozen=True)
class LatencyCurve:
    """A plan's predicted latency at the planned percentile by input tokens, read as the runner
    reads it (`sticc.runtime.elastic.latency_at`): `by_length`'s points interpolated linearly (flat
    before the first, linear past the last two), never less than at fewer tokens."""

    rows: tuple[LengthRow, ...]  # by increasing tokens; only their latencies are read

    def at(self, tokens: float) -> float:
        """The latency (seconds) of a call of `tokens` tokens (batch x padded length)."""
        return latency_at(self.rows, tokens)


def latency_curve(plan: dict) -> LatencyCurve | None:
    """The plan's `LatencyCurve`: `by_length[*].planned_latency_s`, or without `by_length` its
    planned (else median) latency at every length; None without a device profile (no prediction)."""
    points = {int(r["seq_len"]): float(s) for r in plan.get("by_length") or () if (s := _planned_s(r)) is not None}
    if not points:
        latency_s = _planned_s(plan.get("predicted") or {})
        if latency_s is None:
            return None
        points[int((plan.get("targets") or {}).get("seq_len") or 1)] = float(latency_s)
    return LatencyCurve(tuple(LengthRow(t, s, 0.0, 0.0, 0.0) for t, s in sorted(points.items())))


def _planned_s(record: dict) -> float | None:
    """A prediction's latency at the planned percentile, else its median; None without either."""
    planned_s = record.get("planned_latency_s")
    return record.get("latency_s") if planned_s is None else planned_s


@dataclass(frozen=True)
class DeadlineRange:
    """The deadlines, in [low_s, high_s), for which a call of some length runs one plan of the runner."""

    plan: int  # the index in `runner_plans`
    low_s: float | None  # None: from no deadline at all up
    high_s: float | None  # None: every longer deadline
    sheds: bool = False  # below the fastest plan's latency: it runs, shedding chunks (`shed_order`)

    def text(self) -> str:
        """'< 21.3 ms', '21.3-38.0 ms' or '>= 71.2 ms'."""
        if self.low_s is None:
            return "any" if self.high_s is None else f"< {_ms(self.high_s)}"
        if self.high_s is None:
            return f">= {_ms(self.low_s)}"
        return f"{_ms_value(self.low_s)}-{_ms(self.high_s)}"


def deadline_ranges(plan: dict, tokens: float) -> tuple[DeadlineRange, ...]:
    """Which plan of the runner a call of `tokens` tokens (batch x padded length) runs, by deadline,
    shortest deadlines first: the most faithful plan whose predicted latency (`latency_curve`) is
    within the deadline; below every one, the fastest (the last, tightest target's), shedding. A
    plan no deadline picks has no range; () without predictions."""
    latencies = [(n, curve.at(tokens)) for n, p in enumerate(runner_plans(plan)) if (curve := latency_curve(p))]
    if not latencies:
        return ()
    fastest = latencies[-1][0]  # the tightest target's plan, whichever is quickest at this length
    ranges = [DeadlineRange(fastest, None, min(s for _, s in latencies), sheds=True)]
    for n, low_s in latencies:
        faithful = [s for m, s in latencies if m < n]
        high_s = min(faithful) if faithful else None
        if high_s is None or low_s < high_s:
            ranges.append(DeadlineRange(n, low_s, high_s))
    return tuple(sorted(ranges, key=lambda r: -1.0 if r.low_s is None else r.low_s))


def deadline_line(plan: dict, tokens: float) -> str:
    """The deadline ranges of a call of `tokens` tokens in one line: '< 21.3 ms: 20ms plan,
    shedding | 21.3-38.0 ms: 20ms plan | ... | >= 71.2 ms: 80ms plan'."""
    plans = runner_plans(plan)
    return " | ".join(f"{r.text()}: {plan_name(plans[r.plan], r.plan)}" + (", shedding" if r.sheds else "")
                      for r in deadline_ranges(plan, tokens))


def _report_lengths(plan: dict) -> list[int]:
    """The input lengths the deadline table shows: every plan's `by_length` lengths (their union),
    else the planned length."""
    lengths = {int(r["seq_len"]) for p in runner_plans(plan) for r in p.get("by_length") or ()}
    planned = (plan.get("targets") or {}).get("seq_len")
    return sorted(lengths) if lengths else ([] if planned is None else [int(planned)])


def _planned_name(plan: dict) -> str:
    """'p90' for a plan with a planned percentile, 'median' for one without."""
    return "median" if plan["predicted"].get("planned_percentile") is None else f"p{_percentile(plan['predicted'])}"


def _runtime_rule(plan: dict) -> str:
    """How an elastic runner picks a call's plan, in one sentence."""
    latency = _planned_name(plan)
    return (f"A call runs the most faithful plan whose predicted {latency} latency at the call's token count (batch x "
            f"padded length; by_length interpolated linearly and made non-decreasing in length) is "
            "within the call's deadline; with none, the fastest plan, which then sheds pending chunks (Shed order) when "
            "it falls behind its predicted timeline.")


def _served_cell(plan: dict, n: int, tokens: float) -> str:
    """The deadlines for which plan `n` of the runner serves a call of `tokens` tokens, 'never' if none."""
    served = [r.text() for r in deadline_ranges(plan, tokens) if r.plan == n and not r.sheds]
    return served[0] if served else "never"


def _plans_section(plan: dict) -> Section:
    """An elastic runner's plans side by side, most faithful first, each at the planned length."""
    plans = runner_plans(plan)
    planned = plan["targets"].get("seq_len")
    rows = []
    for n, p in enumerate(plans):
        predicted = p.get("predicted") or {}
        bits = [s["bits"] for s in p.get("shards", [])]
        role = " (most faithful)" if n == 0 else " (fastest)" if n == len(plans) - 1 else ""
        loss = predicted.get("fidelity_loss")
        rows.append((
            plan_name(p, n) + role, _ms((p.get("targets") or {}).get("latency_s")), _ms(predicted.get("latency_s")),
            _ms(predicted.get("planned_latency_s")), NA if loss is None else f"{loss:.4g}",
            f"{sum(1 for b in bits if b)}/{len(bits)}", _bits(mean_kept_bits(bits)), _bytes(predicted.get("io_bytes")),
            NA if planned is None else _served_cell(plan, n, planned),
        ))
    pct = _percentile(plan["predicted"])
    header = ("plan", "latency target", "median", f"p{pct}", "fidelity loss", "kept shards", "mean bits", "IO per call",
              f"deadlines served at {planned} tokens")
    note = (f"One runner, {len(plans)} plans in one weight pool ({_bytes(plan.get('memory_budget_bytes'))}) with one "
            "preload set, most faithful first; latencies at the planned length. A call runs the most faithful plan "
            "predicted to meet its deadline, else the fastest, shedding: Deadline ranges by input length.")
    return Section("Plans of this runner", note, header, tuple(rows))


def _deadline_section(plan: dict) -> Section | None:
    """Which plan serves which deadlines at each input length: an elastic runner's, or a single
    plan's that can shed (it has a `shed_order`); None otherwise or without predictions."""
    plans = runner_plans(plan)
    if len(plans) == 1 and not plan.get("shed_order"):
        return None
    lengths = _report_lengths(plan)
    if not lengths or not deadline_ranges(plan, lengths[0]):
        return None
    planned = plan["targets"].get("seq_len")
    by_speed = sorted(range(len(plans)), key=lambda n: -n)  # the fastest plan's column first: deadlines grow to the right
    rows = []
    for tokens in lengths:
        ranges = deadline_ranges(plan, tokens)
        shedding = next(r for r in ranges if r.sheds)
        cells = [f"{shedding.text()} ({plan_name(plans[shedding.plan], shedding.plan)})"]
        cells += [_served_cell(plan, n, tokens) for n in by_speed]
        rows.append((str(tokens) + (" (planned)" if tokens == planned else ""), *cells))
    at = planned if planned in lengths else lengths[-1]
    if len(plans) == 1:
        whole = deadline_ranges(plan, at)[-1]
        note = (f"At {at} tokens a deadline {whole.text()} (the plan's predicted {_planned_name(plan)}) runs the whole "
                "plan; below it the plan runs and sheds pending chunks (Shed order) when it falls behind its predicted "
                "timeline. A call's latency is predicted at its token count (batch x padded length: a batch of B texts "
                "padded to L tokens counts as B x L) from by_length, interpolated linearly and made non-decreasing in "
                "length.")
    else:
        note = (f"At {at} tokens: {deadline_line(plan, at)}. Columns: the deadlines each plan serves, shortest first. "
                + _runtime_rule(plan) + " A batch of B texts padded to L tokens counts as B x L tokens.")
    header = ("tokens", "shedding", *(plan_name(plans[n], n) for n in by_speed))
    title = "Deadline ranges by input length" if len(lengths) > 1 or len(plans) > 1 else "Deadline ranges"
    return Section(title, note, header, tuple(rows))


def preload_set(plan: dict) -> frozenset[tuple[int, int, int]]:
    """The (layer, index, bits) of the plan's preloaded shards."""
    return frozenset((s["layer"], s["index"], s["bits"]) for s in plan.get("shards", []) if s.get("preload"))


def _preload_section(plan: dict) -> Section:
    """An elastic runner's preload set: loaded once, held for the runner's lifetime, read by every plan."""
    plans = runner_plans(plan)
    shared = preload_set(plan)
    differ = [plan_name(p, n) for n, p in enumerate(plans) if n and preload_set(p) != shared]
    bits = [b for _, _, b in sorted(shared)]
    rows = [
        ("preloaded shards", f"{len(shared)} ({_histogram(bits)})" if shared else "0"),
        ("bytes", _bytes(plan["predicted"].get("preload_bytes"))),
    ]
    pinned = (plan.get("memory") or {}).get("pinned_bytes")
    if pinned is not None:
        rows.append(("pool's pinned region", f"{_bytes(pinned)} (with the headers)"))
    rows.append(("shared by", f"every plan ({len(plans)})" if not differ else f"not every plan: {', '.join(differ)} differ"))
    note = ("Read once when the runner starts and held for its lifetime, in the pool's pinned region: every plan of this "
            "runner computes with these shards instead of streaming them; the plans differ in what they stream and drop.")
    return Section("Shared preload set", note, ("", "value"), tuple(rows))


SHED_ROWS = 12  # the shed order's first chunks a report lists


def _indices(indices: list[int]) -> str:
    """'0-2' for a run of shard indices, '0,2,5' otherwise."""
    if len(indices) > 1 and list(indices) == list(range(indices[0], indices[0] + len(indices))):
        return f"{indices[0]}-{indices[-1]}"
    return ",".join(str(i) for i in indices)


def _chunk_name(chunk: dict) -> str:
    """'L3 ffn 0-2': a shed chunk's layer, part and kept shard indices."""
    return f"L{chunk['layer']} {chunk['part']} {_indices(chunk.get('indices') or [])}"


def _shed_section(plan: dict, title: str) -> Section:
    """The plan's `shed_order`: its first SHED_ROWS chunks with running totals, and the whole order's."""
    order = plan["shed_order"]
    rows, saved_s, loss = [], 0.0, 0.0
    for n, chunk in enumerate(order):
        chunk_saved_s = chunk["io_s"] + chunk["compute_s"]
        saved_s += chunk_saved_s
        loss += chunk["loss"]
        if n < SHED_ROWS:
            per_ms = f"{chunk['loss'] / (chunk_saved_s * 1e3):.3g}" if chunk_saved_s > 0 else NA
            rows.append((str(n + 1), _chunk_name(chunk), f"{chunk['loss']:.4g}", _ms_value(chunk["io_s"]),
                         _ms_value(chunk["compute_s"]), per_ms, _ms_value(saved_s), f"{loss:.4g}"))
    more = len(order) - SHED_ROWS
    if more > 0:
        rows.append(("...", f"{more} more", "", "", "", "", _ms_value(saved_s), f"{loss:.4g}"))
    io_s = sum(chunk["io_s"] for chunk in order)
    compute_s = sum(chunk["compute_s"] for chunk in order)
    note = (
        "What the runner drops first when a call falls behind its predicted timeline: its pending chunks in this order, "
        "least fidelity loss per ms saved first (saved: the chunk's IO and compute lane time; a chunk already loaded "
        f"saves only its compute). All {_count(len(order), 'chunk')}: {_ms(io_s + compute_s)} saved "
        f"(IO {_ms(io_s)}, compute {_ms(compute_s)}) for a fidelity loss of {loss:.4g}"
        + (f"; the first {SHED_ROWS} listed, then {more} more" if more > 0 else "") + "."
    )
    header = ("order", "chunk", "loss", "IO ms", "compute ms", "loss per ms saved", "cumulative ms saved", "cumulative loss")
    return Section(title, note, header, tuple(rows))


def _shed_sections(plan: dict) -> list[Section]:
    """A "Shed order" section for every plan of the runner that has one, titled with the plan for an
    elastic runner."""
    plans = runner_plans(plan)
    return [_shed_section(p, "Shed order" if len(plans) == 1 else f"Shed order: {plan_name(p, n)}")
            for n, p in enumerate(plans) if p.get("shed_order")]


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


def _resident_section(plan: dict) -> Section:
    """A decoder's resident set: what stays in memory across tokens and what every token reads again."""
    predicted = plan["predicted"]
    split = resident_split(plan)
    memory = plan.get("memory") or {}

    def cell(bits: list[int]) -> str:
        return f"{len(bits)} ({_histogram(bits)})" if bits else "0"

    kv = f"{_bytes(predicted.get('kv_cache_bytes'))} for {plan['targets']['context']} positions"
    kv += _against(predicted.get("kv_cache_bytes"), plan["targets"].get("kv_memory_bytes"), _bytes)
    rows = (
        ("resident across tokens", cell(split.layer_resident), cell(split.head_resident), _bytes(predicted.get("preload_bytes"))),
        ("read by every token", cell(split.layer_streamed), cell(split.head_streamed),
         f"{_bytes(predicted.get('io_bytes_per_token'))} per token, with its embedding rows"),
        ("dropped", str(split.layer_dropped), "0 (cannot be dropped)", ""),
        ("KV cache, beside the weight pool", "", "", kv),
    )
    resident = len(split.layer_resident) + len(split.head_resident)
    kept = resident + len(split.layer_streamed) + len(split.head_streamed)
    note = (f"What a generated token finds in memory and what it reads again: {resident} of {kept} kept shards and "
            f"slices stay resident (preloaded, for the runner's lifetime)")
    if "pinned_bytes" in memory and "ring_bytes" in memory:
        note += (f", in the pool's pinned region ({_bytes(memory['pinned_bytes'])} with the headers); the others stream "
                 f"through the ring ({_bytes(memory['ring_bytes'])}) on every token")
    note += ". Layer shards: a shard's attention and FFN pieces; LM head slices: the vocabulary rows of the output projection."
    return Section("Resident set", note, ("", "layer shards", "LM head slices", "bytes"), rows)


def _shards_section(plan: dict) -> Section:
    rows = layer_rows(plan)
    indices = max((len(r.bits) for r in rows), default=0)
    decoder = is_decoder(plan)
    table = []
    for row in rows:
        cells = tuple(_shard_cell(b, p, decoder) for b, p in zip(row.bits, row.preload, strict=True))
        cells += ("",) * (indices - len(cells))
        table.append((row.name, *cells, f"{row.kept}/{row.listed}", _bits(mean_kept_bits(row.bits))))
    every = [b for row in rows for b in row.bits]
    kept = sum(r.kept for r in rows)
    table.append(("all", *([""] * indices), f"{kept}/{sum(r.listed for r in rows)}", _bits(mean_kept_bits(every))))
    preloaded = sum(p for r in rows for p in r.preload)
    header = ("layer", *(str(i) for i in range(indices)), "kept", "mean bits")
    if not decoder:
        histogram = _histogram([b for b in every if b is not None])
        note = (f"Bits per shard (rows: layers, columns: shard index); '-' dropped, '*' preloaded; "
                f"mean bits over kept shards. {histogram}; {preloaded} preloaded.")
        if len(runner_plans(plan)) > 1:
            note = f"The most faithful plan's ({plan_name(plan)}); the others': Plans of this runner. " + note
        return Section("Shards", note, header, tuple(table), shard_cells=True)
    layers = _histogram([b for r in rows if not r.lm_head for b in r.bits if b is not None])
    head = _histogram([b for r in rows if r.lm_head for b in r.bits if b is not None])
    wraps = any(r.wrapped for r in rows)
    note = ("Bits per shard (rows: layers, then the LM head's vocabulary slices"
            + (f", {indices} slices a row, columns: the index within the row" if wraps else "")
            + ", columns: shard index" * (not wraps)
            + "); '-' dropped, '*' preloaded: resident across tokens; mean bits over kept shards. "
            f"Layers: {layers or 'none'}; LM head: {head or 'none'}; {preloaded} preloaded.")
    if wraps:
        header = ("layer", *(f"+{i}" for i in range(indices)), "kept", "mean bits")
    return Section("Shards", note, header, tuple(table), shard_cells=True)


def _shard_cell(bits: int | None, preload: bool, decoder: bool = False) -> str:
    if bits is None:
        return "" if decoder else "?"  # a decoder's rows differ in width: its layers and its LM head
    if bits == 0:
        return "-"
    return f"{bits}*" if preload else str(bits)


def _comparison_section(plan: dict) -> Section | None:
    greedy = (plan.get("comparison") or {}).get("greedy")
    if not greedy:
        return None
    full = _full_precision_bytes(plan)
    ours, theirs = plan["predicted"], greedy.get("predicted") or {}
    bits = [s["bits"] for s in plan["shards"]]
    kept = sum(1 for b in bits if b)
    name = plan["solver"].get("name", "this plan")
    rows = [
        ("status", str(plan["solver"].get("status", NA)), str(greedy.get("status", NA))),
        ("objective", _number(plan["solver"].get("objective")), _number(greedy.get("objective"))),
        ("fidelity loss", _fidelity(plan, ours.get("fidelity_loss")), _fidelity(plan, theirs.get("fidelity_loss"))),
        ("latency", _ms(ours.get("latency_s")), _ms(theirs.get("latency_s"))),
        ("peak weight memory", _of_fp32(ours.get("peak_weight_bytes"), full), _of_fp32(theirs.get("peak_weight_bytes"), full)),
        ("kept shards", f"{kept}/{len(bits)}", NA if greedy.get("kept") is None else f"{greedy['kept']}/{len(bits)}"),
        ("mean bits", _bits(mean_kept_bits(bits)), _bits(greedy.get("mean_bits"))),
    ]
    if is_decoder(plan):  # medians, as the encoder's latency row
        rows[3:4] = [
            ("time to first token", _ms(ours.get("first_token_s")), _ms(theirs.get("first_token_s"))),
            ("per-token latency", _ms(ours.get("latency_s")), _ms(theirs.get("latency_s"))),
            ("tokens/s", _rate(_tokens_per_s(ours.get("latency_s"))), _rate(_tokens_per_s(theirs.get("latency_s")))),
        ]
        rows[7:7] = [
            ("resident across tokens", _bytes(ours.get("preload_bytes")), _bytes(theirs.get("preload_bytes"))),
            ("IO per token", _bytes(ours.get("io_bytes_per_token")), _bytes(theirs.get("io_bytes_per_token"))),
        ]
    note = "STI's greedy heuristic at the same targets."
    loss, greedy_loss = ours.get("fidelity_loss"), theirs.get("fidelity_loss")
    if loss is not None and greedy_loss:
        change = (greedy_loss - loss) / greedy_loss
        note += f" {name} loses {abs(change):.0%} {'less' if change >= 0 else 'more'} fidelity than greedy."
    return Section("Compared with greedy", note, ("", f"this plan ({name})", "greedy"), tuple(rows))


def _timeline_note(plan: dict, view: TimelineView, views: tuple[TimelineView, ...]) -> str:
    if view is CALL:
        return f"The simulated call, drawn in {TIMELINE_SVG}."
    where = f"drawn in {TIMELINE_SVG}" if len(views) == 1 else \
        f"the {'top' if view is views[0] else 'bottom'} panel of {TIMELINE_SVG}"
    targets = plan["targets"]
    if view is PREFILL:
        return f"The prompt's call ({targets.get('seq_len', NA)} tokens, every one distinct), which gives the first token; {where}."
    return (f"One generated token at the context's last position ({targets['context']}): every weight not resident "
            f"is read again; {where}.")


def _timeline_section(plan: dict, view: TimelineView = CALL, title: str = "", note: str = "", lane_plan: int = 0) -> Section:
    """The summary of `view`'s call of `plan` (its lane bar follows); `title` and `note` replace the
    single plan's (an elastic runner's plans), `lane_plan` names the plan among the runner's."""
    title = title or view.title
    summary = timeline_summary(plan, view)
    if summary is None:
        return Section(title, NO_TIMELINE + ".", ("", "value"), ())
    latency = plan["predicted"].get(view.predicted_key) or summary.end_s
    loads = sum(1 for e in summary.events if e.kind == EventKind.LOAD)
    stalls = sum(1 for e in summary.events if e.kind == EventKind.STALL)
    waits = sum(1 for e in summary.events if e.kind == EventKind.WAIT)
    rows = (
        ("compute stall (compute waits for IO)", f"{_ms(summary.compute_stall_s)} ({_percent(summary.compute_stall_s, latency) or '0%'} of {view.noun}, {_count(stalls, 'stall')})"),
        ("ring wait (IO waits for memory)", f"{_ms(summary.ring_wait_s)} ({_count(waits, 'wait')})"),
        ("IO busy", f"{summary.busy_fraction(summary.io_busy_s):.0%} ({_count(loads, 'load')}, {_ms(summary.io_busy_s)})"),
        ("compute busy", f"{summary.busy_fraction(summary.compute_busy_s):.0%} ({_ms(summary.compute_busy_s)})"),
        ("timeline end", _ms(summary.end_s)),
    )
    note = note or _timeline_note(plan, view, timeline_views(plan))
    return Section(title, note, ("", "value"), rows, lane_bar=view, lane_plan=lane_plan)


def _view_title(view: TimelineView, name: str) -> str:
    """'Timeline: 20ms plan', 'Timeline: prefill, 20ms plan'."""
    return f"{view.title}: {name}" if view is CALL else f"{view.title}, {name}"


def _timeline_sections(plan: dict) -> list[Section]:
    """Every plan's timelines, the plan's own first; an elastic runner's titled with each plan's
    latency target and placed by panel in timeline.svg."""
    plans = runner_plans(plan)
    if len(plans) == 1:
        return [_timeline_section(plan, view) for view in timeline_views(plan)]
    calls = [(n, p, view) for n, p in enumerate(plans) for view in timeline_views(p)]
    out = []
    for panel, (n, p, view) in enumerate(calls, start=1):
        name = plan_name(p, n)
        call = "simulated call" if view is CALL else view.title.removeprefix("Timeline: ")
        note = (f"The {name}'s {call} (target {_ms((p.get('targets') or {}).get(view.target_key))}); panel {panel} of "
                f"{len(calls)} in {TIMELINE_SVG}.")
        out.append(_timeline_section(p, view, _view_title(view, name), note, n))
    return out


# ----------------------------------------------------------------------------------------------
# The text bar of the two lanes (markdown and terminal)
# ----------------------------------------------------------------------------------------------

BAR_CHARS = {EventKind.LOAD: "=", EventKind.COMPUTE: "#", EventKind.JOIN: "+", EventKind.EMBED: "e",
             EventKind.STALL: "!", EventKind.WAIT: "w"}
BAR_IDLE = "."
_BAR_STYLES = {"=": "blue", "#": "green", "+": "magenta", "e": "yellow", "!": "bold red", "w": "bold dark_orange",
               BAR_IDLE: "dim"}
_WARNINGS = (EventKind.STALL, EventKind.WAIT)


def lane_bars(events: tuple[Event, ...], end_s: float, width: int) -> dict[Lane, str]:
    """{lane: a string of `width` cells}, each cell the kind filling most of its time bin (stalls
    and waits count three times, so ones filling a quarter of a cell still show), or BAR_IDLE."""
    bars = {}
    bin_s = end_s / width if end_s > 0 else 1.0
    for lane in _LANES:
        cover: list[dict[EventKind | str, float]] = [{} for _ in range(width)]
        for e in events:
            if e.lane != lane or e.end_s <= e.start_s:
                continue
            first = min(width - 1, int(e.start_s / bin_s))
            last = min(width - 1, int(e.end_s / bin_s))
            for cell in range(first, last + 1):
                overlap = min(e.end_s, (cell + 1) * bin_s) - max(e.start_s, cell * bin_s)
                if overlap > 0:
                    cover[cell][e.kind] = cover[cell].get(e.kind, 0.0) + overlap
        chars = []
        for kinds in cover:
            idle = bin_s - sum(kinds.values())
            weights = {kind: t * (3 if kind in _WARNINGS else 1) for kind, t in kinds.items()}
            best = max(sorted(weights), key=lambda k: weights[k], default=None)
            chars.append(BAR_IDLE if best is None or weights[best] < idle else BAR_CHARS.get(best, "?"))
        bars[lane] = "".join(chars)
    return bars


def timeline_bar_lines(plan: dict, width: int, view: TimelineView = CALL) -> list[str]:
    """The two lanes of `view`'s call as text, an axis line, a target marker, and the key."""
    summary = timeline_summary(plan, view)
    if summary is None:
        return [NO_TIMELINE]
    end_s = drawn_end_s(plan, summary, view)
    bars = lane_bars(summary.events, end_s, width)
    pad = " " * 9
    lines = [f"{'IO':<8}|{bars[Lane.IO]}|", f"{'compute':<8}|{bars[Lane.COMPUTE]}|"]
    left, right = "0", _ms(end_s)
    lines.append(pad + left + " " * max(1, width - len(left) - len(right) + 1) + right)
    target = plan["targets"].get(view.target_key)
    if target is not None:
        if target <= end_s:
            column = min(width - 1, int(target / end_s * width))
            label = f"^ target {_ms(target)}"
            if column + len(label) > width:  # no room on the right: label on the left of the caret
                label = f"target {_ms(target)} ^"
                column -= len(label) - 1
            lines.append(pad + " " * max(0, column) + label)
        else:
            lines.append(pad + f"target {_ms(target)} lies beyond the end ({_ms(target - end_s)} of slack)")
    key = "  ".join(f"{char} {kind}" for kind, char in BAR_CHARS.items())
    lines.append(f"key: {key}  {BAR_IDLE} idle")
    return lines


# ----------------------------------------------------------------------------------------------
# Markdown
# ----------------------------------------------------------------------------------------------

MD_BAR_WIDTH = 96


def render_markdown(plan: dict) -> str:
    """report.md: the plan's targets, solver, predictions (a decoder's resident set), shards,
    comparison and timelines (a decoder's prefill and decode step); an elastic runner's plans,
    deadline ranges, shared preload set and every plan's shed order and timeline."""
    lines = [f"# {title_of(plan)}", ""]
    if headline(plan):
        lines += [headline(plan), ""]
    parts = sections(plan)
    plans = runner_plans(plan)
    last_bar = max((n for n, section in enumerate(parts) if section.lane_bar), default=None)
    for n, section in enumerate(parts):
        lines += [f"## {section.title}", ""]
        if section.note:
            lines += [section.note, ""]
        if section.rows:
            lines += [*_markdown_table(section.header, section.rows), ""]
        if section.lane_bar:
            drawn = plans[section.lane_plan]
            lines += ["```", *timeline_bar_lines(drawn, MD_BAR_WIDTH, section.lane_bar), "```", ""]
            if n == last_bar and timeline_summary(drawn, section.lane_bar) is not None:
                lines += [f"![timeline]({TIMELINE_SVG})", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def _markdown_table(header: tuple[str, ...], rows: tuple[tuple[str, ...], ...]) -> list[str]:
    """A pipe table padded to equal column widths, so it reads as plain text too."""
    def clean(cell: str) -> str:
        return cell.replace("|", "\\|")

    cells = [[clean(c) for c in header], *[[clean(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    widths = [max(w, 3) for w in widths]

    def line(row: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    return [line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *(line(r) for r in cells[1:])]


# ----------------------------------------------------------------------------------------------
# Terminal
# ----------------------------------------------------------------------------------------------

def print_report(plan: dict, console: Console) -> None:
    """The report in the terminal: the same sections as report.md as rich tables, and the lane bars
    (a decoder's headline first: tokens/s, time to first token, the resident set)."""
    console.rule(f"[bold]{escape_markup(title_of(plan))}")
    if headline(plan):
        console.print(Text(headline(plan), style="bold"))
        console.print()
    for section in sections(plan):
        show_header = len(section.header) > 2 or bool(section.header[0])
        table = Table(title=section.title, title_justify="left", title_style="bold", show_header=show_header)
        for n, name in enumerate(section.header):
            table.add_column(name, justify="right" if section.shard_cells and n else "left", no_wrap=section.shard_cells)
        for row in section.rows:
            table.add_row(*(_shard_text(c) if section.shard_cells and 0 < n < len(row) - 2 else Text(c) for n, c in enumerate(row)))
        if section.rows:
            console.print(table)
        else:
            console.print(Text(section.title, style="bold"))
        if section.note:
            console.print(Text(section.note, style="dim"))
        if section.lane_bar:
            width = max(20, min(160, console.width - 12))
            for line in timeline_bar_lines(runner_plans(plan)[section.lane_plan], width, section.lane_bar):
                console.print(_bar_text(line), soft_wrap=True)
        console.print()


_BITS_STYLES = ((3, "red"), (5, "yellow"), (8, "green"))  # wider: cyan


def _shard_text(cell: str) -> Text:
    if cell in ("-", "?", ""):
        return Text(cell, style="dim")
    bits = int(cell.rstrip("*"))
    style = next((s for limit, s in _BITS_STYLES if bits <= limit), "cyan")
    return Text(cell, style=f"bold {style}" if cell.endswith("*") else style)


def _bar_text(line: str) -> Text:
    if not line.startswith(("IO ", "compute ")):
        return Text(line, style="dim" if line.startswith("key:") else "")
    text = Text(line[:9])
    for char in line[9:]:
        text.append(char, style=_BAR_STYLES.get(char, ""))
    return text


# ----------------------------------------------------------------------------------------------
# SVG
# ----------------------------------------------------------------------------------------------

SVG_WIDTH = 1200
_LEFT, _RIGHT = 90, 30
_LANE_TOP, _LANE_HEIGHT, _LANE_GAP = 96, 40, 12
_COLORS = {EventKind.EMBED: "#edc948", EventKind.LOAD: "#4e79a7", EventKind.COMPUTE: "#59a14f",
           EventKind.JOIN: "#b07aa1", EventKind.STALL: "#e15759", EventKind.WAIT: "#f28e2b"}
_OTHER_COLOR = "#9d9d9d"
_KIND_NAMES = {EventKind.LOAD: "load (IO)", EventKind.COMPUTE: "compute", EventKind.JOIN: "join",
               EventKind.EMBED: "embedding", EventKind.STALL: "stall: compute waits for IO",
               EventKind.WAIT: "wait: IO waits for ring space"}
_TARGET_COLOR, _PREDICTED_COLOR = "#d62728", "#222222"


def render_svg(plan: dict) -> str:
    """timeline.svg: the IO lane over the compute lane, in ms, with target and predicted lines; a
    decoder's prefill and one decode step as two panels, and an elastic runner's plans one panel
    each (most faithful first), every panel on its own time axis."""
    plans = runner_plans(plan)
    calls = [(n, p, view, timeline_summary(p, view)) for n, p in enumerate(plans) for view in timeline_views(p)]
    title = f"{title_of(plan)}: timeline"
    subtitle = targets_line(plan)
    if any(summary is None for *_, summary in calls):
        height = 120
        body = [
            _text(SVG_WIDTH / 2, 80, NO_TIMELINE, size=16, anchor="middle", fill="#666666"),
        ]
        return _svg_document(height, title, subtitle, "", [], body)
    if len(calls) == 1 and not is_decoder(plan):  # an encoder's one call: no panel heading
        _, _, view, summary = calls[0]
        body, axis_y = _svg_panel(plan, view, summary, _LANE_TOP)
        legend_y = axis_y + 56
        body += _svg_legend({e.kind for e in summary.events}, legend_y)
        stats = _svg_stats(summary)
        return _svg_document(legend_y + 20, title, subtitle, stats, _hatch_patterns(), body)
    body = []
    top = _PANEL_TOP
    for n, p, view, summary in calls:
        heading, stats = _panel_heading(p, view) if is_decoder(p) else _plan_panel_heading(p, n)
        if len(plans) > 1 and is_decoder(p):
            heading = f"{plan_name(p, n)}: {heading}"
        panel, axis_y = _svg_panel(p, view, summary, top)
        panel_id = view.panel if n == 0 else f"{view.panel}-{n}"
        body += [
            f'<g class="panel" id="{panel_id}">',
            _text(_LEFT, top - 56, heading, size=14, weight="bold"),
            _text(_LEFT, top - 40, stats + "  |  " + _svg_stats(summary), size=11, fill="#444444"),
            *panel,
            "</g>",
        ]
        top = axis_y + _PANEL_GAP
    legend_y = axis_y + 56
    body += _svg_legend({e.kind for *_, summary in calls for e in summary.events}, legend_y)
    return _svg_document(legend_y + 20, title, subtitle, "", _hatch_patterns(), body)


_PANEL_TOP = 130  # a decoder's first panel: its lanes' top, below its heading and mark labels
_PANEL_GAP = 126  # from one panel's axis to the next one's lanes: tick labels, axis title, heading, marks


def _panel_heading(plan: dict, view: TimelineView) -> tuple[str, str]:
    """A decoder panel's heading and what it predicts."""
    predicted, targets = plan["predicted"], plan["targets"]
    if view is PREFILL:
        heading = f"prefill: the {targets.get('seq_len', NA)}-token prompt, up to the first token"
        stats = f"time to first token {_ms(predicted.get('first_token_s'))} median"
        if predicted.get("planned_first_token_s") is not None:
            stats += f", {_ms(predicted['planned_first_token_s'])} at p{_percentile(predicted)}"
        return heading, stats
    heading = f"one decode step: the token at position {targets['context']} of the context, its last"
    stats = f"per-token latency {_ms(predicted.get('latency_s'))} median"
    if predicted.get("planned_latency_s") is not None:
        stats += f", {_ms(predicted['planned_latency_s'])} at p{_percentile(predicted)}"
    if predicted.get("latency_s"):
        stats += f" ({_rate(_tokens_per_s(predicted['latency_s']))} tokens/s)"
    return heading, stats


def _plan_panel_heading(plan: dict, n: int) -> tuple[str, str]:
    """An elastic runner's panel heading (the plan, its latency target) and what it predicts."""
    predicted, targets = plan["predicted"], plan["targets"]
    role = " (most faithful)" if n == 0 else ""
    heading = f"{plan_name(plan, n)}{role}: latency target {_ms(targets.get('latency_s'))}, {targets.get('seq_len', NA)} tokens"
    stats = f"latency {_ms(predicted.get('latency_s'))} median"
    if predicted.get("planned_latency_s") is not None:
        stats += f", {_ms(predicted['planned_latency_s'])} at p{_percentile(predicted)}"
    if predicted.get("fidelity_loss") is not None:
        stats += f", fidelity loss {predicted['fidelity_loss']:.4g}"
    return heading, stats


def _svg_stats(summary: TimelineSummary) -> str:
    return (f"compute stall {_ms(summary.compute_stall_s)}, ring wait {_ms(summary.ring_wait_s)}, "
            f"IO busy {summary.busy_fraction(summary.io_busy_s):.0%}, {len(summary.events)} events")


def _svg_panel(plan: dict, view: TimelineView, summary: TimelineSummary, top: float) -> tuple[list[str], float]:
    """One call's two lanes with their lanes top at `top`: the lanes, the time axis, one rect per
    event, and the target and predicted lines labelled above; (the SVG lines, the axis' y)."""
    predicted = plan["predicted"].get(view.predicted_key)
    target = plan["targets"].get(view.target_key)
    span_ms = max(drawn_end_s(plan, summary, view) * 1e3 * 1.02, 1e-6)
    plot_w = SVG_WIDTH - _LEFT - _RIGHT

    def x(seconds: float) -> float:
        return _LEFT + seconds * 1e3 / span_ms * plot_w

    lane_y = {Lane.IO: top, Lane.COMPUTE: top + _LANE_HEIGHT + _LANE_GAP}
    lanes_bottom = lane_y[Lane.COMPUTE] + _LANE_HEIGHT
    body: list[str] = []
    # lanes and their names
    for lane, name in ((Lane.IO, "IO"), (Lane.COMPUTE, "compute")):
        body.append(f'<rect class="lane" x="{_LEFT}" y="{lane_y[lane]}" width="{plot_w}" height="{_LANE_HEIGHT}" fill="#f3f3f3"/>')
        body.append(_text(_LEFT - 10, lane_y[lane] + _LANE_HEIGHT / 2 + 5, name, size=13, anchor="end", weight="bold"))
    # axis, ticks and grid
    step = _tick_step(span_ms)
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    axis_y = lanes_bottom + 10
    body.append(f'<line x1="{_LEFT}" y1="{axis_y}" x2="{_LEFT + plot_w}" y2="{axis_y}" stroke="#333333"/>')
    for n in range(int(span_ms / step + 1e-9) + 1):
        tick_ms = n * step
        tx = _LEFT + tick_ms / span_ms * plot_w
        body.append(f'<line class="grid" x1="{tx:.2f}" y1="{top}" x2="{tx:.2f}" y2="{lanes_bottom}" stroke="#dddddd"/>')
        body.append(f'<line x1="{tx:.2f}" y1="{axis_y}" x2="{tx:.2f}" y2="{axis_y + 5}" stroke="#333333"/>')
        body.append(_text(tx, axis_y + 18, f"{tick_ms:.{decimals}f}", size=11, anchor="middle"))
    body.append(_text(_LEFT + plot_w / 2, axis_y + 36, "time (ms)", size=12, anchor="middle"))
    # events: one rect each, the label as a tooltip
    body.append('<g class="events">')
    for e in summary.events:
        x0, x1 = x(e.start_s), x(e.end_s)
        warning = e.kind in _WARNINGS
        width = max(x1 - x0, 1.0 if warning else 0.5)
        inset = 0 if warning else 3
        fill = f"url(#hatch-{e.kind})" if warning else _COLORS.get(e.kind, _OTHER_COLOR)
        if warning:
            stroke = f' stroke="{_COLORS[e.kind]}" stroke-width="1"'
        else:  # a hairline between back-to-back events wide enough to show it
            stroke = ' stroke="#ffffff" stroke-width="0.6"' if width >= 4 else ""
        tooltip = f"{e.kind}: {e.label} — {e.start_s * 1e3:.3f} to {e.end_s * 1e3:.3f} ms ({(e.end_s - e.start_s) * 1e3:.3f} ms)"
        body.append(
            f'<rect class="event {_attribute(e.kind)}" x="{x0:.2f}" y="{lane_y[e.lane] + inset}" width="{width:.2f}" '
            f'height="{_LANE_HEIGHT - 2 * inset}" fill="{fill}"{stroke}><title>{escape(tooltip)}</title></rect>'
        )
    body.append("</g>")
    # target and predicted lines, labelled above the lanes on their own rows
    marks = []
    if predicted is not None:
        marks.append((predicted, f"predicted {_ms(predicted)}", _PREDICTED_COLOR, "", top - 8))
    if target is not None:
        dash = ' stroke-dasharray="6 4"'
        if x(target) <= _LEFT + plot_w:
            marks.append((target, f"target {_ms(target)}", _TARGET_COLOR, dash, top - 24))
        else:
            body.append(_text(_LEFT + plot_w, top - 24, f"target {_ms(target)} →", size=12, anchor="end", fill=_TARGET_COLOR))
    for seconds, label, color, dash, label_y in marks:
        mx = x(seconds)
        body.append(f'<line class="mark" x1="{mx:.2f}" y1="{label_y + 4}" x2="{mx:.2f}" y2="{lanes_bottom + 4}" '
                    f'stroke="{color}" stroke-width="2"{dash}/>')
        anchor = "end" if mx > _LEFT + plot_w * 0.8 else "start"
        body.append(_text(mx + (-4 if anchor == "end" else 4), label_y, label, size=12, anchor=anchor, fill=color, weight="bold"))
    return body, axis_y


def _svg_legend(drawn: set, legend_y: float) -> list[str]:
    """The key: the kinds drawn (load, compute, stall and wait always), then the two lines."""
    body = []
    always = (EventKind.LOAD, EventKind.COMPUTE, EventKind.STALL, EventKind.WAIT)
    kinds = [k for k in _COLORS if k in drawn or k in always]
    lx = _LEFT
    for kind in kinds:
        warning = kind in _WARNINGS
        fill = f"url(#hatch-{kind})" if warning else _COLORS[kind]
        stroke = f' stroke="{_COLORS[kind]}"' if warning else ""
        body.append(f'<rect class="legend" x="{lx}" y="{legend_y - 11}" width="14" height="14" fill="{fill}"{stroke}/>')
        body.append(_text(lx + 19, legend_y, _KIND_NAMES[kind], size=12))
        lx += 34 + 7 * len(_KIND_NAMES[kind])
    for label, color, dash in (("target", _TARGET_COLOR, ' stroke-dasharray="6 4"'), ("predicted end", _PREDICTED_COLOR, "")):
        body.append(f'<line x1="{lx}" y1="{legend_y - 4}" x2="{lx + 22}" y2="{legend_y - 4}" stroke="{color}" stroke-width="2"{dash}/>')
        body.append(_text(lx + 27, legend_y, label, size=12))
        lx += 44 + 7 * len(label)
    return body


def _svg_document(height: int, title: str, subtitle: str, stats: str, defs: list[str], body: list[str]) -> str:
    head = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{SVG_WIDTH}" height="{height}" '
        f'viewBox="0 0 {SVG_WIDTH} {height}" font-family="Helvetica, Arial, sans-serif">',
        f"<title>{escape(title)}</title>",
    ]
    if defs:
        head += ["<defs>", *defs, "</defs>"]
    head.append(f'<rect class="background" x="0" y="0" width="{SVG_WIDTH}" height="{height}" fill="#ffffff"/>')
    head.append(_text(_LEFT, 24, title, size=16, weight="bold"))
    head.append(_text(_LEFT, 44, subtitle + (f"  |  {stats}" if stats else ""), size=12, fill="#444444"))
    return "\n".join([*head, *body, "</svg>"]) + "\n"


def _hatch_patterns() -> list[str]:
    return [
        f'<pattern id="hatch-{kind}" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
        f'<rect width="6" height="6" fill="#ffffff"/><rect width="3" height="6" fill="{_COLORS[kind]}"/></pattern>'
        for kind in _WARNINGS
    ]


def _text(x: float, y: float, text: str, size: int = 12, anchor: str = "start", fill: str = "#222222", weight: str = "normal") -> str:
    return (f'<text x="{x:.2f}" y="{y:.2f}" font-size="{size}" text-anchor="{anchor}" fill="{fill}" '
            f'font-weight="{weight}">{escape(text)}</text>')


def _attribute(text: str) -> str:
    """`text` escaped for a double-quoted attribute value."""
    return escape(text, {'"': "&quot;"})


def _tick_step(span_ms: float, ticks: int = 10) -> float:
    """A 1-2-5 step giving about `ticks` ticks over `span_ms`."""
    raw = span_ms / ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw * (1 - 1e-9))


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------


def write_reports(out_dir: str | Path, plan: dict) -> list[Path]:
    """Write report.md and timeline.svg into `out_dir`; return their paths.

    Each is written under a unique temporary name, fsynced and renamed over the old one
    (`sticc.base.jsonfile.write_files_atomic`): a reader never sees half a file, though a crash between
    the two renames can leave one report new and the other old.
    """
    return write_files_atomic(out_dir, {REPORT_MD: render_markdown(plan), TIMELINE_SVG: render_svg(plan)})
