"""The shard store: a directory with manifest.json and one data file in safetensors layout.

Data file (`weights.safetensors`): a valid safetensors file whose tensors are the global header, the
per-layer headers, the row-addressable embedding tables with their per-row checksum tables, and one
U8 blob per (layer, shard, part, bits). Every tensor starts on a 4096-byte boundary and the file
ends on one (explicit `__pad__.N` tensors fill the gaps, since safetensors allows no holes), so a
runner reads blobs with direct IO in whole units of 4096 bytes; blobs of one bitwidth are
contiguous in load order. manifest.json records the model spec, every blob's offset, length,
layout and checksum (xxh3, 64 bits: `sticc.runtime.core.checksum`), and `store_id`: the sha256 of
the manifest's own canonical JSON. Format 2 (this one) changed the checksum from crc32; older stores
are refused with a line saying to re-shard.

A store is written into a temporary sibling directory and renamed into place at the end, so an
interrupted `sticc shard` never leaves a directory that loads as a store.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import torch
from pydantic import Field

from sticc.base.errors import UserError
from sticc.base.jsonfile import replace_dir
from sticc.base.schema import (
    PARTS,
    STORED_BITS,
    STRICT,
    Checksum64,
    Count,
    Name,
    Offset,
    Part,
    PositiveCount,
    Sha256,
    StoredBits,
    loose_json,
    parse_json,
    read_bytes,
    with_config,
)
from sticc.model.activation_stats import checkpoint_tokenizer, piece_stats
from sticc.model.quant import QUANTIZER_NAME, encode_piece
from sticc.model.sentence import SentencePipelineRecord
from sticc.model.sharding import (
    block_weights,
    check_lm_head_shards,
    check_shards_per_layer,
    default_lm_head_shards,
    default_shards_per_layer,
    global_header,
    global_header_vectors,
    layer_header,
    layer_header_vectors,
    layer_pieces,
    lm_head_pieces,
    piece_shape,
    stored_parts,
)
from sticc.model.source import Source, open_source
from sticc.model.spec import ModelSpec
from sticc.model.texts import CALIBRATION_SENTENCES
from sticc.runtime.core import (
    READ_ALIGN_BYTES,
    STORE_FORMAT_VERSION,
    BlobLayout,
    Extent,
    align_up,
    blob_layout,
    checksum,
)
from sticc.runtime.sentence import truncation_length

DATA_FILE = "weights.safetensors"
ALIGNMENT_BYTES = READ_ALIGN_BYTES  # runners read blobs in whole units of this (direct IO)
DEFAULT_BITS = (2, 3, 4, 5, 6, 8, 16, 32)
SUPPORTED_BITS = frozenset(STORED_BITS)
DEFAULT_GROUP_SIZE = 64


def extent_json(extent: Extent) -> dict:
    return {"offset": extent.offset, "nbytes": extent.nbytes, "checksum": extent.checksum}


@dataclass(frozen=True)
class VersionKey:
    layer: int
    index: int
    part: str
    bits: int

    def describe(self) -> str:
        return f"layer {self.layer} shard {self.index} {self.part} @{self.bits}b"


@dataclass(frozen=True)
class Version:
    """One stored piece version: where it is and how its bytes are laid out."""

    key: VersionKey
    extent: Extent
    layout: BlobLayout


@dataclass(frozen=True)
class RowTableEntry:
    """A row-addressable fp32 table and the extent of its per-row checksum table (uint64)."""

    offset: int
    rows: int
    row_nbytes: int
    checksum_table: Extent


# ----------------------------------------------------------------------------------------------
# manifest.json
# ----------------------------------------------------------------------------------------------


@with_config(STRICT)
@dataclass(frozen=True)
class ExtentRecord:
    offset: Offset
    nbytes: Count
    checksum: Checksum64

    def extent(self) -> Extent:
        return Extent(self.offset, self.nbytes, self.checksum)


@with_config(STRICT)
@dataclass(frozen=True)
class RowTableRecord:
    offset: Offset
    rows: PositiveCount
    row_nbytes: PositiveCount
    checksum_table: ExtentRecord

    def entry(self) -> RowTableEntry:
        return RowTableEntry(self.offset, self.rows, self.row_nbytes, self.checksum_table.extent())


@with_config(STRICT)
@dataclass(frozen=True)
class LayoutRecord:
    rows: PositiveCount
    cols: PositiveCount
    group_size: Count
    bias_len: Count

    def blob(self, bits: int) -> BlobLayout:
        try:
            return blob_layout(self.rows, self.cols, bits, self.group_size, self.bias_len)
        except (ValueError, ZeroDivisionError) as error:
            raise UserError(f"a version's layout is impossible: {error}") from None


@with_config(STRICT)
@dataclass(frozen=True)
class VersionRecord:
    layer: Count
    index: Count
    part: Part
    bits: StoredBits
    offset: Offset
    nbytes: Count
    checksum: Checksum64
    layout: LayoutRecord


@with_config(STRICT)
@dataclass(frozen=True)
class QuantizerRecord:
    method: Name
    group_size: Annotated[int, Field(ge=8, le=1 << 20)]
    calibration: Name = ""


@with_config(STRICT)
@dataclass(frozen=True)
class SourceRecord:
    model_dir: Name | None = None


@with_config(STRICT)
@dataclass(frozen=True)
class Manifest:
    """manifest.json: the model spec, where every blob is and how it is laid out, and the
    store's id (the sha256 of the rest)."""

    format: Literal["sticc-store"]
    format_version: Literal[STORE_FORMAT_VERSION]
    data_file: Literal[DATA_FILE]
    alignment_bytes: Literal[ALIGNMENT_BYTES]
    spec: ModelSpec
    shards_per_layer: PositiveCount
    bits: Annotated[list[StoredBits], Field(min_length=1)]
    quantizer: QuantizerRecord
    source: SourceRecord
    tokenizer: Literal["tokenizer.json"] | None
    global_header: ExtentRecord
    layer_headers: list[ExtentRecord]
    word_embeddings: RowTableRecord
    position_embeddings: RowTableRecord | None  # None: rotary positions
    versions: list[VersionRecord]
    store_id: Sha256
    lm_head_shards: PositiveCount | None = None  # decoders: the LM head's vocabulary slices
    sentence_pipeline: SentencePipelineRecord | None = None  # the checkpoint's sentence-transformers modules


@dataclass(frozen=True)
class Store:
    """An opened store (manifest only; data is read by runners and `verify`)."""

    path: Path
    store_id: str
    spec: ModelSpec
    shards_per_layer: int
    bits: tuple[int, ...]
    group_size: int
    quantizer: str
    global_header: Extent
    layer_headers: tuple[Extent, ...]
    word_embeddings: RowTableEntry
    position_embeddings: RowTableEntry | None  # None: rotary positions
    versions: dict[VersionKey, Version]
    has_tokenizer: bool
    source_dir: Path | None = None  # the checkpoint (directory or GGUF file) the store was sharded from
    lm_head_shards: int = 0  # decoders: the LM head's vocabulary slices, stored as pieces of layer `layers`
    sentence_pipeline: SentencePipelineRecord | None = None  # None: the bare pipeline (sticc.runtime.sentence)

    @property
    def data_path(self) -> Path:
        return self.path / DATA_FILE

    @property
    def text_tokens(self) -> int:
        """Tokens an encoder's runner cuts a text to (the pipeline's `max_seq_length`, within the
        model's positions): the longest input a call sees."""
        spec = self.spec
        wanted = self.sentence_pipeline.max_seq_length if self.sentence_pipeline else None
        return truncation_length(spec.max_positions, spec.position_kind, spec.pad_token_id, wanted)

    def version(self, layer: int, index: int, part: str, bits: int) -> Version:
        return self.versions[VersionKey(layer, index, part, bits)]

    @classmethod
    def open(cls, path: str | Path) -> Store:
        """The store at `path`, its manifest validated (`Manifest`) and checked against itself:
        every version present with the layout its spec implies, every extent inside the data file."""
        path = Path(path)
        manifest_path = path / "manifest.json"
        if not path.is_dir():
            raise UserError(f"store {path} does not exist")
        raw = read_bytes(manifest_path, f"{path} is not a sticc store (no manifest.json)")
        loose = loose_json(raw, str(manifest_path))
        if isinstance(loose, dict) and loose.get("format") == "sticc-store" and loose.get("format_version") != STORE_FORMAT_VERSION:
            raise UserError(
                f"{path} is a store of format {loose.get('format_version')!r}, this sticc reads format "
                f"{STORE_FORMAT_VERSION}: re-shard the model with `sticc shard`"
            )
        manifest = parse_json(Manifest, raw, str(manifest_path))
        if manifest_id(loose) != manifest.store_id:
            raise UserError(f"{manifest_path} was modified after the store was written (store id mismatch)")
        return cls._from_manifest(path, manifest)

    @classmethod
    def _from_manifest(cls, path: Path, manifest: Manifest) -> Store:
        where = f"{path}/manifest.json"
        spec = manifest.spec
        check_shards_per_layer(spec, manifest.shards_per_layer)
        group_size = manifest.quantizer.group_size
        versions: dict[VersionKey, Version] = {}
        for entry in manifest.versions:
            key = VersionKey(entry.layer, entry.index, entry.part, entry.bits)
            if key in versions:
                raise UserError(f"{where}: {key.describe()} appears twice")
            versions[key] = Version(key, Extent(entry.offset, entry.nbytes, entry.checksum), entry.layout.blob(entry.bits))
        lm_head_shards = manifest.lm_head_shards or 0
        if spec.is_decoder != bool(lm_head_shards):
            raise UserError(f"{where}: a {'decoder needs' if spec.is_decoder else 'model without an LM head has no'} lm_head_shards")
        if lm_head_shards:
            check_lm_head_shards(spec, lm_head_shards)
        expected = _expected_layouts(spec, manifest.bits, manifest.shards_per_layer, group_size, where, lm_head_shards)
        if set(versions) != set(expected):
            missing = sorted(set(expected) - set(versions), key=_key_order)
            extra = sorted(set(versions) - set(expected), key=_key_order)
            what = f"lacks {missing[0].describe()}" if missing else f"has an extra {extra[0].describe()}"
            raise UserError(f"{where}: {what} (versions must cover layers x shards x parts x bits)")
        for key, version in versions.items():
            if version.layout != expected[key] or version.extent.nbytes != version.layout.nbytes:
                raise UserError(f"{where}: {key.describe()} has a layout its spec does not imply")
        headers = (manifest.global_header.extent(), *(e.extent() for e in manifest.layer_headers))
        if (manifest.position_embeddings is None) != (spec.position_rows == 0):
            raise UserError(f"{where}: a position table where the spec has {'none' if not spec.position_rows else 'one'}")
        tables = (manifest.word_embeddings.entry(), *([manifest.position_embeddings.entry()] if manifest.position_embeddings else []))
        hidden_nbytes = 4 * spec.hidden
        if len(manifest.layer_headers) != spec.layers:
            raise UserError(f"{where}: {len(manifest.layer_headers)} layer headers for {spec.layers} layers")
        if headers[0].nbytes != global_header_nbytes(spec) or any(h.nbytes != layer_header_nbytes(spec) for h in headers[1:]):
            raise UserError(f"{where}: a header's size is not the one its spec implies")
        for table, rows in zip(tables, (spec.vocab, spec.position_rows)[: len(tables)], strict=True):
            if table.rows != rows or table.row_nbytes != hidden_nbytes or table.checksum_table.nbytes != 8 * rows:
                raise UserError(f"{where}: an embedding table's shape is not the one its spec implies")
        extents = [*headers, *(v.extent for v in versions.values())]
        extents += [e for t in tables for e in (t.checksum_table, Extent(t.offset, t.rows * t.row_nbytes, 0))]
        data_path = path / DATA_FILE
        try:
            size = data_path.stat().st_size
        except OSError:
            raise UserError(f"{path} has no data file {DATA_FILE}: the store is incomplete") from None
        for extent in extents:
            if extent.offset % ALIGNMENT_BYTES or extent.offset + extent.nbytes > size:
                raise UserError(f"{where}: an extent at {extent.offset} is misaligned or beyond the data file's {size} bytes")
        return cls(
            path=path, store_id=manifest.store_id, spec=spec, shards_per_layer=manifest.shards_per_layer,
            bits=tuple(sorted(manifest.bits)), group_size=group_size, quantizer=manifest.quantizer.method,
            global_header=headers[0], layer_headers=headers[1:], word_embeddings=tables[0],
            position_embeddings=tables[1] if len(tables) > 1 else None, versions=versions,
            has_tokenizer=manifest.tokenizer is not None,
            source_dir=Path(manifest.source.model_dir) if manifest.source.model_dir else None, lm_head_shards=lm_head_shards,
            sentence_pipeline=manifest.sentence_pipeline,
        )


def _key_order(key: VersionKey) -> tuple:
    return (key.layer, key.index, key.part, key.bits)


def piece_positions(spec: ModelSpec, shards_per_layer: int, lm_head_shards: int) -> list[tuple[int, int, Part]]:
    """(layer, index, part) of every piece a store holds, in load order: each layer's attention and
    FFN pieces, then a decoder's LM head slices (as pieces of layer `spec.layers`)."""
    positions = [(layer, index, part) for layer in range(spec.layers) for part in PARTS for index in range(shards_per_layer)]
    return positions + [(spec.layers, index, Part.LM_HEAD) for index in range(lm_head_shards)]


def _expected_layouts(
    spec: ModelSpec, bits, shards_per_layer: int, group_size: int, where: str, lm_head_shards: int = 0,
) -> dict[VersionKey, BlobLayout]:
    """The layout of every version a store of this spec holds."""
    by_part = {}
    for part in stored_parts(lm_head_shards):
        shape = piece_shape(spec, shards_per_layer, part, lm_head_shards)
        for b in bits:
            try:
                by_part[part, b] = blob_layout(shape.rows, shape.cols, b, group_size, shape.bias_len)
                if b < 16 and block_weights(spec, shards_per_layer, part, lm_head_shards) % group_size:
                    raise ValueError("groups straddle blocks")
            except (ValueError, ZeroDivisionError):
                raise UserError(f"{where}: group_size {group_size} does not split a {part} piece's blocks at {b} bits") from None
    return {
        VersionKey(layer, index, part, b): by_part[part, b]
        for layer, index, part in piece_positions(spec, shards_per_layer, lm_head_shards) for b in bits
    }


def global_header_nbytes(spec: ModelSpec) -> int:
    return 4 * (len(global_header_vectors(spec)) * spec.hidden + spec.type_vocab * spec.hidden)


def layer_header_nbytes(spec: ModelSpec) -> int:
    return 4 * len(layer_header_vectors(spec)) * spec.hidden


def manifest_id(manifest: dict) -> str:
    """sha256 of the manifest's canonical JSON without its `store_id`."""
    body = {k: v for k, v in manifest.items() if k != "store_id"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Slot:
    """One tensor of the data file: its safetensors entry and its absolute offset."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int
    offset: int  # absolute, in the data file


def _parse_bits(bits: tuple[int, ...]) -> tuple[int, ...]:
    unsupported = sorted(set(bits) - SUPPORTED_BITS)
    if unsupported or not bits:
        raise UserError(f"unsupported bitwidths {unsupported}: choose from 2-8, 16, 32")
    return tuple(sorted(set(bits)))


def write_store(
    model_dir: str | Path,
    out: str | Path,
    bits: tuple[int, ...] = DEFAULT_BITS,
    shards_per_layer: int | None = None,
    group_size: int = DEFAULT_GROUP_SIZE,
    progress: Callable[[Iterator, int, str], Iterator] = lambda it, total, what: it,
    with_sentence_pipeline: bool = True,
) -> Store:
    """Shard, quantize and store the checkpoint at `model_dir` (an HF directory or a GGUF file)
    into the store directory `out`, with its sentence-transformers pipeline unless
    `with_sentence_pipeline` is false (`sticc.model.sentence`)."""
    checkpoint = open_source(model_dir)
    spec = checkpoint.spec
    pipeline = checkpoint.sentence_pipeline() if with_sentence_pipeline else None
    bits = _parse_bits(bits)
    shards_per_layer = default_shards_per_layer(spec) if shards_per_layer is None else shards_per_layer
    check_shards_per_layer(spec, shards_per_layer)
    lm_head_shards = default_lm_head_shards(spec, shards_per_layer) if spec.is_decoder else 0
    for part in stored_parts(lm_head_shards):
        # runners dequantize a piece block by block (its q, k, v, o or up, down rows): groups must not straddle blocks
        block = block_weights(spec, shards_per_layer, part, lm_head_shards)
        if block % group_size or group_size % 8:
            raise UserError(f"group size {group_size} must be a multiple of 8 dividing each piece block's {block} weights")
    extra_files = checkpoint.extra_files()
    checkpoint_tokenizer(checkpoint, extra_files)  # one its runner could not read is refused before any work
    out = Path(out)
    if out.exists() and not (out / "manifest.json").exists() and any(out.iterdir()):
        raise UserError(f"{out} exists and is not a sticc store; refusing to overwrite it")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    staging.chmod(0o755)
    try:
        manifest = _write_data(checkpoint, staging, bits, shards_per_layer, lm_head_shards, group_size, progress)
        for name, data in sorted(extra_files.items()):
            _write_synced(staging / name, data)
        if "tokenizer.json" in extra_files:
            manifest["tokenizer"] = "tokenizer.json"
        if pipeline is not None:
            manifest["sentence_pipeline"] = asdict(pipeline)
        manifest["store_id"] = manifest_id(manifest)
        _write_synced(staging / "manifest.json", json.dumps(manifest, indent=1, sort_keys=True).encode())
        _replace_dir(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Store.open(out)


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _replace_dir(staging: Path, out: Path) -> None:
    """Move the finished store (every file fsynced) into place; an old store at `out` is swapped
    out in one atomic step where the platform allows (`sticc.base.jsonfile.replace_dir`), then removed."""
    replace_dir(staging, out)


def _plan_slots(spec: ModelSpec, bits: tuple[int, ...], shards_per_layer: int, lm_head_shards: int, group_size: int):
    """Every tensor of the data file with its size, in file order, before any data is computed."""
    hidden = spec.hidden
    entries: list[tuple[str, str, tuple[int, ...], int]] = []
    entries.append(("header.global", "U8", (global_header_nbytes(spec),), 0))
    for layer in range(spec.layers):
        entries.append((f"header.layer.{layer}", "U8", (layer_header_nbytes(spec),), 0))
    tables = [("word", spec.vocab)] + ([("position", spec.position_rows)] if spec.position_rows else [])
    entries += [(f"embed.{table}.checksum", "U64", (rows,), 0) for table, rows in tables]
    entries += [(f"embed.{table}", "F32", (rows, hidden), 0) for table, rows in tables]
    layouts: dict[VersionKey, BlobLayout] = {}
    shapes = {part: piece_shape(spec, shards_per_layer, part, lm_head_shards) for part in stored_parts(lm_head_shards)}
    # one bitwidth's blobs contiguous, in load order: a uniform plan reads the file front to back
    for b in bits:
        for layer, index, part in piece_positions(spec, shards_per_layer, lm_head_shards):
            shape = shapes[part]
            key = VersionKey(layer, index, part, b)
            layouts[key] = blob_layout(shape.rows, shape.cols, b, group_size, shape.bias_len)
            entries.append((f"shard.{layer}.{index}.{part}.{b}", "U8", (layouts[key].nbytes,), 0))
    itemsize = {"U8": 1, "U64": 8, "F32": 4}
    # safetensors: tensors must tile the data buffer; pad tensors align each to ALIGNMENT_BYTES
    tiled: list[tuple[str, str, tuple[int, ...], int]] = []
    cursor = 0
    for pad_index, (name, dtype, shape, _) in enumerate(entries):
        gap = -cursor % ALIGNMENT_BYTES
        if gap:
            tiled.append((f"__pad__.{pad_index}", "U8", (gap,), cursor))
            cursor += gap
        nbytes = int(np.prod(shape)) * itemsize[dtype]
        tiled.append((name, dtype, shape, cursor))
        cursor += nbytes
    # and the file ends on a whole unit: a direct read of the last blob's slot reads it all
    if -cursor % ALIGNMENT_BYTES:
        tiled.append((f"__pad__.{len(entries)}", "U8", (-cursor % ALIGNMENT_BYTES,), cursor))
        cursor = align_up(cursor, ALIGNMENT_BYTES)
    header = {"__metadata__": {"format": "sticc-store"}}
    for name, dtype, shape, start in tiled:
        nbytes = int(np.prod(shape)) * itemsize[dtype]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [start, start + nbytes]}
    header_bytes = json.dumps(header, separators=(",", ":")).encode()
    header_bytes += b" " * (-(8 + len(header_bytes)) % ALIGNMENT_BYTES)
    base = 8 + len(header_bytes)
    slots = {
        name: _Slot(name, dtype, shape, int(np.prod(shape)) * itemsize[dtype], base + start)
        for name, dtype, shape, start in tiled
    }
    return header_bytes, slots, layouts, base + cursor


def _write_data(checkpoint: Source, staging: Path, bits, shards_per_layer, lm_head_shards, group_size, progress) -> dict:
    spec = checkpoint.spec
    header_bytes, slots, layouts, total_nbytes = _plan_slots(spec, bits, shards_per_layer, lm_head_shards, group_size)
    path = staging / DATA_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, total_nbytes)
        os.pwrite(fd, len(header_bytes).to_bytes(8, "little") + header_bytes, 0)

        def put(name: str, data: bytes) -> Extent:
            slot = slots[name]
            assert len(data) == slot.nbytes, name
            os.pwrite(fd, data, slot.offset)
            return Extent(slot.offset, slot.nbytes, checksum(data))

        manifest: dict = {
            "format": "sticc-store", "format_version": STORE_FORMAT_VERSION, "data_file": DATA_FILE,
            "alignment_bytes": ALIGNMENT_BYTES, "spec": spec.to_json(), "shards_per_layer": shards_per_layer,
            "bits": list(bits), "quantizer": {"method": QUANTIZER_NAME, "group_size": group_size, "calibration": f"{len(CALIBRATION_SENTENCES)} built-in sentences"},
            "source": {"model_dir": str(Path(checkpoint.source_path).resolve())}, "tokenizer": None,
            "position_embeddings": None,
        }
        if lm_head_shards:
            manifest["lm_head_shards"] = lm_head_shards
        manifest["global_header"] = extent_json(put("header.global", _f32_bytes(global_header(checkpoint))))
        manifest["layer_headers"] = [
            extent_json(put(f"header.layer.{layer}", _f32_bytes(layer_header(checkpoint, layer))))
            for layer in range(spec.layers)
        ]
        for table, role in (("word", "embed.word"), ("position", "embed.position"))[: 2 if spec.position_rows else 1]:
            rows = checkpoint.tensor(role).contiguous()
            raw = rows.numpy().view(np.uint8).reshape(rows.shape[0], -1)
            sums = np.array([checksum(row) for row in raw], dtype=np.uint64)
            sums_extent = put(f"embed.{table}.checksum", sums.tobytes())
            data_extent = put(f"embed.{table}", raw.tobytes())
            manifest[f"{table}_embeddings"] = {
                "offset": data_extent.offset, "rows": rows.shape[0], "row_nbytes": raw.shape[1],
                "checksum_table": extent_json(sums_extent),
            }
        versions = []
        # input statistics of every piece from a calibration pass: the quantizer minimizes the
        # error of each piece's output, not of its weights (docs/quantization.md)
        stats = piece_stats(checkpoint, shards_per_layer, lm_head_shards=lm_head_shards) if any(b < 16 for b in bits) else {}
        steps = spec.layers + (1 if lm_head_shards else 0)
        for layer in progress(iter(range(steps)), steps, "quantizing layers"):
            if layer < spec.layers:
                pieces = layer_pieces(checkpoint, layer, shards_per_layer)
            else:
                pieces = {(index, Part.LM_HEAD): piece for index, piece in lm_head_pieces(checkpoint, lm_head_shards).items()}
            for (index, part), (matrix, bias) in sorted(pieces.items()):
                for b in bits:
                    layout, blob = encode_piece(matrix, bias, b, group_size, stats=stats.get((layer, index, part)))
                    assert layout == layouts[VersionKey(layer, index, part, b)]
                    extent = put(f"shard.{layer}.{index}.{part}.{b}", blob)
                    versions.append({
                        "layer": layer, "index": index, "part": part, "bits": b, **extent_json(extent),
                        "layout": {"rows": layout.rows, "cols": layout.cols, "group_size": group_size, "bias_len": layout.bias_len},
                    })
        manifest["versions"] = sorted(versions, key=lambda v: (v["layer"], v["index"], v["part"], v["bits"]))
        os.fsync(fd)
    finally:
        os.close(fd)
    return manifest


def _f32_bytes(tensor: torch.Tensor) -> bytes:
    return tensor.to(torch.float32).contiguous().numpy().tobytes()


# ----------------------------------------------------------------------------------------------
# Verifying
# ----------------------------------------------------------------------------------------------


def verify_store(store: Store, progress: Callable[[Iterator, int, str], Iterator] = lambda it, total, what: it) -> list[str]:
    """Check every blob, header and embedding row against its checksum; return the problems found."""
    problems: list[str] = []
    try:
        size = store.data_path.stat().st_size
    except FileNotFoundError:
        return [f"{store.data_path} is missing"]
    with open(store.data_path, "rb") as handle:

        def read(offset: int, nbytes: int) -> bytes:
            handle.seek(offset)
            return handle.read(nbytes)

        def check(extent: Extent, what: str) -> None:
            if extent.offset + extent.nbytes > size:
                problems.append(f"{what}: data file is truncated")
            elif checksum(read(extent.offset, extent.nbytes)) != extent.checksum:
                problems.append(f"{what}: checksum mismatch")

        check(store.global_header, "global header")
        for layer, extent in enumerate(store.layer_headers):
            check(extent, f"layer {layer} header")
        for name, table in (("word embedding", store.word_embeddings), ("position embedding", store.position_embeddings)):
            if table is None:
                continue
            check(table.checksum_table, f"{name} checksum table")
            nbytes = table.rows * table.row_nbytes
            if table.offset + nbytes > size:
                problems.append(f"{name} table: data file is truncated")
                continue
            sums = np.frombuffer(read(table.checksum_table.offset, table.checksum_table.nbytes), dtype=np.uint64)
            rows = np.frombuffer(read(table.offset, nbytes), dtype=np.uint8).reshape(table.rows, -1)
            for row in range(table.rows):
                if checksum(rows[row]) != int(sums[row]):
                    problems.append(f"{name} row {row}: checksum mismatch")
        for version in progress(iter(sorted(store.versions.values(), key=lambda v: v.extent.offset)), len(store.versions), "verifying shards"):
            check(version.extent, version.key.describe())
    return problems
