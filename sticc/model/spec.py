"""ModelSpec: the shape of a transformer, independent of any checkpoint's tensor names.

Encoders (bert, roberta, distilbert): post-LN blocks, LayerNorm, an MLP FFN, biases everywhere.
Decoders (llama and its Qwen2/Mistral shapes, gpt2): pre-norm blocks, a final norm, an LM head
(tied to the word embeddings or separate), grouped-query attention (`kv_heads` divides `heads`),
RoPE or learned positions, RMSNorm or LayerNorm, a gated (SwiGLU) or plain MLP FFN.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Annotated, Literal

from pydantic import Field

from sticc.base.errors import UserError
from sticc.base.schema import STRICT, Name, with_config

# shapes a config may declare: far beyond any model sticc targets, small enough that sizes derived
# from them (bytes of a layer, of the embedding table) stay exact integers
Size = Annotated[int, Field(ge=1, le=1 << 20)]
Vocab = Annotated[int, Field(ge=1, le=1 << 24)]
Activation = Literal["gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "silu"]
TokenId = Annotated[int, Field(ge=0, le=1 << 24)]


def token_ids(value: int | list[int] | None) -> tuple[int, ...]:
    """A config's token id field (one id, a list of them, or none) as a tuple."""
    return () if value is None else tuple(value) if isinstance(value, list) else (value,)


@with_config(STRICT)
@dataclass(frozen=True)
class RopeScaling:
    """RoPE frequency scaling: "linear" divides positions by `factor`; "llama3" rescales the low
    frequencies (Llama 3.1's rule, with its `low_freq_factor`, `high_freq_factor` and the original
    context)."""

    kind: Literal["linear", "llama3"]
    factor: Annotated[float, Field(ge=1, le=1024)]
    low_freq_factor: Annotated[float, Field(gt=0, le=1024)] = 1.0
    high_freq_factor: Annotated[float, Field(gt=0, le=1024)] = 4.0
    original_max_positions: Annotated[int, Field(ge=1, le=1 << 24)] = 8192
LayerNormEps = Annotated[float, Field(gt=0, lt=1)]


# what each family's blocks are (norm placement, positions, norm, FFN, biases, decoder): a spec,
# a hostile manifest's too, must match its family
FAMILY_SHAPES = {
    "bert": ("post", ("absolute",), "layernorm", "mlp", ("all",), False),
    "roberta": ("post", ("roberta",), "layernorm", "mlp", ("all",), False),
    "distilbert": ("post", ("absolute",), "layernorm", "mlp", ("all",), False),
    "llama": ("pre", ("rope",), "rmsnorm", "gated", ("none", "qkv"), True),
    "gpt2": ("pre", ("absolute",), "layernorm", "mlp", ("all",), True),
}


@with_config(STRICT)
@dataclass(frozen=True)
class ModelSpec:
    """Everything downstream stages need to know about a model; family adapters build it."""

    family: Literal["bert", "roberta", "distilbert", "llama", "gpt2"]
    name: Name
    layers: Size
    heads: Size
    kv_heads: Size
    hidden: Size
    head_dim: Size
    ffn: Size
    vocab: Vocab
    type_vocab: Annotated[int, Field(ge=0, le=1 << 16)]  # 0: the family has no token types
    max_positions: Size
    # "roberta": positions start past the padding id; "rope": rotary, no position table
    position_kind: Literal["absolute", "roberta", "rope"]
    pad_token_id: TokenId
    layer_norm_eps: LayerNormEps  # the norms' epsilon (LayerNorm or RMSNorm)
    activation: Activation
    norm_placement: Literal["post", "pre"] = "post"  # "pre": decoders (the block normalizes its input)
    norm_kind: Literal["layernorm", "rmsnorm"] = "layernorm"
    ffn_kind: Literal["mlp", "gated"] = "mlp"  # "gated": act(x Wgate^T) * (x Wup^T), then Wdown
    biases: Literal["all", "qkv", "none"] = "all"  # "qkv": only the q/k/v projections have biases (Qwen2)
    lm_head: Literal["none", "tied", "separate"] = "none"  # decoders: the vocabulary projection
    rope_theta: Annotated[float, Field(gt=0, lt=1e12)] = 10000.0
    rope_scaling: RopeScaling | None = None
    bos_token_id: TokenId | None = None
    eos_token_ids: tuple[TokenId, ...] = ()  # generation stops at any of these

    def __post_init__(self) -> None:
        if self.hidden != self.heads * self.head_dim:
            raise UserError(f"hidden size {self.hidden} is not heads x head_dim ({self.heads} x {self.head_dim})")
        for field in ("layers", "heads", "hidden", "ffn", "vocab", "max_positions"):
            if getattr(self, field) <= 0:
                raise UserError(f"model config: {field} must be positive")
        if not self.is_decoder and self.kv_heads != self.heads:
            raise UserError(f"model config: {self.kv_heads} key/value heads for {self.heads} heads (encoders share none)")
        self._check_family()
        if self.heads % self.kv_heads:
            raise UserError(f"model config: {self.kv_heads} key/value heads do not divide {self.heads} heads")
        if self.position_kind == "rope" and self.head_dim % 2:
            raise UserError(f"model config: rotary positions need an even head_dim, not {self.head_dim}")
        if self.rope_theta < 1:  # far below any model's; a tiny one makes the rotary tables NaN (1e-300: 0 x inf)
            raise UserError(f"model config: rope_theta {self.rope_theta!r} must be at least 1")
        for token in (self.pad_token_id, self.bos_token_id, *self.eos_token_ids):
            if token is not None and token >= self.vocab:
                raise UserError(f"model config: token id {token} is outside the vocabulary of {self.vocab}")

    def _check_family(self) -> None:
        placement, positions, norm_kind, ffn_kind, biases, decoder = FAMILY_SHAPES[self.family]
        if (
            self.norm_placement != placement or self.position_kind not in positions or self.norm_kind != norm_kind
            or self.ffn_kind != ffn_kind or self.biases not in biases or self.is_decoder != decoder
            or (decoder and self.type_vocab) or (self.rope_scaling is not None and self.position_kind != "rope")
        ):
            raise UserError(f"model spec: a {self.family} model has {placement}-norm {norm_kind} blocks, a {ffn_kind} FFN, "
                            f"{'/'.join(positions)} positions and biases {'/'.join(biases)}" + (", no token types" if decoder else ""))
        scaling = self.rope_scaling
        if scaling is not None and scaling.kind == "llama3" and scaling.high_freq_factor <= scaling.low_freq_factor:
            raise UserError("model spec: llama3 RoPE scaling needs high_freq_factor > low_freq_factor")

    @property
    def is_decoder(self) -> bool:
        return self.lm_head != "none"

    @property
    def query_groups(self) -> int:
        """Query heads per key/value head (1 without grouped-query attention)."""
        return self.heads // self.kv_heads

    @property
    def position_rows(self) -> int:
        """Rows of the learned position table (0 with rotary positions)."""
        return 0 if self.position_kind == "rope" else self.max_positions

    @property
    def weight_count(self) -> int:
        """Parameters the runner uses: embeddings, layers, and a decoder's final norm and LM head
        (an encoder's pooler and task heads are not counted; a tied LM head is counted once)."""
        h, d = self.hidden, self.head_dim
        norm = h if self.norm_kind == "rmsnorm" else 2 * h
        q_out = self.heads * d
        kv_out = self.kv_heads * d
        attention = h * (2 * q_out + 2 * kv_out) + norm
        ffn = (3 if self.ffn_kind == "gated" else 2) * h * self.ffn + norm
        if self.biases != "none":
            attention += q_out + 2 * kv_out
        if self.biases == "all":
            attention += h
            ffn += h + (0 if self.ffn_kind == "gated" else self.ffn)
        embeddings = (self.vocab + self.position_rows + self.type_vocab) * h
        if self.is_decoder:
            embeddings += norm + (self.vocab * h if self.lm_head == "separate" else 0)
        else:
            embeddings += norm
        return embeddings + self.layers * (attention + ffn)

    @property
    def fp32_weight_nbytes(self) -> int:
        return 4 * self.weight_count

    def to_json(self) -> dict:
        return asdict(self)

