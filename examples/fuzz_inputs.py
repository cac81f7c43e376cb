"""Fuzz every file kind and flag at length: tests/test_fuzz.py and tests/test_fuzz_decoders.py with many random examples.

    python examples/fuzz_inputs.py [--examples 2000] [--slow-scale 1] [--rounds 1] [-k gguf]

CI runs the same tests derandomized: 200 examples per encoder kind, and a quarter of that (50) per
slow kind (decoder checkpoints, GGUF files, decoder compile flags, runners' command lines). This
runs `--examples` fresh random ones per kind and round (`--slow-scale` of that per slow kind: all
of them by default), with STICC_DEBUG=1 so a bug shows its traceback. The property
(tests/test_fuzz.py): one line and a non-zero exit, or a correct runner; never code from an input.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SUITES = ("test_fuzz.py", "test_fuzz_decoders.py")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=2000, help="random examples per kind and round")
    parser.add_argument("--slow-scale", type=float, default=1.0, help="the fraction of --examples each slow kind runs (default 1: as many)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds, each with fresh random examples")
    parser.add_argument("-k", default=None, help="only the tests matching this pytest -k expression")
    args = parser.parse_args()
    os.environ.update(
        STICC_FUZZ_EXAMPLES=str(args.examples), STICC_FUZZ_SLOW_SCALE=str(args.slow_scale), STICC_FUZZ_RANDOM="1", STICC_DEBUG="1",
    )
    slow = max(1, round(args.examples * args.slow_scale))
    for round_ in range(args.rounds):
        start = time.perf_counter()
        argv = [*(str(ROOT / "tests" / suite) for suite in SUITES), "-q", "-x", "-p", "no:cacheprovider"]
        if args.k:
            argv += ["-k", args.k]
        code = pytest.main(argv)
        print(f"round {round_ + 1}/{args.rounds}: {args.examples} examples per kind ({slow} per slow kind), "
              f"{time.perf_counter() - start:.0f} s, {'passed' if code == 0 else 'FAILED'}")
        if code:
            return int(code)
    return 0


if __name__ == "__main__":
    sys.exit(main())
