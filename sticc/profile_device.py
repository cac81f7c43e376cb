"""Measuring a device profile on the machine sticc runs on (`sticc profile device`).

Everything is measured the way a runner does the work, with the runner's own functions
(`sticc.runtime`), medians of repeated measurements:
- reads: `StoreReader.read_blobs` (direct reads where the file system allows them) of real stored
  pieces in the load order of random plans, the data file evicted from the page cache first;
  fitted to latency + slot bytes / bandwidth. The checksum (`checksum`) of the freshly read bytes
  is measured apart, in bytes/s;
- dequantization: `RunDecoder` on runs of 1 and several real stored pieces of each bitwidth, laid
  out as in the ring and rotated through more memory than the caches hold (the ring's bytes arrive
  by DMA, not through the caches), on the compute lane's threads; fitted to call + weights / rate;
- kernels: `attention_chunk` / `ffn_chunk` on chunks of 1..N shards at several sequence lengths,
  on the compute lane's threads (every core), fitted to c0 + cL*L + c1*s*L + c2*s*L^2 per part,
  the worst relative fit error reported; the join alike;
- the embedding: a runner's cold `_embed` (row reads and LayerNorm) at several sequence lengths;
- calibration: traced calls of plans like the planner's (tight budgets, mixed bitwidths, preloads,
  dropped layers) at the planned sequence length and a short one, cold, each plan's runner in a
  fresh process constructed as an app constructs it. The IO lane's scale is the ratio of what the
  traces measured to what the isolated figures predict, summed over every chunk of every call; the
  compute lane's figures are fitted as scale x figure + interference x the chunks' IO work (least
  squares over the calls); what is left of the calls' latency is folded into every lane; the
  spread of measured / predicted over the calls gives the latency quantiles the planner plans to.
"""

from __future__ import annotations

import itertools
import os
import platform
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from sticc.device import Calibration, Decode, DeviceProfile, FitError, PartCompute, model_shape
from sticc.measure import evict_from_page_cache
from sticc.plan import DEFAULT_CHUNKS_PER_BLOCK, ShardChoice, SolverInfo, make_plan, memory_model
from sticc.runtime.core import READ_ALIGN_BYTES, Ring, StoreReader, checksum
from sticc.runtime.decode import PoolViews, RunDecoder
from sticc.runtime.encoder import PART_BLOCKS, attention_chunk, attention_mask_bias, ffn_chunk, residual_norm
from sticc.schema import PARTS
from sticc.sharding import piece_shape
from sticc.store import Store

Progress = Callable[[Iterator, int, str], Iterator]
CALIBRATION_CALLS = 6  # traced cold calls per calibration plan and length, in a fresh process
QUANTILES = (50, 75, 90, 95)
ROTATE_BYTES = 64 << 20  # dequantization sources rotate through this much memory (beyond the caches)
COMMON_BITS = (4, 8, 16, 32)  # the bitwidths plans use most; each gets its own calibration plan and decode scale


def _median_s(run: Callable[[], object], repeats: int) -> float:
    return statistics.median(_times_s(run, repeats))


def _least_s(run: Callable[[], object], repeats: int) -> float:
    """The least of `repeats` runs: an isolated figure's intrinsic cost, what the noise of a shared
    machine cannot lower (the calibration scales it to what calls see)."""
    return min(_times_s(run, repeats))


def _times_s(run: Callable[[], object], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _fit(features: np.ndarray, targets: np.ndarray, relative: bool = True) -> np.ndarray:
    """Non-negative least squares by active-set trimming (a handful of features); with `relative`,
    relative errors weigh equally (each row is scaled by 1/target)."""
    weights = 1.0 / targets if relative else np.ones_like(targets)
    active = list(range(features.shape[1]))
    while True:
        a = features[:, active] * weights[:, None]
        solution, *_ = np.linalg.lstsq(a, targets * weights, rcond=None)
        if (solution >= 0).all() or len(active) == 1:
            coefficients = np.zeros(features.shape[1])
            coefficients[active] = np.clip(solution, 0, None)
            return coefficients
        active.pop(int(np.argmin(solution)))


def _fit_error(predicted: np.ndarray, measured: np.ndarray) -> tuple[float, float]:
    relative = np.abs(predicted - measured) / measured
    return float(relative.max()), float(np.sqrt((relative**2).mean()))


def _aligned(nbytes: int) -> torch.Tensor:
    raw = torch.zeros(nbytes + READ_ALIGN_BYTES, dtype=torch.uint8)
    shift = (-raw.data_ptr()) % READ_ALIGN_BYTES
    return raw[shift : shift + nbytes]


# ----------------------------------------------------------------------------------------------
# The IO lane
# ----------------------------------------------------------------------------------------------


def _random_load_order(store: Store, rng: random.Random, keep: float) -> list:
    """Stored versions in the load order of a random plan (random drops and bitwidths)."""
    order = []
    for layer in range(store.spec.layers):
        kept = {i: rng.choice(store.bits) for i in range(store.shards_per_layer) if rng.random() < keep}
        for part in PARTS:
            order += [store.version(layer, i, part, bits) for i, bits in sorted(kept.items(), key=lambda kv: (kv[1], kv[0]))]
    return order


def measure_reads(store: Store, sequences: int = 6, reads_per_sequence: int = 48) -> tuple[float, float, float]:
    """(bandwidth B/s, request latency s, checksum B/s) of cold reads as the IO lane issues them:
    one direct read per piece in the load order of random plans (drops and bitwidths mixed), the
    data file evicted first. Plain least squares on latency + slot bytes / bandwidth, which weighs
    reads by their size: what a call's total IO time depends on. The checksum rate is measured on
    the bytes just read (not in the caches: they came by DMA)."""
    reader = StoreReader(str(store.data_path))
    rng = random.Random(0)
    rows, sums = [], []
    try:
        for sequence in range(sequences):
            order = _random_load_order(store, rng, (1.0, 0.7, 0.4)[sequence % 3])[:reads_per_sequence]
            buffers = [_aligned(v.layout.slot_nbytes) for v in order]
            evict_from_page_cache(store.data_path)
            for version, buffer in zip(order, buffers, strict=True):
                start = time.perf_counter()
                reader.read_blobs(buffer, version.extent.offset, version.layout.nbytes, version.key.describe())
                rows.append((version.layout.slot_nbytes, time.perf_counter() - start))
            start = time.perf_counter()
            for version, buffer in zip(order, buffers, strict=True):
                checksum(memoryview(buffer.numpy())[: version.layout.nbytes])
            sums.append((sum(v.layout.nbytes for v in order), time.perf_counter() - start))
    finally:
        reader.close()
    sizes = np.array([r[0] for r in rows], dtype=float)
    times = np.array([r[1] for r in rows])
    latency, per_byte = _fit(np.stack([np.ones_like(sizes), sizes], 1), times, relative=False)
    checksum_Bps = statistics.median(nbytes / max(seconds, 1e-9) for nbytes, seconds in sums)
    return 1.0 / max(per_byte, 1e-12), float(latency), float(checksum_Bps)


def measure_io_overhead(repeats: int = 300) -> float:
    """The IO lane's bookkeeping per chunk besides its reads: ring space taken and given back."""
    ring = Ring(torch.zeros(1 << 20, dtype=torch.uint8), 1 << 19)

    def once() -> None:
        ring.allocate(READ_ALIGN_BYTES)
        ring.free_oldest()

    return _median_s(once, repeats)


# ----------------------------------------------------------------------------------------------
# The compute lane
# ----------------------------------------------------------------------------------------------


def _shard_counts(store: Store) -> list[int]:
    spc = max(1, store.shards_per_layer // DEFAULT_CHUNKS_PER_BLOCK)
    return sorted({1, min(2, store.shards_per_layer), spc})


def measure_decode(store: Store, repeats: int = 9) -> dict[int, Decode]:
    """Dequantization cost per bitwidth on the compute lane's threads: runs of 1 and several real
    stored pieces, laid out one slot apart as in the ring, the source rotating through more memory
    than the caches hold; fitted to call + weights / rate over both parts and run lengths."""
    out = {}
    with torch.inference_mode():
        for bits in sorted(store.bits):
            rows = []
            for part in PARTS:
                version = store.version(0, 0, part, bits)
                layout = version.layout
                blob = np.fromfile(store.data_path, np.uint8, layout.nbytes, offset=version.extent.offset)
                blocks, bias_blocks = PART_BLOCKS[part]
                for count in _shard_counts(store):
                    run_nbytes = count * layout.slot_nbytes
                    copies = max(2, min(64, ROTATE_BYTES // run_nbytes))
                    source = _aligned(copies * run_nbytes)
                    for k in range(copies * count):
                        at = k * layout.slot_nbytes
                        source[at : at + layout.nbytes] = torch.from_numpy(blob)
                    weights = torch.empty(blocks, count, layout.weight_count // blocks)
                    biases = torch.empty(bias_blocks, count, layout.bias_len // bias_blocks)
                    decoder = RunDecoder(layout, count, blocks, bias_blocks, weights, biases)
                    views = PoolViews.of(source)
                    turn = iter(range(1 << 30))

                    def once(decoder=decoder, views=views, turn=turn, copies=copies, run_nbytes=run_nbytes) -> None:
                        decoder(views, (next(turn) % copies) * run_nbytes)

                    once()
                    rows.append((count * layout.weight_count, _least_s(once, repeats)))
            weights_arr = np.array([r[0] for r in rows], dtype=float)
            times = np.array([r[1] for r in rows])
            call, per_weight = _fit(np.stack([np.ones_like(weights_arr), weights_arr], 1), times)
            out[bits] = Decode(float(call), 1.0 / max(float(per_weight), 1e-15))
    return out


def _kernel(store: Store, part: str, shards: int, seq_len: int) -> Callable[[], None]:
    """One chunk's kernel on random weights in kernel form, at `seq_len` tokens."""
    spec = store.spec
    shape = piece_shape(spec, store.shards_per_layer, part)
    blocks, bias_blocks = PART_BLOCKS[part]
    generator = torch.Generator().manual_seed(0)
    weights = torch.randn(blocks, shards, shape.rows * shape.cols // blocks, generator=generator) * 0.05
    biases = torch.zeros(bias_blocks, shards, shape.bias_len // bias_blocks)
    x = torch.randn(1, seq_len, spec.hidden)
    acc = torch.zeros(seq_len, spec.hidden)
    mask = attention_mask_bias(torch.ones(1, seq_len, dtype=torch.int64))
    if part == "attn":
        heads = spec.heads // store.shards_per_layer
        return lambda: attention_chunk(acc, x, mask, weights, biases, heads, spec.head_dim)
    return lambda: ffn_chunk(acc, x, weights, biases, spec.activation)


def measure_compute(store: Store, seq_lens: list[int], repeats: int = 11) -> tuple[dict[str, PartCompute], FitError]:
    """Per-part chunk and join times over shards x sequence length on the compute lane's threads,
    fitted (the least of the repeats: `_least_s`)."""
    spec = store.spec
    results: dict[str, PartCompute] = {}
    errors = []
    with torch.inference_mode():
        for part in PARTS:
            rows = []
            for seq_len in seq_lens:
                for shards in _shard_counts(store):
                    kernel = _kernel(store, part, shards, seq_len)
                    kernel()
                    rows.append((shards, seq_len, _least_s(kernel, repeats)))
            s = np.array([r[0] for r in rows], dtype=float)
            length = np.array([r[1] for r in rows], dtype=float)
            times = np.array([r[2] for r in rows])
            features = np.stack([np.ones_like(s), length, s * length, s * length * length], 1)
            coefficients = _fit(features, times)
            errors.append((features @ coefficients, times))
            join_rows = []
            for seq_len in seq_lens:
                x = torch.randn(1, seq_len, spec.hidden)
                ones = torch.ones(spec.hidden)

                def join(x=x, ones=ones, seq_len=seq_len) -> None:
                    acc = x.new_zeros(seq_len, spec.hidden)
                    residual_norm(acc, x, ones, ones, ones, spec.layer_norm_eps)

                join_rows.append((seq_len, _least_s(join, repeats * 3)))
            lengths = np.array([r[0] for r in join_rows], dtype=float)
            join_times = np.array([r[1] for r in join_rows])
            j0, j1 = _fit(np.stack([np.ones_like(lengths), lengths], 1), join_times)
            results[part] = PartCompute(tuple(float(c) for c in coefficients), (float(j0), float(j1)))
    predicted = np.concatenate([p for p, _ in errors])
    measured = np.concatenate([m for _, m in errors])
    worst, rms = _fit_error(predicted, measured)
    return results, FitError(worst, rms, len(measured))


def _runner(store: Store, plan, directory: Path, threads: int):
    from codegen import emit_runner, load_runner, write_output

    return load_runner(write_output(directory, emit_runner(store, plan, store.path))).Runner(str(store.path), threads=threads)


def _traced_calls(store: Store, plan, directory: Path, threads: int, length: int, seed: int) -> dict:
    """`CALIBRATION_CALLS` traced cold calls of `plan`'s runner in a fresh process, constructed as
    an app constructs it (what a deployed runner's calls are like, first call included)."""
    from codegen import emit_runner, write_output
    from sticc.bench import run_child

    runner = write_output(directory, emit_runner(store, plan, store.path))
    spec = {
        "name": "calibration", "kind": "trace", "runner": str(runner), "store": str(store.path), "threads": threads,
        "calls": CALIBRATION_CALLS, "input_ids": _timing_ids(store, length, seed)[0].tolist(),
    }
    return run_child(spec, sample_rss=False)[0]


def _timing_ids(store: Store, seq_len: int, seed: int) -> torch.Tensor:
    """Distinct token ids away from the special tokens (every embedding row a read)."""
    vocab = store.spec.vocab
    first = min(999, max(0, vocab - seq_len))
    return (torch.randperm(vocab - first, generator=torch.Generator().manual_seed(seed))[:seq_len] + first)[None]


def measure_embed(store: Store, seq_lens: list[int], threads: int, repeats: int = 5) -> tuple[float, float]:
    """A real runner's cold embedding (row reads + LayerNorm) by sequence length, fitted to e0 + e1*L."""
    from solvers.uniform import uniform_plan

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
                        runner._embed(ids, torch.ones_like(ids), None)
                    times.append(time.perf_counter() - start)
                medians.append((seq_len, statistics.median(times[1:])))
        finally:
            runner.close()
    lengths = np.array([r[0] for r in medians], dtype=float)
    e0, e1 = _fit(np.stack([np.ones_like(lengths), lengths], 1), np.array([r[1] for r in medians]))
    return float(e0), float(e1)


# ----------------------------------------------------------------------------------------------
# Calibration: traced calls of plans like the planner's
# ----------------------------------------------------------------------------------------------


def calibration_plans(store: Store, seq_len: int) -> list:
    """Plans like a planner makes, as (name, choices, budget bytes): each common bitwidth alone
    (4, 8, 16, 32) with the ring barely holding two chunks; the common bitwidths mixed with preloads
    and a few shards dropped; whole layers dropped; every bitwidth mixed (the odd ones too)."""
    rng = random.Random(7)
    spec, spl = store.spec, store.shards_per_layer
    bits = sorted(store.bits)
    common = [b for b in bits if b in COMMON_BITS] or bits
    spc = max(1, spl // DEFAULT_CHUNKS_PER_BLOCK)

    def plan(pick) -> dict:
        return {(layer, i): pick(layer, i) for layer in range(spec.layers) for i in range(spl)}

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

    cases = [(f"uniform-{b}", plan(uniform(b)), True) for b in common]
    cases += [("mixed-common", plan(mixed(common, 0.15)), False), ("dropped-layers", plan(dropped_layers), False)]
    if set(bits) - set(common):
        cases.append(("mixed-all", plan(mixed(bits, 0.1)), False))
    out = []
    for name, choices, tight in cases:
        memory = memory_model(store, tuple(choices.values()), spc, seq_len)
        # tight: the IO lane waits for ring space; else room for the four largest chunks
        budget = memory.default_budget_bytes if tight else memory.fixed_bytes + sum(sorted(memory.chunk_bytes)[-4:])
        out.append((name, choices, max(budget, memory.minimum_budget_bytes)))
    return out


def _trace_by_event(trace: list) -> dict[str, dict[int, float]]:
    events: dict[str, dict[int, float]] = {}
    for event, key, t in trace:
        events.setdefault(event, {})[key] = t
    return events


@dataclass(frozen=True)
class Observation:
    """Traced calls of one calibration plan: what `fit_calibration` fits."""

    choices: dict
    budget_bytes: int
    seq_len: int
    shards_per_chunk: int
    traces: list  # one trace per call (`forward(trace=...)`)
    latencies_s: list


def calibrate(store: Store, profile: DeviceProfile, seq_len: int, progress: Progress) -> Calibration:
    """Scales and latency quantiles from traced cold calls of `calibration_plans` at `seq_len` and
    a quarter of it (see the module docstring); reads are not capped while calibrating."""
    lengths = sorted({max(8, min(seq_len // 4, store.spec.max_positions)), seq_len})
    cases = [(length, *case) for length in lengths for case in calibration_plans(store, length)]
    observations = []
    with tempfile.TemporaryDirectory(prefix="sticc-calibrate-") as tmp:
        for n, (length, _, choices, budget) in enumerate(progress(iter(cases), len(cases), "calibrating")):
            plan = make_plan(store, tuple(choices.values()), SolverInfo("calibration", "GIVEN"), seq_len=length, memory_bytes=budget)
            traced = _traced_calls(store, plan, Path(tmp) / str(n), profile.compute_threads, length, n)
            observations.append(Observation(choices, budget, length, plan.shards_per_chunk, traced["traces"], traced["latencies"]))
    return fit_calibration(store, profile, observations)


def fit_calibration(store: Store, profile: DeviceProfile, observations: list[Observation]) -> Calibration:
    """The calibration of `profile`'s isolated figures that best explains `observations`."""
    from sticc.importance import ImportanceProfile
    from sticc.lower import lower
    from sticc.simulate import plan_work, simulate

    base = replace(profile, emulated_bandwidth_Bps=None, calibration=None)
    # per call: traced and modelled sums of the IO lane, of dequantization, of kernels, and the
    # modelled IO work of the chunks the compute lane dequantized
    rows: list[tuple[float, ...]] = []
    embeds, handovers, calls = [], [], []
    chunk_gaps: list[float] = []  # between two chunks of a block, the second one ready
    join_gaps: list[tuple[float, float]] = []  # (gap, modelled join) between blocks, the next chunk ready
    # decode scales by bitwidth: the common ones each their own, the others (odd bits) one together
    decode_bits = [b for b in sorted(store.bits) if b in COMMON_BITS] + [0]
    for observation in observations:
        choices, budget, length = observation.choices, observation.budget_bytes, observation.seq_len
        problem = lower(store, base, ImportanceProfile.flat(store), length, None, budget, observation.shards_per_chunk)
        simulated = simulate(problem, choices, budget)
        work = plan_work(problem, choices)
        for trace, latency_s in zip(observation.traces, observation.latencies_s, strict=True):
            events = _trace_by_event(trace)
            # io traced, io model, decode traced, kernel traced, kernel model, io work, then decode model by bits
            row = [0.0] * (6 + len(decode_bits))
            for key, w in enumerate(work):
                if key in events.get("io_start", {}):
                    row[0] += events["io_end"][key] - events["io_start"][key]
                    row[1] += w.io_cpu_s + w.check_s
                if key in events.get("decode_end", {}):
                    row[2] += events["decode_end"][key] - events["compute_start"][key]
                    row[3] += events["compute_end"][key] - events["decode_end"][key]
                    row[4] += w.compute_s - w.decode_s
                    row[5] += w.io_cpu_s + w.check_s
                    for b, seconds in w.decode_by_bits:
                        row[6 + decode_bits.index(_bits_class(b, decode_bits))] += seconds
            rows.append(tuple(row))
            overheads, joins = _gaps(events, work)
            chunk_gaps += overheads
            join_gaps += [(gap, problem.parts[part].join_s) for gap, part in joins]
            embeds.append((events["embed_end"][-1] - events["call_start"][-1]) / problem.embed_s)
            handovers += _handovers(events)
            calls.append((observation, latency_s, simulated.latency_s))
    table = np.array(rows)
    read_scale = max(table[:, 0].sum() / max(table[:, 1].sum(), 1e-12), 0.05)
    # the compute lane's figures, fitted over the calls (least squares, non-negative): dequantization
    # as scale(bits) x figure + interference x the chunks' IO work, kernels as scale x figure +
    # interference x the same IO work
    decode_fit = _fit(table[:, [*range(6, table.shape[1]), 5]], table[:, 2], relative=False)
    compute_scale, compute_interference = _fit(table[:, [4, 5]], table[:, 3], relative=False)
    used = table[:, 6:].sum(0) > 0
    decode_scales = {}
    for i, b in enumerate(decode_bits):
        scale = float(max(decode_fit[i], 0.05)) if used[i] else 1.0
        for bits in store.bits:
            if _bits_class(bits, decode_bits) == b:
                decode_scales[bits] = scale
    interference = float(decode_fit[-1] + compute_interference)
    chunk_overhead_s = float(statistics.median(chunk_gaps)) if chunk_gaps else 0.0
    join_scale = max(statistics.median((gap - chunk_overhead_s) / join for gap, join in join_gaps), 0.05) if join_gaps else 1.0
    embed_scale = float(statistics.median(embeds))
    handover_s = float(statistics.median(handovers)) if handovers else 0.0

    def ratios(calibration: Calibration) -> list[float]:
        """measured / predicted of every call, each observation's plan predicted once."""
        scaled = replace(base, calibration=calibration)
        predicted = {}
        for observation in observations:
            problem = lower(
                store, scaled, ImportanceProfile.flat(store), observation.seq_len, None, observation.budget_bytes,
                observation.shards_per_chunk,
            )
            predicted[id(observation)] = simulate(problem, observation.choices, observation.budget_bytes).latency_s
        return [measured_s / predicted[id(observation)] for observation, measured_s, _ in calls]

    lane_fit = Calibration(
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
    """The calibration's decode class of `bits`: itself for a common bitwidth, else 0 (the others)."""
    return bits if bits in decode_bits else 0


def _gaps(events: dict[str, dict[int, float]], work: list) -> tuple[list[float], list[tuple[float, str]]]:
    """The compute lane's time between two chunks where the second was already handed over: within
    a block (the steps around a chunk), and across blocks ((gap, the part whose join it holds))."""
    starts, ends, io_end = events.get("compute_start", {}), events.get("compute_end", {}), events.get("io_end", {})
    within, across = [], []
    keys = sorted(starts)
    for a, b in itertools.pairwise(keys):
        if b != a + 1 or a not in ends or io_end.get(b, 0.0) > ends[a]:
            continue
        gap = starts[b] - ends[a]
        first, second = work[a].slot, work[b].slot
        if (first.layer, first.part) == (second.layer, second.part):
            within.append(gap)
        elif (second.layer, second.part) == _next_block(first.layer, first.part):
            across.append((gap, first.part))
    return within, across


def _next_block(layer: int, part: str) -> tuple[int, str]:
    index = PARTS.index(part)
    return (layer, PARTS[index + 1]) if index + 1 < len(PARTS) else (layer + 1, PARTS[0])


def _handovers(events: dict[str, dict[int, float]]) -> list[float]:
    """Seconds from a chunk's io_end to its compute_start, for chunks the compute lane waited for
    (it finished the previous chunk before this one was handed over)."""
    io_end, starts, ends = events.get("io_end", {}), events.get("compute_start", {}), events.get("compute_end", {})
    out = []
    for key, t in starts.items():
        previous = ends.get(key - 1)
        if key in io_end and (previous is None or previous < io_end[key]):
            out.append(t - io_end[key])
    return out


# ----------------------------------------------------------------------------------------------


def measure_device(
    store: Store,
    seq_len: int = 128,
    io_bandwidth_Bps: float | None = None,
    progress: Progress = lambda items, total, what: items,
) -> DeviceProfile:
    """Measure this machine for `store`'s shapes (see the module docstring)."""
    spec = store.spec
    seq_lens = sorted({min(n, spec.max_positions) for n in (16, 64, seq_len, min(2 * seq_len, 512))})
    threads = torch.get_num_threads()  # the compute lane uses every core
    steps = ["reads", "decode", "compute", "embedding", "overhead"]
    figures: dict = {}
    for step in progress(iter(steps), len(steps), "profiling device"):
        if step == "reads":
            figures["reads"] = measure_reads(store)
        elif step == "decode":
            figures["decode"] = measure_decode(store)
        elif step == "compute":
            figures["compute"] = measure_compute(store, seq_lens)
        elif step == "embedding":
            figures["embed"] = measure_embed(store, seq_lens, threads)
        else:
            figures["overhead"] = measure_io_overhead()
    profile = _profile(store, figures, threads, io_bandwidth_Bps, seq_lens)
    return replace(profile, calibration=calibrate(store, profile, seq_len, progress))


def _profile(store: Store, figures: dict, threads: int, io_bandwidth_Bps: float | None, seq_lens: list[int]) -> DeviceProfile:
    bandwidth, latency, checksum_Bps = figures["reads"]
    compute, fit_error = figures["compute"]
    return DeviceProfile(
        device=f"{platform.node()}: {_cpu_name()}, {os.cpu_count()} cores",
        model_shape=model_shape(store),
        compute_threads=threads,
        read_bandwidth_Bps=bandwidth,
        request_latency_s=latency,
        checksum_Bps=checksum_Bps,
        emulated_bandwidth_Bps=io_bandwidth_Bps,
        io_chunk_overhead_s=figures["overhead"],
        decode=figures["decode"],
        compute=compute,
        embed_s=figures["embed"],
        fit_error=fit_error,
        note=f"measured by sticc profile device on {store.spec.name}, sequence lengths {seq_lens}",
    )


def cached_device(
    store: Store, seq_len: int, io_bandwidth_Bps: float | None, progress: Progress = lambda items, total, what: items,
) -> tuple[DeviceProfile, Path, bool]:
    """This machine's profile for `store` from the cache, measured and cached first if absent.

    Keyed by store, host, sequence length and emulated bandwidth; (profile, cache path, hit)."""
    from sticc.cache import cache_dir, read_cached_json
    from sticc.errors import UserError

    cap = "disk" if io_bandwidth_Bps is None else f"{io_bandwidth_Bps:.0f}Bps"
    path = cache_dir(store.store_id) / f"device-{platform.node() or 'host'}-L{seq_len}-{cap}.json"
    data = read_cached_json(path)
    if data is not None:
        try:
            profile = DeviceProfile.from_json(data, str(path))
            profile.check_store(store)
            return profile, path, True
        except UserError:
            pass  # stale or corrupt: measure again
    profile = measure_device(store, seq_len, io_bandwidth_Bps, progress)
    profile.write(path)
    return profile, path, False
