"""Activation statistics for the quantizer: a plain-torch forward pass over calibration texts, turned
into per-piece weights and second moments.

The quantizer minimizes, per group, a weighted squared error sum_i h_i (w_i - w^_i)^2. For a linear
map y = x W^T the output error of row i is sum_j x_j dW_ij, whose expected square, ignoring the
correlations between input channels, is sum_j E[x_j^2] dW_ij^2: the weight of an element is the
second moment of the input channel it multiplies. Each piece therefore gets
  attn: Wq/Wk/Wv rows  -> E[x_j^2] of the layer input, per column j;
        Wo^T rows       -> E[c_r^2] of the attention context (the head dims of the shard), per row r;
  ffn:  Wup rows        -> E[x_j^2] of the attention block's output (post-LayerNorm), per column j;
        Wdown^T rows    -> E[a_r^2] of the activation output of the shard's units, per row r.

`piece_importance` returns only these diagonal weights. `piece_stats` also keeps the full
second-moment matrices E[x x^T] of each piece's two inputs (and the mean of the first), which lets
`sticc.model.quant.encode_piece` run GPTQ error feedback, the correlations included, and bias correction.

The statistics come from a forward pass over `sticc.model.texts.CALIBRATION_SENTENCES` (disjoint
from the sentences fidelity is evaluated on), run here in plain torch from the checkpoint tensors:
post-LayerNorm BERT / RoBERTa / DistilBERT encoders (`layer_statistics`), and pre-norm decoders
with causal attention (`decoder_statistics`), whose pieces map the same way (a decoder's first
rows also hold the gate rows, its attention's second rows are the output projection's columns of
the shard's query heads) and whose LM head slices take the final norm's output as their input.
Pad tokens are excluded. Without a tokenizer.json the pass runs on random token ids (fixed seed).
Everything is deterministic for a given checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from sticc.base.errors import UserError
from sticc.base.schema import Part, parse_tokenizer
from sticc.model.checkpoint import Checkpoint
from sticc.model.sharding import (
    check_shards_per_layer,
    decoder_shape,
    has_ffn_bias,
    has_qkv_bias,
    lm_head_rows,
    piece_shape,
    query_rows,
)
from sticc.model.texts import CALIBRATION_SENTENCES
from sticc.runtime.core import ACTIVATIONS
from sticc.runtime.decoder import apply_rope, norm, rope_tables
from sticc.runtime.encoder import position_ids_for

FALLBACK_SEED = 0
FALLBACK_LENGTH = 32  # tokens per sequence when there is no tokenizer.json
_MATRIX_ROLES = tuple(f"{m}.{k}" for m in ("q", "k", "v", "o", "up", "down") for k in ("weight", "bias"))


@dataclass(frozen=True)
class InputStatistics:
    """Statistics of one matrix input over the calibration tokens (pad tokens excluded)."""

    mean: torch.Tensor  # [n] E[x]
    gram: torch.Tensor  # [n, n] E[x x^T] (uncentered)

    @property
    def second_moment(self) -> torch.Tensor:
        """[n] E[x_j^2]."""
        return torch.diagonal(self.gram).clone()


@dataclass(frozen=True)
class LayerStatistics:
    """The inputs of one layer's matrices."""

    attn_input: InputStatistics  # [hidden] layer input (input of Wq, Wk, Wv)
    context: InputStatistics  # [hidden] attention context, heads concatenated (input of Wo)
    ffn_input: InputStatistics  # [hidden] attention block output after its LayerNorm (input of Wup)
    ffn_hidden: InputStatistics  # [ffn] activation output (input of Wdown)


@dataclass(frozen=True)
class PieceStats:
    """What `sticc.model.quant.encode_piece` needs to quantize one piece for its inputs (GPTQ).

    Rows [0, split) are applied as x @ W^T (input channel = column; their bias is the piece's bias),
    rows [split, rows) as a @ W (input channel = row).
    """

    importance: torch.Tensor  # [rows, cols], as `piece_importance`
    split: int
    column_mean: torch.Tensor  # [cols] E[x] of the first rows' input
    column_gram: torch.Tensor  # [cols, cols] E[x x^T] of the first rows' input
    row_gram: torch.Tensor  # [rows - split, rows - split] E[a a^T] of the last rows' input (empty: none)


def checkpoint_tokenizer(checkpoint: Checkpoint, extra_files: dict[str, bytes] | None = None):
    """The checkpoint's tokenizer.json (as `extra_files` holds it; default: read now) as a
    `tokenizers.Tokenizer`, or None where it has none; a one-line UserError naming the file for
    one the `tokenizers` package cannot read."""
    data = (checkpoint.extra_files() if extra_files is None else extra_files).get("tokenizer.json")
    if data is None:
        return None
    source = Path(checkpoint.source_path)
    return parse_tokenizer(data, str(source / "tokenizer.json") if source.is_dir() else f"the tokenizer of {source}")


def calibration_batch(
    checkpoint: Checkpoint, sentences: list[str] | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Token ids, attention mask and token types [n, L] of the calibration text."""
    spec = checkpoint.spec
    texts = list(CALIBRATION_SENTENCES if sentences is None else sentences)
    tokenizer = checkpoint_tokenizer(checkpoint)
    if tokenizer is not None:
        limit = spec.max_positions - (spec.pad_token_id + 1 if spec.position_kind == "roberta" else 0)
        tokenizer.enable_truncation(max_length=limit)
        tokenizer.enable_padding(pad_id=spec.pad_token_id)
        encodings = tokenizer.encode_batch(texts)
        ids = torch.tensor([e.ids for e in encodings], dtype=torch.int64)
        mask = torch.tensor([e.attention_mask for e in encodings], dtype=torch.int64)
        types = torch.tensor([e.type_ids for e in encodings], dtype=torch.int64)
        return ids, mask, types
    generator = torch.Generator().manual_seed(FALLBACK_SEED)
    limit = spec.max_positions - (spec.pad_token_id + 1 if spec.position_kind == "roberta" else 0)
    length = min(FALLBACK_LENGTH, limit)
    ids = torch.randint(0, spec.vocab, (len(texts), length), generator=generator)
    if spec.position_kind == "roberta":  # keep random ids off the padding id, which roberta positions skip
        ids = torch.where(ids == spec.pad_token_id, (ids + 1) % spec.vocab, ids)
    return ids, torch.ones_like(ids), torch.zeros_like(ids)


@torch.no_grad()
def layer_statistics(checkpoint: Checkpoint, sentences: list[str] | None = None) -> list[LayerStatistics]:
    """Run the fp32 encoder on the calibration text; per layer, the statistics of every matrix input."""
    spec = checkpoint.spec
    ids, mask, types = calibration_batch(checkpoint, sentences)
    batch, length = ids.shape
    keep = mask.reshape(-1).bool()  # real tokens only

    def stats(x: torch.Tensor) -> InputStatistics:
        return _input_statistics(x, keep)

    def norm(x: torch.Tensor, role: str, layer: int | None = None) -> torch.Tensor:
        weight, bias = checkpoint.tensor(f"{role}.weight", layer), checkpoint.tensor(f"{role}.bias", layer)
        return F.layer_norm(x, (spec.hidden,), weight, bias, spec.layer_norm_eps)

    positions = position_ids_for(ids, mask, spec.position_kind, spec.pad_token_id)
    x = checkpoint.tensor("embed.word")[ids] + checkpoint.tensor("embed.position")[positions]
    if spec.type_vocab:
        x = x + checkpoint.tensor("embed.type")[types]
    x = norm(x, "embed.norm")
    key_mask = mask.bool()[:, None, None, :]
    statistics = []
    for layer in range(spec.layers):
        t = {role: checkpoint.tensor(role, layer) for role in _MATRIX_ROLES}
        q, k, v = (
            F.linear(x, t[f"{name}.weight"], t[f"{name}.bias"])
            .view(batch, length, spec.heads, spec.head_dim)
            .transpose(1, 2)
            for name in ("q", "k", "v")
        )
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask)
        context = context.transpose(1, 2).reshape(batch, length, spec.hidden)
        attended = norm(F.linear(context, t["o.weight"], t["o.bias"]) + x, "attn_norm", layer)
        hidden = ACTIVATIONS[spec.activation](F.linear(attended, t["up.weight"], t["up.bias"]))
        out = norm(F.linear(hidden, t["down.weight"], t["down.bias"]) + attended, "ffn_norm", layer)
        statistics.append(LayerStatistics(stats(x), stats(context), stats(attended), stats(hidden)))
        x = out
    return statistics


def decoder_statistics(checkpoint, sentences: list[str] | None = None) -> Iterator[LayerStatistics | InputStatistics]:
    """Run the fp32 decoder (causal, pre-norm) on the calibration text, one layer at a time: yield
    each layer's statistics of every matrix input (context: heads concatenated in the checkpoint's
    order), then those of the final norm's output (the LM head's input). Only the current layer's
    statistics are held (a 7B model's all at once would take about 22 GB)."""
    with torch.no_grad():
        yield from _decoder_statistics(checkpoint, sentences)


def _decoder_statistics(checkpoint, sentences: list[str] | None) -> Iterator[LayerStatistics | InputStatistics]:
    spec = checkpoint.spec
    ids, mask, _ = calibration_batch(checkpoint, sentences)
    batch, length = ids.shape
    keep = mask.reshape(-1).bool()  # real tokens only (padding is on the right: causal attention never sees it)

    def stats(x: torch.Tensor) -> InputStatistics:
        return _input_statistics(x, keep)

    def normed(x: torch.Tensor, role: str, layer: int | None = None) -> torch.Tensor:
        bias = checkpoint.tensor(f"{role}.bias", layer) if spec.norm_kind == "layernorm" else None
        return norm(x, checkpoint.tensor(f"{role}.weight", layer), bias, spec.norm_kind, spec.layer_norm_eps)

    def linear(x: torch.Tensor, matrix: str, layer: int, bias: bool) -> torch.Tensor:
        return F.linear(x, checkpoint.tensor(f"{matrix}.weight", layer), checkpoint.tensor(f"{matrix}.bias", layer) if bias else None)

    x = checkpoint.tensor("embed.word")[ids]
    if spec.position_rows:
        x = x + checkpoint.tensor("embed.position")[torch.arange(length)]
    rope = rope_tables(decoder_shape(spec, spec.kv_heads, 0), length) if spec.position_kind == "rope" else None
    act = ACTIVATIONS[spec.activation]
    for layer in range(spec.layers):
        h = normed(x, "attn_norm", layer)
        q, k, v = (
            linear(h, name, layer, has_qkv_bias(spec)).view(batch, length, -1, spec.head_dim).transpose(1, 2)
            for name in ("q", "k", "v")
        )
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        context = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=spec.kv_heads != spec.heads)
        context = context.transpose(1, 2).reshape(batch, length, spec.heads * spec.head_dim)
        x = x + linear(context, "o", layer, spec.biases == "all")
        h2 = normed(x, "ffn_norm", layer)
        if spec.ffn_kind == "gated":
            hidden = act(linear(h2, "gate", layer, False)) * linear(h2, "up", layer, False)
        else:
            hidden = act(linear(h2, "up", layer, has_ffn_bias(spec)))
        x = x + linear(hidden, "down", layer, spec.biases == "all")
        yield LayerStatistics(stats(h), stats(context), stats(h2), stats(hidden))
    yield stats(normed(x, "final_norm"))


def _input_statistics(x: torch.Tensor, keep: torch.Tensor) -> InputStatistics:
    """The mean and second moments of the last dimension of `x` [batch, length, n] over the kept tokens."""
    flat = x.reshape(keep.numel(), -1)[keep].to(torch.float64)
    gram = flat.T @ flat / flat.shape[0]
    stats = InputStatistics(flat.mean(0).to(torch.float32), gram.to(torch.float32))
    if not (bool(torch.isfinite(stats.mean).all()) and bool(torch.isfinite(stats.gram).all())):
        # finite weights can still be too large: the quantizer would get NaN or infinite importance
        raise UserError("the checkpoint's activations on the calibration texts overflow (not finite): its weights are out of range")
    return stats


def piece_importance(
    checkpoint: Checkpoint, shards_per_layer: int, sentences: list[str] | None = None
) -> dict[tuple[int, int, str], torch.Tensor]:
    """{(layer, shard index, part): importance [rows, cols]} for every piece `sticc.model.sharding.layer_pieces` makes.

    Each tensor has the piece's full shape (fp32, nonnegative), element (r, c) being the second
    moment of the input channel that weight multiplies (see the module docstring); each half of
    a piece is scaled to mean 1 (only ratios inside a quantization group matter). Pass it as
    `importance` to `sticc.model.quant.encode_piece`.
    """
    stats = piece_stats(checkpoint, shards_per_layer, sentences)
    return {key: piece.importance for key, piece in stats.items()}


def piece_stats(
    checkpoint: Checkpoint, shards_per_layer: int, sentences: list[str] | None = None, lm_head_shards: int = 0,
) -> dict[tuple[int, int, str], PieceStats]:
    """{(layer, shard index, part): PieceStats} for every piece; pass as `stats` to `encode_piece`."""
    spec = checkpoint.spec
    check_shards_per_layer(spec, shards_per_layer)
    if spec.is_decoder:
        return LayerwiseStats(_decoder_piece_stats(checkpoint, shards_per_layer, lm_head_shards, sentences))
    width = spec.heads // shards_per_layer * spec.head_dim
    units = spec.ffn // shards_per_layer
    stats = {}
    for layer, s in enumerate(layer_statistics(checkpoint, sentences)):
        attn_in, context, ffn_in, ffn_hidden = (
            x.second_moment for x in (s.attn_input, s.context, s.ffn_input, s.ffn_hidden)
        )
        for index in range(shards_per_layer):
            heads = slice(index * width, (index + 1) * width)
            cut = slice(index * units, (index + 1) * units)
            attn = torch.cat([
                _unit_mean(attn_in[None, :].expand(3 * width, spec.hidden)),
                _unit_mean(context[heads, None].expand(width, spec.hidden)),
            ])
            ffn = torch.cat([
                _unit_mean(ffn_in[None, :].expand(units, spec.hidden)),
                _unit_mean(ffn_hidden[cut, None].expand(units, spec.hidden)),
            ])
            for part, importance, first, second, rows in (
                (Part.ATTN, attn, s.attn_input, s.context, heads), (Part.FFN, ffn, s.ffn_input, s.ffn_hidden, cut),
            ):
                shape = piece_shape(spec, shards_per_layer, part)
                assert importance.shape == (shape.rows, shape.cols)
                stats[(layer, index, part)] = PieceStats(
                    importance.contiguous(), shape.bias_len, first.mean, first.gram, second.gram[rows, rows].clone(),
                )
    return stats


class LayerwiseStats:
    """Piece statistics made one layer at a time, as the store writer asks for them (layer by
    layer, in order): `get` as a dict's, holding only the current layer's."""

    def __init__(self, layers: Iterator[dict[tuple[int, int, str], PieceStats]]) -> None:
        self._layers = layers
        self._current: dict[tuple[int, int, str], PieceStats] = {}
        self._layer = -1

    def get(self, key: tuple[int, int, str]) -> PieceStats | None:
        while self._layer < key[0]:
            self._current = next(self._layers, {})
            self._layer += 1
        if self._layer != key[0]:
            raise ValueError(f"statistics of layer {key[0]} asked for after layer {self._layer}'s")
        return self._current.get(key)

    def items(self) -> Iterator[tuple[tuple[int, int, str], PieceStats]]:
        """Every piece's statistics, layer by layer (once: the layers are made as they are read)."""
        for layer in self._layers:
            yield from layer.items()


def _decoder_piece_stats(checkpoint, shards_per_layer: int, lm_head_shards: int, sentences) -> Iterator[dict[tuple[int, int, str], PieceStats]]:
    """A decoder's pieces, one layer's at a time (then the LM head's, as layer `layers`): first rows
    x @ W^T (q/k/v rows; gate/up rows; LM head rows), second rows a @ W (the output projection's
    columns of the shard's query heads; the down columns of its units)."""
    spec = checkpoint.spec
    statistics = decoder_statistics(checkpoint, sentences)
    units = spec.ffn // shards_per_layer
    empty = torch.zeros(0, 0)
    for layer in range(spec.layers):
        s = next(statistics)
        stats = {}
        for index in range(shards_per_layer):
            rows = query_rows(spec, shards_per_layer, index)
            cut = torch.arange(index * units, (index + 1) * units)
            for part, first, second, chosen in (
                (Part.ATTN, s.attn_input, s.context, rows), (Part.FFN, s.ffn_input, s.ffn_hidden, cut),
            ):
                shape = piece_shape(spec, shards_per_layer, part)
                split = shape.rows - len(chosen)
                importance = torch.cat([
                    _unit_mean(first.second_moment[None, :].expand(split, spec.hidden)),
                    _unit_mean(second.second_moment[chosen, None].expand(len(chosen), spec.hidden)),
                ])
                stats[(layer, index, part)] = PieceStats(
                    importance.contiguous(), split, first.mean, first.gram, second.gram[chosen][:, chosen].clone(),
                )
        yield stats
    final = next(statistics)
    rows = lm_head_rows(spec, lm_head_shards) if lm_head_shards else 0
    importance = _unit_mean(final.second_moment[None, :].expand(rows, spec.hidden)).contiguous()
    yield {(spec.layers, index, Part.LM_HEAD): PieceStats(importance, rows, final.mean, final.gram, empty) for index in range(lm_head_shards)}


def _unit_mean(x: torch.Tensor) -> torch.Tensor:
    return x / x.mean().clamp(min=torch.finfo(torch.float32).tiny)
