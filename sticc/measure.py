"""Measuring protocol: cold page cache, fresh processes, min/median/max (see DESIGN.md)."""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path


def evict_from_page_cache(path: str | Path) -> None:
    """Drop a file's pages from the page cache (no root needed), so the next read is cold."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Spread:
    """min / median / max of repeated measurements."""

    min: float
    median: float
    max: float

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        return cls(min(values), statistics.median(values), max(values))


def time_io_lane(runner, cap_Bps: float | None) -> float:
    """Seconds for a runner's IO thread to read, check and dequantize one call's pieces, with no compute."""
    runner.reader.bandwidth_cap_Bps = cap_Bps
    loader_class = type(runner).forward.__globals__["Loader"]  # the runner's own inlined runtime
    start_s = time.perf_counter()
    runner.reader.start_cap_clock()
    loads = loader_class(runner.LOADS, runner.reader, runner.pool, runner.preloaded, runner.pinned_chunks).start()
    try:
        for item in runner.LOADS:
            loads.free(loads.wait(item.key))
    finally:
        loads.close()
    return time.perf_counter() - start_s


def time_forward(runner, input_ids, cap_Bps: float | None, cold: bool, overlap: bool = True) -> float:
    """One call's latency as the runner reports it, optionally after evicting its store."""
    runner.reader.bandwidth_cap_Bps = cap_Bps
    if cold:
        evict_from_page_cache(Path(runner.store_dir) / runner.DATA_FILE)
    runner.forward(input_ids, overlap=overlap)
    return runner.last_stats["latency_s"]


def time_forward_process(runner: str | Path, store: str | Path, seq_len: int, cold: bool = True) -> dict:
    """One forward of `seq_len` distinct tokens (batch 1) in a fresh process, as `sticc bench` runs
    its cases (`sticc.bench_case`): the call's `latency_s`, `peak_weight_bytes`, `disk_read_bytes`."""
    from sticc.bench import Settings, run_child, runner_spec, timing_ids
    from sticc.store import Store

    spec = runner_spec(str(runner), Path(runner), Path(store), Settings(1, cold, None))
    spec["input_ids"] = timing_ids(Store.open(store).spec.vocab, seq_len)
    return run_child(spec, sample_rss=False)[0]


def encode_in_process(runner_path: str | Path, store: str | Path, texts: list[str]):
    """Pooled embeddings [n, hidden] of `texts` from a generated runner loaded here (for fidelity,
    not timing)."""
    from codegen import load_runner

    runner = load_runner(runner_path).Runner(str(store))
    try:
        return runner.encode(texts)
    finally:
        runner.close()
