"""Every file format sticc reads, and the JSON Schemas the docs carry (docs/schemas/).

`python -m sticc.cli.formats docs/schemas` writes one `<name>.schema.json` per format from the models
that validate it (`sticc.base.schema`); a test checks the committed files equal what the code
generates, so docs and code cannot drift.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from sticc.base.schema import json_schema
from sticc.ir.plan import PlanFile
from sticc.model.checkpoint import GenerationConfig, SafetensorsIndex
from sticc.model.families import BertConfig, ConfigHead, DistilBertConfig, Gpt2Config, LlamaConfig
from sticc.model.gguf_file import LlamaMetadata
from sticc.model.sentence import (
    ModelConfig,
    ModuleEntry,
    NormalizeConfig,
    PoolingConfig,
    TokenizerConfig,
    TransformerConfig,
)
from sticc.model.store import Manifest
from sticc.profile.device import DeviceProfile
from sticc.profile.importance import ImportanceFile

# name -> (model, title); the profile cache holds device and importance files of these formats
FORMATS = {
    "config-head": (ConfigHead, "config.json: the keys read before the family is known"),
    "config-bert": (BertConfig, "config.json of a BERT or RoBERTa checkpoint: the keys sticc uses"),
    "config-distilbert": (DistilBertConfig, "config.json of a DistilBERT checkpoint: the keys sticc uses"),
    "config-llama": (LlamaConfig, "config.json of a Llama, Mistral or Qwen2 checkpoint: the keys sticc uses"),
    "config-gpt2": (Gpt2Config, "config.json of a GPT-2 checkpoint: the keys sticc uses"),
    "safetensors-index": (SafetensorsIndex, "model.safetensors.index.json of a sharded checkpoint"),
    "generation-config": (GenerationConfig, "generation_config.json of a decoder checkpoint: the keys sticc uses"),
    "gguf-llama-metadata": (LlamaMetadata, "the metadata of a llama GGUF file that sticc uses (keys as in the file)"),
    "st-modules": (list[ModuleEntry], "modules.json of a sentence-transformers checkpoint"),
    "st-sentence-bert-config": (TransformerConfig, "sentence_bert_config.json: the Transformer module's settings"),
    "st-pooling": (PoolingConfig, "a Pooling module's config.json (either form)"),
    "st-normalize": (NormalizeConfig, "a Normalize module's config.json"),
    "st-model-config": (ModelConfig, "config_sentence_transformers.json: the named prompts"),
    "tokenizer-config": (TokenizerConfig, "tokenizer_config.json: the length a text is cut at when sentence_bert_config.json names none"),
    "manifest": (Manifest, "manifest.json of a sticc store"),
    "plan": (PlanFile, "plan.json: written by sticc compile, read by --plan and sticc report"),
    "device": (DeviceProfile, "device.json: a device profile"),
    "importance": (ImportanceFile, "importance.json: an importance profile"),
}


def schemas() -> dict[str, str]:
    """{file name: JSON text} of every format's schema."""
    return {
        f"{name}.schema.json": json.dumps(json_schema(model, title), indent=1, sort_keys=True) + "\n"
        for name, (model, title) in FORMATS.items()
    }


def main(argv: list[str]) -> int:
    out = Path(argv[0] if argv else "docs/schemas")
    out.mkdir(parents=True, exist_ok=True)
    for name, text in schemas().items():
        (out / name).write_text(text, encoding="utf-8")
    print(f"wrote {len(FORMATS)} schemas to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
