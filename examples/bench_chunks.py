"""Chunk size against latency and peak weight memory (MiniLM, cold cache, sequence length 128).

For each --shards-per-chunk, compiles a uniform runner and reports the median of 9 cold calls
(page cache evicted before each) and the peak weight bytes, at 1 and at 2 torch threads.
Run: python examples/bench_chunks.py [--bits 4]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from codegen import emit_runner, load_runner, write_output
from solvers.uniform import uniform_plan
from sticc.default_model import minilm_store
from sticc.measure import time_forward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("work"))
    parser.add_argument("--bits", type=int, default=4)
    parser.add_argument("--chunks", default="1,2,3,4,6,12")
    args = parser.parse_args()
    store, store_dir = minilm_store(args.work)
    ids = torch.randint(1000, store.spec.vocab, (1, 128), generator=torch.Generator().manual_seed(0))
    for shards_per_chunk in [int(c) for c in args.chunks.split(",")]:
        out = args.work / f"chunks-{args.bits}b-{shards_per_chunk}"
        write_output(out, emit_runner(store, uniform_plan(store, args.bits, shards_per_chunk=shards_per_chunk), store_dir))
        module = load_runner(out / "runner.py")
        runner = module.Runner(str(store_dir))
        for threads in (1, 2):
            torch.set_num_threads(threads)
            latencies = [time_forward(runner, ids, None, cold=True) * 1e3 for _ in range(9)]
            print(f"{args.bits}-bit, {shards_per_chunk:2d} shards per chunk, {threads} thread(s): "
                  f"median {statistics.median(latencies):.1f} ms, peak {runner.last_stats['peak_weight_bytes'] / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
