"""Shared fixtures: tiny random checkpoints of each family, MiniLM, and stores built from them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import DECODER_FAMILIES, build_tiny_checkpoint

from sticc.model.default_model import minilm_dir
from sticc.model.store import write_store


@pytest.fixture(scope="session")
def minilm() -> Path:
    return minilm_dir()


@pytest.fixture(scope="session")
def minilm_store(tmp_path_factory: pytest.TempPathFactory, minilm: Path) -> Path:
    out = tmp_path_factory.mktemp("stores") / "minilm"
    write_store(minilm, out, bits=(4, 8, 32))
    return out


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-bert", "bert")


@pytest.fixture(scope="session")
def tiny_bert_store(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Path:
    out = tmp_path_factory.mktemp("stores") / "tiny-bert"
    write_store(tiny_bert, out, bits=(2, 3, 4, 5, 6, 8, 16, 32))
    return out


@pytest.fixture(scope="session")
def tiny_decoders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """{family: (checkpoint, store at bits 4, 8 and 32)} for llama (GQA, separate LM head), qwen2
    (q/k/v biases, tied) and gpt2 (learned positions, Conv1D, LayerNorm, gelu_new, tied)."""
    out = {}
    for family in DECODER_FAMILIES:
        checkpoint = build_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / f"tiny-{family}", family)
        store = tmp_path_factory.mktemp("stores") / f"tiny-{family}"
        write_store(checkpoint, store, bits=(4, 8, 32))
        out[family] = (checkpoint, store)
    return out


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)
