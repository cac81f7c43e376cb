"""Durable outputs: unique temporary names, whole-directory swaps, and `sticc shard` / `sticc
compile` killed with SIGKILL at random points leaving the old output or a complete new one."""

from __future__ import annotations

import ast
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sticc.base import jsonfile
from sticc.base.errors import UserError
from sticc.base.jsonfile import TEMP_SUFFIX, replace_dir, write_files_atomic, write_json_atomic
from sticc.cli.main import main
from sticc.model.store import Store, verify_store, write_store

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
KILL_POINTS = 6  # per command: about 15 s each on 2 cores


def tree(path: Path) -> dict[str, bytes]:
    """Every file under `path` by relative name, with its bytes."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def temp_leftovers(path: Path) -> list[Path]:
    return [p for p in path.rglob("*") if p.name.endswith(TEMP_SUFFIX)]


# ----------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------


def test_concurrent_json_writers_each_leave_a_whole_file(tmp_path):
    """Threads and processes writing one path at once: no error, the last whole content wins."""
    path = tmp_path / "shared.json"
    contents = [{"writer": k, "payload": [k] * 2000} for k in range(6)]
    errors: list[BaseException] = []

    def write(k: int) -> None:
        try:
            for _ in range(30):
                write_json_atomic(path, contents[k])
        except BaseException as error:  # reported by the assertion below
            errors.append(error)

    script = (
        "import sys; from sticc.base.jsonfile import write_json_atomic\n"
        "k = int(sys.argv[2])\n"
        "for _ in range(30): write_json_atomic(sys.argv[1], {'writer': k, 'payload': [k] * 2000})\n"
    )
    processes = [
        subprocess.Popen([sys.executable, "-c", script, str(path), str(k)], env=ENV, stderr=subprocess.PIPE)
        for k in (4, 5)
    ]
    threads = [threading.Thread(target=write, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for process in processes:
        _, err = process.communicate(timeout=60)
        assert process.returncode == 0, err.decode()
    assert not errors, errors
    assert json.loads(path.read_text(encoding="utf-8")) in contents
    assert [p.name for p in tmp_path.iterdir()] == ["shared.json"]  # no temporary file left


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "data.json"
    write_json_atomic(path, {"old": True})

    def broken(*_):
        raise OSError("disk on fire")

    monkeypatch.setattr(jsonfile.os, "replace", broken)
    with pytest.raises(OSError, match="disk on fire"):
        write_json_atomic(path, {"old": False})
    with pytest.raises(OSError, match="disk on fire"):
        write_files_atomic(tmp_path, {"a.md": "new", "data.json": "new"})
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"old": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.json"]


# ----------------------------------------------------------------------------------------------
# Directories
# ----------------------------------------------------------------------------------------------


def staged(parent: Path, name: str, files: dict[str, str]) -> Path:
    staging = parent / name
    staging.mkdir()
    for file, text in files.items():
        (staging / file).write_text(text)
    return staging


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_replace_dir_swaps_in_the_new_tree_and_removes_the_old(tmp_path, monkeypatch, exchange):
    if not exchange:  # the fallback where RENAME_EXCHANGE is missing
        monkeypatch.setattr(jsonfile, "exchange_paths", lambda a, b: False)
    out = staged(tmp_path, "out", {"a": "old", "only-old": "x"})
    replace_dir(staged(tmp_path, ".out.new", {"a": "new"}), out)
    assert tree(out) == {"a": b"new"}
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # the old tree removed, nothing staged left
    replace_dir(staged(tmp_path, ".fresh.new", {"b": "first"}), tmp_path / "fresh")  # no old: a plain rename
    assert tree(tmp_path / "fresh") == {"b": b"first"}


def test_renameat2_exchange_is_used_on_linux(tmp_path):
    if not sys.platform.startswith("linux"):
        pytest.skip("RENAME_EXCHANGE is Linux's")
    a, b = staged(tmp_path, "a", {"f": "a"}), staged(tmp_path, "b", {"f": "b"})
    if not jsonfile.exchange_paths(a, b):
        pytest.skip("this kernel or filesystem has no RENAME_EXCHANGE")
    assert (a / "f").read_text() == "b" and (b / "f").read_text() == "a"


def test_a_crash_before_the_swap_leaves_the_old_directory(tmp_path, monkeypatch, tiny_bert_store):
    """An exception while staging or at the swap: the old output and store stay, nothing staged remains."""
    from codegen import emit_runner, write_output
    from solvers.uniform import uniform_plan

    store = Store.open(tiny_bert_store)
    out = tmp_path / "out"
    write_output(out, emit_runner(store, uniform_plan(store, 4), tiny_bert_store))
    before = tree(out)

    def crash(*_):
        raise KeyboardInterrupt

    monkeypatch.setattr(jsonfile, "replace_dir", crash)
    with pytest.raises(KeyboardInterrupt):
        write_output(out, emit_runner(store, uniform_plan(store, 8), tiny_bert_store))
    monkeypatch.undo()
    assert tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_write_output_replaces_the_whole_set_and_keeps_a_users_files(tmp_path, tiny_bert_store):
    from codegen import emit_runner, write_output
    from solvers.uniform import uniform_plan

    store = Store.open(tiny_bert_store)
    out = tmp_path / "out"
    write_output(out, emit_runner(store, uniform_plan(store, 4), tiny_bert_store), {"device.json": "{}\n"})
    (out / "notes.txt").write_text("mine")
    (out / "results").mkdir()
    (out / "results" / "bench.json").write_text("{}")
    write_output(out, emit_runner(store, uniform_plan(store, 8), tiny_bert_store))
    files = tree(out)
    # device.json was the old compile's and is not written again: gone, not left stale beside a new plan
    assert sorted(files) == ["notes.txt", "plan.json", os.path.join("results", "bench.json"), "runner.py"]
    assert files["notes.txt"] == b"mine" and json.loads(files["plan.json"])["shards"][0]["bits"] == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    # a directory that is not a sticc output is refused, one line, untouched
    other = staged(tmp_path, "other", {"thesis.tex": "precious"})
    with pytest.raises(UserError, match="is not a sticc output"):
        write_output(other, emit_runner(store, uniform_plan(store, 8), tiny_bert_store))
    assert tree(other) == {"thesis.tex": b"precious"}
    # an empty directory is an output directory to be
    (tmp_path / "empty").mkdir()
    write_output(tmp_path / "empty", emit_runner(store, uniform_plan(store, 8), tiny_bert_store))
    assert (tmp_path / "empty" / "runner.py").is_file()


def test_write_output_follows_a_symlinked_directory(tmp_path, tiny_bert_store):
    from codegen import emit_runner, write_output
    from solvers.uniform import uniform_plan

    store = Store.open(tiny_bert_store)
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    write_output(tmp_path / "link", emit_runner(store, uniform_plan(store, 4), tiny_bert_store))
    assert (tmp_path / "link").is_symlink() and (tmp_path / "real" / "runner.py").is_file()


# ----------------------------------------------------------------------------------------------
# SIGKILL at random points
# ----------------------------------------------------------------------------------------------


PAIR = 2  # processes run at once (2 cores): durations are measured under the same load


def run_cli(runs: list[tuple[list[str], float | None]]) -> float:
    """Run each `sticc ARGV` of `runs` at once, in fresh processes; SIGKILL each whose
    `kill_after` seconds pass before it ends (None: it must finish and succeed). Returns the
    longest wall time."""
    start = time.perf_counter()
    processes = [
        subprocess.Popen([sys.executable, "-m", "sticc.cli.main", *argv], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for argv, _ in runs
    ]
    for process, (_, kill_after) in sorted(zip(processes, runs, strict=True), key=lambda pr: pr[1][1] or 1e9):
        if kill_after is None:
            _, err = process.communicate(timeout=120)
            assert process.returncode == 0, err.decode()
            continue
        try:
            process.wait(timeout=max(0.0, start + kill_after - time.perf_counter()))
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
        process.communicate(timeout=60)
    return time.perf_counter() - start


def kill_delays(duration: float, seed: int) -> list[float]:
    """KILL_POINTS delays spread over a run (one drawn per stratum, seeded), from a third of
    the way in (imports before that) to a little past its measured end."""
    rng = random.Random(seed)
    low, high = 0.3 * duration, 1.05 * duration
    width = (high - low) / KILL_POINTS
    return [low + width * (k + rng.random()) for k in range(KILL_POINTS)]  # in order: pairs end close together


def check_store_dir(path: Path) -> None:
    """Whatever a kill left beside the store (staged directories) must not load as half a store."""
    for entry in path.parent.iterdir():
        try:
            store = Store.open(entry)
        except UserError:
            assert entry != path, f"{entry} is there but does not load"
            continue
        assert verify_store(store) == [], entry


def kill_runs(tmp_path: Path, command: list[str], old: Path, name: str, seed: int, check) -> None:
    """`sticc COMMAND -o OUT` killed at KILL_POINTS random points, in pairs, each into its own
    OUT: an old output there every other time. `check(out, k, delay)` judges what is left and
    says which it is ("old", "new", "none")."""
    reference = [tmp_path / f"new-{k}" for k in range(PAIR)]
    duration = run_cli([([*command, "-o", str(out)], None) for out in reference])
    delays = kill_delays(duration, seed)
    for first in range(0, KILL_POINTS, PAIR):
        runs = []
        for k in range(first, min(first + PAIR, KILL_POINTS)):
            out = tmp_path / f"kill-{k}" / name
            if k % 2:  # an old output to replace every other time, nothing there the others
                shutil.copytree(old, out)
            else:
                out.parent.mkdir()
            runs.append(([*command, "-o", str(out)], delays[k]))
        run_cli(runs)
        for k in range(first, min(first + PAIR, KILL_POINTS)):
            out = tmp_path / f"kill-{k}" / name
            print(f"kill {k} after {delays[k]:.2f}s of {duration:.2f}s:", check(out, k, delays[k]))
            if not out.exists():
                assert not k % 2, f"kill {k} after {delays[k]:.2f}s left no output where one was"
            for entry in out.parent.iterdir():  # staged leftovers are hidden, never at OUT
                assert entry == out or entry.name.startswith("."), entry


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="SIGKILL is POSIX")
def test_shard_killed_at_random_points_leaves_the_old_store_or_the_new(tmp_path, tiny_bert):
    old = tmp_path / "old"
    write_store(tiny_bert, old, bits=(4,))
    old_tree = tree(old)
    command = ["shard", str(tiny_bert), "--bits", "8"]
    new_tree: dict = {}

    def check(out: Path, k: int, delay: float) -> str:
        new_tree.update(new_tree or tree(tmp_path / "new-0"))
        check_store_dir(out)
        if not out.exists():
            return "none"
        assert tree(out) in (old_tree, new_tree), f"kill {k} after {delay:.2f}s left a store that is neither"
        return "old" if tree(out) == old_tree else "new"

    kill_runs(tmp_path, command, old, "store", 10, check)
    assert tree(tmp_path / "new-1") == new_tree != old_tree  # the same store from concurrent runs


def output_hash(out: Path) -> str:
    """The plan hash of a compile output, checked whole: runner.py parses, plan.json is JSON,
    and the runner's PLAN_HASH literal is plan.json's plan_hash."""
    module = ast.parse((out / "runner.py").read_text(encoding="utf-8"))
    literals = [
        node.value.value for node in ast.walk(module)
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "PLAN_HASH" for t in node.targets)
    ]
    plan = json.loads((out / "plan.json").read_text(encoding="utf-8"))
    assert literals == [plan["plan_hash"]], out
    return plan["plan_hash"]


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="SIGKILL is POSIX")
def test_compile_killed_at_random_points_leaves_the_old_output_or_the_new(tmp_path, tiny_bert_store):
    old = tmp_path / "old"
    assert main(["compile", str(tiny_bert_store), "-o", str(old), "--bits", "4"]) == 0
    old_tree = tree(old)
    new_tree: dict = {}

    def check(out: Path, k: int, delay: float) -> str:
        new_tree.update(new_tree or tree(tmp_path / "new-0"))
        if not out.exists():
            return "none"
        output_hash(out)
        assert tree(out) in (old_tree, new_tree), f"kill {k} after {delay:.2f}s left a mixed output"
        return "old" if tree(out) == old_tree else "new"

    kill_runs(tmp_path, ["compile", str(tiny_bert_store), "--bits", "8"], old, "out", 11, check)
    assert output_hash(old) != output_hash(tmp_path / "new-0") == output_hash(tmp_path / "new-1")
