"""What a report says: a plan.json as the report's `Section`s, in order, and a decoder's headline;
report.md and the terminal view render these, so the file and the terminal say the same thing.

A decoder's plan (its `targets` have a `context`) is read as a user of generation reads it: time
to first token (the prefill, `prefill_timeline`) and per-token latency (one decode step at the
context's last position, `timeline`) with tokens/s, IO per token and per prefill, the KV cache
apart from the weight pool, and the resident set: the pieces held across tokens against those
read again by every token, the layers' shards apart from the LM head's vocabulary slices (the
shards of layer `layers`). Encoders' reports do not change with it. An elastic runner's sections
(its plans, deadline ranges, shared preload set and shed orders) come from `elastic_sections`.
"""

from __future__ import annotations

import math

from sticc.compile.elastic_sections import deadline_section, plans_section, preload_section, shed_sections
from sticc.compile.plan_view import (
    CALL,
    NO_TIMELINE,
    PREFILL,
    Section,
    TimelineView,
    is_decoder,
    layer_rows,
    mean_kept_bits,
    plan_name,
    resident_split,
    runner_plans,
    timeline_summary,
    timeline_views,
)
from sticc.compile.report_units import (
    NA,
    bandwidth_text,
    bits_text,
    bytes_text,
    count_text,
    histogram_text,
    ms_text,
    number_text,
    of_fp32_text,
    percent_text,
    percentile_text,
    rate_text,
    tokens_per_s_at,
)
from sticc.compile.timeline_svg import TIMELINE_SVG
from sticc.ir.plan import EventKind


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def sections(plan: dict) -> list[Section]:
    """The report's sections, in order; markdown and the terminal render these. An elastic runner's
    (`alternatives`) adds its plans, their shared preload set, the deadline ranges, each plan's shed
    order and each plan's timeline."""
    out = [_targets_section(plan), _solver_section(plan), _predicted_section(plan)]
    if len(runner_plans(plan)) > 1:
        out += [plans_section(plan), preload_section(plan)]
    if is_decoder(plan):
        out.append(_resident_section(plan))
    if plan.get("by_length"):
        out.append(_length_section(plan))
    deadlines = deadline_section(plan)
    if deadlines:
        out.append(deadlines)
    out.append(_shards_section(plan))
    out += shed_sections(plan)
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
        text = f"{rate_text(tokens_per_s_at(predicted['latency_s']))} tokens/s"
        if predicted.get("planned_latency_s") is not None:
            text += f" ({rate_text(tokens_per_s_at(predicted['planned_latency_s']))} at p{percentile_text(predicted)})"
        parts.append(text)
    else:
        parts.append("no device profile: no timing")
    if predicted.get("first_token_s") is not None:
        text = f"first token in {ms_text(predicted['first_token_s'])}"
        if predicted.get("planned_first_token_s") is not None:
            text += f" ({ms_text(predicted['planned_first_token_s'])} at p{percentile_text(predicted)})"
        parts.append(text)
    split = resident_split(plan)
    resident = f"resident across tokens: {count_text(len(split.layer_resident), 'layer shard')} and " \
               f"{len(split.head_resident)} of {split.head_total} LM head slices ({bytes_text(predicted.get('preload_bytes'))})"
    streamed = f"read by every token: {bytes_text(predicted.get('io_bytes_per_token'))}"
    kv = f"KV cache {bytes_text(predicted.get('kv_cache_bytes'))} for {plan['targets']['context']} positions"
    return ", ".join(parts) + f"; {resident}; {streamed}; {kv}."


def _targets_section(plan: dict) -> Section:
    targets = plan["targets"]
    full = _full_precision_bytes(plan)
    memory = targets.get("memory_bytes")
    memory_text = "none (the weight pool budget below is what the plan needs)" if memory is None else of_fp32_text(memory, full)
    if is_decoder(plan):  # the prompt's first token, then one token at a time; the KV cache apart from the weights
        latency = targets.get("latency_s")
        kv = targets.get("kv_memory_bytes")
        rows = [
            ("time to first token", "none" if targets.get("first_token_s") is None else ms_text(targets["first_token_s"])),
            ("per-token latency", "none" if latency is None else f"{ms_text(latency)} ({rate_text(tokens_per_s_at(latency))} tokens/s)"),
            ("weight memory", memory_text),
            ("KV cache memory", "none (the KV cache is reported below, apart from the weights)" if kv is None else bytes_text(kv)),
            ("prompt length", f"{targets.get('seq_len', NA)} tokens"),
            ("context", f"{targets['context']} positions (prompt and generated tokens)"),
        ]
    else:
        latency = "none" if targets.get("latency_s") is None else ms_text(targets["latency_s"])
        faster = [(p.get("targets") or {}).get("latency_s") for p in runner_plans(plan)[1:]]
        if faster:
            latency += f" (this plan); alternatives {', '.join(ms_text(t) for t in faster)} (see Plans of this runner)"
        rows = [
            ("latency", latency),
            ("memory", memory_text),
            ("sequence length", str(targets.get("seq_len", NA))),
        ]
    if full:
        rows.append(("fp32 model", bytes_text(full)))
    return Section("Targets", "", ("", "value"), tuple(rows))


def _solver_section(plan: dict) -> Section:
    solver = plan["solver"]
    gap = solver.get("gap")
    rows = (
        ("solver", str(solver.get("name", NA))),
        ("status", str(solver.get("status", NA))),
        ("objective", number_text(solver.get("objective"))),
        ("bound", number_text(solver.get("bound"))),
        ("gap", NA if gap is None else f"{100 * gap:.2f}%"),
        ("wall time", NA if solver.get("wall_s") is None else f"{solver['wall_s']:.2f} s"),
    )
    note = f"plan {plan.get('plan_hash', '?')[:12]}, store {plan.get('store_id', '?')[:12]}"
    return Section("Solver", note, ("", "value"), rows)


def _latency(plan: dict, median_key: str, planned_key: str, target_key: str) -> str:
    """'<median> median, <planned> at p90, within the target': the planned latency is the one the
    target bounds (the median's, for plans without one)."""
    predicted, targets = plan["predicted"], plan["targets"]
    text = ms_text(predicted.get(median_key))
    if predicted.get(median_key) is None and not plan.get("device"):
        return text + " (no device profile)"
    if predicted.get(planned_key) is not None:
        text += f" median, {ms_text(predicted[planned_key])} at p{percentile_text(predicted)}"
        return text + _against(predicted.get(planned_key), targets.get(target_key), ms_text)
    return text + _against(predicted.get(median_key), targets.get(target_key), ms_text)


def _predicted_section(plan: dict) -> Section:
    predicted = plan["predicted"]
    full = _full_precision_bytes(plan)
    targets = plan["targets"]
    peak = of_fp32_text(predicted.get("peak_weight_bytes"), full)
    peak += _against(predicted.get("peak_weight_bytes"), targets.get("memory_bytes"), bytes_text)
    decoder = is_decoder(plan)
    if decoder:  # a prefill (the first token), then one call per generated token
        tokens_per_s = NA
        if predicted.get("latency_s") is not None:
            tokens_per_s = f"{rate_text(tokens_per_s_at(predicted['latency_s']))} median"
            if predicted.get("planned_latency_s") is not None:
                tokens_per_s += f", {rate_text(tokens_per_s_at(predicted['planned_latency_s']))} at p{percentile_text(predicted)}"
            if targets.get("latency_s") is not None:
                tokens_per_s += f" (target {rate_text(tokens_per_s_at(targets['latency_s']))})"
        kv = bytes_text(predicted.get("kv_cache_bytes")) + f" for {targets['context']} positions, beside the weight pool"
        kv += _against(predicted.get("kv_cache_bytes"), targets.get("kv_memory_bytes"), bytes_text)
        rows = [
            ("time to first token", _latency(plan, "first_token_s", "planned_first_token_s", "first_token_s")),
            ("per-token latency", _latency(plan, "latency_s", "planned_latency_s", "latency_s")),
            ("tokens/s", tokens_per_s),
            ("peak weight memory", peak),
            ("IO per token", bytes_text(predicted.get("io_bytes_per_token"))),
            ("IO per prefill", f"{bytes_text(predicted.get('io_bytes'))} ({targets.get('seq_len', NA)}-token prompt)"),
            ("KV cache", kv),
            ("resident across tokens", bytes_text(predicted.get("preload_bytes"))),
            ("fidelity loss", _fidelity(plan, predicted.get("fidelity_loss"))),
        ]
    else:
        rows = [
            ("latency", _latency(plan, "latency_s", "planned_latency_s", "latency_s")),
            ("peak weight memory", peak),
            ("IO per call", bytes_text(predicted.get("io_bytes"))),
            ("preload", bytes_text(predicted.get("preload_bytes"))),
            ("fidelity loss", _fidelity(plan, predicted.get("fidelity_loss"))),
        ]
    budget = plan.get("memory_budget_bytes")
    memory = plan.get("memory") or {}
    plans = runner_plans(plan)
    pool = of_fp32_text(budget, full)
    if {"pinned_bytes", "scratch_bytes", "ring_bytes"} <= set(memory):
        pool += (f" = pinned {bytes_text(memory['pinned_bytes'])} + scratch {bytes_text(memory['scratch_bytes'])}"
                 f" + ring {bytes_text(memory['ring_bytes'])}")
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
        text = f"device: {device.get('device', '?')}, reads {bandwidth_text(device.get('read_bandwidth_Bps'))}"
        if device.get("emulated_bandwidth_Bps") is not None:
            text += f", emulated flash cap {bandwidth_text(device['emulated_bandwidth_Bps'])} (emulated)"
        notes.append(text)
    importance = plan.get("importance")
    if importance:
        text = f"fidelity metric: {importance.get('metric') or 'unnamed'} (additive over shards)"
        additivity = importance.get("additivity") or {}
        if not additivity.get("plans"):  # not measured: plan.json's `{}`, read back as zeros
            additivity = {}
        shown = ", ".join(f"{k} {number_text(v, 3) if _is_number(v) else v}" for k, v in sorted(additivity.items())
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
            tokens, ms_text(record["latency_s"]),
            ms_text(record["planned_latency_s"]) + _against(record["planned_latency_s"], targets.get("latency_s"), ms_text),
            *((ms_text(record.get("compute_s")),) if compute else ()),
            bytes_text(record["peak_weight_bytes"]),
        ))
    note = (
        f"the same plan at other input lengths: a text is cut at {longest} tokens (the runner's truncation length: the "
        f"checkpoint's max_seq_length where it has one, else the model's positions) and a call pads to its longest text. IO is the same at every length "
        f"({bytes_text(predicted.get('io_bytes'))}); compute grows with the tokens, so short inputs wait on reads and long "
        "ones on compute. Past the planned length the embedding rows outgrow the pool's scratch and take a counted "
        "temporary. A batch of B texts padded to L tokens computes about as much as one text of B x L tokens (its "
        "matrix products see B x L rows; attention is per text)"
    )
    if compute:
        note += "; compute lane: its work at that length (dequantization and kernels, stalls left out)"
    if len(runner_plans(plan)) > 1:
        note += f". These are the most faithful plan's ({plan_name(plan)}); every plan's give the deadline ranges"
    header = ("tokens", "median", f"p{percentile_text(predicted)}", *(("compute lane",) if compute else ()), "peak weight memory")
    return Section("Latency by input length", note, header, tuple(rows))


def _against(value: float | None, target: float | None, unit) -> str:
    """ ", within the target" or ", over the target by ..." when both are known."""
    if value is None or target is None:
        return ""
    return ", within the target" if value <= target else f", over the target by {unit(value - target)}"


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


def _resident_section(plan: dict) -> Section:
    """A decoder's resident set: what stays in memory across tokens and what every token reads again."""
    predicted = plan["predicted"]
    split = resident_split(plan)
    memory = plan.get("memory") or {}

    def cell(bits: list[int]) -> str:
        return f"{len(bits)} ({histogram_text(bits)})" if bits else "0"

    kv = f"{bytes_text(predicted.get('kv_cache_bytes'))} for {plan['targets']['context']} positions"
    kv += _against(predicted.get("kv_cache_bytes"), plan["targets"].get("kv_memory_bytes"), bytes_text)
    rows = (
        ("resident across tokens", cell(split.layer_resident), cell(split.head_resident), bytes_text(predicted.get("preload_bytes"))),
        ("read by every token", cell(split.layer_streamed), cell(split.head_streamed),
         f"{bytes_text(predicted.get('io_bytes_per_token'))} per token, with its embedding rows"),
        ("dropped", str(split.layer_dropped), "0 (cannot be dropped)", ""),
        ("KV cache, beside the weight pool", "", "", kv),
    )
    resident = len(split.layer_resident) + len(split.head_resident)
    kept = resident + len(split.layer_streamed) + len(split.head_streamed)
    note = (f"What a generated token finds in memory and what it reads again: {resident} of {kept} kept shards and "
            f"slices stay resident (preloaded, for the runner's lifetime)")
    if "pinned_bytes" in memory and "ring_bytes" in memory:
        note += (f", in the pool's pinned region ({bytes_text(memory['pinned_bytes'])} with the headers); the others stream "
                 f"through the ring ({bytes_text(memory['ring_bytes'])}) on every token")
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
        table.append((row.name, *cells, f"{row.kept}/{row.listed}", bits_text(mean_kept_bits(row.bits))))
    every = [b for row in rows for b in row.bits]
    kept = sum(r.kept for r in rows)
    table.append(("all", *([""] * indices), f"{kept}/{sum(r.listed for r in rows)}", bits_text(mean_kept_bits(every))))
    preloaded = sum(p for r in rows for p in r.preload)
    header = ("layer", *(str(i) for i in range(indices)), "kept", "mean bits")
    if not decoder:
        histogram = histogram_text([b for b in every if b is not None])
        note = (f"Bits per shard (rows: layers, columns: shard index); '-' dropped, '*' preloaded; "
                f"mean bits over kept shards. {histogram}; {preloaded} preloaded.")
        if len(runner_plans(plan)) > 1:
            note = f"The most faithful plan's ({plan_name(plan)}); the others': Plans of this runner. " + note
        return Section("Shards", note, header, tuple(table), shard_cells=True)
    layers = histogram_text([b for r in rows if not r.lm_head for b in r.bits if b is not None])
    head = histogram_text([b for r in rows if r.lm_head for b in r.bits if b is not None])
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
        ("objective", number_text(plan["solver"].get("objective")), number_text(greedy.get("objective"))),
        ("fidelity loss", _fidelity(plan, ours.get("fidelity_loss")), _fidelity(plan, theirs.get("fidelity_loss"))),
        ("latency", ms_text(ours.get("latency_s")), ms_text(theirs.get("latency_s"))),
        ("peak weight memory", of_fp32_text(ours.get("peak_weight_bytes"), full), of_fp32_text(theirs.get("peak_weight_bytes"), full)),
        ("kept shards", f"{kept}/{len(bits)}", NA if greedy.get("kept") is None else f"{greedy['kept']}/{len(bits)}"),
        ("mean bits", bits_text(mean_kept_bits(bits)), bits_text(greedy.get("mean_bits"))),
    ]
    if is_decoder(plan):  # medians, as the encoder's latency row
        rows[3:4] = [
            ("time to first token", ms_text(ours.get("first_token_s")), ms_text(theirs.get("first_token_s"))),
            ("per-token latency", ms_text(ours.get("latency_s")), ms_text(theirs.get("latency_s"))),
            ("tokens/s", rate_text(tokens_per_s_at(ours.get("latency_s"))), rate_text(tokens_per_s_at(theirs.get("latency_s")))),
        ]
        rows[7:7] = [
            ("resident across tokens", bytes_text(ours.get("preload_bytes")), bytes_text(theirs.get("preload_bytes"))),
            ("IO per token", bytes_text(ours.get("io_bytes_per_token")), bytes_text(theirs.get("io_bytes_per_token"))),
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
        ("compute stall (compute waits for IO)", f"{ms_text(summary.compute_stall_s)} ({percent_text(summary.compute_stall_s, latency) or '0%'} of {view.noun}, {count_text(stalls, 'stall')})"),
        ("ring wait (IO waits for memory)", f"{ms_text(summary.ring_wait_s)} ({count_text(waits, 'wait')})"),
        ("IO busy", f"{summary.busy_fraction(summary.io_busy_s):.0%} ({count_text(loads, 'load')}, {ms_text(summary.io_busy_s)})"),
        ("compute busy", f"{summary.busy_fraction(summary.compute_busy_s):.0%} ({ms_text(summary.compute_busy_s)})"),
        ("timeline end", ms_text(summary.end_s)),
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
        note = (f"The {name}'s {call} (target {ms_text((p.get('targets') or {}).get(view.target_key))}); panel {panel} of "
                f"{len(calls)} in {TIMELINE_SVG}.")
        out.append(_timeline_section(p, view, _view_title(view, name), note, n))
    return out
