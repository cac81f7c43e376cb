"""timeline.svg: a plan's simulated calls as an SVG, written as text (no plotting library).

The IO lane over the compute lane, in ms, one rect per event with its label as a tooltip, and the
target and predicted lines; a decoder's prefill and one decode step as two panels, an elastic
runner's plans one panel each.
"""

from __future__ import annotations

import math
from xml.sax.saxutils import escape

from sticc.compile.plan_view import (
    NO_TIMELINE,
    PREFILL,
    WARNING_KINDS,
    TimelineSummary,
    TimelineView,
    drawn_end_s,
    is_decoder,
    plan_name,
    runner_plans,
    timeline_summary,
    timeline_views,
    title_of,
)
from sticc.compile.report_units import NA, bytes_text, ms_text, percentile_text, rate_text, tokens_per_s_at
from sticc.ir.plan import EventKind, Lane

TIMELINE_SVG = "timeline.svg"
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


def targets_line(plan: dict) -> str:
    """The targets in one line, for the SVG title."""
    targets = plan.get("targets", {})
    parts = []
    if is_decoder(plan):
        if targets.get("first_token_s") is not None:
            parts.append(f"first token {ms_text(targets['first_token_s'])}")
        if targets.get("latency_s") is not None:
            parts.append(f"per token {ms_text(targets['latency_s'])} ({rate_text(tokens_per_s_at(targets['latency_s']))} tokens/s)")
        if targets.get("memory_bytes") is not None:
            parts.append(f"weight memory {bytes_text(targets['memory_bytes'])}")
        if targets.get("kv_memory_bytes") is not None:
            parts.append(f"KV cache {bytes_text(targets['kv_memory_bytes'])}")
        parts.append(f"prompt {targets.get('seq_len', NA)} tokens, context {targets['context']}")
        return "targets: " + ", ".join(parts)
    plans = runner_plans(plan)
    if len(plans) > 1:
        latencies = ", ".join(ms_text((p.get("targets") or {}).get("latency_s")) for p in plans)
        parts.append(f"latency {latencies} ({len(plans)} plans, one runner)")
    elif targets.get("latency_s") is not None:
        parts.append(f"latency {ms_text(targets['latency_s'])}")
    if targets.get("memory_bytes") is not None:
        parts.append(f"memory {bytes_text(targets['memory_bytes'])}")
    parts.append(f"seq_len {targets.get('seq_len', NA)}")
    return "targets: " + ", ".join(parts)


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
        stats = f"time to first token {ms_text(predicted.get('first_token_s'))} median"
        if predicted.get("planned_first_token_s") is not None:
            stats += f", {ms_text(predicted['planned_first_token_s'])} at p{percentile_text(predicted)}"
        return heading, stats
    heading = f"one decode step: the token at position {targets['context']} of the context, its last"
    stats = f"per-token latency {ms_text(predicted.get('latency_s'))} median"
    if predicted.get("planned_latency_s") is not None:
        stats += f", {ms_text(predicted['planned_latency_s'])} at p{percentile_text(predicted)}"
    if predicted.get("latency_s"):
        stats += f" ({rate_text(tokens_per_s_at(predicted['latency_s']))} tokens/s)"
    return heading, stats


def _plan_panel_heading(plan: dict, n: int) -> tuple[str, str]:
    """An elastic runner's panel heading (the plan, its latency target) and what it predicts."""
    predicted, targets = plan["predicted"], plan["targets"]
    role = " (most faithful)" if n == 0 else ""
    heading = f"{plan_name(plan, n)}{role}: latency target {ms_text(targets.get('latency_s'))}, {targets.get('seq_len', NA)} tokens"
    stats = f"latency {ms_text(predicted.get('latency_s'))} median"
    if predicted.get("planned_latency_s") is not None:
        stats += f", {ms_text(predicted['planned_latency_s'])} at p{percentile_text(predicted)}"
    if predicted.get("fidelity_loss") is not None:
        stats += f", fidelity loss {predicted['fidelity_loss']:.4g}"
    return heading, stats


def _svg_stats(summary: TimelineSummary) -> str:
    return (f"compute stall {ms_text(summary.compute_stall_s)}, ring wait {ms_text(summary.ring_wait_s)}, "
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
        warning = e.kind in WARNING_KINDS
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
        marks.append((predicted, f"predicted {ms_text(predicted)}", _PREDICTED_COLOR, "", top - 8))
    if target is not None:
        dash = ' stroke-dasharray="6 4"'
        if x(target) <= _LEFT + plot_w:
            marks.append((target, f"target {ms_text(target)}", _TARGET_COLOR, dash, top - 24))
        else:
            body.append(_text(_LEFT + plot_w, top - 24, f"target {ms_text(target)} →", size=12, anchor="end", fill=_TARGET_COLOR))
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
        warning = kind in WARNING_KINDS
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
        for kind in WARNING_KINDS
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
