"""Device profile: what a machine costs to read, dequantize and compute (schema: docs/device-profile.md).

A profile is measured by `sticc profile device` (sticc/profile_device.py) or written by hand for a
machine sticc cannot run on; either way it goes through `DeviceProfile.from_json`, which names the
first bad field. Compute figures depend on the model's piece shapes, so a profile records the shape
it was measured for and `check_store` refuses a store of another shape.

Cost formulas of the engine (`sticc.runtime`; every solver, the simulator and the report use them
through `sticc.lower`), each figure times its lane's calibration scale:
- IO lane, per streamed piece: request_latency_s + slot bytes / read_bandwidth_Bps (a direct read
  of whole read units) + stored bytes / checksum_Bps; per chunk: io_chunk_overhead_s
- compute lane, per run of k weights at b bits dequantized together: call_s + k / weights_per_s
- compute lane, one chunk of s shards of `part` at sequence length L: c0 + cL*L + c1*s*L + c2*s*L^2
- a block's join (residual + LayerNorm) at L:          j0 + j1*L
- compute lane, around every chunk: chunk_overhead_s (the calibration's)
- the embedding (cold rows, sum, LayerNorm) at L:       e0 + e1*L
- the IO lane's work slows the compute lane beside it (shared cores, caches, memory, GIL): a chunk's
  compute takes `interference` seconds more per second of its own IO work
The calibration also records how calls spread (`latency_quantiles`): the planner plans to a high
percentile of the latency, not to the median.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from sticc.errors import UserError
from sticc.jsonfile import read_json_object, write_json_atomic
from sticc.sharding import PARTS, piece_shape
from sticc.store import Store

DEVICE_FORMAT_VERSION = 2


@dataclass(frozen=True)
class Decode:
    call_s: float  # fixed cost of dequantizing one run of pieces
    weights_per_s: float


@dataclass(frozen=True)
class PartCompute:
    chunk_s: tuple[float, float, float, float]  # c0, cL (per token), c1 (per shard-token), c2 (per shard-token^2)
    join_s: tuple[float, float]  # j0, j1 (per token)


@dataclass(frozen=True)
class FitError:
    max_rel: float  # worst |fit - measured| / measured over the measured grid
    rms_rel: float
    points: int


@dataclass(frozen=True)
class Calibration:
    """Scales fitted on traced runner calls of plans like the planner's, where both lanes and the
    embedding run at once: each isolated figure of a lane is multiplied by its lane's scale (what
    the lanes do to each other on shared cores, caches, disk queue and GIL). `latency_quantiles`
    maps a percentile to measured / predicted latency at that percentile over the traced calls,
    with the scales (50: about 1)."""

    read_scale: float  # reads, checksums and the IO lane's per-chunk overhead
    decode_scales: dict[int, float]  # dequantization on the compute lane, by bits (missing: 1)
    compute_scale: float  # kernels
    join_scale: float  # joins
    embed_scale: float
    interference: float  # compute-lane seconds per second of IO-lane work on the same chunk
    chunk_overhead_s: float  # the compute lane's steps around each chunk (hand-over, bookkeeping)
    handover_s: float  # from the IO lane handing a chunk over to a waiting compute lane starting it
    latency_quantiles: dict[int, float]  # percentile -> measured / predicted
    plans: int  # calibration plans traced
    calls: int  # traced calls
    latency_error_before: float  # median |predicted / measured - 1| over the calls, unscaled
    latency_error_after: float  # the same with the scales


@dataclass(frozen=True)
class DeviceProfile:
    device: str  # free text: host and CPU
    model_shape: dict[str, int]  # piece shapes the compute figures are for (see `model_shape`)
    compute_threads: int  # torch threads of the compute lane
    read_bandwidth_Bps: float  # cold direct reads of the store's data file
    request_latency_s: float
    checksum_Bps: float  # the IO lane's checksum of freshly read bytes
    emulated_bandwidth_Bps: float | None  # runners compiled with this profile cap their reads to it
    io_chunk_overhead_s: float  # per chunk the IO lane loads (ring space, hand-over)
    decode: dict[int, Decode]  # by bits (2-8 packed, 16, 32), on the compute lane's threads
    compute: dict[str, PartCompute]  # by part
    embed_s: tuple[float, float]  # e0, e1 (per token)
    fit_error: FitError | None  # of the compute fit, for measured profiles
    note: str = ""
    calibration: Calibration | None = None  # None: every scale 1, no spread

    # -- costs (isolated figures times the calibration's lane scales) ---------------------------

    def _scale(self, name: str) -> float:
        return 1.0 if self.calibration is None else getattr(self.calibration, name)

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
        return 1.0 if self.calibration is None else self.calibration.decode_scales.get(bits, 1.0)

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

    @property
    def compute_chunk_s(self) -> float:
        """The compute lane's steps around one chunk, besides dequantization and the kernel."""
        return 0.0 if self.calibration is None else self.calibration.chunk_overhead_s

    @property
    def handover_s(self) -> float:
        return 0.0 if self.calibration is None else self.calibration.handover_s

    @property
    def interference(self) -> float:
        return 0.0 if self.calibration is None else self.calibration.interference

    def embed_time_s(self, seq_len: int) -> float:
        e0, e1 = self.embed_s
        return (e0 + e1 * seq_len) * self._scale("embed_scale")

    def quantile_factor(self, percentile: int) -> float:
        """Measured / predicted latency at `percentile` of the calibration's calls (1 without one;
        the median's factor is folded into the scales, so percentiles are relative to it)."""
        if self.calibration is None or not self.calibration.latency_quantiles:
            return 1.0
        quantiles = self.calibration.latency_quantiles
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
        data["decode"] = {str(bits): asdict(d) for bits, d in sorted(self.decode.items())}
        if self.calibration is None:
            del data["calibration"]
        else:
            data["calibration"]["latency_quantiles"] = {str(p): v for p, v in sorted(self.calibration.latency_quantiles.items())}
            data["calibration"]["decode_scales"] = {str(b): v for b, v in sorted(self.calibration.decode_scales.items())}
        data["format_version"] = DEVICE_FORMAT_VERSION
        return data

    @classmethod
    def from_json(cls, data: dict, where: str = "device profile") -> DeviceProfile:
        return _parse(data, where)

    @classmethod
    def read(cls, path: str | Path) -> DeviceProfile:
        path = Path(path)
        return _parse(read_json_object(path, f"device profile {path} does not exist"), str(path))

    def write(self, path: str | Path) -> None:
        write_json_atomic(path, self.to_json())


def model_shape(store: Store) -> dict[str, int]:
    """The shape facts compute time depends on: piece rows per part, hidden, heads per shard."""
    spec = store.spec
    shape = {"hidden": spec.hidden, "head_dim": spec.head_dim, "heads_per_shard": spec.heads // store.shards_per_layer}
    for part in PARTS:
        shape[f"{part}_rows"] = piece_shape(spec, store.shards_per_layer, part).rows
    return shape


# ----------------------------------------------------------------------------------------------
# Validation of hand-written profiles: the first problem, named by its JSON path.
# ----------------------------------------------------------------------------------------------

_KEYS = {
    "format_version", "device", "model_shape", "compute_threads", "read_bandwidth_Bps", "request_latency_s",
    "checksum_Bps", "emulated_bandwidth_Bps", "io_chunk_overhead_s", "decode", "compute", "embed_s", "fit_error",
    "note", "calibration",
}
_REQUIRED = _KEYS - {"fit_error", "note", "emulated_bandwidth_Bps", "calibration"}
_CALIBRATION_KEYS = {
    "read_scale", "decode_scales", "compute_scale", "join_scale", "embed_scale", "interference", "chunk_overhead_s",
    "handover_s", "latency_quantiles", "plans", "calls",
    "latency_error_before", "latency_error_after",
}


def _number(value, where: str, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value or value in (float("inf"), float("-inf")):
        raise UserError(f"{where} must be a number")
    if value < 0 or (positive and value == 0):
        raise UserError(f"{where} must be {'positive' if positive else 'non-negative'}")
    return float(value)


def _numbers(value, where: str, count: int) -> tuple[float, ...]:
    if not isinstance(value, list) or len(value) != count:
        raise UserError(f"{where} must be a list of {count} numbers")
    return tuple(_number(v, f"{where}[{i}]") for i, v in enumerate(value))


def _object(value, where: str, keys: set[str]) -> dict:
    if not isinstance(value, dict):
        raise UserError(f"{where} must be an object")
    missing, unknown = keys - set(value), set(value) - keys
    if missing:
        raise UserError(f"{where} lacks {sorted(missing)}")
    if unknown:
        raise UserError(f"{where} has unknown keys {sorted(unknown)}")
    return value


def _parse(data: dict, where: str) -> DeviceProfile:
    unknown, missing = set(data) - _KEYS, _REQUIRED - set(data)
    if missing:
        raise UserError(f"{where}: lacks {sorted(missing)} (see docs/device-profile.md)")
    if unknown:
        raise UserError(f"{where}: unknown keys {sorted(unknown)}")
    if data["format_version"] != DEVICE_FORMAT_VERSION:
        raise UserError(f"{where}: format_version {data['format_version']!r}, this sticc reads {DEVICE_FORMAT_VERSION}")
    if not isinstance(data["device"], str):
        raise UserError(f"{where}: device must be a string")
    shape = data["model_shape"]
    if not isinstance(shape, dict) or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in shape.values()):
        raise UserError(f"{where}: model_shape must map names to positive integers")
    threads = data["compute_threads"]
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise UserError(f"{where}: compute_threads must be a positive integer")
    decode = data["decode"]
    if not isinstance(decode, dict) or not decode:
        raise UserError(f"{where}: decode must map bitwidths to {{call_s, weights_per_s}}")
    decodes = {}
    for key, value in decode.items():
        if not key.isdigit() or int(key) not in set(range(2, 9)) | {16, 32}:
            raise UserError(f"{where}: decode key {key!r} is not a bitwidth (2-8, 16, 32)")
        entry = _object(value, f"{where}: decode.{key}", {"call_s", "weights_per_s"})
        decodes[int(key)] = Decode(
            _number(entry["call_s"], f"{where}: decode.{key}.call_s"),
            _number(entry["weights_per_s"], f"{where}: decode.{key}.weights_per_s", positive=True),
        )
    compute = _object(data["compute"], f"{where}: compute", set(PARTS))
    parts = {}
    for part in PARTS:
        entry = _object(compute[part], f"{where}: compute.{part}", {"chunk_s", "join_s"})
        parts[part] = PartCompute(
            _numbers(entry["chunk_s"], f"{where}: compute.{part}.chunk_s", 4),
            _numbers(entry["join_s"], f"{where}: compute.{part}.join_s", 2),
        )
    fit = data.get("fit_error")
    if fit is not None:
        entry = _object(fit, f"{where}: fit_error", {"max_rel", "rms_rel", "points"})
        fit = FitError(_number(entry["max_rel"], f"{where}: fit_error.max_rel"),
                       _number(entry["rms_rel"], f"{where}: fit_error.rms_rel"), int(entry["points"]))
    calibration = data.get("calibration")
    if calibration is not None:
        entry = _object(calibration, f"{where}: calibration", _CALIBRATION_KEYS)
        quantiles = entry["latency_quantiles"]
        if not isinstance(quantiles, dict) or not all(k.isdigit() and 0 < int(k) < 100 for k in quantiles):
            raise UserError(f"{where}: calibration.latency_quantiles must map percentiles (1-99) to numbers")
        scales = entry["decode_scales"]
        if not isinstance(scales, dict) or not all(k.isdigit() for k in scales):
            raise UserError(f"{where}: calibration.decode_scales must map bitwidths to numbers")
        calibration = Calibration(
            _number(entry["read_scale"], f"{where}: calibration.read_scale", positive=True),
            {int(k): _number(v, f"{where}: calibration.decode_scales.{k}", positive=True) for k, v in scales.items()},
            *(_number(entry[k], f"{where}: calibration.{k}", positive=True) for k in ("compute_scale", "join_scale", "embed_scale")),
            _number(entry["interference"], f"{where}: calibration.interference"),
            _number(entry["chunk_overhead_s"], f"{where}: calibration.chunk_overhead_s"),
            _number(entry["handover_s"], f"{where}: calibration.handover_s"),
            {int(k): _number(v, f"{where}: calibration.latency_quantiles.{k}", positive=True) for k, v in quantiles.items()},
            int(_number(entry["plans"], f"{where}: calibration.plans")),
            int(_number(entry["calls"], f"{where}: calibration.calls")),
            _number(entry["latency_error_before"], f"{where}: calibration.latency_error_before"),
            _number(entry["latency_error_after"], f"{where}: calibration.latency_error_after"),
        )
    emulated = data.get("emulated_bandwidth_Bps")
    if not isinstance(data.get("note", ""), str):
        raise UserError(f"{where}: note must be a string")
    return DeviceProfile(
        device=data["device"],
        model_shape=dict(shape),
        compute_threads=threads,
        read_bandwidth_Bps=_number(data["read_bandwidth_Bps"], f"{where}: read_bandwidth_Bps", positive=True),
        request_latency_s=_number(data["request_latency_s"], f"{where}: request_latency_s"),
        checksum_Bps=_number(data["checksum_Bps"], f"{where}: checksum_Bps", positive=True),
        emulated_bandwidth_Bps=None if emulated is None else _number(emulated, f"{where}: emulated_bandwidth_Bps", positive=True),
        io_chunk_overhead_s=_number(data["io_chunk_overhead_s"], f"{where}: io_chunk_overhead_s"),
        decode=decodes,
        compute=parts,
        embed_s=_numbers(data["embed_s"], f"{where}: embed_s", 2),
        fit_error=fit,
        note=data.get("note", ""),
        calibration=calibration,
    )
