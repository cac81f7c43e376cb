"""Measuring a device profile on the machine sticc runs on (`sticc profile device`).

Everything is measured the way a runner does the work, with the runner's own functions:
- cold reads: `StoreReader.read_into` (pread + crc32) of store blobs at several sizes, the data
  file evicted from the page cache before each read; fitted to latency + bytes / bandwidth;
- decoding: `decode_weights_into` on runs of real stored pieces of each bitwidth, one and several
  pieces per call; fitted to call + weights / throughput. Measured while a thread runs attention
  kernels, as the compute lane does while the IO thread decodes;
- compute: `attention_chunk` / `ffn_chunk` on chunks of 1..N shards at several sequence lengths,
  and the join, measured while a thread decodes as the IO thread does; fitted to
  c0 + cL*L + c1*s*L + c2*s*L^2 per part, the worst relative fit error reported. The compute thread count
  (1, or all cores but the IO thread's) is the faster of the two under that contention, and runners compiled
  with this profile use it;
- the embedding: a runner's cold `_embed` (row reads and LayerNorm) at several sequence lengths.
Medians of repeated measurements throughout.
"""

from __future__ import annotations

import os
import platform
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from sticc.device import Calibration, Decode, DeviceProfile, FitError, PartCompute, model_shape
from sticc.measure import evict_from_page_cache
from sticc.plan import DEFAULT_CHUNKS_PER_BLOCK
from sticc.runtime import (
    Chunk,
    StoreReader,
    WeightPool,
    attention_chunk,
    attention_mask_bias,
    chunk_views,
    decode_weights_into,
    ffn_chunk,
    residual_norm,
)
from sticc.sharding import PARTS, piece_shape
from sticc.store import Store

Progress = Callable[[Iterator, int, str], Iterator]


def _median_s(run: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


class _Background:
    """Runs `work` in a loop on another thread with `threads` torch threads (1: like the IO thread)."""

    def __init__(self, work: Callable[[], object], threads: int = 1) -> None:
        self._work = work
        self._threads = threads
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        torch.set_num_threads(self._threads)
        with torch.inference_mode():
            while not self._stop.is_set():
                self._work()

    def __enter__(self) -> _Background:
        self._thread.start()
        time.sleep(0.01)
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


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


# ----------------------------------------------------------------------------------------------


def measure_reads(store: Store, sequences: int = 6, reads_per_sequence: int = 48) -> tuple[float, float]:
    """(bandwidth B/s, request latency s) of cold checked reads as runners issue them.

    Each sequence is the load order of a random plan (random drops, a random bitwidth per shard):
    the data file is evicted, then its pieces are read one `read_into` (pread + crc32) each, in
    that order. Pieces of mixed plans lie apart in the file, so readahead rarely helps; uniform
    plans, whose pieces are adjacent, read faster than this predicts (docs/planner.md). The fit is
    plain least squares on latency + bytes / bandwidth, which weighs reads by their size: what a
    call's total IO time depends on."""
    import random

    reader = StoreReader(str(store.data_path))
    rng = random.Random(0)
    rows = []
    try:
        for sequence in range(sequences):
            keep = (1.0, 0.7, 0.4)[sequence % 3]
            order = []
            for layer in range(store.spec.layers):
                kept = {i: rng.choice(store.bits) for i in range(store.shards_per_layer) if rng.random() < keep}
                for part in PARTS:
                    order += [store.version(layer, i, part, bits) for i, bits in sorted(kept.items(), key=lambda kv: (kv[1], kv[0]))]
            order = order[:reads_per_sequence]
            buffers = [torch.empty(v.extent.nbytes, dtype=torch.uint8) for v in order]
            evict_from_page_cache(store.data_path)
            for version, buffer in zip(order, buffers, strict=True):
                start = time.perf_counter()
                reader.read_into([buffer], version.extent.offset, version.extent.crc32, version.key.describe())
                rows.append((version.extent.nbytes, time.perf_counter() - start))
    finally:
        reader.close()
    sizes = np.array([r[0] for r in rows], dtype=float)
    times = np.array([r[1] for r in rows])
    latency, per_byte = _fit(np.stack([np.ones_like(sizes), sizes], 1), times, relative=False)
    return 1.0 / max(per_byte, 1e-12), float(latency)


def _stored_run(store: Store, part: str, bits: int, count: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """codes, scales, zeros of `count` real stored pieces laid end to end, and their weight count."""
    version = store.version(0, 0, part, bits)
    layout = version.layout
    blob = torch.from_numpy(np.fromfile(store.data_path, np.uint8, layout.nbytes, offset=version.extent.offset).copy())
    codes = blob[layout.weight_offset : layout.weight_offset + layout.weight_nbytes].repeat(count)
    scales = blob[layout.scales_offset : layout.scales_offset + 2 * layout.groups].repeat(count)
    zeros = blob[layout.zeros_offset : layout.zeros_offset + 2 * layout.groups].repeat(count)
    return codes, scales, zeros, count * layout.weight_count


def _chunk(store: Store, part: str, shards: int) -> Chunk:
    shape = piece_shape(store.spec, store.shards_per_layer, part)
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(shards, shape.rows, shape.cols, generator=generator) * 0.05
    return Chunk(weight, torch.zeros(shards, shape.bias_len), 0)


def _kernel(store: Store, part: str, shards: int, seq_len: int) -> Callable[[], None]:
    spec = store.spec
    chunk = _chunk(store, part, shards)
    x = torch.randn(1, seq_len, spec.hidden)
    acc = torch.zeros(seq_len, spec.hidden)
    mask = attention_mask_bias(torch.ones(1, seq_len, dtype=torch.int64))
    heads = spec.heads // store.shards_per_layer
    if part == "attn":
        return lambda: attention_chunk(acc, x, mask, chunk, heads, spec.head_dim)
    return lambda: ffn_chunk(acc, x, chunk, spec.ffn // store.shards_per_layer, spec.activation)


def measure_decode(store: Store, busy: Callable[[], object], busy_threads: int, repeats: int = 7) -> dict[int, Decode]:
    """Decode cost per bitwidth on one torch thread (as the IO thread decodes), fitted over runs of
    1 and several pieces, with `busy` running on `busy_threads` on another thread."""
    spc = max(1, store.shards_per_layer // DEFAULT_CHUNKS_PER_BLOCK)
    counts = sorted({1, max(2, spc)})
    out = {}
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    with _Background(busy, busy_threads), torch.inference_mode():
        for bits in sorted(store.bits):
            rows = []
            for part in PARTS:
                for count in counts:
                    codes, scales, zeros, weights = _stored_run(store, part, bits, count)
                    target = torch.empty(weights)
                    group = store.version(0, 0, part, bits).layout.group_size
                    elapsed = _median_s(
                        lambda c=codes, s=scales, z=zeros, b=bits, g=group, t=target: decode_weights_into(c, s, z, b, g, t), repeats
                    )
                    rows.append((weights, elapsed))
            weights_arr = np.array([r[0] for r in rows], dtype=float)
            times = np.array([r[1] for r in rows])
            call, per_weight = _fit(np.stack([np.ones_like(weights_arr), weights_arr], 1), times)
            out[bits] = Decode(float(call), 1.0 / max(float(per_weight), 1e-15))
    torch.set_num_threads(previous)
    return out


def measure_compute(
    store: Store, seq_lens: list[int], threads: int, busy: Callable[[], object], repeats: int = 5,
) -> tuple[dict[str, PartCompute], FitError]:
    """Per-part chunk and join times over shards x sequence length, fitted, with `busy` on another thread."""
    spec = store.spec
    # chunk sizes a default plan uses: beyond them the chunk outgrows the caches and time grows
    # faster than linearly, which one fit over both regimes would blur
    spc = max(1, store.shards_per_layer // DEFAULT_CHUNKS_PER_BLOCK)
    shard_counts = sorted({1, min(2, store.shards_per_layer), spc})
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    results: dict[str, PartCompute] = {}
    errors = []
    try:
        with _Background(busy), torch.inference_mode():
            for part in PARTS:
                rows = []
                for seq_len in seq_lens:
                    for shards in shard_counts:
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
    finally:
        torch.set_num_threads(previous)
    predicted = np.concatenate([p for p, _ in errors])
    measured = np.concatenate([m for _, m in errors])
    worst, rms = _fit_error(predicted, measured)
    return results, FitError(worst, rms, len(measured))


def measure_embed(store: Store, seq_lens: list[int], threads: int, repeats: int = 5) -> tuple[float, float]:
    """A real runner's cold embedding (row reads + LayerNorm) by sequence length, on `threads`
    compute threads, fitted to e0 + e1*L over the median of each length."""
    from codegen import emit_runner, load_runner, write_output
    from solvers.uniform import uniform_plan

    previous = torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="sticc-profile-") as tmp:
        plan = uniform_plan(store, min(store.bits))
        runner_path = write_output(tmp, emit_runner(store, plan, store.path))
        runner = load_runner(runner_path).Runner(str(store.path), threads=threads)
        try:
            medians = []
            generator = torch.Generator().manual_seed(1)
            for seq_len in seq_lens:
                times = []
                for _ in range(repeats + 1):  # the first of each length is not counted
                    ids = torch.randint(0, store.spec.vocab, (1, seq_len), generator=generator)
                    evict_from_page_cache(store.data_path)
                    start = time.perf_counter()
                    with torch.inference_mode():
                        runner._embed(ids, torch.ones_like(ids), None)
                    times.append(time.perf_counter() - start)
                medians.append((seq_len, statistics.median(times[1:])))
        finally:
            runner.close()
            torch.set_num_threads(previous)
    lengths = np.array([r[0] for r in medians], dtype=float)
    e0, e1 = _fit(np.stack([np.ones_like(lengths), lengths], 1), np.array([r[1] for r in medians]))
    return float(e0), float(e1)


def _calibration_plans(store: Store, count: int) -> list:
    """Random plans like a planner makes, some shards dropped: all bitwidths mixed, mostly wide
    ones (reads dominate), mostly narrow ones (decoding dominates), so the two IO scales separate."""
    import random

    from sticc.plan import ShardChoice

    rng = random.Random(7)
    wide = [b for b in store.bits if b >= 8] or list(store.bits)
    narrow = [b for b in store.bits if b <= 8] or list(store.bits)
    plans = []
    for n in range(count):
        keep, bits = ((1.0, list(store.bits)), (0.75, wide), (0.6, narrow))[n % 3]
        plans.append({
            (layer, index): ShardChoice(layer, index, rng.choice(bits) if rng.random() < keep else 0)
            for layer in range(store.spec.layers) for index in range(store.shards_per_layer)
        })
    return plans


def calibrate(store: Store, profile: DeviceProfile, seq_len: int, plans: int = 3, calls: int = 4) -> Calibration:
    """Scales from traced calls of random plans (see `Calibration`), reads not capped: the read
    and decode scales by least squares over every loaded chunk of every call (its traced IO time
    against its simulated reads and decodes), the compute and embedding scales as medians over
    calls of traced / simulated."""
    from codegen import emit_runner, load_runner, write_output
    from sticc.importance import ImportanceProfile
    from sticc.lower import lower
    from sticc.plan import SolverInfo, make_plan
    from sticc.simulate import plan_work, simulate

    base = replace(profile, emulated_bandwidth_Bps=None, calibration=None)
    previous = torch.get_num_threads()
    ids = (torch.randperm(store.spec.vocab - 1000, generator=torch.Generator().manual_seed(seq_len))[:seq_len] + 999)[None]
    decode_bits = sorted(b for b in store.bits if b < 32)
    io_rows: list[list[float]] = []  # simulated reads + overhead, simulated decode calls per bitwidth, traced
    compute_ratios, embed_ratios, cases, handovers = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="sticc-calibrate-") as tmp:
        for n, choices in enumerate(_calibration_plans(store, plans)):
            plan = make_plan(store, tuple(choices.values()), SolverInfo("calibration", "GIVEN"), seq_len=seq_len)
            problem = lower(store, base, ImportanceProfile.flat(store), seq_len, None, None, plan.shards_per_chunk)
            simulation = simulate(problem, choices, plan.memory_budget_bytes)
            work = plan_work(problem, choices)
            runner = load_runner(write_output(Path(tmp) / str(n), emit_runner(store, plan, store.path))).Runner(
                str(store.path), threads=profile.compute_threads,
            )
            try:
                for call in range(calls + 1):  # the first call is not counted
                    trace: list = []
                    evict_from_page_cache(store.data_path)
                    runner.forward(ids, trace=trace)
                    if call == 0:
                        continue
                    started = {key: t for event, key, t in trace if event == "io_start"}
                    for event, key, t in trace:
                        if event == "io_end" and key in started:
                            io_rows.append([work[key].io_cpu_s, *_decode_by_bits(problem, work[key], decode_bits), t - started[key]])
                    _, compute, embed = trace_lanes(trace)
                    handovers += _handovers(trace)
                    compute_ratios.append(compute / sum(w.compute_s for w in work))
                    embed_ratios.append(embed / problem.embed_s)
                    cases.append((plan, choices, runner.last_stats["latency_s"], simulation.latency_s))
            finally:
                runner.close()
                torch.set_num_threads(previous)
        rows = np.array(io_rows)
        features, traced = rows[:, :-1], rows[:, -1]
        joint = _fit(np.stack([features[:, 0], features[:, 1:].sum(1)], 1), traced, relative=False)
        per_bits = _fit(features, traced, relative=False)
        read_scale = float(max(per_bits[0], 0.05))
        # a bitwidth the traced chunks barely decoded keeps the joint decode scale
        weight = features[:, 1:].sum(0) / max(features[:, 1:].sum(), 1e-12)
        decode_scales = {
            bits: float(min(max(per_bits[1 + i] if weight[i] > 0.02 else joint[1], 0.25), 8.0))
            for i, bits in enumerate(decode_bits)
        }
        compute_scale = float(statistics.median(compute_ratios))
        embed_scale = float(statistics.median(embed_ratios))
        handover_s = float(statistics.median(handovers)) if handovers else 0.0
        scaled = replace(base, calibration=Calibration(
            read_scale, decode_scales, compute_scale, embed_scale, handover_s, plans, 0.0, 0.0,
        ))
        after = []
        for plan, choices, latency_s, _ in cases:
            problem = lower(store, scaled, ImportanceProfile.flat(store), seq_len, None, None, plan.shards_per_chunk)
            after.append(abs(simulate(problem, choices, plan.memory_budget_bytes).latency_s / latency_s - 1))
    before = [abs(simulated / latency_s - 1) for _, _, latency_s, simulated in cases]
    return Calibration(
        read_scale, decode_scales, compute_scale, embed_scale, handover_s, plans,
        float(statistics.median(before)), float(statistics.median(after)),
    )


def _decode_by_bits(problem, work, decode_bits: list[int]) -> list[float]:
    """A chunk's simulated decode calls of its streamed runs, split by bitwidth (`decode_bits` order)."""
    costs = problem.parts[work.slot.part]
    counts: dict[int, int] = {}
    for m in work.members:
        if not m.preload and m.bits != 32:
            counts[m.bits] = counts.get(m.bits, 0) + 1
    return [costs.decode_call_s[b] + counts[b] * costs.decode_piece_s[b] if b in counts else 0.0 for b in decode_bits]


def _handovers(trace: list) -> list[float]:
    """Seconds from a chunk's io_end to its compute_start, for chunks the compute thread waited for."""
    io_end = {key: t for event, key, t in trace if event == "io_end"}
    out, last_free = [], None
    for event, key, t in trace:
        if event == "compute_start" and key in io_end and (last_free is None or last_free < io_end[key]):
            out.append(t - io_end[key])
        elif event == "compute_end":
            last_free = t
    return out


def trace_lanes(trace: list) -> tuple[float, float, float]:
    """(IO lane busy s, compute lane kernel s, embedding s) of one traced call."""
    start = {key: t for event, key, t in trace if event == "io_start"}
    io = sum(t - start[key] for event, key, t in trace if event == "io_end" and key in start)
    begins = [t for event, _, t in trace if event == "compute_start"]
    ends = [t for event, _, t in trace if event == "compute_end"]
    compute = sum(e - b for b, e in zip(begins, ends, strict=True))
    call = next(t for event, _, t in trace if event == "call_start")
    embed = next(t for event, _, t in trace if event == "embed_end") - call
    return io, compute, embed


def measure_chunk_overhead(store: Store, repeats: int = 200) -> float:
    """The IO thread's per-chunk bookkeeping: arena allocation, views, free."""
    shape = piece_shape(store.spec, store.shards_per_layer, "attn")
    pool = WeightPool(1 << 30, 0)
    nbytes = 4 * (shape.rows * shape.cols + shape.bias_len)
    layout = store.version(0, 0, "attn", max(store.bits)).layout

    def once() -> None:
        chunk_views(pool.allocate(nbytes), layout, 1)
        pool.free_oldest(nbytes)

    return _median_s(once, repeats)


def measure_device(
    store: Store,
    seq_len: int = 128,
    io_bandwidth_Bps: float | None = None,
    progress: Progress = lambda items, total, what: items,
) -> DeviceProfile:
    """Measure this machine for `store`'s shapes (see the module docstring)."""
    spec = store.spec
    seq_lens = sorted({min(n, spec.max_positions) for n in (16, 64, seq_len, min(2 * seq_len, 512))})
    attention = _kernel(store, "attn", max(1, store.shards_per_layer // DEFAULT_CHUNKS_PER_BLOCK), seq_len)
    # what the IO thread does next to compute: decoding runs of the store's smallest bitwidth
    decode_bits = min(store.bits)
    group = store.version(0, 0, "attn", decode_bits).layout.group_size
    codes, scales, zeros, weights = _stored_run(store, "attn", decode_bits, 2)
    decoded = torch.empty(weights)

    def busy_decoding() -> None:
        decode_weights_into(codes, scales, zeros, decode_bits, group, decoded)

    steps = ["reads", "threads", "decode", "compute", "embedding", "overhead", "calibration"]
    figures: dict = {}
    for step in progress(iter(steps), len(steps), "profiling device"):
        if step == "reads":
            figures["reads"] = measure_reads(store)
        elif step == "threads":
            figures["threads"] = _pick_threads(store, seq_len, busy_decoding)
        elif step == "decode":
            figures["decode"] = measure_decode(store, attention, figures["threads"])
        elif step == "compute":
            figures["compute"] = measure_compute(store, seq_lens, figures["threads"], busy_decoding)
        elif step == "embedding":
            figures["embed"] = measure_embed(store, seq_lens, figures["threads"])
        elif step == "overhead":
            figures["overhead"] = measure_chunk_overhead(store)
        else:
            figures["calibration"] = calibrate(store, _profile(store, figures, io_bandwidth_Bps, seq_lens), seq_len)
    profile = _profile(store, figures, io_bandwidth_Bps, seq_lens)
    return replace(profile, calibration=figures["calibration"])


def _profile(store: Store, figures: dict, io_bandwidth_Bps: float | None, seq_lens: list[int]) -> DeviceProfile:
    bandwidth, latency = figures["reads"]
    compute, fit_error = figures["compute"]
    return DeviceProfile(
        device=f"{platform.node()}: {_cpu_name()}, {os.cpu_count()} cores",
        model_shape=model_shape(store),
        compute_threads=figures["threads"],
        read_bandwidth_Bps=bandwidth,
        request_latency_s=latency,
        emulated_bandwidth_Bps=io_bandwidth_Bps,
        io_chunk_overhead_s=figures["overhead"],
        decode=figures["decode"],
        compute=compute,
        embed_s=figures["embed"],
        fit_error=fit_error,
        note=f"measured by sticc profile device on {store.spec.name}, sequence lengths {seq_lens}",
    )


def _pick_threads(store: Store, seq_len: int, busy: Callable[[], object]) -> int:
    """Compute threads for a streamed call: 1 or all cores but the IO thread's, whichever runs a
    chunk faster next to the IO thread. Never more: an OpenMP team that shares a core with the IO
    thread spins at its barriers, and calls slow down by 10-40x (measured on the 2-core VM)."""
    candidates = sorted({1, max(1, (os.cpu_count() or 1) - 1)})
    if len(candidates) == 1:
        return 1
    default = torch.get_num_threads()
    spc = max(1, store.shards_per_layer // DEFAULT_CHUNKS_PER_BLOCK)
    kernels = [_kernel(store, part, spc, seq_len) for part in PARTS]
    timings = {}
    with _Background(busy), torch.inference_mode():
        for threads in candidates:
            torch.set_num_threads(threads)
            for kernel in kernels:
                kernel()
            timings[threads] = sum(_median_s(kernel, 7) for kernel in kernels)
    torch.set_num_threads(default)
    return min(timings, key=lambda t: (timings[t], t))


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
