"""Sharding: cutting each layer vertically into shards, and the unsplittable per-layer header.

A shard of layer L owns `kv_heads / N` key/value heads with their query heads (encoders: `heads /
N` heads) and `ffn / N` FFN units. It is stored as two pieces, each one matrix with `hidden`
columns made of equal row blocks (`piece_blocks`) plus an fp32 bias, consumed in this order:
  attn: g blocks of query rows (block j: query head kv*g + j of each of its key/value heads kv),
        then its Wk rows, its Wv rows, then g blocks of Wo's columns (transposed) in the query
        blocks' order                                                  [(2g + 2) w, hidden],
        bias = the q/k/v bias in the same order [(g + 2) w], or none
        (w = kv heads per shard * head_dim, g = query heads per key/value head; encoders: g = 1)
  ffn:  [Wgate rows of its units,] Wup rows, then Wdown's columns transposed [(2 or 3) f, hidden],
        bias = the up bias of its units [f] (plain MLPs with biases), or none        (f = ffn / N)
Dropping a shard removes its heads from attention and its units from the FFN.

A decoder's LM head is cut by vocabulary rows into `lm_head_shards` slices (the last one padded
with zero rows), each a piece of one block with no bias, planned like any shard.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sticc.base.errors import UserError
from sticc.base.schema import PARTS, Part
from sticc.model.checkpoint import Checkpoint
from sticc.model.spec import ModelSpec
from sticc.runtime.core import piece_blocks
from sticc.runtime.decoder import DecoderShape, decoder_global_vectors, decoder_layer_vectors
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


def default_shards_per_layer(spec: ModelSpec) -> int:
    """One shard per attention head (encoders) or per key/value head group (decoders)."""
    return spec.kv_heads


def check_shards_per_layer(spec: ModelSpec, shards_per_layer: int) -> None:
    if shards_per_layer <= 0 or spec.kv_heads % shards_per_layer or spec.ffn % shards_per_layer:
        heads = f"{spec.kv_heads} key/value heads" if spec.is_decoder else f"{spec.heads} heads"
        raise UserError(f"--shards-per-layer {shards_per_layer} must divide the {heads} and the {spec.ffn} FFN units")


def has_qkv_bias(spec: ModelSpec) -> bool:
    return spec.biases != "none"


def has_ffn_bias(spec: ModelSpec) -> bool:
    """The up projection's bias, stored in the FFN piece (plain MLPs with biases)."""
    return spec.biases == "all" and spec.ffn_kind == "mlp"


def spec_piece_blocks(spec: ModelSpec, part: str) -> tuple[int, int]:
    """(row blocks, bias blocks) of a piece of `part` (`sticc.runtime.core.piece_blocks`)."""
    return piece_blocks(part, spec.query_groups, spec.ffn_kind == "gated", has_qkv_bias(spec))


def lm_head_rows(spec: ModelSpec, lm_head_shards: int) -> int:
    """Vocabulary rows per LM head slice: the vocabulary split evenly, rounded up to whole bytes of codes."""
    per_slice = -(-spec.vocab // lm_head_shards)
    return -(-per_slice // 8) * 8


def default_lm_head_shards(spec: ModelSpec, shards_per_layer: int) -> int:
    """LM head slices of about one FFN piece's weights each (a chunk of either costs the same to stream)."""
    per_piece = (3 if spec.ffn_kind == "gated" else 2) * spec.ffn // shards_per_layer
    wanted = max(1, round(spec.vocab / per_piece))
    return -(-spec.vocab // lm_head_rows(spec, wanted))  # no slice left all padding


def check_lm_head_shards(spec: ModelSpec, lm_head_shards: int) -> None:
    if not 1 <= lm_head_shards <= spec.vocab or (lm_head_shards - 1) * lm_head_rows(spec, lm_head_shards) >= spec.vocab:
        raise UserError(f"{lm_head_shards} LM head slices do not cut the vocabulary of {spec.vocab} (a slice would be all padding)")


def shard_positions(layers: int, shards_per_layer: int, lm_head_shards: int) -> list[tuple[int, int]]:
    """(layer, index) of every shard a plan decides: the layers' shards, then a decoder's LM head
    slices (as the shards of layer `layers`)."""
    positions = [(layer, index) for layer in range(layers) for index in range(shards_per_layer)]
    return positions + [(layers, index) for index in range(lm_head_shards)]


def stored_parts(lm_head_shards: int) -> tuple[Part, ...]:
    """The parts a store holds pieces of: every layer's, and a decoder's LM head slices."""
    return (*PARTS, Part.LM_HEAD) if lm_head_shards else PARTS


def block_weights(spec: ModelSpec, shards_per_layer: int, part: str, lm_head_shards: int = 0) -> int:
    """Weights of one row block of a piece: runners dequantize block by block, so a quantization
    group must not straddle two."""
    shape = piece_shape(spec, shards_per_layer, part, lm_head_shards)
    return shape.rows * shape.cols // spec_piece_blocks(spec, part)[0]


def piece_shape(spec: ModelSpec, shards_per_layer: int, part: str, lm_head_shards: int = 0) -> PieceShape:
    blocks = spec_piece_blocks(spec, part)[0]
    if part == Part.ATTN:
        width = spec.kv_heads // shards_per_layer * spec.head_dim
        return PieceShape(blocks * width, spec.hidden, (spec.query_groups + 2) * width if has_qkv_bias(spec) else 0)
    if part == Part.FFN:
        units = spec.ffn // shards_per_layer
        return PieceShape(blocks * units, spec.hidden, units if has_ffn_bias(spec) else 0)
    return PieceShape(lm_head_rows(spec, lm_head_shards), spec.hidden, 0)


def decoder_shape(spec: ModelSpec, shards_per_layer: int, lm_head_shards: int) -> DecoderShape:
    """What a decoder runner's kernels know of the model (its `SHAPE` literal; the calibration pass's rotary tables)."""
    scaling = spec.rope_scaling
    rope = {} if scaling is None else {
        "rope_scaling": scaling.kind, "rope_factor": scaling.factor, "rope_low_freq_factor": scaling.low_freq_factor,
        "rope_high_freq_factor": scaling.high_freq_factor, "rope_original_positions": scaling.original_max_positions,
    }
    return DecoderShape(
        layers=spec.layers, hidden=spec.hidden, heads=spec.heads, kv_heads=spec.kv_heads, head_dim=spec.head_dim,
        ffn=spec.ffn, shards_per_layer=shards_per_layer, vocab=spec.vocab, position_kind=spec.position_kind,
        norm_kind=spec.norm_kind, layer_norm_eps=spec.layer_norm_eps, activation=spec.activation, ffn_kind=spec.ffn_kind,
        qkv_bias=has_qkv_bias(spec), out_bias=spec.biases == "all", lm_head_shards=lm_head_shards,
        lm_head_rows=lm_head_rows(spec, lm_head_shards) if lm_head_shards else 0, rope_theta=spec.rope_theta,
        eos_token_ids=spec.eos_token_ids, **rope,
    )


def _head_rows(heads: list[int], head_dim: int) -> torch.Tensor:
    return torch.cat([torch.arange(h * head_dim, (h + 1) * head_dim) for h in heads])


def query_rows(spec: ModelSpec, shards_per_layer: int, index: int) -> torch.Tensor:
    """The rows of Wq (and columns of Wo) of shard `index`'s query heads, in its piece's block order:
    block j holds query head kv * g + j of each of its key/value heads kv."""
    groups, kv_per_shard = spec.query_groups, spec.kv_heads // shards_per_layer
    kv_heads = range(index * kv_per_shard, (index + 1) * kv_per_shard)
    return _head_rows([kv * groups + j for j in range(groups) for kv in kv_heads], spec.head_dim)


def layer_pieces(checkpoint: Checkpoint, layer: int, shards_per_layer: int) -> dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]]:
    """{(shard index, part): (matrix [rows, hidden], bias)} for every shard of `layer`."""
    spec = checkpoint.spec
    weight = {m: checkpoint.tensor(f"{m}.weight", layer) for m in ("q", "k", "v", "o", "up", "down")}
    if spec.ffn_kind == "gated":
        weight["gate"] = checkpoint.tensor("gate.weight", layer)
    bias = {m: checkpoint.tensor(f"{m}.bias", layer) for m in ("q", "k", "v")} if has_qkv_bias(spec) else {}
    if has_ffn_bias(spec):
        bias["up"] = checkpoint.tensor("up.bias", layer)
    kv_per_shard, units = spec.kv_heads // shards_per_layer, spec.ffn // shards_per_layer
    empty = torch.zeros(0)
    pieces = {}
    for index in range(shards_per_layer):
        q_rows = query_rows(spec, shards_per_layer, index)
        kv_rows = _head_rows(list(range(index * kv_per_shard, (index + 1) * kv_per_shard)), spec.head_dim)
        attn = torch.cat([weight["q"][q_rows], weight["k"][kv_rows], weight["v"][kv_rows], weight["o"][:, q_rows].T])
        attn_bias = torch.cat([bias["q"][q_rows], bias["k"][kv_rows], bias["v"][kv_rows]]) if "q" in bias else empty
        cut = slice(index * units, (index + 1) * units)
        ffn_rows = ([weight["gate"][cut]] if "gate" in weight else []) + [weight["up"][cut], weight["down"][:, cut].T]
        pieces[(index, Part.ATTN)] = (attn.contiguous(), attn_bias.contiguous())
        pieces[(index, Part.FFN)] = (torch.cat(ffn_rows).contiguous(), bias["up"][cut].contiguous() if "up" in bias else empty)
    return pieces


def lm_head_pieces(checkpoint: Checkpoint, lm_head_shards: int) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """{slice index: (vocabulary rows [rows, hidden], no bias)}; the tied embedding when the LM head is tied."""
    spec = checkpoint.spec
    matrix = checkpoint.tensor("lm_head.weight" if spec.lm_head == "separate" else "embed.word")
    rows = lm_head_rows(spec, lm_head_shards)
    padded = torch.zeros(rows * lm_head_shards, spec.hidden)
    padded[: spec.vocab] = matrix
    return {i: (padded[i * rows : (i + 1) * rows].contiguous(), torch.zeros(0)) for i in range(lm_head_shards)}


_HEADER_ROLES = {
    "attn_out_bias": "o.bias", "attn_norm_weight": "attn_norm.weight", "attn_norm_bias": "attn_norm.bias",
    "ffn_out_bias": "down.bias", "ffn_norm_weight": "ffn_norm.weight", "ffn_norm_bias": "ffn_norm.bias",
    "embed_norm_weight": "embed.norm.weight", "embed_norm_bias": "embed.norm.bias",
    "final_norm_weight": "final_norm.weight", "final_norm_bias": "final_norm.bias",
}


def layer_header_vectors(spec: ModelSpec) -> tuple[str, ...]:
    """The per-layer header's vectors (each `hidden` fp32 values), in stored order."""
    if spec.is_decoder:
        return decoder_layer_vectors(spec.norm_kind == "layernorm", spec.biases == "all")
    return LAYER_HEADER_VECTORS


def global_header_vectors(spec: ModelSpec) -> tuple[str, ...]:
    """The global header's vectors: the embedding's LayerNorm (encoders) or the final norm (decoders)."""
    return decoder_global_vectors(spec.norm_kind == "layernorm") if spec.is_decoder else GLOBAL_HEADER_VECTORS


def layer_header(checkpoint: Checkpoint, layer: int) -> torch.Tensor:
    """The unsplittable per-layer parameters, concatenated in `layer_header_vectors` order."""
    return torch.cat([checkpoint.tensor(_HEADER_ROLES[name], layer) for name in layer_header_vectors(checkpoint.spec)])


def global_header(checkpoint: Checkpoint) -> torch.Tensor:
    """`global_header_vectors`, then the token type table (encoders that have one), flat fp32."""
    parts = [checkpoint.tensor(_HEADER_ROLES[name]) for name in global_header_vectors(checkpoint.spec)]
    if checkpoint.spec.type_vocab:
        parts.append(checkpoint.tensor("embed.type").reshape(-1))
    return torch.cat(parts)
