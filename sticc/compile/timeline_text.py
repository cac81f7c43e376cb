"""The text bar of a simulated call's two lanes, in report.md and the terminal view: a character per
time bin (the kind of event filling most of it), the axis, the target's marker and the key.
"""

from __future__ import annotations

from sticc.compile.plan_view import CALL, NO_TIMELINE, WARNING_KINDS, TimelineView, drawn_end_s, timeline_summary
from sticc.compile.report_units import ms_text
from sticc.ir.plan import Event, EventKind, Lane

_LANES = (Lane.IO, Lane.COMPUTE)
BAR_CHARS = {EventKind.LOAD: "=", EventKind.COMPUTE: "#", EventKind.JOIN: "+", EventKind.EMBED: "e",
             EventKind.STALL: "!", EventKind.WAIT: "w"}
BAR_IDLE = "."


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
            weights = {kind: t * (3 if kind in WARNING_KINDS else 1) for kind, t in kinds.items()}
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
    left, right = "0", ms_text(end_s)
    lines.append(pad + left + " " * max(1, width - len(left) - len(right) + 1) + right)
    target = plan["targets"].get(view.target_key)
    if target is not None:
        if target <= end_s:
            column = min(width - 1, int(target / end_s * width))
            label = f"^ target {ms_text(target)}"
            if column + len(label) > width:  # no room on the right: label on the left of the caret
                label = f"target {ms_text(target)} ^"
                column -= len(label) - 1
            lines.append(pad + " " * max(0, column) + label)
        else:
            lines.append(pad + f"target {ms_text(target)} lies beyond the end ({ms_text(target - end_s)} of slack)")
    key = "  ".join(f"{char} {kind}" for kind, char in BAR_CHARS.items())
    lines.append(f"key: {key}  {BAR_IDLE} idle")
    return lines
