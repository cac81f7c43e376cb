"""What an elastic runner's shared preload set costs: each latency target solved alone against the same
target solved with the tightest plan's preload set fixed (`sticc.compile.elastic`).

    python examples/elastic_sharing.py STORE --device device.json --importance importance.json \\
        [--latency 20ms,40ms,80ms] [--memory 4MB] [--seq-len 128] [--time-limit 10s] [--json FILE]

For every target it prints both plans' predicted fidelity loss (lower is better), CP-SAT's bound on
it, the gap, the preloaded bytes, and the wall time of each solve: the price of sharing is the loss
the shared plan adds over the plan solved alone (both within their solver's gap of their optimum).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from sticc.compile.elastic import plan_elastic
from sticc.compile.planner import plan_for_targets
from sticc.model.store import Store
from sticc.profile.device import DeviceProfile
from sticc.profile.importance import ImportanceProfile
from sticc.runtime.core import parse_quantity


def _row(plan, wall_s: float) -> dict:
    predicted, solver = plan.predicted, plan.solver
    loss_bound = None if solver.bound is None else predicted.fidelity_loss + (solver.objective - solver.bound)
    return {
        "fidelity_loss": predicted.fidelity_loss, "fidelity_loss_bound": loss_bound, "gap": solver.gap,
        "status": solver.status, "preload_bytes": predicted.preload_bytes, "planned_latency_s": predicted.planned_latency_s,
        "solve_wall_s": wall_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("store", type=Path)
    parser.add_argument("--device", type=Path, required=True)
    parser.add_argument("--importance", type=Path, required=True)
    parser.add_argument("--latency", default="20ms,40ms,80ms")
    parser.add_argument("--memory", default="4MB")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--time-limit", default="10s")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    store = Store.open(args.store)
    device, importance = DeviceProfile.read(args.device), ImportanceProfile.read(args.importance)
    targets = sorted(parse_quantity(t, "s") for t in args.latency.split(","))
    memory, limit_s = int(parse_quantity(args.memory, "B")), parse_quantity(args.time_limit, "s")
    alone = {}
    for latency_s in targets:
        start = time.perf_counter()
        plan, _ = plan_for_targets(store, device, importance, args.seq_len, latency_s, memory, "cpsat", limit_s)
        alone[latency_s] = _row(plan, time.perf_counter() - start)
    start = time.perf_counter()
    shared = {p.targets.latency_s: p for p in plan_elastic(store, device, importance, args.seq_len, targets, memory, "cpsat", limit_s)}
    elastic_wall_s = time.perf_counter() - start
    rows = []
    print("| target | alone: loss (bound) | shared: loss (bound) | price | alone preload | shared preload |")
    print("|---|---|---|---|---|---|")
    for latency_s in targets:
        a, s = alone[latency_s], _row(shared[latency_s], float("nan"))
        rows.append({"latency_s": latency_s, "alone": a, "shared": s})
        print(
            f"| {latency_s * 1e3:g} ms | {a['fidelity_loss']:.4f} ({a['fidelity_loss_bound']:.4f}) | "
            f"{s['fidelity_loss']:.4f} ({s['fidelity_loss_bound']:.4f}) | {s['fidelity_loss'] - a['fidelity_loss']:+.4f} | "
            f"{a['preload_bytes'] / 1e6:.2f} MB | {s['preload_bytes'] / 1e6:.2f} MB |"
        )
    alone_wall_s = sum(a["solve_wall_s"] for a in alone.values())
    print(f"\nsolve wall time: {alone_wall_s:.1f} s for the {len(targets)} plans alone, {elastic_wall_s:.1f} s for the elastic set")
    if args.json:
        args.json.write_text(json.dumps({"store": store.spec.name, "memory_bytes": memory, "time_limit_s": limit_s,
                                         "rows": rows, "alone_wall_s": alone_wall_s, "elastic_wall_s": elastic_wall_s}, indent=1) + "\n")


if __name__ == "__main__":
    main()
