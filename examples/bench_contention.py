"""What slows the compute lane when something else runs on the other core?

Runs a MiniLM runner with every shard preloaded at fp32 (kernels only, no IO work; 1 torch thread)
while the second core is kept busy: idle, a CPU-only Python loop or numpy copying 32 MB buffers in
another process (CPU, memory traffic), or a thread of this process dequantizing 4-bit pieces in a
loop as the IO thread does (shares the GIL). Medians of 9 calls each, sequence length 128.
Run: python examples/bench_contention.py
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

from codegen import emit_runner, load_runner, write_output
from solvers.uniform import uniform_plan
from sticc.default_model import minilm_store
from sticc.plan import ShardChoice, SolverInfo, make_plan
from sticc.quant import encode_piece
from sticc.runtime import dequantize_into

BACKGROUNDS = {
    "idle": None,
    "CPU-only loop (other process)": "x = 0\nwhile True: x += 1",
    "numpy 32 MB copies (other process)": "import numpy as np\na = np.ones(32 << 20, np.uint8); b = np.empty_like(a)\nwhile True: np.copyto(b, a)",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("work"))
    args = parser.parse_args()
    store, store_dir = minilm_store(args.work)
    every = tuple(ShardChoice(c.layer, c.index, 32, preload=True) for c in uniform_plan(store, 32).shards)
    out = args.work / "contention-preloaded"
    write_output(out, emit_runner(store, make_plan(store, every, SolverInfo("hand", "GIVEN")), store_dir))
    module = load_runner(out / "runner.py")
    runner = module.Runner(str(store_dir), threads=1)
    ids = torch.randint(1000, store.spec.vocab, (1, 128), generator=torch.Generator().manual_seed(0))
    for name, code in BACKGROUNDS.items():
        background = subprocess.Popen([sys.executable, "-c", code]) if code else None
        time.sleep(0.5)
        report(runner, ids, name)
        if background:
            background.kill()
            background.wait()
    stop = threading.Event()
    dequantizer = threading.Thread(target=dequantize_until, args=(stop,))
    dequantizer.start()
    report(runner, ids, "dequantizing in a thread of this process")
    stop.set()
    dequantizer.join()


def report(runner, ids: torch.Tensor, name: str) -> None:
    latencies = []
    for _ in range(9):
        runner.forward(ids)
        latencies.append(runner.last_stats["latency_s"] * 1e3)
    print(f"compute lane, 1 thread, other core {name}: median {statistics.median(latencies):.1f} ms")


def dequantize_until(stop: threading.Event) -> None:
    torch.set_num_threads(1)  # as the runner's IO thread
    layout, blob = encode_piece(torch.randn(256, 384), torch.randn(128), 4, 64, method="rtn")
    stored = torch.frombuffer(bytearray(blob), dtype=torch.uint8)
    weight, bias = torch.empty(layout.weight_count), torch.empty(layout.bias_len)
    while not stop.is_set():
        dequantize_into(stored, layout, weight, bias)


if __name__ == "__main__":
    main()
