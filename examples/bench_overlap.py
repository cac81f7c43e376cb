"""Does IO really overlap compute? Streamed latency against max(IO, compute) and IO + compute.

For a plan (default: MiniLM, every shard at 8 bits, sequence length 128) it measures, in one
process and one run so the ratios are comparable:
  io lane      the IO thread alone: read, crc32-check and dequantize every piece of one call
  compute lane the same model with every shard preloaded at fp32: kernels only, no IO work
  serial       the same plan in a runner whose arena holds the whole call: all loads, then compute
  streamed     the runner's real call, IO thread and compute together
at several read bandwidths. Bandwidth caps are an emulation of slower flash (the loader delays
reads); "disk" is this machine's disk with the page cache evicted before every run.
Writes a table, a JSON file and a PNG. Run: python examples/bench_overlap.py
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from codegen import emit_runner, load_runner, write_output
from solvers.uniform import uniform_plan
from sticc.cli import progress_bar
from sticc.default_model import minilm_store
from sticc.measure import Spread, evict_from_page_cache, time_forward, time_io_lane
from sticc.plan import ShardChoice, SolverInfo, make_plan
from sticc.runtime import parse_quantity
from sticc.store import Store


def compiled_runner(store: Store, plan, store_dir: Path, out: Path):
    write_output(out, emit_runner(store, plan, store_dir))
    return load_runner(out / "runner.py").Runner(str(store_dir))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("work"))
    parser.add_argument("--bits", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--caps", default="disk,400MB/s,200MB/s,100MB/s,50MB/s")
    parser.add_argument("--out", type=Path, default=Path("docs/figures/overlap"))
    args = parser.parse_args()
    store, store_dir = minilm_store(args.work)
    streamed = compiled_runner(store, uniform_plan(store, args.bits, args.seq_len), store_dir, args.work / f"overlap-{args.bits}b")
    roomy = uniform_plan(store, args.bits, args.seq_len, memory_bytes=store.spec.fp32_weight_nbytes)
    serial = compiled_runner(store, roomy, store_dir, args.work / f"overlap-{args.bits}b-serial")
    every = tuple(ShardChoice(c.layer, c.index, 32, preload=True) for c in uniform_plan(store, 32).shards)
    compute_only = compiled_runner(store, make_plan(store, every, SolverInfo("hand", "GIVEN"), args.seq_len), store_dir, args.work / "overlap-preloaded")
    input_ids = torch.randint(1000, store.spec.vocab, (1, args.seq_len), generator=torch.Generator().manual_seed(0))
    data = store.data_path
    rows = []
    for cap_text in args.caps.split(","):
        cap = None if cap_text == "disk" else parse_quantity(cap_text, "B/s")
        io, compute, one_then_other, both = [], [], [], []
        for _ in progress_bar(iter(range(args.runs)), args.runs, f"{cap_text:>9}"):
            evict_from_page_cache(data)
            io.append(time_io_lane(streamed, cap))
            compute.append(time_forward(compute_only, input_ids, None, cold=False))
            one_then_other.append(time_forward(serial, input_ids, cap, cold=True, overlap=False))
            both.append(time_forward(streamed, input_ids, cap, cold=True))
        rows.append({
            "read": cap_text if cap is None else f"{cap_text} (emulated)", "io_s": Spread.of(io).__dict__,
            "compute_s": Spread.of(compute).__dict__, "serial_s": Spread.of(one_then_other).__dict__,
            "streamed_s": Spread.of(both).__dict__,
        })
    table = Table(title=f"{store.spec.name}, uniform {args.bits}-bit, seq {args.seq_len}, {streamed.last_stats['io_bytes'] / 1e6:.1f} MB read per call; medians of {args.runs}")
    for column in ("read", "IO ms", "compute ms", "max ms", "sum ms", "serial ms", "streamed ms", "hidden"):
        table.add_column(column, justify="right")
    for row in rows:
        io, compute, both = row["io_s"]["median"], row["compute_s"]["median"], row["streamed_s"]["median"]
        hidden = (io + compute - both) / min(io, compute)
        row["hidden_fraction"] = hidden
        table.add_row(row["read"], f"{io * 1e3:.1f}", f"{compute * 1e3:.1f}", f"{max(io, compute) * 1e3:.1f}",
                      f"{(io + compute) * 1e3:.1f}", f"{row['serial_s']['median'] * 1e3:.1f}", f"{both * 1e3:.1f}",
                      f"{100 * hidden:.0f}%")
    Console().print(table)
    print("hidden: the share of the shorter lane that overlapped the longer one, (IO + compute - streamed) / min(IO, compute)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    plot(rows, args.out.with_suffix(".png"), table.title)


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [r["read"].replace(" (emulated)", "\n(emulated)") for r in rows]
    x = range(len(rows))
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ms = lambda key: [r[key]["median"] * 1e3 for r in rows]  # noqa: E731
    ax.bar([i - 0.32 for i in x], ms("io_s"), 0.16, label="IO lane alone")
    ax.bar([i - 0.16 for i in x], ms("compute_s"), 0.16, label="compute lane alone")
    ax.bar(list(x), [a + b for a, b in zip(ms("io_s"), ms("compute_s"), strict=True)], 0.16, label="IO + compute (sum)", color="lightgray")
    ax.bar([i + 0.16 for i in x], ms("serial_s"), 0.16, label="all loads, then compute (measured)", color="gray")
    ax.bar([i + 0.32 for i in x], ms("streamed_s"), 0.16, label="sticc runner (streamed)", color="black")
    ax.set_xticks(list(x), labels)
    ax.set_ylabel("latency, ms (median)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
