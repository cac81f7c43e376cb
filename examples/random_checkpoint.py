"""Write a random-weight BERT checkpoint of a standard shape, for latency and memory benchmarks.

The weights are transformers' seeded normal init, so outputs carry no meaning: use the checkpoint
for latency and memory only, never for fidelity. config.json gets `"sticc_random_weights": true`
(benchmark tables read it), and the embedded MiniLM's tokenizer.json (the same uncased 30522-token
vocabulary) is copied in so text input works. Needs transformers (the test extra).

Run: python examples/random_checkpoint.py --shape bert-base|bert-large -o DIR [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

SHAPES = {
    "bert-base": {},  # BertConfig() defaults: 12 layers, 12 heads, hidden 768, ffn 3072, vocab 30522
    "bert-large": {"num_hidden_layers": 24, "num_attention_heads": 16, "hidden_size": 1024, "intermediate_size": 4096},
}


def write_checkpoint(shape: str, out: Path, seed: int) -> None:
    import torch
    from transformers import BertConfig, BertModel

    from sticc.model.default_model import minilm_dir

    tokenizer = minilm_dir() / "tokenizer.json"
    if not tokenizer.exists():
        raise FileNotFoundError(f"no tokenizer.json in {tokenizer.parent}")
    torch.manual_seed(seed)
    model = BertModel(BertConfig(**SHAPES[shape])).eval()
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        config_path = tmp / "config.json"
        config = json.loads(config_path.read_text())
        config["sticc_random_weights"] = True
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        shutil.copyfile(tokenizer, tmp / "tokenizer.json")
        umask = os.umask(0)
        os.umask(umask)
        for path in [tmp, *tmp.iterdir()]:  # mkdtemp makes 0700; give the usual umask modes
            path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", required=True, choices=sorted(SHAPES))
    parser.add_argument("-o", "--out", required=True, type=Path, help="checkpoint directory to create (must not exist)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = args.out.resolve()
    if out.exists():
        sys.exit(f"error: {args.out} already exists; remove it or pick another directory")
    if not out.parent.is_dir():
        sys.exit(f"error: parent directory {out.parent} does not exist")
    try:
        write_checkpoint(args.shape, out, args.seed)
    except Exception as exc:  # one clear line, not a traceback
        sys.exit(f"error: {exc}")
    print(f"wrote {args.shape} random-weight checkpoint (seed {args.seed}) to {args.out}")


if __name__ == "__main__":
    main()
