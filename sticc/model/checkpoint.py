"""Reading an HF checkpoint directory: config.json + safetensors (single file or index). Never pickle."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from sticc.base.errors import UserError
from sticc.base.schema import OPEN, Name, parse_json, read_bytes, read_file, with_config
from sticc.model.families import ConfigHead, Family, TensorRef, family_for, role_shapes
from sticc.model.sentence import SentencePipelineRecord, sentence_pipeline
from sticc.model.spec import ModelSpec, TokenId, token_ids


@dataclass(frozen=True)
class Checkpoint:
    """An opened checkpoint: its spec, its family adapter, and where each tensor lives."""

    model_dir: Path
    spec: ModelSpec
    family: Family
    prefix: str
    files: dict[str, Path]  # tensor name -> safetensors file

    @classmethod
    def open(cls, model_dir: str | Path) -> Checkpoint:
        model_dir = Path(model_dir)
        if not model_dir.is_dir():
            raise UserError(f"model directory {model_dir} does not exist")
        config_path = model_dir / "config.json"
        raw = read_bytes(config_path, f"{model_dir} has no config.json")
        head = parse_json(ConfigHead, raw, str(config_path))
        family = family_for(head)
        name = head.name_or_path or model_dir.name
        spec = family.spec_from_config(parse_json(family.config_kind, raw, str(config_path)), name)
        generation_path = model_dir / "generation_config.json"
        if spec.is_decoder and generation_path.exists():  # where instruct models name their end-of-turn tokens
            eos = token_ids(read_file(GenerationConfig, generation_path, "generation config").eos_token_id)
            spec = replace(spec, eos_token_ids=tuple(dict.fromkeys((*spec.eos_token_ids, *eos))))
        files = _tensor_files(model_dir)
        prefix = _detect_prefix(family, spec, files)
        checkpoint = cls(model_dir, spec, family, prefix, files)
        checkpoint._check_shapes()
        return checkpoint

    @property
    def source_path(self) -> Path:
        return self.model_dir

    def _ref(self, role: str, layer: int | None) -> TensorRef:
        return self.family.ref(self.spec, role, layer)

    def tensor(self, role: str, layer: int | None = None) -> torch.Tensor:
        """The fp32 tensor playing canonical `role` (of `layer` for per-layer roles), Linear layout."""
        ref = self._ref(role, layer)
        name = self.prefix + ref.name
        if name not in self.files:
            raise UserError(f"checkpoint has no tensor {name!r}")
        try:
            with safe_open(self.files[name], framework="pt") as handle:
                tensor = handle.get_tensor(name).to(torch.float32)
        except (SafetensorError, OSError) as error:  # corrupt data
            raise UserError(f"cannot read tensor {name!r} from {self.files[name].name}: {error}") from None
        if not bool(torch.isfinite(tensor).all()):
            raise UserError(f"tensor {name!r} in {self.files[name].name} holds NaN or infinite values")
        if ref.transpose:
            tensor = tensor.T
        if ref.rows is not None:
            tensor = tensor[ref.rows[0] : ref.rows[1]]
        return tensor.contiguous()

    def extra_files(self) -> dict[str, bytes]:
        """Files the store keeps beside the data: the source's config.json and tokenizer.json (if any)."""
        files = {"source_config.json": (self.model_dir / "config.json").read_bytes()}
        tokenizer = self.model_dir / "tokenizer.json"
        if tokenizer.exists():
            files["tokenizer.json"] = tokenizer.read_bytes()
        return files

    def sentence_pipeline(self) -> SentencePipelineRecord | None:
        """The checkpoint's sentence-transformers pipeline (encoders; None without modules.json)."""
        return None if self.spec.is_decoder else sentence_pipeline(self.model_dir, self.spec)

    def _check_shapes(self) -> None:
        with_shapes = self._shapes()
        for (role, layer), shape in role_shapes(self.spec):
            ref = self._ref(role, layer)
            name = self.prefix + ref.name
            if name not in with_shapes:
                raise UserError(f"checkpoint is missing tensor {name!r}")
            stored = tuple(with_shapes[name])
            oriented = tuple(reversed(stored)) if ref.transpose else stored
            if len(stored) != len(shape) or ref.shape(stored) != shape or (ref.rows is not None and oriented[0] < ref.rows[1]):
                raise UserError(f"tensor {name!r} has shape {stored}, config implies {shape}")

    def _shapes(self) -> dict[str, list[int]]:
        shapes: dict[str, list[int]] = {}
        for path in sorted(set(self.files.values())):
            shapes.update(_header(path))
        return shapes


def _header(path: Path) -> dict[str, list[int]]:
    """Tensor shapes from a safetensors header, validating the file's structure and length."""
    try:
        with safe_open(path, framework="pt") as handle:
            return {name: list(handle.get_slice(name).get_shape()) for name in handle.keys()}  # noqa: SIM118 - safe_open is not a mapping
    except (SafetensorError, OSError) as error:  # truncated or malformed
        raise UserError(f"{path.name} is not a valid safetensors file (truncated or malformed): {error}") from None


@with_config(OPEN)
@dataclass(frozen=True)
class GenerationConfig:
    """generation_config.json: the end-of-sequence tokens generation stops at (the rest is ignored)."""

    eos_token_id: TokenId | list[TokenId] | None = None


@with_config(OPEN)
@dataclass(frozen=True)
class SafetensorsIndex:
    """model.safetensors.index.json: which file holds each tensor (its metadata is ignored)."""

    weight_map: dict[Name, Name]


def _tensor_files(model_dir: Path) -> dict[str, Path]:
    single = model_dir / "model.safetensors"
    index = model_dir / "model.safetensors.index.json"
    if single.exists():
        return {name: single for name in _header(single)}
    if index.exists():
        files = {}
        for name, file_name in read_file(SafetensorsIndex, index, "checkpoint index").weight_map.items():
            path = (model_dir / str(file_name)).resolve()
            if path.parent != model_dir.resolve() or not path.exists():
                raise UserError(f"{index.name} names a missing or outside shard file {file_name!r}")
            files[name] = path
        return files
    if any(model_dir.glob("*.bin")) or any(model_dir.glob("*.pt")):
        raise UserError(f"{model_dir} holds only pickle checkpoints (.bin/.pt); sticc reads safetensors only, never pickle")
    raise UserError(f"{model_dir} has no model.safetensors")


def _detect_prefix(family: Family, spec: ModelSpec, files: dict[str, Path]) -> str:
    probe = family.ref(spec, "embed.word", None).name
    for prefix in family.prefixes:
        if prefix + probe in files:
            return prefix
    raise UserError(f"checkpoint has no {probe!r} under any known prefix for {family.name}")
