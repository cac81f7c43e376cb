"""How fast does the CP-SAT planner close its gap on BERT-base- and BERT-large-shaped instances?

The instances are built from shapes alone (`synthetic_problem`): the cost tables come from the
same formulas `sticc.ir.lower` uses (stored piece layouts and slots, decoded chunk sizes, the device
profile's read, checksum, decode and compute fits) with plausible phone-class device numbers, and importances are
random like the planner tests' synthetic profiles. No store is written (a BERT-large store would
be gigabytes). The targets are tight: the memory budget is 1-2% of the fp32 weights and the
latency lies between the all-dropped and the all-8-bit latency, so shards must be dropped or cut.

Prints a table (instance, targets, status, objective, bound, gap, wall) and, with --write, puts it
into docs/solver.md between the benchmark markers.
Run: python examples/bench_solver.py [--shapes bert-base] [--instances 0,2] [--time-limit-base 2]
[--time-limit-large 10] [--write]
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from solvers.base import Choices, dropped_all, evaluate
from solvers.cpsat import cpsat_solve
from sticc.base.errors import UserError
from sticc.base.schema import Part
from sticc.ir.graph import GraphShape, PieceLayout, ShardChoice
from sticc.ir.lower import Problem, lower_shape
from sticc.model.store import DEFAULT_BITS, DEFAULT_GROUP_SIZE
from sticc.profile.device import Decode, DeviceProfile, PartCompute
from sticc.runtime.core import blob_layout

# A phone-class device, by hand (not measured): UFS-like cold reads, ~100 GFLOP/s of compute.
PHONE = DeviceProfile(
    device="synthetic phone-class device (hand-written for the solver benchmark)",
    model_shape={},
    compute_threads=4,
    read_bandwidth_Bps=500e6,
    request_latency_s=60e-6,
    checksum_Bps=10e9,
    emulated_bandwidth_Bps=None,
    io_chunk_overhead_s=40e-6,
    decode={
        bits: Decode(call_s=25e-6, weights_per_s=(1.5e9 if bits in (4, 8) else 0.6e9) if bits < 16 else 3e9)
        for bits in DEFAULT_BITS
    },
    compute={
        # c0 per chunk, cL per token, c1 per shard-token, c2 per shard-token^2 (attention scores)
        "attn": PartCompute((120e-6, 0.2e-6, 5e-9, 2.5e-12), (20e-6, 0.3e-6)),
        "ffn": PartCompute((100e-6, 0.2e-6, 8e-9, 0.0), (20e-6, 0.3e-6)),
    },
    embed_s=(300e-6, 3e-6),
    fit_error=None,
)


def synthetic_problem(
    layers: int,
    shards: int,
    hidden: int,
    ffn: int,
    seq_len: int = 128,
    shards_per_chunk: int = 4,
    bits: tuple[int, ...] = DEFAULT_BITS,
    latency_s: float | None = None,
    memory_bytes: int | None = None,
    cap_Bps: float | None = None,
    device: DeviceProfile = PHONE,
    vocab: int = 30522,
    seed: int = 0,
) -> Problem:
    """A BERT-shaped planning instance from shapes: one head group per shard, as `sticc.ir.lower` costs it."""
    width, units = hidden // shards, ffn // shards
    shapes = {Part.ATTN: (4 * width, hidden, 3 * width), Part.FFN: (2 * units, hidden, units)}  # rows, cols, bias
    pieces = {}
    for part, (rows, cols, bias) in shapes.items():
        layouts = {b: blob_layout(rows, cols, b, DEFAULT_GROUP_SIZE, bias) for b in bits}
        pieces[part] = PieceLayout(
            rows * cols, bias, {b: layout.nbytes for b, layout in layouts.items()}, {b: layout.slot_nbytes for b, layout in layouts.items()},
        )
    rng = random.Random(seed)
    loss = {}
    for layer in range(layers):
        for index in range(shards):
            weight = rng.uniform(0.2, 1.0) * 1e-2
            loss[(layer, index)] = {0: weight, **{b: (0.0 if b == 32 else weight * 0.5 ** (b * rng.uniform(0.8, 1.2))) for b in bits}}
    # embedding LayerNorm + 2 token types; 6 vectors per layer (as stored)
    shape = GraphShape(
        f"synthetic {layers}x{shards} h{hidden} f{ffn}", "synthetic", layers, shards, tuple(sorted(bits)), hidden, vocab,
        2 * hidden * 4, (4 * 2 * hidden * 2, *([4 * 6 * hidden] * layers)), pieces,
    )
    device = replace(device, emulated_bandwidth_Bps=cap_Bps)
    return lower_shape(shape, device, loss, seq_len, latency_s, memory_bytes, shards_per_chunk)


def uniform_choices(problem: Problem, bits: int) -> Choices:
    return {(layer, index): ShardChoice(layer, index, bits) for layer, index in problem.positions}


def fp32_weight_nbytes(problem: Problem) -> int:
    return sum(4 * c.weights for c in problem.graph.part_costs.values()) * problem.layers * problem.shards_per_layer


@dataclass(frozen=True)
class Instance:
    name: str
    problem: Problem
    targets: str  # for the table
    time_limit_s: float


SHAPES = {  # layers, shards (one head each), hidden, ffn
    "bert-base": (12, 12, 768, 3072),
    "bert-large": (24, 16, 1024, 4096),
}


def instances(shapes: dict[str, float], memory_fractions: tuple[float, ...], latency_fractions: tuple[float, ...],
              caps: tuple[float | None, ...], seed: int = 0) -> list[Instance]:
    """Tight instances: memory a fraction of the fp32 weights, latency a fraction of the way from the
    all-dropped to the all-8-bit latency (both simulated without a memory target)."""
    out = []
    for name, time_limit_s in shapes.items():
        for cap in caps:
            loose = synthetic_problem(*SHAPES[name], cap_Bps=cap, seed=seed)
            low = evaluate(loose, dropped_all(loose)).latency_s
            high = evaluate(loose, uniform_choices(loose, 8)).latency_s
            for memory in memory_fractions:
                for fraction in latency_fractions:
                    latency = low + fraction * (high - low)
                    problem = replace(loose, latency_s=latency, memory_bytes=int(memory * fp32_weight_nbytes(loose)))
                    cap_text = f", cap {cap / 1e6:g} MB/s" if cap else ""
                    targets = f"mem {memory:.0%} ({problem.memory_bytes / 1e6:.1f} MB), lat {latency * 1e3:.1f} ms ({fraction:.0%}){cap_text}"
                    out.append(Instance(name, problem, targets, time_limit_s))
    return out


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
    parser.add_argument("--shapes", default="bert-base,bert-large")
    parser.add_argument("--time-limit-base", type=float, default=2.0)
    parser.add_argument("--time-limit-large", type=float, default=10.0)
    parser.add_argument("--memory", default="0.01,0.02", help="memory targets, fractions of the fp32 weights")
    parser.add_argument("--latency", default="0.3,0.6", help="latency targets, fractions from all-dropped to all-8-bit")
    parser.add_argument("--caps", default="none,200e6", help="emulated bandwidth caps in B/s ('none': uncapped)")
    parser.add_argument("--hint", choices=("greedy", "none"), default="greedy")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--instances", default="", help="comma-separated row numbers (0-based) to run, in table order; default all")
    parser.add_argument("--write", action="store_true", help="put the table into docs/solver.md")
    args = parser.parse_args()
    limits = {"bert-base": args.time_limit_base, "bert-large": args.time_limit_large}
    shapes = {name: limits[name] for name in args.shapes.split(",")}
    caps = tuple(None if c == "none" else float(c) for c in args.caps.split(","))
    cases = instances(shapes, _fractions(args.memory), _fractions(args.latency), caps, args.seed)
    if args.instances:
        cases = [cases[int(i)] for i in args.instances.split(",")]
    header = "| instance | targets | hint | status | objective | bound | gap | wall s |"
    rows = [header, "|---|---|---:|---|---:|---:|---:|---:|"]
    print(header, flush=True)
    for case in cases:
        hint, hint_s = hint_for(case.problem, args.hint)
        hint_text = f"{case.problem.objective(hint):.4f} ({hint_s:.1f} s)" if hint else "-"
        try:
            found = cpsat_solve(case.problem, time_limit_s=case.time_limit_s, workers=args.workers, seed=args.seed, hint=hint)
        except UserError as error:
            row = f"| {case.name} | {case.targets} | {hint_text} | {error} | | | | |"
        else:
            info = found.info
            row = (
                f"| {case.name} | {case.targets} | {hint_text} | {info.status} | {info.objective:.4f} | "
                f"{info.bound:.4f} | {info.gap:.2%} | {info.wall_s:.2f} |"
            )
        rows.append(row)
        print(row, flush=True)
    if args.write:
        command = "python examples/bench_solver.py " + " ".join(sys.argv[1:])
        _write_table(Path(__file__).resolve().parent.parent / "docs" / "solver.md", command, rows)


def _fractions(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(","))


BEGIN, END = "<!-- bench_solver begin -->", "<!-- bench_solver end -->"


def _write_table(path: Path, command: str, rows: list[str]) -> None:
    block = "\n".join([BEGIN, f"`{command.strip()}`", "", *rows, END])
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if BEGIN in text and END in text:
        text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
