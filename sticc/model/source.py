"""Opening what `sticc shard` reads: an HF checkpoint directory or a GGUF file, as one interface.

Both kinds give a `ModelSpec`, every canonical role's tensor in fp32 (`sticc.model.families` names
the roles), the files the store keeps beside its data (the tokenizer, the source's config), and
the sentence-transformers pipeline an HF encoder checkpoint declares (`sticc.model.sentence`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch

from sticc.base.errors import UserError
from sticc.model.checkpoint import Checkpoint
from sticc.model.gguf_file import GgufCheckpoint
from sticc.model.sentence import SentencePipelineRecord
from sticc.model.spec import ModelSpec

GGUF_MAGIC = b"GGUF"


class Source(Protocol):
    """A checkpoint sticc can shard."""

    @property
    def spec(self) -> ModelSpec: ...

    @property
    def source_path(self) -> Path: ...

    def tensor(self, role: str, layer: int | None = None) -> torch.Tensor: ...

    def extra_files(self) -> dict[str, bytes]: ...

    def sentence_pipeline(self) -> SentencePipelineRecord | None: ...


def open_source(path: str | Path) -> Source:
    """The checkpoint at `path`: a GGUF file (by its magic bytes), else an HF directory."""
    path = Path(path)
    if path.is_file():
        with open(path, "rb") as handle:
            magic = handle.read(4)
        if magic != GGUF_MAGIC:
            raise UserError(f"{path} is neither a GGUF file nor a checkpoint directory")
        return GgufCheckpoint.open(path)
    return Checkpoint.open(path)
