"""Measure the importance profile of the default model (all-MiniLM-L6-v2) and print its figures.

Shards the model into WORK/minilm-store first if it is not there (every bitwidth, about 30 s), then
measures every shard at every bitwidth and dropped, and 16 random whole plans, on the built-in
held-out sentences, with both cores. Prints the wall time, the loss per bitwidth over the 72
shards, the drop loss per layer, and the additivity check, as markdown (docs/importance-profile.md).
Run: .venv/bin/python examples/importance_minilm.py [--work DIR] [--out importance.json] [--workers N]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from sticc.base.progress import progress_bar
from sticc.model.default_model import minilm_store
from sticc.profile.measure_importance import measure_importance


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("work"), help="where the MiniLM store is (or is made)")
    parser.add_argument("--out", type=Path, help="also write the profile here")
    parser.add_argument("--workers", type=int, help="processes (default: min(2, cores))")
    args = parser.parse_args()
    store, store_dir = minilm_store(args.work, progress_bar)
    start_s = time.perf_counter()
    profile = measure_importance(store, progress=progress_bar, workers=args.workers)
    wall_s = time.perf_counter() - start_s
    if args.out:
        profile.write(args.out)

    print(f"store {store_dir} ({store.store_id[:12]}), {profile.calibration.sentences} sentences, "
          f"{profile.calibration.tokens} tokens: measured in {wall_s:.1f} s\n")
    print("| bits | median loss | min | max |")
    print("|---|---|---|---|")
    for bits in sorted({0, *store.bits}, key=lambda b: (b == 0, b)):
        values = [losses[bits] for losses in profile.loss.values()]
        name = "dropped" if bits == 0 else str(bits)
        print(f"| {name} | {statistics.median(values):.3g} | {min(values):.3g} | {max(values):.3g} |")
    print("\n| layer | median drop loss | median 4-bit loss |")
    print("|---|---|---|")
    for layer in range(store.spec.layers):
        row = [profile.loss[(layer, index)] for index in range(store.shards_per_layer)]
        print(f"| {layer} | {statistics.median(r[0] for r in row):.3g} | "
              f"{statistics.median(r[4] for r in row) if 4 in store.bits else float('nan'):.3g} |")
    additivity = profile.additivity
    print(f"\nadditivity over {additivity.plans} random plans: pearson {additivity.pearson:.4f}, "
          f"spearman {additivity.spearman:.4f}, measured/predicted median {additivity.median_ratio:.3f} "
          f"(min {additivity.min_ratio:.3f}, max {additivity.max_ratio:.3f})\n")
    print("| drop rate | min bits | dropped | predicted | measured | ratio |")
    print("|---|---|---|---|---|---|")
    for (predicted, measured), mix in sorted(zip(additivity.pairs, additivity.mix, strict=True), key=lambda x: x[0][0]):
        ratio = f"{measured / predicted:.3f}" if predicted else "-"
        print(f"| {mix.drop_rate} | {mix.min_bits} | {mix.dropped} | {predicted:.3g} | {measured:.3g} | {ratio} |")


if __name__ == "__main__":  # required: the measurement spawns worker processes
    main()
