"""The main job on the embedded default model (all-MiniLM-L6-v2): shard, profile, plan, run, compare.

1. shards MiniLM into a store (first use only, ~40 s);
2. measures this machine's device profile and every shard version's importance (cached by store);
3. picks two operating points from the device profile and compiles each with CP-SAT and with STI's
   greedy heuristic:
   - "5%": 5% of the fp32 weights, the latency target just above what a plan of every
     shard at 8 bits needs on this machine (at the planned percentile): fidelity >= 0.99 expected;
   - "3%": 3% of the weights and 70% of that latency: the trade-off, shards cut or dropped;
4. runs each runner in fresh processes with a cold page cache on 128 tokens (the planned sequence
   length) and compares measured latency with the prediction and the target, weight memory with
   the budget, and fidelity (cosine of pooled embeddings against the fp32 model) on held-out
   sentences.
The same on the command line: sticc shard MODEL -o STORE; sticc compile STORE -o OUT --latency 40ms
--memory 4.5MB; sticc report OUT/plan.json
Run: python examples/quickstart.py [--work work] [--runs 5]
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
from sticc.base.progress import progress_bar
from sticc.bench.lane_fit import cached_device
from sticc.bench.measure import encode_in_process, time_forward_process
from sticc.cli.main import main as sticc_main
from sticc.compile.plan_view import read_plan_json
from sticc.compile.planner import PLANNED_PERCENTILE
from sticc.ir.lower import lower
from sticc.ir.simulate import simulate
from sticc.model.default_model import minilm_store
from sticc.model.texts import EVAL_SENTENCES
from sticc.profile.device import DeviceProfile
from sticc.profile.importance import ImportanceProfile
from sticc.profile.measure_importance import cached_importance

SEQ_LEN = 128
FAITHFUL_MEMORY = 0.05  # of the fp32 weights
TIGHT_MEMORY = 0.03
TIGHT_LATENCY = 0.7  # of the faithful target
HEADROOM = 1.05  # the faithful target over the uniform 8-bit plan's planned latency


def faithful_target_s(store, device: DeviceProfile, importance: ImportanceProfile, memory_bytes: int) -> float:
    """A latency target a plan of every shard at 8 bits meets within `memory_bytes` on `device`, at
    the planned percentile, with a little headroom (the planner then keeps about that fidelity)."""
    plan = uniform_plan(store, 8, seq_len=SEQ_LEN, memory_bytes=memory_bytes)
    problem = lower(store, device, importance, SEQ_LEN, None, memory_bytes, plan.shards_per_chunk, PLANNED_PERCENTILE)
    choices = {(c.layer, c.index): c for c in plan.shards}
    return HEADROOM * simulate(problem, choices, memory_bytes).latency_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("work"), help="where the store, profiles and runners go")
    parser.add_argument("--runs", type=int, default=5, help="fresh-process cold-cache runs per runner")
    args = parser.parse_args()
    console = Console(width=80)
    console.print(f"the all-MiniLM-L6-v2 store: {args.work / 'minilm-store'} (sharded on first use)")
    store, store_dir = minilm_store(args.work, progress_bar)


    device, _, _ = cached_device(store, SEQ_LEN, None, progress_bar)
    importance, _, _ = cached_importance(store, None, progress_bar)
    fp32 = store.spec.fp32_weight_nbytes
    faithful_memory = int(FAITHFUL_MEMORY * fp32)
    target_s = faithful_target_s(store, device, importance, faithful_memory)
    points = {
        "5%": (target_s, faithful_memory),
        "3%": (TIGHT_LATENCY * target_s, int(TIGHT_MEMORY * fp32)),
    }
    outputs = {}
    for point, (latency_s, memory_bytes) in points.items():
        for solver in ("cpsat", "greedy"):
            out = args.work / f"quickstart-{point.rstrip('%')}pct-{solver}"
            command = [
                "compile", str(store_dir), "-o", str(out), "--latency", f"{latency_s * 1e3:.1f}ms",
                "--memory", f"{memory_bytes}B", "--solver", solver, "--seq-len", str(SEQ_LEN),
            ]
            console.print(f"$ sticc {' '.join(command)}")
            code = sticc_main(command)
            if code:
                raise SystemExit(code)
            outputs[(point, solver)] = out
    reference_dir = args.work / "quickstart-fp32"
    write_output(reference_dir, emit_runner(store, uniform_plan(store, 32), store_dir))
    texts = list(EVAL_SENTENCES)
    reference = encode_in_process(reference_dir / "runner.py", store_dir, texts)

    table = Table(title=f"all-MiniLM-L6-v2, {SEQ_LEN} tokens, {args.runs} fresh processes each, cold cache",
                  caption=f"5%, 3%: of the fp32 weights. ms: predicted median; the target bounds p{PLANNED_PERCENTILE}. "
                          f"cos vs fp32 on {len(texts)} held-out sentences")
    for column in ("plan", "target", "pred", "measured", "met", "MB (% fp32)", "cos mean/min"):
        table.add_column(column, justify="left" if column == "plan" else "right")
    for (point, solver), out in outputs.items():
        plan = read_plan_json(out / "plan.json")
        runs = [time_forward_process(out / "runner.py", store_dir, SEQ_LEN) for _ in range(args.runs)]
        latencies = [r["latency_s"] for r in runs]
        target = plan["targets"]["latency_s"]
        cosine = torch.nn.functional.cosine_similarity(encode_in_process(out / "runner.py", store_dir, texts), reference)
        held = max(r["peak_weight_bytes"] for r in runs)
        table.add_row(
            f"{point} {solver}", f"{target * 1e3:.1f}", f"{plan['predicted']['latency_s'] * 1e3:.1f}",
            f"{statistics.median(latencies) * 1e3:.1f}", f"{sum(t <= target for t in latencies)}/{len(latencies)}",
            f"{held / 1e6:.2f} ({100 * held / fp32:.1f}%)", f"{cosine.mean():.4f}/{cosine.min():.3f}",
        )
    console.print(table)
    console.print(f"reports: {outputs[('5%', 'cpsat')]}/report.md and timeline.svg "
                  f"(or `sticc report {outputs[('5%', 'cpsat')]}/plan.json`)")


if __name__ == "__main__":
    main()
