"""Planning instances built from model shapes alone, for the solver benchmark
(`examples/bench_solver.py`) and the solver tests.

The cost tables come from the same formulas `sticc.ir.lower` uses (stored piece layouts and slots,
decoded chunk sizes, the device profile's read, checksum, decode and compute fits) with plausible
phone-class device numbers, and importances are random like the planner tests' synthetic profiles.
No store is written (a BERT-large store would be gigabytes). The targets are tight: the memory
budget is 1-2% of the fp32 weights and the latency lies between the all-dropped and the all-8-bit
latency, so shards must be dropped or cut.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from solvers.base import Choices, dropped_all, evaluate
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
    # a Llama-7B-sized model cut per head: 1024 shards (BERT-style pieces: 4 attention and 2 FFN matrices)
    "32x32": (32, 32, 4096, 11008),
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
