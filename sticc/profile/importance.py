"""Importance profile: how much output fidelity each shard version loses (schema: docs/importance-profile.md).

`loss[(layer, index)][bits]` is the measured loss of fidelity against fp32 when only that shard is
stored at `bits` (0: dropped) and every other shard is fp32; the default metric is 1 - cosine of the
mean-pooled output, averaged over calibration sentences. Planners use the additive model: a plan's
loss is the sum of its shards' losses, and a version's importance is what it recovers over dropping
the shard, `loss[0] - loss[bits]`. `additivity` records how well that model predicted the measured
loss of random whole plans. Measured by `sticc profile importance` (sticc/profile/measure_importance.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from sticc.base.errors import UserError
from sticc.base.jsonfile import write_json_atomic
from sticc.base.schema import STRICT, Bits, Count, Finite, Name, parse_json, read_file, with_config
from sticc.model.store import Store

IMPORTANCE_FORMAT_VERSION = 1



@with_config(STRICT)
@dataclass(frozen=True)
class CalibrationRecord:
    """What a profile was measured on (`sticc.profile.measure_importance.CalibrationInputs`)."""

    source: Name = ""
    sentences: Count = 0
    tokens: Count = 0
    sha256: Name = ""


@with_config(STRICT)
@dataclass(frozen=True)
class PlanMix:
    """What one random plan of the additivity check kept (`RandomPlan.describe`)."""

    drop_rate: Finite
    min_bits: Bits
    dropped: Count
    mean_kept_bits: Finite | None


@with_config(STRICT)
@dataclass(frozen=True)
class AdditivityRecord:
    """How well the additive model predicted random whole plans (`additivity_summary`); every
    field empty when none were measured."""

    plans: Count = 0
    seed: Count = 0
    pearson: Finite | None = None
    spearman: Finite | None = None
    median_ratio: Finite | None = None
    min_ratio: Finite | None = None
    max_ratio: Finite | None = None
    pairs: list[Annotated[list[Finite], Field(min_length=2, max_length=2)]] = field(default_factory=list)  # [predicted, measured]
    mix: list[PlanMix] = field(default_factory=list)


@with_config(STRICT)
@dataclass(frozen=True)
class ImportanceFile:
    """importance.json as stored: `loss[layer][index]` maps bits (as strings; 0 = dropped) to a loss."""

    format_version: Literal[IMPORTANCE_FORMAT_VERSION]
    store_id: Name
    loss: list[list[dict[Bits, Finite]]]
    metric: Name = ""
    calibration: CalibrationRecord | None = None
    additivity: AdditivityRecord = AdditivityRecord()


@dataclass(frozen=True)
class ImportanceProfile:
    store_id: str
    metric: str  # what `loss` measures
    calibration: CalibrationRecord | None  # the texts it was measured on (None: made, not measured)
    loss: dict[tuple[int, int], dict[int, float]]  # (layer, index) -> {bits (0 = dropped): loss}
    additivity: AdditivityRecord = AdditivityRecord()  # plans = 0: not checked

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
        return cls(store.store_id, "none (flat)", None, loss)

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
            "calibration": None if self.calibration is None else asdict(self.calibration),
            "loss": [
                [{str(bits): value for bits, value in sorted(self.loss[(layer, index)].items())} for index in range(per_layer)]
                for layer in range(layers)
            ],
            "additivity": asdict(self.additivity) if self.additivity.plans else {},
        }

    @classmethod
    def from_json(cls, data: dict | bytes, where: str = "importance profile") -> ImportanceProfile:
        stored = parse_json(ImportanceFile, data, where)
        return cls._from_file(stored)

    @classmethod
    def read(cls, path: str | Path) -> ImportanceProfile:
        return cls._from_file(read_file(ImportanceFile, path, "importance profile"))

    @classmethod
    def _from_file(cls, stored: ImportanceFile) -> ImportanceProfile:
        loss = {(layer, index): dict(entry) for layer, row in enumerate(stored.loss) for index, entry in enumerate(row)}
        return cls(stored.store_id, stored.metric, stored.calibration, loss, stored.additivity)

    def write(self, path: str | Path) -> None:
        write_json_atomic(path, self.to_json())
