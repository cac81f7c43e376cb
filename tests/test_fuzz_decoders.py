"""Fuzzing the decoder world (hypothesis): checkpoints, GGUF files, compile flags, runners' flags.

The property of tests/test_fuzz.py (its helpers are tests/fuzz_helpers.py), for decoders: a tiny
llama checkpoint's config.json and generation_config.json mutated as JSON; a tiny llama GGUF
file mutated in its structure (a metadata value of another type, out of range, NaN, huge, a
payload; an array's item changed or the array cut; a key deleted or added; a tensor's type, shape
or name changed, or the tensor dropped; the version) and as bytes (cut, bytes of its header
changed, garbage); the decoder flags of `sticc compile`; and the command line of a compiled
decoder runner (`--generate`, `--temperature`, `--top-k`, `--seed`, `--threads`, `--io-bandwidth`,
`--store`, `--stats`, the prompts), run in this process. Either one line and a non-zero exit, or a
store whose runner runs (its logits equal the clean runner's where the store is the clean one), a
compiled runner that runs (equal where the plan is the clean one), or a runner command whose
output is the clean runner's generation. Nothing may ever create the file PWNED.

CI runs STICC_FUZZ_SLOW_SCALE (0.25) of STICC_FUZZ_EXAMPLES (200) per kind, 50 examples, derandomized;
`python examples/fuzz_inputs.py` runs many more.
"""

from __future__ import annotations

import contextlib
import io
import json
import signal
import struct
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from fuzz_helpers import (
    FLAG_VALUES,
    PAYLOADS,
    RUNNER_VALUES,
    SLOW_FUZZ,
    TEXTS,
    World,
    check_cli,
    checkpoint_with,
    flag_sets,
    json_bytes,
    mutated,
    run_runner_main,
    runner_argv,
    sandbox,
    torch_threads_kept,
)
from hypothesis import given
from hypothesis import strategies as st
from planning_helpers import synthetic_device, synthetic_importance
from test_gguf import write_tiny_gguf

from codegen import load_runner
from sticc.cli.main import main
from sticc.model.store import Store

IDS = torch.tensor([[5, 17, 99, 3, 250, 7]])  # within both tiny vocabularies (300 tokens)
RUNNER_CONTEXT = 64  # positions of the GGUF runner whose command line is fuzzed (32 new tokens fit after a short prompt)
V = gguf.GGUFValueType


# ----------------------------------------------------------------------------------------------
# The world: the tiny llama checkpoint and a tiny llama GGUF, their stores and clean runners
# ----------------------------------------------------------------------------------------------


def _quiet_main(argv: list) -> int:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return main([str(a) for a in argv])


def _logits(out: Path, store: Path) -> torch.Tensor:
    """The logits of the runner in `out` on the store at `store` (IDS, cut to its context and vocabulary)."""
    module = load_runner(out / "runner.py")
    runner = module.Runner(str(store), warm_up=False)
    try:
        ids = IDS[:, : runner.CONTEXT] % runner.SHAPE.vocab
        logits, _ = runner.forward(ids)
    finally:
        runner.close()
    return logits


@pytest.fixture(scope="module")
def decoder_world(tmp_path_factory, tiny_decoders):
    root = tmp_path_factory.mktemp("fuzz-decoders")
    checkpoint, store = tiny_decoders["llama"]
    # what the config fuzz shards (8 bits), and its clean runner
    assert _quiet_main(["shard", checkpoint, "-o", root / "llama8", "--bits", "8"]) == 0
    assert _quiet_main(["compile", root / "llama8", "-o", root / "llama8-clean", "--bits", "8"]) == 0
    # the compile flags: the shared store (4, 8 and 32 bits), synthetic profiles, the clean plan
    opened = Store.open(store)
    synthetic_device(opened).write(root / "device.json")
    synthetic_importance(opened).write(root / "importance.json")
    assert _quiet_main(["compile", store, "-o", root / "clean", "--bits", "8", "--device", root / "device.json"]) == 0
    # a GGUF file (a tokenizer too), its store and the runner whose command line is fuzzed
    write_tiny_gguf(root / "tiny.gguf")
    assert _quiet_main(["shard", root / "tiny.gguf", "-o", root / "gguf-store", "--bits", "8"]) == 0
    argv = ["compile", root / "gguf-store", "-o", root / "gguf-clean", "--bits", "8", "--context", RUNNER_CONTEXT, "--prompt-len", "8"]
    assert _quiet_main(argv) == 0
    gguf_module = load_runner(root / "gguf-clean" / "runner.py")
    gguf_runner = gguf_module.Runner(str(root / "gguf-store"), warm_up=False)
    generation = checkpoint / "generation_config.json"
    files = {
        "config": json.loads((checkpoint / "config.json").read_text()),
        "generation": json.loads(generation.read_text()) if generation.exists() else {"eos_token_id": [2, 7]},
    }
    world = World({
        "root": root, "checkpoint": checkpoint, "store": store, "files": files,
        "llama8_logits": _logits(root / "llama8-clean", root / "llama8"),
        "plan": json.loads((root / "clean" / "plan.json").read_text()), "logits": _logits(root / "clean", store),
        "gguf": _read_gguf(root / "tiny.gguf"),
        "gguf_logits": _logits(root / "gguf-clean", root / "gguf-store"), "gguf_module": gguf_module, "gguf_runner": gguf_runner,
    })
    world["mutations"] = {
        "config": mutated(files["config"], (json_bytes(files["generation"]),)),
        "generation": mutated(files["generation"], (json_bytes(files["config"]),)),
        "gguf": gguf_mutations(world["gguf"], (json_bytes(files["config"]),)),
    }
    yield world
    gguf_runner.close()


def _manifest_body(store: Path) -> dict:
    """A store's manifest without what differs between copies of the same store (its source path, its id)."""
    manifest = json.loads((store / "manifest.json").read_text())
    return {key: value for key, value in manifest.items() if key not in ("source", "store_id")}


def _data(store: Path) -> bytes:
    return (store / json.loads((store / "manifest.json").read_text())["data_file"]).read_bytes()


def _check_store(work: Path, store: Path, clean: Path, clean_logits: torch.Tensor) -> None:
    """A store a fuzzed input was accepted into: it compiles (or fails in one line) into a runner
    that runs, with finite logits where its weights are the clean store's (`clean`) and the clean
    logits where the whole store is; `sticc report` reads its plan."""

    def runs(out: Path) -> None:
        logits = _logits(out, store)
        if _data(store) == _data(clean):  # the same weights (another spec: a norm's epsilon, RoPE's theta, a name)
            assert torch.isfinite(logits).all()
            if _manifest_body(store) == _manifest_body(clean):
                assert torch.equal(logits, clean_logits)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
            assert main(["report", str(out)]) == 0, err.getvalue()

    check_cli(["compile", store, "-o", work / "out", "--bits", "8"], work, work / "out", runs)


# ----------------------------------------------------------------------------------------------
# A decoder checkpoint's config.json and generation_config.json
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("mutation", "replaced"), [("config", "config.json"), ("generation", "generation_config.json")])
@SLOW_FUZZ
@given(data=st.data())
def test_fuzzed_decoder_checkpoint_files(decoder_world, mutation, replaced, data):
    raw = data.draw(decoder_world["mutations"][mutation])
    with sandbox() as work:
        checkpoint = checkpoint_with(decoder_world["checkpoint"], work, replaced, raw)
        if check_cli(["shard", checkpoint, "-o", work / "store", "--bits", "8"], work, work / "store") == 0:
            _check_store(work, work / "store", decoder_world["root"] / "llama8", decoder_world["llama8_logits"])


# values of the right type and within each field's range that a fuzzer draws rarely: each either
# refused in one line or accepted into a runner with finite logits (a rope_theta of 1e-300 once
# gave NaN rotary tables, and `sticc shard` an internal error)
EDGE_VALUES = [("rope_theta", 1e-300), ("rope_theta", 0.5), ("rope_theta", 1e11), ("rms_norm_eps", 1e-300), ("rms_norm_eps", 0.999),
               ("max_position_embeddings", 1), ("max_position_embeddings", 2**20), ("eos_token_id", [2, 299]), ("bos_token_id", 299),
               ("rope_scaling", {"rope_type": "linear", "factor": 1024.0}),
               ("num_hidden_layers", 2**20)]  # the most layers a config may say: ~10M tensors were listed (23 s, 1.7 GB)


@pytest.mark.parametrize(("key", "value"), EDGE_VALUES, ids=[f"{k}={v}" for k, v in EDGE_VALUES])
def test_edge_values_of_a_decoder_config(decoder_world, key, value):
    with sandbox() as work:
        raw = json_bytes({**decoder_world["files"]["config"], key: value})
        checkpoint = checkpoint_with(decoder_world["checkpoint"], work, "config.json", raw)
        if check_cli(["shard", checkpoint, "-o", work / "store", "--bits", "8"], work, work / "store") == 0:
            _check_store(work, work / "store", decoder_world["root"] / "llama8", decoder_world["llama8_logits"])
            assert (work / "out" / "runner.py").exists()


# ----------------------------------------------------------------------------------------------
# GGUF files: a structure (metadata, tensor entries, data) written byte by byte, and mutated
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GgufTensor:
    name: str | bytes
    dims: tuple[int, ...]  # ggml's order: innermost first
    kind: int  # the ggml type number
    data: bytes
    offset: int | None = None  # the entry's data offset (None: where the data is written)


@dataclass(frozen=True)
class GgufDoc:
    version: int
    fields: tuple[tuple[str | bytes, int, object], ...]  # key, value type, value (an array: (item type, items))
    tensors: tuple[GgufTensor, ...]


SCALARS = {V.UINT8: "<B", V.INT8: "<b", V.UINT16: "<H", V.INT16: "<h", V.UINT32: "<I", V.INT32: "<i",
           V.FLOAT32: "<f", V.BOOL: "<?", V.UINT64: "<Q", V.INT64: "<q", V.FLOAT64: "<d"}
INT_RANGES = {kind: (-(2 ** (8 * struct.calcsize(f) - 1)), 2 ** (8 * struct.calcsize(f) - 1) - 1) if f[1].islower()
              else (0, 2 ** (8 * struct.calcsize(f)) - 1) for kind, f in SCALARS.items() if f[1] in "bBhHiIqQ"}
ALIGNMENT = gguf.GGUF_DEFAULT_ALIGNMENT


def _read_gguf(path: Path) -> GgufDoc:
    reader = gguf.GGUFReader(path)
    fields = []
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        if field.types[0] == V.ARRAY:
            fields.append((key, V.ARRAY, (field.types[-1], field.contents())))
        else:
            fields.append((key, field.types[0], field.contents()))
    tensors = tuple(
        GgufTensor(t.name, tuple(int(n) for n in t.shape), int(t.tensor_type), bytes(reader.data[t.data_offset : t.data_offset + t.n_bytes]))
        for t in reader.tensors
    )
    return GgufDoc(int(reader.fields["GGUF.version"].contents()), tuple(fields), tensors)


def _string(text: str | bytes) -> bytes:
    data = text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")
    return struct.pack("<Q", len(data)) + data


def _value(kind: int, value) -> bytes:
    if kind == V.STRING:
        return _string(value)
    if kind == V.ARRAY:
        item_kind, items = value
        return struct.pack("<IQ", item_kind, len(items)) + b"".join(_value(item_kind, item) for item in items)
    if kind in (V.FLOAT32, V.FLOAT64):
        with warnings.catch_warnings(), np.errstate(over="ignore"):
            warnings.simplefilter("ignore")
            return (np.float32 if kind == V.FLOAT32 else np.float64)(value).tobytes()
    if kind in SCALARS:
        return struct.pack(SCALARS[kind], value)
    return bytes(value)  # a type no GGUF reader knows: its raw bytes


def gguf_bytes(doc: GgufDoc) -> bytes:
    out = bytearray(b"GGUF" + struct.pack("<IQQ", doc.version, len(doc.tensors), len(doc.fields)))
    for key, kind, value in doc.fields:
        out += _string(key) + struct.pack("<I", kind) + _value(kind, value)
    offsets, at = [], 0
    for tensor in doc.tensors:
        at += -at % ALIGNMENT
        offsets.append(at)
        at += len(tensor.data)
    for tensor, offset in zip(doc.tensors, offsets, strict=True):
        out += _string(tensor.name) + struct.pack("<I", len(tensor.dims)) + b"".join(struct.pack("<Q", d) for d in tensor.dims)
        out += struct.pack("<IQ", tensor.kind, offset if tensor.offset is None else tensor.offset)
    out += bytes(-len(out) % ALIGNMENT)
    start = len(out)
    for tensor, offset in zip(doc.tensors, offsets, strict=True):
        out += bytes(start + offset - len(out)) + tensor.data
    return bytes(out)


def _clamped(kind_value: tuple[int, int]) -> tuple[int, int]:
    kind, value = kind_value
    low, high = INT_RANGES[kind]
    return kind, min(max(value, low), high)


GGUF_INTS = st.tuples(
    st.sampled_from(sorted(INT_RANGES)),
    st.one_of(st.integers(min_value=-(2**64), max_value=2**64),
              st.sampled_from([0, 1, -1, 2, 3, 7, 8, 16, 32, 64, 4096, 2**20, 2**20 + 1, 2**24, 2**24 + 1, 2**31, 2**32 - 1, 2**63 - 1, 2**64 - 1])),
).map(_clamped)
GGUF_FLOATS = st.tuples(
    st.sampled_from([V.FLOAT32, V.FLOAT64]),
    st.one_of(st.floats(), st.sampled_from([0.0, -0.0, -1.0, 0.5, 1.0, 1e-6, 1e-45, 1e-300, 1e12, 1e308, 4.0])),
)
GGUF_STRINGS = st.tuples(
    st.just(V.STRING),
    st.one_of(st.text(max_size=16), st.sampled_from(PAYLOADS), st.binary(max_size=8),
              st.sampled_from(["llama", "gpt2", "linear", "yarn", "none", "llama-bpe", "qwen2", "", "a b", "x:0 $A"])),
)
GGUF_ARRAYS = st.tuples(
    st.just(V.ARRAY),
    st.one_of(st.tuples(st.just(V.INT32), st.lists(st.integers(-3, 40), max_size=4)),
              st.tuples(st.just(V.STRING), st.lists(st.text(max_size=4), max_size=4))),
)
# (value type, value): every type, values in and out of range, and types no reader knows
GGUF_VALUES = st.one_of(
    GGUF_INTS, GGUF_FLOATS, st.tuples(st.just(V.BOOL), st.booleans()), GGUF_STRINGS, GGUF_ARRAYS,
    st.tuples(st.integers(min_value=13, max_value=2**32 - 1), st.binary(max_size=8)),
)
# keys a llama GGUF may have beside the tiny file's
NEW_KEYS = ("llama.rope.scaling.type", "llama.rope.scaling.factor", "llama.expert_count", "llama.attention.key_length",
            "llama.attention.value_length", "general.alignment", "tokenizer.ggml.add_eos_token", "tokenizer.ggml.pre",
            "llama.vocab_size", "llama.attention.head_count_kv", "tokenizer.ggml.eos_token_id", "general.name")
DIMS = st.lists(st.sampled_from([0, 1, 2, 32, 63, 64, 128, 300, 2**32, 2**63, 2**64 - 1]), max_size=4).map(tuple)


def gguf_mutations(doc: GgufDoc, others: tuple[bytes, ...]) -> st.SearchStrategy[bytes]:
    """A strategy of mutated GGUF files made from `doc` (`others`: other kinds' files, for swaps)."""
    raw = gguf_bytes(doc)
    fields = range(len(doc.fields))
    arrays = [n for n, (_, kind, _) in enumerate(doc.fields) if kind == V.ARRAY]
    tensors = range(len(doc.tensors))
    header = len(raw) - sum(len(t.data) for t in doc.tensors)  # roughly where the data starts

    def with_fields(fields_) -> bytes:
        return gguf_bytes(replace(doc, fields=tuple(fields_)))

    def set_field(args) -> bytes:
        n, (kind, value) = args
        return with_fields((*doc.fields[:n], (doc.fields[n][0], kind, value), *doc.fields[n + 1 :]))

    def set_item(args) -> bytes:
        n, index, item = args
        key, kind, (item_kind, items) = doc.fields[n]
        items = list(items)
        if item_kind == V.STRING:
            items[index % len(items)] = item[1]
        else:
            items[index % len(items)] = int(np.clip(item[0], *INT_RANGES.get(item_kind, (0, 0))))
        return with_fields((*doc.fields[:n], (key, kind, (item_kind, items)), *doc.fields[n + 1 :]))

    def cut_array(args) -> bytes:
        n, keep = args
        key, kind, (item_kind, items) = doc.fields[n]
        return with_fields((*doc.fields[:n], (key, kind, (item_kind, items[:keep])), *doc.fields[n + 1 :]))

    def delete_field(n) -> bytes:
        return with_fields(doc.fields[:n] + doc.fields[n + 1 :])

    def add_field(args) -> bytes:
        key, (kind, value) = args
        return with_fields((*doc.fields, (key, kind, value)))

    def set_tensor(args) -> bytes:
        n, change = args
        if change is None:
            return gguf_bytes(replace(doc, tensors=doc.tensors[:n] + doc.tensors[n + 1 :]))
        return gguf_bytes(replace(doc, tensors=(*doc.tensors[:n], replace(doc.tensors[n], **change), *doc.tensors[n + 1 :])))

    def overwrite(args) -> bytes:
        at, data = args
        return raw[:at] + data + raw[at + len(data) :]

    item = st.tuples(st.integers(-(2**40), 2**40), st.one_of(st.text(max_size=6), st.sampled_from((*PAYLOADS, "", " ", "a b", "<|im_start|>"))))
    change = st.one_of(
        st.none(),  # the tensor dropped
        st.fixed_dictionaries({"kind": st.one_of(st.sampled_from([int(t) for t in gguf.GGMLQuantizationType]), st.integers(0, 2**32 - 1))}),
        st.fixed_dictionaries({"dims": DIMS}),
        st.fixed_dictionaries({"name": st.one_of(st.sampled_from([t.name for t in doc.tensors]), st.text(max_size=12), st.binary(max_size=6))}),
        st.fixed_dictionaries({"offset": st.sampled_from([0, 1, 31, 32, 2**20, 2**63, 2**64 - 1])}),
    )
    return st.one_of(
        st.tuples(st.sampled_from(fields), GGUF_VALUES).map(set_field),
        st.tuples(st.sampled_from(arrays), st.integers(0, 2**16), item).map(set_item),
        st.tuples(st.sampled_from(arrays), st.integers(0, 300)).map(cut_array),
        st.sampled_from(fields).map(delete_field),
        st.tuples(st.one_of(st.sampled_from(NEW_KEYS + tuple(f[0] for f in doc.fields)), st.text(max_size=8), st.sampled_from(PAYLOADS)), GGUF_VALUES).map(add_field),
        st.tuples(st.sampled_from(tensors), change).map(set_tensor),
        st.sampled_from([0, 1, 2, 4, 2**32 - 1]).map(lambda version: gguf_bytes(replace(doc, version=version))),
        st.integers(min_value=0, max_value=len(raw) - 1).map(lambda n: raw[:n]),
        st.tuples(st.integers(min_value=4, max_value=header), st.binary(min_size=1, max_size=8)).map(overwrite),
        st.tuples(st.integers(min_value=header, max_value=len(raw) - 8), st.binary(min_size=1, max_size=8)).map(overwrite),
        st.binary(max_size=64), st.binary(max_size=64).map(lambda b: b"GGUF" + b),
        st.sampled_from([b"", b"GGUF", b"GGUF\x03\x00\x00\x00", *others]),
    )


@SLOW_FUZZ
@given(data=st.data())
def test_fuzzed_gguf_files(decoder_world, data):
    raw = data.draw(decoder_world["mutations"]["gguf"])
    with sandbox() as work:
        path = work / "model.gguf"
        path.write_bytes(raw)
        if check_cli(["shard", path, "-o", work / "store", "--bits", "8"], work, work / "store") != 0:
            return
        store = work / "store"
        _check_store(work, store, decoder_world["root"] / "gguf-store", decoder_world["gguf_logits"])
        if (work / "out" / "runner.py").exists():  # the tokenizer rebuilt from the file's metadata, in the runner
            module = load_runner(work / "out" / "runner.py")
            run_runner_main(module.decoder_main, module.Runner, ["--generate", "2", "hello there"], "", work)


def _gguf_edited(doc: GgufDoc, fields: dict, tokens: dict[int, str]) -> bytes:
    """`doc` with some fields set ({key: (value type, value)}) and some tokens respelled ({index: text})."""
    edited = []
    for key, kind, value in doc.fields:
        if key == "tokenizer.ggml.tokens":
            items = list(value[1])
            for index, text in tokens.items():
                items[index] = text
            value = (value[0], items)
        edited.append((key, *fields.pop(key, (kind, value))))
    edited += [(key, kind, value) for key, (kind, value) in fields.items()]
    return gguf_bytes(replace(doc, fields=tuple(edited)))


ADD_BOS, ADD_EOS = "tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token"
# GGUF metadata the fuzzer rarely makes (two changes at once, or one value of many): special tokens
# spelled outside the byte-level alphabet (" 1" was added with id 300, past the vocabulary, and the
# calibration pass failed on it), BOS/EOS tokens the template cannot hold ("a b": an internal error),
# the most layers the metadata may say (every tensor name of 2**20 layers was listed: 39 s, 2.7 GB)
EDGE_GGUFS = {
    "layers-2**20": ({"llama.block_count": (V.UINT32, 2**20)}, {}),
    "unk-with-a-space": ({}, {0: " 1"}),
    "bos-with-a-space": ({ADD_BOS: (V.BOOL, True)}, {1: "a b"}),
    "eos-with-a-colon": ({ADD_EOS: (V.BOOL, True)}, {2: "x:0"}),
    "bos-empty": ({ADD_BOS: (V.BOOL, True)}, {1: ""}),
    "bos-is-the-sequence": ({ADD_BOS: (V.BOOL, True)}, {1: "$A"}),
    "specials-alike": ({ADD_BOS: (V.BOOL, True), ADD_EOS: (V.BOOL, True)}, {1: "<|im_end|>", 2: "<|im_end|>"}),
    "eos-past-the-tokens": ({"tokenizer.ggml.eos_token_id": (V.UINT32, 300)}, {}),
}


@pytest.mark.parametrize("edit", EDGE_GGUFS.values(), ids=EDGE_GGUFS.keys())
def test_edge_metadata_of_a_gguf_file(decoder_world, edit):
    fields, tokens = edit
    with sandbox() as work:
        path = work / "model.gguf"
        path.write_bytes(_gguf_edited(decoder_world["gguf"], dict(fields), tokens))
        if check_cli(["shard", path, "-o", work / "store", "--bits", "8"], work, work / "store") != 0:
            return
        _check_store(work, work / "store", decoder_world["root"] / "gguf-store", decoder_world["gguf_logits"])
        module = load_runner(work / "out" / "runner.py")
        run_runner_main(module.decoder_main, module.Runner, ["--generate", "2", "hello there", "<|im_end|> a b x:0"], "", work)


class _Hung(BaseException):
    """Raised by the alarm below: past the reader's own `except Exception`."""


def test_a_gguf_array_longer_than_the_file_is_one_line_at_once(decoder_world, tmp_path):
    """An array's count past what the file can hold: the gguf package's reader loops once per item
    it is told of, on past the end of the file (2**40 times here, its memory growing); sticc
    refuses the count at once."""
    doc = decoder_world["gguf"]
    raw = gguf_bytes(doc)
    key = _string("tokenizer.ggml.token_type")
    at = raw.index(key) + len(key) + 4 + 4  # past the key, the value type and the item type: the count
    assert struct.unpack("<Q", raw[at : at + 8])[0] == len(dict((k, v) for k, _, v in doc.fields)["tokenizer.ggml.token_type"][1])
    long = raw[:at] + struct.pack("<Q", 2**40) + raw[at + 8 :]
    path = tmp_path / "long.gguf"
    path.write_bytes(long + bytes(-(len(long) - at - 8) % 4))  # whole int32 items to the end: no reshape error stops it

    def hung(*_):
        raise _Hung("the reader still loops after 10 s")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(10)
    try:
        with sandbox() as work:
            assert check_cli(["shard", path, "-o", work / "store", "--bits", "8"], work, work / "store") != 0
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# ----------------------------------------------------------------------------------------------
# The decoder flags of `sticc compile`
# ----------------------------------------------------------------------------------------------


def _good(*values: str) -> st.SearchStrategy[str]:
    return st.sampled_from(values)


# each decoder flag of `sticc compile` with values it takes (the encoders' --latency and --seq-len it refuses)
DECODER_COMPILE_FLAGS = {
    "--token-latency": _good("150ms", "20ms", "1s"), "--first-token": _good("1s", "50ms"), "--prompt-len": _good("8", "16", "64"),
    "--context": _good("16", "32", "64"), "--kv-memory": _good("1MB", "10KB"), "--memory": _good("1MB", "200KB"),
    "--bits": _good("4", "8", "32"), "--shards-per-chunk": _good("1", "2"), "--solver": _good("greedy", "cpsat"),
    "--latency": _good("40ms"), "--seq-len": _good("16"),
}
# what the solver is asked for (or given) before the fuzzed flags
COMPILE_HOWS = st.sampled_from([(), ("--bits", "8"), ("--token-latency", "150ms"), ("--memory", "1MB")])


@SLOW_FUZZ
@given(data=st.data())
def test_fuzzed_decoder_compile_flags(decoder_world, data):
    how = data.draw(COMPILE_HOWS)
    flags = data.draw(flag_sets(DECODER_COMPILE_FLAGS, FLAG_VALUES))
    root = decoder_world["root"]

    def runs(out: Path) -> None:
        plan = json.loads((out / "plan.json").read_text())
        logits = _logits(out, decoder_world["store"])
        assert torch.isfinite(logits).all()
        clean = decoder_world["plan"]
        same = (plan["shards"], plan["store_id"], logits.shape) == (clean["shards"], clean["store_id"], decoder_world["logits"].shape)
        if same:  # the clean plan's shards, on as many tokens (a context under IDS' length cuts them)
            if plan["shards_per_chunk"] == clean["shards_per_chunk"]:
                assert torch.equal(logits, decoder_world["logits"])
            else:  # chunks of other sizes sum the same products in another order
                torch.testing.assert_close(logits, decoder_world["logits"], rtol=0, atol=1e-5)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
            assert main(["report", str(out)]) == 0, err.getvalue()

    with sandbox() as work:
        argv = ["compile", decoder_world["store"], "-o", work / "out", "--device", root / "device.json",
                "--importance", root / "importance.json", "--time-limit", "1s", *how]
        for flag, value in flags.items():
            argv += [flag, value]
        check_cli(argv, work, work / "out", runs)


# ----------------------------------------------------------------------------------------------
# Runners' command lines, in this process
# ----------------------------------------------------------------------------------------------

# each flag of a decoder runner with values it takes
DECODER_RUNNER_FLAGS = {
    "--generate": _good("0", "1", "4", "8"), "--temperature": _good("0", "0.7", "1.5"), "--top-k": _good("1", "5", "1000"),
    "--seed": _good("0", "-1", "123456789", str(2**63)), "--threads": _good("1", "2"), "--io-bandwidth": _good("10GB/s", "200MB/s"),
}


@SLOW_FUZZ
@given(data=st.data())
def test_fuzzed_decoder_runner_command_lines(decoder_world, data):
    root = decoder_world["root"]
    stores = {"--store": _good(str(root / "gguf-store"), "")}
    others = st.sampled_from([str(decoder_world["store"]), str(root / "missing"), str(root / "tiny.gguf")])  # not its store
    flags = data.draw(flag_sets({**DECODER_RUNNER_FLAGS, **stores}, st.one_of(RUNNER_VALUES, others)))
    stats = data.draw(st.booleans())
    prompts = data.draw(st.lists(TEXTS, max_size=2))
    stdin = data.draw(st.one_of(st.just("a prompt\non two lines"), st.text(max_size=12)))
    argv = runner_argv(flags, ("--stats",) if stats else (), prompts)
    module = decoder_world["gguf_module"]
    with sandbox() as work, torch_threads_kept():
        code, out, _ = run_runner_main(module.decoder_main, module.Runner, argv, stdin, work)
    if code:
        return
    # a success: each prompt's generation as the clean runner's API gives it, then its stats
    runner = decoder_world["gguf_runner"]
    settings = (int(flags.get("--generate", "32")), float(flags.get("--temperature", "0")),
                int(flags["--top-k"]) if "--top-k" in flags else None, int(flags.get("--seed", "0")))
    for prompt in prompts or [stdin]:
        text = "".join(runner.generate(prompt, *settings)) + "\n"
        assert out.startswith(text), (argv, out, text)
        out = out[len(text) :]
        if stats:
            line, _, out = out.partition("\n")
            assert set(json.loads(line)["stats"]) >= {"prompt_tokens", "tokens", "time_to_first_token_s", "token_latency_s"}
    assert out == ""
