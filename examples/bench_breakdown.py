"""Where a compiled runner's latency goes, against the preload baseline (docs/benchmarks.md).

For the runner in OUT it measures, in one process and interleaved so the ratios are comparable:
  preload 2 threads   every weight fp32 in memory, torch's threads (2 here): the preload case
  preload 1 thread    the same kernels on the runner's single compute thread: compute alone
  io lane             the runner's IO thread alone: read, crc-check and dequantize one call's pieces
  streamed            the runner's real call (cold): IO thread and compute thread together
and, from the streamed call's trace, how long the compute thread computed and how long it waited
for chunks. Run: python examples/bench_breakdown.py OUT [--runs 7]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from codegen import emit_runner, load_runner, write_output
from sticc.bench import preload_plan, timing_ids
from sticc.measure import evict_from_page_cache, time_io_lane
from sticc.profile_device import trace_lanes
from sticc.report import read_plan_json
from sticc.store import Store


def traced_call(runner, ids: torch.Tensor) -> dict:
    """One cold call with a trace: latency, embedding, compute busy and waiting time (seconds)."""
    evict_from_page_cache(Path(runner.store_dir) / runner.DATA_FILE)
    trace: list = []
    runner.forward(ids, trace=trace)
    _, compute, embed = trace_lanes(trace)
    events = sorted(trace, key=lambda e: e[2])
    last_end = next(t for name, _, t in events if name == "embed_end")
    waits = 0.0  # gaps before each chunk's compute, after the previous chunk's (or the embedding's) end
    for name, _, t in events:
        if name == "compute_start":
            waits += max(0.0, t - last_end)
        elif name == "compute_end":
            last_end = t
    return {"latency": runner.last_stats["latency_s"], "embed": embed, "compute": compute, "wait": waits}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="a directory written by `sticc compile`")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    plan = read_plan_json(args.out / "plan.json")
    threads = torch.get_num_threads()  # torch's default, before the runner sets its own
    runner = load_runner(args.out / "runner.py").Runner()
    store = Store.open(runner.store_dir)
    with tempfile.TemporaryDirectory() as preload_dir:
        source = emit_runner(store, preload_plan(store, plan["targets"]["seq_len"]), store.path)
        preload = load_runner(write_output(preload_dir, source)).Runner(str(store.path), pin_embeddings=True)
    ids = torch.tensor([timing_ids(store.spec.vocab, plan["targets"]["seq_len"])])
    rows: dict[str, list[float]] = {}
    for _ in range(args.runs):
        for name, count in ((f"preload {threads} threads", threads), ("preload 1 thread", 1)):
            torch.set_num_threads(count)
            start = time.perf_counter()
            preload.forward(ids)
            rows.setdefault(name, []).append(time.perf_counter() - start)
        torch.set_num_threads(runner.COMPUTE_THREADS or threads)
        evict_from_page_cache(store.data_path)
        rows.setdefault("io lane alone", []).append(time_io_lane(runner, runner.io_bandwidth_cap_Bps))
        for key, value in traced_call(runner, ids).items():
            rows.setdefault(f"streamed: {key}", []).append(value)
    print(f"{args.out}: {plan['model']}, {plan['targets']['seq_len']} tokens, medians of {args.runs} interleaved runs "
          f"(runner: {runner.COMPUTE_THREADS or threads} compute thread(s), 1 IO thread)")
    base = statistics.median(rows[f"preload {threads} threads"])
    for name, values in rows.items():
        median = statistics.median(values)
        print(f"  {name:28s} {median * 1e3:7.1f} ms  ({median / base:.2f}x preload)")


if __name__ == "__main__":
    main()
