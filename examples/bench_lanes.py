"""Do the lanes fight? Each lane's time inside a call against the same work alone, from traces.

For a compiled runner (OUT), three kinds of calls, interleaved, cold (the store evicted first), in
this process:
- in a call: the runner as compiled, traced (`forward(trace=...)`);
- IO alone: the IO lane's loads with a compute lane that only takes and releases each chunk
  (`sticc.bench.modes.io_only`);
- compute alone: the same plan compiled with a ring that admits every chunk, every load done
  before the compute lane starts (`sticc.bench.modes.with_io_first`).
The IO lane's time is the sum over chunks of io_start..io_end (ring space taken to handed over);
the compute lane's is the call from the embedding's end to its last chunk (dequantization,
kernels, joins and the steps between them) less its waits for the IO lane; the embedding's is
call start to embedding end.
Prints medians and the ratios inside / alone, and the plan's physical limit: the larger of the
compute lane alone (every core) and the embedding plus the IO of every streamed byte at the
device's bandwidth (OUT/device.json's measured cold-read bandwidth, or its emulated flash cap);
the call's median against it.
Run: python examples/bench_lanes.py OUT [--runs 9] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch

from codegen import emit_runner, load_runner, write_output
from sticc.base.measure import evict_from_page_cache
from sticc.bench.lane_fit import trace_by_event
from sticc.bench.modes import io_only, with_io_first
from sticc.bench.suite import timing_ids
from sticc.ir.plan import memory_model, read_plan
from sticc.model.store import Store
from sticc.profile.device import DeviceProfile
from sticc.runtime.core import TraceEvent, TraceEventName


def lanes(trace: list[TraceEvent]) -> dict[str, float]:
    events = trace_by_event(trace)
    io_end = events.get(TraceEventName.IO_END, {})
    io = sum(io_end[k] - t for k, t in events.get(TraceEventName.IO_START, {}).items())
    embed_end = events[TraceEventName.EMBED_END][-1]
    compute_start = events.get(TraceEventName.IO_ALL_DONE, {}).get(-1, embed_end)
    starts, ends = events.get(TraceEventName.COMPUTE_START, {}), events.get(TraceEventName.COMPUTE_END, {})
    compute = (max(ends.values()) - compute_start) if ends else 0.0
    # less the time the compute lane waited for the IO lane (a chunk not yet handed over)
    previous = compute_start
    for key in sorted(starts):
        if io_end.get(key, 0.0) > previous:
            compute -= starts[key] - previous
        previous = ends.get(key, starts[key])
    return {"io": io, "compute": compute, "embed": embed_end - events[TraceEventName.CALL_START][-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="a directory written by `sticc compile`")
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    module = load_runner(args.out / "runner.py")
    store = Store.open(module.Runner.DEFAULT_STORE)
    plan = read_plan(store, args.out / "plan.json")
    memory = memory_model(store, plan.shards, plan.shards_per_chunk, plan.targets.seq_len)
    with tempfile.TemporaryDirectory(prefix="sticc-lanes-") as tmp:
        roomy = plan.__class__(**{**plan.__dict__, "memory_budget_bytes": memory.all_chunks_bytes})
        write_output(tmp, emit_runner(store, roomy, store.path))
        runners = {
            "call": module.Runner(str(store.path)),
            "io alone": io_only(module.Runner)(str(store.path)),
            "compute alone": with_io_first(load_runner(Path(tmp) / "runner.py").Runner)(str(store.path)),
        }
        ids = torch.tensor([timing_ids(store.spec.vocab, plan.targets.seq_len)])
        measured: dict[str, list[dict[str, float]]] = {name: [] for name in runners}
        for run in range(args.runs + 1):  # the first round is not counted
            for name, runner in runners.items():
                evict_from_page_cache(store.data_path)
                trace: list[TraceEvent] = []
                runner.forward(ids, trace=trace)
                if run:
                    measured[name].append({**lanes(trace), "latency": runner.last_stats["latency_s"]})
        for runner in runners.values():
            runner.close()
    median = {name: {k: statistics.median(r[k] for r in rows) for k in rows[0]} for name, rows in measured.items()}
    call, io_alone, compute_alone = median["call"], median["io alone"], median["compute alone"]
    device = DeviceProfile.read(args.out / "device.json") if (args.out / "device.json").is_file() else None
    bandwidth = module.Runner.IO_BANDWIDTH_CAP_BPS or (device.read_bandwidth_Bps if device else None)
    streamed = plan.predicted.io_bytes - 4 * store.spec.hidden * 2 * plan.targets.seq_len  # without the embedding rows
    limit = None
    if bandwidth:
        limit = {"compute_s": compute_alone["compute"], "io_s": compute_alone["embed"] + streamed / bandwidth}
        limit["limit_s"] = max(limit["compute_s"], limit["io_s"])
    print(f"{args.out}: {plan.targets.seq_len} tokens, {args.runs} cold calls of each kind, medians (ms)")
    print(f"{'lane':10} {'alone':>8} {'in a call':>10} {'ratio':>7}")
    for lane, alone in (("io", io_alone["io"]), ("compute", compute_alone["compute"]), ("embed", compute_alone["embed"])):
        print(f"{lane:10} {alone * 1e3:8.1f} {call[lane] * 1e3:10.1f} {call[lane] / alone:7.2f}")
    print(f"call latency {call['latency'] * 1e3:.1f} ms; compute alone + embedding "
          f"{(compute_alone['compute'] + compute_alone['embed']) * 1e3:.1f} ms; IO alone + embedding "
          f"{(io_alone['io'] + io_alone['embed']) * 1e3:.1f} ms")
    if limit:
        print(f"physical limit {limit['limit_s'] * 1e3:.1f} ms = max(compute on every core {limit['compute_s'] * 1e3:.1f}, "
              f"embedding + {streamed / 1e6:.1f} MB at {bandwidth / 1e6:.0f} MB/s {limit['io_s'] * 1e3:.1f}); "
              f"the call's median is {call['latency'] / limit['limit_s']:.2f}x it")
    if args.json:
        args.json.write_text(json.dumps({"out": str(args.out), "runs": args.runs, "medians": median, "limit": limit}, indent=1) + "\n")


if __name__ == "__main__":
    main()
