"""The main job on the embedded default model (all-MiniLM-L6-v2): shard, profile, plan, run, compare.

1. shards MiniLM into a store (first use only, ~25 s);
2. measures this machine's device profile and every shard version's importance (cached by store);
3. compiles a CP-SAT plan for a latency target and a memory budget of 3% of the fp32 weights, with
   STI's greedy plan at the same targets beside it: runner.py, plan.json, report.md, timeline.svg;
4. runs each runner in fresh processes with a cold page cache on 128 tokens (the planned sequence
   length) and compares measured latency and peak weight memory with the prediction, and the
   fidelity (cosine of pooled embeddings against the fp32 model) on example sentences.
The same, step by step on the command line:
  sticc shard MODEL -o STORE; sticc compile STORE -o OUT --latency 40ms --memory 2.7MB; sticc report OUT
Run: python examples/quickstart.py [--latency 40ms] [--memory 2.7MB]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from codegen import emit_runner, write_output
from solvers.uniform import uniform_plan
from sticc.cli import main as sticc_main
from sticc.default_model import minilm_store
from sticc.measure import Spread, encode_in_process, time_forward_process
from sticc.report import read_plan_json
from sticc.runtime.core import parse_quantity

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
SEQ_LEN = 128


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("work"), help="where the store, profiles and runners go")
    parser.add_argument("--latency", default="40ms", help="latency target per call of 128 tokens")
    parser.add_argument("--memory", default=None, help="weight memory budget (default: 3%% of the fp32 weights)")
    parser.add_argument("--runs", type=int, default=5, help="fresh-process cold-cache runs per runner")
    args = parser.parse_args()
    console = Console()
    console.print(f"the all-MiniLM-L6-v2 store: {args.work / 'minilm-store'} (sharded on first use)")
    store, store_dir = minilm_store(args.work)
    fp32_nbytes = store.spec.fp32_weight_nbytes
    memory = args.memory or f"{int(0.03 * fp32_nbytes)}B"
    outputs = {}
    for solver in ("cpsat", "greedy"):
        out = args.work / f"quickstart-{solver}"
        command = ["compile", str(store_dir), "-o", str(out), "--latency", args.latency, "--memory", memory, "--solver", solver]
        console.print(f"$ sticc {' '.join(command)}")
        code = sticc_main(command)
        if code:
            raise SystemExit(code)
        outputs[solver] = out
    reference_dir = args.work / "quickstart-fp32"
    write_output(reference_dir, emit_runner(store, uniform_plan(store, 32), store_dir))
    reference = encode_in_process(reference_dir / "runner.py", store_dir, SENTENCES)

    budget = parse_quantity(memory, "B")
    table = Table(title=f"all-MiniLM-L6-v2, targets {args.latency} and {budget / 1e6:.2f} MB "
                        f"({100 * budget / fp32_nbytes:.1f}% of fp32 weights); {args.runs} fresh processes, cold cache, {SEQ_LEN} tokens")
    for column in ("plan", "kept / mean bits", "latency ms predicted", "measured min / med / max", "peak weight MB (budget)",
                   "cosine vs fp32 min / mean"):
        table.add_column(column, justify="right")
    for solver, out in outputs.items():
        plan = read_plan_json(out / "plan.json")
        kept = [s["bits"] for s in plan["shards"] if s["bits"]]
        runs = [time_forward_process(out / "runner.py", store_dir, SEQ_LEN) for _ in range(args.runs)]
        latency = Spread.of([r["latency_s"] * 1e3 for r in runs])
        cosine = torch.nn.functional.cosine_similarity(encode_in_process(out / "runner.py", store_dir, SENTENCES), reference)
        peak = max(r["peak_weight_bytes"] for r in runs)
        table.add_row(
            solver, f"{len(kept)}/{len(plan['shards'])} / {sum(kept) / max(len(kept), 1):.1f}",
            f"{plan['predicted']['latency_s'] * 1e3:.1f}", f"{latency.min:.1f} / {latency.median:.1f} / {latency.max:.1f}",
            f"{peak / 1e6:.2f} ({budget / 1e6:.2f})", f"{cosine.min():.4f} / {cosine.mean():.4f}",
        )
    console.print(table)
    console.print(f"reports: {outputs['cpsat']}/report.md and timeline.svg (or `sticc report {outputs['cpsat']}/plan.json`)")


if __name__ == "__main__":
    main()
