"""The main job on the embedded default model (all-MiniLM-L6-v2): shard, compile, run, compare.

Shards MiniLM into a store, compiles uniform runners at several bitwidths, runs each in fresh
processes with a cold page cache on example sentences, and prints fidelity against fp32 (cosine of
the pooled embeddings), latency (min/median/max) and weight memory. Run: python examples/quickstart.py
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from codegen import emit_runner, write_output
from solvers.uniform import uniform_plan
from sticc.default_model import minilm_store
from sticc.measure import Spread, run_runner_process

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A man is playing a guitar on a small stage.",
    "Phones have little memory, so the model streams its weights from flash.",
    "What time does the first train leave tomorrow morning?",
    "The committee postponed its decision until the next meeting.",
    "Fresh bread smells wonderful early in the morning.",
    "Quantum computers may one day break today's public-key cryptography.",
    "She finished the marathon in just under four hours.",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("work"), help="where the store and runners go")
    parser.add_argument("--bits", default="32,16,8,6,5,4,3", help="bitwidths to compile uniform runners at")
    parser.add_argument("--runs", type=int, default=3, help="fresh-process cold-cache runs per runner")
    args = parser.parse_args()
    console = Console()
    console.print(f"the all-MiniLM-L6-v2 store: {args.work / 'minilm-store'} (sharded on first use)")
    store, store_dir = minilm_store(args.work)
    fp32_nbytes = store.spec.fp32_weight_nbytes
    results = {}
    for bits in [int(b) for b in args.bits.split(",")]:
        out = args.work / f"runner-{bits}b"
        write_output(out, emit_runner(store, uniform_plan(store, bits), store_dir))
        runs = [run_runner_process(out / "runner.py", SENTENCES, store_dir) for _ in range(args.runs)]
        results[bits] = runs
        console.print(f"ran {out}/runner.py x{args.runs}")
    reference = torch.tensor(results[32][0].embeddings) if 32 in results else None
    table = Table(title=f"all-MiniLM-L6-v2, {len(SENTENCES)} sentences per call, cold cache, {args.runs} fresh processes each")
    for column in ("bits", "cosine vs fp32\nmin / mean", "latency ms\nmin / med / max", "peak weight\nMB (% fp32)", "IO MB\nper call"):
        table.add_column(column, justify="right")
    for bits, runs in results.items():
        embeddings = torch.tensor(runs[0].embeddings)
        if reference is not None:
            cosine = torch.nn.functional.cosine_similarity(embeddings, reference)
            fidelity = f"{cosine.min():.5f} / {cosine.mean():.5f}"
        else:
            fidelity = "no fp32 run"
        latency = Spread.of([r.latency_s * 1e3 for r in runs])
        peak = statistics.median(r.peak_weight_bytes for r in runs)
        table.add_row(
            str(bits), fidelity, f"{latency.min:.0f} / {latency.median:.0f} / {latency.max:.0f}",
            f"{peak / 1e6:.2f} ({100 * peak / fp32_nbytes:.1f}%)", f"{runs[0].io_bytes / 1e6:.2f}",
        )
    console.print(table)
    console.print(f"fp32 weights: {fp32_nbytes / 1e6:.1f} MB. Runners and plans: {args.work}/runner-*b/")


if __name__ == "__main__":
    main()
