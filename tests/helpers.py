"""Test helpers: tiny checkpoints, loading generated runners, HF references."""

from __future__ import annotations

from pathlib import Path

import torch
import transformers

from codegen import emit_runner, load_runner, write_output
from sticc.ir.plan import Plan
from sticc.model.store import Store

TINY = {"layers": 2, "heads": 4, "hidden": 32, "ffn": 64, "vocab": 128, "positions": 40}
# decoders: 2 key/value heads for 4 query heads, and a vocabulary the LM head cuts into 3 slices (the last padded)
TINY_DECODER = {"layers": 2, "heads": 4, "kv_heads": 2, "hidden": 32, "ffn": 64, "vocab": 300, "positions": 64}
DECODER_FAMILIES = ("llama", "qwen2", "gpt2")
# a tiny Mistral ("mistral", not in DECODER_FAMILIES): TINY_DECODER's, its sliding window within its positions
TINY_MISTRAL_WINDOW = 48


def build_tiny_checkpoint(path: Path, family: str, seed: int = 0) -> Path:
    """A random-weight checkpoint of `family`, every parameter perturbed (so mix-ups show)."""
    torch.manual_seed(seed)
    if family == "bert":
        config = transformers.BertConfig(
            vocab_size=TINY["vocab"], hidden_size=TINY["hidden"], num_hidden_layers=TINY["layers"],
            num_attention_heads=TINY["heads"], intermediate_size=TINY["ffn"], max_position_embeddings=TINY["positions"],
        )
        model = transformers.BertModel(config, add_pooling_layer=False)
    elif family == "roberta":
        config = transformers.RobertaConfig(
            vocab_size=TINY["vocab"], hidden_size=TINY["hidden"], num_hidden_layers=TINY["layers"],
            num_attention_heads=TINY["heads"], intermediate_size=TINY["ffn"],
            max_position_embeddings=TINY["positions"] + 2, pad_token_id=1, type_vocab_size=1,
        )
        model = transformers.RobertaModel(config, add_pooling_layer=False)
    elif family == "distilbert":
        config = transformers.DistilBertConfig(
            vocab_size=TINY["vocab"], dim=TINY["hidden"], n_layers=TINY["layers"], n_heads=TINY["heads"],
            hidden_dim=TINY["ffn"], max_position_embeddings=TINY["positions"],
        )
        model = transformers.DistilBertModel(config)
    elif family in ("llama", "qwen2", "mistral"):
        kind = {"llama": transformers.LlamaConfig, "qwen2": transformers.Qwen2Config, "mistral": transformers.MistralConfig}[family]
        window = {"sliding_window": TINY_MISTRAL_WINDOW} if family == "mistral" else {}
        config = kind(
            vocab_size=TINY_DECODER["vocab"], hidden_size=TINY_DECODER["hidden"], num_hidden_layers=TINY_DECODER["layers"],
            num_attention_heads=TINY_DECODER["heads"], num_key_value_heads=TINY_DECODER["kv_heads"],
            intermediate_size=TINY_DECODER["ffn"], max_position_embeddings=TINY_DECODER["positions"],
            rope_theta=5000.0, tie_word_embeddings=family == "qwen2", bos_token_id=1, eos_token_id=2, **window,
        )
        model = transformers.AutoModelForCausalLM.from_config(config)
    elif family == "gpt2":
        config = transformers.GPT2Config(
            vocab_size=TINY_DECODER["vocab"], n_embd=TINY_DECODER["hidden"], n_layer=TINY_DECODER["layers"],
            n_head=TINY_DECODER["heads"], n_positions=TINY_DECODER["positions"], bos_token_id=2, eos_token_id=2,
        )
        model = transformers.GPT2LMHeadModel(config)
    else:
        raise ValueError(family)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.1)
    model.save_pretrained(path)
    return path


def compile_runner(store_dir: Path, plan: Plan, out: Path):
    """Generate `plan`'s runner into `out` and construct it."""
    store = Store.open(store_dir)
    write_output(out, emit_runner(store, plan, store_dir))
    return load_runner(out / "runner.py").Runner(str(store_dir))


def hf_model(model_dir: Path):
    return transformers.AutoModel.from_pretrained(model_dir).eval()


def hf_hidden(model, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=input_ids, attention_mask=mask).last_hidden_state


def pooled(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1)


def zero_dropped(model, family: str, dropped: list[tuple[int, int]], shards_per_layer: int) -> None:
    """Mask dropped shards in an HF model: its heads' output columns and its FFN slice zeroed."""
    config = model.config
    hidden = config.hidden_size if family != "distilbert" else config.dim
    heads = config.num_attention_heads if family != "distilbert" else config.n_heads
    ffn = config.intermediate_size if family != "distilbert" else config.hidden_dim
    width = hidden // heads * (heads // shards_per_layer)
    units = ffn // shards_per_layer
    with torch.no_grad():
        for layer, index in dropped:
            if family == "distilbert":
                block = model.transformer.layer[layer]
                out_proj, up, down = block.attention.out_lin, block.ffn.lin1, block.ffn.lin2
            else:
                block = model.encoder.layer[layer]
                out_proj, up, down = block.attention.output.dense, block.intermediate.dense, block.output.dense
            out_proj.weight[:, index * width : (index + 1) * width] = 0
            up.weight[index * units : (index + 1) * units] = 0
            up.bias[index * units : (index + 1) * units] = 0
            down.weight[:, index * units : (index + 1) * units] = 0
