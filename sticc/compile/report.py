"""Plan reports: report.md, timeline.svg and the terminal view of a plan.json (docs/report.md).

Everything here reads the plan.json dict that `sticc compile` writes (docs/plan-schema.md), so a
report can be redrawn later from the file alone (`sticc report OUT/plan.json`). The optional keys
(`memory`, `timeline`, `comparison`, `device`, `importance`) may be missing or null: a plan made
without a device profile has no timeline, one without an importance profile no fidelity loss.

The report is built once as `Section`s (a title, a note, a table of strings) and rendered twice:
as markdown and as rich tables, so the file and the terminal always say the same thing. The
timeline is drawn twice too: as a text bar of the two lanes (in both) and as an SVG, written as
text (no plotting library).
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
from sticc.base.schema import read_file
from sticc.ir.plan import Event, EventKind, Lane, PlanFile

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


# ----------------------------------------------------------------------------------------------
# The report's content, renderer-independent
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Section:
    """One part of the report: a heading, an optional sentence, and a table of strings."""

    title: str
    note: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    shard_cells: bool = False  # the per-layer table: cells are bits, "-" dropped, "8*" preloaded
    lane_bar: bool = False  # followed by the text bar of the two lanes


@dataclass(frozen=True)
class LayerRow:
    layer: int
    bits: tuple[int | None, ...]  # per shard index; None where the plan lists no such shard
    preload: tuple[bool, ...]

    @property
    def kept(self) -> int:
        return sum(1 for b in self.bits if b)

    @property
    def listed(self) -> int:
        return sum(1 for b in self.bits if b is not None)


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


def layer_rows(plan: dict) -> list[LayerRow]:
    """One row per layer of the plan's shards, cells by shard index."""
    by_position = {(s["layer"], s["index"]): s for s in plan.get("shards", [])}
    layers = sorted({layer for layer, _ in by_position})
    indices = sorted({index for _, index in by_position})
    rows = []
    for layer in layers:
        shards = [by_position.get((layer, index)) for index in indices]
        rows.append(LayerRow(
            layer,
            tuple(None if s is None else s["bits"] for s in shards),
            tuple(bool(s and s.get("preload")) for s in shards),
        ))
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


def timeline_summary(plan: dict) -> TimelineSummary | None:
    """The plan's timeline with its totals, or None without a device profile."""
    timeline = plan.get("timeline")
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


def drawn_end_s(plan: dict, summary: TimelineSummary) -> float:
    """Where a drawing of the timeline ends: the last event or the predicted latency, and the
    target latency too unless it lies far beyond (it is then only named, not drawn)."""
    end_s = max(summary.end_s, plan["predicted"].get("latency_s") or 0.0)
    target = plan["targets"].get("latency_s")
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
    if targets.get("latency_s") is not None:
        parts.append(f"latency {_ms(targets['latency_s'])}")
    if targets.get("memory_bytes") is not None:
        parts.append(f"memory {_bytes(targets['memory_bytes'])}")
    parts.append(f"seq_len {targets.get('seq_len', NA)}")
    return "targets: " + ", ".join(parts)


def sections(plan: dict) -> list[Section]:
    """The report's sections, in order; markdown and the terminal render these."""
    out = [_targets_section(plan), _solver_section(plan), _predicted_section(plan), _shards_section(plan)]
    comparison = _comparison_section(plan)
    if comparison:
        out.append(comparison)
    out.append(_timeline_section(plan))
    return out


def _targets_section(plan: dict) -> Section:
    targets = plan["targets"]
    full = _full_precision_bytes(plan)
    memory = targets.get("memory_bytes")
    memory_text = "none (the weight pool budget below is what the plan needs)" if memory is None else _of_fp32(memory, full)
    rows = [
        ("latency", "none" if targets.get("latency_s") is None else _ms(targets["latency_s"])),
        ("memory", memory_text),
        ("sequence length", str(targets.get("seq_len", NA))),
    ]
    if targets.get("context") is not None:  # a decoder: the prompt, and the positions its KV cache holds
        rows[-1] = ("prompt length", str(targets.get("seq_len", NA)))
        rows.append(("context", f"{targets['context']} positions"))
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


def _predicted_section(plan: dict) -> Section:
    predicted = plan["predicted"]
    full = _full_precision_bytes(plan)
    targets = plan["targets"]
    latency = _ms(predicted.get("latency_s"))
    if predicted.get("latency_s") is None and not plan.get("device"):
        latency += " (no device profile)"
    elif predicted.get("planned_latency_s") is not None:
        latency += f" median, {_ms(predicted['planned_latency_s'])} at p{predicted.get('planned_percentile', '?')}"
        latency += _against(predicted.get("planned_latency_s"), targets.get("latency_s"), _ms)
    else:
        latency += _against(predicted.get("latency_s"), targets.get("latency_s"), _ms)
    peak = _of_fp32(predicted.get("peak_weight_bytes"), full)
    peak += _against(predicted.get("peak_weight_bytes"), targets.get("memory_bytes"), _bytes)
    rows = [
        ("latency", latency),
        ("peak weight memory", peak),
        ("IO per call", _bytes(predicted.get("io_bytes"))),
        ("preload", _bytes(predicted.get("preload_bytes"))),
        ("fidelity loss", _fidelity(plan, predicted.get("fidelity_loss"))),
    ]
    if predicted.get("io_bytes_per_token") is not None:  # a decoder: a prefill, then one call per token
        rows[2] = ("IO per prefill", _bytes(predicted.get("io_bytes")))
        rows[3:3] = [
            ("IO per generated token", _bytes(predicted["io_bytes_per_token"])),
            ("KV cache (beside the pool)", _bytes(predicted.get("kv_cache_bytes"))),
        ]
        rows[3 + 2] = ("preload (resident across tokens)", _bytes(predicted.get("preload_bytes")))
    budget = plan.get("memory_budget_bytes")
    memory = plan.get("memory") or {}
    pool = _of_fp32(budget, full)
    if {"pinned_bytes", "scratch_bytes", "ring_bytes"} <= set(memory):
        pool += (f" = pinned {_bytes(memory['pinned_bytes'])} + scratch {_bytes(memory['scratch_bytes'])}"
                 f" + ring {_bytes(memory['ring_bytes'])}")
    rows.append(("weight pool budget", pool))
    notes = []
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
        shown = ", ".join(f"{k} {_number(v, 3) if _is_number(v) else v}" for k, v in sorted(additivity.items())
                          if _is_number(v) or isinstance(v, str))
        if shown:
            text += f"; additivity check: {shown}"
        notes.append(text)
    return Section("Predicted, per call", "; ".join(notes), ("", "value"), tuple(rows))


def _against(value: float | None, target: float | None, unit) -> str:
    """ ", within the target" or ", over the target by ..." when both are known."""
    if value is None or target is None:
        return ""
    return ", within the target" if value <= target else f", over the target by {unit(value - target)}"


def _shards_section(plan: dict) -> Section:
    rows = layer_rows(plan)
    indices = max((len(r.bits) for r in rows), default=0)
    table = []
    for row in rows:
        cells = tuple(_shard_cell(b, p) for b, p in zip(row.bits, row.preload, strict=True))
        table.append((str(row.layer), *cells, f"{row.kept}/{row.listed}", _bits(mean_kept_bits(row.bits))))
    every = [b for row in rows for b in row.bits]
    kept = sum(r.kept for r in rows)
    table.append(("all", *([""] * indices), f"{kept}/{sum(r.listed for r in rows)}", _bits(mean_kept_bits(every))))
    counts: dict[int, int] = {}
    for b in every:
        if b is not None:
            counts[b] = counts.get(b, 0) + 1
    histogram = ", ".join(f"{n}x {'dropped' if b == 0 else f'{b}-bit'}" for b, n in sorted(counts.items(), reverse=True))
    preloaded = sum(p for r in rows for p in r.preload)
    note = (f"Bits per shard (rows: layers, columns: shard index); '-' dropped, '*' preloaded; "
            f"mean bits over kept shards. {histogram}; {preloaded} preloaded.")
    header = ("layer", *(str(i) for i in range(indices)), "kept", "mean bits")
    return Section("Shards", note, header, tuple(table), shard_cells=True)


def _shard_cell(bits: int | None, preload: bool) -> str:
    if bits is None:
        return "?"
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
    rows = (
        ("status", str(plan["solver"].get("status", NA)), str(greedy.get("status", NA))),
        ("objective", _number(plan["solver"].get("objective")), _number(greedy.get("objective"))),
        ("fidelity loss", _fidelity(plan, ours.get("fidelity_loss")), _fidelity(plan, theirs.get("fidelity_loss"))),
        ("latency", _ms(ours.get("latency_s")), _ms(theirs.get("latency_s"))),
        ("peak weight memory", _of_fp32(ours.get("peak_weight_bytes"), full), _of_fp32(theirs.get("peak_weight_bytes"), full)),
        ("kept shards", f"{kept}/{len(bits)}", NA if greedy.get("kept") is None else f"{greedy['kept']}/{len(bits)}"),
        ("mean bits", _bits(mean_kept_bits(bits)), _bits(greedy.get("mean_bits"))),
    )
    note = "STI's greedy heuristic at the same targets."
    loss, greedy_loss = ours.get("fidelity_loss"), theirs.get("fidelity_loss")
    if loss is not None and greedy_loss:
        change = (greedy_loss - loss) / greedy_loss
        note += f" {name} loses {abs(change):.0%} {'less' if change >= 0 else 'more'} fidelity than greedy."
    return Section("Compared with greedy", note, ("", f"this plan ({name})", "greedy"), rows)


def _timeline_section(plan: dict) -> Section:
    summary = timeline_summary(plan)
    if summary is None:
        return Section("Timeline", NO_TIMELINE + ".", ("", "value"), ())
    latency = plan["predicted"].get("latency_s") or summary.end_s
    loads = sum(1 for e in summary.events if e.kind == EventKind.LOAD)
    stalls = sum(1 for e in summary.events if e.kind == EventKind.STALL)
    waits = sum(1 for e in summary.events if e.kind == EventKind.WAIT)
    rows = (
        ("compute stall (compute waits for IO)", f"{_ms(summary.compute_stall_s)} ({_percent(summary.compute_stall_s, latency) or '0%'} of latency, {_count(stalls, 'stall')})"),
        ("ring wait (IO waits for memory)", f"{_ms(summary.ring_wait_s)} ({_count(waits, 'wait')})"),
        ("IO busy", f"{summary.busy_fraction(summary.io_busy_s):.0%} ({_count(loads, 'load')}, {_ms(summary.io_busy_s)})"),
        ("compute busy", f"{summary.busy_fraction(summary.compute_busy_s):.0%} ({_ms(summary.compute_busy_s)})"),
        ("timeline end", _ms(summary.end_s)),
    )
    return Section("Timeline", f"The simulated call, drawn in {TIMELINE_SVG}.", ("", "value"), rows, lane_bar=True)


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


def timeline_bar_lines(plan: dict, width: int) -> list[str]:
    """The two lanes as text, an axis line, a target marker, and the key."""
    summary = timeline_summary(plan)
    if summary is None:
        return [NO_TIMELINE]
    end_s = drawn_end_s(plan, summary)
    bars = lane_bars(summary.events, end_s, width)
    pad = " " * 9
    lines = [f"{'IO':<8}|{bars[Lane.IO]}|", f"{'compute':<8}|{bars[Lane.COMPUTE]}|"]
    left, right = "0", _ms(end_s)
    lines.append(pad + left + " " * max(1, width - len(left) - len(right) + 1) + right)
    target = plan["targets"].get("latency_s")
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
    """report.md: the plan's targets, solver, predictions, shards, comparison and timeline."""
    lines = [f"# {title_of(plan)}", ""]
    for section in sections(plan):
        lines += [f"## {section.title}", ""]
        if section.note:
            lines += [section.note, ""]
        if section.rows:
            lines += [*_markdown_table(section.header, section.rows), ""]
        if section.lane_bar:
            lines += ["```", *timeline_bar_lines(plan, MD_BAR_WIDTH), "```", ""]
            if timeline_summary(plan) is not None:
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
    """The report in the terminal: the same sections as report.md as rich tables, and the lane bar."""
    console.rule(f"[bold]{escape_markup(title_of(plan))}")
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
            for line in timeline_bar_lines(plan, width):
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
    """timeline.svg: the IO lane over the compute lane, in ms, with target and predicted lines."""
    summary = timeline_summary(plan)
    title = f"{title_of(plan)}: timeline"
    subtitle = targets_line(plan)
    if summary is None:
        height = 120
        body = [
            _text(SVG_WIDTH / 2, 80, NO_TIMELINE, size=16, anchor="middle", fill="#666666"),
        ]
        return _svg_document(height, title, subtitle, "", [], body)

    predicted = plan["predicted"].get("latency_s")
    target = plan["targets"].get("latency_s")
    span_ms = max(drawn_end_s(plan, summary) * 1e3 * 1.02, 1e-6)
    plot_w = SVG_WIDTH - _LEFT - _RIGHT

    def x(seconds: float) -> float:
        return _LEFT + seconds * 1e3 / span_ms * plot_w

    lane_y = {Lane.IO: _LANE_TOP, Lane.COMPUTE: _LANE_TOP + _LANE_HEIGHT + _LANE_GAP}
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
        body.append(f'<line class="grid" x1="{tx:.2f}" y1="{_LANE_TOP}" x2="{tx:.2f}" y2="{lanes_bottom}" stroke="#dddddd"/>')
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
        marks.append((predicted, f"predicted {_ms(predicted)}", _PREDICTED_COLOR, "", _LANE_TOP - 8))
    if target is not None:
        dash = ' stroke-dasharray="6 4"'
        if x(target) <= _LEFT + plot_w:
            marks.append((target, f"target {_ms(target)}", _TARGET_COLOR, dash, _LANE_TOP - 24))
        else:
            body.append(_text(_LEFT + plot_w, _LANE_TOP - 24, f"target {_ms(target)} →", size=12, anchor="end", fill=_TARGET_COLOR))
    for seconds, label, color, dash, label_y in marks:
        mx = x(seconds)
        body.append(f'<line class="mark" x1="{mx:.2f}" y1="{label_y + 4}" x2="{mx:.2f}" y2="{lanes_bottom + 4}" '
                    f'stroke="{color}" stroke-width="2"{dash}/>')
        anchor = "end" if mx > _LEFT + plot_w * 0.8 else "start"
        body.append(_text(mx + (-4 if anchor == "end" else 4), label_y, label, size=12, anchor=anchor, fill=color, weight="bold"))
    # legend
    legend_y = axis_y + 56
    always = (EventKind.LOAD, EventKind.COMPUTE, EventKind.STALL, EventKind.WAIT)
    kinds = [k for k in _COLORS if k in {e.kind for e in summary.events} or k in always]
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
    stats = (f"compute stall {_ms(summary.compute_stall_s)}, ring wait {_ms(summary.ring_wait_s)}, "
             f"IO busy {summary.busy_fraction(summary.io_busy_s):.0%}, {len(summary.events)} events")
    return _svg_document(legend_y + 20, title, subtitle, stats, _hatch_patterns(), body)


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
