"""Measuring protocol: cold page cache, fresh processes, min/median/max (see DESIGN.md)."""

from __future__ import annotations

import os
import statistics
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
