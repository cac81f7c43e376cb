"""The device profile as a whole (`sticc profile device`): the lanes measured alone
(`sticc.profile.measure_device`), a compiled runner's cold embedding, and the lane fit.

- the embedding: a runner's cold `_embed` (row reads and LayerNorm) at several sequence lengths;
- the lane fit: traced calls of plans like the planner's (tight budgets, mixed bitwidths, preloads,
  dropped layers) at the planned sequence length and a short one, cold, each plan's runner in a
  fresh process constructed as an app constructs it. The IO lane's scale is the ratio of what the
  traces measured to what the isolated figures predict, summed over every chunk of every call; the
  compute lane's figures are fitted as scale x figure + interference x the chunks' IO work (least
  squares over the calls); what is left of the calls' latency is folded into every lane; the
  spread of measured / predicted over the calls gives the latency quantiles the planner plans to.

It compiles and runs runners, so it sits above the planner's inputs it produces (`sticc.ir`) and
codegen; the profile it writes is read by `sticc.ir.lower`.
"""

from __future__ import annotations

import itertools
import platform
import random
import statistics
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from codegen import emit_runner, load_runner, write_output
from solvers.uniform import uniform_plan
from sticc.base.cache import cache_dir, read_cached_json
from sticc.base.errors import UserError
from sticc.base.measure import evict_from_page_cache
from sticc.base.progress import Progress, quiet
from sticc.base.schema import PARTS
from sticc.bench.suite import run_child
from sticc.ir.graph import ShardChoice
from sticc.ir.lower import Problem, lower, lower_decoder
from sticc.ir.plan import SolverInfo, make_plan, memory_model, store_positions
from sticc.ir.simulate import plan_work, simulate
from sticc.model.sharding import default_shards_per_chunk
from sticc.model.store import Store
from sticc.profile.device import DeviceProfile, LaneFit
from sticc.profile.importance import ImportanceProfile
from sticc.profile.measure_device import device_profile, fit_nonnegative, measure_lanes
from sticc.runtime.core import TraceEvent, TraceEventName

TRACED_CALLS = 6  # traced cold calls per fit plan and length, in a fresh process
QUANTILES = (50, 75, 90, 95)
MIN_DECODE_SCALE = 0.5  # the least decode scale the fit may give a bitwidth class
COMMON_BITS = (4, 8, 16, 32)  # the bitwidths plans use most; each gets its own fit plan and decode scale


def _runner(store: Store, plan, directory: Path, threads: int):

    return load_runner(write_output(directory, emit_runner(store, plan, store.path))).Runner(str(store.path), threads=threads)


def _traced_calls(store: Store, plan, directory: Path, threads: int, length: int, seed: int) -> dict:
    """`TRACED_CALLS` traced cold calls of `plan`'s runner in a fresh process, constructed as
    an app constructs it (what a deployed runner's calls are like, first call included)."""

    runner = write_output(directory, emit_runner(store, plan, store.path))
    spec = {
        "name": "lane fit", "kind": "trace", "runner": str(runner), "store": str(store.path), "threads": threads,
        "calls": TRACED_CALLS, "input_ids": _timing_ids(store, length, seed)[0].tolist(), "decoder": store.spec.is_decoder,
    }
    return run_child(spec, sample_rss=False)[0]


def _timing_ids(store: Store, seq_len: int, seed: int) -> torch.Tensor:
    """Distinct token ids away from the special tokens (every embedding row a read)."""
    vocab = store.spec.vocab
    first = min(999, max(0, vocab - seq_len))
    return (torch.randperm(vocab - first, generator=torch.Generator().manual_seed(seed))[:seq_len] + first)[None]


def measure_embed(store: Store, seq_lens: list[int], threads: int, repeats: int = 5) -> tuple[float, float]:
    """A real runner's cold embedding (row reads + LayerNorm) by sequence length, fitted to e0 + e1*L."""

    with tempfile.TemporaryDirectory(prefix="sticc-profile-") as tmp:
        runner = _runner(store, uniform_plan(store, min(store.bits)), Path(tmp), threads)
        try:
            medians = []
            for seq_len in seq_lens:
                times = []
                for n in range(repeats + 1):  # the first of each length is not counted
                    ids = _timing_ids(store, seq_len, seq_len * 31 + n)
                    evict_from_page_cache(store.data_path)
                    start = time.perf_counter()
                    with torch.inference_mode():
                        if store.spec.is_decoder:
                            runner._embed(ids[0], 0)
                        else:
                            runner._embed(ids, torch.ones_like(ids), None)
                    times.append(time.perf_counter() - start)
                medians.append((seq_len, statistics.median(times[1:])))
        finally:
            runner.close()
    lengths = np.array([r[0] for r in medians], dtype=float)
    e0, e1 = fit_nonnegative(np.stack([np.ones_like(lengths), lengths], 1), np.array([r[1] for r in medians]))
    return float(e0), float(e1)


# ----------------------------------------------------------------------------------------------
# The lane fit: traced calls of plans like the planner's
# ----------------------------------------------------------------------------------------------


def fit_plans(store: Store, seq_len: int) -> list:
    """Plans like a planner makes, as (name, choices, budget bytes): each common bitwidth alone
    (4, 8, 16, 32) with the ring barely holding two chunks; the common bitwidths mixed with preloads
    and a few shards dropped; whole layers dropped; every bitwidth mixed (the odd ones too); for a
    decoder, 4 and 8 bits with most pieces resident (a tight budget's plans)."""
    rng = random.Random(7)
    spec, spl = store.spec, store.shards_per_layer
    bits = sorted(store.bits)
    common = [b for b in bits if b in COMMON_BITS] or bits
    spc = default_shards_per_chunk(spl)

    def plan(pick) -> dict:
        choices = {(layer, i): pick(layer, i) for layer, i in store_positions(store)}
        for (layer, i), choice in choices.items():  # a decoder's LM head slices are never dropped
            if layer == spec.layers and not choice.bits:
                choices[(layer, i)] = ShardChoice(layer, i, rng.choice(common))
        return choices

    def uniform(b: int):
        return lambda layer, i: ShardChoice(layer, i, b)

    def mixed(choices: list[int], preload: float):
        def pick(layer: int, i: int) -> ShardChoice:
            b = rng.choice(choices) if rng.random() < 0.9 else 0
            return ShardChoice(layer, i, b, bool(b) and rng.random() < preload)
        return pick

    def dropped_layers(layer: int, i: int) -> ShardChoice:
        if layer < max(1, spec.layers // 3) and rng.random() < 0.8:
            return ShardChoice(layer, i, 0)
        return ShardChoice(layer, i, rng.choice(common))

    # a decoder streaming every weight at 32 bits is the layerwise baseline's regime (about a second
    # a token), not a plan's
    cases = [(f"uniform-{b}", plan(uniform(b)), True) for b in common if not (spec.is_decoder and b == 32)]
    cases += [("mixed-common", plan(mixed(common, 0.15)), False), ("dropped-layers", plan(dropped_layers), False)]
    if set(bits) - set(common):
        cases.append(("mixed-all", plan(mixed(bits, 0.1)), False))
    if spec.is_decoder:
        # what a decoder's planner makes within a tight budget: most pieces resident at low bits
        # (dequantized from the pool every token), the rest streamed through a small ring
        def resident(b: int, share: float):
            return lambda layer, i: ShardChoice(layer, i, b, rng.random() < share)
        cases += [(f"resident-{b}", plan(resident(b, 0.6)), True) for b in (4, 8) if b in bits]
    out = []
    for name, choices, tight in cases:
        memory = memory_model(store, tuple(choices.values()), spc, seq_len)
        # tight: the IO lane waits for ring space; else room for the four largest chunks
        budget = memory.default_budget_bytes if tight else memory.fixed_bytes + sum(sorted(memory.chunk_bytes)[-4:])
        out.append((name, choices, max(budget, memory.minimum_budget_bytes)))
    return out


def trace_from_json(trace: list) -> list[TraceEvent]:
    """A trace back from JSON (a child's `forward(trace=...)`, lists [event, key, time_s]) as `TraceEvent`s."""
    return [TraceEvent(TraceEventName(event).value, int(key), float(time_s)) for event, key, time_s in trace]


Events = dict[TraceEventName, dict[int, float]]  # a trace by event, see `trace_by_event`


def trace_by_event(trace: list[TraceEvent]) -> Events:
    """A trace as {event name: {chunk key (-1: the call's own): perf_counter seconds}}.

    `TraceEvent.event` holds the name's value (every runner inlines its own copy of the enum), so
    the names are looked up by value."""
    events: Events = {}
    for e in trace:
        events.setdefault(TraceEventName(e.event), {})[e.key] = e.time_s
    return events


@dataclass(frozen=True)
class Observation:
    """Traced calls of one fit plan: what `fit_lane_scales` fits."""

    choices: dict
    budget_bytes: int
    seq_len: int
    shards_per_chunk: int
    traces: list  # one trace per call (`forward(trace=...)`)
    latencies_s: list
    past: list | None = None  # decoders: each call's cached positions (one-token calls); None: an encoder's calls

    def problems(self, store: Store, device: DeviceProfile) -> list[Problem]:
        """The problem each traced call ran: an encoder's call, or a decoder's one-token call at its position."""
        flat = ImportanceProfile.flat(store)
        if self.past is None:
            problem = lower(store, device, flat, self.seq_len, None, self.budget_bytes, self.shards_per_chunk)
            return [problem] * len(self.traces)
        return [
            lower_decoder(store, device, flat, self.seq_len, past + 1, None, None, self.budget_bytes, self.shards_per_chunk)
            for past in self.past
        ]


def fit_lanes(store: Store, profile: DeviceProfile, seq_len: int, progress: Progress, context: int | None = None) -> LaneFit:
    """Scales and latency quantiles from traced cold calls of `fit_plans` at `seq_len` and
    a quarter of it (see the module docstring); reads are not capped while fitting. A decoder's
    plans each generate: a `seq_len`-token prompt, then one-token calls, of which the one-token
    calls are fitted (what a per-token target bounds; the prompt's call uses the same scales)."""
    decoder = store.spec.is_decoder
    lengths = [seq_len] if decoder else sorted({max(8, min(seq_len // 4, store.spec.max_positions)), seq_len})
    cases = [(length, *case) for length in lengths for case in fit_plans(store, length)]
    observations = []
    with tempfile.TemporaryDirectory(prefix="sticc-lane-fit-") as tmp:
        for n, (length, _, choices, budget) in enumerate(progress(iter(cases), len(cases), "fitting lanes to traced calls")):
            plan = make_plan(
                store, tuple(choices.values()), SolverInfo("lane fit", "GIVEN"), seq_len=length, memory_bytes=budget,
                context=context if decoder else None,
            )
            traced = _traced_calls(store, plan, Path(tmp) / str(n), profile.compute_threads, length, n)
            traces = [trace_from_json(trace) for trace in traced["traces"]]
            past = traced.get("past")
            if past is not None:  # the prompt's call is not fitted
                traces, latencies, past = traces[1:], traced["latencies"][1:], past[1:]
            else:
                latencies = traced["latencies"]
            observations.append(Observation(choices, budget, length, plan.shards_per_chunk, traces, latencies, past))
    return fit_lane_scales(store, profile, observations)


def fit_lane_scales(store: Store, profile: DeviceProfile, observations: list[Observation]) -> LaneFit:
    """The lane fit of `profile`'s isolated figures that best explains `observations`."""

    base = replace(profile, emulated_bandwidth_Bps=None, lane_fit=None)
    # per call: traced and modelled sums of the IO lane, of dequantization, of kernels, and the
    # modelled IO work of the chunks the compute lane dequantized
    rows: list[tuple[float, ...]] = []
    embeds, handovers, calls = [], [], []
    chunk_gaps: list[float] = []  # between two chunks of a block, the second one ready
    join_gaps: list[tuple[float, float]] = []  # (gap, modelled join) between blocks, the next chunk ready
    # decode scales by bitwidth: the common ones each their own, the others (odd bits) one together
    decode_bits = [b for b in sorted(store.bits) if b in COMMON_BITS] + [0]
    for observation in observations:
        choices, budget = observation.choices, observation.budget_bytes
        for problem, trace, latency_s in zip(observation.problems(store, base), observation.traces, observation.latencies_s, strict=True):
            simulated = simulate(problem, choices, budget)
            work = plan_work(problem, choices)
            events = trace_by_event(trace)
            io_start, io_end = events.get(TraceEventName.IO_START, {}), events.get(TraceEventName.IO_END, {})
            starts, decoded = events.get(TraceEventName.COMPUTE_START, {}), events.get(TraceEventName.DECODE_END, {})
            ends = events.get(TraceEventName.COMPUTE_END, {})
            # io traced, io model, decode traced, kernel traced, kernel model, io work, then decode model by bits
            row = [0.0] * (6 + len(decode_bits))
            for key, w in enumerate(work):
                if key in io_start:
                    row[0] += io_end[key] - io_start[key]
                    row[1] += w.io_cpu_s + w.check_s
                if key in decoded:
                    row[2] += decoded[key] - starts[key]
                    row[3] += ends[key] - decoded[key]
                    row[4] += w.compute_s - w.decode_s
                    row[5] += w.io_cpu_s + w.check_s
                    for b, seconds in w.decode_by_bits:
                        row[6 + decode_bits.index(_bits_class(b, decode_bits))] += seconds
            rows.append(tuple(row))
            overheads, joins = _gaps(events, work)
            chunk_gaps += overheads
            join_gaps += [(gap, problem.graph.join(0, part).duration_s) for gap, part in joins]
            embed_s = events[TraceEventName.EMBED_END][-1] - events[TraceEventName.CALL_START][-1]
            embeds.append(embed_s / problem.graph.embed.duration_s)
            handovers += _handovers(events)
            calls.append((observation, latency_s, simulated.latency_s))
    table = np.array(rows)
    read_scale = max(table[:, 0].sum() / max(table[:, 1].sum(), 1e-12), 0.05)
    # the compute lane's figures, fitted over the calls (least squares, non-negative): dequantization
    # as scale(bits) x figure + interference x the chunks' IO work, kernels as scale x figure +
    # interference x the same IO work
    decode_fit = fit_nonnegative(table[:, [*range(6, table.shape[1]), 5]], table[:, 2], relative=False)
    compute_scale, compute_interference = fit_nonnegative(table[:, [4, 5]], table[:, 3], relative=False)
    used = table[:, 6:].sum(0) > 0
    decode_scales = {}
    for i, b in enumerate(decode_bits):
        # no lane runs much faster in a call than alone (isolated figures are the least of their
        # repeats): a scale far below 1 is the least squares trading one class against interference
        scale = float(max(decode_fit[i], MIN_DECODE_SCALE)) if used[i] else 1.0
        for bits in store.bits:
            if _bits_class(bits, decode_bits) == b:
                decode_scales[bits] = scale
    interference = float(decode_fit[-1] + compute_interference)
    chunk_overhead_s = float(statistics.median(chunk_gaps)) if chunk_gaps else 0.0
    join_scale = max(statistics.median((gap - chunk_overhead_s) / join for gap, join in join_gaps), 0.05) if join_gaps else 1.0
    embed_scale = float(statistics.median(embeds))
    handover_s = float(statistics.median(handovers)) if handovers else 0.0

    def ratios(lane_fit: LaneFit) -> list[float]:
        """measured / predicted of every call."""
        scaled = replace(base, lane_fit=lane_fit)
        out = []
        for observation in observations:
            for problem, measured_s in zip(observation.problems(store, scaled), observation.latencies_s, strict=True):
                out.append(measured_s / simulate(problem, observation.choices, observation.budget_bytes).latency_s)
        return out

    lane_fit = LaneFit(
        float(read_scale), decode_scales, max(float(compute_scale), 0.05), float(join_scale), embed_scale,
        interference, chunk_overhead_s, handover_s, {}, len(observations), len(calls), 0.0, 0.0,
    )
    # what the lanes' figures leave of the calls goes to every lane
    residual = statistics.median(ratios(lane_fit))
    folded = replace(
        lane_fit, read_scale=lane_fit.read_scale * residual, decode_scales={b: v * residual for b, v in decode_scales.items()},
        compute_scale=lane_fit.compute_scale * residual, join_scale=lane_fit.join_scale * residual,
        embed_scale=embed_scale * residual, chunk_overhead_s=chunk_overhead_s * residual, handover_s=handover_s * residual,
    )
    after = ratios(folded)
    quantiles = {q: float(np.percentile(after, q)) for q in QUANTILES}
    before = [measured / simulated for _, measured, simulated in calls]
    return replace(
        folded, latency_quantiles=quantiles,
        latency_error_before=float(statistics.median(abs(1 / r - 1) for r in before)),
        latency_error_after=float(statistics.median(abs(1 / r - 1) for r in after)),
    )


def _bits_class(bits: int, decode_bits: list[int]) -> int:
    """The lane fit's decode class of `bits`: itself for a common bitwidth, else 0 (the others)."""
    return bits if bits in decode_bits else 0


def _gaps(events: Events, work: list) -> tuple[list[float], list[tuple[float, str]]]:
    """The compute lane's time between two chunks where the second was already handed over: within
    a block (the steps around a chunk), and across blocks ((gap, the part whose join it holds))."""
    starts, ends = events.get(TraceEventName.COMPUTE_START, {}), events.get(TraceEventName.COMPUTE_END, {})
    io_end = events.get(TraceEventName.IO_END, {})
    within, across = [], []
    keys = sorted(starts)
    for a, b in itertools.pairwise(keys):
        if b != a + 1 or a not in ends or io_end.get(b, 0.0) > ends[a]:
            continue
        gap = starts[b] - ends[a]
        first, second = work[a].chunk, work[b].chunk
        if (first.layer, first.part) == (second.layer, second.part):
            within.append(gap)
        elif (second.layer, second.part) == _next_block(first.layer, first.part):
            across.append((gap, first.part))
    return within, across


def _next_block(layer: int, part: str) -> tuple[int, str]:
    index = PARTS.index(part)
    return (layer, PARTS[index + 1]) if index + 1 < len(PARTS) else (layer + 1, PARTS[0])


def _handovers(events: Events) -> list[float]:
    """Seconds from a chunk's IO_END to its COMPUTE_START, for chunks the compute lane waited for
    (it finished the previous chunk before this one was handed over)."""
    io_end = events.get(TraceEventName.IO_END, {})
    starts, ends = events.get(TraceEventName.COMPUTE_START, {}), events.get(TraceEventName.COMPUTE_END, {})
    out = []
    for key, t in starts.items():
        previous = ends.get(key - 1)
        if key in io_end and (previous is None or previous < io_end[key]):
            out.append(t - io_end[key])
    return out


# ----------------------------------------------------------------------------------------------


def profile_device(
    store: Store,
    seq_len: int = 128,
    io_bandwidth_Bps: float | None = None,
    progress: Progress = quiet,
    context: int | None = None,
) -> DeviceProfile:
    """Measure this machine for `store`'s shapes (see the module docstring); a decoder's at
    prompts of about `seq_len` tokens and one-token calls up to `context` cached positions."""
    lanes = measure_lanes(store, seq_len, progress, context)
    profile = device_profile(store, lanes, measure_embed(store, list(lanes.seq_lens), lanes.threads), io_bandwidth_Bps)
    return replace(profile, lane_fit=fit_lanes(store, profile, seq_len, progress, context))


def cached_device(
    store: Store, seq_len: int, io_bandwidth_Bps: float | None, progress: Progress = quiet, context: int | None = None,
) -> tuple[DeviceProfile, Path, bool]:
    """This machine's profile for `store` from the cache, measured and cached first if absent.

    Keyed by store, host, sequence length (and a decoder's context) and emulated bandwidth;
    (profile, cache path, hit)."""

    cap = "disk" if io_bandwidth_Bps is None else f"{io_bandwidth_Bps:.0f}Bps"
    positions = f"-C{context}" if context is not None else ""
    path = cache_dir(store.store_id) / f"device-{platform.node() or 'host'}-L{seq_len}{positions}-{cap}.json"
    data = read_cached_json(path)
    if data is not None:
        try:
            profile = DeviceProfile.from_json(data, str(path))
            profile.check_store(store)
            return profile, path, True
        except UserError:
            pass  # stale or corrupt: measure again
    profile = profile_device(store, seq_len, io_bandwidth_Bps, progress, context)
    profile.write(path)
    return profile, path, False
