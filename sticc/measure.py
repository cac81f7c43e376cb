"""Measuring protocol: cold page cache, fresh processes, min/median/max (see DESIGN.md)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from sticc.errors import UserError


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


# a fresh process: build the runner (preloads happen here), evict the store, time one forward of
# `seq_len` distinct token ids (batch 1), print the runner's stats as JSON
_FORWARD_DRIVER = """
import importlib.util, json, os, sys
import torch
path, store, seq_len, cold = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "cold"
spec = importlib.util.spec_from_file_location("sticc_runner", path)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
runner = module.Runner(store)
vocab = runner.SHAPE.vocab
ids = (torch.randperm(vocab - 1000, generator=torch.Generator().manual_seed(seq_len))[:seq_len] + 999)[None]
if cold:
    fd = os.open(os.path.join(store, runner.DATA_FILE), os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)
runner.forward(ids)
print(json.dumps(runner.last_stats))
"""


def time_forward_process(runner: str | Path, store: str | Path, seq_len: int, cold: bool = True) -> dict:
    """One forward of `seq_len` distinct tokens in a fresh process: the runner's `last_stats`."""
    command = [sys.executable, "-c", _FORWARD_DRIVER, str(runner), str(store), str(seq_len), "cold" if cold else "warm"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise UserError(f"{runner} failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def encode_in_process(runner_path: str | Path, store: str | Path, texts: list[str]):
    """Pooled embeddings [n, hidden] of `texts` from a generated runner loaded here (for fidelity,
    not timing)."""
    from codegen import load_runner

    runner = load_runner(runner_path).Runner(str(store))
    try:
        return runner.encode(texts)
    finally:
        runner.close()
