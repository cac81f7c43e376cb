"""Plan honesty: do runners meet what the planner predicted for them?

For the default model (all-MiniLM-L6-v2) at three latency targets and one memory budget, compiles a
CP-SAT plan and the greedy plan with this machine's device profile and the importance profile, then
runs each runner in fresh processes, cold cache, on 128 distinct tokens (the planned sequence
length): measured median latency against `predicted.latency_s`, measured peak weight bytes against
the budget. Fidelity of each plan is measured in-process on 30 held-out sentences against the fp32
runner: the CP-SAT plan should be at least as faithful as the greedy one at the same targets.
Writes docs/figures/honesty.json. Run: .venv/bin/python examples/bench_honesty.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))
from codegen import emit_runner, write_output
from solvers.base import dropped_all, evaluate
from solvers.uniform import uniform_plan
from sticc.cli import progress_bar
from sticc.default_model import minilm_store
from sticc.lower import lower
from sticc.measure import Spread, encode_in_process, time_forward_process
from sticc.plan import ShardChoice
from sticc.planner import plan_for_targets
from sticc.profile_device import cached_device
from sticc.profile_importance import cached_importance
from sticc.runtime.core import parse_quantity
from sticc.sentences import EVAL_SENTENCES

SEQ_LEN = 128


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("work"))
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--memory", default=None, help="budget (default: 3%% of the fp32 weights)")
    parser.add_argument("--fractions", default="0.25,0.5,0.8", help="latency targets between the all-dropped and all-8-bit predictions")
    parser.add_argument("--io-bandwidth", default=None, help="emulated flash bandwidth, e.g. 200MB/s")
    parser.add_argument("--solvers", default="cpsat,greedy")
    parser.add_argument("--json", type=Path, default=Path("docs/figures/honesty.json"))
    args = parser.parse_args()
    console = Console()
    store, store_dir = minilm_store(args.work)
    cap = parse_quantity(args.io_bandwidth, "B/s") if args.io_bandwidth else None
    device, _, _ = cached_device(store, SEQ_LEN, cap, progress_bar)
    importance, _, _ = cached_importance(store, None, progress_bar)
    memory = int(parse_quantity(args.memory, "B")) if args.memory else int(0.03 * store.spec.fp32_weight_nbytes)
    problem = lower(store, device, importance, SEQ_LEN, None, memory)
    floor = evaluate(problem, dropped_all(problem)).latency_s
    eight = evaluate(problem, {p: ShardChoice(p[0], p[1], 8) for p in problem.positions}).latency_s
    targets = [floor + float(f) * (eight - floor) for f in args.fractions.split(",")]
    console.print(f"memory {memory / 1e6:.2f} MB; predicted all-dropped {floor * 1e3:.1f} ms, all-8-bit {eight * 1e3:.1f} ms")

    reference_dir = args.work / "honesty" / "fp32"
    write_output(reference_dir, emit_runner(store, uniform_plan(store, 32), store_dir))
    reference = encode_in_process(reference_dir / "runner.py", store_dir, EVAL_SENTENCES)
    rows = []
    for target in targets:
        for solver in args.solvers.split(","):
            plan, _ = plan_for_targets(store, device, importance, SEQ_LEN, target, memory, solver, 10.0)
            out = args.work / "honesty" / f"{solver}-{target * 1e3:.0f}ms"
            write_output(out, emit_runner(store, plan, store_dir))
            runs = [time_forward_process(out / "runner.py", store_dir, SEQ_LEN) for _ in range(args.runs)]
            latency = Spread.of([r["latency_s"] for r in runs])
            cosine = torch.nn.functional.cosine_similarity(encode_in_process(out / "runner.py", store_dir, EVAL_SENTENCES), reference)
            rows.append({
                "solver": solver, "target_s": target, "memory_bytes": memory,
                "predicted_s": plan.predicted.latency_s, "measured_s": [r["latency_s"] for r in runs],
                "median_s": latency.median, "error": latency.median / plan.predicted.latency_s - 1,
                "peak_weight_bytes": max(r["peak_weight_bytes"] for r in runs),
                "predicted_loss": plan.predicted.fidelity_loss, "objective": plan.solver.objective,
                "cosine_min": float(cosine.min()), "cosine_mean": float(cosine.mean()),
                "kept": sum(1 for c in plan.shards if c.bits), "gap": plan.solver.gap,
            })
            console.print(f"{solver} @ {target * 1e3:.1f} ms: predicted {plan.predicted.latency_s * 1e3:.1f} ms, "
                          f"measured median {latency.median * 1e3:.1f} ms ({rows[-1]['error'] * 100:+.1f}%)")
    table = Table(title=f"MiniLM plan honesty: seq {SEQ_LEN}, memory {memory / 1e6:.2f} MB "
                        f"({100 * memory / store.spec.fp32_weight_nbytes:.1f}% of fp32), {args.runs} cold fresh-process runs"
                        + (f", emulated {cap / 1e6:.0f} MB/s" if cap else ", this disk"))
    for column in ("solver", "target ms", "predicted ms", "measured ms min/med/max", "error", "peak MB <= budget",
                   "kept", "pred. loss", "cos min / mean"):
        table.add_column(column, justify="right")
    for row in rows:
        spread = Spread.of(row["measured_s"])
        table.add_row(
            row["solver"], f"{row['target_s'] * 1e3:.1f}", f"{row['predicted_s'] * 1e3:.1f}",
            f"{spread.min * 1e3:.1f} / {spread.median * 1e3:.1f} / {spread.max * 1e3:.1f}", f"{row['error'] * 100:+.1f}%",
            f"{row['peak_weight_bytes'] / 1e6:.2f} {'yes' if row['peak_weight_bytes'] <= memory else 'NO'}",
            str(row["kept"]), f"{row['predicted_loss']:.4f}", f"{row['cosine_min']:.4f} / {row['cosine_mean']:.4f}",
        )
    console.print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"device": device.device, "cap_Bps": cap, "rows": rows}, indent=1) + "\n")
    errors = [abs(r["error"]) for r in rows]
    console.print(f"worst |error| {max(errors) * 100:.1f}%, median {statistics.median(errors) * 100:.1f}%")


if __name__ == "__main__":
    main()
