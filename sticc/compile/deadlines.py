"""Which plan of an elastic runner serves a call, by its deadline and its input length (docs/elastic.md).

An elastic runner's plan.json (`sticc compile --latency 20ms,40ms,80ms`) is its most faithful plan
with the faster ones as `alternatives` (`plan_view.runner_plans`). A call takes the most faithful
plan whose predicted latency at the call's token count (`latency_curve`, read as the runner reads
it) meets its deadline, else the fastest, which sheds: `deadline_ranges` are the deadlines each plan
serves.
"""

from __future__ import annotations

from dataclasses import dataclass

from sticc.compile.plan_view import plan_name, runner_plans
from sticc.compile.report_units import ms_text, ms_value_text
from sticc.runtime.core import LengthRow
from sticc.runtime.elastic import latency_at


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
            return "any" if self.high_s is None else f"< {ms_text(self.high_s)}"
        if self.high_s is None:
            return f">= {ms_text(self.low_s)}"
        return f"{ms_value_text(self.low_s)}-{ms_text(self.high_s)}"


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
