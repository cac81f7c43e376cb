"""Compute only: sticc's kernels (every shard preloaded at fp32) against transformers' BertModel.

Same process, same token ids (batch 1, sequence length 128), medians of 15 calls after warm-up, at
1 and 2 torch threads. Needs transformers (the test extra). Run: python examples/bench_compute.py
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import transformers

from codegen import emit_runner, load_runner, write_output
from solvers.uniform import uniform_plan
from sticc.base.progress import progress_bar
from sticc.ir.graph import ShardChoice
from sticc.ir.plan import SolverInfo, make_plan
from sticc.model.default_model import minilm_dir, minilm_store


def median_ms(call, repeats: int = 15) -> float:
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("work"))
    parser.add_argument("--shards-per-chunk", type=int, default=12)
    args = parser.parse_args()
    store, store_dir = minilm_store(args.work, progress_bar)
    every = tuple(ShardChoice(c.layer, c.index, 32, preload=True) for c in uniform_plan(store, 32).shards)
    plan = make_plan(store, every, SolverInfo("hand", "GIVEN"), shards_per_chunk=args.shards_per_chunk)
    out = args.work / "compute-preloaded"
    write_output(out, emit_runner(store, plan, store_dir))
    module = load_runner(out / "runner.py")
    runner = module.Runner(str(store_dir))
    reference = transformers.BertModel.from_pretrained(minilm_dir()).eval()
    ids = torch.randint(1000, store.spec.vocab, (1, 128), generator=torch.Generator().manual_seed(0))
    for threads in (1, 2):
        torch.set_num_threads(threads)
        with torch.inference_mode():
            ours = median_ms(lambda: runner.forward(ids))
            theirs = median_ms(lambda: reference(input_ids=ids))
        print(f"{threads} thread(s): sticc kernels ({args.shards_per_chunk} shards per chunk) {ours:.1f} ms, "
              f"transformers BertModel {theirs:.1f} ms, ratio {ours / theirs:.2f}")


if __name__ == "__main__":
    main()
