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

from sticc.errors import UserError
from sticc.spec import ModelSpec

LAYER_ROLES = (
    "q.weight", "q.bias", "k.weight", "k.bias", "v.weight", "v.bias", "o.weight", "o.bias",
    "attn_norm.weight", "attn_norm.bias", "up.weight", "up.bias", "down.weight", "down.bias",
    "ffn_norm.weight", "ffn_norm.bias",
)


@dataclass(frozen=True)
class Family:
    """A family adapter: config -> spec, canonical role -> checkpoint tensor name."""

    name: str
    model_types: tuple[str, ...]
    spec_from_config: Callable[[dict, str], ModelSpec]
    embed_names: dict[str, str]  # role -> name (without the checkpoint's prefix)
    layer_name: Callable[[int, str], str]  # (layer, role) -> name
    prefixes: tuple[str, ...]  # checkpoints of task heads nest the encoder under one of these


def _require(config: dict, key: str, kind: type = int):
    if key not in config:
        raise UserError(f"config.json has no {key!r}")
    value = config[key]
    if kind is int and (not isinstance(value, int) or isinstance(value, bool)):
        raise UserError(f"config.json: {key!r} must be an integer, got {value!r}")
    return value


def _bert_like_spec(family: str, position_kind: str) -> Callable[[dict, str], ModelSpec]:
    def spec(config: dict, name: str) -> ModelSpec:
        if config.get("position_embedding_type", "absolute") != "absolute":
            raise UserError(f"position_embedding_type {config['position_embedding_type']!r} is not supported")
        heads = _require(config, "num_attention_heads")
        hidden = _require(config, "hidden_size")
        if heads <= 0 or hidden % heads:
            raise UserError(f"config.json: hidden_size {hidden} is not divisible by {heads} heads")
        return ModelSpec(
            family=family, name=name, layers=_require(config, "num_hidden_layers"), heads=heads,
            kv_heads=heads, hidden=hidden, head_dim=hidden // heads, ffn=_require(config, "intermediate_size"),
            vocab=_require(config, "vocab_size"), type_vocab=config.get("type_vocab_size", 2),
            max_positions=_require(config, "max_position_embeddings"), position_kind=position_kind,
            pad_token_id=config.get("pad_token_id", 0) or 0,
            layer_norm_eps=float(config.get("layer_norm_eps", 1e-12)),
            activation=_activation(config.get("hidden_act", "gelu")),
        )

    return spec


def _activation(name: object) -> str:
    if name not in ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu"):
        raise UserError(f"activation {name!r} is not supported")
    return str(name)


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


def _distilbert_spec(config: dict, name: str) -> ModelSpec:
    heads = _require(config, "n_heads")
    hidden = _require(config, "dim")
    if heads <= 0 or hidden % heads:
        raise UserError(f"config.json: dim {hidden} is not divisible by {heads} heads")
    return ModelSpec(
        family="distilbert", name=name, layers=_require(config, "n_layers"), heads=heads, kv_heads=heads,
        hidden=hidden, head_dim=hidden // heads, ffn=_require(config, "hidden_dim"),
        vocab=_require(config, "vocab_size"), type_vocab=0,
        max_positions=_require(config, "max_position_embeddings"), position_kind="absolute",
        pad_token_id=config.get("pad_token_id", 0) or 0, layer_norm_eps=1e-12,
        activation=_activation(config.get("activation", "gelu")),
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
        "bert", ("bert",), _bert_like_spec("bert", "absolute"), _BERT_EMBED,
        lambda layer, role: f"encoder.layer.{layer}.{_BERT_LAYER[role]}", ("", "bert."),
    ),
    Family(
        "roberta", ("roberta", "xlm-roberta"), _bert_like_spec("roberta", "roberta"), _BERT_EMBED,
        lambda layer, role: f"encoder.layer.{layer}.{_BERT_LAYER[role]}", ("", "roberta."),
    ),
    Family(
        "distilbert", ("distilbert",), _distilbert_spec,
        {k: v for k, v in _BERT_EMBED.items() if k != "embed.type"},
        lambda layer, role: f"transformer.layer.{layer}.{_DISTILBERT_LAYER[role]}", ("", "distilbert."),
    ),
)


def family_for(config: dict) -> Family:
    """The adapter for a config's model_type, or a clear error naming the supported ones."""
    model_type = config.get("model_type")
    for family in FAMILIES:
        if model_type in family.model_types:
            return family
    supported = ", ".join(t for f in FAMILIES for t in f.model_types)
    raise UserError(f"model_type {model_type!r} is not supported (supported: {supported})")
