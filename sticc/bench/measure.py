"""Timing and encoding with a compiled runner, for scripts: a cold forward in a fresh process as
`sticc bench` runs it, and embeddings from a runner loaded in this process."""

from __future__ import annotations

from pathlib import Path

from codegen import load_runner
from sticc.bench.suite import Settings, run_child, runner_spec, timing_ids
from sticc.model.store import Store


def time_forward_process(runner: str | Path, store: str | Path, seq_len: int, cold: bool = True) -> dict:
    """One forward of `seq_len` distinct tokens (batch 1) in a fresh process, as `sticc bench` runs
    its cases (`sticc.bench.cases`): the call's `latency_s`, `peak_weight_bytes`, `disk_read_bytes`."""
    spec = runner_spec(str(runner), Path(runner), Path(store), Settings(1, cold, None))
    spec["input_ids"] = timing_ids(Store.open(store).spec.vocab, seq_len)
    return run_child(spec, sample_rss=False)[0]


def encode_in_process(runner_path: str | Path, store: str | Path, texts: list[str]):
    """Embeddings [n, dim] (a tensor) of `texts` from a generated runner loaded here, through the
    checkpoint's pipeline (for fidelity, not timing)."""
    runner = load_runner(runner_path).Runner(str(store))
    try:
        return runner.encode(texts, convert_to_tensor=True)
    finally:
        runner.close()
