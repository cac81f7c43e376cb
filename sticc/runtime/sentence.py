"""A checkpoint's sentence-transformers pipeline, as a runner applies it after the last layer.

sentence-transformers runs a model as modules: the Transformer (tokenize with truncation at
`max_seq_length`, optionally lowercasing; the encoder), Pooling (one or more of mean, CLS, max,
mean over sqrt(length), position-weighted mean and last token; prompt tokens optionally left out)
and Normalize (unit length). `sticc shard` reads them from the checkpoint (`sticc.model.sentence`)
and the runner holds them as one literal `SentencePipeline`; these functions reproduce each
module's arithmetic on the runner's last hidden state, so that a runner's embeddings equal
`SentenceTransformer(model_dir).encode(...)`'s. A checkpoint without these files gets
`BARE_PIPELINE`: mean pooling, no normalization, truncation at the model's positions.

Also here: the length-sorted batching of `encode` and sentence-transformers' post-processing
(`truncate_dim`, `normalize_embeddings`, `precision`).
"""

import sys
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

# pooling modes, in the order sentence-transformers concatenates them
POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
PRECISIONS = ("float32", "int8", "uint8", "binary", "ubinary")


@dataclass(frozen=True)
class SentencePipeline:
    """What runs after the encoder, and how texts are cut before it."""

    max_seq_length: int | None  # tokens a text is truncated to, special tokens included; None: the model's positions
    do_lower_case: bool  # lowercase texts before tokenizing (sentence_bert_config.json)
    pooling: tuple  # of POOLING_MODES, concatenated in this order
    include_prompt: bool  # False: a prompt's tokens are left out of the pooling
    normalize: bool  # a Normalize module follows the pooling
    prompts: tuple = ()  # (name, text) pairs from config_sentence_transformers.json
    default_prompt_name: str | None = None

    def prompt(self, prompt_name, prompt):
        """The prompt text `encode` prepends, resolved as sentence-transformers does: `prompt` wins,
        then `prompt_name`, then the default prompt, else none."""
        if prompt is not None:
            return prompt
        prompts = dict(self.prompts)
        if prompt_name is not None:
            if prompt_name not in prompts:
                raise ValueError(f"prompt name {prompt_name!r} is not one of the model's prompts {sorted(prompts)}")
            return prompts[prompt_name]
        if self.default_prompt_name is not None:
            return prompts.get(self.default_prompt_name)
        return None


def truncation_length(max_positions: int, position_kind: str, pad_token_id: int, max_seq_length) -> int:
    """Tokens a text is cut to, special tokens included: `max_seq_length` (None: no limit of its
    own), never more than the model's positions (RoBERTa's start past the padding id)."""
    limit = max_positions - (pad_token_id + 1 if position_kind == "roberta" else 0)
    return limit if max_seq_length is None else min(max_seq_length, limit)


BARE_PIPELINE = SentencePipeline(max_seq_length=None, do_lower_case=False, pooling=("mean",), include_prompt=True, normalize=False)


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, modes: tuple, prompt_length: int = 0) -> torch.Tensor:
    """Sentence embeddings [B, len(modes) * hidden] of the last hidden state [B, L, hidden] under
    the (right-padded) attention mask [B, L], as sentence-transformers' Pooling computes them.
    `prompt_length` leading tokens (the [CLS] and a prompt) are left out of every mode but
    "weightedmean"'s position weights, which keep counting from the first token."""
    mask = attention_mask
    if prompt_length:
        mask = attention_mask.clone()
        mask[:, :prompt_length] = 0
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    outputs = []
    for mode in modes:
        if mode == "cls":
            first = mask.to(torch.int32).argmax(dim=1)
            outputs.append(hidden[torch.arange(hidden.shape[0]), first])
        elif mode == "max":
            outputs.append(hidden.masked_fill(weights == 0, float("-inf")).max(dim=1).values)
        elif mode in ("mean", "mean_sqrt_len_tokens"):
            count = weights.sum(dim=1).clamp(min=1e-9)
            outputs.append((hidden * weights).sum(dim=1) / (count if mode == "mean" else count.sqrt()))
        elif mode == "weightedmean":
            positions = torch.arange(1, hidden.shape[1] + 1, dtype=hidden.dtype).view(1, -1, 1)
            weighted = weights * positions
            outputs.append((hidden * weighted).sum(dim=1) / weighted.sum(dim=1).clamp(min=1e-9))
        elif mode == "lasttoken":
            # the last position the mask keeps (sentence-transformers: the last row when none is kept)
            kept, from_end = mask.flip(1).max(dim=1)
            last = torch.where(kept == 0, hidden.shape[1] - 1, hidden.shape[1] - 1 - from_end)
            outputs.append((hidden * weights)[torch.arange(hidden.shape[0]), last])
        else:
            raise ValueError(f"unknown pooling mode {mode!r}")
    return torch.cat(outputs, dim=-1)


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Attention-mask mean pooling of the last hidden state (not normalized): the bare pipeline's,
    and what sticc's own fidelity figures (importance, bench) compare."""
    return pool(hidden, attention_mask, ("mean",))


def length_batches(lengths: list, batch_size: int) -> list:
    """Indices of the texts in batches of `batch_size`, longest first (a stable sort), so that
    long and short texts do not pad each other."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def quantize_embeddings(embeddings: np.ndarray, precision: str) -> np.ndarray:
    """sentence-transformers' `precision` of fp32 embeddings [n, dim]: "int8"/"uint8" cut each
    dimension's range over these embeddings into 256 buckets; "binary"/"ubinary" pack the signs
    (ceil(dim / 8) bytes; "binary" shifted by -128 to int8)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "float32":
        return embeddings
    if precision in ("binary", "ubinary"):
        packed = np.packbits(embeddings > 0, axis=-1)
        return (packed.astype(np.int16) - 128).astype(np.int8) if precision == "binary" else packed
    low, high = embeddings.min(axis=0), embeddings.max(axis=0)
    steps = (high - low) / 255
    steps = np.where(steps == 0, 1, steps)
    codes = np.clip(np.floor((embeddings - low) / steps), 0, 255)
    return (codes - 128).astype(np.int8) if precision == "int8" else codes.astype(np.uint8)


def finish_embeddings(embeddings: torch.Tensor, truncate_dim, normalize: bool) -> torch.Tensor:
    """`truncate_dim` first, then unit length if asked (sentence-transformers' order)."""
    if truncate_dim is not None:
        if truncate_dim < 1:
            raise ValueError(f"truncate_dim must be positive, not {truncate_dim}")
        embeddings = embeddings[..., :truncate_dim]
    return F.normalize(embeddings, p=2, dim=-1) if normalize else embeddings


def progress(batches: list, show: bool):
    """The batches, with a progress bar on stderr when `show` (tqdm when installed)."""
    if not show:
        return batches
    try:
        from tqdm import tqdm
    except ImportError:
        return _plain_progress(batches)
    return tqdm(batches, desc="Batches")


def _plain_progress(batches: list):
    for done, batch in enumerate(batches, 1):
        yield batch
        print(f"\rBatches {done}/{len(batches)}", end="\n" if done == len(batches) else "", file=sys.stderr, flush=True)
