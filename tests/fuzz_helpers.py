"""What the fuzz suites (tests/test_fuzz.py, tests/test_fuzz_decoders.py) share: hypothesis'
settings, bad values and injection payloads, mutations of a JSON document, a sandboxed working
directory, and the property every run of sticc or of a runner's command line must hold.

CI runs STICC_FUZZ_EXAMPLES (default 200) derandomized examples per cheap kind (`FUZZ`) and
STICC_FUZZ_SLOW_SCALE (default 0.25: 50) of that per slow kind (`SLOW_FUZZ`: decoders, GGUF files,
runners' command lines); `python examples/fuzz_inputs.py` runs many more of every kind.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import torch
from hypothesis import HealthCheck, currently_in_test_context, event, settings
from hypothesis import strategies as st

from sticc.cli.main import INTERNAL_ERROR_EXIT, main

EXAMPLES = int(os.environ.get("STICC_FUZZ_EXAMPLES", "200"))
SLOW_SCALE = float(os.environ.get("STICC_FUZZ_SLOW_SCALE", "0.25"))


def fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=max(1, examples), deadline=None, derandomize=not os.environ.get("STICC_FUZZ_RANDOM"), database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    )


FUZZ = fuzz_settings(EXAMPLES)
SLOW_FUZZ = fuzz_settings(round(EXAMPLES * SLOW_SCALE))

CODE = "open('PWNED', 'w')"
PAYLOADS = (f'"""\n{CODE}\n"""', f"'''\n{CODE}\n'''", f'"); {CODE}; ("', f"\r{CODE}\n#", f"\\{CODE}\\")
# JSON nested deeper than Python's json module can parse (it raises RecursionError, not ValueError)
NESTED = (b"[" * 100_000, b'{"a": ' * 100_000, b"[" * 100_000 + b"]" * 100_000)

BAD_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 1, 2, 3, 7, 8, 32, 4096, 2**31, 2**53 + 1, 2**63, 2**64, 1e308, -0.0, 0.5, 1e-300]),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=16), st.sampled_from(PAYLOADS),
    st.lists(st.integers(min_value=-3, max_value=40), max_size=4),
    st.dictionaries(st.text(max_size=4), st.integers(min_value=-3, max_value=40), max_size=2),
)
# command-line values: numbers in and out of range, quantities, garbage, payloads
FLAG_VALUES = st.one_of(
    st.sampled_from(["4", "8", "0", "-1", "33", "1e3", "nan", "inf", "-inf", "40ms", "2MB", "200MB/s", "1e999s",
                     "0.0001ms", "2MiB", "", " ", "4,8", "x", "9" * 30, "1_0", "0x10", *PAYLOADS]),
    st.text(max_size=12),
)
# values of a runner's own flags besides those: integers argparse reads but torch cannot hold,
# rates below and above what sticc accepts, durations out of range
RUNNER_VALUES = st.one_of(FLAG_VALUES, st.sampled_from([
    "1", "2", "3", "16", "0.5", "1.5", "-5", "-" + "9" * 30, str(2**64), str(-(2**63) - 1), str(2**63),
    "1025", "4096", "1e-300s", "1e300s", "1B/s", "999999B/s", "5MB/s", "10GB/s", "1e300GB/s",
]))
# a runner's input texts (prompts)
TEXTS = st.one_of(st.text(max_size=16), st.sampled_from(PAYLOADS), st.sampled_from(["hello", "the quick fox", "<|im_start|>user", " ", ""]))


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


def json_bytes(doc) -> bytes:
    return json.dumps(doc).encode()


def mutated(doc: dict, others: tuple[bytes, ...]) -> st.SearchStrategy[bytes]:
    """A strategy of mutated serializations of `doc` (`others`: other kinds' files, for swaps)."""
    paths = _paths(doc)
    raw = json_bytes(doc)

    def set_value(args):
        path, value = args
        copy = json.loads(raw)
        if not path:
            return json_bytes(value)
        _at(copy, path[:-1])[path[-1]] = value
        return json_bytes(copy)

    def delete(path):
        copy = json.loads(raw)
        parent = _at(copy, path[:-1])
        del parent[path[-1]]
        return json_bytes(copy)

    def add(args):
        path, key, value = args
        copy = json.loads(raw)
        target = _at(copy, path)
        if isinstance(target, dict):
            target[key] = value
        elif isinstance(target, list):
            target.append(value)
        return json_bytes(copy)

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
# The property
# ----------------------------------------------------------------------------------------------


class World(dict):
    """A fixture's facts; shown briefly in hypothesis' reports."""

    def __repr__(self) -> str:
        return "<world>"


def checkpoint_with(source: Path, work: Path, replaced: str, raw: bytes) -> Path:
    """The checkpoint directory `source` in `work` (its files linked), with the file `replaced`
    holding `raw`."""
    checkpoint = work / "ckpt"
    checkpoint.mkdir()
    for name in os.listdir(source):
        if name != replaced:
            os.symlink(source / name, checkpoint / name)
    (checkpoint / replaced).write_bytes(raw)
    return checkpoint


@contextlib.contextmanager
def sandbox():
    """A fresh working directory (where a payload would create PWNED), removed afterwards."""
    before = Path.cwd()
    work = Path(tempfile.mkdtemp(prefix="sticc-fuzz-"))
    os.chdir(work)
    try:
        yield work
    finally:
        os.chdir(before)
        shutil.rmtree(work, ignore_errors=True)


def _count(outcome: str) -> None:
    """Count an outcome for `pytest --hypothesis-show-statistics` (within a hypothesis example)."""
    if currently_in_test_context():
        event(outcome)


def assert_one_line(argv, code: int, err: str) -> None:
    """A failure is one `error: ` line on stderr; never a traceback nor sticc's internal error."""
    assert code != INTERNAL_ERROR_EXIT, f"{argv}: {err}"
    assert "Traceback" not in err, err
    if code:
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), f"{argv}: {err!r}"


def check_cli(argv: list, work: Path, out: Path | None, on_success: Callable[[Path], None] | None = None) -> int:
    """Run sticc on `argv` and check the property; `on_success(out)` checks what a success wrote
    (called when `out`/runner.py exists). The exit code."""
    argv = [str(a) for a in argv]
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(argv)
    _count(f"sticc {argv[0]}: {'refused' if code else 'accepted'}")
    assert_one_line(argv, code, stderr.getvalue())
    if code and out is not None:
        assert not out.exists(), f"{argv} failed but wrote {out}"
    elif not code and out is not None and on_success is not None and (out / "runner.py").exists():
        on_success(out)
    assert not (work / "PWNED").exists(), f"{argv} ran an input"
    return code


def run_runner_main(entry: Callable, runner_class, argv: list[str], stdin: str, work: Path) -> tuple[int, str, str]:
    """A runner's command line in this process (`entry`: the runner's `runner_main` or
    `decoder_main`), stdin given; checks the property and that it leaves no thread running.
    (exit code, stdout, stderr)."""
    threads = threading.active_count()
    stdout, stderr = io.StringIO(), io.StringIO()
    real_stdin = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                code = entry(runner_class, argv)
            except SystemExit as done:  # argparse: usage errors and --help
                code = done.code if isinstance(done.code, int) else 1
    finally:
        sys.stdin = real_stdin
    err = stderr.getvalue()
    _count(f"runner: {'refused' if code else 'ran'}")
    assert_one_line(argv, code, err)
    assert threading.active_count() == threads, f"{argv}: the runner's threads outlive its command ({err!r})"
    assert not (work / "PWNED").exists(), f"{argv} ran an input"
    return code, stdout.getvalue(), err


def flag_sets(good: dict[str, st.SearchStrategy[str]], bad: st.SearchStrategy[str], max_size: int = 3) -> st.SearchStrategy[dict]:
    """Up to `max_size` of the flags of `good`, each with a value: one of its good ones (`good[flag]`)
    or a bad one, as often."""
    flags = st.lists(st.sampled_from(sorted(good)), unique=True, max_size=max_size)
    return flags.flatmap(lambda chosen: st.fixed_dictionaries({flag: st.one_of(good[flag], bad) for flag in chosen}))


def runner_argv(flags: dict, switches: tuple[str, ...], texts: list[str]) -> list[str]:
    """A runner's command line: its flags with their values, its switches, then its texts (after
    `--` where one would read as a flag)."""
    argv = [item for flag, value in flags.items() for item in (flag, value)] + list(switches)
    return argv + (["--"] if any(text.startswith("-") for text in texts) else []) + texts


@contextlib.contextmanager
def torch_threads_kept():
    """A runner's --threads sets torch's threads for the whole process: this one's are restored."""
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(threads)
