"""Sharding: cutting each layer vertically into shards, and the unsplittable per-layer header.

A shard of layer L owns `heads / N` attention heads and `ffn / N` FFN units. It is stored as two
pieces, each one matrix with `hidden` columns plus an fp32 bias, consumed in this order:
  attn: [Wq; Wk; Wv] rows of its heads, then Wo's columns of its heads transposed  [4w, hidden],
        bias = q/k/v bias of its heads [3w]                           (w = heads_per_shard * head_dim)
  ffn:  Wup rows of its units, then Wdown's columns of its units transposed      [2f, hidden],
        bias = up bias of its units [f]                                    (f = ffn / N)
Dropping a shard removes its heads from attention and its units from the FFN.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sticc.base.errors import UserError
from sticc.base.schema import Part
from sticc.model.checkpoint import Checkpoint
from sticc.model.spec import ModelSpec
from sticc.runtime.encoder import GLOBAL_HEADER_VECTORS, LAYER_HEADER_VECTORS

# a layer block is loaded and computed in this many chunks by default: on the 2-core machine this
# was measured on, whole-layer chunks were no faster than quarter-layer ones but held 3x the
# memory (docs/performance.md)
DEFAULT_CHUNKS_PER_BLOCK = 4


def default_shards_per_chunk(shards_per_layer: int) -> int:
    """How many shards' pieces one chunk groups unless a plan says otherwise."""
    return max(1, shards_per_layer // DEFAULT_CHUNKS_PER_BLOCK)


@dataclass(frozen=True)
class PieceShape:
    rows: int
    cols: int
    bias_len: int


def check_shards_per_layer(spec: ModelSpec, shards_per_layer: int) -> None:
    if shards_per_layer <= 0 or spec.heads % shards_per_layer or spec.ffn % shards_per_layer:
        raise UserError(
            f"--shards-per-layer {shards_per_layer} must divide the {spec.heads} heads and the {spec.ffn} FFN units"
        )


def piece_shape(spec: ModelSpec, shards_per_layer: int, part: str) -> PieceShape:
    width = spec.heads // shards_per_layer * spec.head_dim
    units = spec.ffn // shards_per_layer
    if part == Part.ATTN:
        return PieceShape(4 * width, spec.hidden, 3 * width)
    return PieceShape(2 * units, spec.hidden, units)


def layer_pieces(checkpoint: Checkpoint, layer: int, shards_per_layer: int) -> dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]]:
    """{(shard index, part): (matrix [rows, hidden], bias)} for every shard of `layer`."""
    spec = checkpoint.spec
    t = {role: checkpoint.tensor(role, layer) for role in ("q.weight", "q.bias", "k.weight", "k.bias", "v.weight", "v.bias", "o.weight", "up.weight", "up.bias", "down.weight")}
    width = spec.heads // shards_per_layer * spec.head_dim
    units = spec.ffn // shards_per_layer
    pieces = {}
    for index in range(shards_per_layer):
        rows = slice(index * width, (index + 1) * width)
        attn = torch.cat([t["q.weight"][rows], t["k.weight"][rows], t["v.weight"][rows], t["o.weight"][:, rows].T])
        attn_bias = torch.cat([t["q.bias"][rows], t["k.bias"][rows], t["v.bias"][rows]])
        cut = slice(index * units, (index + 1) * units)
        ffn = torch.cat([t["up.weight"][cut], t["down.weight"][:, cut].T])
        pieces[(index, Part.ATTN)] = (attn.contiguous(), attn_bias.contiguous())
        pieces[(index, Part.FFN)] = (ffn.contiguous(), t["up.bias"][cut].contiguous())
    return pieces


def layer_header(checkpoint: Checkpoint, layer: int) -> torch.Tensor:
    """The unsplittable per-layer parameters, concatenated in `LAYER_HEADER_VECTORS` order."""
    roles = {
        "attn_out_bias": "o.bias", "attn_norm_weight": "attn_norm.weight", "attn_norm_bias": "attn_norm.bias",
        "ffn_out_bias": "down.bias", "ffn_norm_weight": "ffn_norm.weight", "ffn_norm_bias": "ffn_norm.bias",
    }
    return torch.cat([checkpoint.tensor(roles[name], layer) for name in LAYER_HEADER_VECTORS])


def global_header(checkpoint: Checkpoint) -> torch.Tensor:
    """Embedding LayerNorm (`GLOBAL_HEADER_VECTORS`) then the token type table, flat fp32."""
    roles = {"embed_norm_weight": "embed.norm.weight", "embed_norm_bias": "embed.norm.bias"}
    parts = [checkpoint.tensor(roles[name]) for name in GLOBAL_HEADER_VECTORS]
    if checkpoint.spec.type_vocab:
        parts.append(checkpoint.tensor("embed.type").reshape(-1))
    return torch.cat(parts)
