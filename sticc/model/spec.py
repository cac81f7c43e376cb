"""ModelSpec: the shape of a transformer, independent of any checkpoint's tensor names."""

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
Activation = Literal["gelu", "gelu_new", "gelu_pytorch_tanh", "relu"]
LayerNormEps = Annotated[float, Field(gt=0, lt=1)]


@with_config(STRICT)
@dataclass(frozen=True)
class ModelSpec:
    """Everything downstream stages need to know about a model; family adapters build it."""

    family: Literal["bert", "roberta", "distilbert"]
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
    position_kind: Literal["absolute", "roberta"]  # "roberta": positions start past the padding id
    pad_token_id: Annotated[int, Field(ge=0, le=1 << 24)]
    layer_norm_eps: LayerNormEps
    activation: Activation
    norm_placement: Literal["post"] = "post"

    def __post_init__(self) -> None:
        if self.hidden != self.heads * self.head_dim:
            raise UserError(f"hidden size {self.hidden} is not heads x head_dim ({self.heads} x {self.head_dim})")
        for field in ("layers", "heads", "hidden", "ffn", "vocab", "max_positions"):
            if getattr(self, field) <= 0:
                raise UserError(f"model config: {field} must be positive")
        if self.kv_heads != self.heads:
            raise UserError(f"model config: {self.kv_heads} key/value heads for {self.heads} heads (encoders share none)")
        if self.pad_token_id >= self.vocab:
            raise UserError(f"model config: pad_token_id {self.pad_token_id} is outside the vocabulary of {self.vocab}")

    @property
    def weight_count(self) -> int:
        """Parameters the runner uses (embeddings, encoder layers; no pooler or LM head)."""
        embeddings = (self.vocab + self.max_positions + self.type_vocab) * self.hidden + 2 * self.hidden
        attention = 4 * self.hidden * self.hidden + 4 * self.hidden + 2 * self.hidden
        ffn = 2 * self.hidden * self.ffn + self.ffn + self.hidden + 2 * self.hidden
        return embeddings + self.layers * (attention + ffn)

    @property
    def fp32_weight_nbytes(self) -> int:
        return 4 * self.weight_count

    def to_json(self) -> dict:
        return asdict(self)

