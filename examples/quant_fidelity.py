"""End-to-end fidelity of the piece quantizers on the default model (all-MiniLM-L6-v2).

Every piece of every layer is quantized with `sticc.model.quant.encode_piece`, dequantized with
`sticc.runtime.decode.decode_piece`, put back into a `transformers.BertModel`, and the attention-mask
mean-pooled embeddings of 30 held-out sentences (disjoint from `sticc.model.activation_stats`'s calibration
text) are compared with the fp32 model: min and mean cosine. Prints a markdown table.
Run: .venv/bin/python examples/quant_fidelity.py  (needs the test extra: transformers)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import transformers
from tokenizers import Tokenizer

from sticc.model.activation_stats import piece_stats
from sticc.model.checkpoint import Checkpoint
from sticc.model.default_model import minilm_dir
from sticc.model.quant import QUANTIZER_NAME, encode_piece
from sticc.model.sharding import layer_pieces
from sticc.model.texts import CALIBRATION_SENTENCES, EVAL_SENTENCES
from sticc.runtime.decode import decode_piece

# name -> (method, inputs): inputs "none" (weights only), "importance" (diagonal), "calibration" (GPTQ)
CONFIGS = {
    "rtn": ("rtn", "none"),
    "mse-lsq": ("mse-lsq", "none"),
    f"{QUANTIZER_NAME}/weights-only": (QUANTIZER_NAME, "none"),
    f"{QUANTIZER_NAME}/importance": (QUANTIZER_NAME, "importance"),
    QUANTIZER_NAME: (QUANTIZER_NAME, "calibration"),
}
LAYER_ROLES = (
    "q.weight", "k.weight", "v.weight", "o.weight", "q.bias", "k.bias", "v.bias", "up.weight", "up.bias", "down.weight",
)


def embed(model: transformers.PreTrainedModel, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    ids, mask, types = batch
    with torch.no_grad():
        hidden = model(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1)


def quantized_weights(checkpoint: Checkpoint, pieces: list[dict], shards: int, bits: int, group_size: int,
                      method: str, calibration: dict | None, inputs: str) -> dict[str, torch.Tensor]:
    """{checkpoint tensor name: tensor}: every piece through encode_piece/decode_piece, laid back out."""
    spec = checkpoint.spec
    width, units = spec.heads // shards * spec.head_dim, spec.ffn // shards
    state = {}
    for layer, layer_p in enumerate(pieces):
        full = {role: checkpoint.tensor(role, layer).clone() for role in LAYER_ROLES}
        for (index, part), (matrix, bias) in layer_p.items():
            extra = {}
            if inputs == "importance":
                extra["importance"] = calibration[(layer, index, part)].importance
            elif inputs == "calibration":
                extra["stats"] = calibration[(layer, index, part)]
            layout, blob = encode_piece(matrix, bias, bits, group_size, method=method, **extra)
            w, b = decode_piece(torch.frombuffer(bytearray(blob), dtype=torch.uint8), layout)
            if part == "attn":
                heads = slice(index * width, (index + 1) * width)
                for k, name in enumerate("qkv"):
                    full[f"{name}.weight"][heads] = w[k * width : (k + 1) * width]
                    full[f"{name}.bias"][heads] = b[k * width : (k + 1) * width]
                full["o.weight"][:, heads] = w[3 * width :].T
            else:
                cut = slice(index * units, (index + 1) * units)
                full["up.weight"][cut] = w[:units]
                full["down.weight"][:, cut] = w[units:].T
                full["up.bias"][cut] = b
        for role, tensor in full.items():
            state[checkpoint.family.layer_name(layer, role)] = tensor
    return state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="checkpoint dir (default: the embedded MiniLM)")
    parser.add_argument("--bits", type=int, nargs="+", default=[2, 3, 4, 5, 6, 8])
    parser.add_argument("--group-size", type=int, nargs="+", default=[64])
    parser.add_argument("--configs", nargs="+", default=["rtn", QUANTIZER_NAME], choices=list(CONFIGS))
    parser.add_argument("--shards-per-layer", type=int, default=12)
    args = parser.parse_args()
    assert not set(EVAL_SENTENCES) & set(CALIBRATION_SENTENCES), "evaluation text must be held out"

    transformers.logging.set_verbosity_error()
    model_dir = args.model or minilm_dir()
    checkpoint = Checkpoint.open(model_dir)
    model = transformers.AutoModel.from_pretrained(str(model_dir), add_pooling_layer=False).eval()
    tokenizer = Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
    tokenizer.enable_padding(pad_id=checkpoint.spec.pad_token_id)
    encodings = tokenizer.encode_batch(EVAL_SENTENCES)
    batch = tuple(torch.tensor([getattr(e, key) for e in encodings]) for key in ("ids", "attention_mask", "type_ids"))
    reference = embed(model, batch)
    original = {name: tensor.clone() for name, tensor in model.state_dict().items()}

    pieces = [layer_pieces(checkpoint, layer, args.shards_per_layer) for layer in range(checkpoint.spec.layers)]
    calibration = None
    if any(CONFIGS[name][1] != "none" for name in args.configs):
        start = time.perf_counter()
        calibration = piece_stats(checkpoint, args.shards_per_layer)
        print(f"calibration: {len(CALIBRATION_SENTENCES)} sentences, {time.perf_counter() - start:.2f} s")

    print("| quantizer | group | bits | stored bits/weight | min cos | mean cos | quantize s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in args.configs:
        method, inputs = CONFIGS[name]
        for group_size in args.group_size:
            for bits in args.bits:
                start = time.perf_counter()
                state = quantized_weights(
                    checkpoint, pieces, args.shards_per_layer, bits, group_size, method, calibration, inputs
                )
                seconds = time.perf_counter() - start
                model.load_state_dict(state, strict=False)
                cosine = torch.nn.functional.cosine_similarity(embed(model, batch), reference, dim=1)
                model.load_state_dict(original)
                stored = bits + 32 / group_size
                cells = [name, group_size, bits, f"{stored:.3f}"]
                cells += [f"{cosine.min():.5f}", f"{cosine.mean():.5f}", f"{seconds:.1f}"]
                print("| " + " | ".join(str(cell) for cell in cells) + " |", flush=True)


if __name__ == "__main__":
    main()
