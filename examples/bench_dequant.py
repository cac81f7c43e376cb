"""Dequantization throughput per bitwidth (weights/s), as the runner's IO thread does it.

Encodes random pieces of a given shape at every bitwidth and times `sticc.runtime.dequantize_into`
(unpack, scale, add zero, copy bias) into an fp32 buffer, at 1 and at all torch threads.
Run: python examples/bench_dequant.py [--rows 256 --cols 384]
"""

from __future__ import annotations

import argparse
import time

import torch
from rich.console import Console
from rich.table import Table

from sticc.quant import encode_piece
from sticc.runtime import dequantize_into


def weights_per_second(bits: int, rows: int, cols: int, threads: int, repeats: int) -> float:
    torch.set_num_threads(threads)
    layout, blob = encode_piece(torch.randn(rows, cols), torch.randn(rows // 2), bits, 64, method="rtn")
    stored = torch.frombuffer(bytearray(blob), dtype=torch.uint8)
    out = torch.empty(layout.weight_count + layout.bias_len)
    best_s = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeats):
            dequantize_into(stored, layout, out[: layout.weight_count], out[layout.weight_count :])
        best_s = min(best_s, (time.perf_counter() - start) / repeats)
    return layout.weight_count / best_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=256, help="piece rows (MiniLM FFN piece: 256)")
    parser.add_argument("--cols", type=int, default=384, help="piece columns (the hidden size)")
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    all_threads = torch.get_num_threads()
    table = Table(title=f"dequantize_into, piece {args.rows}x{args.cols}, best of 5 x {args.repeats}")
    table.add_column("bits", justify="right")
    for threads in sorted({1, all_threads}):
        table.add_column(f"M weights/s, {threads} thread{'s' if threads > 1 else ''}", justify="right")
    for bits in (2, 3, 4, 5, 6, 8, 16, 32):
        rates = [weights_per_second(bits, args.rows, args.cols, t, args.repeats) for t in sorted({1, all_threads})]
        table.add_row(str(bits), *[f"{r / 1e6:.0f}" for r in rates])
    Console().print(table)


if __name__ == "__main__":
    main()
