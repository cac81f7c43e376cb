"""Device profile: what a machine costs to read, dequantize and compute (schema: docs/device-profile.md).

A profile is measured by `sticc profile device` (sticc/profile/measure_device.py) or written by hand for a
machine sticc cannot run on; either way it goes through `DeviceProfile.from_json`, which names the
first bad field. Compute figures depend on the model's piece shapes, so a profile records the shape
it was measured for and `check_store` refuses a store of another shape.

Cost formulas of the engine (`sticc.runtime`; every solver, the simulator and the report use them
through `sticc.ir.lower`), each figure times its lane's scale from the lane fit:
- IO lane, per streamed piece: request_latency_s + slot bytes / read_bandwidth_Bps (a direct read
  of whole read units) + stored bytes / checksum_Bps; per chunk: io_chunk_overhead_s
- compute lane, per run of k weights at b bits dequantized together: call_s + k / weights_per_s
- compute lane, one chunk of s shards of `part` at sequence length L: c0 + cL*L + c1*s*L + c2*s*L^2
- a block's join (residual + LayerNorm) at L:          j0 + j1*L
- decoders, one decoded token: a chunk of s shards over C cached positions t0 + t1*s + t2*s*C (a
  matrix-vector product reads each weight once: memory-bound, its own fit), a join t_join
- compute lane, around every chunk: chunk_overhead_s (the lane fit's)
- the embedding (cold rows, sum, LayerNorm) at L:       e0 + e1*L
- the IO lane's work slows the compute lane beside it (shared cores, caches, memory, GIL): a chunk's
  compute takes `interference` seconds more per second of its own IO work
The lane fit also records how calls spread (`latency_quantiles`): the planner plans to a high
percentile of the latency, not to the median.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from sticc.base.errors import UserError
from sticc.base.jsonfile import write_json_atomic
from sticc.base.schema import (
    PARTS,
    STRICT,
    CapRate,
    Count,
    Name,
    NonNegative,
    Part,
    Percentile,
    Positive,
    PositiveCount,
    Rate,
    Seconds,
    StoredBits,
    Threads,
    parse_json,
    read_file,
    with_config,
)
from sticc.model.sharding import piece_shape, stored_parts
from sticc.model.store import Store

DEVICE_FORMAT_VERSION = 3  # 3: `calibration` renamed `lane_fit` (one meaning for "calibration": texts)


@with_config(STRICT)
@dataclass(frozen=True)
class Decode:
    call_s: Seconds  # fixed cost of dequantizing one run of pieces
    weights_per_s: Rate


@with_config(STRICT)
@dataclass(frozen=True)
class PartCompute:
    chunk_s: tuple[NonNegative, NonNegative, NonNegative, NonNegative]  # c0, cL (per token), c1 (per shard-token), c2 (per shard-token^2)
    join_s: tuple[NonNegative, NonNegative]  # j0, j1 (per token)


@with_config(STRICT)
@dataclass(frozen=True)
class TokenCompute:
    """A decoder's figures at one token per call (a decode step): matrix-vector products, which read
    every weight once and are memory-bound, so the prompt's fit does not carry over."""

    chunk_s: tuple[NonNegative, NonNegative, NonNegative]  # t0, t1 (per shard), t2 (per shard and cached position)
    join_s: NonNegative  # the block's join (and the next block's norm) at one token


@with_config(STRICT)
@dataclass(frozen=True)
class FitError:
    max_rel: NonNegative  # worst |fit - measured| / measured over the measured grid
    rms_rel: NonNegative
    points: Count


@with_config(STRICT)
@dataclass(frozen=True)
class LaneFit:
    """Scales fitted on traced runner calls of plans like the planner's, where both lanes and the
    embedding run at once: each isolated figure of a lane is multiplied by its lane's scale (what
    the lanes do to each other on shared cores, caches, disk queue and GIL). `latency_quantiles`
    maps a percentile to measured / predicted latency at that percentile over the traced calls,
    with the scales (50: about 1)."""

    read_scale: Positive  # reads, checksums and the IO lane's per-chunk overhead
    decode_scales: dict[StoredBits, Positive]  # dequantization on the compute lane, by bits (missing: 1)
    compute_scale: Positive  # kernels
    join_scale: Positive  # joins
    embed_scale: Positive
    interference: NonNegative  # compute-lane seconds per second of IO-lane work on the same chunk
    chunk_overhead_s: Seconds  # the compute lane's steps around each chunk (hand-over, bookkeeping)
    handover_s: Seconds  # from the IO lane handing a chunk over to a waiting compute lane starting it
    latency_quantiles: dict[Percentile, Positive]  # percentile -> measured / predicted
    plans: Count  # fit plans traced
    calls: Count  # traced calls
    latency_error_before: NonNegative  # median |predicted / measured - 1| over the calls, unscaled
    latency_error_after: NonNegative  # the same with the scales


@with_config(STRICT)
@dataclass(frozen=True)
class DeviceProfile:
    device: Name  # free text: host and CPU
    model_shape: dict[Name, PositiveCount]  # piece shapes the compute figures are for (see `model_shape`)
    compute_threads: Threads  # torch threads of the compute lane
    read_bandwidth_Bps: Rate  # cold direct reads of the store's data file
    request_latency_s: Seconds
    checksum_Bps: Rate  # the IO lane's checksum of freshly read bytes
    io_chunk_overhead_s: Seconds  # per chunk the IO lane loads (ring space, hand-over)
    decode: Annotated[dict[StoredBits, Decode], Field(min_length=1)]  # by bits (2-8 packed, 16, 32), on the compute lane's threads
    compute: dict[Part, PartCompute]  # by part (decoders: the LM head's slices too)
    embed_s: tuple[NonNegative, NonNegative]  # e0, e1 (per token)
    emulated_bandwidth_Bps: CapRate | None = None  # runners compiled with this profile cap their reads to it
    fit_error: FitError | None = None  # of the compute fit, for measured profiles
    note: Name = ""
    lane_fit: LaneFit | None = None  # None: every scale 1, no spread
    token: dict[Part, TokenCompute] | None = None  # decoders: one decoded token's kernels, by part
    format_version: Literal[DEVICE_FORMAT_VERSION] = DEVICE_FORMAT_VERSION

    def __post_init__(self) -> None:
        parts = set(PARTS) | ({Part.LM_HEAD} if self.token is not None else set())
        if set(self.compute) != parts:
            raise ValueError(f"compute must give figures for the parts {sorted(p.value for p in parts)}")
        if self.token is not None and set(self.token) != parts:
            raise ValueError(f"token must give figures for the parts {sorted(p.value for p in parts)}")

    # -- costs (isolated figures times the lane fit's scales) ---------------------------

    def _scale(self, name: str) -> float:
        return 1.0 if self.lane_fit is None else getattr(self.lane_fit, name)

    @property
    def io_chunk_s(self) -> float:
        return self.io_chunk_overhead_s * self._scale("read_scale")

    def read_s(self, slot_nbytes: int) -> float:
        """One streamed piece's direct read (whole read units)."""
        return (self.request_latency_s + slot_nbytes / self.read_bandwidth_Bps) * self._scale("read_scale")

    def check_s(self, nbytes: int) -> float:
        """The checksum of one streamed piece's stored bytes."""
        return nbytes / self.checksum_Bps * self._scale("read_scale")

    def _decode_scale(self, bits: int) -> float:
        return 1.0 if self.lane_fit is None else self.lane_fit.decode_scales.get(bits, 1.0)

    def decode_call_s(self, bits: int) -> float:
        return self.decode[bits].call_s * self._decode_scale(bits)

    def decode_weight_s(self, bits: int) -> float:
        return self._decode_scale(bits) / self.decode[bits].weights_per_s

    def chunk_s(self, part: str, shards: int, seq_len: int) -> float:
        if shards == 0:
            return 0.0
        c0, c_l, c1, c2 = self.compute[part].chunk_s
        return (c0 + c_l * seq_len + c1 * shards * seq_len + c2 * shards * seq_len * seq_len) * self._scale("compute_scale")

    def join_s(self, part: str, seq_len: int) -> float:
        j0, j1 = self.compute[part].join_s
        return (j0 + j1 * seq_len) * self._scale("join_scale")

    def token_chunk_s(self, part: str, shards: int, context: int) -> float:
        """A decoder's chunk of `shards` at one token over `context` cached positions."""
        if shards == 0:
            return 0.0
        t0, t1, t2 = self._token(part).chunk_s
        return (t0 + t1 * shards + t2 * shards * context) * self._scale("compute_scale")

    def token_join_s(self, part: str) -> float:
        return self._token(part).join_s * self._scale("join_scale")

    def _token(self, part: str) -> TokenCompute:
        if self.token is None:
            raise UserError("this device profile has no decode figures: run `sticc profile device` on the decoder's store")
        return self.token[part]

    @property
    def compute_chunk_s(self) -> float:
        """The compute lane's steps around one chunk, besides dequantization and the kernel."""
        return 0.0 if self.lane_fit is None else self.lane_fit.chunk_overhead_s

    @property
    def handover_s(self) -> float:
        return 0.0 if self.lane_fit is None else self.lane_fit.handover_s

    @property
    def interference(self) -> float:
        return 0.0 if self.lane_fit is None else self.lane_fit.interference

    def embed_time_s(self, seq_len: int) -> float:
        e0, e1 = self.embed_s
        return (e0 + e1 * seq_len) * self._scale("embed_scale")

    def quantile_factor(self, percentile: int) -> float:
        """Measured / predicted latency at `percentile` of the lane fit's traced calls (1 without one;
        the median's factor is folded into the scales, so percentiles are relative to it)."""
        if self.lane_fit is None or not self.lane_fit.latency_quantiles:
            return 1.0
        quantiles = self.lane_fit.latency_quantiles
        median = quantiles.get(50, 1.0)
        above = sorted(p for p in quantiles if p >= percentile)
        value = quantiles[above[0]] if above else max(quantiles.values())
        return max(1.0, value / median)

    # -- checks ----------------------------------------------------------------------------------

    def check_store(self, store: Store, where: str = "device profile") -> None:
        """Refuse a store whose piece shapes or bitwidths this profile has no figures for."""
        shape = model_shape(store)
        if self.model_shape != shape:
            raise UserError(
                f"{where} was measured for pieces {self.model_shape}, the store has {shape}: "
                f"run `sticc profile device` on this store"
            )
        missing = sorted(set(store.bits) - set(self.decode))
        if missing:
            raise UserError(f"{where} has no decode figures for bits {missing} of the store")

    # -- JSON ------------------------------------------------------------------------------------

    def to_json(self) -> dict:
        data = asdict(self)
        if self.lane_fit is None:
            del data["lane_fit"]
        return json.loads(json.dumps(data, sort_keys=True))  # bitwidth and percentile keys as strings

    @classmethod
    def from_json(cls, data: dict | bytes, where: str = "device profile") -> DeviceProfile:
        return parse_json(cls, data, where)

    @classmethod
    def read(cls, path: str | Path) -> DeviceProfile:
        return read_file(cls, path, "device profile")

    def write(self, path: str | Path) -> None:
        write_json_atomic(path, self.to_json())


def model_shape(store: Store) -> dict[str, int]:
    """The shape facts compute time depends on: piece rows per part, hidden, heads per shard."""
    spec = store.spec
    shape = {"hidden": spec.hidden, "head_dim": spec.head_dim, "heads_per_shard": spec.heads // store.shards_per_layer}
    for part in stored_parts(store.lm_head_shards):
        shape[f"{part}_rows"] = piece_shape(spec, store.shards_per_layer, part, store.lm_head_shards).rows
    return shape
