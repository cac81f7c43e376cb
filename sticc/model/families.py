"""Family adapters: the only place that knows a model family's config keys and tensor names.

Each adapter turns an HF config.json into a `ModelSpec` and names, for every canonical tensor role,
the checkpoint tensor that holds it (`TensorRef`: a name, and for GPT-2's fused Conv1D weights a
transpose and a row slice). Roles, in torch Linear layout [out, in] (`layer_roles`/`embed_roles`
list the ones a spec has):
  embed.word [vocab, hidden], embed.position [positions, hidden], embed.type [types, hidden],
  embed.norm.{weight,bias} (encoders), final_norm.{weight,bias} and lm_head.weight (decoders);
  per layer L: {q,k,v,o,gate,up,down}.{weight,bias}, attn_norm.{weight,bias}, ffn_norm.{weight,bias}.
GGUF files are read by `sticc.model.gguf_file`, which maps its tensor names to the same roles.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import AliasChoices, Field

from sticc.base.errors import UserError
from sticc.base.schema import OPEN, Name, with_config
from sticc.model.spec import Activation, LayerNormEps, ModelSpec, RopeScaling, Size, TokenId, Vocab, token_ids


def layer_roles(spec: ModelSpec) -> tuple[str, ...]:
    """The per-layer roles a model of `spec` has."""
    roles = ["q.weight", "k.weight", "v.weight", "o.weight", "up.weight", "down.weight", "attn_norm.weight", "ffn_norm.weight"]
    if spec.ffn_kind == "gated":
        roles.append("gate.weight")
    if spec.biases != "none":
        roles += ["q.bias", "k.bias", "v.bias"]
    if spec.biases == "all":
        roles += ["o.bias", "down.bias"] + ([] if spec.ffn_kind == "gated" else ["up.bias"])
    if spec.norm_kind == "layernorm":
        roles += ["attn_norm.bias", "ffn_norm.bias"]
    return tuple(roles)


def embed_roles(spec: ModelSpec) -> tuple[str, ...]:
    """The roles outside the layers a model of `spec` has."""
    roles = ["embed.word"]
    if spec.position_rows:
        roles.append("embed.position")
    if spec.type_vocab:
        roles.append("embed.type")
    norm = "final_norm" if spec.is_decoder else "embed.norm"
    roles += [f"{norm}.weight"] + ([f"{norm}.bias"] if spec.norm_kind == "layernorm" else [])
    if spec.lm_head == "separate":
        roles.append("lm_head.weight")
    return tuple(roles)


def role_shape(spec: ModelSpec, role: str) -> tuple[int, ...]:
    """The shape of `role`'s tensor (Linear layout) in a model of `spec`."""
    h, q_out, kv_out = spec.hidden, spec.heads * spec.head_dim, spec.kv_heads * spec.head_dim
    matrix, _, kind = role.rpartition(".")
    outs = {"q": q_out, "k": kv_out, "v": kv_out, "o": h, "gate": spec.ffn, "up": spec.ffn, "down": h}
    ins = {"q": h, "k": h, "v": h, "o": q_out, "gate": h, "up": h, "down": spec.ffn}
    rows = {"embed.word": spec.vocab, "lm_head": spec.vocab, "embed.position": spec.position_rows, "embed.type": spec.type_vocab}
    if matrix in outs:
        return (outs[matrix], ins[matrix]) if kind == "weight" else (outs[matrix],)
    if role in rows:
        return (rows[role], h)
    if matrix == "lm_head":
        return (spec.vocab, h)
    return (h,)  # norms


def role_shapes(spec: ModelSpec) -> Iterator[tuple[tuple[str, int | None], tuple[int, ...]]]:
    """((role, layer or None), shape) of every tensor a model of `spec` is read from (each source
    checks its tensors against them), one at a time: a source stops at its first missing tensor,
    where a config's layer count (up to 2**20) is not what its file holds."""
    for role in embed_roles(spec):
        yield (role, None), role_shape(spec, role)
    for layer in range(spec.layers):
        for role in layer_roles(spec):
            yield (role, layer), role_shape(spec, role)


@dataclass(frozen=True)
class TensorRef:
    """Where a role's tensor is: a checkpoint tensor, optionally transposed (Conv1D weights are
    stored [in, out]) and then cut to `rows` (one of a fused projection's parts)."""

    name: str  # without the checkpoint's prefix
    transpose: bool = False
    rows: tuple[int, int] | None = None  # [start, stop) after the transpose

    def shape(self, stored: tuple[int, ...]) -> tuple[int, ...]:
        shape = tuple(reversed(stored)) if self.transpose else tuple(stored)
        if self.rows is not None:
            shape = (self.rows[1] - self.rows[0], *shape[1:])
        return shape


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


@with_config(OPEN)
@dataclass(frozen=True)
class RopeRecord:
    """A config's `rope_scaling` (transformers 4) or `rope_parameters` (transformers 5)."""

    rope_type: Annotated[Name | None, Field(validation_alias=AliasChoices("rope_type", "type"))] = None
    rope_theta: Annotated[float, Field(gt=0, lt=1e12)] | None = None
    factor: Annotated[float, Field(ge=1, le=1024)] | None = None
    low_freq_factor: Annotated[float, Field(gt=0, le=1024)] = 1.0
    high_freq_factor: Annotated[float, Field(gt=0, le=1024)] = 4.0
    original_max_position_embeddings: Annotated[int, Field(ge=1, le=1 << 24)] = 8192


@with_config(OPEN)
@dataclass(frozen=True)
class LlamaConfig:
    """The keys of a Llama / Mistral / Qwen2 config.json that sticc uses (others are ignored)."""

    num_hidden_layers: Size
    num_attention_heads: Size
    hidden_size: Size
    intermediate_size: Size
    vocab_size: Vocab
    max_position_embeddings: Size
    model_type: Name
    num_key_value_heads: Size | None = None
    head_dim: Size | None = None
    rms_norm_eps: LayerNormEps = 1e-6
    hidden_act: Literal["silu"] = "silu"
    rope_theta: Annotated[float, Field(gt=0, lt=1e12)] | None = None
    rope_scaling: RopeRecord | None = None
    rope_parameters: RopeRecord | None = None
    tie_word_embeddings: bool = False
    attention_bias: bool | None = None  # Llama/Mistral: true also puts a bias on o_proj (not supported)
    mlp_bias: Literal[False] = False
    sliding_window: Annotated[int, Field(ge=1)] | None = None
    use_sliding_window: bool = False
    bos_token_id: TokenId | None = None
    eos_token_id: TokenId | list[TokenId] | None = None
    pad_token_id: TokenId | None = None


@with_config(OPEN)
@dataclass(frozen=True)
class Gpt2Config:
    """The keys of a GPT-2 config.json that sticc uses (others are ignored)."""

    n_layer: Size
    n_head: Size
    n_embd: Size
    vocab_size: Vocab
    n_positions: Size
    n_inner: Size | None = None
    layer_norm_epsilon: LayerNormEps = 1e-5
    activation_function: Activation = "gelu_new"
    scale_attn_weights: Literal[True] = True
    scale_attn_by_inverse_layer_idx: Literal[False] = False
    reorder_and_upcast_attn: bool = False  # numerically the same attention (in fp32 already)
    bos_token_id: TokenId | None = None
    eos_token_id: TokenId | None = None


@dataclass(frozen=True)
class Family:
    """A family adapter: config -> spec, canonical role -> checkpoint tensor."""

    name: str
    model_types: tuple[str, ...]
    config_kind: type  # the validated config.json record
    spec_from_config: Callable[[object, str], ModelSpec]  # (config record, model name) -> spec
    ref: Callable[[ModelSpec, str, int | None], TensorRef]  # (spec, role, layer or None) -> where its tensor is
    prefixes: tuple[str, ...]  # checkpoints of task heads nest the model under one of these


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


def _rope_scaling(record: RopeRecord | None) -> RopeScaling | None:
    kind = None if record is None else record.rope_type
    if kind in (None, "default"):
        return None
    if kind not in ("linear", "llama3") or record.factor is None:
        raise UserError(f"config.json: RoPE scaling {kind!r} is not supported (supported: linear, llama3)")
    return RopeScaling(kind, record.factor, record.low_freq_factor, record.high_freq_factor, record.original_max_position_embeddings)


def _llama_spec(config: LlamaConfig, name: str) -> ModelSpec:
    heads, hidden = config.num_attention_heads, config.hidden_size
    _heads_divide(hidden, heads, "hidden_size")
    head_dim = config.head_dim or hidden // heads
    if head_dim * heads != hidden:
        raise UserError(f"config.json: head_dim {head_dim} x {heads} heads is not hidden_size {hidden} (not supported)")
    rope = config.rope_parameters or config.rope_scaling
    theta = config.rope_theta or (rope.rope_theta if rope is not None and rope.rope_theta else 10000.0)
    if config.attention_bias and config.model_type != "qwen2":
        raise UserError(f"config.json: attention_bias (biases on q, k, v and o) is not supported for {config.model_type}")
    qkv_bias = config.model_type == "qwen2" if config.attention_bias is None else config.attention_bias
    positions = config.max_position_embeddings
    if config.sliding_window is not None and (config.model_type == "mistral" or config.use_sliding_window):
        positions = min(positions, config.sliding_window)  # within the window, attention is exact
    return ModelSpec(
        family="llama", name=name, layers=config.num_hidden_layers, heads=heads,
        kv_heads=config.num_key_value_heads or heads, hidden=hidden, head_dim=head_dim, ffn=config.intermediate_size,
        vocab=config.vocab_size, type_vocab=0, max_positions=positions, position_kind="rope",
        pad_token_id=config.pad_token_id or 0, layer_norm_eps=config.rms_norm_eps, activation="silu",
        norm_placement="pre", norm_kind="rmsnorm", ffn_kind="gated", biases="qkv" if qkv_bias else "none",
        lm_head="tied" if config.tie_word_embeddings else "separate", rope_theta=theta,
        rope_scaling=_rope_scaling(rope), bos_token_id=config.bos_token_id, eos_token_ids=token_ids(config.eos_token_id),
    )


_LLAMA_LAYER = {
    "q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.o_proj",
    "gate": "mlp.gate_proj", "up": "mlp.up_proj", "down": "mlp.down_proj",
    "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
}
_LLAMA_EMBED = {"embed.word": "model.embed_tokens.weight", "final_norm.weight": "model.norm.weight", "lm_head.weight": "lm_head.weight"}


def _llama_ref(spec: ModelSpec, role: str, layer: int | None) -> TensorRef:
    if layer is None:
        return TensorRef(_LLAMA_EMBED[role])
    matrix, _, kind = role.rpartition(".")
    return TensorRef(f"model.layers.{layer}.{_LLAMA_LAYER[matrix]}.{kind}")


def _gpt2_spec(config: Gpt2Config, name: str) -> ModelSpec:
    heads, hidden = config.n_head, config.n_embd
    _heads_divide(hidden, heads, "n_embd")
    return ModelSpec(
        family="gpt2", name=name, layers=config.n_layer, heads=heads, kv_heads=heads, hidden=hidden,
        head_dim=hidden // heads, ffn=config.n_inner or 4 * hidden, vocab=config.vocab_size, type_vocab=0,
        max_positions=config.n_positions, position_kind="absolute", pad_token_id=0,
        layer_norm_eps=config.layer_norm_epsilon, activation=config.activation_function, norm_placement="pre",
        lm_head="tied", bos_token_id=config.bos_token_id,
        eos_token_ids=token_ids(config.eos_token_id),
    )


_GPT2_EMBED = {
    "embed.word": "wte.weight", "embed.position": "wpe.weight", "final_norm.weight": "ln_f.weight", "final_norm.bias": "ln_f.bias",
}
_GPT2_FUSED = {"q": 0, "k": 1, "v": 2}  # c_attn holds [q | k | v] columns, Conv1D layout [in, out]
_GPT2_LAYER = {"o": "attn.c_proj", "up": "mlp.c_fc", "down": "mlp.c_proj", "attn_norm": "ln_1", "ffn_norm": "ln_2"}


def _gpt2_ref(spec: ModelSpec, role: str, layer: int | None) -> TensorRef:
    if layer is None:
        return TensorRef(_GPT2_EMBED[role])
    matrix, _, kind = role.rpartition(".")
    if matrix in _GPT2_FUSED:
        start = _GPT2_FUSED[matrix] * spec.hidden
        return TensorRef(f"h.{layer}.attn.c_attn.{kind}", transpose=kind == "weight", rows=(start, start + spec.hidden))
    return TensorRef(f"h.{layer}.{_GPT2_LAYER[matrix]}.{kind}", transpose=kind == "weight" and matrix in ("o", "up", "down"))


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

def _named(embed: dict[str, str], layer_name: Callable[[int, str], str]) -> Callable[[ModelSpec, str, int | None], TensorRef]:
    return lambda spec, role, layer: TensorRef(embed[role] if layer is None else layer_name(layer, role))


FAMILIES = (
    Family(
        "bert", ("bert",), BertConfig, _bert_like_spec("bert", "absolute"),
        _named(_BERT_EMBED, lambda layer, role: f"encoder.layer.{layer}.{_BERT_LAYER[role]}"), ("", "bert."),
    ),
    Family(
        "roberta", ("roberta", "xlm-roberta"), BertConfig, _bert_like_spec("roberta", "roberta"),
        _named(_BERT_EMBED, lambda layer, role: f"encoder.layer.{layer}.{_BERT_LAYER[role]}"), ("", "roberta."),
    ),
    Family(
        "distilbert", ("distilbert",), DistilBertConfig, _distilbert_spec,
        _named(_BERT_EMBED, lambda layer, role: f"transformer.layer.{layer}.{_DISTILBERT_LAYER[role]}"), ("", "distilbert."),
    ),
    Family("llama", ("llama", "mistral", "qwen2"), LlamaConfig, _llama_spec, _llama_ref, ("",)),
    Family("gpt2", ("gpt2",), Gpt2Config, _gpt2_spec, _gpt2_ref, ("", "transformer.")),
)


def family_for(config: ConfigHead) -> Family:
    """The adapter for a config's model_type, or a clear error naming the supported ones."""
    model_type = config.model_type
    for family in FAMILIES:
        if model_type in family.model_types:
            return family
    supported = ", ".join(t for f in FAMILIES for t in f.model_types)
    raise UserError(f"model_type {model_type!r} is not supported (supported: {supported})")
