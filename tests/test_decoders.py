"""Decoder runners against transformers: logits, the KV cache, generation, dropped shards, memory and IO.

Tiny random-weight Llama (grouped-query attention, separate LM head), Qwen2 (q/k/v biases, tied)
and GPT-2 (learned positions, Conv1D, LayerNorm, gelu_new, tied) checkpoints (`conftest.tiny_decoders`),
and a Mistral whose sliding window caps its context. The acceptance bar: logits within 1e-3 over a
64-token prompt (asserted: 1e-4), greedy generation token-identical for 32 tokens on 8 prompts.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch
import transformers
from helpers import DECODER_FAMILIES, TINY_DECODER, TINY_MISTRAL_WINDOW, build_tiny_checkpoint, compile_runner

from solvers.uniform import uniform_plan
from sticc.base.errors import UserError
from sticc.ir.graph import ShardChoice
from sticc.ir.plan import SolverInfo, make_plan, store_positions
from sticc.model.sharding import lm_head_rows
from sticc.model.store import Store

VOCAB = TINY_DECODER["vocab"]
PROMPT = 64  # tokens of the logits checks: the tiny decoders' every position
PROMPTS, NEW_TOKENS = 8, 32  # greedy generation checks


def _reference(checkpoint):
    return transformers.AutoModelForCausalLM.from_pretrained(checkpoint).eval()


@pytest.mark.parametrize("family", DECODER_FAMILIES)
def test_fp32_logits_match_transformers_and_the_cache_continues_them(tiny_decoders, family, tmp_path):
    checkpoint, store_dir = tiny_decoders[family]
    store = Store.open(store_dir)
    assert TINY_DECODER["positions"] >= PROMPT
    runner = compile_runner(store_dir, uniform_plan(store, 32, seq_len=8, context=PROMPT), tmp_path / "out")
    ids = torch.randint(0, VOCAB, (1, PROMPT))
    with torch.no_grad():
        reference = _reference(checkpoint)(ids).logits
    logits, past = runner.forward(ids)
    assert logits.shape == (1, PROMPT, VOCAB) and past.length == PROMPT
    assert float((logits - reference).abs().max()) < 1e-4
    # the same positions in three calls through the KV cache: the prompt in two pieces, then one token
    first, past = runner.forward(ids[:, :23])
    second, past = runner.forward(ids[:, 23:-1], past)
    with pytest.raises(ValueError, match="not the state"):
        runner.forward(ids[:, :1], past._replace(length=7))  # an older state of the sequence
    other = compile_runner(store_dir, uniform_plan(store, 32, seq_len=8, context=PROMPT), tmp_path / "other")
    with pytest.raises(ValueError, match=r"not the state|previous call returned"):
        other.forward(ids[:, :1], past)  # another runner's state
    with pytest.raises(ValueError, match="token ids"):
        runner.forward(torch.tensor([[VOCAB]]))
    last, past = runner.forward(ids[:, -1:], past, all_logits=False)  # a refused call leaves the sequence as it was
    assert past.length == PROMPT
    joined = torch.cat([first, second, last], 1)
    assert float((joined - reference).abs().max()) < 1e-4
    other.close()
    runner.close()


@pytest.mark.parametrize("family", DECODER_FAMILIES)
def test_greedy_generation_is_token_identical_to_transformers(tiny_decoders, family, tmp_path):
    checkpoint, store_dir = tiny_decoders[family]
    store = Store.open(store_dir)
    runner = compile_runner(store_dir, uniform_plan(store, 32, seq_len=8, context=TINY_DECODER["positions"]), tmp_path / "out")
    runner.SHAPE = runner.SHAPE.__class__(**{**runner.SHAPE.__dict__, "eos_token_ids": ()})  # no early stop
    model = _reference(checkpoint)
    for seed in range(PROMPTS):
        length = 1 + 4 * seed  # 1 to 29 tokens: 32 more fit the 64 positions
        prompt = torch.randint(3, VOCAB, (1, length), generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            expected = model.generate(
                prompt, max_new_tokens=NEW_TOKENS, do_sample=False, eos_token_id=None, pad_token_id=0,
            )[0, length:].tolist()
        produced = list(runner.generate_ids(prompt[0].tolist(), NEW_TOKENS))
        assert produced == expected, seed
        stats = runner.generation_stats
        assert stats["time_to_first_token_s"] > 0 and len(stats["token_latency_s"]) == NEW_TOKENS - 1
        assert stats["prompt_tokens"] == length and stats["tokens"] == NEW_TOKENS
        assert stats["kv_cache_bytes"] == runner.kv_cache.numel() * 4
    runner.close()


def test_mistral_serves_its_sliding_window_and_matches_transformers_within_it(tmp_path):
    from sticc.model.store import write_store

    checkpoint = build_tiny_checkpoint(tmp_path / "ckpt", "mistral")
    model = _reference(checkpoint)
    assert isinstance(model, transformers.MistralForCausalLM) and model.config.sliding_window == TINY_MISTRAL_WINDOW
    assert model.config.max_position_embeddings > TINY_MISTRAL_WINDOW
    store = write_store(checkpoint, tmp_path / "store", bits=(32,))
    assert store.spec.max_positions == TINY_MISTRAL_WINDOW
    with pytest.raises(UserError, match=f"must lie in \\[1, {TINY_MISTRAL_WINDOW}\\]"):
        uniform_plan(store, 32, context=TINY_MISTRAL_WINDOW + 1)
    runner = compile_runner(tmp_path / "store", uniform_plan(store, 32, seq_len=8), tmp_path / "out")  # the default context
    assert runner.CONTEXT == TINY_MISTRAL_WINDOW
    ids = torch.randint(0, VOCAB, (1, TINY_MISTRAL_WINDOW))  # the whole window: attention is exact
    with torch.no_grad():
        reference = model(ids).logits
    logits, past = runner.forward(ids[:, :-1])
    last, past = runner.forward(ids[:, -1:], past)
    assert float((torch.cat([logits, last], 1) - reference).abs().max()) < 1e-4
    with pytest.raises(ValueError, match=f"exceed the context of {TINY_MISTRAL_WINDOW}"):
        runner.forward(ids[:, :1], past)
    runner.close()


def test_seeded_sampling_repeats_and_stops_at_eos(tiny_decoders, tmp_path):
    _, store_dir = tiny_decoders["llama"]
    store = Store.open(store_dir)
    runner = compile_runner(store_dir, uniform_plan(store, 8, seq_len=8, context=64), tmp_path / "out")
    one = list(runner.generate_ids([5, 6, 7], 30, temperature=1.0, top_k=20, seed=3))
    two = list(runner.generate_ids([5, 6, 7], 30, temperature=1.0, top_k=20, seed=3))
    other = list(runner.generate_ids([5, 6, 7], 30, temperature=1.0, top_k=20, seed=4))
    assert one == two and one != other
    assert all(token not in runner.SHAPE.eos_token_ids for token in one)
    greedy = list(runner.generate_ids([5, 6, 7], 30))
    eos = greedy[3]
    runner.SHAPE = runner.SHAPE.__class__(**{**runner.SHAPE.__dict__, "eos_token_ids": (eos,)})
    assert list(runner.generate_ids([5, 6, 7], 30)) == greedy[: greedy.index(eos)]
    with pytest.raises(ValueError, match="exceed the context of 64"):
        list(runner.generate_ids(list(range(60)), 10))
    with pytest.raises(ValueError, match="exceed the context"):
        runner.forward(torch.zeros(1, 65, dtype=torch.int64))
    runner.close()


def _masked_reference(checkpoint, family, dropped: list[tuple[int, int]], shards_per_layer: int):
    """transformers' model with the dropped shards' query heads' output columns and FFN slices zeroed."""
    model = _reference(checkpoint)
    config = model.config
    heads = config.num_attention_heads if family != "gpt2" else config.n_head
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    hidden = config.hidden_size
    head_dim = hidden // heads
    groups = heads // kv_heads
    kv_per_shard = kv_heads // shards_per_layer
    ffn = config.intermediate_size if family != "gpt2" else 4 * hidden
    units = ffn // shards_per_layer
    with torch.no_grad():
        for layer, index in dropped:
            kv = range(index * kv_per_shard, (index + 1) * kv_per_shard)
            columns = torch.cat([torch.arange(h * head_dim, (h + 1) * head_dim) for k in kv for h in range(k * groups, (k + 1) * groups)])
            cut = slice(index * units, (index + 1) * units)
            if family == "gpt2":
                block = model.transformer.h[layer]
                block.attn.c_proj.weight[columns, :] = 0  # Conv1D: [in, out]
                block.mlp.c_fc.weight[:, cut] = 0
                block.mlp.c_fc.bias[cut] = 0
                block.mlp.c_proj.weight[cut, :] = 0
            else:
                block = model.model.layers[layer]
                block.self_attn.o_proj.weight[:, columns] = 0
                block.mlp.down_proj.weight[:, cut] = 0
    return model


@pytest.mark.parametrize("family", DECODER_FAMILIES)
def test_dropped_shards_match_a_reference_with_those_heads_and_slices_masked(tiny_decoders, family, tmp_path):
    checkpoint, store_dir = tiny_decoders[family]
    store = Store.open(store_dir)
    dropped = [(0, 1), (1, 0)]
    shards = [ShardChoice(layer, index, 0 if (layer, index) in dropped else 32) for layer, index in store_positions(store)]
    plan = make_plan(store, tuple(shards), SolverInfo("hand", "GIVEN"), seq_len=8, context=32, shards_per_chunk=1)
    runner = compile_runner(store_dir, plan, tmp_path / "out")
    ids = torch.randint(0, VOCAB, (1, 16))
    with torch.no_grad():
        expected = _masked_reference(checkpoint, family, dropped, store.shards_per_layer)(ids).logits
    logits, _ = runner.forward(ids)
    assert float((logits - expected).abs().max()) < 1e-4
    runner.close()


def test_preloaded_and_low_bit_lm_head_slices_and_the_plans_io_per_token(tiny_decoders, tmp_path):
    checkpoint, store_dir = tiny_decoders["gpt2"]
    store = Store.open(store_dir)
    layers = store.spec.layers
    shards = [
        ShardChoice(layer, index, 32 if layer == layers else 8, preload=layer == layers and index == 0)
        for layer, index in store_positions(store)
    ]
    shards[0] = ShardChoice(0, 0, 4, preload=True)  # a resident 4-bit shard
    plan = make_plan(store, tuple(shards), SolverInfo("hand", "GIVEN"), seq_len=8, context=32)
    runner = compile_runner(store_dir, plan, tmp_path / "out")
    ids = torch.randperm(VOCAB)[None, :8]  # the planned prompt length, every token distinct: the plan's prefill
    with torch.no_grad():
        reference = _reference(checkpoint)(ids).logits
    logits, past = runner.forward(ids)
    # 8-bit shards and one 4-bit one (fp32 LM head): the tiny model at uniform 8 bits is 1.2% off, at 4 bits 17-22%
    assert float((logits - reference).norm() / reference.norm()) < 0.1
    assert runner.last_stats["io_bytes"] == plan.predicted.io_bytes
    _, past = runner.forward([[3]], past, all_logits=False)
    assert runner.last_stats["io_bytes"] == plan.predicted.io_bytes_per_token
    assert runner.last_stats["peak_weight_bytes"] == plan.predicted.peak_weight_bytes
    assert runner.last_stats["kv_cache_bytes"] == plan.predicted.kv_cache_bytes == layers * 32 * 2 * store.spec.hidden * 4
    runner.close()


def test_a_decoder_store_holds_the_lm_head_in_padded_vocabulary_slices(tiny_decoders):
    store = Store.open(tiny_decoders["llama"][1])
    spec = store.spec
    rows = lm_head_rows(spec, store.lm_head_shards)
    assert store.lm_head_shards == 3 and rows * store.lm_head_shards >= VOCAB > rows * (store.lm_head_shards - 1)
    assert store.version(spec.layers, 2, "lm_head", 4).layout.rows == rows
    assert store.position_embeddings is None and spec.position_kind == "rope" and spec.kv_heads == 2
    with pytest.raises(UserError, match="cannot be dropped"):
        shards = [ShardChoice(layer, index, 0 if layer == spec.layers else 8) for layer, index in store_positions(store)]
        make_plan(store, tuple(shards), SolverInfo("hand", "GIVEN"))


def _copy_with_tokenizer(store_dir, to):
    """A copy of a tiny store with a byte-level tokenizer.json (a random-weight checkpoint has none)."""
    shutil.copytree(store_dir, to)
    (to / "tokenizer.json").write_text(_byte_tokenizer().to_str())
    return to


def test_the_runner_command_streams_text_and_prints_stats(tiny_decoders, tmp_path):
    store_dir = _copy_with_tokenizer(tiny_decoders["llama"][1], tmp_path / "store")
    store = Store.open(store_dir)
    out = tmp_path / "out"
    compile_runner(store_dir, uniform_plan(store, 4, seq_len=8, context=40), out).close()
    done = subprocess.run(
        [sys.executable, str(out / "runner.py"), "--generate", "8", "--stats", "ab"], capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    stats = json.loads(lines[-1])["stats"]
    assert stats["prompt_tokens"] == 2 and stats["tokens"] >= 1 and stats["time_to_first_token_s"] > 0
    assert stats["kv_cache_bytes"] > 0 and all(io > 0 for io in stats["io_bytes_per_token"])
    bad = subprocess.run(
        [sys.executable, str(out / "runner.py"), "--generate", "60", "a" * 30], capture_output=True, text=True, timeout=120,
    )
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "exceed the context of 40" in bad.stderr


def _byte_tokenizer():
    """A tiny byte-level BPE tokenizer whose ids fit the tiny decoders' vocabulary."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {token: i for i, token in enumerate(sorted(alphabet))}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def test_a_gguf_file_shards_into_a_runner_that_matches_transformers_reading_it(tmp_path):
    from test_gguf import write_tiny_gguf

    from sticc.model.store import write_store

    gguf_path = tmp_path / "tiny-llama.gguf"
    write_tiny_gguf(gguf_path)
    store_dir = tmp_path / "store"
    store = write_store(gguf_path, store_dir, bits=(8, 32))
    assert (store_dir / "tokenizer.json").exists() and store.spec.lm_head == "separate"
    runner = compile_runner(store_dir, uniform_plan(store, 32, seq_len=8, context=64), tmp_path / "out")
    model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=gguf_path.name, dtype=torch.float32).eval()
    ids = torch.randint(0, store.spec.vocab, (1, 24))
    with torch.no_grad():
        reference = model(ids).logits
    logits, _ = runner.forward(ids)
    assert float((logits - reference).abs().max()) < 1e-4
    runner.close()


def _run(*args: str):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300)


def test_bad_inputs_get_one_line_and_a_nonzero_exit(tiny_decoders, tmp_path):
    from test_gguf import write_tiny_gguf

    gguf_path = tmp_path / "tiny.gguf"
    write_tiny_gguf(gguf_path)
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(gguf_path.read_bytes()[: gguf_path.stat().st_size // 2])
    done = _run("-m", "sticc.cli", "shard", str(truncated), "-o", str(tmp_path / "never"))
    assert done.returncode != 0 and done.stderr.count("\n") == 1 and "truncated.gguf" in done.stderr
    assert not (tmp_path / "never").exists()
    # a corrupt blob: the runner's check names it
    corrupt = _copy_with_tokenizer(tiny_decoders["gpt2"][1], tmp_path / "corrupt")
    store = Store.open(corrupt)
    extent = store.version(1, 0, "ffn", 4).extent
    with open(corrupt / "weights.safetensors", "r+b") as handle:
        handle.seek(extent.offset + 10)
        byte = handle.read(1)
        handle.seek(extent.offset + 10)
        handle.write(bytes([byte[0] ^ 0xFF]))
    out = tmp_path / "out"
    compile_runner(corrupt, uniform_plan(store, 4, seq_len=8, context=32), out).close()
    done = _run(str(out / "runner.py"), "--generate", "4", "hello")
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and "checksum mismatch in layer 1 shard 0 ffn @4b" in done.stderr


@pytest.mark.parametrize(
    "rope_scaling",
    [
        {"rope_type": "linear", "factor": 2.0},
        {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 16},
    ],
    ids=lambda r: r["rope_type"],
)
def test_rope_scaling_from_an_hf_config_matches_transformers(tmp_path, rope_scaling):
    from sticc.model.store import write_store

    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=64, max_position_embeddings=64, rope_theta=500.0, rope_scaling=dict(rope_scaling),
    )
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    model.save_pretrained(tmp_path / "ckpt")
    store = write_store(tmp_path / "ckpt", tmp_path / "store", bits=(8, 32))
    assert store.spec.rope_scaling is not None and store.spec.rope_scaling.kind == rope_scaling["rope_type"]
    runner = compile_runner(tmp_path / "store", uniform_plan(store, 32, seq_len=8, context=60), tmp_path / "out")
    ids = torch.randint(0, VOCAB, (1, 60))
    with torch.no_grad():
        reference = model(ids).logits
    assert float((runner.forward(ids)[0] - reference).abs().max()) < 1e-4
    runner.close()


def test_unsupported_decoder_variants_are_refused_in_one_line(tmp_path):
    from sticc.model.checkpoint import Checkpoint

    for name, extra in (
        ("bias", {"attention_bias": True}),
        ("yarn", {"rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32}}),
    ):
        config = transformers.LlamaConfig(
            vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64, **extra,
        )
        transformers.AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / name)
        with pytest.raises(UserError) as caught:
            Checkpoint.open(tmp_path / name)
        assert "\n" not in str(caught.value) and "not supported" in str(caught.value)


def test_generation_config_adds_end_of_turn_tokens(tiny_decoders, tmp_path):
    from sticc.model.checkpoint import Checkpoint

    checkpoint = tmp_path / "ckpt"
    shutil.copytree(tiny_decoders["llama"][0], checkpoint)
    (checkpoint / "generation_config.json").write_text(json.dumps({"eos_token_id": [2, 7]}))
    assert Checkpoint.open(checkpoint).spec.eos_token_ids == (2, 7)
