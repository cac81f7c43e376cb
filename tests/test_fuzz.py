"""Fuzzing every file kind and flag (hypothesis): one line or a correct runner, never code.

Each example mutates a valid input (a value of the wrong type, out of range, NaN or infinite, huge,
an injection payload or random unicode; a key deleted or added; the file truncated, swapped for
another kind, or garbage) and runs the CLI on it. The property: either a non-zero exit with one
line on stderr and no traceback (nor the "internal error" line of a bug) and no output written, or
a success whose runner runs and, where the accepted plan is the clean one, gives the clean
runner's output. Nothing may ever create the file PWNED. CI runs STICC_FUZZ_EXAMPLES (default
200) examples per kind, derandomized; `python examples/fuzz_inputs.py` runs many more.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from planning_helpers import synthetic_device, synthetic_importance

from codegen import load_runner
from sticc.cli.main import INTERNAL_ERROR_EXIT, main
from sticc.model.store import Store, manifest_id

EXAMPLES = int(os.environ.get("STICC_FUZZ_EXAMPLES", "200"))
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get("STICC_FUZZ_RANDOM"), database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
CODE = "open('PWNED', 'w')"
PAYLOADS = (f'"""\n{CODE}\n"""', f"'''\n{CODE}\n'''", f'"); {CODE}; ("', f"\r{CODE}\n#", f"\\{CODE}\\")
# JSON nested deeper than Python's json module can parse (it raises RecursionError, not ValueError)
NESTED = (b"[" * 100_000, b'{"a": ' * 100_000, b"[" * 100_000 + b"]" * 100_000)
INPUT_IDS = torch.tensor([[2, 17, 99, 5, 3, 0]])
MASK = torch.tensor([[1, 1, 1, 1, 1, 0]])

BAD_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 1, 2, 3, 7, 8, 32, 4096, 2**31, 2**53 + 1, 2**63, 2**64, 1e308, -0.0, 0.5, 1e-300]),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=16), st.sampled_from(PAYLOADS),
    st.lists(st.integers(min_value=-3, max_value=40), max_size=4),
    st.dictionaries(st.text(max_size=4), st.integers(min_value=-3, max_value=40), max_size=2),
)


# ----------------------------------------------------------------------------------------------
# Mutations of a JSON document
# ----------------------------------------------------------------------------------------------


def _paths(node, prefix=(), limit=3) -> list[tuple]:
    """Every JSON path into `node` (lists: their first `limit` items)."""
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key), limit)
    elif isinstance(node, list):
        for index, value in enumerate(node[:limit]):
            out += _paths(value, (*prefix, index), limit)
    return out


def _at(doc, path):
    for key in path:
        doc = doc[key]
    return doc


def _json_bytes(doc) -> bytes:
    return json.dumps(doc).encode()


def mutated(doc: dict, others: tuple[bytes, ...]) -> st.SearchStrategy[bytes]:
    """A strategy of mutated serializations of `doc` (`others`: other kinds' files, for swaps)."""
    paths = _paths(doc)
    raw = _json_bytes(doc)

    def set_value(args):
        path, value = args
        copy = json.loads(raw)
        if not path:
            return _json_bytes(value)
        _at(copy, path[:-1])[path[-1]] = value
        return _json_bytes(copy)

    def delete(path):
        copy = json.loads(raw)
        parent = _at(copy, path[:-1])
        del parent[path[-1]]
        return _json_bytes(copy)

    def add(args):
        path, key, value = args
        copy = json.loads(raw)
        target = _at(copy, path)
        if isinstance(target, dict):
            target[key] = value
        elif isinstance(target, list):
            target.append(value)
        return _json_bytes(copy)

    deletable = [p for p in paths if p]
    return st.one_of(
        st.tuples(st.sampled_from(paths), BAD_VALUES).map(set_value),
        st.sampled_from(deletable).map(delete),
        st.tuples(st.sampled_from(paths), st.one_of(st.text(max_size=8), st.sampled_from(PAYLOADS)), BAD_VALUES).map(add),
        st.integers(min_value=0, max_value=max(0, len(raw) - 1)).map(lambda n: raw[:n]),
        st.sampled_from(others) if others else st.just(b"{}"),
        st.binary(max_size=64),
        st.sampled_from([b"", b"null", b"[]", b"\xff\xfe{}", b"{" * 10_000, b'{"a": NaN}', *NESTED]),
    )


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


class World(dict):
    """The fixture's facts; shown briefly in hypothesis' reports."""

    def __repr__(self) -> str:
        return "<world>"


@contextlib.contextmanager
def _sandbox():
    """A fresh working directory (where a payload would create PWNED), removed afterwards."""
    before = Path.cwd()
    work = Path(tempfile.mkdtemp(prefix="sticc-fuzz-"))
    os.chdir(work)
    try:
        yield work
    finally:
        os.chdir(before)
        shutil.rmtree(work, ignore_errors=True)


def _check(argv: list, work: Path, world, out: Path | None, store: Path | None = None) -> int:
    """Run the CLI on `argv` and check the property; the exit code."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main([str(a) for a in argv])
    err = stderr.getvalue()
    assert code != INTERNAL_ERROR_EXIT, f"{argv}: {err}"
    assert "Traceback" not in err, err
    if code:
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), f"{argv}: {err!r}"
        if out is not None:
            assert not out.exists(), f"{argv} failed but wrote {out}"
    elif out is not None and (out / "runner.py").exists():
        _check_runner(out, world, store or world["store"])
    assert not (work / "PWNED").exists(), f"{argv} ran an input"
    return code


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
    return tuple(_json_bytes(doc) for name, doc in world["files"].items() if name != kind)


# ----------------------------------------------------------------------------------------------
# One test per file kind, and the flags
# ----------------------------------------------------------------------------------------------


@FUZZ
@given(data=st.data())
def test_fuzzed_plan_files(world, data):
    raw = data.draw(world["mutations"]["plan"])
    with _sandbox() as work:
        (work / "plan.json").write_bytes(raw)
        _check(["compile", world["store"], "-o", work / "out", "--plan", work / "plan.json"], work, world, work / "out")
        _check(["report", work / "plan.json"], work, world, None)


@FUZZ
@given(data=st.data())
def test_fuzzed_device_profiles(world, data):
    raw = data.draw(world["mutations"]["device"])
    plans = data.draw(st.booleans())
    with _sandbox() as work:
        (work / "device.json").write_bytes(raw)
        how = ["--latency", "50ms", "--importance", world["root"] / "importance.json"] if plans else ["--bits", "4"]
        _check(["compile", world["store"], "-o", work / "out", "--device", work / "device.json", *how], work, world, work / "out")


@FUZZ
@given(data=st.data())
def test_fuzzed_importance_profiles(world, data):
    raw = data.draw(world["mutations"]["importance"])
    with _sandbox() as work:
        (work / "importance.json").write_bytes(raw)
        argv = ["compile", world["store"], "-o", work / "out", "--latency", "50ms", "--memory", "1MB",
                "--device", world["root"] / "device.json", "--importance", work / "importance.json"]
        _check(argv, work, world, work / "out")


@FUZZ
@given(data=st.data())
def test_fuzzed_store_manifests(world, data):
    raw = data.draw(world["mutations"]["manifest"])
    resign = data.draw(st.booleans())  # anyone can recompute the store id
    with _sandbox() as work:
        store = work / "store"
        store.mkdir()
        for name in os.listdir(world["store"]):
            if name != "manifest.json":
                os.symlink(world["store"] / name, store / name)
        if resign:
            with contextlib.suppress(ValueError, TypeError, AttributeError, RecursionError):
                manifest = json.loads(raw)
                manifest["store_id"] = manifest_id(manifest)
                raw = _json_bytes(manifest)
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
    (store / "manifest.json").write_bytes(manifest if manifest is not None else _json_bytes(world["files"]["manifest"]))
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
    with _sandbox() as work:
        store = _store_copy(world, work, nested)
        assert _check(["compile", store, "-o", work / "out", "--bits", "8"], work, world, work / "out", store) != 0
        assert _check(["verify", store], work, world, None) != 0
        line = _run_runner_cli(world["root"] / "clean" / "runner.py", store, work)
        assert "manifest.json" in line and "nested too deeply" in line, line


# tokenizer.json files the `tokenizers` package refuses
BAD_TOKENIZERS = (b"", b"garbage", b"{}", b"[" * 100_000, b"\xff\xfe{}", b'{"model": {"type": "WordPiece", "vocab": {"a": -1}}}')


@pytest.mark.parametrize("tokenizer", BAD_TOKENIZERS, ids=["empty", "text", "object", "nested", "binary", "bad-vocab"])
def test_a_bad_tokenizer_is_one_line_in_shard_compile_profile_and_the_runner(world, tokenizer, monkeypatch):
    with _sandbox() as work:
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
        store = _store_copy(world, work, _json_bytes(manifest))
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
    with _sandbox() as work:
        checkpoint = work / "ckpt"
        checkpoint.mkdir()
        for name in os.listdir(world["checkpoint"]):
            if name != "config.json":
                os.symlink(world["checkpoint"] / name, checkpoint / name)
        (checkpoint / "config.json").write_bytes(raw)
        _check(["shard", checkpoint, "-o", work / "store", "--bits", "8", "--shards-per-layer", "2"], work, world, work / "store")


FLAG_VALUES = st.one_of(
    st.sampled_from(["4", "8", "0", "-1", "33", "1e3", "nan", "inf", "-inf", "40ms", "2MB", "200MB/s", "1e999s",
                     "0.0001ms", "2MiB", "", " ", "4,8", "x", "9" * 30, "1_0", "0x10", *PAYLOADS]),
    st.text(max_size=12),
)
COMPILE_FLAGS = ("--bits", "--latency", "--memory", "--seq-len", "--shards-per-chunk", "--time-limit", "--solver")


@FUZZ
@given(data=st.data())
def test_fuzzed_compile_flags(world, data):
    flags = data.draw(st.lists(st.tuples(st.sampled_from(COMPILE_FLAGS), FLAG_VALUES), max_size=3))
    with _sandbox() as work:
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
    with _sandbox() as work:
        argv = ["shard", world["checkpoint"], "-o", work / "store"]
        for flag, value in flags:
            argv += [flag, value]
        if "--bits" not in argv:
            argv += ["--bits", "8"]  # keep successful shards fast
        _check(argv, work, world, work / "store")
