"""Family adapters: the only place that knows a model family's config keys and tensor names.

Each adapter turns an HF config.json into a `ModelSpec` and names, for every canonical tensor role,
the checkpoint tensor that holds it. Roles (all post-LN encoder blocks):
  embed.word [vocab, hidden], embed.position [positions, hidden], embed.type [types, hidden],
  embed.norm.{weight,bias};
  per layer L: {q,k,v,o,up,down}.{weight,bias} (torch Linear layout [out, in]),
  attn_norm.{weight,bias}, ffn_norm.{weight,bias}.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field

from sticc.base.errors import UserError
from sticc.base.schema import OPEN, Name, with_config
from sticc.model.spec import Activation, LayerNormEps, ModelSpec, Size, Vocab

LAYER_ROLES = (
    "q.weight", "q.bias", "k.weight", "k.bias", "v.weight", "v.bias", "o.weight", "o.bias",
    "attn_norm.weight", "attn_norm.bias", "up.weight", "up.bias", "down.weight", "down.bias",
    "ffn_norm.weight", "ffn_norm.bias",
)


@with_config(OPEN)
@dataclass(frozen=True)
class ConfigHead:
    """What sticc reads of any config.json before it knows the family: the family, and the name."""

    model_type: Name | None = None
    name_or_path: Annotated[Name | None, Field(alias="_name_or_path")] = None


@with_config(OPEN)
@dataclass(frozen=True)
class BertConfig:
    """The keys of a BERT / RoBERTa config.json that sticc uses (others are ignored)."""

    num_hidden_layers: Size
    num_attention_heads: Size
    hidden_size: Size
    intermediate_size: Size
    vocab_size: Vocab
    max_position_embeddings: Size
    type_vocab_size: Annotated[int, Field(ge=0, le=1 << 16)] = 2
    pad_token_id: Annotated[int, Field(ge=0, le=1 << 24)] | None = 0
    layer_norm_eps: LayerNormEps = 1e-12
    hidden_act: Activation = "gelu"
    position_embedding_type: Literal["absolute"] = "absolute"


@with_config(OPEN)
@dataclass(frozen=True)
class DistilBertConfig:
    """The keys of a DistilBERT config.json that sticc uses (others are ignored)."""

    n_layers: Size
    n_heads: Size
    dim: Size
    hidden_dim: Size
    vocab_size: Vocab
    max_position_embeddings: Size
    pad_token_id: Annotated[int, Field(ge=0, le=1 << 24)] | None = 0
    activation: Activation = "gelu"


@dataclass(frozen=True)
class Family:
    """A family adapter: config -> spec, canonical role -> checkpoint tensor name."""

    name: str
    model_types: tuple[str, ...]
    config_kind: type  # the validated config.json record
    spec_from_config: Callable[[object, str], ModelSpec]  # (config record, model name) -> spec
    embed_names: dict[str, str]  # role -> name (without the checkpoint's prefix)
    layer_name: Callable[[int, str], str]  # (layer, role) -> name
    prefixes: tuple[str, ...]  # checkpoints of task heads nest the encoder under one of these


def _heads_divide(hidden: int, heads: int, key: str) -> None:
    if hidden % heads:
        raise UserError(f"config.json: {key} {hidden} is not divisible by {heads} heads")


def _bert_like_spec(family: str, position_kind: str) -> Callable[[BertConfig, str], ModelSpec]:
    def spec(config: BertConfig, name: str) -> ModelSpec:
        heads, hidden = config.num_attention_heads, config.hidden_size
        _heads_divide(hidden, heads, "hidden_size")
        return ModelSpec(
            family=family, name=name, layers=config.num_hidden_layers, heads=heads, kv_heads=heads, hidden=hidden,
            head_dim=hidden // heads, ffn=config.intermediate_size, vocab=config.vocab_size,
            type_vocab=config.type_vocab_size, max_positions=config.max_position_embeddings,
            position_kind=position_kind, pad_token_id=config.pad_token_id or 0,
            layer_norm_eps=config.layer_norm_eps, activation=config.hidden_act,
        )

    return spec


_BERT_LAYER = {
    "q.weight": "attention.self.query.weight", "q.bias": "attention.self.query.bias",
    "k.weight": "attention.self.key.weight", "k.bias": "attention.self.key.bias",
    "v.weight": "attention.self.value.weight", "v.bias": "attention.self.value.bias",
    "o.weight": "attention.output.dense.weight", "o.bias": "attention.output.dense.bias",
    "attn_norm.weight": "attention.output.LayerNorm.weight", "attn_norm.bias": "attention.output.LayerNorm.bias",
    "up.weight": "intermediate.dense.weight", "up.bias": "intermediate.dense.bias",
    "down.weight": "output.dense.weight", "down.bias": "output.dense.bias",
    "ffn_norm.weight": "output.LayerNorm.weight", "ffn_norm.bias": "output.LayerNorm.bias",
}
_BERT_EMBED = {
    "embed.word": "embeddings.word_embeddings.weight",
    "embed.position": "embeddings.position_embeddings.weight",
    "embed.type": "embeddings.token_type_embeddings.weight",
    "embed.norm.weight": "embeddings.LayerNorm.weight",
    "embed.norm.bias": "embeddings.LayerNorm.bias",
}


def _distilbert_spec(config: DistilBertConfig, name: str) -> ModelSpec:
    heads, hidden = config.n_heads, config.dim
    _heads_divide(hidden, heads, "dim")
    return ModelSpec(
        family="distilbert", name=name, layers=config.n_layers, heads=heads, kv_heads=heads, hidden=hidden,
        head_dim=hidden // heads, ffn=config.hidden_dim, vocab=config.vocab_size, type_vocab=0,
        max_positions=config.max_position_embeddings, position_kind="absolute",
        pad_token_id=config.pad_token_id or 0, layer_norm_eps=1e-12, activation=config.activation,
    )


_DISTILBERT_LAYER = {
    "q.weight": "attention.q_lin.weight", "q.bias": "attention.q_lin.bias",
    "k.weight": "attention.k_lin.weight", "k.bias": "attention.k_lin.bias",
    "v.weight": "attention.v_lin.weight", "v.bias": "attention.v_lin.bias",
    "o.weight": "attention.out_lin.weight", "o.bias": "attention.out_lin.bias",
    "attn_norm.weight": "sa_layer_norm.weight", "attn_norm.bias": "sa_layer_norm.bias",
    "up.weight": "ffn.lin1.weight", "up.bias": "ffn.lin1.bias",
    "down.weight": "ffn.lin2.weight", "down.bias": "ffn.lin2.bias",
    "ffn_norm.weight": "output_layer_norm.weight", "ffn_norm.bias": "output_layer_norm.bias",
}

FAMILIES = (
    Family(
        "bert", ("bert",), BertConfig, _bert_like_spec("bert", "absolute"), _BERT_EMBED,
        lambda layer, role: f"encoder.layer.{layer}.{_BERT_LAYER[role]}", ("", "bert."),
    ),
    Family(
        "roberta", ("roberta", "xlm-roberta"), BertConfig, _bert_like_spec("roberta", "roberta"), _BERT_EMBED,
        lambda layer, role: f"encoder.layer.{layer}.{_BERT_LAYER[role]}", ("", "roberta."),
    ),
    Family(
        "distilbert", ("distilbert",), DistilBertConfig, _distilbert_spec,
        {k: v for k, v in _BERT_EMBED.items() if k != "embed.type"},
        lambda layer, role: f"transformer.layer.{layer}.{_DISTILBERT_LAYER[role]}", ("", "distilbert."),
    ),
)


def family_for(config: ConfigHead) -> Family:
    """The adapter for a config's model_type, or a clear error naming the supported ones."""
    model_type = config.model_type
    for family in FAMILIES:
        if model_type in family.model_types:
            return family
    supported = ", ".join(t for f in FAMILIES for t in f.model_types)
    raise UserError(f"model_type {model_type!r} is not supported (supported: {supported})")
