"""The BERT-family kernels of a runner: embedding, attention and FFN chunks, the post-LN join,
and the encoder's runner class (`encode` follows sentence-transformers: `sticc.runtime.sentence`)
and command line.

A chunk reaches a kernel in kernel form: `weights` fp32 [blocks, members, rows/blocks * hidden]
and `biases` fp32 [bias_blocks, members, bias_len/bias_blocks] (`sticc.runtime.decode`). For
attention the blocks are Wq, Wk, Wv rows of the members' heads and Wo's columns of those heads, so
a chunk is three GEMMs and one attention call whatever its size; for the FFN, up rows and down
columns: two GEMMs. Parameters come from the model spec (`EncoderShape`).
"""

import json
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sticc.runtime.core import (
    ACTIVATIONS,
    Extent,
    RowTable,
    RunnerCore,
    StoreError,
    TraceEvent,
    error_line,
    load_tokenizer,
    open_runner,
    parse_quantity,
    piece_blocks,
    runner_arguments,
)
from sticc.runtime.decode import DecodesChunks
from sticc.runtime.elastic import Adaptation, DeadlineKeeper, choose_plan, one_thread, predicted_latency_s
from sticc.runtime.sentence import (
    BARE_PIPELINE,
    PRECISIONS,
    SentencePipeline,
    finish_embeddings,
    length_batches,
    pool,
    progress,
    quantize_embeddings,
    truncation_length,
)

# per part: (row blocks, bias blocks) of a piece (sticc/model/sharding.py cuts them so)
PART_BLOCKS = {"attn": piece_blocks("attn"), "ffn": piece_blocks("ffn")}


def kernel_form(weights: torch.Tensor, biases: torch.Tensor, part: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Pieces stacked as [members, rows, cols] and [members, bias_len] -> kernel form (a copy)."""
    blocks, bias_blocks = PART_BLOCKS[part]
    members = weights.shape[0]
    w = weights.reshape(members, blocks, -1).transpose(0, 1).contiguous()
    b = biases.reshape(members, bias_blocks, -1).transpose(0, 1).contiguous()
    return w, b


def attention_chunk(
    acc: torch.Tensor, x: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor, biases: torch.Tensor,
    heads: int, head_dim: int,
) -> None:
    """Add the attention output of a chunk to `acc` [B*L, hidden]: x [B, L, hidden], the chunk's
    members each `heads` heads of `head_dim`, mask [B, 1, 1, L] (True: attend)."""
    batch, length, hidden = x.shape
    members = weights.shape[1]
    width = members * heads * head_dim
    qkv = torch.addmm(biases.view(-1), x.view(batch * length, hidden), weights[:3].view(3 * width, hidden).t())
    q, k, v = qkv.view(batch, length, 3, members * heads, head_dim).permute(2, 0, 3, 1, 4)
    context = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # [B, heads, L, d]
    context = context.transpose(1, 2).reshape(batch * length, width)
    acc.addmm_(context, weights[3].view(width, hidden))


def ffn_chunk(acc: torch.Tensor, x: torch.Tensor, weights: torch.Tensor, biases: torch.Tensor, activation: str) -> None:
    """Add a chunk of FFN slices, act(x Wup^T + b) Wdown^T, to `acc` [B*L, hidden]."""
    hidden = x.shape[-1]
    units = weights.shape[1] * weights.shape[2] // hidden
    inner = torch.addmm(biases.view(-1), x.view(-1, hidden), weights[0].view(units, hidden).t())
    acc.addmm_(ACTIVATIONS[activation](inner), weights[1].view(units, hidden))


def residual_norm(
    acc: torch.Tensor, x: torch.Tensor, bias: torch.Tensor, ln_weight: torch.Tensor,
    ln_bias: torch.Tensor, eps: float,
) -> torch.Tensor:
    """LayerNorm(acc + bias + x): the join after a block's shards (post-LN)."""
    y = acc.view(x.shape).add_(bias).add_(x)
    return F.layer_norm(y, (x.shape[-1],), ln_weight, ln_bias, eps)


def attention_mask_bias(attention_mask: torch.Tensor) -> torch.Tensor:
    """Boolean [B, 1, 1, L] key mask for scaled_dot_product_attention."""
    return attention_mask.bool()[:, None, None, :]


def position_ids_for(input_ids: torch.Tensor, attention_mask: torch.Tensor, kind: str, pad_id: int) -> torch.Tensor:
    """Position ids as the family computes them ("absolute": 0..L-1; "roberta": offset past pad)."""
    length = input_ids.shape[1]
    if kind == "absolute":
        return torch.arange(length).expand(input_ids.shape[0], length)
    if kind == "roberta":
        not_pad = (input_ids != pad_id).to(torch.int64)
        return torch.cumsum(not_pad, dim=1) * not_pad + pad_id
    raise ValueError(f"unknown position kind {kind}")


@dataclass(frozen=True)
class EncoderShape:
    """What the kernels need to know of the model (from the store's model spec)."""

    layers: int
    hidden: int
    heads: int
    head_dim: int
    ffn: int
    shards_per_layer: int
    vocab: int
    type_vocab: int
    max_positions: int
    position_kind: str
    pad_token_id: int
    layer_norm_eps: float
    activation: str

    @property
    def heads_per_shard(self) -> int:
        return self.heads // self.shards_per_layer


# per-layer header: these fp32 vectors of `hidden` values, in this order, in one blob
LAYER_HEADER_VECTORS = (
    "attn_out_bias", "attn_norm_weight", "attn_norm_bias",
    "ffn_out_bias", "ffn_norm_weight", "ffn_norm_bias",
)
# global header: embedding LayerNorm weight and bias [hidden] each, then token types [type_vocab, hidden]
GLOBAL_HEADER_VECTORS = ("embed_norm_weight", "embed_norm_bias")


def embed_rows_nbytes(hidden: int, length: int, vocab: int, position_rows: bool = True) -> int:
    """Scratch bytes of one call's embedding rows: batch 1, every token distinct, a position row
    each (unless positions are rotary)."""
    return 4 * hidden * (min(length, vocab) + (length if position_rows else 0))


class EncoderRunner(DecodesChunks, RunnerCore):
    """A BERT-family runner: everything but the literals and the schedule (the generated subclass)."""

    SHAPE: EncoderShape
    POSITION_ROWS: RowTable  # encoders always have learned positions
    POSITION_CHECKSUMS: Extent
    GLOBAL_HEADER: Extent
    LAYER_HEADERS: tuple  # of Extent
    PARTS: tuple  # the part of each chunk in LOADS, by key
    PIPELINE: SentencePipeline = BARE_PIPELINE  # what runs after the encoder (the checkpoint's, else bare)

    def open_family(self) -> None:
        shape = self.SHAPE
        self._tokenizer = None
        self.adaptation = Adaptation()  # what calls with a deadline learned (`sticc.runtime.elastic`)
        self.open_embeddings()
        globals_ = self.read_pinned(self.GLOBAL_HEADER, "global header").view(torch.float32)
        self.embed_norm_weight = globals_[: shape.hidden]
        self.embed_norm_bias = globals_[shape.hidden : 2 * shape.hidden]
        self.token_types = globals_[2 * shape.hidden :].view(shape.type_vocab, shape.hidden)
        self.layer_headers = []
        for layer, extent in enumerate(self.LAYER_HEADERS):
            vectors = self.read_pinned(extent, f"layer {layer} header").view(torch.float32)
            self.layer_headers.append(dict(zip(LAYER_HEADER_VECTORS, vectors.view(-1, shape.hidden), strict=True)))

    # -- chunks in kernel form -------------------------------------------------------------------

    def piece_blocks(self, key: int) -> tuple:
        return PART_BLOCKS[self.PARTS[key]]

    def warm_up(self) -> None:
        """Run every kernel once at the planned sequence length on every chunk shape of the plan
        (zeros in the scratch): torch's one-time lazy work (thread pool, kernel selection, the
        per-shape setup of its matmul libraries) happens at construction, not in the first call."""
        shape = self.SHAPE
        length = self.PLANNED_SEQ_LEN
        with torch.inference_mode():
            x = torch.zeros(1, length, shape.hidden)
            mask = attention_mask_bias(torch.ones(1, length, dtype=torch.int64))
            acc = torch.zeros(length, shape.hidden)
            for key, weights, biases in self.warm_up_chunks():
                self.kernel(self.PARTS[key], acc, x, mask, weights, biases)
            ones = torch.ones(shape.hidden)
            residual_norm(acc, x, ones, ones, ones, shape.layer_norm_eps)
            torch.unique(torch.arange(length), sorted=True, return_inverse=True)

    def kernel(self, part: str, acc, x, mask, weights, biases) -> None:
        if part == "attn":
            attention_chunk(acc, x, mask, weights, biases, self.SHAPE.heads_per_shard, self.SHAPE.head_dim)
        else:
            ffn_chunk(acc, x, weights, biases, self.SHAPE.activation)

    # -- per call --------------------------------------------------------------------------------

    def forward(
        self, input_ids, attention_mask=None, token_type_ids=None, trace: list[TraceEvent] | None = None,
        deadline_s=None, keep_deadline: bool = True, plan=None,
    ) -> torch.Tensor:
        """Last hidden state [B, L, hidden] for token ids [B, L]; sets `last_stats`.

        `deadline_s` picks the most faithful of the runner's plans predicted to meet it at B x L
        tokens and, with `keep_deadline`, sheds chunks when the call falls behind
        (`sticc.runtime.elastic`); `last_stats` then says which plan ran, what was shed and
        whether the deadline was met. `plan` (an index into `PLANS`) forces a plan.

        `trace`, a list, receives `TraceEvent(event, key, time_s)`s (perf_counter seconds; key -1
        for the call's own events), `event` a `TraceEventName` value: "call_start", "embed_end",
        and per chunk "io_start" (ring space taken) and "io_end" (read and checked) from the IO
        lane, "compute_start" (handed over), "decode_end" and "compute_end"."""
        input_ids = torch.as_tensor(input_ids, dtype=torch.int64)
        if input_ids.ndim != 2:
            raise ValueError("input_ids must be [batch, length]")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        attention_mask = torch.as_tensor(attention_mask, dtype=torch.int64)
        if attention_mask.shape != input_ids.shape:
            raise ValueError("attention_mask must have the shape of input_ids")

        tokens = input_ids.numel()
        if deadline_s is not None and not 0 < deadline_s < float("inf"):
            raise ValueError(f"deadline_s must be positive and finite, not {deadline_s!r}")
        if plan is None:
            plan = choose_plan(self.PLANS, deadline_s, tokens, self.adaptation.slowdown if keep_deadline else 1.0)
        elif not (isinstance(plan, int) and 0 <= plan < len(self.PLANS)):
            raise ValueError(f"plan must be an index below {len(self.PLANS)}")
        keeper = None
        if deadline_s is not None:
            keeper = DeadlineKeeper(self.PLANS[plan], deadline_s, tokens, self.PLANNED_SEQ_LEN, keep_deadline, self.adaptation)

        def compute(call):
            with torch.inference_mode():
                # the embedding first, alone: its cold row reads gate every kernel (on one thread
                # when keeping a deadline: `sticc.runtime.elastic`)
                with one_thread(keeper is not None and keeper.shedding):
                    x = self._embed(input_ids, attention_mask, token_type_ids)
                self.start_io(call)
                return self.schedule(x, attention_mask_bias(attention_mask), call)

        result = self.run_call(compute, trace, plan, keeper)
        if keeper is not None and keeper.shedding:
            self.adaptation.after(keeper, self.last_stats["latency_s"])
        return result

    def schedule(self, x: torch.Tensor, mask: torch.Tensor, call) -> torch.Tensor:
        """The call's plan's schedule (generated: `schedule_<plan>`)."""
        return getattr(self, f"schedule_{call.plan}")(x, mask, call)

    def _embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids) -> torch.Tensor:
        shape = self.SHAPE
        if input_ids.numel() == 0:
            raise ValueError("input_ids is empty")
        if int(input_ids.min()) < 0 or int(input_ids.max()) >= shape.vocab:
            raise ValueError(f"token ids must lie in [0, {shape.vocab})")
        position_ids = position_ids_for(input_ids, attention_mask, shape.position_kind, shape.pad_token_id)
        if int(position_ids.max()) >= shape.max_positions:
            raise ValueError(f"sequence too long: the model has {shape.max_positions} positions")
        x = self.embedding_rows(input_ids, position_ids)
        if shape.type_vocab:
            types = torch.zeros_like(input_ids) if token_type_ids is None else torch.as_tensor(token_type_ids, dtype=torch.int64)
            if types.shape != input_ids.shape or int(types.min()) < 0 or int(types.max()) >= shape.type_vocab:
                raise ValueError(f"token_type_ids must have the shape of input_ids and lie in [0, {shape.type_vocab})")
            x += self.token_types[types]
        return F.layer_norm(x, (shape.hidden,), self.embed_norm_weight, self.embed_norm_bias, shape.layer_norm_eps)

    def join(self, acc: torch.Tensor, x: torch.Tensor, layer: int, part: str) -> torch.Tensor:
        """Residual add and LayerNorm closing block `part` ("attn" or "ffn") of `layer`."""
        header = self.layer_headers[layer]
        return residual_norm(
            acc, x, header[f"{part}_out_bias"], header[f"{part}_norm_weight"],
            header[f"{part}_norm_bias"], self.SHAPE.layer_norm_eps,
        )

    def _batch_weight(self, tokens: int) -> float:
        """A batch's share of a call's deadline: the most faithful plan's predicted latency at its
        tokens (batch x padded length), else its tokens."""
        predicted = predicted_latency_s(self.PLANS[0], tokens)
        return float(tokens) if predicted is None else predicted

    # -- text ----------------------------------------------------------------------------------

    @property
    def max_seq_length(self) -> int:
        """Tokens a text is truncated to, special tokens included: the pipeline's
        `max_seq_length`, never more than the model's positions."""
        shape = self.SHAPE
        return truncation_length(shape.max_positions, shape.position_kind, shape.pad_token_id, self.PIPELINE.max_seq_length)

    def text_tokenizer(self):
        """The store's tokenizer as the pipeline runs it: lowercasing if asked, truncation at
        `max_seq_length`, no padding (batches are padded by `pad_encodings`)."""
        if self._tokenizer is None:
            tokenizer = load_tokenizer(self.store_dir)
            if self.PIPELINE.do_lower_case:
                from tokenizers import normalizers

                lowercase = normalizers.Lowercase()
                tokenizer.normalizer = lowercase if tokenizer.normalizer is None else normalizers.Sequence([lowercase, tokenizer.normalizer])
            tokenizer.enable_truncation(max_length=self.max_seq_length)
            self._tokenizer = tokenizer
        return self._tokenizer

    def encode_texts(self, texts: list) -> list:
        """The tokenizer's encodings of `texts`, one text at a time: `encode_batch` runs on a
        thread pool (rayon) whose idle workers spin, and on a small CPU they take the compute
        lane's cores for a second or more after it returns (measured: a 30 ms call took 1.8 s)."""
        tokenizer = self.text_tokenizer()
        return [tokenizer.encode(text) for text in texts]

    def pad_encodings(self, encodings: list) -> tuple:
        """Token ids, attention mask and token types [n, L] of tokenized texts, right-padded to the
        longest."""
        length = max(len(e.ids) for e in encodings)
        ids = torch.full((len(encodings), length), self.SHAPE.pad_token_id, dtype=torch.int64)
        mask = torch.zeros(len(encodings), length, dtype=torch.int64)
        types = torch.zeros(len(encodings), length, dtype=torch.int64)
        for row, encoding in enumerate(encodings):
            n = len(encoding.ids)
            ids[row, :n] = torch.tensor(encoding.ids)
            mask[row, :n] = 1
            types[row, :n] = torch.tensor(encoding.type_ids)
        return ids, mask, types

    def tokenize(self, texts: list) -> tuple:
        """Token ids, attention mask and token types [n, L] for `texts`, padded to the longest."""
        return self.pad_encodings(self.encode_texts(list(texts)))

    def prompt_length(self, prompt: str) -> int:
        """Leading tokens a prompt takes, [CLS] included and a trailing special token not (what
        sentence-transformers leaves out of the pooling when `include_prompt` is false)."""
        encoding = self.text_tokenizer().encode(prompt)
        return len(encoding.ids) - (1 if encoding.special_tokens_mask and encoding.special_tokens_mask[-1] else 0)

    def encode(
        self, inputs=None, prompt_name=None, prompt=None, batch_size: int = 32, show_progress_bar=None,
        output_value="sentence_embedding", precision: str = "float32", convert_to_numpy: bool = True,
        convert_to_tensor: bool = False, device=None, normalize_embeddings: bool = False, truncate_dim=None,
        deadline_s=None, keep_deadline: bool = True, *, sentences=None,
    ):
        """Embeddings of `inputs` (a text or a list of texts) through the checkpoint's pipeline,
        with sentence-transformers' (6) signature and defaults: a numpy array [n, dim] (one vector
        for one text), a tensor with `convert_to_tensor`, a list of tensors with neither;
        `output_value="token_embeddings"` gives each text's unpadded last hidden state instead and
        None a dict per text. Texts are tokenized once, sorted by token count (longest first) and
        run `batch_size` at a time, each batch padded to its own longest text.

        `last_stats` then covers the whole call ("latency_s", "io_bytes", "peak_weight_bytes",
        "texts", "tokens", "padded_tokens") and each batch ("batches": the same per batch, with
        its "seq_len").

        `deadline_s` (seconds, for the whole call) is shared among the batches in proportion to
        their predicted latencies; each batch runs the most faithful plan predicted to meet its
        share and, with `keep_deadline` (default), sheds chunks when it falls behind
        (`forward`). The stats then add "deadline_s", "met_deadline" and what was shed.

        `sentences=` is the same as `inputs=` (sentence-transformers 5 named it so); passing both,
        or neither, is a TypeError."""
        if sentences is not None:
            if inputs is not None:
                raise TypeError("encode() takes the texts once: 'inputs' or its old name 'sentences', not both")
            inputs = sentences
        elif inputs is None:
            raise TypeError("encode() missing the texts: 'inputs' (a text or a list of texts)")
        self.text_tokenizer()  # loaded once, before the call's clock starts (like construction)
        start_s = time.perf_counter()
        singular = isinstance(inputs, str)
        texts = [inputs] if singular else list(inputs)
        if not all(isinstance(text, str) for text in texts):
            raise ValueError("encode takes a text or a list of texts")
        if device is not None and str(device) != "cpu":
            raise ValueError(f"a sticc runner computes on the CPU, not {device!r}")
        if output_value not in ("sentence_embedding", "token_embeddings", None):
            raise ValueError(f"output_value must be 'sentence_embedding', 'token_embeddings' or None, not {output_value!r}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
        if convert_to_tensor:
            convert_to_numpy = False
        if output_value != "sentence_embedding":
            convert_to_numpy = convert_to_tensor = False
        pipeline = self.PIPELINE
        prompt = pipeline.prompt(prompt_name, prompt)
        prompt_length = self.prompt_length(prompt) if prompt and not pipeline.include_prompt else 0
        encodings = self.encode_texts([prompt + text for text in texts] if prompt else texts)
        batches = length_batches([len(e.ids) for e in encodings], batch_size)
        outputs = [None] * len(texts)
        batch_stats = []
        # what each batch costs the most faithful plan: the deadline is shared in these proportions
        weights = [self._batch_weight(len(batch) * max(len(encodings[i].ids) for i in batch)) for batch in batches]
        for n, batch in enumerate(progress(batches, bool(show_progress_bar))):  # None (the default): no bar
            ids, mask, types = self.pad_encodings([encodings[i] for i in batch])
            share_s = None
            if deadline_s is not None:
                left_s = max(deadline_s - (time.perf_counter() - start_s), 1e-6)
                share_s = left_s * weights[n] / sum(weights[n:])
            hidden = self.forward(ids, mask, types, deadline_s=share_s, keep_deadline=keep_deadline)
            batch_stats.append({"texts": len(batch), "seq_len": ids.shape[1], "tokens": int(mask.sum()), "padded_tokens": ids.numel(), **self.last_stats})
            with torch.inference_mode(), one_thread(deadline_s is not None and keep_deadline):
                pooled = pool(hidden, mask, pipeline.pooling, prompt_length)
                if pipeline.normalize:
                    pooled = F.normalize(pooled, p=2, dim=-1)
                pooled = finish_embeddings(pooled, truncate_dim, normalize_embeddings)
            for row, index in enumerate(batch):
                length = int(mask[row].sum())
                if output_value == "sentence_embedding":
                    outputs[index] = pooled[row]
                elif output_value == "token_embeddings":
                    outputs[index] = hidden[row, :length]
                else:
                    outputs[index] = {
                        "input_ids": ids[row, :length], "attention_mask": mask[row, :length],
                        "token_embeddings": hidden[row, :length], "sentence_embedding": pooled[row],
                    }
        stats = {
            "latency_s": time.perf_counter() - start_s,
            "peak_weight_bytes": max((b["peak_weight_bytes"] for b in batch_stats), default=self.pool.nbytes),
            "io_bytes": sum(b["io_bytes"] for b in batch_stats),
            "texts": len(texts), "tokens": sum(b["tokens"] for b in batch_stats),
            "padded_tokens": sum(b["padded_tokens"] for b in batch_stats), "batches": batch_stats,
        }
        if deadline_s is not None:
            stats.update({
                "deadline_s": deadline_s, "met_deadline": stats["latency_s"] <= deadline_s,
                "plans": [b["plan"] for b in batch_stats],
                "shed_chunks": sum(b["shed_chunks"] for b in batch_stats),
                "shed_pieces": sum(b["shed_pieces"] for b in batch_stats),
                "shed_fidelity_loss": sum(b["shed_fidelity_loss"] for b in batch_stats),
            })
        self.publish_stats(stats)
        return _shaped(outputs, output_value, precision, convert_to_numpy, convert_to_tensor, singular)


def _shaped(outputs: list, output_value, precision: str, to_numpy: bool, to_tensor: bool, singular: bool):
    """`encode`'s outputs in the shape sentence-transformers returns them."""
    if output_value == "sentence_embedding":
        if outputs:
            stacked = torch.stack(outputs)
            if precision != "float32":
                stacked = torch.from_numpy(quantize_embeddings(stacked.numpy(), precision))
        else:
            stacked = torch.zeros(0)
        if to_tensor:
            outputs = stacked
        elif to_numpy:
            outputs = stacked.numpy()
        else:
            outputs = list(stacked)
    return outputs[0] if singular else outputs


def runner_main(runner_class, argv=None) -> int:
    """The runner's command line: one JSON object per input text, then optional stats."""
    import sys

    parser = runner_arguments(runner_class, "print a last line with latency, peak weight bytes and IO bytes, per call and per batch")
    parser.add_argument("--batch-size", type=int, default=32, help="texts per forward, longest first (default 32)")
    parser.add_argument("--normalize", action="store_true", help="unit-length embeddings (normalize_embeddings)")
    parser.add_argument("--prompt-name", help="one of the model's prompts to prepend (config_sentence_transformers.json)")
    parser.add_argument("--deadline", help="e.g. 30ms: run the most faithful plan predicted to meet it, shedding chunks if the call falls behind")
    parser.add_argument("--no-shedding", action="store_true", help="with --deadline: choose the plan, but never shed")
    parser.add_argument("texts", nargs="*", help="input texts (default: one per line of stdin)")
    args = parser.parse_args(argv)
    texts = args.texts or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    runner = None
    try:
        if not texts:
            raise ValueError("no input texts (give them as arguments or on stdin)")
        deadline_s = parse_quantity(args.deadline, "s") if args.deadline else None
        if args.no_shedding and deadline_s is None:
            raise ValueError("--no-shedding applies to a --deadline")
        runner = open_runner(runner_class, args)
        embeddings = runner.encode(
            texts, batch_size=args.batch_size, normalize_embeddings=args.normalize, prompt_name=args.prompt_name,
            deadline_s=deadline_s, keep_deadline=not args.no_shedding,
        )
    except (StoreError, ValueError, OSError) as error:
        if runner is not None:  # refused after it opened (a bad --batch-size, --prompt-name): closed all the same
            runner.close()
        print(error_line(error), file=sys.stderr)
        return 1
    for text, embedding in zip(texts, embeddings.tolist(), strict=True):
        print(json.dumps({"text": text, "embedding": embedding}))
    if args.stats:
        stats = dict(runner.last_stats)
        if runner.io_bandwidth_cap_Bps:
            stats["emulated_io_bandwidth_Bps"] = runner.io_bandwidth_cap_Bps
        print(json.dumps({"stats": stats}))
    runner.close()
    return 0

