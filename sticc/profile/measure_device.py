"""Measuring each lane of the device alone (the first half of `sticc profile device`).

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
  the worst relative fit error reported; the join alike.

The second half needs compiled runners, so it lives above codegen (`sticc.bench.lane_fit`): a
runner's cold embedding, and the lane fit to traced calls of compiled plans.
"""

from __future__ import annotations

import itertools
import os
import platform
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sticc.base.measure import evict_from_page_cache
from sticc.base.progress import Progress, quiet
from sticc.base.schema import PARTS, Part
from sticc.model.sharding import decoder_shape, default_shards_per_chunk, piece_shape, spec_piece_blocks, stored_parts
from sticc.model.store import Store
from sticc.profile.device import Decode, DeviceProfile, FitError, PartCompute, TokenCompute, model_shape
from sticc.runtime.core import READ_ALIGN_BYTES, Ring, StoreReader, checksum
from sticc.runtime.decode import PoolViews, RunDecoder
from sticc.runtime.decoder import attention_chunk as decoder_attention_chunk
from sticc.runtime.decoder import call_step, lm_head_chunk, rope_tables
from sticc.runtime.decoder import ffn_chunk as decoder_ffn_chunk
from sticc.runtime.decoder import norm as decoder_norm
from sticc.runtime.encoder import PART_BLOCKS, attention_chunk, attention_mask_bias, ffn_chunk, residual_norm

ROTATE_BYTES = 64 << 20  # dequantization sources rotate through this much memory (beyond the caches)


def _median_s(run: Callable[[], object], repeats: int) -> float:
    return statistics.median(_times_s(run, repeats))


def _least_s(run: Callable[[], object], repeats: int) -> float:
    """The least of `repeats` runs: an isolated figure's intrinsic cost, what the noise of a shared
    machine cannot lower (the lane fit scales it to what calls see)."""
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


def fit_nonnegative(features: np.ndarray, targets: np.ndarray, relative: bool = True) -> np.ndarray:
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
    latency, per_byte = fit_nonnegative(np.stack([np.ones_like(sizes), sizes], 1), times, relative=False)
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
    spc = default_shards_per_chunk(store.shards_per_layer)
    return sorted({1, min(2, store.shards_per_layer), spc})


def measure_decode(store: Store, repeats: int = 9) -> dict[int, Decode]:
    """Dequantization cost per bitwidth on the compute lane's threads: runs of 1 and several real
    stored pieces, laid out one slot apart as in the ring, the source rotating through more memory
    than the caches hold; fitted to call + weights / rate over both parts and run lengths."""
    out = {}
    with torch.inference_mode():
        for bits in sorted(store.bits):
            rows = []
            for part in stored_parts(store.lm_head_shards):
                version = store.version(store.spec.layers if part is Part.LM_HEAD else 0, 0, part, bits)
                layout = version.layout
                blob = np.fromfile(store.data_path, np.uint8, layout.nbytes, offset=version.extent.offset)
                blocks, bias_blocks = _part_blocks(store, part)
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
            call, per_weight = fit_nonnegative(np.stack([np.ones_like(weights_arr), weights_arr], 1), times)
            out[bits] = Decode(float(call), 1.0 / max(float(per_weight), 1e-15))
    return out


def _part_blocks(store: Store, part: Part) -> tuple[int, int]:
    """(row blocks, bias blocks) of a piece of `part` as the runner's kernels take it."""
    return spec_piece_blocks(store.spec, part) if store.spec.is_decoder else PART_BLOCKS[part]


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
    if part == Part.ATTN:
        heads = spec.heads // store.shards_per_layer
        return lambda: attention_chunk(acc, x, mask, weights, biases, heads, spec.head_dim)
    return lambda: ffn_chunk(acc, x, weights, biases, spec.activation)


def _fit_prompt_chunks(
    make_kernel: Callable[[int, int], Callable[[], None]], counts: list[int], seq_lens: list[int], repeats: int,
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """One part's chunk kernels (`make_kernel(shards, seq_len)`) timed over shards x sequence length
    and fitted to c0 + cL*L + c1*s*L + c2*s*L^2: (coefficients, (fitted, measured) times)."""
    rows = []
    for seq_len in seq_lens:
        for shards in counts:
            kernel = make_kernel(shards, seq_len)
            kernel()
            rows.append((shards, seq_len, _least_s(kernel, repeats)))
    s = np.array([r[0] for r in rows], dtype=float)
    length = np.array([r[1] for r in rows], dtype=float)
    times = np.array([r[2] for r in rows])
    features = np.stack([np.ones_like(s), length, s * length, s * length * length], 1)
    coefficients = fit_nonnegative(features, times)
    return coefficients, (features @ coefficients, times)


def measure_compute(store: Store, seq_lens: list[int], repeats: int = 11) -> tuple[dict[str, PartCompute], FitError]:
    """Per-part chunk and join times over shards x sequence length on the compute lane's threads,
    fitted (the least of the repeats: `_least_s`)."""
    spec = store.spec
    results: dict[str, PartCompute] = {}
    errors = []
    with torch.inference_mode():
        for part in PARTS:
            coefficients, fitted = _fit_prompt_chunks(
                lambda shards, seq_len, part=part: _kernel(store, part, shards, seq_len), _shard_counts(store), seq_lens, repeats,
            )
            errors.append(fitted)
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
            j0, j1 = fit_nonnegative(np.stack([np.ones_like(lengths), lengths], 1), join_times)
            results[part] = PartCompute(tuple(float(c) for c in coefficients), (float(j0), float(j1)))
    predicted = np.concatenate([p for p, _ in errors])
    measured = np.concatenate([m for _, m in errors])
    worst, rms = _fit_error(predicted, measured)
    return results, FitError(worst, rms, len(measured))


def _decoder_kernel(store: Store, part: Part, shards: int, length: int, past: int) -> Callable[[], None]:
    """One decoder chunk's kernel (`sticc.runtime.decoder`) on random weights in kernel form, for a
    call adding `length` positions after `past` cached ones. The weights rotate through more memory
    than the caches hold: a one-token call reads every weight from memory once."""
    spec = store.spec
    shape = decoder_shape(spec, store.shards_per_layer, store.lm_head_shards)
    piece = piece_shape(spec, store.shards_per_layer, part, store.lm_head_shards)
    blocks, bias_blocks = spec_piece_blocks(spec, part)
    generator = torch.Generator().manual_seed(0)
    nbytes = shards * piece.rows * piece.cols * 4
    copies = max(1, min(32, ROTATE_BYTES // max(nbytes, 1))) if length == 1 else 1
    weights = [torch.randn(blocks, shards, piece.rows * piece.cols // blocks, generator=generator) * 0.05 for _ in range(copies)]
    biases = torch.zeros(bias_blocks, shards, piece.bias_len // bias_blocks)  # one empty block without a bias
    h = torch.randn(length, spec.hidden)
    acc = torch.zeros(length, spec.hidden)
    turn = itertools.cycle(weights)
    if part is Part.ATTN:
        rope = rope_tables(shape, past + length) if shape.position_kind == "rope" else None
        step = call_step(rope, past, length)
        cache = torch.randn(2, shape.kv_heads, past + length, shape.head_dim, generator=generator)
        heads = slice(0, shards * shape.kv_per_shard)
        return lambda: decoder_attention_chunk(
            acc, h, next(turn), biases, cache[0], cache[1], heads, step, shape.query_groups, shape.head_dim, shape.qkv_bias,
        )
    if part is Part.FFN:
        return lambda: decoder_ffn_chunk(acc, h, next(turn), biases, spec.activation, spec.ffn_kind == "gated")
    logits = torch.empty(length, shards * piece.rows)
    columns = tuple((i * piece.rows, (i + 1) * piece.rows) for i in range(shards))
    return lambda: lm_head_chunk(logits, h, next(turn), columns)


def _decoder_join(store: Store, length: int) -> Callable[[], None]:
    """A decoder block's join and the next block's norm (`DecoderRunner.join`, `block_input`) at `length`."""
    spec = store.spec
    x = torch.randn(length, spec.hidden)
    ones = torch.ones(spec.hidden)
    bias = ones if spec.norm_kind == "layernorm" else None

    def join() -> None:
        acc = x.new_zeros(length, spec.hidden)
        y = acc.add_(x)
        decoder_norm(y, ones, bias, spec.norm_kind, spec.layer_norm_eps)

    return join


def measure_decoder_compute(
    store: Store, seq_lens: list[int], contexts: list[int], repeats: int = 11,
) -> tuple[dict[Part, PartCompute], dict[Part, TokenCompute], FitError]:
    """A decoder's kernels per part (the LM head's too): prompts over shards x length, fitted as an
    encoder's (`measure_compute`); one-token calls over shards x cached positions, fitted to
    t0 + t1*s + t2*s*C; the joins alike. The least of the repeats (`_least_s`)."""
    compute, token, errors = {}, {}, []
    counts = _shard_counts(store)
    with torch.inference_mode():
        for part in stored_parts(store.lm_head_shards):
            coefficients, fitted = _fit_prompt_chunks(
                lambda shards, length, part=part: _decoder_kernel(store, part, shards, length, 0), counts, seq_lens, repeats,
            )
            errors.append(fitted)
            token_rows = []
            for context in contexts if part is Part.ATTN else contexts[:1]:
                for shards in counts:
                    kernel = _decoder_kernel(store, part, shards, 1, context - 1)
                    kernel()
                    token_rows.append((shards, context, _least_s(kernel, repeats)))
            ts = np.array([r[0] for r in token_rows], dtype=float)
            tc = np.array([r[1] for r in token_rows], dtype=float)
            token_times = np.array([r[2] for r in token_rows])
            # only attention reads the cache: the other parts' t2 is 0
            columns = [np.ones_like(ts), ts] + ([ts * tc] if part is Part.ATTN else [])
            token_features = np.stack(columns, 1)
            fitted = fit_nonnegative(token_features, token_times)
            t0, t1, t2 = (*fitted, 0.0) if part is not Part.ATTN else fitted
            errors.append((token_features @ fitted, token_times))
            join_rows = [(n, _least_s(_decoder_join(store, n), repeats * 3)) for n in seq_lens]
            lengths = np.array([r[0] for r in join_rows], dtype=float)
            j0, j1 = fit_nonnegative(np.stack([np.ones_like(lengths), lengths], 1), np.array([r[1] for r in join_rows]))
            compute[part] = PartCompute(tuple(float(c) for c in coefficients), (float(j0), float(j1)))
            token[part] = TokenCompute((float(t0), float(t1), float(t2)), _least_s(_decoder_join(store, 1), repeats * 3))
    predicted = np.concatenate([p for p, _ in errors])
    measured = np.concatenate([m for _, m in errors])
    worst, rms = _fit_error(predicted, measured)
    return compute, token, FitError(worst, rms, len(measured))


def profile_contexts(store: Store, context: int) -> tuple[int, ...]:
    """The cached positions a decoder's one-token kernels are measured at."""
    return tuple(sorted({min(n, store.spec.max_positions) for n in (16, max(16, context // 4), context)}))


# ----------------------------------------------------------------------------------------------
# Every lane
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LaneFigures:
    """What `measure_lanes` measured: each lane alone, before any fit to traced calls."""

    reads: tuple[float, float, float]  # read bandwidth (B/s), request latency (s), checksum rate (B/s)
    io_overhead_s: float
    decode: dict[int, Decode]
    compute: dict[str, PartCompute]
    fit_error: FitError
    threads: int
    seq_lens: tuple[int, ...]
    token: dict[Part, TokenCompute] | None = None  # decoders: one-token calls
    contexts: tuple[int, ...] = ()  # decoders: the cached positions those were measured at


def profile_seq_lens(store: Store, seq_len: int) -> tuple[int, ...]:
    """The sequence lengths the compute and embedding figures are measured at."""
    return tuple(sorted({min(n, store.spec.max_positions) for n in (16, 64, seq_len, min(2 * seq_len, 512))}))


def measure_lanes(store: Store, seq_len: int = 128, progress: Progress = quiet, context: int | None = None) -> LaneFigures:
    """Each lane of this machine alone, for `store`'s shapes (see the module docstring); a
    decoder's kernels at prompts around `seq_len` and one-token calls up to `context` cached positions."""
    seq_lens = profile_seq_lens(store, seq_len)
    contexts = profile_contexts(store, context or store.spec.max_positions) if store.spec.is_decoder else ()
    threads = torch.get_num_threads()  # the compute lane uses every core
    figures: dict = {}
    steps = ["reads", "decode", "compute", "overhead"]
    for step in progress(iter(steps), len(steps), "profiling device lanes"):
        if step == "reads":
            figures["reads"] = measure_reads(store)
        elif step == "decode":
            figures["decode"] = measure_decode(store)
        elif step == "compute" and store.spec.is_decoder:
            figures["compute"] = measure_decoder_compute(store, list(seq_lens), list(contexts))
        elif step == "compute":
            figures["compute"] = (*measure_compute(store, list(seq_lens)), None)
        else:
            figures["overhead"] = measure_io_overhead()
    compute, fit_error, token = figures["compute"][0], figures["compute"][-1], None
    if store.spec.is_decoder:
        compute, token, fit_error = figures["compute"]
    return LaneFigures(figures["reads"], figures["overhead"], figures["decode"], compute, fit_error, threads, seq_lens, token, contexts)


def device_profile(store: Store, lanes: LaneFigures, embed_s: tuple[float, float], io_bandwidth_Bps: float | None) -> DeviceProfile:
    """The profile of `lanes` and the embedding's e0 + e1*L, with no lane fit yet."""
    bandwidth, latency, checksum_Bps = lanes.reads
    compute, fit_error, threads, seq_lens = lanes.compute, lanes.fit_error, lanes.threads, lanes.seq_lens
    return DeviceProfile(
        device=f"{platform.node()}: {_cpu_name()}, {os.cpu_count()} cores",
        model_shape=model_shape(store),
        compute_threads=threads,
        read_bandwidth_Bps=bandwidth,
        request_latency_s=latency,
        checksum_Bps=checksum_Bps,
        emulated_bandwidth_Bps=io_bandwidth_Bps,
        io_chunk_overhead_s=lanes.io_overhead_s,
        decode=lanes.decode,
        compute=compute,
        embed_s=embed_s,
        fit_error=fit_error,
        note=f"measured by sticc profile device on {store.spec.name}, sequence lengths {seq_lens}"
        + (f", one-token calls over {lanes.contexts} cached positions" if lanes.token else ""),
        token=lanes.token,
    )
