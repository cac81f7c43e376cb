"""Importance profiling for decoders: how much of the next-token distribution every shard version
and every LM head slice version loses, measured.

The loss of a version is KL(reference || variant) of the next-token distributions, in nats, averaged
over every position of the calibration passages: the reference runs every shard and LM head slice
at the reference precision (the store's 32-bit versions, else its highest bitwidth), the variant
changes only that one shard (0: dropped, its key/value heads and FFN units contribute nothing) or
that one LM head slice. An LM head slice is never dropped in a plan (`sticc.ir.plan`), but the
profile has a loss for 0 too: the slice's weights zeroed, i.e. its vocabulary's logits set to 0
(not removed: a removed token would make the KL infinite wherever the reference gives it mass). Then
random whole plans (their LM head slices never dropped) are measured the same way and compared with
the additive model's prediction (`sticc.profile.importance.additivity_summary`). Schema, metric and
measured figures: docs/importance-profile.md.

The forward pass is built from the store with the runner's own pieces (`sticc.runtime`): the same
checked reads, the same dequantization (`decode_piece`, in the kernels' form), the same kernels
(`attention_chunk` with its KV cache and rotary tables, `ffn_chunk`, `lm_head_chunk`, `norm`), the
same residual joins, a passage run as one prefill call. How it stays fast:
- the reference hidden state entering each layer is computed once per passage; a shard of layer l
  recomputes only layers l..;
- in layer l the other shards' attention output is computed once and shared by every variant of the
  shard; from layer l's FFN on the variants run stacked (the row-wise kernels, the FFN and the
  norms, as one GEMM over every variant's positions; attention and the LM head one sequence at a
  time, as a runner runs them);
- an LM head slice changes only its own vocabulary's logits: its loss needs one [positions, slice]
  GEMM and the reference's per-position log-normalizer, not a forward (`lm_head_slice_kl`);
- shards (first layers first) and then plans are spread over `workers` spawned processes with one
  torch thread each; every task is computed the same way whichever process runs it.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sticc.base.cache import cache_dir
from sticc.base.errors import UserError
from sticc.base.progress import Progress, quiet
from sticc.base.schema import PARTS, Part
from sticc.model.sharding import decoder_shape, spec_piece_blocks
from sticc.model.store import Store
from sticc.model.texts import IMPORTANCE_PASSAGES
from sticc.profile.importance import (
    DEFAULT_ADDITIVITY_PLANS,
    CalibrationRecord,
    ImportanceProfile,
    reference_bits,
)
from sticc.profile.store_pieces import Chunk, StorePieces, kept_by_bits
from sticc.profile.tasks import measure_losses
from sticc.runtime.core import (
    RowTable,
    StoreError,
    load_tokenizer,
    read_rows,
)
from sticc.runtime.decoder import (
    DecoderShape,
    Step,
    attention_chunk,
    decoder_global_vectors,
    decoder_layer_vectors,
    ffn_chunk,
    lm_head_chunk,
    norm,
    rope_tables,
)

DECODER_PROFILER_VERSION = 1  # part of the cache key: bump whenever what is measured changes
# without a tokenizer.json: random token passages of random lengths (fixed seed)
FALLBACK_SEED = 0
FALLBACK_PASSAGES = 4
FALLBACK_MIN_TOKENS = 8
FALLBACK_MAX_TOKENS = 24
KL_ROWS = 32  # positions per block of the float64 KL computation (bounds its temporaries)


# ----------------------------------------------------------------------------------------------
# Calibration passages
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DecoderCalibration:
    """The tokenized calibration passages (each run as one prefill call) and what identifies them."""

    passages: tuple[tuple[int, ...], ...]  # token ids per passage
    source: str
    sha256: str  # of the texts (or of the random-token recipe)

    @property
    def tokens(self) -> int:
        """Positions the loss is averaged over: every token of every passage."""
        return sum(len(ids) for ids in self.passages)

    def record(self) -> CalibrationRecord:
        return CalibrationRecord(self.source, len(self.passages), self.tokens, self.sha256)


def decoder_calibration(store: Store, texts: list[str] | None = None, source: str | None = None) -> DecoderCalibration:
    """Tokenize `texts` (default: IMPORTANCE_PASSAGES) with the store's tokenizer.json as a runner
    does (no special tokens added beyond the tokenizer's own), each truncated to the model's
    positions. A store without a tokenizer gets random token passages (fixed seed) and refuses texts."""
    spec = store.spec
    if store.has_tokenizer and (store.path / "tokenizer.json").exists():
        if texts is not None and not texts:
            raise UserError("no calibration texts given")
        chosen = list(IMPORTANCE_PASSAGES if texts is None else texts)
        try:
            tokenizer = load_tokenizer(str(store.path))
        except StoreError as error:
            raise UserError(str(error)) from None
        passages = tuple(tuple(e.ids[: spec.max_positions]) for e in tokenizer.encode_batch(chosen))
        if not all(passages):
            empty = next(k for k, ids in enumerate(passages) if not ids)
            raise UserError(f"calibration text {empty + 1} has no tokens")
        if source is None:
            source = (
                f"built-in: {len(chosen)} passages of the sentences held out from quantization" if texts is None else "given texts"
            )
        digest = hashlib.sha256(json.dumps(chosen, ensure_ascii=False).encode()).hexdigest()
        return DecoderCalibration(passages, source, digest)
    if texts is not None:
        raise UserError(f"store {store.path} has no tokenizer.json: calibration texts cannot be tokenized")
    generator = torch.Generator().manual_seed(FALLBACK_SEED)
    longest = min(FALLBACK_MAX_TOKENS, spec.max_positions)
    lengths = torch.randint(min(FALLBACK_MIN_TOKENS, longest), longest + 1, (FALLBACK_PASSAGES,), generator=generator).tolist()
    passages = tuple(tuple(torch.randint(0, spec.vocab, (length,), generator=generator).tolist()) for length in lengths)
    recipe = {"random_tokens": FALLBACK_SEED, "passages": FALLBACK_PASSAGES, "tokens": [min(FALLBACK_MIN_TOKENS, longest), longest]}
    source = f"{FALLBACK_PASSAGES} random token passages (seed {FALLBACK_SEED}): the store has no tokenizer.json"
    return DecoderCalibration(passages, source, hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest())


# ----------------------------------------------------------------------------------------------
# The decoder in memory, read from the store
# ----------------------------------------------------------------------------------------------


def kernel_chunk(pieces: list[tuple[torch.Tensor, torch.Tensor]], blocks: int, bias_blocks: int) -> Chunk:
    """Pieces (weight [rows, cols], bias) stacked in the kernels' form: weights [blocks, members,
    block], biases [bias_blocks, members, bias block] (`sticc.runtime.decode.DecodesChunks`)."""
    weights = torch.stack([w.reshape(blocks, -1) for w, _ in pieces], 1).contiguous()
    biases = torch.stack([b.reshape(bias_blocks, -1) for _, b in pieces], 1).contiguous()
    return weights, biases


def kl_sum(reference_logp: torch.Tensor, reference_p: torch.Tensor, logits: torch.Tensor) -> float:
    """Sum over positions of KL(reference || softmax(logits)): reference log-probabilities and
    probabilities [L, vocab] float64, `logits` [L, vocab] (fp32); computed in float64, in blocks of
    positions."""
    total = 0.0
    for start in range(0, logits.shape[0], KL_ROWS):
        rows = slice(start, start + KL_ROWS)
        logq = torch.log_softmax(logits[rows].to(torch.float64), -1)
        total += float((reference_p[rows] * (reference_logp[rows] - logq)).sum())
    return total


def lm_head_slice_kl(
    reference_logits: torch.Tensor, reference_p: torch.Tensor, log_normalizer: torch.Tensor, variant: torch.Tensor,
) -> float:
    """Sum over positions of KL(reference || variant) when only one vocabulary slice's logits change:
    `reference_logits`, `reference_p` and `variant` [L, slice] (the slice's columns), `log_normalizer`
    [L] the reference's log-sum-exp over the whole vocabulary. With d = variant - reference on the
    slice, KL = log(1 + sum_s (exp(variant - lse) - p)) - sum_s p d (the rest of the vocabulary
    keeps its logits), in float64."""
    z = reference_logits.to(torch.float64)
    zv = variant.to(torch.float64)
    lse = log_normalizer.unsqueeze(-1)
    growth = (torch.exp(zv - lse) - reference_p).sum(-1)
    shift = (reference_p * (zv - z)).sum(-1)
    return float((torch.log1p(growth) - shift).sum())


class StoreDecoder(StorePieces):
    """The decoder read from a store: headers, embedding rows, every layer and the LM head at the
    reference precision, and any piece at any stored bitwidth on demand; its forward uses the
    runner's kernels."""

    def __init__(self, store: Store, reference: int, max_tokens: int) -> None:
        spec = store.spec
        super().__init__(store)
        self.spec = spec
        self.shape: DecoderShape = decoder_shape(spec, store.shards_per_layer, store.lm_head_shards)
        self.shards = store.shards_per_layer
        layernorm = spec.norm_kind == "layernorm"
        final = self._read(store.global_header, "global header").view(torch.float32).view(-1, spec.hidden)
        self.final_norm_vectors = dict(zip(decoder_global_vectors(layernorm), final, strict=True))
        self.headers = []
        for layer, extent in enumerate(store.layer_headers):
            vectors = self._read(extent, f"layer {layer} header").view(torch.float32).view(-1, spec.hidden)
            self.headers.append(dict(zip(decoder_layer_vectors(layernorm, self.shape.out_bias), vectors, strict=True)))
        self._tables = {}
        for name, table in (("word embedding", store.word_embeddings), ("position embedding", store.position_embeddings)):
            if table is not None:
                sums = self._read(table.checksum_table, f"{name} checksums").numpy().view(np.uint64)
                self._tables[name] = (RowTable(table.offset, table.rows, table.row_nbytes), sums)
        self.rope = rope_tables(self.shape, max_tokens) if self.shape.position_kind == "rope" else None
        self.blocks = {part: spec_piece_blocks(spec, part) for part in (*PARTS, Part.LM_HEAD)}
        # every layer block as one chunk of all its shards, and the LM head as one chunk of all its slices
        self.reference = {
            (layer, part): self.chunk(part, [self.piece(layer, index, part, reference) for index in range(self.shards)])
            for layer in range(spec.layers)
            for part in PARTS
        }
        self.lm_head_reference = self.chunk(
            Part.LM_HEAD, [self.piece(spec.layers, index, Part.LM_HEAD, reference) for index in range(store.lm_head_shards)],
        )

    def chunk(self, part: str, pieces: list[tuple[torch.Tensor, torch.Tensor]]) -> Chunk:
        return kernel_chunk(pieces, *self.blocks[part])

    def heads(self, indices: list[int]):
        """The key/value heads of shards `indices` in member order: a slice when contiguous (as a runner's `chunk_heads`)."""
        per_shard = self.shape.kv_per_shard
        heads = [i * per_shard + j for i in indices for j in range(per_shard)]
        if heads == list(range(heads[0], heads[0] + len(heads))):
            return slice(heads[0], heads[-1] + 1)
        return torch.tensor(heads)

    # -- forward -------------------------------------------------------------------------------

    def step(self, length: int) -> Step:
        """A prefill call over `length` positions with nothing cached (a runner's `_step(0, length)`)."""
        cos = sin = None
        if self.rope is not None:
            cos, sin = self.rope[0][:length], self.rope[1][:length]
        return Step(0, length, cos, sin, None, length > 1)

    def embed(self, ids: tuple[int, ...]) -> torch.Tensor:
        """Word (+ learned position) rows [L, hidden], each row checked (a runner's `_embed`)."""
        values = [("word embedding", torch.tensor(ids, dtype=torch.int64))]
        if "position embedding" in self._tables:
            values.append(("position embedding", torch.arange(len(ids))))
        rows = []
        with ThreadPoolExecutor(1) as io_threads:
            for name, wanted in values:
                table, sums = self._tables[name]
                unique, index = torch.unique(wanted, sorted=True, return_inverse=True)
                out = torch.empty(len(unique), self.spec.hidden)
                read_rows(self.reader, table, sums, unique, out, name, io_threads, 1)
                rows.append(out[index])
        return rows[0] if len(rows) == 1 else rows[0] + rows[1]

    def block_input(self, x: torch.Tensor, layer: int, part: str) -> torch.Tensor:
        header = self.headers[layer]
        return norm(x, header[f"{part}_norm_weight"], header.get(f"{part}_norm_bias"), self.shape.norm_kind, self.shape.layer_norm_eps)

    def join(self, acc: torch.Tensor, x: torch.Tensor, layer: int, part: str) -> torch.Tensor:
        bias = self.headers[layer].get(f"{part}_out_bias")
        if bias is not None:
            acc += bias
        return acc.add_(x)

    def attention(self, acc: torch.Tensor, h: torch.Tensor, chunk: Chunk, heads, step: Step) -> None:
        """Add a chunk's attention output for one sequence h [L, hidden] to `acc` (a fresh KV cache)."""
        shape = self.shape
        keys = h.new_zeros(shape.kv_heads, step.length, shape.head_dim)
        values = torch.zeros_like(keys)
        attention_chunk(acc, h, *chunk, keys, values, heads, step, shape.query_groups, shape.head_dim, shape.qkv_bias)

    def ffn(self, acc: torch.Tensor, h: torch.Tensor, chunk: Chunk) -> None:
        ffn_chunk(acc, h, *chunk, self.shape.activation, self.shape.ffn_kind == "gated")

    def layers(self, x: torch.Tensor, sequences: int, step: Step, first: int, stop: int | None = None) -> torch.Tensor:
        """Layers [first, stop) (default: to the last) at the reference precision over `sequences`
        sequences of one length stacked as x [sequences * L, hidden]."""
        length, hidden = step.length, self.spec.hidden
        every = self.heads(list(range(self.shards)))
        for layer in range(first, self.spec.layers if stop is None else stop):
            h = self.block_input(x, layer, Part.ATTN)
            acc = x.new_zeros(sequences * length, hidden)
            for s in range(sequences):
                rows = slice(s * length, (s + 1) * length)
                self.attention(acc[rows], h[rows], self.reference[(layer, Part.ATTN)], every, step)
            x = self.join(acc, x, layer, Part.ATTN)
            h = self.block_input(x, layer, Part.FFN)
            acc = x.new_zeros(sequences * length, hidden)
            self.ffn(acc, h, self.reference[(layer, Part.FFN)])
            x = self.join(acc, x, layer, Part.FFN)
        return x

    def final_norm(self, x: torch.Tensor) -> torch.Tensor:
        vectors = self.final_norm_vectors
        return norm(x, vectors["final_norm_weight"], vectors.get("final_norm_bias"), self.shape.norm_kind, self.shape.layer_norm_eps)

    def logits(self, h: torch.Tensor, chunks: list[tuple[Chunk, tuple]]) -> torch.Tensor:
        """The logits [rows, vocab] of normed h [rows, hidden] from LM head `chunks` ((chunk,
        columns of its members) each), as a runner's LM head block writes them."""
        shape = self.shape
        logits = h.new_empty(h.shape[0], shape.lm_head_shards * shape.lm_head_rows)
        for chunk, columns in chunks:
            lm_head_chunk(logits, h, chunk[0], columns)
        return logits[:, : shape.vocab]

    def columns(self, indices: list[int]) -> tuple:
        rows = self.shape.lm_head_rows
        return tuple((i * rows, (i + 1) * rows) for i in indices)


# ----------------------------------------------------------------------------------------------
# Measuring
# ----------------------------------------------------------------------------------------------


class DecoderMeasurer:
    """The reference run on the calibration passages, kept, and the measurements that reuse it."""

    def __init__(self, store: Store, passages: tuple[tuple[int, ...], ...], reference: int) -> None:
        self.reference_bits = reference
        self.passages = passages
        self.tokens = sum(len(ids) for ids in passages)
        self.model = StoreDecoder(store, reference, max(len(ids) for ids in passages))
        model = self.model
        self.all_slices = [(model.lm_head_reference, model.columns(list(range(store.lm_head_shards))))]
        self.entering: list[list[torch.Tensor]] = []  # [passage][layer]: the reference hidden state entering the layer
        self.final: list[torch.Tensor] = []  # [passage]: the reference's final-normed hidden state [L, hidden]
        self.logits: list[torch.Tensor] = []  # [passage]: reference logits [L, vocab] fp32
        self.logp: list[torch.Tensor] = []  # [passage]: reference log-probabilities [L, vocab] float64
        self.p: list[torch.Tensor] = []  # [passage]: reference probabilities
        self.log_normalizer: list[torch.Tensor] = []  # [passage]: log-sum-exp of the logits [L] float64
        with torch.inference_mode():
            for ids in passages:
                step = model.step(len(ids))
                x = model.embed(ids)
                states = []
                for layer in range(store.spec.layers):
                    states.append(x)
                    x = model.layers(x, 1, step, layer, layer + 1)
                self.entering.append(states)
                h = model.final_norm(x)
                logits = model.logits(h, self.all_slices)
                z = logits.to(torch.float64)
                lse = torch.logsumexp(z, -1)
                logp = z - lse.unsqueeze(-1)
                self.final.append(h)
                self.logits.append(logits.clone())
                self.logp.append(logp)
                self.p.append(logp.exp())
                self.log_normalizer.append(lse)

    def run(self, task: tuple) -> tuple:
        """One task's result: (kind, key, losses or a plan's loss)."""
        kind, key, payload = task
        if kind == "shard":
            return kind, key, self.shard_losses(*key, payload)
        if kind == "lm_head":
            return kind, key, self.lm_head_losses(key[1], payload)
        return kind, key, self.plan_loss(payload)

    def close(self) -> None:
        self.model.close()

    @torch.inference_mode()
    def shard_losses(self, layer: int, index: int, variants: tuple[int, ...]) -> dict[int, float]:
        """{bits: loss} of shard (layer, index) at each of `variants` (0: dropped), the rest at the reference."""
        model = self.model
        others, shared, own = model.variant_chunks(layer, index, variants, PARTS)
        own_heads, other_heads = model.heads([index]), model.heads(others) if others else None
        count = len(variants)
        totals = dict.fromkeys(variants, 0.0)
        for p, ids in enumerate(self.passages):
            x, step, length = self.entering[p][layer], model.step(len(ids)), len(ids)
            # attention of layer l: the other shards' part is the same for every variant
            h = model.block_input(x, layer, Part.ATTN)
            base = torch.zeros_like(x)
            if shared[Part.ATTN] is not None:
                model.attention(base, h, shared[Part.ATTN], other_heads, step)
            attended = []
            for bits in variants:
                acc = base.clone()
                if bits:
                    model.attention(acc, h, own[bits][Part.ATTN], own_heads, step)
                attended.append(model.join(acc, x, layer, Part.ATTN))
            # from layer l's FFN on, the variants run stacked: [variants * L, hidden]
            y = torch.cat(attended)
            h = model.block_input(y, layer, Part.FFN)
            acc = torch.zeros_like(y)
            if shared[Part.FFN] is not None:
                model.ffn(acc, h, shared[Part.FFN])
            for v, bits in enumerate(variants):
                if bits:
                    rows = slice(v * length, (v + 1) * length)
                    model.ffn(acc[rows], h[rows], own[bits][Part.FFN])
            y = model.join(acc, y, layer, Part.FFN)
            h = model.final_norm(model.layers(y, count, step, layer + 1))
            for v, bits in enumerate(variants):  # the LM head one variant at a time: [L, vocab] logits at once
                logits = model.logits(h[v * length : (v + 1) * length], self.all_slices)
                totals[bits] += kl_sum(self.logp[p], self.p[p], logits)
        return {bits: total / self.tokens for bits, total in totals.items()}

    @torch.inference_mode()
    def lm_head_losses(self, index: int, variants: tuple[int, ...]) -> dict[int, float]:
        """{bits: loss} of LM head slice `index` at each of `variants` (0: its weights zeroed, so its
        logits are 0), every layer and the other slices at the reference."""
        model = self.model
        vocab, rows = model.shape.vocab, model.shape.lm_head_rows
        start, stop = index * rows, min((index + 1) * rows, vocab)
        chunks = {bits: model.chunk(Part.LM_HEAD, [model.piece(model.spec.layers, index, Part.LM_HEAD, bits)]) for bits in variants if bits}
        totals = dict.fromkeys(variants, 0.0)
        for p in range(len(self.passages)):
            h = self.final[p]
            columns = slice(start, stop)
            for bits in variants:
                variant = h.new_zeros(h.shape[0], rows)
                if bits:
                    lm_head_chunk(variant, h, chunks[bits][0], ((0, rows),))
                totals[bits] += lm_head_slice_kl(
                    self.logits[p][:, columns], self.p[p][:, columns], self.log_normalizer[p], variant[:, : stop - start],
                )
        return {bits: total / self.tokens for bits, total in totals.items()}

    @torch.inference_mode()
    def plan_loss(self, plan_bits: tuple[tuple[int, ...], ...]) -> float:
        """The measured loss of a whole plan: `plan_bits[layer][index]` for every shard (0: dropped),
        then a row of LM head slice bitwidths (none 0)."""
        model = self.model
        layers = model.spec.layers
        xs = [states[0] for states in self.entering]
        steps = [model.step(len(ids)) for ids in self.passages]
        for layer, row in enumerate(plan_bits[:layers]):
            kept = kept_by_bits(row)
            for part in PARTS:
                chunks = [(model.kept_chunk(layer, part, bits, indices, self.reference_bits), model.heads(indices)) for bits, indices in kept]
                for p, (x, step) in enumerate(zip(xs, steps, strict=True)):
                    h = model.block_input(x, layer, part)
                    acc = torch.zeros_like(x)
                    for chunk, heads in chunks:
                        if part == Part.ATTN:
                            model.attention(acc, h, chunk, heads, step)
                        else:
                            model.ffn(acc, h, chunk)
                    xs[p] = model.join(acc, x, layer, part)
        lm_head = kept_by_bits(plan_bits[layers])
        if sum(len(indices) for _, indices in lm_head) != model.shape.lm_head_shards:
            raise ValueError("a plan keeps every LM head slice")
        chunks = [
            (model.chunk(Part.LM_HEAD, [model.piece(layers, index, Part.LM_HEAD, bits) for index in indices]), model.columns(indices))
            for bits, indices in lm_head
        ]
        total = 0.0
        for p, x in enumerate(xs):
            total += kl_sum(self.logp[p], self.p[p], model.logits(model.final_norm(x), chunks))
        return total / self.tokens


# ----------------------------------------------------------------------------------------------
# Tasks, run in this process or in spawned workers
# ----------------------------------------------------------------------------------------------


def _open_measurer(store_path: str, passages: tuple[tuple[int, ...], ...], reference: int) -> DecoderMeasurer:
    """The measurer of a store (`sticc.profile.tasks.TaskRunner`'s start: plain arguments, so a spawned worker can call it)."""
    return DecoderMeasurer(Store.open(store_path), passages, reference)


def decoder_metric(reference: int) -> str:
    metric = (
        f"KL(reference || variant) of the next-token distribution in nats, reference = the store's {reference}-bit "
        "weights, mean over every position of the calibration passages, only the named shard or LM head slice "
        "changed (an LM head slice at 0 bits: its logits set to 0)"
    )
    if reference != 32:
        metric += f" (the store has no 32-bit versions: {reference} bits is the reference)"
    return metric


def measure_decoder_importance(
    store: Store,
    texts: list[str] | None = None,
    progress: Progress = quiet,
    workers: int | None = None,
    additivity_plans: int = DEFAULT_ADDITIVITY_PLANS,
    source: str | None = None,
) -> ImportanceProfile:
    """Measure the importance profile of the decoder `store` on `texts` (one passage each; default:
    IMPORTANCE_PASSAGES); the arguments are `sticc.profile.measure_importance.measure_importance`'s."""
    return measure_decoder_calibrated(store, decoder_calibration(store, texts, source), progress, workers, additivity_plans)


def measure_decoder_calibrated(
    store: Store,
    calibration: DecoderCalibration,
    progress: Progress = quiet,
    workers: int | None = None,
    additivity_plans: int = DEFAULT_ADDITIVITY_PLANS,
) -> ImportanceProfile:
    """`measure_decoder_importance` on already tokenized passages."""
    if not store.spec.is_decoder:
        raise UserError(f"store {store.path} holds an encoder: its importance is measured by measure_importance")
    reference = reference_bits(store)
    variants = tuple(sorted({0} | set(store.bits) - {reference}))
    layers = store.spec.layers
    # heaviest first: a shard of layer l recomputes layers l.. (balances the workers); the LM head's slices last
    positions = [(layer, index) for layer in range(layers) for index in range(store.shards_per_layer)]
    slices = [(layers, index) for index in range(store.lm_head_shards)]
    tasks = [("shard", position, variants) for position in positions] + [("lm_head", position, variants) for position in slices]
    loss, additivity = measure_losses(
        store, _open_measurer, (str(store.path), calibration.passages, reference), tasks, reference, workers,
        additivity_plans, progress, "measuring shards and LM head slices",
    )
    return ImportanceProfile(
        store.store_id, decoder_metric(reference), calibration.record(),
        {position: loss[position] for position in positions + slices}, additivity,
    )


def decoder_cache_path(store: Store, calibration: DecoderCalibration) -> Path:
    """Where the decoder profile of `store` on `calibration` is cached."""
    return cache_dir(store.store_id) / f"importance-kl-v{DECODER_PROFILER_VERSION}-{calibration.sha256[:16]}.json"
