"""Do two device profiles of the same store agree? Their predictions of the same random plans.

For 30 random plans per sequence length (bitwidths 0/4/8/16/32, budgets of 4, 4.5 and 8 MB), the
ratio of the median latency each profile predicts: median, min and max. Two profiles taken minutes
apart should agree within 5% when the machine's state holds (docs/device-profile.md).
Run: python examples/profile_agreement.py STORE A.json B.json [--seq-lens 32,128]
"""

from __future__ import annotations

import argparse
import random
import statistics
from pathlib import Path

from sticc.ir.graph import ShardChoice
from sticc.ir.lower import lower
from sticc.ir.simulate import simulate
from sticc.model.store import Store
from sticc.profile.device import DeviceProfile
from sticc.profile.importance import ImportanceProfile

BUDGETS = (4_000_000, 4_500_000, 8_000_000)
PLANS_PER_BUDGET = 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", type=Path)
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--seq-lens", default="32,128")
    args = parser.parse_args()
    store = Store.open(args.store)
    profiles = DeviceProfile.read(args.a), DeviceProfile.read(args.b)
    flat = ImportanceProfile.flat(store)
    rng = random.Random(1)
    choices_of = [b for b in (0, 4, 8, 16, 32) if b == 0 or b in store.bits]
    for seq_len in (int(n) for n in args.seq_lens.split(",")):
        ratios = []
        for budget in BUDGETS:
            for _ in range(PLANS_PER_BUDGET):
                choices = {
                    (layer, i): ShardChoice(layer, i, rng.choice(choices_of))
                    for layer in range(store.spec.layers) for i in range(store.shards_per_layer)
                }
                a, b = (simulate(lower(store, p, flat, seq_len, None, budget), choices, budget) for p in profiles)
                if a.fits:
                    ratios.append(a.latency_s / b.latency_s)
        print(f"{seq_len} tokens: {args.a.name} / {args.b.name} predicted latency, median {statistics.median(ratios):.3f}, "
              f"range {min(ratios):.3f}-{max(ratios):.3f} over {len(ratios)} plans")


if __name__ == "__main__":
    main()
