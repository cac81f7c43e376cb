"""Validated file formats: one pydantic model per file kind, one line per bad input.

Every file sticc reads from a user (a checkpoint's config.json, a store's manifest.json, plan.json,
device.json, importance.json, the profile cache's entries) is declared once, as a frozen dataclass
whose field types carry their constraints, and read through `parse_json`, which validates the raw
bytes in pydantic's strict JSON mode: no coercion of "5" to 5 or of true to 1, no NaN or infinity,
no unknown keys unless the format allows them. The first problem becomes one `UserError` line that
names the file, the field and what was expected. The same models generate the JSON Schemas of the
docs (`sticc.cli.formats`, `docs/schemas/`), so docs and code cannot drift.

Why pydantic (v2) and not msgspec: both validate strictly and fast, but pydantic validates the
project's own frozen stdlib dataclasses in place (no second class per format), its errors carry the
JSON path and the offending value, and its JSON Schema output honours every constraint; it is also
the library a contributor most likely knows.

Two inputs are not validated records: a document read as written (`loose_json`: what a store id
hashes, a format version looked at before the format), and a tokenizer.json (`parse_tokenizer`:
the `tokenizers` package is its validator). Both go through the runtime's own readers
(`sticc.runtime.core.json_value`, `tokenizer_from_json`), so sticc and its runners refuse the same
files, and both refuse with one `UserError` line naming the file.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any, Final, TypeVar

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    with_config,
)

from sticc.base.errors import UserError
from sticc.runtime.core import StoreError, json_value, parse_quantity, tokenizer_from_json

T = TypeVar("T")

# a closed record: every key known, every type exact (JSON's own integers are accepted as floats)
STRICT: Final = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, frozen=True)
# an open record (an HF config.json): keys sticc does not use are allowed and ignored
OPEN: Final = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False, frozen=True)

# the largest count or byte size any format holds: 2**53, beyond which JSON numbers lose integers
MAX_COUNT: Final = 1 << 53

Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
PositiveCount = Annotated[int, Field(ge=1, le=MAX_COUNT)]
Offset = Annotated[int, Field(ge=0, le=MAX_COUNT)]
Checksum64 = Annotated[int, Field(ge=0, lt=1 << 64)]
# the ranges of measured figures: wide enough for any device, narrow enough that every cost the
# planner derives from them (products and sums over thousands of shards) stays a finite float
Seconds = Annotated[float, Field(ge=0, le=1e6, allow_inf_nan=False)]
PositiveSeconds = Annotated[float, Field(gt=0, le=1e6, allow_inf_nan=False)]
Rate = Annotated[float, Field(ge=1, le=1e15, allow_inf_nan=False)]  # bytes or weights per second
# an emulated flash bandwidth a runner caps its reads to: no slower than 1 MB/s (every runner call
# would take minutes), no faster than any memory bus
CapRate = Annotated[float, Field(ge=1e6, le=1e13, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0, le=1e9, allow_inf_nan=False)]
Positive = Annotated[float, Field(ge=1e-9, le=1e9, allow_inf_nan=False)]  # a scale or a ratio
Finite = Annotated[float, Field(ge=-1e18, le=1e18, allow_inf_nan=False)]
Elapsed = Annotated[float, Field(ge=0, allow_inf_nan=False)]  # a time sticc predicted: any finite length
Bits = Annotated[int, Field(ge=0, le=32)]  # 0: dropped
STORED_BITS: Final = (2, 3, 4, 5, 6, 7, 8, 16, 32)


def _stored_bits(bits: int) -> int:
    if bits not in STORED_BITS:
        raise ValueError(f"a bitwidth is one of {', '.join(map(str, STORED_BITS))}")
    return bits


# a bitwidth a store can hold (also as a JSON object's key, where it is written as a string)
StoredBits = Annotated[int, AfterValidator(_stored_bits), WithJsonSchema({"enum": list(STORED_BITS)})]
Percentile = Annotated[int, Field(ge=1, le=99)]
Threads = Annotated[int, Field(ge=1, le=1024)]
Name = Annotated[str, Field(max_length=4096)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
class Part(StrEnum):
    """A shard's two pieces: its heads' attention and its slice of the FFN (the names the runtime's
    blocks and the store's pieces go by); and a decoder's LM head slices (rows of the vocabulary),
    the pieces of the block after the last layer."""

    ATTN = "attn"
    FFN = "ffn"
    LM_HEAD = "lm_head"


PARTS: Final = (Part.ATTN, Part.FFN)  # the parts of every layer


def _adapter(kind: type) -> TypeAdapter:
    adapter = _ADAPTERS.get(kind)
    if adapter is None:
        adapter = _ADAPTERS[kind] = TypeAdapter(kind)
    return adapter


_ADAPTERS: dict[type, TypeAdapter] = {}


def _where(loc: tuple) -> str:
    path = ""
    for part in loc:
        if part == "[key]":
            path += " (a key)"
        elif isinstance(part, int):
            path += f"[{part}]"
        else:
            path += ("." if path else "") + str(part)
    return path or "the top level"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_MESSAGES: Final = {
    "unexpected_keyword_argument": "is not a known key",
    "extra_forbidden": "is not a known key",
    "missing": "is required",
    "missing_keyword_only_argument": "is required",
    "missing_argument": "is required",
    "dataclass_type": "must be a JSON object",
    "dict_type": "must be a JSON object",
    "list_type": "must be a JSON array",
}


def first_error(error: ValidationError) -> str:
    """The first problem of a validation error as '<field>: <what was expected> (got <value>)'."""
    errors = error.errors(include_url=False)
    first = errors[0]
    if not first["loc"] and first["type"] in ("dataclass_type", "dict_type"):
        return "must hold a JSON object"
    message = _MESSAGES.get(first["type"], first["msg"]).removeprefix("Value error, ")
    line = f"{_where(first['loc'])}: {message[:1].lower()}{message[1:]}"
    if first["type"] not in ("missing", "json_invalid") and not isinstance(first.get("input"), dict | list | type(None)):
        line += f" (got {_shown(first['input'])})"
    if len(errors) > 1:
        line += f"; {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''}"
    return line.replace("\n", " ")


def parse_json(kind: type[T], data: bytes | str | dict | list, where: str) -> T:
    """`data` (a file's bytes, or a JSON value) validated as `kind`; a `UserError` naming `where`,
    the field and what was expected otherwise."""
    try:
        raw = data if isinstance(data, bytes | str) else json.dumps(data)
    except RecursionError:  # a value read from a document nested almost as deep as json reads
        raise UserError(f"{where} is not valid JSON: nested too deeply") from None
    try:
        return _adapter(kind).validate_json(raw, strict=True)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        if first["type"] == "json_invalid":
            raise UserError(f"{where} is not valid JSON: {first['msg'].removeprefix('Invalid JSON: ')}") from None
        raise UserError(f"{where}: {first_error(error)}") from None
    except UserError as error:  # a record's own consistency check (its __post_init__)
        raise UserError(f"{where}: {error}") from None


def loose_json(data: bytes | str, where: str) -> Any:
    """The JSON value of `data` as written, not validated (Python's json module: `parse_json`
    validates); a `UserError` naming `where` for anything that is not JSON, a document nested too
    deeply to read included."""
    try:
        return json_value(data)
    except ValueError as error:  # UnicodeDecodeError and JSONDecodeError included
        raise UserError(f"{where} is not valid JSON: {error}") from None


def parse_tokenizer(data: bytes, where: str):
    """`data`, a tokenizer.json's bytes, as a `tokenizers.Tokenizer` set up as the file says; a
    `UserError` naming `where` for one the `tokenizers` package refuses."""
    try:
        return tokenizer_from_json(data, where)
    except StoreError as error:
        raise UserError(str(error)) from None


def read_bytes(path, missing: str) -> bytes:
    """The bytes of the file at `path`; a `UserError` saying `missing` when there is none, and
    one line for a directory or an unreadable file."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        raise UserError(missing) from None
    except IsADirectoryError:
        raise UserError(f"{path} is a directory, not a file") from None
    except OSError as error:
        raise UserError(f"{path} cannot be read: {error.strerror or error}") from None


def read_file(kind: type[T], path, what: str) -> T:
    """The file at `path` validated as `kind`; `what` names the file kind in the missing-file error."""
    return parse_json(kind, read_bytes(path, f"{what} {path} does not exist"), str(path))


def _quantity(unit: str):
    def parse(text: object) -> float:
        if not isinstance(text, str):
            raise ValueError(f"a quantity is text such as {_EXAMPLES[unit]}")
        return parse_quantity(text, unit)

    return parse


_EXAMPLES: Final = {"s": "40ms", "B": "2MB", "B/s": "200MB/s"}
# the quantities flags take, from text, with the ranges that make sense for each
QUANTITIES: Final = {
    "s": Annotated[float, BeforeValidator(_quantity("s")), Field(gt=0, le=1e6, allow_inf_nan=False)],
    "B": Annotated[float, BeforeValidator(_quantity("B")), Field(ge=1, le=float(1 << 50), allow_inf_nan=False)],
    "B/s": Annotated[float, BeforeValidator(_quantity("B/s")), Field(ge=1e6, le=1e13, allow_inf_nan=False)],
}


def parse_flag(kind, text: str, flag: str):
    """The value of the command-line flag `flag` given as `text`, validated as `kind`."""
    try:
        return _adapter(kind).validate_python(text)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        message = first["msg"].removeprefix("Value error, ")
        raise UserError(f"{flag} {text!r}: {message[:1].lower()}{message[1:]}") from None


def json_schema(kind: type, title: str) -> dict:
    """The JSON Schema of `kind` (docs/schemas/)."""
    schema = _adapter(kind).json_schema()
    schema["title"] = title
    return schema


__all__ = [
    "MAX_COUNT",
    "OPEN",
    "PARTS",
    "STRICT",
    "Bits",
    "Checksum64",
    "Count",
    "Finite",
    "Name",
    "NonNegative",
    "Offset",
    "Part",
    "Percentile",
    "Positive",
    "PositiveCount",
    "PositiveSeconds",
    "Rate",
    "Seconds",
    "Sha256",
    "StoredBits",
    "Threads",
    "first_error",
    "json_schema",
    "loose_json",
    "parse_json",
    "parse_tokenizer",
    "read_file",
    "with_config",
]
