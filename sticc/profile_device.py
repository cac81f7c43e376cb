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
  dropped layers) at the planned sequence length and a short one, cold, in a runner. Each lane's
  scale is the ratio of what the trace measured to what the isolated figures predict, summed over
  every chunk of every call; what is left of the calls' latency is folded into every lane; the
  spread of measured / predicted over the calls gives the latency quantiles the planner plans to.
"""

from __future__ import annotations

import os
import platform
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from sticc.device import Calibration, Decode, DeviceProfile, FitError, PartCompute, model_shape
from sticc.measure import evict_from_page_cache
from sticc.plan import DEFAULT_CHUNKS_PER_BLOCK, ShardChoice, SolverInfo, make_plan, memory_model
from sticc.runtime.core import READ_ALIGN_BYTES, Ring, StoreReader, checksum
from sticc.runtime.decode import PoolViews, RunDecoder
from sticc.runtime.encoder import PART_BLOCKS, attention_chunk, attention_mask_bias, ffn_chunk, residual_norm
from sticc.sharding import PARTS, piece_shape
from sticc.store import Store

Progress = Callable[[Iterator, int, str], Iterator]
CALIBRATION_CALLS = 6  # traced cold calls per calibration plan and length (after one untimed call)
QUANTILES = (50, 75, 90, 95)
ROTATE_BYTES = 64 << 20  # dequantization sources rotate through this much memory (beyond the caches)


def _median_s(run: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


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
                    rows.append((count * layout.weight_count, _median_s(once, repeats)))
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


def measure_compute(store: Store, seq_lens: list[int], repeats: int = 7) -> tuple[dict[str, PartCompute], FitError]:
    """Per-part chunk and join times over shards x sequence length on the compute lane's threads, fitted."""
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
                    rows.append((shards, seq_len, _median_s(kernel, repeats)))
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

                join_rows.append((seq_len, _median_s(join, repeats * 3)))
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
    """Plans like a planner makes, as (name, choices, budget bytes): uniform 8 and 4 bits with
    the ring barely holding two chunks, mixed bitwidths with preloads, whole layers dropped, wide
    pieces (16/32 bits) where reads dominate."""
    rng = random.Random(7)
    spec, spl = store.spec, store.shards_per_layer
    bits = sorted(store.bits)
    narrow = [b for b in bits if b <= 8] or bits
    wide = [b for b in bits if b >= 8] or bits
    spc = max(1, spl // DEFAULT_CHUNKS_PER_BLOCK)

    def plan(pick) -> dict:
        return {(layer, i): pick(layer, i) for layer in range(spec.layers) for i in range(spl)}

    def uniform(b: int):
        return lambda layer, i: ShardChoice(layer, i, b)

    def mixed(layer: int, i: int) -> ShardChoice:
        b = rng.choice(bits) if rng.random() < 0.85 else 0
        return ShardChoice(layer, i, b, bool(b) and layer == 0 and rng.random() < 0.5)

    def dropped_layers(layer: int, i: int) -> ShardChoice:
        if layer < max(1, spec.layers // 3) and rng.random() < 0.8:
            return ShardChoice(layer, i, 0)
        return ShardChoice(layer, i, rng.choice(narrow))

    def wide_pick(layer: int, i: int) -> ShardChoice:
        return ShardChoice(layer, i, rng.choice(wide) if rng.random() < 0.9 else 0)

    cases = [("uniform-8", plan(uniform(8 if 8 in bits else bits[-1]))), ("mixed", plan(mixed)),
             ("dropped-layers", plan(dropped_layers)), ("wide", plan(wide_pick))]
    if 4 in bits:
        cases.append(("uniform-4", plan(uniform(4))))
    out = []
    for name, choices in cases:
        memory = memory_model(store, tuple(choices.values()), spc, seq_len)
        tight = name.startswith("uniform")  # the IO lane waits for ring space
        budget = memory.default_budget_bytes if tight else memory.fixed_bytes + sum(sorted(memory.chunk_bytes)[-4:])
        out.append((name, choices, max(budget, memory.minimum_budget_bytes)))
    return out


def _trace_by_event(trace: list) -> dict[str, dict[int, float]]:
    events: dict[str, dict[int, float]] = {}
    for event, key, t in trace:
        events.setdefault(event, {})[key] = t
    return events


def calibrate(store: Store, profile: DeviceProfile, seq_len: int, progress: Progress) -> Calibration:
    """Scales and latency quantiles from traced cold calls of `calibration_plans` at `seq_len` and
    a quarter of it (see the module docstring); reads are not capped while calibrating."""
    from sticc.importance import ImportanceProfile
    from sticc.lower import lower
    from sticc.simulate import plan_work, simulate

    base = replace(profile, emulated_bandwidth_Bps=None, calibration=None)
    lengths = sorted({max(8, min(seq_len // 4, store.spec.max_positions)), seq_len})
    cases = [(length, *case) for length in lengths for case in calibration_plans(store, length)]
    # [traced, simulated] sums per lane, over every chunk of every call
    lanes = {"read": [0.0, 0.0], "decode": [0.0, 0.0], "compute": [0.0, 0.0]}
    embeds, handovers, calls = [], [], []
    with tempfile.TemporaryDirectory(prefix="sticc-calibrate-") as tmp:
        for n, (length, _, choices, budget) in enumerate(progress(iter(cases), len(cases), "calibrating")):
            plan = make_plan(store, tuple(choices.values()), SolverInfo("calibration", "GIVEN"), seq_len=length, memory_bytes=budget)
            problem = lower(store, base, ImportanceProfile.flat(store), length, None, budget, plan.shards_per_chunk)
            simulated = simulate(problem, choices, budget)
            work = plan_work(problem, choices)
            runner = _runner(store, plan, Path(tmp) / str(n), profile.compute_threads)
            try:
                for call in range(CALIBRATION_CALLS + 1):  # the first call is not counted
                    trace: list = []
                    evict_from_page_cache(store.data_path)
                    runner.forward(_timing_ids(store, length, 100 * n + call), trace=trace)
                    if call == 0:
                        continue
                    events = _trace_by_event(trace)
                    for key, w in enumerate(work):
                        if key in events.get("io_start", {}):
                            lanes["read"][0] += events["io_end"][key] - events["io_start"][key]
                            lanes["read"][1] += w.io_cpu_s + w.check_s
                        if key in events.get("decode_end", {}):
                            lanes["decode"][0] += events["decode_end"][key] - events["compute_start"][key]
                            lanes["decode"][1] += w.decode_s
                            lanes["compute"][0] += events["compute_end"][key] - events["decode_end"][key]
                            lanes["compute"][1] += w.compute_s - w.decode_s
                    embeds.append((events["embed_end"][-1] - events["call_start"][-1]) / problem.embed_s)
                    handovers += _handovers(events)
                    calls.append((plan, choices, budget, length, runner.last_stats["latency_s"], simulated.latency_s))
            finally:
                runner.close()
    read_scale, decode_scale, compute_scale = (max(lanes[k][0] / max(lanes[k][1], 1e-12), 0.05) for k in ("read", "decode", "compute"))
    embed_scale = float(statistics.median(embeds))
    handover_s = float(statistics.median(handovers)) if handovers else 0.0

    def ratios(calibration: Calibration) -> list[float]:
        scaled = replace(base, calibration=calibration)
        out = []
        for plan, choices, budget, length, measured_s, _ in calls:
            problem = lower(store, scaled, ImportanceProfile.flat(store), length, None, budget, plan.shards_per_chunk)
            out.append(measured_s / simulate(problem, choices, budget).latency_s)
        return out

    lane_fit = Calibration(read_scale, decode_scale, compute_scale, embed_scale, handover_s, {}, len(cases), len(calls), 0.0, 0.0)
    # what the lanes' figures leave of the calls (the steps between chunks, joins) goes to every lane
    residual = statistics.median(ratios(lane_fit))
    folded = replace(
        lane_fit, read_scale=read_scale * residual, decode_scale=decode_scale * residual,
        compute_scale=compute_scale * residual, embed_scale=embed_scale * residual, handover_s=handover_s * residual,
    )
    after = ratios(folded)
    quantiles = {q: float(np.percentile(after, q)) for q in QUANTILES}
    before = [measured / simulated for *_, measured, simulated in calls]
    return replace(
        folded, latency_quantiles=quantiles,
        latency_error_before=float(statistics.median(abs(1 / r - 1) for r in before)),
        latency_error_after=float(statistics.median(abs(1 / r - 1) for r in after)),
    )


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


def trace_lanes(trace: list) -> tuple[float, float, float, float]:
    """(IO lane busy s, compute lane s (dequantization and kernels), of which dequantization s,
    embedding s) of one traced call."""
    events = _trace_by_event(trace)
    start, end = events.get("io_start", {}), events.get("io_end", {})
    io = sum(end[k] - t for k, t in start.items() if k in end)
    begins, ends, decoded = events.get("compute_start", {}), events.get("compute_end", {}), events.get("decode_end", {})
    compute = sum(ends[k] - t for k, t in begins.items() if k in ends)
    decode = sum(decoded[k] - begins[k] for k in decoded)
    embed = events["embed_end"][-1] - events["call_start"][-1]
    return io, compute, decode, embed


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
