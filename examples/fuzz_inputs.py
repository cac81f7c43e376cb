"""Fuzz every file kind and flag at length: tests/test_fuzz.py with many random examples.

    python examples/fuzz_inputs.py [--examples 2000] [--rounds 1] [-k plan]

CI runs the same tests with 200 derandomized examples per kind; this runs `--examples` fresh
random ones per kind and round, with STICC_DEBUG=1 so a bug shows its traceback. The property
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=2000, help="random examples per kind and round")
    parser.add_argument("--rounds", type=int, default=1, help="rounds, each with fresh random examples")
    parser.add_argument("-k", default=None, help="only the tests matching this pytest -k expression")
    args = parser.parse_args()
    os.environ.update(STICC_FUZZ_EXAMPLES=str(args.examples), STICC_FUZZ_RANDOM="1", STICC_DEBUG="1")
    for round_ in range(args.rounds):
        start = time.perf_counter()
        argv = [str(ROOT / "tests" / "test_fuzz.py"), "-q", "-x", "-p", "no:cacheprovider"]
        if args.k:
            argv += ["-k", args.k]
        code = pytest.main(argv)
        print(f"round {round_ + 1}/{args.rounds}: {args.examples} examples per kind, "
              f"{time.perf_counter() - start:.0f} s, {'passed' if code == 0 else 'FAILED'}")
        if code:
            return int(code)
    return 0


if __name__ == "__main__":
    sys.exit(main())
