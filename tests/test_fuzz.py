"""Fuzzing every file kind and flag (hypothesis): one line or a correct runner, never code.

Each example mutates a valid input (a value of the wrong type, out of range, NaN or infinite, huge,
an injection payload or random unicode; a key deleted or added; the file truncated, swapped for
another kind, or garbage) and runs the CLI on it. The property: either a non-zero exit with one
line on stderr and no traceback (nor the "internal error" line of a bug) and no output written, or
a success whose runner runs and, where the accepted plan is the clean one, gives the clean
runner's output. Nothing may ever create the file PWNED. The runner's own command line (its
flags, the store, the texts) is fuzzed in this process: one line, or the clean runner's embeddings.
CI runs STICC_FUZZ_EXAMPLES (default 200) examples per kind, derandomized (the runner's command
line: STICC_FUZZ_SLOW_SCALE of that, 50); `python examples/fuzz_inputs.py` runs many more. The
helpers are tests/fuzz_helpers.py (shared with tests/test_fuzz_decoders.py).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fuzz_helpers import (
    FLAG_VALUES,
    FUZZ,
    NESTED,
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

from codegen import load_runner
from sticc.cli.main import main
from sticc.model.store import Store, manifest_id

INPUT_IDS = torch.tensor([[2, 17, 99, 5, 3, 0]])
MASK = torch.tensor([[1, 1, 1, 1, 1, 0]])


# ----------------------------------------------------------------------------------------------
# The world: a tiny checkpoint, its store, clean files, the clean runner's output
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_bert):
    root = tmp_path_factory.mktemp("fuzz")
    store = root / "store"
    assert main(["shard", str(tiny_bert), "-o", str(store), "--bits", "4,8", "--shards-per-layer", "2"]) == 0
    opened = Store.open(store)
    device = synthetic_device(opened).to_json()
    importance = synthetic_importance(opened).to_json()
    (root / "device.json").write_text(json.dumps(device))
    (root / "importance.json").write_text(json.dumps(importance))
    clean = root / "clean"
    assert main(["compile", str(store), "-o", str(clean), "--bits", "8", "--device", str(root / "device.json")]) == 0
    module = load_runner(clean / "runner.py")
    runner = module.Runner(str(store), warm_up=False)
    output = runner.forward(INPUT_IDS, MASK)
    runner.close()
    files = {
        "plan": json.loads((clean / "plan.json").read_text()),
        "device": device,
        "importance": importance,
        "manifest": json.loads((store / "manifest.json").read_text()),
        "config": json.loads((tiny_bert / "config.json").read_text()),
    }
    world = World({"root": root, "store": store, "checkpoint": tiny_bert, "output": output, "files": files})
    world["mutations"] = {kind: mutated(files[kind], _others(world, kind)) for kind in files}
    return world


def _check(argv: list, work: Path, world, out: Path | None, store: Path | None = None) -> int:
    """Run the CLI on `argv` and check the property (a compiled runner against the clean one's output); the exit code."""
    return check_cli(argv, work, out, lambda out: _check_runner(out, world, store or world["store"]))


def _check_runner(out: Path, world, store: Path) -> None:
    plan = json.loads((out / "plan.json").read_text())
    clean = world["files"]["plan"]
    module = load_runner(out / "runner.py")
    try:
        runner = module.Runner(str(store), warm_up=False)
        try:
            output = runner.forward(INPUT_IDS, MASK)
        finally:
            runner.close()
    except module.StoreError as error:
        # a manifest that lies about the data (checksums, offsets) yet is consistent in itself:
        # compile cannot know without reading every blob; the runner refuses it, in one line
        assert store != world["store"] and "\n" not in str(error), error
        return
    assert torch.isfinite(output).all()
    if (plan["shards"], plan["store_id"]) == (clean["shards"], clean["store_id"]):
        assert torch.equal(output, world["output"])
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
        assert main(["report", str(out)]) == 0, err.getvalue()  # what sticc wrote, sticc reads


def _others(world, kind: str) -> tuple[bytes, ...]:
    return tuple(json_bytes(doc) for name, doc in world["files"].items() if name != kind)


# ----------------------------------------------------------------------------------------------
# One test per file kind, and the flags
# ----------------------------------------------------------------------------------------------


@FUZZ
@given(data=st.data())
def test_fuzzed_plan_files(world, data):
    raw = data.draw(world["mutations"]["plan"])
    with sandbox() as work:
        (work / "plan.json").write_bytes(raw)
        _check(["compile", world["store"], "-o", work / "out", "--plan", work / "plan.json"], work, world, work / "out")
        _check(["report", work / "plan.json"], work, world, None)


@FUZZ
@given(data=st.data())
def test_fuzzed_device_profiles(world, data):
    raw = data.draw(world["mutations"]["device"])
    plans = data.draw(st.booleans())
    with sandbox() as work:
        (work / "device.json").write_bytes(raw)
        how = ["--latency", "50ms", "--importance", world["root"] / "importance.json"] if plans else ["--bits", "4"]
        _check(["compile", world["store"], "-o", work / "out", "--device", work / "device.json", *how], work, world, work / "out")


@FUZZ
@given(data=st.data())
def test_fuzzed_importance_profiles(world, data):
    raw = data.draw(world["mutations"]["importance"])
    with sandbox() as work:
        (work / "importance.json").write_bytes(raw)
        argv = ["compile", world["store"], "-o", work / "out", "--latency", "50ms", "--memory", "1MB",
                "--device", world["root"] / "device.json", "--importance", work / "importance.json"]
        _check(argv, work, world, work / "out")


@FUZZ
@given(data=st.data())
def test_fuzzed_store_manifests(world, data):
    raw = data.draw(world["mutations"]["manifest"])
    resign = data.draw(st.booleans())  # anyone can recompute the store id
    with sandbox() as work:
        store = work / "store"
        store.mkdir()
        for name in os.listdir(world["store"]):
            if name != "manifest.json":
                os.symlink(world["store"] / name, store / name)
        if resign:
            with contextlib.suppress(ValueError, TypeError, AttributeError, RecursionError):
                manifest = json.loads(raw)
                manifest["store_id"] = manifest_id(manifest)
                raw = json_bytes(manifest)
        (store / "manifest.json").write_bytes(raw)
        _check(["compile", store, "-o", work / "out", "--bits", "8"], work, world, work / "out", store)
        _check(["verify", store], work, world, None)


def _store_copy(world, work: Path, manifest: bytes | None = None) -> Path:
    """A store in `work` linking the world's data; its manifest `manifest` (default: the world's)."""
    store = work / "store"
    store.mkdir()
    for name in os.listdir(world["store"]):
        if name != "manifest.json":
            os.symlink(world["store"] / name, store / name)
    (store / "manifest.json").write_bytes(manifest if manifest is not None else json_bytes(world["files"]["manifest"]))
    return store


def _run_runner_cli(runner: Path, store: Path, work: Path) -> str:
    """`python runner.py --store STORE hello`, which must fail: its one error line."""
    done = subprocess.run(
        [sys.executable, str(runner), "--store", str(store), "hello"], cwd=work, capture_output=True, text=True, timeout=300,
    )
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert not (work / "PWNED").exists()
    return lines[0]


@pytest.mark.parametrize("nested", NESTED, ids=["arrays", "objects", "closed"])
def test_a_deeply_nested_manifest_is_one_line_in_sticc_and_in_the_runner(world, nested):
    with sandbox() as work:
        store = _store_copy(world, work, nested)
        assert _check(["compile", store, "-o", work / "out", "--bits", "8"], work, world, work / "out", store) != 0
        assert _check(["verify", store], work, world, None) != 0
        line = _run_runner_cli(world["root"] / "clean" / "runner.py", store, work)
        assert "manifest.json" in line and "nested too deeply" in line, line


# tokenizer.json files the `tokenizers` package refuses
BAD_TOKENIZERS = (b"", b"garbage", b"{}", b"[" * 100_000, b"\xff\xfe{}", b'{"model": {"type": "WordPiece", "vocab": {"a": -1}}}')


@pytest.mark.parametrize("tokenizer", BAD_TOKENIZERS, ids=["empty", "text", "object", "nested", "binary", "bad-vocab"])
def test_a_bad_tokenizer_is_one_line_in_shard_compile_profile_and_the_runner(world, tokenizer, monkeypatch):
    with sandbox() as work:
        monkeypatch.setenv("STICC_CACHE_DIR", str(work / "cache"))
        checkpoint = work / "ckpt"
        checkpoint.mkdir()
        for name in os.listdir(world["checkpoint"]):
            os.symlink(world["checkpoint"] / name, checkpoint / name)
        (checkpoint / "tokenizer.json").write_bytes(tokenizer)
        for bits in ("8", "32"):  # refused before any work, even where calibration needs no text
            assert _check(["shard", checkpoint, "-o", work / "new", "--bits", bits], work, world, work / "new") != 0
        manifest = {**world["files"]["manifest"], "tokenizer": "tokenizer.json"}  # a store said to have one
        manifest["store_id"] = manifest_id(manifest)
        store = _store_copy(world, work, json_bytes(manifest))
        (store / "tokenizer.json").write_bytes(tokenizer)
        argv = ["compile", store, "-o", work / "out", "--latency", "50ms", "--device", world["root"] / "device.json"]
        assert _check(argv, work, world, work / "out", store) != 0  # the importance profile tokenizes
        assert _check(["profile", "importance", store, "-o", work / "importance.json"], work, world, None) != 0
        assert not (work / "importance.json").exists()
        assert _check(["compile", store, "-o", work / "out", "--bits", "8"], work, world, work / "out", store) == 0
        line = _run_runner_cli(work / "out" / "runner.py", store, work)
        assert f"{store}/tokenizer.json" in line, line


@FUZZ
@given(data=st.data())
def test_fuzzed_checkpoint_configs(world, data):
    raw = data.draw(world["mutations"]["config"])
    with sandbox() as work:
        checkpoint = checkpoint_with(world["checkpoint"], work, "config.json", raw)
        _check(["shard", checkpoint, "-o", work / "store", "--bits", "8", "--shards-per-layer", "2"], work, world, work / "store")


COMPILE_FLAGS = ("--bits", "--latency", "--memory", "--seq-len", "--shards-per-chunk", "--time-limit", "--solver")


@FUZZ
@given(data=st.data())
def test_fuzzed_compile_flags(world, data):
    flags = data.draw(st.lists(st.tuples(st.sampled_from(COMPILE_FLAGS), FLAG_VALUES), max_size=3))
    with sandbox() as work:
        argv = ["compile", world["store"], "-o", work / "out", "--device", world["root"] / "device.json",
                "--importance", world["root"] / "importance.json", "--time-limit", "2s"]
        for flag, value in flags:
            argv += [flag, value]
        _check(argv, work, world, work / "out")


SHARD_FLAGS = ("--bits", "--shards-per-layer", "--group-size")


@FUZZ
@given(data=st.data())
def test_fuzzed_shard_flags(world, data):
    flags = data.draw(st.lists(st.tuples(st.sampled_from(SHARD_FLAGS), FLAG_VALUES), min_size=1, max_size=3))
    with sandbox() as work:
        argv = ["shard", world["checkpoint"], "-o", work / "store"]
        for flag, value in flags:
            argv += [flag, value]
        if "--bits" not in argv:
            argv += ["--bits", "8"]  # keep successful shards fast
        _check(argv, work, world, work / "store")


# ----------------------------------------------------------------------------------------------
# The runner's own command line, in this process (the world's store, with a tokenizer and prompts)
# ----------------------------------------------------------------------------------------------


def _wordpiece_tokenizer() -> str:
    """A BERT-style tokenizer whose ids fit the tiny BERT's 128-token vocabulary."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"abcdefghijklmnopqrstuvwxyz0123456789.,:;!?'-()",
             *(f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"), "the", "quick", "fox", "query", "hello", "doc"]
    tokenizer = Tokenizer(models.WordPiece({token: i for i, token in enumerate(vocab)}, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)],
    )
    tokenizer.decoder = decoders.WordPiece()
    return tokenizer.to_str()


@pytest.fixture(scope="module")
def text_world(world):
    """The world's store said to have a tokenizer and a sentence pipeline with named prompts, its
    runner (compiled with the world's device profile: a deadline picks and sheds), one open."""
    root = world["root"] / "text"
    store = root / "store"
    store.mkdir(parents=True)
    for name in os.listdir(world["store"]):
        if name != "manifest.json":
            os.symlink(world["store"] / name, store / name)
    manifest = dict(world["files"]["manifest"], tokenizer="tokenizer.json", sentence_pipeline={
        "max_seq_length": 16, "do_lower_case": True, "pooling": ["mean"], "include_prompt": True, "normalize": False,
        "prompts": {"query": "query: ", "doc": ""}, "default_prompt_name": None,
    })
    manifest["store_id"] = manifest_id(manifest)
    (store / "manifest.json").write_bytes(json_bytes(manifest))
    (store / "tokenizer.json").write_text(_wordpiece_tokenizer())
    argv = ["compile", str(store), "-o", str(root / "clean"), "--bits", "8", "--device", str(world["root"] / "device.json")]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(argv) == 0
    module = load_runner(root / "clean" / "runner.py")
    runner = module.Runner(str(store), warm_up=False)
    yield World({"root": root, "store": store, "module": module, "runner": runner})
    runner.close()


# each flag of an encoder runner with values it takes
RUNNER_FLAGS = {
    "--deadline": st.sampled_from(["10s", "1ms", "1e-300s"]), "--batch-size": st.sampled_from(["1", "2", "32"]),
    "--prompt-name": st.sampled_from(["query", "doc"]), "--threads": st.sampled_from(["1", "2"]),
    "--io-bandwidth": st.sampled_from(["10GB/s", "200MB/s"]),
}
RUNNER_SWITCHES = ("--no-shedding", "--normalize", "--stats")


@SLOW_FUZZ
@given(data=st.data())
def test_fuzzed_runner_command_lines(world, text_world, data):
    stores = {"--store": st.sampled_from([str(text_world["store"]), ""])}
    others = st.sampled_from([str(world["store"]), str(world["root"] / "missing"), str(world["root"] / "device.json"), "passage"])
    flags = data.draw(flag_sets({**RUNNER_FLAGS, **stores}, st.one_of(RUNNER_VALUES, others)))
    switches = tuple(sorted(data.draw(st.sets(st.sampled_from(RUNNER_SWITCHES)))))
    texts = data.draw(st.lists(TEXTS, max_size=3))
    stdin = data.draw(st.one_of(st.just("one line\nand another\n"), st.text(max_size=30)))
    argv = runner_argv(flags, switches, texts)
    module = text_world["module"]
    with sandbox() as work, torch_threads_kept():
        code, out, _ = run_runner_main(module.runner_main, module.Runner, argv, stdin, work)
    if code:
        assert out == "", argv  # nothing printed before the error
        return
    texts = texts or [line.rstrip("\n") for line in io.StringIO(stdin) if line.strip()]
    records = [json.loads(line) for line in out.splitlines()]
    assert [record["text"] for record in records[: len(texts)]] == texts
    assert len(records) == len(texts) + ("--stats" in switches) and ("--stats" not in switches or "stats" in records[-1])
    embeddings = torch.tensor([record["embedding"] for record in records[: len(texts)]], dtype=torch.float64)
    assert embeddings.shape == (len(texts), world["output"].shape[-1]) and torch.isfinite(embeddings).all()
    if "--deadline" not in flags or "--no-shedding" in switches:  # no chunk shed: the clean runner's embeddings
        expected = text_world["runner"].encode(
            texts, normalize_embeddings="--normalize" in switches, prompt_name=flags.get("--prompt-name"), convert_to_tensor=True,
        )
        torch.testing.assert_close(embeddings, expected.double(), rtol=0, atol=1e-5)
