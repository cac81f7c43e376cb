"""The `sticc` command line (typer). Every user error is one line on stderr and a non-zero exit."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from typer import Abort, Exit

try:  # recent typer vendors click and raises its own usage errors; older releases use click's
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - depends on the installed typer
    from click.exceptions import ClickException
from rich.console import Console

from sticc.base.errors import UserError
from sticc.base.progress import progress_bar, stderr
from sticc.base.schema import QUANTITIES, parse_flag
from sticc.runtime.core import StoreError

app = typer.Typer(
    add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
    help="sticc: compile transformer inference into a runner that streams quantized shards.",
)
# integer flags lie in [min, MAX_FLAG_INT] (click's ranges): no flag needs more, none overflows
MAX_FLAG_INT = 1 << 20


def _quantity(text: str | None, unit: str, flag: str) -> float | None:
    """A quantity flag ("40ms", "2MB", "200MB/s") in base units, validated (`sticc.base.schema.QUANTITIES`)."""
    if text is None:
        return None
    return parse_flag(QUANTITIES[unit], text, flag)


def _bits_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise UserError(f"--bits {text!r} must be a comma-separated list of integers, e.g. 2,4,8,32") from None


@app.command()
def shard(
    model_dir: Annotated[Path, typer.Argument(help="HF checkpoint directory (config.json + safetensors) or a GGUF file")],
    out: Annotated[Path, typer.Option("-o", "--out", help="store directory to write")],
    bits: Annotated[str, typer.Option(help="bitwidths to store every shard at")] = "2,3,4,5,6,8,16,32",
    shards_per_layer: Annotated[int | None, typer.Option(min=1, max=MAX_FLAG_INT, help="shards per layer (default: one per head)")] = None,
    group_size: Annotated[int, typer.Option(min=8, max=MAX_FLAG_INT, help="weights per quantization group")] = 64,
    no_sentence_pipeline: Annotated[bool, typer.Option(
        "--no-sentence-pipeline", help="ignore the checkpoint's sentence-transformers modules (runners mean-pool, no normalization)",
    )] = False,
) -> None:
    """Cut a checkpoint into shards, quantize each at every bitwidth, and write a store."""
    from sticc.model.store import write_store

    store = write_store(model_dir, out, _bits_list(bits), shards_per_layer, group_size, progress_bar, not no_sentence_pipeline)
    size = store.data_path.stat().st_size
    print(f"wrote {out}: {store.spec.name}, {store.spec.layers} layers x {store.shards_per_layer} shards, "
          f"bits {list(store.bits)}, {size / 1e6:.1f} MB")
    if store.sentence_pipeline is not None:
        print(f"sentence-transformers pipeline: {store.sentence_pipeline.describe()}")


def _duration(text: str | None, flag: str) -> float | None:
    value = _quantity(text, "s", flag)
    if value is not None and value <= 0:
        raise UserError(f"{flag} must be positive")
    return value


def _device_profile(store, path: Path | None, seq_len: int, io_bandwidth: float | None = None, context: int | None = None):
    """The profile at `path`, or this machine's, measured and cached on first use (a decoder's at
    prompts of `seq_len` tokens and up to `context` cached positions)."""
    from sticc.bench.lane_fit import cached_device
    from sticc.profile.device import DeviceProfile

    if path is not None:
        profile = DeviceProfile.read(path)
        profile.check_store(store, str(path))
        if store.spec.is_decoder and profile.token is None:
            raise UserError(f"{path} has no one-token figures: run `sticc profile device` on the decoder's store")
        return profile
    profile, cached, hit = cached_device(store, seq_len, io_bandwidth, progress_bar, context)
    stderr.print(f"device profile: {'cached' if hit else 'measured'} {cached}")
    return profile


def _importance_profile(store, path: Path | None):
    from sticc.profile.importance import ImportanceProfile
    from sticc.profile.measure_importance import cached_importance

    if path is not None:
        profile = ImportanceProfile.read(path)
        profile.check_store(store, str(path))
        return profile
    profile, cached, hit = cached_importance(store, None, progress_bar)
    stderr.print(f"importance profile: {'cached' if hit else 'measured'} {cached}")
    return profile


@app.command(name="compile")
def compile_(
    store_dir: Annotated[Path, typer.Argument(help="a store written by `sticc shard`")],
    out: Annotated[Path, typer.Option("-o", "--out", help="output directory: runner.py, plan.json, report.md, timeline.svg")],
    latency: Annotated[str | None, typer.Option(help="encoders: latency target per call, e.g. 40ms; several (20ms,40ms,80ms) make one elastic runner")] = None,
    token_latency: Annotated[str | None, typer.Option(help="decoders: per-token latency target while generating, e.g. 150ms")] = None,
    first_token: Annotated[str | None, typer.Option(help="decoders: time-to-first-token target at the prompt length, e.g. 1s")] = None,
    memory: Annotated[str | None, typer.Option(help="weight memory budget the runner enforces, e.g. 2MB")] = None,
    kv_memory: Annotated[str | None, typer.Option(help="decoders: budget of the KV cache for --context positions, apart from --memory, e.g. 24MB")] = None,
    device: Annotated[Path | None, typer.Option(help="device profile (default: this machine's, measured and cached)")] = None,
    importance: Annotated[Path | None, typer.Option(help="importance profile (default: measured and cached)")] = None,
    solver: Annotated[str, typer.Option(help="cpsat (exact) or greedy (STI's heuristic)")] = "cpsat",
    seq_len: Annotated[int | None, typer.Option(min=1, max=MAX_FLAG_INT, help="encoders: sequence length the plan is made for (default 128)")] = None,
    prompt_len: Annotated[int | None, typer.Option(min=1, max=MAX_FLAG_INT, help="decoders: prompt length the first token is planned for (default 64)")] = None,
    context: Annotated[int | None, typer.Option(min=1, max=MAX_FLAG_INT, help="decoders: positions the KV cache holds, prompt and generated tokens (default 512)")] = None,
    time_limit: Annotated[str, typer.Option(help="planning time limit (the greedy plan and CP-SAT together), e.g. 10s")] = "10s",
    bits: Annotated[int | None, typer.Option(min=1, max=32, help="no solver: every shard at this bitwidth, nothing preloaded")] = None,
    plan: Annotated[Path | None, typer.Option(help="no solver: a hand-written plan JSON (see docs/plan-schema.md)")] = None,
    shards_per_chunk: Annotated[
        int | None, typer.Option(min=1, max=MAX_FLAG_INT, help="kept shards loaded and computed together (default: a quarter of a layer; fewer need less memory)")
    ] = None,
) -> None:
    """Plan for a latency target and memory budget (or take a given plan) and generate its runner."""
    from codegen import emit_runner, write_output
    from solvers.uniform import uniform_plan
    from sticc.compile.elastic import plan_elastic
    from sticc.compile.planner import SOLVERS, plan_for_targets, predict_given_plan
    from sticc.compile.report import render_markdown
    from sticc.compile.timeline_svg import render_svg
    from sticc.ir.plan import DEFAULT_CONTEXT, DEFAULT_PROMPT_LEN, DEFAULT_SEQ_LEN, check_kv_budget, read_plan
    from sticc.model.store import Store

    alternatives: list = []  # an elastic runner's faster plans
    given = [name for name, value in (("--bits", bits), ("--plan", plan)) if value is not None]
    timing = [name for name, value in (("--latency", latency), ("--token-latency", token_latency), ("--first-token", first_token)) if value]
    if len(given) > 1:
        raise UserError("give at most one of --bits N or --plan FILE")
    if given and timing:
        raise UserError(f"{timing[0]} asks the solver for a plan; {given[0]} gives one: use one or the other")
    if not given and not timing and memory is None:
        raise UserError("give targets (--latency, or --token-latency/--first-token, and/or --memory) for the solver, or --bits N, or --plan FILE")
    if solver not in SOLVERS:
        raise UserError(f"--solver {solver!r}: choose one of {', '.join(SOLVERS)}")
    limit_s = _duration(time_limit, "--time-limit")
    memory_bytes = _quantity(memory, "B", "--memory")
    memory_bytes = None if memory_bytes is None else int(memory_bytes)
    kv_memory_bytes = _quantity(kv_memory, "B", "--kv-memory")
    kv_memory_bytes = None if kv_memory_bytes is None else int(kv_memory_bytes)
    store = Store.open(store_dir)
    decoder = store.spec.is_decoder
    wrong = [flag for flag, value, for_decoders in (
        ("--latency", latency, False), ("--seq-len", seq_len, False), ("--token-latency", token_latency, True),
        ("--first-token", first_token, True), ("--prompt-len", prompt_len, True), ("--context", context, True),
        ("--kv-memory", kv_memory, True),
    ) if value is not None and for_decoders != decoder]
    if wrong:
        kind = f"a {store.spec.family} decoder" if decoder else "an encoder"
        instead = " (decoders: --token-latency, --first-token, --prompt-len)" if decoder else ""
        raise UserError(f"{wrong[0]} does not apply to {store.spec.name}, {kind}{instead}")
    latencies_s = _list(latency, "s", "--latency") if latency is not None and "," in latency else None
    if latencies_s is not None and given:
        raise UserError(f"several --latency targets ask the solver for plans; {given[0]} gives one")
    latency_s = None if latencies_s is not None else _duration(token_latency if decoder else latency, "--token-latency" if decoder else "--latency")
    first_token_s = _duration(first_token, "--first-token")
    seq_len = prompt_len if decoder else seq_len
    if given:
        if bits is not None:
            the_plan = uniform_plan(store, bits, seq_len, memory_bytes, shards_per_chunk, context)
        else:
            the_plan = read_plan(store, plan, seq_len, memory_bytes, shards_per_chunk, context)
        if kv_memory_bytes is not None:
            the_plan = replace(the_plan, targets=replace(the_plan.targets, kv_memory_bytes=kv_memory_bytes))
            check_kv_budget(the_plan.targets, the_plan.predicted.kv_cache_bytes)
        if device is not None:  # predictions need a device; a given plan is never measured for
            profile = _device_profile(store, device, the_plan.targets.seq_len, context=the_plan.targets.context)
            the_plan = predict_given_plan(store, the_plan, profile, _importance_profile(store, importance) if importance else None)
    else:
        seq_len = seq_len or min(DEFAULT_PROMPT_LEN if decoder else DEFAULT_SEQ_LEN, store.spec.max_positions)
        if decoder:
            context = context or min(DEFAULT_CONTEXT, store.spec.max_positions)
        profile = _device_profile(store, device, seq_len, context=context)
        losses = _importance_profile(store, importance)
        if latencies_s is not None:
            def solved(done: int, total: int) -> None:
                stderr.print(f"elastic runner: {done}/{total} plans solved")

            the_plan, *alternatives = plan_elastic(
                store, profile, losses, seq_len, latencies_s, memory_bytes, solver, limit_s, shards_per_chunk, solved,
            )
        else:
            the_plan, _ = plan_for_targets(
                store, profile, losses, seq_len, latency_s, memory_bytes, solver, limit_s, shards_per_chunk,
                context=context, first_token_s=first_token_s, kv_memory_bytes=kv_memory_bytes,
            )
        # the profiles the plan was made from, beside it: `sticc bench` plans its baselines from them
        profiles = {"device.json": profile.to_json(), "importance.json": losses.to_json()}
    source = emit_runner(store, the_plan, store_dir, tuple(alternatives))
    reports = {"report.md": render_markdown(source.plan_json), "timeline.svg": render_svg(source.plan_json)}
    if not given:
        reports.update({name: json.dumps(data, indent=1, sort_keys=True) + "\n" for name, data in profiles.items()})
    runner = write_output(out, source, reports)
    _print_summary(runner, source.plan_hash, the_plan)
    for plan in alternatives:
        _print_summary(runner, source.plan_hash, plan, also=True)


def _encoders_only(store, what: str) -> None:
    """Refuse a decoder store for an encoder-only command (`sticc sweep`)."""
    if store.spec.is_decoder:
        raise UserError(
            f"{what} is for encoders; {store.spec.name} is a {store.spec.family} decoder: compile it for targets "
            f"(--token-latency, --first-token, --memory) and `sticc bench` its runner"
        )


def _print_summary(runner: Path, plan_hash: str, plan, also: bool = False) -> None:
    """One line on a compiled plan; `also`: a faster plan of the same (elastic) runner."""
    predicted = plan.predicted
    io = f"IO {predicted.io_bytes / 1e6:.2f} MB/call"
    if predicted.io_bytes_per_token is not None:
        io = (f"IO {predicted.io_bytes / 1e6:.2f} MB/prefill, {predicted.io_bytes_per_token / 1e6:.2f} MB/token, "
              f"KV cache {predicted.kv_cache_bytes / 1e6:.2f} MB for {plan.targets.context} positions")
    solver = f"{plan.solver.name} {plan.solver.status}"
    head = f"  and its {plan.targets.latency_s * 1e3:g} ms plan ({solver})" if also else f"wrote {runner} (plan {plan_hash[:12]}, {solver})"
    line = f"{head}: pool budget {plan.memory_budget_bytes / 1e6:.2f} MB, {io}, preload {predicted.preload_bytes / 1e6:.2f} MB"
    if predicted.latency_s is not None and predicted.first_token_s is not None:
        line += (f", predicted {predicted.latency_s * 1e3:.1f} ms/token ({1 / predicted.latency_s:.1f} tokens/s), "
                 f"first token {predicted.first_token_s * 1e3:.0f} ms")
    elif predicted.latency_s is not None:
        line += f", predicted {predicted.latency_s * 1e3:.1f} ms"
    if predicted.fidelity_loss is not None:
        line += f", fidelity loss {predicted.fidelity_loss:.4f}"
    if plan.solver.gap is not None:
        line += f", gap {plan.solver.gap * 100:.2f}%"
    print(line)


def _names(text: str, flag: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [name for name in names if name not in allowed]
    if unknown:
        raise UserError(f"{flag}: unknown {unknown[0]!r}; choose from {', '.join(allowed)}")
    return names


@app.command()
def bench(
    out: Annotated[Path, typer.Argument(help="a directory written by `sticc compile` (runner.py, plan.json)")],
    store: Annotated[Path | None, typer.Option(help="the store (default: the one the runner was compiled for)")] = None,
    runs: Annotated[int | None, typer.Option(min=1, max=10_000, help="timed fresh-process runs per case (default 7; decoders 3)")] = None,
    cold: Annotated[bool, typer.Option("--cold/--warm", help="evict the files each case reads before its call")] = True,
    io_bandwidth: Annotated[str | None, typer.Option(help="emulate slower flash for every case, e.g. 200MB/s (default: the plan's)")] = None,
    baselines: Annotated[str | None, typer.Option(help="cases beside the runner (default: encoders preload,load-exec,layerwise,greedy,hf,hf-offload; decoders preload,layerwise,hf,hf-offload,llama.cpp)")] = None,
    tokens: Annotated[int, typer.Option(min=2, max=MAX_FLAG_INT, help="decoders: tokens generated per timed run (the first, then one-token calls)")] = 32,
    json_path: Annotated[Path | None, typer.Option("--json", help="also write the results as JSON here (decoders: a .md table and an .svg figure beside it)")] = None,
) -> None:
    """Run the compiled runner beside the baselines, each in fresh processes: latency, memory, IO, fidelity
    (decoders: time to first token, per-token latency, perplexity, greedy agreement)."""
    from sticc.base.jsonfile import write_json_atomic
    from sticc.bench.decoder_suite import (
        DECODER_BASELINES,
        bench_decoder,
        is_decoder_output,
        print_decoder_table,
        write_decoder_results,
    )
    from sticc.bench.suite import BASELINES, Settings, bench, print_table, to_json

    decoder = is_decoder_output(out, store)
    settings = Settings(runs or (3 if decoder else 7), cold, _quantity(io_bandwidth, "B/s", "--io-bandwidth"))
    if decoder:
        names = _names(baselines or "preload,layerwise,hf,hf-offload,llama.cpp", "--baselines", DECODER_BASELINES)
        result = bench_decoder(out, store, settings, names, progress_bar, new_tokens=tokens)
        print_decoder_table(result, _wide_console())
        if json_path is not None:
            write_decoder_results(result, json_path)
        return
    names = _names(baselines or "preload,load-exec,layerwise,greedy,hf,hf-offload", "--baselines", BASELINES)
    subject, settings, results = bench(out, store, settings, names, progress_bar)
    print_table(subject, settings, results, _wide_console())
    if json_path is not None:
        write_json_atomic(json_path, to_json(subject, settings, results))


def _list(text: str, unit: str, flag: str) -> list[float]:
    values = [_quantity(part.strip(), unit, flag) for part in text.split(",") if part.strip()]
    if not values or any(value <= 0 for value in values):
        raise UserError(f"{flag} must be a comma-separated list of positive quantities, e.g. 20ms,40ms")
    return values


@app.command()
def sweep(
    store_dir: Annotated[Path, typer.Argument(help="a store written by `sticc shard`")],
    latency: Annotated[str, typer.Option(help="latency targets, e.g. 20ms,40ms,80ms")],
    memory: Annotated[str, typer.Option(help="memory budgets, e.g. 1MB,4MB,16MB")],
    out: Annotated[Path, typer.Option("-o", "--out", help="directory for sweep.json and the plots")] = Path("sweep"),
    runs: Annotated[int, typer.Option(min=1, max=10_000, help="timed fresh-process runs per case")] = 3,
    cold: Annotated[bool, typer.Option("--cold/--warm", help="evict the files each case reads before its call")] = True,
    io_bandwidth: Annotated[str | None, typer.Option(help="emulate slower flash for every case, e.g. 200MB/s")] = None,
    baselines: Annotated[str, typer.Option(help="plan-independent cases beside the plans")] = "preload,load-exec,layerwise,hf,hf-offload",
    fidelity: Annotated[float, typer.Option(min=-1.0, max=1.0, help="mean cosine a point needs for the memory-vs-latency plot")] = 0.99,
    device: Annotated[Path | None, typer.Option(help="device profile (default: this machine's, measured and cached)")] = None,
    importance: Annotated[Path | None, typer.Option(help="importance profile (default: measured and cached)")] = None,
    seq_len: Annotated[int, typer.Option(min=1, max=MAX_FLAG_INT, help="sequence length the plans are made for and timed at")] = 128,
    time_limit: Annotated[str, typer.Option(help="CP-SAT time limit per plan")] = "10s",
) -> None:
    """Plan a grid of latency targets x memory budgets with CP-SAT and greedy, run them beside the baselines, plot."""
    from rich.table import Table

    from sticc.bench.suite import BASELINES, Settings
    from sticc.bench.sweep import sweep as run_sweep
    from sticc.model.store import Store

    if runs < 1:
        raise UserError("--runs must be at least 1")
    cap = _quantity(io_bandwidth, "B/s", "--io-bandwidth")
    latencies_s, memories = _list(latency, "s", "--latency"), [int(m) for m in _list(memory, "B", "--memory")]
    names = _names(baselines, "--baselines", tuple(name for name in BASELINES if name != "greedy"))  # greedy: a line of plans
    store = Store.open(store_dir)
    _encoders_only(store, "`sticc sweep`")
    profile = _device_profile(store, device, seq_len, cap)
    settings = Settings(runs, cold, cap if cap is not None else profile.emulated_bandwidth_Bps)
    subject, points = run_sweep(
        store_dir, latencies_s, memories, settings, names, profile, _importance_profile(store, importance), seq_len,
        _duration(time_limit, "--time-limit"), out, progress_bar, fidelity,
    )
    table = Table(title=f"sweep of {subject.model}: {len(points)} points, written to {out}")
    for column in ("case", "latency target", "memory", "latency ms med", "peak weight MB", "cosine mean", "note"):
        table.add_column(column)
    for p in points:
        r = p.result
        table.add_row(
            p.case, f"{p.latency_target_s * 1e3:g} ms" if p.latency_target_s else "",
            f"{p.memory_target_bytes / 1e6:g} MB" if p.memory_target_bytes else "",
            f"{r.latency_s.median * 1e3:.1f}" if r else "", f"{r.peak_weight_bytes / 1e6:.2f}" if r else "",
            f"{r.cosine_mean:.4f}" if r and r.cosine_mean is not None else "", p.note[:60],
        )
    _wide_console().print(table)


def _wide_console() -> Console:
    """The terminal, or 160 columns when output is not a terminal (tables stay one line a row)."""
    console = Console()
    return console if console.is_terminal else Console(width=160)


profile_app = typer.Typer(no_args_is_help=True, help="Measure the device and importance profiles a plan is made from.")
app.add_typer(profile_app, name="profile")


@profile_app.command(name="device")
def profile_device(
    store_dir: Annotated[Path, typer.Argument(help="a store written by `sticc shard`")],
    out: Annotated[Path, typer.Option("-o", "--out", help="device profile JSON to write")],
    seq_len: Annotated[int | None, typer.Option(min=1, max=MAX_FLAG_INT, help="sequence length to measure around (default 128; decoders: the prompt length, default 64)")] = None,
    context: Annotated[int | None, typer.Option(min=1, max=MAX_FLAG_INT, help="decoders: the most cached positions one-token calls are measured at (default 512)")] = None,
    io_bandwidth: Annotated[str | None, typer.Option(help="emulate slower flash, e.g. 200MB/s: recorded, and enforced by runners")] = None,
) -> None:
    """Measure this machine: cold reads, dequantization, compute per chunk (a decoder's prompts and
    one-token calls), embedding, and the lanes fitted to traced calls."""
    from sticc.bench import lane_fit
    from sticc.ir.plan import DEFAULT_CONTEXT, DEFAULT_PROMPT_LEN, DEFAULT_SEQ_LEN
    from sticc.model.store import Store

    cap = _quantity(io_bandwidth, "B/s", "--io-bandwidth")
    store = Store.open(store_dir)
    decoder = store.spec.is_decoder
    if context is not None and not decoder:
        raise UserError(f"--context is for decoders; {store.spec.name} is an encoder")
    seq_len = seq_len or min(DEFAULT_PROMPT_LEN if decoder else DEFAULT_SEQ_LEN, store.spec.max_positions)
    context = (context or min(DEFAULT_CONTEXT, store.spec.max_positions)) if decoder else None
    positions = context or store.spec.max_positions
    if not 1 <= seq_len <= positions:
        raise UserError(f"--seq-len {seq_len} must lie in [1, {positions}]")
    if context is not None and context > store.spec.max_positions:
        raise UserError(f"--context {context} must lie in [1, {store.spec.max_positions}] (the model's positions)")
    profile = lane_fit.profile_device(store, seq_len, cap, progress_bar, context)
    profile.write(out)
    fit = profile.fit_error
    print(f"wrote {out}: reads {profile.read_bandwidth_Bps / 1e6:.0f} MB/s + {profile.request_latency_s * 1e6:.0f} us/request"
          + (f" (runners capped to {cap / 1e6:.0f} MB/s, emulated)" if cap else "")
          + f", {profile.compute_threads} compute threads"
          + (f", compute fit error max {fit.max_rel * 100:.1f}% rms {fit.rms_rel * 100:.1f}% over {fit.points} points" if fit else "")
          + _lane_fit_summary(profile.lane_fit))


def _lane_fit_summary(fit) -> str:
    if fit is None:
        return ""
    quantiles = fit.latency_quantiles
    spread = f", p90/p50 {quantiles[90] / quantiles[50]:.2f}" if 90 in quantiles and 50 in quantiles else ""
    return (f"; lanes fitted to {fit.calls} traced calls of {fit.plans} plans: reads x{fit.read_scale:.2f}, "
            f"decode x{min(fit.decode_scales.values(), default=1):.2f}-{max(fit.decode_scales.values(), default=1):.2f}, "
            f"compute x{fit.compute_scale:.2f}, joins x{fit.join_scale:.2f}, "
            f"{fit.chunk_overhead_s * 1e6:.0f} us per chunk, "
            f"embedding x{fit.embed_scale:.2f}, interference {fit.interference:.2f} s/s of IO, "
            f"latency error {fit.latency_error_before * 100:.0f}% -> "
            f"{fit.latency_error_after * 100:.0f}%{spread}")


@profile_app.command(name="importance")
def profile_importance(
    store_dir: Annotated[Path, typer.Argument(help="a store written by `sticc shard`")],
    out: Annotated[Path, typer.Option("-o", "--out", help="importance profile JSON to write")],
    calib: Annotated[Path | None, typer.Option(help="calibration texts, one per line (default: built-in sentences)")] = None,
) -> None:
    """Measure every shard version's loss of fidelity against fp32 (cached by store)."""
    from sticc.model.store import Store
    from sticc.profile.measure_importance import cached_importance

    store = Store.open(store_dir)
    profile, cached, hit = cached_importance(store, calib, progress_bar)
    profile.write(out)
    additivity = profile.additivity
    line = f"wrote {out} ({'from cache ' + str(cached) if hit else 'measured'}): {profile.metric}"
    if additivity.plans:
        pearson = float("nan") if additivity.pearson is None else additivity.pearson
        median = float("nan") if additivity.median_ratio is None else additivity.median_ratio
        line += (f"; additive model vs {additivity.plans} random plans: pearson {pearson:.3f}, "
                 f"median measured/predicted {median:.2f}")
    print(line)


@app.command()
def report(plan_path: Annotated[Path, typer.Argument(help="a plan.json written by `sticc compile`")]) -> None:
    """Show a compiled plan's report in the terminal."""
    from rich.console import Console

    from sticc.compile.plan_view import read_plan_json
    from sticc.compile.report import print_report

    print_report(read_plan_json(plan_path), Console())


@app.command()
def verify(store_dir: Annotated[Path, typer.Argument(help="a store written by `sticc shard`")]) -> None:
    """Check every blob of a store against its checksum."""
    from sticc.model.store import Store, verify_store

    store = Store.open(store_dir)
    problems = verify_store(store, progress_bar)
    if problems:
        for problem in problems[:20]:  # the findings are the command's output; the failure is one line
            print(f"corrupt: {problem}")
        more = " (first 20 shown)" if len(problems) > 20 else ""
        raise UserError(f"{store_dir}: {len(problems)} corrupt blobs{more}")
    print(f"{store_dir}: {len(store.versions)} shard versions, headers and embedding rows all match their checksums")


INTERNAL_ERROR_EXIT = 3  # what the fuzz suite counts as a failure: every input error has its own line


def _error(message: str) -> None:
    """`message` on stderr as one line: its line breaks and other unprintable characters (which
    may come from an input, e.g. a key of a plan file) escaped."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
    print(f"error: {text}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Entry point: usage and user errors become one line and a non-zero exit."""
    try:
        app(args=argv, standalone_mode=False)
    except UserError as error:
        _error(str(error))
        return error.exit_code
    except StoreError as error:  # the runtime sticc runs (bench, profiles) refused a store's file: a user error too
        _error(str(error))
        return UserError.exit_code
    except ClickException as error:  # usage errors: unknown flags, missing arguments
        if type(error).__name__ == "NoArgsIsHelpError":  # bare `sticc`: the help was printed
            return 0
        _error(error.format_message())
        return 1
    except Abort:
        _error("aborted")
        return 1
    except Exit as done:
        return done.exit_code
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except OSError as error:  # the file system refused: permissions, a full disk, a path that is a file
        where = f"{error.filename}: " if error.filename else ""
        _error(f"{where}{error.strerror or error}")
        return 1
    except Exception as error:  # a bug in sticc: still one line; the traceback on request
        if os.environ.get("STICC_DEBUG"):
            raise
        _error(f"internal error ({type(error).__name__}: {error}), a bug in sticc; STICC_DEBUG=1 shows the traceback")
        return INTERNAL_ERROR_EXIT
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
