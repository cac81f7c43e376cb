"""The command line: the happy path, and every user error as one line with a non-zero exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sticc.cli.main import main
from sticc.model.store import Store

ROOT = Path(__file__).resolve().parent.parent


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, needle: str) -> None:
    assert code != 0
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and needle in lines[0], lines[0]
    assert "Traceback" not in err


def test_shard_compile_verify_and_run(capsys, tmp_path, tiny_bert):
    store = tmp_path / "store"
    code, out, _ = run_cli(capsys, "shard", tiny_bert, "-o", store, "--bits", "4,8", "--shards-per-layer", "2")
    assert code == 0 and "2 shards" in out
    code, out, _ = run_cli(capsys, "verify", store)
    assert code == 0 and "match their checksums" in out
    code, out, _ = run_cli(capsys, "compile", store, "-o", tmp_path / "out", "--bits", "4")
    assert code == 0 and (tmp_path / "out" / "runner.py").exists()
    plan = json.loads((tmp_path / "out" / "plan.json").read_text())
    assert {s["bits"] for s in plan["shards"]} == {4} and len(plan["shards"]) == 4
    # an emitted plan.json is itself a valid --plan input
    code, _, err = run_cli(capsys, "compile", store, "-o", tmp_path / "again", "--plan", tmp_path / "out" / "plan.json")
    assert code == 0, err
    assert (tmp_path / "again" / "runner.py").read_bytes() == (tmp_path / "out" / "runner.py").read_bytes()


@pytest.fixture()
def bad_checkpoints(tmp_path, tiny_bert):
    wrong_type = tmp_path / "wrong-type"
    wrong_type.mkdir()
    config = json.loads((tiny_bert / "config.json").read_text())
    (wrong_type / "config.json").write_text(json.dumps({**config, "model_type": "t5"}))
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    (truncated / "config.json").write_text((tiny_bert / "config.json").read_text())
    data = (tiny_bert / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(data[: len(data) // 2])
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text((tiny_bert / "config.json").read_text())
    (pickled / "pytorch_model.bin").write_bytes(b"not loaded, never unpickled")
    garbage_config = tmp_path / "garbage-config"
    garbage_config.mkdir()
    (garbage_config / "config.json").write_text("{not json")
    return {"wrong-type": wrong_type, "truncated": truncated, "pickled": pickled, "garbage": garbage_config}


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("missing", "does not exist"),
        ("wrong-type", "model_type 't5' is not supported"),
        ("truncated", "not a valid safetensors file"),
        ("pickled", "never pickle"),
        ("garbage", "not valid JSON"),
    ],
)
def test_shard_rejects_bad_models(capsys, tmp_path, bad_checkpoints, case, needle):
    source = tmp_path / "nowhere" if case == "missing" else bad_checkpoints[case]
    out = tmp_path / "store"
    code, _, err = run_cli(capsys, "shard", source, "-o", out)
    assert_one_line_error(code, err, needle)
    assert not out.exists()


@pytest.mark.parametrize(
    ("plan", "needle"),
    [
        ("{oops", "not valid JSON"),
        ('{"shards": [{"layer": 0, "index": 0, "bits": 4}]}', "unspecified"),
        ('{"default_bits": 7}', "bits 7 not in the store"),
        ('{"default_bits": 4, "shards": [{"layer": 9, "index": 0, "bits": 4}]}', "does not exist"),
        ('{"default_bits": 4, "shards": [{"layer": 0, "index": 0, "bits": 0, "preload": true}]}', "dropped and preloaded"),
        ('{"default_bits": 4, "colour": "red"}', "colour: is not a known key"),
        ('{"default_bits": 4, "shards": [{"layer": "0", "index": 0, "bits": 4}]}', "shards[0].layer: input should be a valid integer (got '0')"),
        ('[1, 2]', "JSON object"),
    ],
)
def test_compile_rejects_bad_plans(capsys, tmp_path, tiny_bert_store, plan, needle):
    path = tmp_path / "plan.json"
    path.write_text(plan)
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "compile", tiny_bert_store, "-o", out, "--plan", path)
    assert_one_line_error(code, err, needle)
    assert not (out / "runner.py").exists()


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["compile", "{store}", "-o", "{out}", "--bits", "4", "--frobnicate"], "No such option"),
        (["compile", "{store}", "-o", "{out}"], "give targets (--latency, or --token-latency/--first-token, and/or --memory)"),
        (["compile", "{store}", "-o", "{out}", "--bits", "4", "--plan", "p.json"], "at most one of --bits N or --plan FILE"),
        (["compile", "{store}", "-o", "{out}", "--bits", "4", "--latency", "40ms"], "use one or the other"),
        (["compile", "{store}", "-o", "{out}", "--latency", "40ms", "--solver", "magic"], "--solver 'magic'"),
        (["compile", "{store}", "-o", "{out}", "--latency", "-3ms"], "--latency"),
        (["compile", "{store}", "-o", "{out}", "--bits", "7"], "bits 7 not in the store"),
        (["compile", "{store}", "-o", "{out}", "--bits", "4", "--memory", "10kB"], "below this plan's minimum"),
        (["compile", "{store}", "-o", "{out}", "--bits", "4", "--memory", "lots"], "--memory"),
        (["compile", "{nowhere}", "-o", "{out}", "--bits", "4"], "does not exist"),
        (["verify", "{nowhere}"], "does not exist"),
        (["shard", "{nowhere}", "-o", "{out}", "--bits", "4,x"], "comma-separated"),
        (["frobnicate"], "No such command"),
    ],
)
def test_usage_errors(capsys, tmp_path, tiny_bert_store, argv, needle):
    values = {"store": tiny_bert_store, "out": tmp_path / "out", "nowhere": tmp_path / "nowhere"}
    code, _, err = run_cli(capsys, *[a.format(**values) for a in argv])
    assert_one_line_error(code, err, needle)


def test_verify_reports_corruption_with_non_zero_exit(capsys, tmp_path, tiny_bert_store):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_bert_store, copy)
    data = copy / "weights.safetensors"
    raw = bytearray(data.read_bytes())
    last = max(Store.open(copy).versions.values(), key=lambda v: v.extent.offset)  # the file ends in padding
    raw[last.extent.offset + last.extent.nbytes - 100] ^= 1
    data.write_bytes(bytes(raw))
    code, out, err = run_cli(capsys, "verify", copy)
    assert code == 1 and "corrupt: layer 1 shard 3 ffn @32b: checksum mismatch" in out
    assert len(err.strip().splitlines()) == 1 and "1 corrupt blobs" in err
    assert "Traceback" not in err


def test_console_script_and_runner_processes(tmp_path, minilm_store):
    """Real processes: the installed entry point and a generated runner's own command line."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "sticc.cli.main", "compile", str(minilm_store), "-o", str(out), "--bits", "4"],
        capture_output=True, text=True, env=env, check=False,
    )
    assert done.returncode == 0, done.stderr
    done = subprocess.run(
        [sys.executable, str(out / "runner.py"), "--stats", "a first sentence", "and another one"],
        capture_output=True, text=True, check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["text"] for line in lines[:2]] == ["a first sentence", "and another one"]
    assert len(lines[0]["embedding"]) == 384
    stats = lines[2]["stats"]
    assert {"latency_s", "peak_weight_bytes", "io_bytes", "texts", "tokens", "batches"} <= set(stats) and stats["io_bytes"] > 0
    assert len(stats["batches"]) == 1 and stats["texts"] == 2
    bad = subprocess.run(
        [sys.executable, str(out / "runner.py"), "--store", str(tmp_path / "nowhere"), "text"],
        capture_output=True, text=True, check=False,
    )
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "no sticc store" in bad.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "sticc.cli.main", "shard", str(tmp_path / "nowhere"), "-o", str(tmp_path / "x")],
        capture_output=True, text=True, env=env, check=False,
    )
    assert bad.returncode == 1 and bad.stderr.strip().count("\n") == 0 and "Traceback" not in bad.stderr


@pytest.fixture
def profiled_store(tmp_path, tiny_bert_store):
    """The tiny store with hand-written (synthetic) device and importance profiles on disk."""
    from planning_helpers import synthetic_device, synthetic_importance

    from sticc.model.store import Store

    store = Store.open(tiny_bert_store)
    synthetic_device(store, cap_Bps=4e6).write(tmp_path / "device.json")
    synthetic_importance(store).write(tmp_path / "importance.json")
    return tiny_bert_store, tmp_path / "device.json", tmp_path / "importance.json"


@pytest.mark.parametrize("solver", ["cpsat", "greedy"])
def test_compile_for_targets_writes_runner_plan_and_reports(capsys, tmp_path, profiled_store, solver):
    store, device, importance = profiled_store
    out = tmp_path / "out"
    code, stdout, err = run_cli(
        capsys, "compile", store, "-o", out, "--latency", "3ms", "--memory", "60kB", "--device", device,
        "--importance", importance, "--solver", solver, "--seq-len", "16", "--time-limit", "5s",
    )
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == [
        "device.json", "importance.json", "plan.json", "report.md", "runner.py", "timeline.svg",
    ]
    plan = json.loads((out / "plan.json").read_text())
    assert plan["solver"]["name"] == solver and plan["solver"]["status"] in ("OPTIMAL", "FEASIBLE")
    assert plan["targets"] == {"latency_s": 0.003, "memory_bytes": 60000, "seq_len": 16}
    predicted = plan["predicted"]
    assert predicted["latency_s"] <= predicted["planned_latency_s"] <= 0.003 and predicted["planned_percentile"] == 90
    assert predicted["peak_weight_bytes"] <= 60000
    assert plan["runtime"] == {"io_bandwidth_cap_Bps": 4e6, "compute_threads": 1}
    assert set(plan["shards"][0]) == {"layer", "index", "bits", "preload"}
    assert ("greedy" in plan["comparison"]) == (solver == "cpsat")
    assert "predicted" in stdout and "IO_BANDWIDTH_CAP_BPS = 4000000.0" in (out / "runner.py").read_text()
    code, stdout, _ = run_cli(capsys, "report", out / "plan.json")
    assert code == 0 and solver in stdout


def test_unreachable_targets_exit_2_naming_what_is_reachable(capsys, tmp_path, profiled_store):
    store, device, importance = profiled_store
    code, _, err = run_cli(
        capsys, "compile", store, "-o", tmp_path / "out", "--latency", "10us", "--memory", "60kB",
        "--device", device, "--importance", importance, "--seq-len", "16",
    )
    assert code == 2
    assert_one_line_error(code, err, "no plan meets 10 us within 60.0 kB: the smallest latency reachable with 60.0 kB is")
    assert "(every shard dropped); no memory reaches 10 us" in err and not (tmp_path / "out").exists()
    code, _, err = run_cli(
        capsys, "compile", store, "-o", tmp_path / "out", "--latency", "50ms", "--memory", "1kB",
        "--device", device, "--importance", importance, "--seq-len", "16",
    )
    assert code == 2 and "no plan fits in 1.0 kB; the smallest memory that reaches 50.0 ms is" in err


def test_profiles_for_another_store_are_one_line_errors(capsys, tmp_path, profiled_store, minilm_store):
    _, device, _ = profiled_store
    code, _, err = run_cli(capsys, "compile", minilm_store, "-o", tmp_path / "out", "--latency", "50ms", "--device", device)
    assert_one_line_error(code, err, "measured for pieces")
