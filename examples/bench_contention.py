"""What slows the compute lane when something else runs on the other core?

Runs a MiniLM runner with every shard preloaded at fp32 (kernels only, no IO work; 1 torch thread)
while another process keeps the second core busy: idle, a CPU-only Python loop, or numpy copying
32 MB buffers (memory traffic). Medians of 9 calls each, sequence length 128.
Run: python examples/bench_contention.py
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from codegen import emit_runner, write_output
from solvers.uniform import uniform_plan
from sticc.cli import progress_bar
from sticc.default_model import minilm_dir
from sticc.plan import ShardChoice, SolverInfo, make_plan
from sticc.store import Store, write_store

BACKGROUNDS = {
    "idle": None,
    "CPU-only loop (other process)": "x = 0\nwhile True: x += 1",
    "numpy 32 MB copies (other process)": "import numpy as np\na = np.ones(32 << 20, np.uint8); b = np.empty_like(a)\nwhile True: np.copyto(b, a)",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("work"))
    args = parser.parse_args()
    store_dir = args.work / "minilm-store"
    store = Store.open(store_dir) if (store_dir / "manifest.json").exists() else write_store(minilm_dir(), store_dir, progress=progress_bar)
    every = tuple(ShardChoice(c.layer, c.index, 32, preload=True) for c in uniform_plan(store, 32).shards)
    out = args.work / "contention-preloaded"
    write_output(out, emit_runner(store, make_plan(store, every, SolverInfo("hand", "GIVEN")), store_dir))
    spec = importlib.util.spec_from_file_location("contention_runner", out / "runner.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    runner = module.Runner(str(store_dir), threads=1)
    ids = torch.randint(1000, store.spec.vocab, (1, 128), generator=torch.Generator().manual_seed(0))
    for name, code in BACKGROUNDS.items():
        background = subprocess.Popen([sys.executable, "-c", code]) if code else None
        time.sleep(0.5)
        latencies = []
        for _ in range(9):
            runner.forward(ids)
            latencies.append(runner.last_stats["latency_s"] * 1e3)
        if background:
            background.kill()
            background.wait()
        print(f"compute lane, 1 thread, other core {name}: median {statistics.median(latencies):.1f} ms")


if __name__ == "__main__":
    main()
