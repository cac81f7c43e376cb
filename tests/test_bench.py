"""The benchmark harness on a tiny model: every case runs, and its figures are what they claim."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import compile_runner

from sticc.bench import (
    LAYERWISE_IO_THREADS,
    Settings,
    bench,
    layerwise_plan,
    preload_plan,
    rss_peaks_in_call,
    timing_ids,
)
from sticc.bench_case import proc_status_bytes
from sticc.cli import main
from sticc.plan import RuntimeSettings
from sticc.store import Store
from sticc.sweep import FIGURES, Point, write_outputs


def no_progress(items, total, what):
    return items


@pytest.fixture(scope="module")
def benched(tmp_path_factory, tiny_bert_store):
    """`sticc bench` of an 8-bit runner beside every baseline but greedy (one timed run each)."""
    out = tmp_path_factory.mktemp("bench") / "out"
    assert main(["compile", str(tiny_bert_store), "-o", str(out), "--bits", "8", "--seq-len", "16"]) == 0
    subject, settings, results = bench(
        out, None, Settings(runs=1, cold=True, io_bandwidth_Bps=None),
        ("preload", "load-exec", "layerwise", "hf", "hf-offload"), no_progress,
    )
    return out, subject, settings, {r.name: r for r in results}


def test_every_case_runs_and_matches_fp32(benched):
    _, subject, _, results = benched
    assert list(results) == ["sticc", "preload", "load-exec", "layerwise", "hf", "hf-offload"]
    assert not subject.random_weights and subject.checkpoint_dir is not None
    for name, result in results.items():
        assert result.runs == 1 and result.latency_s.min == result.latency_s.median > 0, name
        assert result.deadline_met is None  # a --bits plan has no latency target
        floor = 0.99 if name == "sticc" else 0.99999  # 8 bits vs fp32; the fp32 cases are the reference
        assert result.cosine_min >= floor and result.cosine_mean <= 1.0 + 1e-6, name


def test_weight_bytes_are_exact_for_our_runtime(benched, tiny_bert_store):
    out, subject, _, results = benched
    plan = json.loads((out / "plan.json").read_text())
    fp32 = subject.fp32_weight_bytes
    # preload and load-exec hold every weight: the pool's exact count is the model's fp32 size
    # (plus chunk alignment padding)
    assert fp32 <= results["preload"].peak_weight_bytes == results["load-exec"].peak_weight_bytes <= 1.02 * fp32
    assert results["sticc"].peak_weight_bytes <= plan["memory_budget_bytes"]
    layerwise = layerwise_plan(Store.open(tiny_bert_store), subject.seq_len, RuntimeSettings())
    assert results["layerwise"].peak_weight_bytes <= layerwise.memory_budget_bytes < fp32
    # hf holds every parameter; hf-offload one module's at a time (the word embeddings here)
    assert results["hf"].peak_weight_bytes >= fp32 - 4 * 2 * 32  # no pooler; token-type rows as in fp32
    assert results["hf-offload"].peak_weight_bytes < results["hf"].peak_weight_bytes


def test_disk_reads_follow_what_each_case_holds(benched, tiny_bert_store):
    results = benched[3]
    assert results["preload"].disk_read_bytes == 0  # everything, embedding tables too, is in memory
    store = Store.open(tiny_bert_store)
    fp32_pieces = sum(v.extent.nbytes for v in store.versions.values() if v.key.bits == 32)
    assert results["load-exec"].disk_read_bytes >= fp32_pieces  # a cold start reads every weight
    assert results["layerwise"].disk_read_bytes >= fp32_pieces - 4 * store.spec.hidden * 2  # streams every fp32 piece
    assert results["sticc"].disk_read_bytes < results["layerwise"].disk_read_bytes  # 8-bit pieces


def test_warm_runs_read_nothing(tmp_path, tiny_bert_store):
    out = tmp_path / "out"
    assert main(["compile", str(tiny_bert_store), "-o", str(out), "--bits", "4", "--seq-len", "16"]) == 0
    _, _, results = bench(out, None, Settings(runs=2, cold=False, io_bandwidth_Bps=None), ("preload",), no_progress)
    assert [r.name for r in results] == ["sticc", "preload"]
    assert all(r.disk_read_bytes == 0 and r.runs == 2 for r in results)


def test_bench_cli_writes_json_and_rejects_unknown_cases(tmp_path, tiny_bert_store, capsys):
    out = tmp_path / "out"
    assert main(["compile", str(tiny_bert_store), "-o", str(out), "--bits", "8", "--seq-len", "16"]) == 0
    assert main(["bench", str(out), "--runs", "1", "--baselines", "preload", "--json", str(tmp_path / "b.json")]) == 0
    data = json.loads((tmp_path / "b.json").read_text())
    assert [c["name"] for c in data["cases"]] == ["sticc", "preload"] and data["settings"]["runs"] == 1
    assert "sticc" in capsys.readouterr().out
    assert main(["bench", str(out), "--baselines", "preload,llama"]) == 1
    assert "unknown 'llama'" in capsys.readouterr().err
    assert main(["bench", str(out), "--baselines", "greedy"]) == 1  # a --bits plan has no targets to plan for
    assert "compiled for targets" in capsys.readouterr().err
    assert main(["bench", str(tmp_path / "nowhere")]) == 1


def test_emulated_bandwidth_bounds_the_layerwise_case(tmp_path, tiny_bert_store):
    out = tmp_path / "out"
    assert main(["compile", str(tiny_bert_store), "-o", str(out), "--bits", "8", "--seq-len", "16"]) == 0
    cap_Bps = 2e6
    _, settings, results = bench(out, None, Settings(1, True, cap_Bps), ("layerwise",), no_progress)
    assert settings.io_bandwidth_Bps == cap_Bps
    layerwise = results[1]
    planned = layerwise_plan(Store.open(tiny_bert_store), 16, RuntimeSettings())
    assert layerwise.latency_s.median >= planned.predicted.io_bytes / cap_Bps  # every streamed byte waits for the cap


def test_rss_peaks_use_samples_inside_the_call():
    result = {"call_window_s": [10.0, 11.0], "rss_baseline": {"anon": 100, "file": 50, "total": 150}}
    samples = [(9.5, 900, 900), (10.2, 300, 60), (10.8, 250, 80), (11.5, 900, 900)]
    assert rss_peaks_in_call(result, samples) == (200, 30)
    assert rss_peaks_in_call(result, [(11.01, 120, 55)]) == (20, 5)  # a call shorter than the period
    assert rss_peaks_in_call(result, []) == (0, 0)
    assert proc_status_bytes("Name:\tpython\nRssAnon:\t  1024 kB\nRssFile:\t 2 kB\n") == {"RssAnon": 1 << 20, "RssFile": 2048}


def test_timing_ids_are_distinct_and_in_the_vocabulary():
    ids = timing_ids(128, 16)
    assert len(set(ids)) == 16 and all(0 <= i < 128 for i in ids) and ids == timing_ids(128, 16)


def test_baseline_runners_match_each_other(tmp_path, tiny_bert_store):
    """preload (tables pinned), layerwise (several loading threads) and plain row reads agree."""
    store = Store.open(tiny_bert_store)
    ids = torch.tensor([timing_ids(store.spec.vocab, 16)])
    preload = compile_runner(tiny_bert_store, preload_plan(store, 16), tmp_path / "p")
    reference = preload.forward(ids)
    pinned = type(preload)(str(tiny_bert_store), pin_embeddings=True)
    assert torch.equal(pinned.forward(ids), reference)
    assert pinned.last_stats["io_bytes"] == 0
    assert pinned.last_stats["peak_weight_bytes"] > preload.last_stats["peak_weight_bytes"]  # the tables are held
    layerwise = compile_runner(tiny_bert_store, layerwise_plan(store, 16, RuntimeSettings()), tmp_path / "l")
    assert layerwise.IO_THREADS == LAYERWISE_IO_THREADS
    for _ in range(3):
        assert torch.equal(layerwise.forward(ids), reference)
        assert layerwise.last_stats["peak_weight_bytes"] <= layerwise.MEMORY_BUDGET_BYTES


def test_several_io_threads_need_unstaged_plans(tiny_bert_store):
    from dataclasses import replace

    from codegen import emit_runner
    from solvers.uniform import uniform_plan
    from sticc.errors import UserError

    store = Store.open(tiny_bert_store)
    plan = replace(uniform_plan(store, 4), runtime=RuntimeSettings(io_threads=2))
    with pytest.raises(UserError, match="io_threads > 1"):
        emit_runner(store, plan, tiny_bert_store)
    with pytest.raises(UserError, match="positive integer"):
        RuntimeSettings(io_threads=0)


def test_sweep_outputs_plots_and_json(tmp_path, benched):
    _, subject, settings, results = benched
    points = [
        Point("sticc", 0.01, 100_000, results["sticc"]),
        Point("greedy", 0.01, 100_000, results["sticc"]),
        Point("sticc", 0.001, 100_000, None, "no plan meets 1 ms"),
        Point("preload", None, None, results["preload"]),
        Point("layerwise", None, None, results["layerwise"]),
    ]
    written = write_outputs(tmp_path / "sweep", subject, settings, points)
    names = sorted(p.name for p in written)
    assert names == sorted(["sweep.json", *(f"{f}.{ext}" for f in FIGURES for ext in ("png", "svg"))])
    assert sorted(p.name for p in (tmp_path / "sweep").iterdir()) == names  # nothing staged is left
    data = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert [p["case"] for p in data["points"]] == ["sticc", "greedy", "sticc", "preload", "layerwise"]
    assert data["points"][2]["result"] is None and "no plan" in data["points"][2]["note"]
    assert (tmp_path / "sweep" / "memory-vs-latency.png").read_bytes()[:4] == b"\x89PNG"


def test_sweep_cli_plans_runs_and_records_infeasible_points(tmp_path, tiny_bert_store, capsys):
    from planning_helpers import synthetic_device, synthetic_importance

    store = Store.open(tiny_bert_store)
    synthetic_device(store).write(tmp_path / "device.json")
    synthetic_importance(store).write(tmp_path / "importance.json")
    code = main([
        "sweep", str(tiny_bert_store), "--latency", "10us,50ms", "--memory", "60kB", "--runs", "1",
        "--baselines", "preload", "--device", str(tmp_path / "device.json"), "--importance", str(tmp_path / "importance.json"),
        "--seq-len", "16", "--time-limit", "2s", "-o", str(tmp_path / "sweep"),
    ])
    assert code == 0, capsys.readouterr().err
    points = json.loads((tmp_path / "sweep" / "sweep.json").read_text())["points"]
    assert [p["case"] for p in points] == ["sticc", "greedy", "sticc", "greedy", "preload"]
    assert [p["latency_target_s"] for p in points] == [pytest.approx(1e-5), pytest.approx(1e-5), 0.05, 0.05, None]
    unreachable, planned = points[:2], points[2:4]
    assert all(p["result"] is None and "no plan meets" in p["note"] for p in unreachable)
    assert all(p["result"]["peak_weight_bytes"] <= 60_000 and p["result"]["deadline_met"] is not None for p in planned)
    assert main(["sweep", str(tiny_bert_store), "--latency", "fast", "--memory", "1MB"]) == 1
