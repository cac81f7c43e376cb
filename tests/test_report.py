"""Plan reports: report.md, timeline.svg and the terminal view, from hand-built and compiled plan.json."""

from __future__ import annotations

import io
import itertools
import json
import random
import re
import xml.etree.ElementTree as ET
from dataclasses import asdict, replace

import pytest
from helpers import compile_runner
from planning_helpers import synthetic_device, synthetic_importance
from rich.console import Console

from solvers.uniform import uniform_plan
from sticc.base.errors import UserError
from sticc.base.schema import Part
from sticc.compile.deadlines import deadline_line, deadline_ranges
from sticc.compile.plan_view import NO_TIMELINE, read_plan_json, runner_plans, timeline_summary
from sticc.compile.planner import plan_for_targets, predict_given_plan, report_lengths
from sticc.compile.report import print_report, render_markdown, write_reports
from sticc.compile.timeline_svg import render_svg
from sticc.compile.timeline_text import lane_bars
from sticc.ir.graph import by_position
from sticc.ir.lower import lower
from sticc.ir.plan import Event
from sticc.ir.simulate import simulate
from sticc.model.store import Store
from sticc.profile.device import DeviceProfile, PartCompute, TokenCompute
from sticc.profile.importance import CalibrationRecord, ImportanceProfile, store_shard_positions

SVG = "{http://www.w3.org/2000/svg}"


def sample_timeline(chunks: int, load_s: float, compute_s: float) -> dict:
    """A plausible two-lane timeline: loads back to back, compute waiting for each (stalls), and an
    arena wait whenever the IO lane runs two chunks ahead."""
    events = [Event("compute", "embed", "embedding", 0.0, compute_s)]
    io_free, compute_free = 0.0, compute_s
    computed_end: list[float] = []
    for n in range(chunks):
        start = io_free
        if n >= 2 and computed_end[n - 2] > start:  # the arena holds two chunks
            events.append(Event("io", "wait", "arena full", start, computed_end[n - 2]))
            start = computed_end[n - 2]
        duration = load_s * (2.5 if n % 4 == 0 else 0.5)  # a slow chunk stalls compute, fast ones fill the arena
        events.append(Event("io", "load", f"L{n // 8} attn x3 @4b", start, start + duration))
        io_free = start + duration
        begin = max(compute_free, io_free)
        if begin > compute_free:
            events.append(Event("compute", "stall", "waiting for IO", compute_free, begin))
        events.append(Event("compute", "compute", f"L{n // 8} attn x3 @4b", begin, begin + compute_s))
        compute_free = begin + compute_s
        computed_end.append(compute_free)
        if n % 4 == 3:
            events.append(Event("compute", "join", f"layer {n // 8} join", compute_free, compute_free + compute_s / 4))
            compute_free += compute_s / 4
    events.sort(key=lambda e: (e.lane, e.start_s))
    return {
        "events": [asdict(e) for e in events],
        "compute_stall_s": sum(e.end_s - e.start_s for e in events if e.kind == "stall"),
        "ring_wait_s": sum(e.end_s - e.start_s for e in events if e.kind == "wait"),
    }


def sample_plan(layers: int = 6, per_layer: int = 12, timeline: dict | None = None) -> dict:
    """A MiniLM-sized plan.json with every optional key filled in."""
    shards = []
    for layer in range(layers):
        for index in range(per_layer):
            bits = 0 if (layer + index) % 7 == 0 else (8 if index % 3 == 0 else 4)
            shards.append({"layer": layer, "index": index, "bits": bits, "preload": bits == 8 and index == 0})
    if timeline is None:
        timeline = sample_timeline(layers * 8, load_s=1.5e-3, compute_s=0.9e-3)
    end_s = max(e["end_s"] for e in timeline["events"]) if timeline["events"] else 0.0
    return {
        "format_version": 2,
        "store_id": "ab" * 32,
        "model": "all-MiniLM-L6-v2",
        "targets": {"latency_s": 0.08, "memory_bytes": 4_000_000, "seq_len": 128},
        "solver": {"name": "cpsat", "status": "OPTIMAL", "objective": 1.23456, "bound": 1.2352, "gap": 0.0005, "wall_s": 2.31},
        "memory_budget_bytes": 4_000_000,
        "shards_per_chunk": 3,
        "predicted": {"latency_s": end_s, "peak_weight_bytes": 3_900_000, "preload_bytes": 250_000,
                      "io_bytes": 11_500_000, "fidelity_loss": 0.0123},
        "shards": shards,
        "load_order": [],
        "plan_hash": "cd" * 32,
        "memory": {"pinned_bytes": 400_000, "scratch_bytes": 100_000, "ring_bytes": 3_500_000, "admit_bytes": 3_200_000,
                   "full_precision_bytes": 90_900_000},
        "timeline": timeline,
        "comparison": {"greedy": {"objective": 1.1, "status": "FEASIBLE",
                                  "predicted": {"latency_s": 0.079, "peak_weight_bytes": 3_950_000, "preload_bytes": 0,
                                                "io_bytes": 12_000_000, "fidelity_loss": 0.0201},
                                  "kept": 58, "mean_bits": 5.1}},
        "device": {"device": "2-core test box", "emulated_bandwidth_Bps": 20e6, "read_bandwidth_Bps": 400e6},
        "importance": {"metric": "1 - cosine of mean-pooled output", "additivity": {"plans": 20, "pearson": 0.987}},
    }


def table_rows(markdown: str, heading: str) -> list[list[str]]:
    """The cells of the first pipe table under `## heading`."""
    block = markdown.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in block.splitlines() if line.startswith("|") and not line.startswith("|-")]
    return [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows]


def event_rects(svg: str) -> list[ET.Element]:
    root = ET.fromstring(svg)
    return [r for r in root.iter(f"{SVG}rect") if r.get("class", "").split()[:1] == ["event"]]


# ----------------------------------------------------------------------------------------------
# report.md
# ----------------------------------------------------------------------------------------------


def test_markdown_states_targets_solver_and_predictions():
    md = render_markdown(sample_plan())
    assert md.startswith("# sticc plan: all-MiniLM-L6-v2 (cpsat)\n")
    targets = dict(tuple(r) for r in table_rows(md, "Targets")[1:])
    assert targets["latency"] == "80.0 ms"
    assert targets["memory"] == "4.00 MB (4.4% of fp32)"
    assert targets["sequence length"] == "128"
    solver = dict(tuple(r) for r in table_rows(md, "Solver")[1:])
    assert solver == {"solver": "cpsat", "status": "OPTIMAL", "objective": "1.23456", "bound": "1.2352",
                      "gap": "0.05%", "wall time": "2.31 s"}
    predicted = dict(tuple(r) for r in table_rows(md, "Predicted, per call")[1:])
    assert predicted["peak weight memory"] == "3.90 MB (4.3% of fp32), within the target"
    assert predicted["latency"].endswith(" ms, within the target")
    assert predicted["IO per call"] == "11.50 MB" and predicted["preload"] == "250.0 kB"
    assert predicted["fidelity loss"] == "0.0123 (cosine ≈ 0.9877)"
    assert "pinned 400.0 kB + scratch 100.0 kB + ring 3.50 MB" in predicted["weight pool budget"]
    assert "2-core test box" in md and "20.0 MB/s (emulated)" in md and "pearson 0.987" in md


def test_markdown_names_a_missed_target():
    plan = sample_plan()
    plan["targets"]["latency_s"] = plan["predicted"]["latency_s"] - 0.002
    plan["targets"]["memory_bytes"] = 3_000_000
    predicted = dict(tuple(r) for r in table_rows(render_markdown(plan), "Predicted, per call")[1:])
    assert predicted["latency"].endswith(", over the target by 2.00 ms")
    assert predicted["peak weight memory"].endswith(", over the target by 900.0 kB")


def test_markdown_shard_table_has_one_row_per_layer():
    plan = sample_plan()
    rows = table_rows(render_markdown(plan), "Shards")
    assert rows[0] == ["layer", *map(str, range(12)), "kept", "mean bits"]
    assert [r[0] for r in rows[1:]] == ["0", "1", "2", "3", "4", "5", "all"]
    layer0 = rows[1]
    assert layer0[1] == "-"  # (0 + 0) % 7 == 0: dropped
    assert layer0[2:5] == ["4", "4", "8"] and layer0[8] == "-"
    layer1 = rows[2]
    assert layer1[1] == "8*"  # preloaded
    kept = [s["bits"] for s in plan["shards"] if s["layer"] == 1 and s["bits"]]
    assert layer1[-2] == f"{len(kept)}/12" and layer1[-1] == f"{sum(kept) / len(kept):.2f}"
    assert rows[-1][-2] == f"{sum(1 for s in plan['shards'] if s['bits'])}/72"


def test_markdown_compares_with_greedy_and_summarizes_the_timeline():
    plan = sample_plan()
    md = render_markdown(plan)
    rows = {r[0]: r[1:] for r in table_rows(md, "Compared with greedy")}
    assert rows[""] == ["this plan (cpsat)", "greedy"]
    assert rows["objective"] == ["1.23456", "1.1"]
    assert rows["fidelity loss"][1] == "0.0201 (cosine ≈ 0.9799)"
    assert rows["kept shards"][1] == "58/72" and rows["mean bits"][1] == "5.10"
    assert "loses 39% less fidelity than greedy" in md
    summary = timeline_summary(plan)
    timeline = {r[0]: r[1] for r in table_rows(md, "Timeline")[1:]}
    stall_ms = plan["timeline"]["compute_stall_s"] * 1e3
    assert timeline["compute stall (compute waits for IO)"].startswith(f"{stall_ms:.1f} ms")
    assert timeline["IO busy"].startswith(f"{summary.io_busy_s / summary.end_s:.0%}")
    assert "![timeline](timeline.svg)" in md
    assert re.search(r"^IO      \|[=w.]+\|$", md, re.M) and re.search(r"^compute \|[e#+!.]+\|$", md, re.M)


def test_markdown_without_the_optional_keys():
    plan = sample_plan()
    for key in ("memory", "timeline", "comparison", "device", "importance"):
        del plan[key]
    plan["predicted"].update(latency_s=None, fidelity_loss=None)
    md = render_markdown(plan)
    assert NO_TIMELINE in md and "Compared with greedy" not in md and "timeline.svg" not in md
    assert "fp32" not in md and "cosine" not in md
    assert "n/a (no importance profile)" in md and "n/a (no device profile)" in md


# ----------------------------------------------------------------------------------------------
# timeline.svg
# ----------------------------------------------------------------------------------------------


def test_svg_has_one_rect_per_event_with_tooltips():
    plan = sample_plan()
    svg = render_svg(plan)
    rects = event_rects(svg)
    events = plan["timeline"]["events"]
    assert len(rects) == len(events)
    assert [r.get("class").split()[1] for r in rects] == [e["kind"] for e in events]
    assert all(r.find(f"{SVG}title").text.startswith(f"{e['kind']}: {e['label']}") for r, e in zip(rects, events, strict=True))
    assert {"stall", "wait"} <= {e["kind"] for e in events}
    assert 'fill="url(#hatch-stall)"' in svg and 'id="hatch-wait"' in svg
    root = ET.fromstring(svg)
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "target 80.0 ms" in texts and any(t.startswith("predicted ") for t in texts)
    assert "all-MiniLM-L6-v2" in root.find(f"{SVG}title").text
    assert root.get("width") == "1200"


@pytest.mark.parametrize(("chunks", "load_s", "compute_s"), [(4, 0.1e-3, 0.05e-3), (600, 12e-3, 4e-3)])
def test_svg_scales_from_a_millisecond_to_seconds(chunks, load_s, compute_s):
    plan = sample_plan(timeline=sample_timeline(chunks, load_s, compute_s))
    plan["targets"]["latency_s"] = None
    svg = render_svg(plan)
    rects = event_rects(svg)
    assert len(rects) == len(plan["timeline"]["events"])
    assert all(float(r.get("x")) >= 90 and float(r.get("x")) + float(r.get("width")) <= 1200 - 20 for r in rects)
    ticks = [t.text for t in ET.fromstring(svg).iter(f"{SVG}text") if re.fullmatch(r"[\d.]+", t.text or "")]
    assert 5 <= len(ticks) <= 12, ticks


def test_svg_escapes_labels_and_draws_unknown_kinds():
    plan = sample_plan(timeline=sample_timeline(2, 1e-3, 1e-3))
    plan["timeline"]["events"][0]["label"] = 'a <b> & "c"'
    plan["timeline"]["events"][1]["kind"] = 'prefetch "x"'
    plan["model"] = "<model & co>"
    rects = event_rects(render_svg(plan))
    assert len(rects) == len(plan["timeline"]["events"])
    assert 'a <b> & "c"' in rects[0].find(f"{SVG}title").text
    assert rects[1].get("class") == 'event prefetch "x"'


def test_svg_without_a_timeline_says_so():
    plan = sample_plan()
    plan["timeline"] = None
    svg = render_svg(plan)
    assert not event_rects(svg)
    assert NO_TIMELINE in [t.text for t in ET.fromstring(svg).iter(f"{SVG}text")]


def test_svg_of_a_simulated_call(tiny_bert_store):
    store = Store.open(tiny_bert_store)
    plan = uniform_plan(store, 4)
    problem = lower(store, synthetic_device(store, cap_Bps=5e6), synthetic_importance(store), 16, 0.01, None)
    simulation = simulate(problem, by_position(plan.shards), plan.memory_budget_bytes)
    data = plan.to_json()
    data["timeline"] = {"events": [asdict(e) for e in simulation.events],
                        "compute_stall_s": simulation.compute_stall_s, "ring_wait_s": simulation.ring_wait_s}
    data["predicted"]["latency_s"] = simulation.latency_s
    assert len(event_rects(render_svg(data))) == len(simulation.events)
    assert "Timeline" in render_markdown(data)


# ----------------------------------------------------------------------------------------------
# The terminal
# ----------------------------------------------------------------------------------------------


def test_print_report_shows_the_same_values():
    console = Console(record=True, width=140, file=io.StringIO())
    print_report(sample_plan(), console)
    text = console.export_text()
    for needle in ("all-MiniLM-L6-v2", "OPTIMAL", "80.0 ms", "4.00 MB (4.4% of fp32)", "0.05%", "8*",
                   "Compared with greedy", "58/72", "cosine ≈ 0.9877", "compute stall", "IO      |", "compute |"):
        assert needle in text, needle


def test_print_report_without_a_timeline():
    plan = sample_plan()
    plan["timeline"] = None
    console = Console(record=True, width=80, file=io.StringIO())
    print_report(plan, console)
    assert NO_TIMELINE in console.export_text()


def test_lane_bars_pick_the_dominant_kind_per_cell():
    events = (
        Event("io", "load", "a", 0.0, 4.0), Event("io", "wait", "arena full", 4.0, 5.0), Event("io", "load", "b", 5.0, 8.0),
        Event("compute", "embed", "embedding", 0.0, 2.0), Event("compute", "stall", "waiting for IO", 2.0, 4.0),
        Event("compute", "compute", "a", 4.0, 7.0), Event("compute", "join", "j", 7.0, 8.0),
    )
    assert lane_bars(events, 10.0, 10) == {"io": "====w===..", "compute": "ee!!###+.."}


# ----------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------


def test_write_reports_replaces_both_files_atomically(tmp_path):
    plan = sample_plan()
    (tmp_path / "report.md").write_text("old")
    paths = write_reports(tmp_path, plan)
    assert [p.name for p in paths] == ["report.md", "timeline.svg"]
    assert paths[0].read_text(encoding="utf-8") == render_markdown(plan)
    assert paths[1].read_text(encoding="utf-8") == render_svg(plan)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md", "timeline.svg"]  # no staging left behind
    assert render_markdown(plan) == render_markdown(sample_plan())  # same plan, same bytes


def test_report_of_a_compiled_plan(tiny_bert_store, tmp_path):
    """plan.json as `sticc compile` writes it today, without the optional keys."""
    store = Store.open(tiny_bert_store)
    compile_runner(tiny_bert_store, uniform_plan(store, 4), tmp_path / "out")
    plan = read_plan_json(tmp_path / "out" / "plan.json")
    assert read_plan_json(tmp_path / "out") == plan  # the output directory names its plan.json
    md = render_markdown(plan)
    assert "(uniform)" in md and "GIVEN" in md and NO_TIMELINE in md
    rows = table_rows(md, "Shards")
    assert rows[1] == ["0", "4", "4", "4", "4", "4/4", "4.00"] and rows[-1][-2:] == ["8/8", "4.00"]
    paths = write_reports(tmp_path / "out", plan)
    assert not event_rects(paths[1].read_text(encoding="utf-8"))
    console = Console(record=True, width=100, file=io.StringIO())
    print_report(plan, console)
    assert "uniform" in console.export_text()


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (None, "does not exist"),
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "must hold a JSON object"),
        (json.dumps({"default_bits": 4}), "no format_version"),
        (json.dumps({"format_version": 99}), "format_version: input should be 2 (got 99)"),
        (json.dumps({"format_version": 2, "shards": []}), "is not a sticc plan.json (no store_id"),
        (json.dumps({"format_version": 1, "shards": []}), "format_version: input should be 2 (got 1)"),
        ("targets", "targets: must be a JSON object"),
        ("timeline", "timeline.events[0]"),
        ("shards", "shards[0].bits: input should be a valid integer (got '4')"),
    ],
)
def test_bad_plan_files_are_one_line_errors(tmp_path, content, needle):
    path = tmp_path / "plan.json"
    if content == "targets":
        content = json.dumps({**sample_plan(), "targets": [0.08]})
    elif content == "timeline":
        plan = sample_plan()
        plan["timeline"]["events"][0]["end_s"] = -1.0
        content = json.dumps(plan)
    elif content == "shards":
        content = json.dumps({**sample_plan(), "shards": [{"layer": 0, "index": 0, "bits": "4"}]})
    if content is not None:
        path.write_text(content)
    with pytest.raises(UserError) as error:
        read_plan_json(path)
    message = str(error.value)
    assert needle in message and "\n" not in message and str(path) in message


# ----------------------------------------------------------------------------------------------
# Decoders: a prefill, then one decode step per token; the KV cache and the resident set
# ----------------------------------------------------------------------------------------------


def decoder_plan(layers: int = 4, per_layer: int = 6, slices: int = 3) -> dict:
    """A decoder plan.json (made-up numbers, every key a compiled one has): `layers` x `per_layer`
    shards, the LM head's `slices` vocabulary slices as layer `layers`, the decode step as
    `timeline` and the prompt's call as `prefill_timeline`."""
    plan = sample_plan(layers, per_layer, timeline=sample_timeline(layers * 2 + 1, load_s=1e-3, compute_s=0.5e-3))
    plan["model"] = "SmolLM2-135M"
    plan["shards"] += [{"layer": layers, "index": i, "bits": 8 if i % 2 else 4, "preload": i == 0} for i in range(slices)]
    plan["load_order"] = [[s["layer"], s["index"], part] for s in plan["shards"] if s["bits"] and s["layer"] < layers
                          for part in ("attn", "ffn")]
    plan["load_order"] += [[layers, i, "lm_head"] for i in range(slices)]
    plan["targets"] = {"latency_s": 0.02, "memory_bytes": 4_000_000, "seq_len": 64, "context": 512,
                       "first_token_s": 1.0, "kv_memory_bytes": 20_000_000}
    decode_s = max(e["end_s"] for e in plan["timeline"]["events"])
    plan["prefill_timeline"] = sample_timeline(layers * 2 + 1, load_s=1e-3, compute_s=8e-3)
    prefill_s = max(e["end_s"] for e in plan["prefill_timeline"]["events"])
    plan["predicted"] = {
        "latency_s": decode_s, "planned_latency_s": decode_s * 1.2, "planned_percentile": 90,
        "first_token_s": prefill_s, "planned_first_token_s": prefill_s * 1.2,
        "peak_weight_bytes": 3_900_000, "preload_bytes": 350_000, "io_bytes": 3_010_000,
        "io_bytes_per_token": 2_760_000, "kv_cache_bytes": 18_874_368, "fidelity_loss": 0.25,
    }
    plan["comparison"]["greedy"].update(kept=22, mean_bits=5.1)
    plan["comparison"]["greedy"]["predicted"].update(
        latency_s=decode_s * 1.1, first_token_s=prefill_s * 1.1, io_bytes_per_token=2_900_000, kv_cache_bytes=18_874_368,
        preload_bytes=120_000, fidelity_loss=0.31,
    )
    plan["importance"] = {"metric": "KL of next-token distributions", "additivity": {}}
    plan["device"].update(compute_threads=2, quantile_factor=1.2)
    return plan


def test_decoder_plan_json_is_a_valid_plan_file(tmp_path):
    """The hand-built decoder plan has the shape `sticc compile` writes: `sticc report` reads it."""
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(decoder_plan()))
    assert render_markdown(read_plan_json(path)) == render_markdown(decoder_plan())


def test_decoder_markdown_reads_as_generation():
    plan = decoder_plan()
    md = render_markdown(plan)
    decode_s, prefill_s = plan["predicted"]["latency_s"], plan["predicted"]["first_token_s"]
    # the headline: tokens/s, time to first token, the resident set, what each token reads, the KV cache
    headline = md.split("\n")[2]
    rates = re.match(r"([\d.]+) tokens/s \(([\d.]+) at p90\), first token in ([\d.]+) ms \(([\d.]+) ms at p90\)", headline)
    assert rates, headline
    assert [float(v) for v in rates.groups()] == pytest.approx(
        [1 / decode_s, 1 / (1.2 * decode_s), prefill_s * 1e3, 1.2 * prefill_s * 1e3], rel=0.01)
    preloaded = sum(1 for s in plan["shards"] if s["preload"] and s["layer"] < 4)
    assert f"resident across tokens: {preloaded} layer shards and 1 of 3 LM head slices (350.0 kB)" in headline
    assert "read by every token: 2.76 MB" in headline and "KV cache 18.87 MB for 512 positions" in headline
    targets = dict(tuple(r) for r in table_rows(md, "Targets")[1:])
    assert targets["time to first token"] == "1000 ms"
    assert targets["per-token latency"] == "20.0 ms (50.0 tokens/s)"
    assert targets["KV cache memory"] == "20.00 MB"
    assert targets["prompt length"] == "64 tokens" and targets["context"].startswith("512 positions")
    assert "latency" not in targets and "sequence length" not in targets
    predicted = dict(tuple(r) for r in table_rows(md, "Predicted, per prompt and per token")[1:])
    assert (prefill_s, decode_s) == pytest.approx((0.084, 0.011))
    assert predicted["time to first token"] == "84.0 ms median, 100.8 ms at p90, within the target"
    assert predicted["per-token latency"] == "11.0 ms median, 13.2 ms at p90, within the target"
    rates = re.fullmatch(r"([\d.]+) median, ([\d.]+) at p90 \(target 50.0\)", predicted["tokens/s"])
    assert [float(v) for v in rates.groups()] == pytest.approx([1 / decode_s, 1 / (1.2 * decode_s)], rel=0.01)
    assert predicted["IO per token"] == "2.76 MB" and predicted["IO per prefill"] == "3.01 MB (64-token prompt)"
    assert predicted["KV cache"] == "18.87 MB for 512 positions, beside the weight pool, within the target"
    assert predicted["resident across tokens"] == "350.0 kB"
    assert "Predicted, per call" not in md and "cosine" not in md


def test_decoder_resident_set_splits_layers_from_the_lm_head():
    plan = decoder_plan()
    rows = {r[0]: r[1:] for r in table_rows(render_markdown(plan), "Resident set")}
    assert rows[""] == ["layer shards", "LM head slices", "bytes"]
    layer_shards = [s for s in plan["shards"] if s["layer"] < 4]
    preloaded = [s["bits"] for s in layer_shards if s["preload"]]
    streamed = [s["bits"] for s in layer_shards if s["bits"] and not s["preload"]]
    assert rows["resident across tokens"] == [f"{len(preloaded)} ({len(preloaded)}x 8-bit)", "1 (1x 4-bit)", "350.0 kB"]
    assert rows["read by every token"][0].startswith(f"{len(streamed)} (")
    assert rows["read by every token"][1:] == ["2 (1x 8-bit, 1x 4-bit)", "2.76 MB per token, with its embedding rows"]
    assert rows["dropped"][:2] == [str(sum(1 for s in layer_shards if not s["bits"])), "0 (cannot be dropped)"]
    assert rows["KV cache, beside the weight pool"][-1] == "18.87 MB for 512 positions, within the target"


def test_decoder_shard_table_has_the_lm_head_as_its_own_row():
    rows = table_rows(render_markdown(decoder_plan()), "Shards")
    assert rows[0] == ["layer", *map(str, range(6)), "kept", "mean bits"]
    assert [r[0] for r in rows[1:]] == ["0", "1", "2", "3", "LM head", "all"]
    assert rows[5] == ["LM head", "4*", "8", "4", "", "", "", "3/3", "5.33"]
    assert rows[-1][-2] == f"{sum(1 for s in decoder_plan()['shards'] if s['bits'])}/27"


def test_decoder_shard_table_wraps_a_wide_lm_head():
    """SmolLM2's LM head has about 96 slices to a layer's 9 shards: it wraps over rows."""
    rows = table_rows(render_markdown(decoder_plan(slices=30)), "Shards")
    assert rows[0] == ["layer", *(f"+{i}" for i in range(12)), "kept", "mean bits"]
    assert [r[0] for r in rows[5:]] == ["LM head 0-11", "LM head 12-23", "LM head 24-29", "all"]
    assert rows[1][7:13] == [""] * 6  # a layer's 6 shards, then blank
    assert rows[7][1:7] == ["4", "8"] * 3 and rows[7][7:13] == [""] * 6 and rows[7][-2] == "6/6"


def test_decoder_markdown_describes_both_timelines():
    plan = decoder_plan()
    md = render_markdown(plan)
    assert "## Timeline\n" not in md
    prefill = {r[0]: r[1] for r in table_rows(md, "Timeline: prefill")[1:]}
    decode = {r[0]: r[1] for r in table_rows(md, "Timeline: one decode step")[1:]}
    assert prefill["timeline end"] == f"{plan['predicted']['first_token_s'] * 1e3:.1f} ms"
    assert "of time to first token" in prefill["compute stall (compute waits for IO)"]
    assert "of per-token latency" in decode["compute stall (compute waits for IO)"]
    assert "the top panel of timeline.svg" in md and "the bottom panel of timeline.svg" in md
    assert len(re.findall(r"^IO      \|[=w.]+\|$", md, re.M)) == 2 and md.count("![timeline](timeline.svg)") == 1
    assert "target 1000 ms lies beyond the end" in md  # the prefill's first-token target
    # the comparison with greedy in the same terms
    rows = {r[0]: r[1:] for r in table_rows(md, "Compared with greedy")}
    assert {"time to first token", "per-token latency", "tokens/s", "IO per token", "resident across tokens"} <= set(rows)
    assert "latency" not in rows


def decoder_panels(svg: str) -> dict[str, ET.Element]:
    root = ET.fromstring(svg)
    return {g.get("id"): g for g in root.iter(f"{SVG}g") if g.get("class") == "panel"}


def test_decoder_svg_has_a_prefill_and_a_decode_panel():
    plan = decoder_plan()
    svg = render_svg(plan)
    panels = decoder_panels(svg)
    assert list(panels) == ["prefill", "decode"]
    for name, key in (("prefill", "prefill_timeline"), ("decode", "timeline")):
        rects = [r for r in panels[name].iter(f"{SVG}rect") if r.get("class", "").startswith("event")]
        assert len(rects) == len(plan[key]["events"])
        texts = [t.text for t in panels[name].iter(f"{SVG}text")]
        assert "time (ms)" in texts
    prefill_texts = " ".join(t.text for t in panels["prefill"].iter(f"{SVG}text"))
    decode_texts = " ".join(t.text for t in panels["decode"].iter(f"{SVG}text"))
    assert "prefill: the 64-token prompt" in prefill_texts and "time to first token" in prefill_texts
    assert "target 1000 ms →" in prefill_texts  # far beyond the prefill: named, not drawn
    assert "one decode step" in decode_texts and "tokens/s" in decode_texts and "target 20.0 ms" in decode_texts
    # each panel on its own axis, the decode panel below the prefill's
    lane_tops = [float(next(r for r in panels[n].iter(f"{SVG}rect") if r.get("class") == "lane").get("y")) for n in panels]
    assert lane_tops[0] < lane_tops[1] < float(ET.fromstring(svg).get("height"))
    assert "first token 1000 ms, per token 20.0 ms (50.0 tokens/s)" in svg


def test_decoder_svg_without_a_prefill_timeline_draws_the_decode_step():
    plan = decoder_plan()
    del plan["prefill_timeline"]
    assert list(decoder_panels(render_svg(plan))) == ["decode"]
    md = render_markdown(plan)
    assert "Timeline: prefill" not in md and "## Timeline: one decode step" in md
    plan["timeline"] = None
    assert NO_TIMELINE in render_svg(plan) and NO_TIMELINE in render_markdown(plan)


def test_encoder_reports_have_no_decoder_parts():
    plan = sample_plan()
    md, svg = render_markdown(plan), render_svg(plan)
    assert "tokens/s" not in md and "Resident set" not in md and "LM head" not in md and "KV cache" not in md
    assert not decoder_panels(svg) and md.split("\n")[2] == "## Targets"


def test_print_report_of_a_decoder():
    plan = decoder_plan()
    console = Console(record=True, width=160, file=io.StringIO())
    print_report(plan, console)
    text = console.export_text()
    for needle in ("tokens/s", "first token in", "resident across tokens: 3 layer shards and 1 of 3 LM head slices",
                   "Resident set", "LM head slices", "LM head", "KV cache", "Timeline: prefill", "Timeline: one decode step"):
        assert needle in text, needle
    assert text.count("IO      |") == 2


def decoder_device(store: Store) -> DeviceProfile:
    """`synthetic_device` with a decoder's figures: compute for the LM head's slices, and one
    token's kernels for every part (`sticc.profile.device.TokenCompute`)."""
    device = synthetic_device(store)
    if device.token is not None:
        return device
    compute = {**device.compute, Part.LM_HEAD: PartCompute((20e-6, 0.0, 0.3e-6, 0.0), (0.0, 0.0))}
    token = {part: TokenCompute((10e-6, 2e-6, 1e-9), 5e-6) for part in compute}
    return replace(device, compute=compute, token=token)


def decoder_importance(store: Store) -> ImportanceProfile:
    """Random losses for every shard and LM head slice, falling with bits; fp32 loses nothing."""
    rng = random.Random(0)
    loss = {}
    for position in store_shard_positions(store):
        weight = rng.uniform(0.2, 1.0) * 1e-2
        loss[position] = {0: weight, **{b: 0.0 if b == 32 else weight * 0.5 ** (b * rng.uniform(0.8, 1.2)) for b in store.bits}}
    return ImportanceProfile(store.store_id, "KL of next-token distributions", CalibrationRecord(source="synthetic"), loss)


def test_report_of_a_compiled_decoder_plan(tiny_decoders, tmp_path):
    """A tiny Llama planned for a first-token and a per-token target, as `sticc compile` writes it."""
    store = Store.open(tiny_decoders["llama"][1])
    plan, _ = plan_for_targets(store, decoder_device(store), decoder_importance(store), 8, 5e-3, 110_000,
                               solver="cpsat", time_limit_s=5, context=32, first_token_s=0.05)
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan.to_json()))
    data = read_plan_json(path)
    md = render_markdown(data)
    for needle in ("tokens/s", "time to first token", "KV cache", "LM head", "## Resident set", "IO per token",
                   "## Timeline: prefill", "## Timeline: one decode step"):
        assert needle in md, needle
    shards = table_rows(md, "Shards")
    assert [r[0] for r in shards[1:]] == ["0", "1", "LM head", "all"]
    assert shards[3][-2] == f"{store.lm_head_shards}/{store.lm_head_shards}"  # the slices cannot be dropped
    panels = decoder_panels(render_svg(data))
    assert list(panels) == ["prefill", "decode"]
    for name, key in (("prefill", "prefill_timeline"), ("decode", "timeline")):
        assert sum(1 for r in panels[name].iter(f"{SVG}rect") if r.get("class", "").startswith("event")) == len(data[key]["events"])
    console = Console(record=True, width=140, file=io.StringIO())
    print_report(data, console)
    text = console.export_text()
    assert "tokens/s" in text and "resident across tokens" in text


def test_encoder_plans_predict_every_input_length_up_to_the_truncation(tiny_bert_store):
    """plan.json's `by_length`: the same plan simulated at powers of two up to the runner's
    truncation length and the planned length; the planned row is the plan's own prediction."""
    store = Store.open(tiny_bert_store)
    plan = predict_given_plan(store, uniform_plan(store, 4, seq_len=24), synthetic_device(store), synthetic_importance(store))
    records = plan.findings.by_length
    assert store.text_tokens == 40 and report_lengths(24, 40) == (8, 16, 24, 32, 40)
    assert [r.seq_len for r in records] == [8, 16, 24, 32, 40]
    planned = next(r for r in records if r.seq_len == 24)
    assert (planned.latency_s, planned.planned_latency_s) == (plan.predicted.latency_s, plan.predicted.planned_latency_s)
    assert planned.peak_weight_bytes == plan.predicted.peak_weight_bytes
    assert all(a.latency_s <= b.latency_s and a.latency_s <= a.planned_latency_s for a, b in itertools.pairwise(records))
    assert records[-1].peak_weight_bytes >= planned.peak_weight_bytes == records[0].peak_weight_bytes
    data = json.loads(json.dumps(plan.to_json()))
    rows = table_rows(render_markdown(data), "Latency by input length")
    assert [row[0] for row in rows[1:]] == ["8", "16", "24 (planned)", "32", "40"]


# ----------------------------------------------------------------------------------------------
# Elastic runners: several plans in one runner (`alternatives`), deadline ranges, shed order
# ----------------------------------------------------------------------------------------------


def sample_shed_order(plan: dict) -> list[dict]:
    """A shed order for `plan`'s kept shards (made-up figures): per layer and part, chunks of three
    kept shards; a chunk holding a preloaded shard reads nothing (io_s 0); least loss per second
    saved first."""
    chunks = []
    key = 0
    for layer in sorted({s["layer"] for s in plan["shards"]}):
        kept = [s for s in plan["shards"] if s["layer"] == layer and s["bits"]]
        for part in ("attn", "ffn"):
            for first in range(0, len(kept), 3):
                members = kept[first:first + 3]
                streamed = not any(s["preload"] for s in members)
                chunks.append({
                    "key": key, "layer": layer, "part": part, "indices": [s["index"] for s in members],
                    "loss": 1e-3 * (1 + (layer * 7 + first + (part == "ffn")) % 5),
                    "io_s": 1.5e-3 if streamed else 0.0, "compute_s": 0.6e-3 if part == "ffn" else 0.4e-3,
                })
                key += 1
    return sorted(chunks, key=lambda c: (c["loss"] / (c["io_s"] + c["compute_s"]), c["key"]))


# planned-percentile latency (s) by input length: the 20 ms plan's dips at 32 tokens (the runner
# reads 15.0 ms up to where the interpolation climbs past it: non-decreasing) and has no 16 or 64
# (interpolated)
RUNNER_LENGTHS = {
    0.08: {8: 0.050, 16: 0.052, 32: 0.056, 64: 0.062, 128: 0.0712},
    0.04: {8: 0.030, 16: 0.031, 32: 0.033, 64: 0.035, 128: 0.038},
    0.02: {8: 0.015, 32: 0.014, 128: 0.0213},
}


def elastic_plan(latency_s: float, chunks: int, drop_every: int, loss: float) -> dict:
    """One plan of `runner_plan`: `sample_plan`'s preload set, dropping more shards the tighter it is."""
    plan = sample_plan(timeline=sample_timeline(chunks, load_s=1.5e-3, compute_s=0.9e-3))
    for shard in plan["shards"]:
        if not shard["preload"] and (shard["layer"] * 12 + shard["index"]) % drop_every == 0:
            shard["bits"] = 0
    planned = RUNNER_LENGTHS[latency_s]
    plan["targets"]["latency_s"] = latency_s
    plan["predicted"].update(latency_s=planned[128] / 1.2, planned_latency_s=planned[128], planned_percentile=90,
                             fidelity_loss=loss, io_bytes=chunks * 240_000)
    plan["by_length"] = [{"seq_len": n, "latency_s": s / 1.2, "planned_latency_s": s, "peak_weight_bytes": 3_900_000,
                          "compute_s": n * 1e-4} for n, s in planned.items()]
    plan["shed_order"] = sample_shed_order(plan)
    plan["device"].update(compute_threads=2, quantile_factor=1.2)  # as a compiled plan.json has it
    return plan


def runner_plan() -> dict:
    """An elastic runner's plan.json (made-up numbers): the 80ms plan, most faithful, with the 40ms
    and 20ms plans as its `alternatives`; one preload set, each plan its own by_length and shed order."""
    plan = elastic_plan(0.08, 48, 11, 0.0123)
    plan["alternatives"] = [elastic_plan(0.04, 24, 5, 0.031), elastic_plan(0.02, 12, 3, 0.074)]
    return plan


def test_runner_markdown_has_every_elastic_section():
    plan = runner_plan()
    md = render_markdown(plan)
    for heading in ("Plans of this runner", "Shared preload set", "Deadline ranges by input length",
                    "Shed order: 80ms plan", "Shed order: 40ms plan", "Shed order: 20ms plan",
                    "Timeline: 80ms plan", "Timeline: 40ms plan", "Timeline: 20ms plan"):
        assert f"\n## {heading}\n" in md, heading
    # the sections in order, each plan's timeline after the one before
    order = [md.index(f"## {h}\n") for h in ("Predicted, per call", "Plans of this runner", "Shared preload set",
                                            "Latency by input length", "Deadline ranges by input length", "Shards",
                                            "Shed order: 80ms plan", "Timeline: 80ms plan", "Timeline: 40ms plan",
                                            "Timeline: 20ms plan")]
    assert order == sorted(order)
    targets = dict(tuple(r) for r in table_rows(md, "Targets")[1:])
    assert targets["latency"] == "80.0 ms (this plan); alternatives 40.0 ms, 20.0 ms (see Plans of this runner)"
    assert len(re.findall(r"^IO      \|[=w.]+\|$", md, re.M)) == 3 and md.count("![timeline](timeline.svg)") == 1
    assert "target 20.0 ms" in md.split("## Timeline: 20ms plan\n")[1]
    assert "panel 3 of 3 in timeline.svg" in md


def test_runner_plans_table_side_by_side():
    plan = runner_plan()
    rows = table_rows(render_markdown(plan), "Plans of this runner")
    assert rows[0] == ["plan", "latency target", "median", "p90", "fidelity loss", "kept shards", "mean bits",
                       "IO per call", "deadlines served at 128 tokens"]
    assert [r[0] for r in rows[1:]] == ["80ms plan (most faithful)", "40ms plan", "20ms plan (fastest)"]
    assert [r[1] for r in rows[1:]] == ["80.0 ms", "40.0 ms", "20.0 ms"]
    assert [r[3] for r in rows[1:]] == ["71.2 ms", "38.0 ms", "21.3 ms"]
    assert [r[4] for r in rows[1:]] == ["0.0123", "0.031", "0.074"]
    for row, p in zip(rows[1:], runner_plans(plan), strict=True):
        bits = [s["bits"] for s in p["shards"]]
        assert row[5] == f"{sum(1 for b in bits if b)}/72"
    assert [r[7] for r in rows[1:]] == ["11.52 MB", "5.76 MB", "2.88 MB"]
    assert [r[8] for r in rows[1:]] == [">= 71.2 ms", "38.0-71.2 ms", "21.3-38.0 ms"]


def test_deadline_ranges_by_input_length():
    """Hand-computed, the 20 ms plan: at 16 tokens 15.0 ms (interpolated 14.7, but 8 tokens take
    15.0: non-decreasing), at 32 tokens 15.0 ms (by_length's 14.0), at 64 tokens 14.0 + (64 - 32) /
    96 x 7.3 = 16.4 ms (past 15.0 again)."""
    plan = runner_plan()
    md = render_markdown(plan)
    rows = table_rows(md, "Deadline ranges by input length")
    assert rows[0] == ["tokens", "shedding", "20ms plan", "40ms plan", "80ms plan"]
    assert rows[1:] == [
        ["8", "< 15.0 ms (20ms plan)", "15.0-30.0 ms", "30.0-50.0 ms", ">= 50.0 ms"],
        ["16", "< 15.0 ms (20ms plan)", "15.0-31.0 ms", "31.0-52.0 ms", ">= 52.0 ms"],
        ["32", "< 15.0 ms (20ms plan)", "15.0-33.0 ms", "33.0-56.0 ms", ">= 56.0 ms"],
        ["64", "< 16.4 ms (20ms plan)", "16.4-35.0 ms", "35.0-62.0 ms", ">= 62.0 ms"],
        ["128 (planned)", "< 21.3 ms (20ms plan)", "21.3-38.0 ms", "38.0-71.2 ms", ">= 71.2 ms"],
    ]
    line = "< 21.3 ms: 20ms plan, shedding | 21.3-38.0 ms: 20ms plan | 38.0-71.2 ms: 40ms plan | >= 71.2 ms: 80ms plan"
    assert deadline_line(plan, 128) == line and f"At 128 tokens: {line}." in md
    # a batch counts its tokens: 2 texts of 48 tokens read as 96 tokens, between 64 and 128
    ranges = deadline_ranges(plan, 96)
    assert [(r.plan, r.sheds) for r in ranges] == [(2, True), (2, False), (1, False), (0, False)]
    assert ranges[0].high_s == pytest.approx(0.014 + (96 - 32) / 96 * 0.0073)
    assert ranges[-1].low_s == pytest.approx((0.062 + 0.0712) / 2) and ranges[-1].high_s is None
    assert deadline_ranges(plan, 4)[0].high_s == 0.015  # flat before the first length
    assert deadline_ranges(plan, 256)[-1].low_s == pytest.approx(0.0712 + 128 / 64 * 0.0092)  # linear past the last two


def test_the_fastest_plan_sheds_even_where_another_is_quicker():
    """Below every plan's latency the call runs the last (tightest target's) plan, as the runner does;
    where it is predicted slower than a more faithful plan it serves no deadline of its own."""
    plan = runner_plan()
    for record in plan["alternatives"][1]["by_length"]:
        record["planned_latency_s"] = 0.04
    assert deadline_line(plan, 128) == ("< 38.0 ms: 20ms plan, shedding | 38.0-71.2 ms: 40ms plan | "
                                        ">= 71.2 ms: 80ms plan")


def test_a_plan_slower_than_a_more_faithful_one_serves_no_deadline():
    """The 40 ms plan predicted slower than the 80 ms one at 8 tokens: non-decreasing in length it
    stays at 55 ms, never picked at 8 tokens, and picked from 55 ms at 128."""
    plan = runner_plan()
    plan["alternatives"][0]["by_length"][0]["planned_latency_s"] = 0.055
    rows = {r[0]: r[1:] for r in table_rows(render_markdown(plan), "Deadline ranges by input length")}
    assert rows["8"] == ["< 15.0 ms (20ms plan)", "15.0-50.0 ms", "never", ">= 50.0 ms"]
    assert rows["128 (planned)"] == ["< 21.3 ms (20ms plan)", "21.3-55.0 ms", "55.0-71.2 ms", ">= 71.2 ms"]


def test_runner_shares_one_preload_set():
    plan = runner_plan()
    preloaded = [s for s in plan["shards"] if s["preload"]]
    rows = dict(tuple(r) for r in table_rows(render_markdown(plan), "Shared preload set")[1:])
    assert rows == {"preloaded shards": f"{len(preloaded)} ({len(preloaded)}x 8-bit)", "bytes": "250.0 kB",
                    "pool's pinned region": "400.0 kB (with the headers)", "shared by": "every plan (3)"}
    plan["alternatives"][1]["shards"][1]["preload"] = True
    rows = dict(tuple(r) for r in table_rows(render_markdown(plan), "Shared preload set")[1:])
    assert rows["shared by"] == "not every plan: 20ms plan differ"


def test_shed_order_lists_the_first_chunks_and_the_totals():
    plan = sample_plan()
    plan["shed_order"] = [
        {"key": 7, "layer": 3, "part": "ffn", "indices": [0, 1, 2], "loss": 0.001, "io_s": 0.0, "compute_s": 0.5e-3},
        {"key": 2, "layer": 1, "part": "attn", "indices": [4, 6], "loss": 0.002, "io_s": 1.5e-3, "compute_s": 0.5e-3},
        {"key": 5, "layer": 2, "part": "attn", "indices": [9], "loss": 0.004, "io_s": 1.5e-3, "compute_s": 0.5e-3},
    ]
    md = render_markdown(plan)
    rows = table_rows(md, "Shed order")
    assert rows[0] == ["order", "chunk", "loss", "IO ms", "compute ms", "loss per ms saved", "cumulative ms saved",
                       "cumulative loss"]
    assert rows[1:] == [
        ["1", "L3 ffn 0-2", "0.001", "0", "0.500", "0.002", "0.500", "0.001"],
        ["2", "L1 attn 4,6", "0.002", "1.50", "0.500", "0.001", "2.50", "0.003"],
        ["3", "L2 attn 9", "0.004", "1.50", "0.500", "0.002", "4.50", "0.007"],
    ]
    assert "All 3 chunks: 4.50 ms saved (IO 3.00 ms, compute 1.50 ms) for a fidelity loss of 0.007." in md
    assert "a chunk already loaded saves only its compute" in md
    # a single plan that sheds: one deadline line, at or above its prediction it runs whole
    assert "## Deadline ranges\n" in md
    assert f"At 128 tokens a deadline >= {render_ms(plan['predicted']['latency_s'])} (the plan's predicted median)" in md
    assert table_rows(md, "Deadline ranges")[0] == ["tokens", "shedding", "80ms plan"]


def render_ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


def test_a_long_shed_order_shows_its_first_twelve():
    plan = runner_plan()
    order = plan["shed_order"]
    assert len(order) > 12
    rows = table_rows(render_markdown(plan), "Shed order: 80ms plan")
    assert [r[0] for r in rows[1:]] == [*map(str, range(1, 13)), "..."]
    assert rows[-1][1] == f"{len(order) - 12} more"
    saved_ms = sum(c["io_s"] + c["compute_s"] for c in order) * 1e3
    assert float(rows[-1][6]) == pytest.approx(saved_ms, rel=1e-2)
    assert float(rows[-1][7]) == pytest.approx(sum(c["loss"] for c in order), rel=1e-3)
    assert float(rows[12][6]) == pytest.approx(sum(c["io_s"] + c["compute_s"] for c in order[:12]) * 1e3, rel=1e-2)
    per_ms = [float(r[5]) for r in rows[1:13]]
    assert per_ms == sorted(per_ms)  # least loss per ms saved first


def test_single_plan_with_by_length_has_deadline_ranges_per_length():
    plan = runner_plan()
    del plan["alternatives"]
    md = render_markdown(plan)
    assert "Plans of this runner" not in md and "Shared preload set" not in md and "## Shed order\n" in md
    rows = table_rows(md, "Deadline ranges by input length")
    assert rows[0] == ["tokens", "shedding", "80ms plan"]
    assert rows[-1] == ["128 (planned)", "< 71.2 ms (80ms plan)", ">= 71.2 ms"]
    assert "At 128 tokens a deadline >= 71.2 ms (the plan's predicted p90) runs the whole plan" in md
    assert table_rows(md, "Latency by input length")[0] == ["tokens", "median", "p90", "compute lane", "peak weight memory"]
    assert table_rows(md, "Latency by input length")[-1][3] == "12.8 ms"


def test_old_plans_have_no_elastic_sections():
    md = render_markdown(sample_plan())
    for needle in ("Plans of this runner", "Deadline ranges", "Shared preload set", "Shed order", "compute lane"):
        assert needle not in md, needle
    plan = runner_plan()
    del plan["alternatives"], plan["shed_order"]
    for record in plan["by_length"]:
        record["compute_s"] = 0.0  # a plan.json from before compute_s, read back
    md = render_markdown(plan)
    assert "Deadline ranges" not in md and "compute lane" not in md


def test_print_report_of_a_runner():
    console = Console(record=True, width=220, file=io.StringIO())
    print_report(runner_plan(), console)
    text = console.export_text()
    for needle in ("Plans of this runner", "80ms plan (most faithful)", "20ms plan (fastest)", "Shared preload set",
                   "every plan (3)", "Deadline ranges by input length", "< 21.3 ms (20ms plan)", "38.0-71.2 ms",
                   "At 128 tokens: < 21.3 ms: 20ms plan, shedding", "Shed order: 20ms plan", "L0 attn",
                   "Timeline: 40ms plan", "Timeline: 20ms plan"):
        assert needle in text, needle
    assert text.count("IO      |") == 3


def test_runner_svg_has_one_panel_per_plan():
    plan = runner_plan()
    svg = render_svg(plan)
    panels = decoder_panels(svg)
    assert list(panels) == ["call", "call-1", "call-2"]
    for (name, panel), p in zip(panels.items(), runner_plans(plan), strict=True):
        rects = [r for r in panel.iter(f"{SVG}rect") if r.get("class", "").startswith("event")]
        assert len(rects) == len(p["timeline"]["events"]), name
        texts = " ".join(t.text for t in panel.iter(f"{SVG}text"))
        target = f"{p['targets']['latency_s'] * 1e3:.1f} ms"
        assert f"latency target {target}" in texts and f"target {target}" in texts
        assert f"{p['targets']['latency_s'] * 1e3:g}ms plan" in texts and "time (ms)" in texts
    lane_tops = [float(next(r for r in g.iter(f"{SVG}rect") if r.get("class") == "lane").get("y")) for g in panels.values()]
    assert lane_tops == sorted(lane_tops) and lane_tops[-1] < float(ET.fromstring(svg).get("height"))
    assert "latency 80.0 ms, 40.0 ms, 20.0 ms (3 plans, one runner)" in svg
    plan["alternatives"][1]["timeline"] = None
    assert NO_TIMELINE in render_svg(plan)


def test_runner_plan_json_reads_back(tmp_path):
    """`sticc report` reads an elastic runner's plan.json: its alternatives and shed orders survive."""
    path = tmp_path / "plan.json"
    plan = runner_plan()
    path.write_text(json.dumps(plan))
    data = read_plan_json(path)
    assert data["shed_order"] == plan["shed_order"] and data["alternatives"] == plan["alternatives"]
    md, expected = render_markdown(data), render_markdown(plan)
    for heading in ("Plans of this runner", "Shared preload set", "Latency by input length", "Deadline ranges by input length",
                    "Shed order: 80ms plan", "Shed order: 20ms plan", "Timeline: 20ms plan"):
        assert table_rows(md, heading) == table_rows(expected, heading), heading
