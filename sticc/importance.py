"""Importance profile: how much output fidelity each shard version loses (schema: docs/importance-profile.md).

`loss[(layer, index)][bits]` is the measured loss of fidelity against fp32 when only that shard is
stored at `bits` (0: dropped) and every other shard is fp32; the default metric is 1 - cosine of the
mean-pooled output, averaged over calibration sentences. Planners use the additive model: a plan's
loss is the sum of its shards' losses, and a version's importance is what it recovers over dropping
the shard, `loss[0] - loss[bits]`. `additivity` records how well that model predicted the measured
loss of random whole plans. Measured by `sticc profile importance` (sticc/profile_importance.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sticc.errors import UserError
from sticc.jsonfile import read_json_object, write_json_atomic
from sticc.store import Store

IMPORTANCE_FORMAT_VERSION = 1


@dataclass(frozen=True)
class ImportanceProfile:
    store_id: str
    metric: str  # what `loss` measures
    calibration: dict  # {"source": ..., "sentences": n, "sha256": ...}
    loss: dict[tuple[int, int], dict[int, float]]  # (layer, index) -> {bits (0 = dropped): loss}
    additivity: dict = field(default_factory=dict)  # {"plans": n, "pearson": r, "median_ratio": ..., ...}

    def importance(self, layer: int, index: int, bits: int) -> float:
        """What keeping the shard at `bits` recovers over dropping it (0 for bits 0)."""
        losses = self.loss[(layer, index)]
        return losses[0] - losses[bits]

    def plan_loss(self, choices) -> float:
        """The additive model's loss of a plan: the sum of its shards' losses."""
        return sum(self.loss[(c.layer, c.index)][c.bits] for c in choices)

    @classmethod
    def flat(cls, store: Store) -> ImportanceProfile:
        """Every version loses nothing: for simulating a plan when fidelity is not the question."""
        loss = {
            (layer, index): dict.fromkeys((0, *store.bits), 0.0)
            for layer in range(store.spec.layers) for index in range(store.shards_per_layer)
        }
        return cls(store.store_id, "none (flat)", {}, loss)

    def check_store(self, store: Store, where: str = "importance profile") -> None:
        if self.store_id != store.store_id:
            raise UserError(f"{where} was measured on another store (store_id differs): run `sticc profile importance`")
        wanted = {(layer, index) for layer in range(store.spec.layers) for index in range(store.shards_per_layer)}
        if set(self.loss) != wanted:
            raise UserError(f"{where} does not cover this store's {len(wanted)} shards")
        for position, losses in self.loss.items():
            missing = ({0} | set(store.bits)) - set(losses)
            if missing:
                raise UserError(f"{where}: shard {position} has no loss for bits {sorted(missing)}")

    # -- JSON ------------------------------------------------------------------------------------

    def to_json(self) -> dict:
        layers = 1 + max(layer for layer, _ in self.loss)
        per_layer = 1 + max(index for _, index in self.loss)
        return {
            "format_version": IMPORTANCE_FORMAT_VERSION,
            "store_id": self.store_id,
            "metric": self.metric,
            "calibration": self.calibration,
            "loss": [
                [{str(bits): value for bits, value in sorted(self.loss[(layer, index)].items())} for index in range(per_layer)]
                for layer in range(layers)
            ],
            "additivity": self.additivity,
        }

    @classmethod
    def from_json(cls, data: dict, where: str = "importance profile") -> ImportanceProfile:
        keys = {"format_version", "store_id", "metric", "calibration", "loss", "additivity"}
        if set(data) - keys or {"format_version", "store_id", "loss"} - set(data):
            raise UserError(f"{where}: needs keys format_version, store_id, loss (optional metric, calibration, additivity)")
        if data["format_version"] != IMPORTANCE_FORMAT_VERSION:
            raise UserError(f"{where}: format_version {data['format_version']!r}, this sticc reads {IMPORTANCE_FORMAT_VERSION}")
        table = data["loss"]
        if not isinstance(table, list) or not all(isinstance(row, list) for row in table):
            raise UserError(f"{where}: loss must be a list (layers) of lists (shards) of {{bits: loss}}")
        loss = {}
        for layer, row in enumerate(table):
            for index, entry in enumerate(row):
                if not isinstance(entry, dict):
                    raise UserError(f"{where}: loss[{layer}][{index}] must map bits to a loss")
                parsed = {}
                for key, value in entry.items():
                    if not key.isdigit() or isinstance(value, bool) or not isinstance(value, int | float) or value != value:
                        raise UserError(f"{where}: loss[{layer}][{index}] must map bits (as strings) to numbers")
                    parsed[int(key)] = float(value)
                loss[(layer, index)] = parsed
        return cls(
            str(data["store_id"]), str(data.get("metric", "")), dict(data.get("calibration") or {}), loss,
            dict(data.get("additivity") or {}),
        )

    @classmethod
    def read(cls, path: str | Path) -> ImportanceProfile:
        path = Path(path)
        return cls.from_json(read_json_object(path, f"importance profile {path} does not exist"), str(path))

    def write(self, path: str | Path) -> None:
        write_json_atomic(path, self.to_json())
