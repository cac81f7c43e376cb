"""Are the planner's predictions honest? MiniLM plans at three latency targets and two lengths.

For each sequence length (default 128 and 32 tokens) this machine's device profile at that length
is taken from the cache (measured first if absent), and CP-SAT plans are compiled for a memory
budget (default 4 MB) at three latency targets. Each runner then runs in fresh processes, cold
cache, on distinct token ids, interleaved across plans. Prints, per plan, the predicted median
and planned percentile, the measured median, min and max, the median's error and the deadlines
met, and writes the runs to a JSON file.
Run: python examples/bench_honesty.py [--targets-128 30ms,40ms,50ms] [--targets-32 15ms,20ms,30ms]
     [--memory 4MB] [--runs 10] [--json docs/figures/honesty.json] [--work work]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from rich.console import Console
from rich.table import Table

from sticc.base.progress import progress_bar
from sticc.bench.lane_fit import cached_device
from sticc.bench.measure import time_forward_process
from sticc.cli.main import main as sticc_main
from sticc.compile.plan_view import read_plan_json
from sticc.model.default_model import minilm_store
from sticc.profile.measure_importance import cached_importance
from sticc.runtime.core import parse_quantity


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets-128", default="30ms,40ms,50ms")
    parser.add_argument("--targets-32", default="15ms,20ms,30ms")
    parser.add_argument("--memory", default="4MB")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--json", type=Path, default=Path("docs/figures/honesty.json"))
    parser.add_argument("--work", type=Path, default=Path("work"))
    args = parser.parse_args()
    console = Console()
    store, store_dir = minilm_store(args.work, progress_bar)
    cached_importance(store, None, progress_bar)
    outs = []
    for seq_len, targets in ((128, args.targets_128), (32, args.targets_32)):
        _, device_path, _ = cached_device(store, seq_len, None, progress_bar)
        for target in targets.split(","):
            out = args.work / f"honesty-L{seq_len}-{target}"
            command = ["compile", str(store_dir), "-o", str(out), "--latency", target, "--memory", args.memory,
                       "--seq-len", str(seq_len), "--device", str(device_path)]
            if sticc_main(command):
                raise SystemExit(1)
            outs.append(out)
    runs: dict[Path, list[float]] = {out: [] for out in outs}
    for _ in progress_bar(iter(range(args.runs)), args.runs, "fresh-process rounds"):
        for out in outs:
            seq_len = read_plan_json(out / "plan.json")["targets"]["seq_len"]
            runs[out].append(time_forward_process(out / "runner.py", store_dir, seq_len)["latency_s"])
    table = Table(title=f"MiniLM, {args.memory} budget, {args.runs} fresh processes per plan, cold cache")
    for column in ("tokens", "target ms", "predicted median", "planned p90", "measured med (min-max)", "error", "met"):
        table.add_column(column, justify="right")
    rows = []
    for out in outs:
        plan = read_plan_json(out / "plan.json")
        predicted, target = plan["predicted"], plan["targets"]["latency_s"]
        measured = sorted(runs[out])
        median = statistics.median(measured)
        met = sum(t <= target for t in measured)
        rows.append({"out": str(out), "seq_len": plan["targets"]["seq_len"], "target_s": target,
                     "predicted_s": predicted["latency_s"], "planned_s": predicted["planned_latency_s"],
                     "measured_s": measured, "error": median / predicted["latency_s"] - 1, "met": met})
        table.add_row(
            str(plan["targets"]["seq_len"]), f"{target * 1e3:.0f}", f"{predicted['latency_s'] * 1e3:.1f}",
            f"{predicted['planned_latency_s'] * 1e3:.1f}",
            f"{median * 1e3:.1f} ({measured[0] * 1e3:.1f}-{measured[-1] * 1e3:.1f})",
            f"{100 * rows[-1]['error']:+.0f}%", f"{met}/{len(measured)}",
        )
    console.print(table)
    budget = parse_quantity(args.memory, "B")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"memory_bytes": budget, "runs": args.runs, "plans": rows}, indent=1) + "\n")
    console.print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
