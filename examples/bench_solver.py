"""How close does the CP-SAT planner get to a proof, on BERT-base-, BERT-large- and 32x32-shaped
instances, within the time the issue allows?

The instances (`sticc.bench.solver_instances`) are built from shapes alone, with a hand-written
phone-class device and random importances; the targets are tight (memory 1-2% of the fp32
weights, latency 30% / 60% of the way from the all-dropped to the all-8-bit latency, with and
without an emulated 200 MB/s cap).

Prints a table (instance, targets, the greedy plan, status, objective, bound, gap, wall, the
model's size, the process's peak RSS) and, with --write, puts it into docs/solver.md between
the benchmark markers.
Run: python examples/bench_solver.py [--shapes bert-base] [--instances 0,2] [--time-limit-base 2]
[--time-limit-large 10] [--time-limit-32x32 30] [--write]

With `--store STORE --device device.json --importance importance.json` it plans a real store
instead, at `--targets` latencies and one `--store-memory` budget (as `sticc compile` lowers them, at
the 90th percentile of calls), each within `--time-limit-store` seconds: the MiniLM rows of
docs/solver.md.
"""

from __future__ import annotations

import argparse
import re
import resource
import sys
import time
from pathlib import Path

from solvers.base import Choices
from solvers.cpsat import PlanModel, Scale, cpsat_solve
from sticc.base.errors import UserError
from sticc.bench.solver_instances import instances
from sticc.ir.lower import Problem


def hint_for(problem: Problem, kind: str) -> tuple[Choices | None, float]:
    """The hint CP-SAT starts from, and the seconds it took."""
    if kind == "none":
        return None, 0.0
    from solvers.greedy import greedy_solve

    start_s = time.perf_counter()
    try:
        choices = greedy_solve(problem).choices
    except UserError:
        choices = None
    return choices, time.perf_counter() - start_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="bert-base,bert-large,32x32")
    parser.add_argument("--time-limit-base", type=float, default=2.0)
    parser.add_argument("--time-limit-large", type=float, default=10.0)
    parser.add_argument("--time-limit-32x32", type=float, default=30.0)
    parser.add_argument("--memory", default="0.01,0.02", help="memory targets, fractions of the fp32 weights")
    parser.add_argument("--latency", default="0.3,0.6", help="latency targets, fractions from all-dropped to all-8-bit")
    parser.add_argument("--caps", default="none,200e6", help="emulated bandwidth caps in B/s ('none': uncapped)")
    parser.add_argument("--hint", choices=("greedy", "none"), default="greedy")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--instances", default="", help="comma-separated row numbers (0-based) to run, in table order; default all")
    parser.add_argument("--write", action="store_true", help="put the table into docs/solver.md")
    parser.add_argument("--store", type=Path, help="plan this store instead of the shapes (with --device and --importance)")
    parser.add_argument("--device", type=Path)
    parser.add_argument("--importance", type=Path)
    parser.add_argument("--targets", default="12ms,20ms,30ms,40ms,60ms,90ms", help="with --store: latency targets")
    parser.add_argument("--store-memory", default="4MB", help="with --store: the memory budget")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--time-limit-store", type=float, default=2.0)
    args = parser.parse_args()
    if args.store is not None:
        rows = _store_rows(args)
        if args.write:
            command = "python examples/bench_solver.py " + " ".join(sys.argv[1:])
            _write_table(Path(__file__).resolve().parent.parent / "docs" / "solver.md", command, rows, STORE_MARKERS)
        return
    limits = {"bert-base": args.time_limit_base, "bert-large": args.time_limit_large, "32x32": args.time_limit_32x32}
    shapes = {name: limits[name] for name in args.shapes.split(",")}
    caps = tuple(None if c == "none" else float(c) for c in args.caps.split(","))
    cases = instances(shapes, _fractions(args.memory), _fractions(args.latency), caps, args.seed)
    if args.instances:
        cases = [cases[int(i)] for i in args.instances.split(",")]
    header = "| instance | targets | greedy (s) | status | objective | bound | gap | wall s | model vars / constraints | peak RSS MB |"
    rows = [header, "|---|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    print(header, flush=True)
    for case in cases:
        hint, hint_s = hint_for(case.problem, args.hint)
        hint_text = f"{case.problem.objective(hint):.4f} ({hint_s:.1f} s)" if hint else "-"
        try:
            found = cpsat_solve(case.problem, time_limit_s=case.time_limit_s, workers=args.workers, seed=args.seed, hint=hint)
        except UserError as error:
            row = f"| {case.name} | {case.targets} | {hint_text} | {error} | | | | | | |"
        else:
            info = found.info
            if hint is not None and info.objective < case.problem.objective(hint) - 1e-12:
                raise SystemExit(f"CP-SAT's plan is worse than the greedy one on {case.name} {case.targets}")
            peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            row = (
                f"| {case.name} | {case.targets} | {hint_text} | {info.status} | {info.objective:.4f} | "
                f"{info.bound:.4f} | {info.gap:.2%} | {info.wall_s:.2f} | {_model_size(case.problem)} | {peak_mb:.0f} |"
            )
        rows.append(row)
        print(row, flush=True)
    if args.write:
        command = "python examples/bench_solver.py " + " ".join(sys.argv[1:])
        _write_table(Path(__file__).resolve().parent.parent / "docs" / "solver.md", command, rows)


def _store_rows(args: argparse.Namespace) -> list[str]:
    """The table's rows for a real store at each latency target and one memory budget."""
    from sticc.compile.planner import PLANNED_PERCENTILE
    from sticc.ir.lower import lower
    from sticc.model.store import Store
    from sticc.profile.device import DeviceProfile
    from sticc.profile.importance import ImportanceProfile
    from sticc.runtime.core import parse_quantity

    store = Store.open(args.store)
    device, importance = DeviceProfile.read(args.device), ImportanceProfile.read(args.importance)
    memory = int(parse_quantity(args.store_memory, "B"))
    rows = ["| store | targets | greedy (s) | status | objective | bound | gap | wall s |", "|---|---|---:|---|---:|---:|---:|---:|"]
    print(rows[0], flush=True)
    for target in args.targets.split(","):
        latency_s = parse_quantity(target, "s")
        problem = lower(store, device, importance, args.seq_len, latency_s, memory, None, PLANNED_PERCENTILE)
        hint, hint_s = hint_for(problem, args.hint)
        try:
            info = cpsat_solve(problem, time_limit_s=args.time_limit_store, workers=args.workers, seed=args.seed, hint=hint).info
        except UserError as error:
            rows.append(f"| {store.spec.name} | {target}, {memory / 1e6:g} MB, {args.seq_len} tokens | - | {error} | | | | |")
            print(rows[-1], flush=True)
            continue
        rows.append(
            f"| {store.spec.name} | {target}, {memory / 1e6:g} MB, {args.seq_len} tokens | {problem.objective(hint):.4f} ({hint_s:.1f} s) | "
            f"{info.status} | {info.objective:.4f} | {info.bound:.4f} | {info.gap:.2%} | {info.wall_s:.2f} |"
        )
        print(rows[-1], flush=True)
    return rows


def _model_size(problem: Problem) -> str:
    """Variables and constraints of the problem's CP-SAT model (one scratch tier's copy)."""
    proto = PlanModel(problem, Scale.for_problem(problem)).model.proto
    return f"{len(proto.variables):,} / {len(proto.constraints):,}"


def _fractions(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(","))


SHAPE_MARKERS = ("<!-- bench_solver begin -->", "<!-- bench_solver end -->")
STORE_MARKERS = ("<!-- bench_solver_minilm begin -->", "<!-- bench_solver_minilm end -->")


def _write_table(path: Path, command: str, rows: list[str], markers: tuple[str, str] = SHAPE_MARKERS) -> None:
    begin, end = markers
    block = "\n".join([begin, f"`{command.strip()}`", "", *rows, end])
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if begin in text and end in text:
        text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
