"""A compiled encoder runner at input lengths other than the one it was planned for: the report's
predictions (plan.json `by_length`) against measurements.

    python examples/latency_by_length.py OUT --runs 5 --json docs/figures/latency-by-length.json \\
        --svg docs/figures/latency-by-length.svg

For every length of `by_length` (powers of two up to the truncation length, and the planned one):
`--runs` forwards of that many distinct tokens (batch 1), each in a fresh process with the store
evicted from the page cache (as `sticc bench` runs its cases). Prints a markdown table of the
predicted median and p90 against the measured median and spread, and with `--svg` draws both
against the length (matplotlib, from the `bench` extra).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from sticc.base.progress import progress_bar
from sticc.bench.measure import time_forward_process
from sticc.compile.plan_view import read_plan_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="a `sticc compile` output with a device profile (plan.json has by_length)")
    parser.add_argument("--store", type=Path, help="the store (default: the one the runner names)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--svg", type=Path)
    args = parser.parse_args()

    plan = read_plan_json(args.out / "plan.json")
    records = plan.get("by_length")
    if not records:
        raise SystemExit(f"{args.out}/plan.json has no by_length (an encoder plan compiled with a device profile has)")
    store = args.store or _runner_store(args.out / "runner.py")
    rows = []
    for record in progress_bar(records, len(records), "lengths"):
        latencies = [time_forward_process(args.out / "runner.py", store, record["seq_len"])["latency_s"] for _ in range(args.runs)]
        rows.append({**record, "measured_s": sorted(latencies)})
    planned = plan["targets"]["seq_len"]
    print(f"plan for {planned} tokens, target {plan['targets'].get('latency_s')}; {args.runs} cold fresh processes per length\n")
    print("| tokens | predicted median | predicted p90 | measured median | measured min-max | measured / predicted |")
    print("|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        median = statistics.median(row["measured_s"])
        print(f"| {row['seq_len']}{' (planned)' if row['seq_len'] == planned else ''} | {1e3 * row['latency_s']:.1f} ms | "
              f"{1e3 * row['planned_latency_s']:.1f} ms | {1e3 * median:.1f} ms | "
              f"{1e3 * row['measured_s'][0]:.1f}-{1e3 * row['measured_s'][-1]:.1f} ms | {median / row['latency_s']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps({"plan_hash": plan.get("plan_hash"), "targets": plan["targets"], "runs": args.runs, "rows": rows}, indent=1) + "\n")
    if args.svg:
        _draw(rows, planned, plan["targets"].get("latency_s"), args.svg)


def _runner_store(runner: Path) -> Path:
    from codegen.literals import runner_literal

    return Path(runner_literal(runner, "DEFAULT_STORE", str))


def _draw(rows: list[dict], planned: int, target_s: float | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lengths = [r["seq_len"] for r in rows]
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    ax.plot(lengths, [1e3 * r["latency_s"] for r in rows], "o-", label="predicted median")
    ax.plot(lengths, [1e3 * r["planned_latency_s"] for r in rows], "o--", label="predicted p90")
    medians = [1e3 * statistics.median(r["measured_s"]) for r in rows]
    low = [m - 1e3 * r["measured_s"][0] for m, r in zip(medians, rows, strict=True)]
    high = [1e3 * r["measured_s"][-1] - m for m, r in zip(medians, rows, strict=True)]
    ax.errorbar(lengths, medians, yerr=[low, high], fmt="s", color="black", capsize=3, label="measured median (min-max)")
    ax.axvline(planned, color="grey", linestyle=":", label=f"planned length ({planned})")
    if target_s:
        ax.axhline(1e3 * target_s, color="red", linestyle=":", label=f"target ({1e3 * target_s:g} ms)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(lengths, [str(n) for n in lengths])
    ax.set_xlabel("input tokens (batch 1)")
    ax.set_ylabel("latency (ms)")
    ax.set_title("One plan at other input lengths (cold, fresh processes)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, metadata={"Date": None})


if __name__ == "__main__":
    main()
