"""Planned decoders against their targets: plans at several per-token targets within one memory
budget, by CP-SAT and by greedy, each runner measured in fresh processes, cold (`sticc bench`'s
decoder cases), beside layerwise fp32 streaming.

    python examples/decoder_targets.py work/smollm2-store --device work/smollm2-device.json \\
        --importance work/smollm2-importance.json --memory-share 0.10 --token-latency 150ms,200ms,300ms \\
        --json docs/figures/decoder-targets.json

For every (target, solver): the predicted per-token latency (median) and time to first token
against the measured medians (3 runs x `--tokens` tokens after a prompt of `--prompt-len` held-out
tokens), the pool against the budget, perplexity on the held-out text and greedy agreement with
the fp32 reference (examples/texts/heldout.txt). Then layerwise fp32 streaming once, for the
speed ratio. Prints a markdown table; `--json` keeps everything.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from codegen import emit_runner, write_output
from sticc.base.progress import progress_bar
from sticc.bench.decoder_suite import bench_decoder
from sticc.bench.suite import Settings
from sticc.compile.planner import plan_for_targets
from sticc.model.store import Store
from sticc.profile.device import DeviceProfile
from sticc.profile.importance import ImportanceProfile
from sticc.runtime.core import parse_quantity


def _case(bench, name: str):
    return next(r for r in bench.results if r.name == name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("store", type=Path)
    parser.add_argument("--device", type=Path, required=True)
    parser.add_argument("--importance", type=Path, required=True)
    parser.add_argument("--memory-share", type=float, default=0.10, help="weight pool budget as a share of the fp32 weights")
    parser.add_argument("--token-latency", default="150ms,200ms,300ms")
    parser.add_argument("--first-token", default="2s")
    parser.add_argument("--prompt-len", type=int, default=64)
    parser.add_argument("--context", type=int, default=128)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--solvers", default="cpsat,greedy")
    parser.add_argument("--time-limit", type=float, default=20.0)
    parser.add_argument("--no-layerwise", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    store = Store.open(args.store)
    device = DeviceProfile.read(args.device)
    importance = ImportanceProfile.read(args.importance)
    memory = int(args.memory_share * store.spec.fp32_weight_nbytes)
    first_s = parse_quantity(args.first_token, "s")
    rows = []
    layerwise = None
    with tempfile.TemporaryDirectory(prefix="sticc-decoder-targets-") as tmp:
        for target in args.token_latency.split(","):
            token_s = parse_quantity(target, "s")
            for solver in args.solvers.split(","):
                print(f"planning {target} with {solver}", file=sys.stderr)
                plan, _ = plan_for_targets(
                    store, device, importance, args.prompt_len, token_s, memory, solver, args.time_limit,
                    context=args.context, first_token_s=first_s,
                )
                out = Path(tmp) / f"{solver}-{target}"
                write_output(out, emit_runner(store, plan, store.path))
                want_layerwise = layerwise is None and not args.no_layerwise
                baselines = ("layerwise",) if want_layerwise else ()
                bench = bench_decoder(out, None, Settings(args.runs, True, None), baselines, progress_bar, new_tokens=args.tokens)
                runner = _case(bench, "sticc")
                if want_layerwise:
                    layerwise = _case(bench, "layerwise")
                kept = [c for c in plan.shards if c.bits]
                rows.append({
                    "target_s": token_s, "solver": solver, "status": plan.solver.status, "gap": plan.solver.gap,
                    "budget_bytes": memory, "pool_bytes": plan.predicted.peak_weight_bytes,
                    "preload_bytes": plan.predicted.preload_bytes, "io_bytes_per_token": plan.predicted.io_bytes_per_token,
                    "kept": len(kept), "mean_bits": statistics.mean(c.bits for c in kept),
                    "predicted_token_s": plan.predicted.latency_s, "planned_token_s": plan.predicted.planned_latency_s,
                    "predicted_first_token_s": plan.predicted.first_token_s,
                    "measured_token_s": runner.token_latency_s.median, "measured_token_min_s": runner.token_latency_s.min,
                    "measured_token_max_s": runner.token_latency_s.max, "measured_first_token_s": runner.ttft_s.median,
                    "measured_weight_bytes": runner.weight_bytes, "measured_read_per_token_bytes": runner.disk_read_per_token_bytes,
                    "perplexity": runner.perplexity, "reference_perplexity": bench.subject.reference_perplexity,
                    "greedy_agreement": runner.greedy_agreement, "predicted_loss": plan.predicted.fidelity_loss,
                })
    result = {
        "command": " ".join(sys.argv), "model": store.spec.name, "fp32_weight_bytes": store.spec.fp32_weight_nbytes,
        "prompt_len": args.prompt_len, "context": args.context, "tokens": args.tokens, "runs": args.runs, "plans": rows,
        "layerwise": None if layerwise is None else {
            "token_s": layerwise.token_latency_s.median, "token_min_s": layerwise.token_latency_s.min,
            "token_max_s": layerwise.token_latency_s.max, "first_token_s": layerwise.ttft_s.median,
            "weight_bytes": layerwise.weight_bytes, "perplexity": layerwise.perplexity,
        },
    }
    print("| target ms | solver | pool MB (budget) | predicted ms/token | measured ms/token (min-max) | error | "
          "first token pred / meas ms | perplexity (ref) | agreement |")
    print("|---:|---|---|---:|---|---:|---|---|---:|")
    for r in rows:
        error = r["measured_token_s"] / r["predicted_token_s"] - 1
        print(
            f"| {r['target_s'] * 1e3:.0f} | {r['solver']} | {r['pool_bytes'] / 1e6:.1f} ({r['budget_bytes'] / 1e6:.1f}) | "
            f"{r['predicted_token_s'] * 1e3:.0f} | {r['measured_token_s'] * 1e3:.0f} ({r['measured_token_min_s'] * 1e3:.0f}-"
            f"{r['measured_token_max_s'] * 1e3:.0f}) | {error:+.0%} | {r['predicted_first_token_s'] * 1e3:.0f} / "
            f"{r['measured_first_token_s'] * 1e3:.0f} | {r['perplexity']:.2f} ({r['reference_perplexity']:.2f}) | "
            f"{r['greedy_agreement']:.1%} |"
        )
    if layerwise is not None:
        lw = result["layerwise"]
        print(f"\nlayerwise fp32 streaming: {lw['token_s'] * 1e3:.0f} ms/token ({lw['token_min_s'] * 1e3:.0f}-"
              f"{lw['token_max_s'] * 1e3:.0f}), pool {lw['weight_bytes'] / 1e6:.1f} MB; speed-up of each plan: "
              + ", ".join(f"{r['solver']} {r['target_s'] * 1e3:.0f} ms x{lw['token_s'] / r['measured_token_s']:.1f}" for r in rows))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
