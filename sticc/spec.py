"""ModelSpec: the shape of a transformer, independent of any checkpoint's tensor names."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from sticc.errors import UserError


@dataclass(frozen=True)
class ModelSpec:
    """Everything downstream stages need to know about a model; family adapters build it."""

    family: str  # "bert" | "roberta" | "distilbert"
    name: str
    layers: int
    heads: int
    kv_heads: int
    hidden: int
    head_dim: int
    ffn: int
    vocab: int
    type_vocab: int  # 0: the family has no token types
    max_positions: int
    position_kind: str  # "absolute" | "roberta" (positions start past the padding id)
    pad_token_id: int
    layer_norm_eps: float
    activation: str
    norm_placement: str = "post"

    def __post_init__(self) -> None:
        if self.hidden != self.heads * self.head_dim:
            raise UserError(f"hidden size {self.hidden} is not heads x head_dim ({self.heads} x {self.head_dim})")
        for field in ("layers", "heads", "hidden", "ffn", "vocab", "max_positions"):
            if getattr(self, field) <= 0:
                raise UserError(f"model config: {field} must be positive")

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

    @classmethod
    def from_json(cls, data: dict) -> ModelSpec:
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise UserError(f"model spec has unknown keys: {sorted(unknown)}")
        return cls(**data)
