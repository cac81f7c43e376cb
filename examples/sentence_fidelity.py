"""Compiled MiniLM runners against sentence-transformers itself, through both surfaces.

    sticc shard "$(python -c 'from sticc.model.default_model import minilm_dir; print(minilm_dir())')" -o work/st-store --bits 8,32
    sticc compile work/st-store -o work/st-32 --bits 32
    sticc compile work/st-store -o work/st-8 --bits 8
    python examples/sentence_fidelity.py work/st-32 work/st-8

The reference is `SentenceTransformer(<the embedded MiniLM>).encode(texts, normalize_embeddings=True)`.
For each runner: the per-text cosine of `Runner.encode(texts, normalize_embeddings=True)` and of
the adapter's `SentenceTransformer.encode` (`sticc.integrations.sentence_transformers`), min over
short texts (degenerate ones included) and over texts longer than MiniLM's max_seq_length of 256
tokens. The texts (`sticc.model.texts.HELDOUT_SHORT_TEXTS` and `HELDOUT_LONG_TEXTS`) appear in no
calibration or importance set of sticc.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sentence_transformers import SentenceTransformer

from codegen import load_runner
from codegen.literals import runner_literal
from sticc.integrations.sentence_transformers import sentence_transformer
from sticc.model.default_model import minilm_dir
from sticc.model.texts import HELDOUT_LONG_TEXTS, HELDOUT_SHORT_TEXTS

SHORT, LONG = list(HELDOUT_SHORT_TEXTS), list(HELDOUT_LONG_TEXTS)


def cosines(ours: np.ndarray, reference: np.ndarray) -> np.ndarray:
    ours, reference = ours.astype(np.float64), reference.astype(np.float64)
    return (ours * reference).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(reference, axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("outs", type=Path, nargs="+", help="`sticc compile` outputs of MiniLM")
    args = parser.parse_args()
    texts = SHORT + LONG
    reference = SentenceTransformer(str(minilm_dir()), device="cpu").encode(texts, normalize_embeddings=True)
    print("| runner | surface | short texts, min cos | texts > 256 tokens, min cos | weakest text |")
    print("|---|---|---:|---:|---|")
    for out in args.outs:
        runner = load_runner(out / "runner.py").Runner(runner_literal(out / "runner.py", "DEFAULT_STORE", str))
        try:
            surfaces = {
                "Runner.encode": runner.encode(texts, normalize_embeddings=True, batch_size=4),
                "adapter": sentence_transformer(runner).encode(texts, normalize_embeddings=True, batch_size=4),
            }
            for surface, ours in surfaces.items():
                cos = cosines(ours, reference)
                weakest = int(cos.argmin())
                print(f"| {out.name} | {surface} | {cos[: len(SHORT)].min():.9f} | {cos[len(SHORT):].min():.9f} | "
                      f"{texts[weakest][:30]!r}: {cos[weakest]:.5f} |")
        finally:
            runner.close()


if __name__ == "__main__":
    main()
