"""Reading a checkpoint's sentence-transformers pipeline at shard time.

A sentence-transformers checkpoint lists its modules in `modules.json`: a Transformer (the
checkpoint directory itself, configured by `sentence_bert_config.json`), a Pooling module (its
`config.json` in the module's folder: the legacy `pooling_mode_*` booleans or the newer
`pooling_mode`, and `include_prompt`) and optionally a Normalize module. Named prompts come from
`config_sentence_transformers.json`. `sentence_pipeline` reads them into one
`SentencePipelineRecord`, which the store's manifest records and every runner applies
(`sticc.runtime.sentence`).

A checkpoint without `modules.json` has no pipeline: its runners keep the bare behaviour (mean
pooling, no normalization, truncation at the model's positions). A pipeline sticc cannot run
exactly (a Dense layer, a module it does not know, the Transformer in a subfolder) is refused with
one line: embeddings that silently differ from sentence-transformers' would be worse. Every file
is untrusted: validated strictly, and module folders must lie inside the checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from sticc.base.errors import UserError
from sticc.base.schema import OPEN, STRICT, Name, parse_json, read_bytes, with_config
from sticc.model.spec import ModelSpec
from sticc.runtime.sentence import POOLING_MODES, SentencePipeline

PoolingMode = Literal["cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken"]
SeqLength = Annotated[int, Field(ge=1, le=1 << 20)]
# the legacy Pooling config's booleans, in the order sentence-transformers concatenates the modes
LEGACY_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
assert tuple(LEGACY_POOLING_KEYS.values()) == POOLING_MODES


@with_config(STRICT)
@dataclass(frozen=True)
class SentencePipelineRecord:
    """manifest.json's `sentence_pipeline`: what the checkpoint's sentence-transformers modules do."""

    max_seq_length: SeqLength | None  # None: the model's positions
    do_lower_case: bool
    pooling: Annotated[list[PoolingMode], Field(min_length=1, max_length=len(POOLING_MODES))]
    include_prompt: bool
    normalize: bool
    prompts: dict[Name, Name] = field(default_factory=dict)
    default_prompt_name: Name | None = None

    def __post_init__(self) -> None:
        if len(set(self.pooling)) != len(self.pooling):
            raise UserError("sentence_pipeline.pooling: a mode appears twice")
        if self.default_prompt_name is not None and self.default_prompt_name not in self.prompts:
            raise UserError(f"sentence_pipeline: the default prompt {self.default_prompt_name!r} is not one of the prompts")

    def runtime(self) -> SentencePipeline:
        """The runner's literal form."""
        return SentencePipeline(
            max_seq_length=self.max_seq_length, do_lower_case=self.do_lower_case, pooling=tuple(self.pooling),
            include_prompt=self.include_prompt, normalize=self.normalize,
            prompts=tuple(sorted(self.prompts.items())), default_prompt_name=self.default_prompt_name,
        )

    def describe(self) -> str:
        """One line for reports: pooling, normalization, truncation."""
        parts = ["+".join(self.pooling) + " pooling"]
        if not self.include_prompt:
            parts.append("prompt excluded")
        parts.append("normalized" if self.normalize else "not normalized")
        parts.append(f"truncated at {self.max_seq_length} tokens" if self.max_seq_length else "truncated at the model's positions")
        return ", ".join(parts)


# ----------------------------------------------------------------------------------------------
# The checkpoint's files (only the keys sticc uses; the rest is ignored)
# ----------------------------------------------------------------------------------------------


@with_config(OPEN)
@dataclass(frozen=True)
class ModuleEntry:
    """One entry of modules.json."""

    path: Name
    type: Name
    name: Name = ""


@with_config(OPEN)
@dataclass(frozen=True)
class TransformerConfig:
    """sentence_bert_config.json."""

    max_seq_length: SeqLength | None = None
    do_lower_case: bool = False


@with_config(OPEN)
@dataclass(frozen=True)
class PoolingConfig:
    """A Pooling module's config.json, in either of sentence-transformers' forms."""

    word_embedding_dimension: SeqLength | None = None
    embedding_dimension: SeqLength | None = None
    pooling_mode: PoolingMode | list[PoolingMode] | None = None
    pooling_mode_cls_token: bool = False
    pooling_mode_max_tokens: bool = False
    pooling_mode_mean_tokens: bool = False
    pooling_mode_mean_sqrt_len_tokens: bool = False
    pooling_mode_weightedmean_tokens: bool = False
    pooling_mode_lasttoken: bool = False
    include_prompt: bool = True

    def modes(self) -> list[str]:
        """The modes, as sentence-transformers resolves them: `pooling_mode` if given, else the
        legacy booleans that are set, else mean."""
        if self.pooling_mode is not None:
            return [self.pooling_mode] if isinstance(self.pooling_mode, str) else list(self.pooling_mode)
        return [mode for key, mode in LEGACY_POOLING_KEYS.items() if getattr(self, key)] or ["mean"]


@with_config(OPEN)
@dataclass(frozen=True)
class NormalizeConfig:
    """A Normalize module's config.json (optional)."""

    module_input_name: Name = "sentence_embedding"


@with_config(OPEN)
@dataclass(frozen=True)
class ModelConfig:
    """config_sentence_transformers.json: the named prompts."""

    prompts: dict[Name, Name] = field(default_factory=dict)
    default_prompt_name: Name | None = None


@with_config(OPEN)
@dataclass(frozen=True)
class TokenizerConfig:
    """tokenizer_config.json: the length a text is truncated to when sentence_bert_config.json
    names none (sentence-transformers then takes the tokenizer's, within the model's positions)."""

    model_max_length: int | float | None = None


MODULE_KINDS = {"Transformer", "Pooling", "Normalize"}


def _kind(entry: ModuleEntry, where: str) -> str:
    """The module's class name, for sentence-transformers' own classes; UserError otherwise."""
    package, _, name = entry.type.rpartition(".")
    if not package.startswith("sentence_transformers") or name not in MODULE_KINDS:
        raise UserError(
            f"{where}: module {entry.name or entry.path!r} is {entry.type!r}, which sticc runners do not run "
            "(they run Transformer, Pooling and Normalize); shard with --no-sentence-pipeline to embed with the "
            "bare model (mean pooling)"
        )
    return name


def _module_dir(model_dir: Path, entry: ModuleEntry, where: str) -> Path:
    folder = (model_dir / entry.path).resolve()
    if folder != model_dir.resolve() and model_dir.resolve() not in folder.parents:
        raise UserError(f"{where}: module path {entry.path!r} lies outside the checkpoint")
    return folder


def sentence_pipeline(model_dir: Path, spec: ModelSpec) -> SentencePipelineRecord | None:
    """The checkpoint's sentence-transformers pipeline, or None without modules.json."""
    modules_path = model_dir / "modules.json"
    if not modules_path.exists():
        return None
    where = str(modules_path)
    entries = parse_json(list[ModuleEntry], read_bytes(modules_path, f"{where} cannot be read"), where)
    kinds = [_kind(entry, where) for entry in entries]
    if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        raise UserError(f"{where}: modules {' -> '.join(kinds) or 'none'}; sticc runs Transformer -> Pooling (-> Normalize)")
    if _module_dir(model_dir, entries[0], where) != model_dir.resolve():
        raise UserError(f"{where}: the Transformer lives in {entries[0].path!r}; shard that folder's checkpoint")
    transformer = _optional(TransformerConfig, model_dir / "sentence_bert_config.json")
    pooling_path = _module_dir(model_dir, entries[1], where) / "config.json"
    pooling = parse_json(PoolingConfig, read_bytes(pooling_path, f"{pooling_path} (the Pooling module's config) does not exist"), str(pooling_path))
    width = pooling.embedding_dimension or pooling.word_embedding_dimension
    if width is not None and width != spec.hidden:
        raise UserError(f"{pooling_path}: pools {width}-wide token embeddings, the model's are {spec.hidden}")
    if len(entries) == 3:
        normalize = _optional(NormalizeConfig, _module_dir(model_dir, entries[2], where) / "config.json")
        if normalize.module_input_name != "sentence_embedding":
            raise UserError(f"{where}: the Normalize module normalizes {normalize.module_input_name!r}; sticc runs sentence embeddings only")
    prompts = _optional(ModelConfig, model_dir / "config_sentence_transformers.json")
    return parse_json(SentencePipelineRecord, {
        "max_seq_length": transformer.max_seq_length or _tokenizer_length(model_dir),
        "do_lower_case": transformer.do_lower_case,
        "pooling": pooling.modes(),
        "include_prompt": pooling.include_prompt,
        "normalize": len(entries) == 3,
        "prompts": prompts.prompts,
        "default_prompt_name": prompts.default_prompt_name,
    }, f"{model_dir}'s sentence-transformers pipeline")


def _optional(kind: type, path: Path):
    """The file at `path` validated as `kind`, or `kind`'s defaults when there is none."""
    return parse_json(kind, read_bytes(path, ""), str(path)) if path.exists() else kind()


def _tokenizer_length(model_dir: Path) -> int | None:
    """tokenizer_config.json's `model_max_length` when it is a real length (tokenizers without
    one write a huge sentinel), else None: the model's positions."""
    length = _optional(TokenizerConfig, model_dir / "tokenizer_config.json").model_max_length
    return int(length) if length is not None and 1 <= length <= 1 << 20 else None
