"""The report's sections for an elastic runner's plans and for a plan that sheds (docs/report.md).

An elastic runner's report adds its plans side by side (`plans_section`), the preload set they share
(`preload_section`), the deadline range each plan serves at every input length (`deadline_section`,
from `deadlines`) and each plan's `shed_order`: what the runner drops first when a call falls behind
(`shed_sections`). A single plan with a `shed_order` gets its deadline ranges and shed order too.
"""

from __future__ import annotations

from sticc.compile.deadlines import deadline_line, deadline_ranges
from sticc.compile.plan_view import Section, mean_kept_bits, plan_name, preload_set, runner_plans
from sticc.compile.report_units import (
    NA,
    bits_text,
    bytes_text,
    count_text,
    histogram_text,
    ms_text,
    ms_value_text,
    percentile_text,
)


def _report_lengths(plan: dict) -> list[int]:
    """The input lengths the deadline table shows: every plan's `by_length` lengths (their union),
    else the planned length."""
    lengths = {int(r["seq_len"]) for p in runner_plans(plan) for r in p.get("by_length") or ()}
    planned = (plan.get("targets") or {}).get("seq_len")
    return sorted(lengths) if lengths else ([] if planned is None else [int(planned)])


def _planned_name(plan: dict) -> str:
    """'p90' for a plan with a planned percentile, 'median' for one without."""
    return "median" if plan["predicted"].get("planned_percentile") is None else f"p{percentile_text(plan['predicted'])}"


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


def plans_section(plan: dict) -> Section:
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
            plan_name(p, n) + role, ms_text((p.get("targets") or {}).get("latency_s")), ms_text(predicted.get("latency_s")),
            ms_text(predicted.get("planned_latency_s")), NA if loss is None else f"{loss:.4g}",
            f"{sum(1 for b in bits if b)}/{len(bits)}", bits_text(mean_kept_bits(bits)), bytes_text(predicted.get("io_bytes")),
            NA if planned is None else _served_cell(plan, n, planned),
        ))
    pct = percentile_text(plan["predicted"])
    header = ("plan", "latency target", "median", f"p{pct}", "fidelity loss", "kept shards", "mean bits", "IO per call",
              f"deadlines served at {planned} tokens")
    note = (f"One runner, {len(plans)} plans in one weight pool ({bytes_text(plan.get('memory_budget_bytes'))}) with one "
            "preload set, most faithful first; latencies at the planned length. A call runs the most faithful plan "
            "predicted to meet its deadline, else the fastest, shedding: Deadline ranges by input length.")
    return Section("Plans of this runner", note, header, tuple(rows))


def deadline_section(plan: dict) -> Section | None:
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


def preload_section(plan: dict) -> Section:
    """An elastic runner's preload set: loaded once, held for the runner's lifetime, read by every plan."""
    plans = runner_plans(plan)
    shared = preload_set(plan)
    differ = [plan_name(p, n) for n, p in enumerate(plans) if n and preload_set(p) != shared]
    bits = [b for _, _, b in sorted(shared)]
    rows = [
        ("preloaded shards", f"{len(shared)} ({histogram_text(bits)})" if shared else "0"),
        ("bytes", bytes_text(plan["predicted"].get("preload_bytes"))),
    ]
    pinned = (plan.get("memory") or {}).get("pinned_bytes")
    if pinned is not None:
        rows.append(("pool's pinned region", f"{bytes_text(pinned)} (with the headers)"))
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
            rows.append((str(n + 1), _chunk_name(chunk), f"{chunk['loss']:.4g}", ms_value_text(chunk["io_s"]),
                         ms_value_text(chunk["compute_s"]), per_ms, ms_value_text(saved_s), f"{loss:.4g}"))
    more = len(order) - SHED_ROWS
    if more > 0:
        rows.append(("...", f"{more} more", "", "", "", "", ms_value_text(saved_s), f"{loss:.4g}"))
    io_s = sum(chunk["io_s"] for chunk in order)
    compute_s = sum(chunk["compute_s"] for chunk in order)
    note = (
        "What the runner drops first when a call falls behind its predicted timeline: its pending chunks in this order, "
        "least fidelity loss per ms saved first (saved: the chunk's IO and compute lane time; a chunk already loaded "
        f"saves only its compute). All {count_text(len(order), 'chunk')}: {ms_text(io_s + compute_s)} saved "
        f"(IO {ms_text(io_s)}, compute {ms_text(compute_s)}) for a fidelity loss of {loss:.4g}"
        + (f"; the first {SHED_ROWS} listed, then {more} more" if more > 0 else "") + "."
    )
    header = ("order", "chunk", "loss", "IO ms", "compute ms", "loss per ms saved", "cumulative ms saved", "cumulative loss")
    return Section(title, note, header, tuple(rows))


def shed_sections(plan: dict) -> list[Section]:
    """A "Shed order" section for every plan of the runner that has one, titled with the plan for an
    elastic runner."""
    plans = runner_plans(plan)
    return [_shed_section(p, "Shed order" if len(plans) == 1 else f"Shed order: {plan_name(p, n)}")
            for n, p in enumerate(plans) if p.get("shed_order")]
