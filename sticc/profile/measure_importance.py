"""Importance profiling: how much output fidelity every shard version loses, measured.

For every shard (layer, index) and every stored bitwidth, plus 0 (dropped), the encoder runs on
calibration text with only that shard changed and every other shard at the reference precision
(the store's 32-bit versions), and the loss is 1 - cosine(pooled reference output, pooled output),
averaged over the sentences. Then random whole plans are measured the same way and compared with
the additive model's prediction, the sum of their shards' losses (`ImportanceProfile.additivity`).
Schema, metric and measured figures: docs/importance-profile.md.

The forward pass is built from the store with the runner's own kernels (`sticc.runtime`): the
same dequantization, the same attention/FFN chunk kernels, the same residual-LayerNorm join, the
same embedding rows. How it stays fast:
- the reference hidden state entering each layer is computed once; a shard of layer l recomputes
  only from layer l on;
- in layer l, the other shards' attention output is computed once and shared by every variant of
  the shard; from layer l's FFN on, the variants run stacked as one batch;
- calibration sentences are batched by length: no work is spent on padding;
- shards are spread over `workers` spawned processes with one torch thread each, heaviest (first
  layers) first. Every task is computed the same way whichever process runs it, so the profile
  does not depend on the worker count.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sticc.base.cache import cache_dir, read_cached_json, write_cached_json
from sticc.base.errors import UserError
from sticc.base.progress import Progress, quiet
from sticc.base.schema import PARTS, Part, parse_tokenizer, read_bytes
from sticc.model.store import Store
from sticc.model.texts import IMPORTANCE_SENTENCES
from sticc.profile.decoder_importance import (
    decoder_cache_path,
    decoder_calibration,
    measure_decoder_calibrated,
    measure_decoder_importance,
)
from sticc.profile.importance import (
    DEFAULT_ADDITIVITY_PLANS,
    CalibrationRecord,
    ImportanceProfile,
    reference_bits,
)
from sticc.profile.store_pieces import Chunk, StorePieces, kept_by_bits
from sticc.profile.tasks import measure_losses
from sticc.runtime.core import RowTable, read_rows
from sticc.runtime.encoder import (
    LAYER_HEADER_VECTORS,
    attention_chunk,
    attention_mask_bias,
    ffn_chunk,
    kernel_form,
    position_ids_for,
    residual_norm,
)
from sticc.runtime.sentence import mean_pool

PROFILER_VERSION = 2  # part of the cache key: bump whenever what is measured changes
BATCH_SENTENCES = 8  # most calibration sentences (all of one length) per batch
# without a tokenizer.json: random token sequences of random lengths (fixed seed)
FALLBACK_SEED = 0
FALLBACK_SEQUENCES = 32
FALLBACK_MAX_TOKENS = 32



# ----------------------------------------------------------------------------------------------
# Calibration inputs
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CalibrationBatch:
    """Token ids, attention mask and token types [n, L] of sentences of similar length."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_type_ids: torch.Tensor


@dataclass(frozen=True)
class CalibrationInputs:
    """The tokenized calibration set and what identifies it (the cache key's half)."""

    batches: tuple[CalibrationBatch, ...]
    source: str
    sentences: int
    tokens: int  # real tokens, padding excluded
    sha256: str  # of the texts (or of the random-token recipe)

    def record(self) -> CalibrationRecord:
        return CalibrationRecord(self.source, self.sentences, self.tokens, self.sha256)


def read_calibration_texts(path: str | Path) -> list[str]:
    """One calibration text per non-empty line of the UTF-8 file `path` (surrounding blanks stripped)."""
    path = Path(path)
    raw = read_bytes(path, f"--calib {path} does not exist")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise UserError(f"--calib {path} is not UTF-8 text (invalid byte at offset {error.start})") from None
    texts = [line.strip() for line in text.splitlines() if line.strip()]
    if not texts:
        raise UserError(f"--calib {path} holds no text: give one calibration text per line")
    return texts


def _position_limit(store: Store) -> int:
    spec = store.spec
    return spec.max_positions - (spec.pad_token_id + 1 if spec.position_kind == "roberta" else 0)


def calibration_inputs(store: Store, texts: list[str] | None = None, source: str | None = None) -> CalibrationInputs:
    """Tokenize `texts` (default: IMPORTANCE_SENTENCES) with the store's tokenizer.json, truncated to
    the model's positions, batched by length. A store without a tokenizer gets random token
    sequences (fixed seed) and refuses explicit texts."""
    spec = store.spec
    limit = _position_limit(store)
    tokenizer_path = store.path / "tokenizer.json"
    sequences: list[tuple[list[int], list[int]]]  # (ids, type ids) per sentence
    if store.has_tokenizer and tokenizer_path.exists():
        if texts is not None and not texts:
            raise UserError("no calibration texts given")
        chosen = list(IMPORTANCE_SENTENCES if texts is None else texts)
        tokenizer = parse_tokenizer(read_bytes(tokenizer_path, f"{tokenizer_path} does not exist"), str(tokenizer_path))
        tokenizer.enable_truncation(max_length=limit)
        tokenizer.no_padding()
        sequences = [(e.ids, e.type_ids) for e in tokenizer.encode_batch(chosen)]
        if source is None:
            source = f"built-in: {len(chosen)} sentences held out from quantization" if texts is None else "given texts"
        digest = hashlib.sha256(json.dumps(chosen, ensure_ascii=False).encode()).hexdigest()
    else:
        if texts is not None:
            raise UserError(f"store {store.path} has no tokenizer.json: calibration texts cannot be tokenized")
        generator = torch.Generator().manual_seed(FALLBACK_SEED)
        longest = min(FALLBACK_MAX_TOKENS, limit)
        lengths = torch.randint(min(4, longest), longest + 1, (FALLBACK_SEQUENCES,), generator=generator).tolist()
        sequences = []
        for length in lengths:
            ids = torch.randint(0, spec.vocab, (length,), generator=generator)
            # off the padding id: roberta positions skip it, and it would read as padding
            ids = torch.where(ids == spec.pad_token_id, (ids + 1) % spec.vocab, ids)
            sequences.append((ids.tolist(), [0] * length))
        recipe = {"random_tokens": FALLBACK_SEED, "sequences": FALLBACK_SEQUENCES, "max_tokens": longest}
        source = f"{FALLBACK_SEQUENCES} random token sequences (seed {FALLBACK_SEED}): the store has no tokenizer.json"
        digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()
    # batches of sentences of one length: no padding, so no work is wasted on it
    by_length: dict[int, list[int]] = {}
    for k, (ids, _) in enumerate(sequences):
        by_length.setdefault(len(ids), []).append(k)
    groups = [
        members[start : start + BATCH_SENTENCES]
        for _, members in sorted(by_length.items())
        for start in range(0, len(members), BATCH_SENTENCES)
    ]
    batches = []
    for group in groups:
        ids = torch.tensor([sequences[k][0] for k in group], dtype=torch.int64)
        types = torch.tensor([sequences[k][1] for k in group], dtype=torch.int64)
        batches.append(CalibrationBatch(ids, torch.ones_like(ids), types))
    tokens = sum(len(ids) for ids, _ in sequences)
    return CalibrationInputs(tuple(batches), source, len(sequences), tokens, digest)


# ----------------------------------------------------------------------------------------------
# The encoder in memory, read from the store
# ----------------------------------------------------------------------------------------------


class StoreEncoder(StorePieces):
    """The encoder read from a store: headers, embedding rows, every layer at the reference
    precision, and any piece at any stored bitwidth on demand; its forward uses the runner's kernels.
    """

    def __init__(self, store: Store, reference: int) -> None:
        spec = store.spec
        super().__init__(store)
        self.spec = spec
        self.shards = store.shards_per_layer
        self.heads_per_shard = spec.heads // store.shards_per_layer
        self.units = spec.ffn // store.shards_per_layer
        globals_ = self._read(store.global_header, "global header").view(torch.float32)
        self.embed_norm_weight = globals_[: spec.hidden]
        self.embed_norm_bias = globals_[spec.hidden : 2 * spec.hidden]
        self.token_types = globals_[2 * spec.hidden :].view(spec.type_vocab, spec.hidden)
        self.headers = [
            dict(zip(LAYER_HEADER_VECTORS, self._read(extent, f"layer {layer} header").view(torch.float32).view(-1, spec.hidden), strict=True))
            for layer, extent in enumerate(store.layer_headers)
        ]
        self._tables = {}
        for name, table in (("word embedding", store.word_embeddings), ("position embedding", store.position_embeddings)):
            sums = self._read(table.checksum_table, f"{name} checksums").numpy().view(np.uint64)
            self._tables[name] = (RowTable(table.offset, table.rows, table.row_nbytes), sums)
        # every layer block as one chunk of all its shards at the reference precision
        self.reference = {
            (layer, part): self.chunk(part, [self.piece(layer, index, part, reference) for index in range(self.shards)])
            for layer in range(spec.layers)
            for part in PARTS
        }

    @staticmethod
    def chunk(part: str, pieces: list[tuple[torch.Tensor, torch.Tensor]]) -> Chunk:
        """Pieces of `part` stacked in the kernels' form, (weights, biases)."""
        return kernel_form(torch.stack([w for w, _ in pieces]), torch.stack([b for _, b in pieces]), part)

    # -- forward -------------------------------------------------------------------------------

    def embed(self, batch: CalibrationBatch) -> torch.Tensor:
        """LayerNorm(word + position + token type embeddings) [B, L, hidden], as the runner's `_embed`."""
        spec = self.spec
        ids, mask = batch.input_ids, batch.attention_mask
        position_ids = position_ids_for(ids, mask, spec.position_kind, spec.pad_token_id)
        if int(position_ids.max()) >= spec.max_positions:
            raise UserError(f"calibration sequence too long: the model has {spec.max_positions} positions")
        rows = []
        with ThreadPoolExecutor(1) as io_threads:
            for name, values in (("word embedding", ids), ("position embedding", position_ids)):
                table, sums = self._tables[name]
                unique, index = torch.unique(values, sorted=True, return_inverse=True)
                out = torch.empty(len(unique), spec.hidden)
                read_rows(self.reader, table, sums, unique, out, name, io_threads, 1)
                rows.append(out[index])
        x = rows[0] + rows[1]
        if spec.type_vocab:
            x += self.token_types[batch.token_type_ids]
        return F.layer_norm(x, (spec.hidden,), self.embed_norm_weight, self.embed_norm_bias, spec.layer_norm_eps)

    def accumulate(self, acc: torch.Tensor, x: torch.Tensor, mask: torch.Tensor, part: str, chunk: Chunk | None) -> None:
        """Add `chunk`'s output of block `part` on input `x` to `acc` [tokens, hidden]."""
        if chunk is None:
            return
        if part == Part.ATTN:
            attention_chunk(acc, x, mask, *chunk, self.heads_per_shard, self.spec.head_dim)
        else:
            ffn_chunk(acc, x, *chunk, self.spec.activation)

    def join(self, acc: torch.Tensor, x: torch.Tensor, layer: int, part: str) -> torch.Tensor:
        header = self.headers[layer]
        return residual_norm(
            acc, x, header[f"{part}_out_bias"], header[f"{part}_norm_weight"], header[f"{part}_norm_bias"],
            self.spec.layer_norm_eps,
        )

    def block(self, x: torch.Tensor, mask: torch.Tensor, layer: int, part: str, chunks: list[Chunk]) -> torch.Tensor:
        """Block `part` of `layer` over `chunks` (the kept shards), closed by its join."""
        acc = x.new_zeros(x.shape[0] * x.shape[1], self.spec.hidden)
        for chunk in chunks:
            self.accumulate(acc, x, mask, part, chunk)
        return self.join(acc, x, layer, part)

    def reference_layers(self, x: torch.Tensor, mask: torch.Tensor, first: int, stop: int | None = None) -> torch.Tensor:
        """Layers [first, stop) (default: to the last) at the reference precision."""
        for layer in range(first, self.spec.layers if stop is None else stop):
            for part in PARTS:
                x = self.block(x, mask, layer, part, [self.reference[(layer, part)]])
        return x


def cosine_losses(reference: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    """1 - cosine of each row pair [n, hidden] -> [n], float64: |a/|a| - b/|b||^2 / 2, which keeps
    the small losses of nearly equal vectors (1 - cos in fp32 would round them to 0)."""
    a = F.normalize(reference.to(torch.float64), dim=-1)
    b = F.normalize(output.to(torch.float64), dim=-1)
    return 0.5 * (a - b).pow(2).sum(-1)


class ImportanceMeasurer:
    """The reference run on the calibration set, kept, and the measurements that reuse it."""

    def __init__(self, store: Store, batches: tuple[CalibrationBatch, ...], reference: int) -> None:
        self.reference_bits = reference
        self.model = StoreEncoder(store, reference)
        self.batches = batches
        self.masks = [attention_mask_bias(batch.attention_mask) for batch in batches]
        self.sentences = sum(batch.input_ids.shape[0] for batch in batches)
        self.entering: list[list[torch.Tensor]] = []  # [batch][layer]: reference hidden state entering the layer
        self.pooled: list[torch.Tensor] = []  # [batch]: reference pooled output [n, hidden]
        with torch.inference_mode():
            for batch, mask in zip(batches, self.masks, strict=True):
                x = self.model.embed(batch)
                states = []
                for layer in range(store.spec.layers):
                    states.append(x)
                    x = self.model.reference_layers(x, mask, layer, layer + 1)
                self.entering.append(states)
                self.pooled.append(mean_pool(x, batch.attention_mask))

    def run(self, task: tuple) -> tuple:
        """One task's result: (kind, key, losses or a plan's loss)."""
        kind, key, payload = task
        if kind == "shard":
            return kind, key, self.shard_losses(*key, payload)
        return kind, key, self.plan_loss(payload)

    def close(self) -> None:
        self.model.close()

    @torch.inference_mode()
    def shard_losses(self, layer: int, index: int, variants: tuple[int, ...]) -> dict[int, float]:
        """{bits: loss} of shard (layer, index) at each of `variants` (0: dropped), the rest at the reference."""
        model = self.model
        _, shared, own = model.variant_chunks(layer, index, variants, PARTS)
        count = len(variants)
        totals = dict.fromkeys(variants, 0.0)
        for b, batch in enumerate(self.batches):
            x, mask = self.entering[b][layer], self.masks[b]
            size, length = batch.input_ids.shape
            tokens = size * length
            # attention of layer l: the other shards' part is the same for every variant
            others_attn = x.new_zeros(tokens, self.model.spec.hidden)
            model.accumulate(others_attn, x, mask, Part.ATTN, shared[Part.ATTN])
            attended = []
            for bits in variants:
                acc = others_attn.clone()
                if bits:
                    model.accumulate(acc, x, mask, Part.ATTN, own[bits][Part.ATTN])
                attended.append(model.join(acc, x, layer, Part.ATTN))
            # from layer l's FFN on, the variants run stacked: [variants * n, L, hidden]
            y = torch.cat(attended)
            stacked_mask = batch.attention_mask.repeat(count, 1)
            stacked_bias = attention_mask_bias(stacked_mask)
            acc = y.new_zeros(count * tokens, self.model.spec.hidden)
            model.accumulate(acc, y, stacked_bias, Part.FFN, shared[Part.FFN])
            for v, bits in enumerate(variants):
                if bits:
                    rows = slice(v * tokens, (v + 1) * tokens)
                    model.accumulate(acc[rows], y[v * size : (v + 1) * size], mask, Part.FFN, own[bits][Part.FFN])
            out = model.reference_layers(model.join(acc, y, layer, Part.FFN), stacked_bias, layer + 1)
            pooled = mean_pool(out, stacked_mask).view(count, size, -1)
            for v, bits in enumerate(variants):
                totals[bits] += float(cosine_losses(self.pooled[b], pooled[v]).sum())
        return {bits: total / self.sentences for bits, total in totals.items()}

    @torch.inference_mode()
    def plan_loss(self, plan_bits: tuple[tuple[int, ...], ...]) -> float:
        """The measured loss of a whole plan: `plan_bits[layer][index]` for every shard (0: dropped)."""
        model = self.model
        xs = [states[0] for states in self.entering]
        for layer, row in enumerate(plan_bits):
            kept = kept_by_bits(row)
            for part in PARTS:
                chunks = [model.kept_chunk(layer, part, bits, indices, self.reference_bits) for bits, indices in kept]
                xs = [model.block(x, mask, layer, part, chunks) for x, mask in zip(xs, self.masks, strict=True)]
        total = 0.0
        for b, (x, batch) in enumerate(zip(xs, self.batches, strict=True)):
            total += float(cosine_losses(self.pooled[b], mean_pool(x, batch.attention_mask)).sum())
        return total / self.sentences


# ----------------------------------------------------------------------------------------------
# Tasks, run in this process or in spawned workers
# ----------------------------------------------------------------------------------------------

def _batches_to_lists(batches: tuple[CalibrationBatch, ...]) -> list[tuple[list, list, list]]:
    """Plain lists for the trip to a spawned worker (no tensor pickling, no shared memory)."""
    return [(b.input_ids.tolist(), b.attention_mask.tolist(), b.token_type_ids.tolist()) for b in batches]


def _batches_from_lists(lists: list[tuple[list, list, list]]) -> tuple[CalibrationBatch, ...]:
    return tuple(CalibrationBatch(*(torch.tensor(values, dtype=torch.int64) for values in batch)) for batch in lists)


def _open_measurer(store_path: str, batch_lists: list, reference: int) -> ImportanceMeasurer:
    """The measurer of a store (`sticc.profile.tasks.TaskRunner`'s start: plain arguments, so a spawned worker can call it)."""
    return ImportanceMeasurer(Store.open(store_path), _batches_from_lists(batch_lists), reference)


def measure_importance(
    store: Store,
    texts: list[str] | None = None,
    progress: Progress = quiet,
    workers: int | None = None,
    additivity_plans: int = DEFAULT_ADDITIVITY_PLANS,
    source: str | None = None,
) -> ImportanceProfile:
    """Measure the importance profile of `store` on `texts` (default: IMPORTANCE_SENTENCES; a
    decoder store: `sticc.profile.decoder_importance`, one passage per text, default IMPORTANCE_PASSAGES).

    `progress(iterable, total, what)` wraps the stream of results (see `sticc.base.progress.progress_bar`);
    `workers` processes share the work (default: min(2, cores)); `additivity_plans` random whole
    plans check the additive model (0: skip); `source` names the texts in the profile.
    """
    if store.spec.is_decoder:
        return measure_decoder_importance(store, texts, progress, workers, additivity_plans, source)
    return measure_calibrated(store, calibration_inputs(store, texts, source), progress, workers, additivity_plans)


def measure_calibrated(
    store: Store,
    calibration: CalibrationInputs,
    progress: Progress = quiet,
    workers: int | None = None,
    additivity_plans: int = DEFAULT_ADDITIVITY_PLANS,
) -> ImportanceProfile:
    """`measure_importance` on already tokenized calibration inputs."""
    reference = reference_bits(store)
    variants = tuple(sorted({0} | set(store.bits) - {reference}))
    # heaviest first: a shard of layer l recomputes layers l.. (balances the workers)
    positions = [(layer, index) for layer in range(store.spec.layers) for index in range(store.shards_per_layer)]
    shard_tasks = [("shard", position, variants) for position in positions]
    args = (str(store.path), _batches_to_lists(calibration.batches), reference)
    loss, additivity = measure_losses(
        store, _open_measurer, args, shard_tasks, reference, workers, additivity_plans, progress, "measuring shards",
    )
    metric = (
        f"1 - cosine of the mean-pooled last hidden state against the store's {reference}-bit weights, "
        "mean over the calibration sentences, only the named shard changed"
    )
    if reference != 32:
        metric += f" (the store has no 32-bit versions: {reference} bits is the reference)"
    return ImportanceProfile(
        store.store_id, metric, calibration.record(), {position: loss[position] for position in positions}, additivity,
    )


# ----------------------------------------------------------------------------------------------
# Cached
# ----------------------------------------------------------------------------------------------


def importance_cache_path(store: Store, calibration: CalibrationInputs) -> Path:
    """Where the profile of `store` on `calibration` is cached."""
    return cache_dir(store.store_id) / f"importance-v{PROFILER_VERSION}-{calibration.sha256[:16]}.json"


def _cached_profile(path: Path, store: Store, sha256: str) -> ImportanceProfile | None:
    """The cached profile at `path` if it is whole and is this store's on the texts of digest `sha256`, else None."""
    data = read_cached_json(path)
    if data is None:
        return None
    try:
        profile = ImportanceProfile.from_json(data, str(path))
        profile.check_store(store)
    except (UserError, LookupError, TypeError, ValueError, AttributeError):
        return None
    if profile.calibration is None or profile.calibration.sha256 != sha256:
        return None
    return profile


def cached_importance(
    store: Store, calib_path: Path | None, progress: Progress = quiet, workers: int | None = None,
) -> tuple[ImportanceProfile, Path, bool]:
    """(profile, cache path, whether it came from the cache) for `store` on the texts of
    `calib_path` (one per line; None: the built-in held-out sentences, or passages for a decoder). A
    missing or corrupt cache entry is measured again; a cache that cannot be written is skipped."""
    texts = read_calibration_texts(calib_path) if calib_path is not None else None
    source = str(calib_path) if calib_path is not None else None
    if store.spec.is_decoder:
        passages = decoder_calibration(store, texts, source)
        path, sha256 = decoder_cache_path(store, passages), passages.sha256
    else:
        calibration = calibration_inputs(store, texts, source)
        path, sha256 = importance_cache_path(store, calibration), calibration.sha256
    cached = _cached_profile(path, store, sha256)
    if cached is not None:
        return cached, path, True
    if store.spec.is_decoder:
        profile = measure_decoder_calibrated(store, passages, progress, workers)
    else:
        profile = measure_calibrated(store, calibration, progress, workers)
    with contextlib.suppress(OSError):  # a read-only cache costs a re-measurement next time, nothing else
        write_cached_json(path, profile.to_json())
    return profile, path, False
