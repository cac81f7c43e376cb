"""Importance profile: how much output fidelity each shard version loses (schema: docs/importance-profile.md).

`loss[(layer, index)][bits]` is the measured loss of fidelity against fp32 when only that shard is
stored at `bits` (0: dropped) and every other shard is fp32; the default metric is 1 - cosine of the
mean-pooled output, averaged over calibration sentences. Planners use the additive model: a plan's
loss is the sum of its shards' losses, and a version's importance is what it recovers over dropping
the shard, `loss[0] - loss[bits]`. `additivity` records how well that model predicted the measured
loss of random whole plans (`random_plans`, `additivity_summary`, shared by the encoder and decoder
profilers). Measured by `sticc profile importance` (sticc/profile/measure_importance.py; decoders:
sticc/profile/decoder_importance.py, where the metric is the KL divergence of the next-token
distribution and the LM head's vocabulary slices are shards too, as layer `layers`).
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import Field

from sticc.base.errors import UserError
from sticc.base.jsonfile import write_json_atomic
from sticc.base.schema import STRICT, Bits, Count, Finite, Name, parse_json, read_file, with_config
from sticc.model.sharding import shard_positions
from sticc.model.store import Store

IMPORTANCE_FORMAT_VERSION = 1
DEFAULT_ADDITIVITY_PLANS = 16
ADDITIVITY_SEED = 0
DROP_RATES = (0.0, 0.05, 0.1, 0.2, 0.3)  # a random plan drops each shard with one of these probabilities



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
        loss = {position: dict.fromkeys((0, *store.bits), 0.0) for position in store_shard_positions(store)}
        return cls(store.store_id, "none (flat)", None, loss)

    def check_store(self, store: Store, where: str = "importance profile") -> None:
        if self.store_id != store.store_id:
            raise UserError(f"{where} was measured on another store (store_id differs): run `sticc profile importance`")
        wanted = set(store_shard_positions(store))
        if set(self.loss) != wanted:
            what = f"{len(wanted)} shards" + (" and LM head slices" if store.lm_head_shards else "")
            raise UserError(f"{where} does not cover this store's {what}")
        for position, losses in self.loss.items():
            missing = ({0} | set(store.bits)) - set(losses)
            if missing:
                raise UserError(f"{where}: shard {position} has no loss for bits {sorted(missing)}")

    # -- JSON ------------------------------------------------------------------------------------

    def to_json(self) -> dict:
        # one row per layer, each as long as that layer has shards (a decoder's last row: its LM head slices)
        layers = 1 + max(layer for layer, _ in self.loss)
        per_layer = [1 + max(index for at, index in self.loss if at == layer) for layer in range(layers)]
        return {
            "format_version": IMPORTANCE_FORMAT_VERSION,
            "store_id": self.store_id,
            "metric": self.metric,
            "calibration": None if self.calibration is None else asdict(self.calibration),
            "loss": [
                [{str(bits): value for bits, value in sorted(self.loss[(layer, index)].items())} for index in range(count)]
                for layer, count in enumerate(per_layer)
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


def store_shard_positions(store: Store) -> list[tuple[int, int]]:
    """(layer, index) of every shard a profile covers: the layers' shards, then a decoder's LM head
    slices as the shards of layer `layers` (`sticc.model.sharding.shard_positions`)."""
    return shard_positions(store.spec.layers, store.shards_per_layer, store.lm_head_shards)


def reference_bits(store: Store) -> int:
    """The precision losses are measured against: 32 bits, or the store's highest bitwidth."""
    return 32 if 32 in store.bits else max(store.bits)


# ----------------------------------------------------------------------------------------------
# The additivity check (both profilers)
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RandomPlan:
    """A random whole plan: each shard dropped with probability `drop_rate`, else a random stored
    bitwidth of at least `min_bits`; a decoder's LM head slices (the last row) are never dropped."""

    drop_rate: float
    min_bits: int
    bits: tuple[tuple[int, ...], ...]  # [layer][index], 0 = dropped

    def describe(self) -> PlanMix:
        kept = [b for row in self.bits for b in row if b]
        return PlanMix(
            drop_rate=self.drop_rate, min_bits=self.min_bits,
            dropped=sum(1 for row in self.bits for b in row if not b),
            mean_kept_bits=sum(kept) / len(kept) if kept else None,
        )


def random_plans(store: Store, count: int, seed: int) -> list[RandomPlan]:
    """`count` random whole plans of `store` (`RandomPlan`), from a generator seeded with `seed`. A
    decoder's plans add a row for its LM head slices, each at a random bitwidth of at least the
    plan's minimum and never dropped (a plan must keep every slice: `sticc.ir.plan`)."""
    rng = random.Random(seed)
    bits = sorted(store.bits)
    plans = []
    for _ in range(count):
        drop_rate = rng.choice(DROP_RATES)
        floor = rng.choice(bits)
        allowed = [b for b in bits if b >= floor]
        rows = [
            tuple(0 if rng.random() < drop_rate else rng.choice(allowed) for _ in range(store.shards_per_layer))
            for _ in range(store.spec.layers)
        ]
        if store.lm_head_shards:
            rows.append(tuple(rng.choice(allowed) for _ in range(store.lm_head_shards)))
        plans.append(RandomPlan(drop_rate, floor, tuple(rows)))
    return plans


def _pearson(xs: np.ndarray, ys: np.ndarray) -> float | None:
    dx, dy = xs - xs.mean(), ys - ys.mean()
    denominator = math.sqrt(float((dx * dx).sum() * (dy * dy).sum()))
    return float((dx * dy).sum()) / denominator if len(xs) > 1 and denominator > 0 else None


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks from 0, ties sharing their mean rank."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    start = 0
    while start < len(values):
        stop = start
        while stop + 1 < len(values) and values[order[stop + 1]] == values[order[start]]:
            stop += 1
        ranks[order[start : stop + 1]] = (start + stop) / 2
        start = stop + 1
    return ranks


def additivity_summary(plans: list[RandomPlan], measured: list[float], loss: dict[tuple[int, int], dict[int, float]]) -> AdditivityRecord:
    """How well the sum of per-shard losses predicted each plan's measured loss."""
    predicted = [
        sum(loss[(layer, index)][b] for layer, row in enumerate(plan.bits) for index, b in enumerate(row))
        for plan in plans
    ]
    xs, ys = np.array(predicted), np.array(measured)
    ratios = sorted(m / p for p, m in zip(predicted, measured, strict=True) if p > 0)
    return AdditivityRecord(
        plans=len(plans),
        seed=ADDITIVITY_SEED,
        pearson=_pearson(xs, ys),
        spearman=_pearson(_ranks(xs), _ranks(ys)),
        median_ratio=float(np.median(ratios)) if ratios else None,
        min_ratio=ratios[0] if ratios else None,
        max_ratio=ratios[-1] if ratios else None,
        pairs=[[p, m] for p, m in zip(predicted, measured, strict=True)],
        mix=[plan.describe() for plan in plans],
    )
