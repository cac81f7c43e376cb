"""The decoder kernels of a runner (Llama family, GPT-2): embedding, pre-norm blocks with a KV
cache, the LM head in vocabulary slices, generation, and the decoder's runner class and command line.

A chunk reaches a kernel in kernel form (`sticc.runtime.decode.DecodesChunks`): `weights` fp32
[blocks, members, block] and `biases` [bias_blocks, members, bias block]. An attention piece's
blocks are g query blocks, a key and a value block, and g output blocks (g query heads per
key/value head; `sticc.model.sharding`), so a chunk is one GEMM for q, k and v, one attention call
with grouped-query heads, and one GEMM for the output, whatever its size. An FFN chunk is [gate,]
up and down blocks; an LM head chunk is vocabulary rows.

Generation is a prefill call over the prompt, then one call per token. The KV cache is one
allocation made at construction for the context the runner was compiled for (`CONTEXT`), counted
apart from the weight pool (`kv_cache_bytes`). Each call writes the keys and values of the kept
shards' key/value heads at its positions; a dropped shard's heads are neither written nor read.
The cache holds one sequence: a generation holds the runner from its prefill to its end
(`SequenceHold`), so generations and calls from several threads take turns whole.
"""

import json
import math
import threading
import time
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

from sticc.runtime.core import (
    ACTIVATIONS,
    Extent,
    RunnerCore,
    StoreError,
    TraceEvent,
    error_line,
    load_tokenizer,
    open_runner,
    piece_blocks,
    runner_arguments,
)
from sticc.runtime.decode import DecodesChunks


def decoder_layer_vectors(layernorm: bool, out_bias: bool) -> tuple:
    """A decoder layer header's vectors (each `hidden` fp32 values), in stored order."""
    vectors = []
    for part in ("attn", "ffn"):
        vectors.append(f"{part}_norm_weight")
        if layernorm:
            vectors.append(f"{part}_norm_bias")
        if out_bias:
            vectors.append(f"{part}_out_bias")
    return tuple(vectors)


def decoder_global_vectors(layernorm: bool) -> tuple:
    """A decoder's global header: the final norm's vectors."""
    return ("final_norm_weight", "final_norm_bias") if layernorm else ("final_norm_weight",)


@dataclass(frozen=True)
class DecoderShape:
    """What the kernels need to know of the model (from the store's model spec)."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    shards_per_layer: int
    vocab: int
    position_kind: str  # "rope", or "absolute" (a learned position table)
    norm_kind: str  # "rmsnorm" or "layernorm"
    layer_norm_eps: float
    activation: str
    ffn_kind: str  # "gated" or "mlp"
    qkv_bias: bool
    out_bias: bool
    lm_head_shards: int
    lm_head_rows: int  # vocabulary rows per LM head slice (the last one padded)
    rope_theta: float = 10000.0
    rope_scaling: str = ""  # "", "linear" or "llama3"
    rope_factor: float = 1.0
    rope_low_freq_factor: float = 1.0
    rope_high_freq_factor: float = 4.0
    rope_original_positions: int = 8192
    eos_token_ids: tuple = ()

    @property
    def query_groups(self) -> int:
        return self.heads // self.kv_heads

    @property
    def kv_per_shard(self) -> int:
        return self.kv_heads // self.shards_per_layer


def rope_frequencies(shape: DecoderShape) -> torch.Tensor:
    """The rotary inverse frequencies [head_dim / 2], with the model's theta and scaling."""
    d = shape.head_dim
    inv_freq = 1.0 / (shape.rope_theta ** (torch.arange(0, d, 2, dtype=torch.int64).to(torch.float32) / d))
    if shape.rope_scaling == "linear":
        inv_freq = inv_freq / shape.rope_factor
    elif shape.rope_scaling == "llama3":
        low_wavelen = shape.rope_original_positions / shape.rope_low_freq_factor
        high_wavelen = shape.rope_original_positions / shape.rope_high_freq_factor
        wavelen = 2 * math.pi / inv_freq
        scaled = torch.where(wavelen > low_wavelen, inv_freq / shape.rope_factor, inv_freq)
        smooth = (shape.rope_original_positions / wavelen - shape.rope_low_freq_factor) / (
            shape.rope_high_freq_factor - shape.rope_low_freq_factor
        )
        smoothed = (1 - smooth) * scaled / shape.rope_factor + smooth * scaled
        medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
        inv_freq = torch.where(medium, smoothed, scaled)
    return inv_freq


def rope_tables(shape: DecoderShape, positions: int) -> tuple:
    """(cos, sin) [positions, head_dim] of rotary positions 0..positions-1."""
    freqs = torch.outer(torch.arange(positions, dtype=torch.int64).to(torch.float32), rope_frequencies(shape))
    angles = torch.cat((freqs, freqs), dim=-1)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate `x` [..., L, d] by (cos, sin) [L, d] (the half-split convention of HF Llama)."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


def norm(x: torch.Tensor, weight: torch.Tensor, bias, kind: str, eps: float) -> torch.Tensor:
    """RMSNorm or LayerNorm over the last dimension."""
    if kind == "rmsnorm":
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight
    return F.layer_norm(x, (x.shape[-1],), weight, bias, eps)


class Step(NamedTuple):
    """What one call's kernels share: its positions and the KV cache."""

    past: int  # positions already cached
    length: int  # positions this call adds
    cos: torch.Tensor | None  # rotary tables at this call's positions [length, d] (None: learned positions)
    sin: torch.Tensor | None
    mask: torch.Tensor | None  # [length, past + length], True: attend (None: no mask needed or causal)
    causal: bool  # the plain causal mask (a prompt with nothing cached)


def call_step(rope, past: int, length: int) -> Step:
    """The `Step` of a call adding `length` positions after `past` cached ones; `rope` the
    (cos, sin) tables over the context (`rope_tables`), None for learned positions."""
    end = past + length
    cos = sin = None
    if rope is not None:
        cos, sin = rope[0][past:end], rope[1][past:end]
    mask, causal = None, False
    if length > 1 and past == 0:
        causal = True
    elif length > 1:
        mask = torch.arange(end)[None, :] <= (past + torch.arange(length))[:, None]
    return Step(past, length, cos, sin, mask, causal)


def attention_chunk(
    acc: torch.Tensor, h: torch.Tensor, weights: torch.Tensor, biases: torch.Tensor, keys: torch.Tensor,
    values: torch.Tensor, heads, step: Step, groups: int, head_dim: int, qkv_bias: bool,
) -> None:
    """Add the attention output of a chunk to `acc` [L, hidden]: h [L, hidden] (batch 1, normed),
    keys/values one layer's cache [kv_heads, context, d], `heads` the chunk's key/value heads (a
    slice or an index tensor), in member order."""
    length, hidden = h.shape
    blocks = weights.shape[0]
    nq = groups + 2
    width = weights.shape[1] * weights.shape[2] // hidden  # rows of one block over the chunk's members
    kv = width // head_dim
    w_qkv = weights[:nq].reshape(nq * width, hidden)
    qkv = torch.addmm(biases.reshape(-1), h, w_qkv.t()) if qkv_bias else h @ w_qkv.t()
    qkv = qkv.view(length, nq, kv, head_dim)
    q = qkv[:, :groups].permute(2, 1, 0, 3).reshape(1, kv * groups, length, head_dim)  # kv-major query heads
    k = qkv[:, groups].transpose(0, 1)  # [kv, L, d]
    v = qkv[:, groups + 1].transpose(0, 1)
    if step.cos is not None:
        q = apply_rope(q, step.cos, step.sin)
        k = apply_rope(k, step.cos, step.sin)
    end = step.past + length
    if isinstance(heads, slice):
        keys[heads, step.past : end] = k
        values[heads, step.past : end] = v
        all_k, all_v = keys[heads, :end], values[heads, :end]
    else:
        keys[:, step.past : end].index_copy_(0, heads, k)
        values[:, step.past : end].index_copy_(0, heads, v)
        all_k, all_v = keys[:, :end].index_select(0, heads), values[:, :end].index_select(0, heads)
    context = F.scaled_dot_product_attention(
        q, all_k.unsqueeze(0), all_v.unsqueeze(0), attn_mask=step.mask, is_causal=step.causal, enable_gqa=groups > 1,
    )  # [1, kv * g, L, d]
    context = context.view(kv, groups, length, head_dim).permute(2, 1, 0, 3).reshape(length, groups * width)
    acc.addmm_(context, weights[nq:blocks].reshape(groups * width, hidden))


def ffn_chunk(acc: torch.Tensor, h: torch.Tensor, weights: torch.Tensor, biases: torch.Tensor, activation: str, gated: bool) -> None:
    """Add a chunk of FFN slices to `acc` [L, hidden]: act(h Wgate^T) * (h Wup^T) Wdown (gated), or
    act(h Wup^T + b) Wdown."""
    hidden = h.shape[-1]
    units = weights.shape[1] * weights.shape[2] // hidden
    act = ACTIVATIONS[activation]
    if gated:
        gate_up = (h @ weights[:2].reshape(2 * units, hidden).t()).view(-1, 2, units)
        inner = act(gate_up[:, 0]) * gate_up[:, 1]
        acc.addmm_(inner, weights[2].view(units, hidden))
    else:
        up = weights[0].view(units, hidden).t()
        inner = torch.addmm(biases.reshape(-1), h, up) if biases.numel() else h @ up
        acc.addmm_(act(inner), weights[1].view(units, hidden))


def lm_head_chunk(logits: torch.Tensor, h: torch.Tensor, weights: torch.Tensor, columns: tuple) -> None:
    """Write the logits of a chunk's vocabulary slices: `logits` [L, padded vocab], `columns` the
    (start, stop) of each member's rows in the padded vocabulary, in member order."""
    hidden = h.shape[-1]
    members = weights.shape[1]
    rows = weights.shape[2] // hidden
    out = h @ weights[0].view(members * rows, hidden).t()
    for i, (start, stop) in enumerate(columns):
        logits[:, start:stop] = out[:, i * rows : (i + 1) * rows]


class KVCache(NamedTuple):
    """The state `forward` returns and takes back: how many positions the runner's cache holds for
    the sequence it is decoding. The cache itself lives in the runner; a handle is valid, on the
    runner that returned it, until that runner's next call that does not continue from it."""

    length: int
    sequence: int  # which sequence of the runner's (each call without `past` starts a new one)
    runner: int  # the runner's identity (`id`)


class SequenceHold:
    """Who holds a decoder runner's one KV cache: the thread of a `forward` call, for the call, or
    a generation, from its prefill until it ends or is closed (then given back from whichever
    thread ends it: a generation may be stepped from several threads). Calls from other threads
    wait; the holder's own thread may take it again (a call there starts or continues a sequence
    as it would alone, and a suspended generation it displaces raises at its next step)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._thread = None  # the holder's thread
        self._depth = 0

    def __enter__(self) -> "SequenceHold":
        me = threading.get_ident()
        with self._cond:
            self._cond.wait_for(lambda: not self._depth or self._thread == me)
            self._thread = me
            self._depth += 1
        return self

    def __exit__(self, *exc) -> None:
        with self._cond:
            self._depth -= 1
            if not self._depth:
                self._thread = None
                self._cond.notify_all()


class Sampler:
    """Greedy decoding (temperature 0) or seeded sampling with an optional top-k cut."""

    def __init__(self, temperature: float, top_k, seed: int) -> None:
        if not (temperature >= 0 and math.isfinite(temperature)):
            raise ValueError("temperature must be a finite number >= 0")
        if top_k is not None and top_k < 1:
            raise ValueError("top_k must be at least 1")
        self.temperature, self.top_k = temperature, top_k
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, logits: torch.Tensor) -> int:
        scaled = logits.double() / self.temperature if self.temperature else None
        if scaled is None or not bool(torch.isfinite(scaled).all()):
            return int(torch.argmax(logits))  # greedy: temperature 0, or one so small it is its limit
        if self.top_k is not None and self.top_k < scaled.numel():
            cut = torch.topk(scaled, self.top_k).values[-1]
            scaled = scaled.masked_fill(scaled < cut, float("-inf"))
        return int(torch.multinomial(torch.softmax(scaled, -1), 1, generator=self.generator))


class DecoderRunner(DecodesChunks, RunnerCore):
    """A decoder runner: everything but the literals and the schedule (the generated subclass)."""

    SHAPE: DecoderShape
    GLOBAL_HEADER: Extent
    LAYER_HEADERS: tuple  # of Extent
    PARTS: tuple  # the part of each chunk in LOADS, by key
    INDICES: tuple  # the shard (or LM head slice) index of each member of each chunk in LOADS, by key
    CONTEXT: int  # positions the KV cache holds

    def piece_blocks(self, key: int) -> tuple:
        shape = self.SHAPE
        return piece_blocks(self.PARTS[key], shape.query_groups, shape.ffn_kind == "gated", shape.qkv_bias)

    def open_family(self) -> None:
        shape = self.SHAPE
        self._tokenizer = None
        self.open_embeddings()
        layernorm = shape.norm_kind == "layernorm"
        vectors = self.read_pinned(self.GLOBAL_HEADER, "global header").view(torch.float32).view(-1, shape.hidden)
        self.final_norm_vectors = dict(zip(decoder_global_vectors(layernorm), vectors, strict=True))
        self.layer_headers = []
        for layer, extent in enumerate(self.LAYER_HEADERS):
            vectors = self.read_pinned(extent, f"layer {layer} header").view(torch.float32).view(-1, shape.hidden)
            self.layer_headers.append(dict(zip(decoder_layer_vectors(layernorm, shape.out_bias), vectors, strict=True)))
        # the KV cache, made once: [layers, 2, kv_heads, context, head_dim], outside the weight pool
        self.kv_cache = torch.zeros(shape.layers, 2, shape.kv_heads, self.CONTEXT, shape.head_dim)
        self.kv_cache_bytes = self.kv_cache.numel() * 4
        self._sequence = 0
        self._cached = 0
        self._hold = SequenceHold()
        self._latest_generation = None  # the runner's last generation's stats, from any thread
        self._rope = rope_tables(shape, self.CONTEXT) if shape.position_kind == "rope" else None
        self.chunk_heads = {}  # key -> the chunk's key/value heads in member order (a slice when contiguous)
        self.chunk_columns = {}  # key -> the padded vocabulary columns of each LM head member
        for key, part in enumerate(self.PARTS):
            indices = self.INDICES[key]
            if part == "attn":
                heads = [i * shape.kv_per_shard + j for i in indices for j in range(shape.kv_per_shard)]
                contiguous = heads == list(range(heads[0], heads[0] + len(heads)))
                self.chunk_heads[key] = slice(heads[0], heads[-1] + 1) if contiguous else torch.tensor(heads)
            elif part == "lm_head":
                rows = shape.lm_head_rows
                self.chunk_columns[key] = tuple((i * rows, (i + 1) * rows) for i in indices)

    def warm_up(self) -> None:
        """Run every kernel once on every chunk shape of the plan at one token and at the planned
        prompt length (zeros in the scratch; the KV cache is left as it was)."""
        shape = self.SHAPE
        with torch.inference_mode():
            for length in sorted({1, min(self.PLANNED_SEQ_LEN, self.CONTEXT)}):
                h = torch.zeros(length, shape.hidden)
                acc = torch.zeros(length, shape.hidden)
                logits = torch.zeros(length, shape.lm_head_shards * shape.lm_head_rows)
                step = self._step(0, length)
                scratch_keys = torch.zeros(shape.kv_heads, length, shape.head_dim)
                for key, weights, biases in self.warm_up_chunks():
                    part = self.PARTS[key]
                    if part == "attn":
                        attention_chunk(acc, h, weights, biases, scratch_keys, scratch_keys.clone(), self.chunk_heads[key], step,
                                        shape.query_groups, shape.head_dim, shape.qkv_bias)
                    elif part == "ffn":
                        self.ffn(acc, h, weights, biases)
                    else:
                        self.lm_head(logits, h, weights, key)
                ones = torch.ones(shape.hidden)
                norm(acc, ones, ones, shape.norm_kind, shape.layer_norm_eps)

    # -- per call --------------------------------------------------------------------------------

    def _step(self, past: int, length: int) -> Step:
        return call_step(self._rope, past, length)

    def forward(self, input_ids, past: KVCache | None = None, all_logits: bool = True, trace: list[TraceEvent] | None = None):
        """(logits, past): logits [1, L, vocab] for token ids [1, L] (or only the last position's
        [1, 1, vocab] with `all_logits=False`), continuing the sequence `past` (None: a new one);
        sets `last_stats`. See `EncoderRunner.forward` for `trace`. A generation in progress on
        another thread is waited for (`SequenceHold`)."""
        with self._hold:
            return self._forward(input_ids, past, all_logits, trace)

    def _forward(self, input_ids, past: KVCache | None, all_logits: bool, trace: list[TraceEvent] | None = None):
        """`forward` without taking the sequence hold (a generation's steps: it holds it)."""
        input_ids = torch.as_tensor(input_ids, dtype=torch.int64)
        if input_ids.ndim == 1:
            input_ids = input_ids[None]
        if input_ids.ndim != 2 or input_ids.shape[0] != 1 or input_ids.shape[1] == 0:
            raise ValueError("input_ids must be [1, length] with length >= 1 (a decoder runner decodes one sequence)")
        if past is not None and not isinstance(past, KVCache):
            raise ValueError("past must be the KVCache a previous call returned, or None")
        start = 0 if past is None else past.length
        length = input_ids.shape[1]
        if int(input_ids.min()) < 0 or int(input_ids.max()) >= self.SHAPE.vocab:
            raise ValueError(f"token ids must lie in [0, {self.SHAPE.vocab})")
        if start + length > self.CONTEXT:
            raise ValueError(
                f"{start + length} positions exceed the context of {self.CONTEXT} this runner was compiled for "
                f"(`sticc compile --context`)"
            )

        def compute(call):
            # under the call lock: the cache holds one sequence, continued only from its latest state
            if past is not None and (past.runner != id(self) or past.sequence != self._sequence or past.length != self._cached):
                raise ValueError("past is not the state this runner's last call returned (the cache holds another sequence)")
            if past is None:
                self._sequence += 1
                self._cached = 0
            with torch.inference_mode():
                x = self._embed(input_ids[0], start)
                self.start_io(call)
                logits = self.schedule(x, call, self._step(start, length), all_logits)
            self._cached = start + length
            return logits[None], KVCache(self._cached, self._sequence, id(self))

        return self.run_call(compute, trace)

    def publish_stats(self, stats: dict) -> None:
        stats["kv_cache_bytes"] = self.kv_cache_bytes
        super().publish_stats(stats)

    def schedule(self, x: torch.Tensor, call, step: Step, all_logits: bool) -> torch.Tensor:
        raise NotImplementedError("generated runners define the schedule")

    def _embed(self, ids: torch.Tensor, start: int) -> torch.Tensor:
        """Word (+ learned position) rows [L, hidden] of this call's positions."""
        positions = torch.arange(start, start + len(ids)) if self.POSITION_ROWS is not None else None
        return self.embedding_rows(ids, positions)

    def block_input(self, x: torch.Tensor, layer: int, part: str) -> torch.Tensor:
        """The normed input of block `part` of `layer` (pre-norm)."""
        header = self.layer_headers[layer]
        return norm(x, header[f"{part}_norm_weight"], header.get(f"{part}_norm_bias"), self.SHAPE.norm_kind, self.SHAPE.layer_norm_eps)

    def attention(self, acc, h, weights, biases, layer: int, key: int, step: Step) -> None:
        shape = self.SHAPE
        cache = self.kv_cache[layer]
        attention_chunk(acc, h, weights, biases, cache[0], cache[1], self.chunk_heads[key], step, shape.query_groups, shape.head_dim, shape.qkv_bias)

    def ffn(self, acc, h, weights, biases) -> None:
        ffn_chunk(acc, h, weights, biases, self.SHAPE.activation, self.SHAPE.ffn_kind == "gated")

    def join(self, acc: torch.Tensor, x: torch.Tensor, layer: int, part: str) -> torch.Tensor:
        """The residual closing block `part` of `layer`: x + the block's output (+ its bias)."""
        bias = self.layer_headers[layer].get(f"{part}_out_bias")
        if bias is not None:
            acc += bias
        return acc.add_(x)

    def final_norm(self, x: torch.Tensor, all_logits: bool) -> torch.Tensor:
        """The final norm of the positions whose logits the call returns."""
        vectors = self.final_norm_vectors
        x = x if all_logits else x[-1:]
        return norm(x, vectors["final_norm_weight"], vectors.get("final_norm_bias"), self.SHAPE.norm_kind, self.SHAPE.layer_norm_eps)

    def new_logits(self, h: torch.Tensor) -> torch.Tensor:
        return h.new_empty(h.shape[0], self.SHAPE.lm_head_shards * self.SHAPE.lm_head_rows)

    def lm_head(self, logits, h, weights, key: int) -> None:
        lm_head_chunk(logits, h, weights, self.chunk_columns[key])

    def logits_of(self, logits: torch.Tensor) -> torch.Tensor:
        return logits[:, : self.SHAPE.vocab]

    # -- generation ----------------------------------------------------------------------------

    @property
    def generation_stats(self):
        """The stats of the calling thread's last generation on this runner (`generate_ids`), else
        of the runner's last generation from any thread; None before any. Kept per thread beside
        `last_stats`, in the core's thread-local `_stats`."""
        mine = getattr(self._stats, "generation", None)
        return mine if mine is not None else self._latest_generation

    def generate_ids(self, input_ids, max_new_tokens: int, temperature: float = 0.0, top_k=None, seed: int = 0):
        """Yield up to `max_new_tokens` token ids after the prompt `input_ids` (a list or [1, L]):
        a prefill call, then one call per token; stops after an end-of-sequence id (not yielded).
        `generation_stats` then holds the time to first token, each token's latency and IO.
        The generation holds the runner from its prefill until it ends or is closed: calls from
        other threads wait for it (`SequenceHold`)."""
        sampler = Sampler(temperature, top_k, seed)
        if max_new_tokens < 0:
            raise ValueError("max_new_tokens must be >= 0")
        ids = torch.as_tensor(input_ids, dtype=torch.int64).reshape(1, -1)
        if ids.shape[1] + max_new_tokens - 1 > self.CONTEXT:
            raise ValueError(
                f"a prompt of {ids.shape[1]} tokens and {max_new_tokens} new ones exceed the context of {self.CONTEXT} "
                f"this runner was compiled for (`sticc compile --context`)"
            )
        with self._hold:
            stats = {"prompt_tokens": ids.shape[1], "tokens": 0, "time_to_first_token_s": None, "token_latency_s": [], "io_bytes_per_token": [],
                     "prefill_io_bytes": None, "peak_weight_bytes": self.pool.layout.nbytes, "kv_cache_bytes": self.kv_cache_bytes}
            self._stats.generation = self._latest_generation = stats
            if max_new_tokens == 0:
                return
            start_s = time.perf_counter()
            logits, past = self._forward(ids, None, False)
            stats["prefill_io_bytes"] = self.last_stats["io_bytes"]
            stats["peak_weight_bytes"] = max(stats["peak_weight_bytes"], self.last_stats["peak_weight_bytes"])
            for produced in range(max_new_tokens):
                token = sampler(logits[0, -1])
                if produced == 0:
                    stats["time_to_first_token_s"] = time.perf_counter() - start_s
                if token in self.SHAPE.eos_token_ids:
                    return
                stats["tokens"] += 1
                yield token
                if produced + 1 == max_new_tokens:
                    return
                logits, past = self._forward([[token]], past, False)
                stats["token_latency_s"].append(self.last_stats["latency_s"])
                stats["io_bytes_per_token"].append(self.last_stats["io_bytes"])
                stats["peak_weight_bytes"] = max(stats["peak_weight_bytes"], self.last_stats["peak_weight_bytes"])

    def generate(self, prompt: str, max_new_tokens: int, temperature: float = 0.0, top_k=None, seed: int = 0):
        """Yield the text of up to `max_new_tokens` tokens generated after `prompt`, piece by piece
        as it is produced (bytes of a character split over tokens wait for the rest)."""
        tokenizer = self.tokenizer()
        prompt_ids = tokenizer.encode(prompt).ids
        if not prompt_ids:
            raise ValueError("the prompt is empty (no tokens)")
        produced, shown = [], ""
        for token in self.generate_ids(prompt_ids, max_new_tokens, temperature, top_k, seed):
            produced.append(token)
            text = tokenizer.decode(produced, skip_special_tokens=False)
            if text.endswith("\ufffd"):
                continue  # an incomplete UTF-8 sequence: wait for its next bytes
            yield text[len(shown) :]
            shown = text
        text = tokenizer.decode(produced, skip_special_tokens=False)
        if len(text) > len(shown):
            yield text[len(shown) :]

    def tokenizer(self):
        """The store's tokenizer (tokenizer.json), loaded once, as the model's own: no truncation, no padding."""
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.store_dir)
        return self._tokenizer


def decoder_main(runner_class, argv=None) -> int:
    """The decoder runner's command line: generate after each prompt, streaming text to stdout."""
    import sys

    parser = runner_arguments(runner_class, "print a last line with time to first token, per-token latency and IO")
    parser.add_argument("prompts", nargs="*", help="prompts (default: all of stdin, as one prompt)")
    parser.add_argument("--generate", type=int, default=32, metavar="N", help="tokens to generate after each prompt (default 32)")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 (default): greedy; above 0: sampling")
    parser.add_argument("--top-k", type=int, help="sample among the k most likely tokens only")
    parser.add_argument("--seed", type=int, default=0, help="the sampler's seed")
    args = parser.parse_args(argv)
    prompts = args.prompts or [sys.stdin.read()]
    runner = None
    try:
        runner = open_runner(runner_class, args)
        for prompt in prompts:
            for piece in runner.generate(prompt, args.generate, args.temperature, args.top_k, args.seed):
                sys.stdout.write(piece)
                sys.stdout.flush()
            sys.stdout.write("\n")
            if args.stats:
                stats = dict(runner.generation_stats)
                latencies = sorted(stats["token_latency_s"])
                stats["median_token_latency_s"] = latencies[len(latencies) // 2] if latencies else None
                if runner.io_bandwidth_cap_Bps:
                    stats["emulated_io_bandwidth_Bps"] = runner.io_bandwidth_cap_Bps
                print(json.dumps({"stats": stats}))
    except (StoreError, ValueError, OSError) as error:
        print(error_line(error), file=sys.stderr)
        return 1
    finally:
        if runner is not None:
            runner.close()
    return 0
