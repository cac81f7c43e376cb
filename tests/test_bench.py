"""The benchmark harness on a tiny model: every case runs, and its figures are what they claim."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import compile_runner

from sticc.bench.cases import proc_status_bytes
from sticc.bench.suite import (
    Settings,
    bench,
    layerwise_plan,
    preload_plan,
    rss_peaks_in_call,
    timing_ids,
)
from sticc.bench.sweep import FIGURES, Point, write_outputs
from sticc.cli.main import main
from sticc.ir.plan import RuntimeSettings
from sticc.model.store import Store


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
    # preload and load-exec hold every weight: the pool (every chunk pinned in place, the headers,
    # a scratch for the embedding rows; whole read units each) and the embedding tables
    store = Store.open(tiny_bert_store)
    preload = preload_plan(store, subject.seq_len)
    tables = sum(t.rows * t.row_nbytes for t in (store.word_embeddings, store.position_embeddings))
    held = preload.predicted.peak_weight_bytes + tables
    assert fp32 <= results["preload"].peak_weight_bytes == results["load-exec"].peak_weight_bytes == held
    assert results["sticc"].peak_weight_bytes <= plan["memory_budget_bytes"]
    layerwise = layerwise_plan(Store.open(tiny_bert_store), subject.seq_len, RuntimeSettings())
    # (on this 2-layer model one block decoded, one as slack and two admitted are every weight)
    assert results["layerwise"].peak_weight_bytes == layerwise.predicted.peak_weight_bytes <= layerwise.memory_budget_bytes
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


def test_warm_runs_read_only_what_direct_io_reads(tmp_path, tiny_bert_store):
    out = tmp_path / "out"
    assert main(["compile", str(tiny_bert_store), "-o", str(out), "--bits", "4", "--seq-len", "16"]) == 0
    _, _, results = bench(out, None, Settings(runs=2, cold=False, io_bandwidth_Bps=None), ("preload",), no_progress)
    assert [r.name for r in results] == ["sticc", "preload"]
    assert all(r.runs == 2 for r in results)
    assert results[1].disk_read_bytes == 0  # everything is in memory
    # the runner reads its chunks with direct IO, past the page cache, warm or cold; its embedding
    # rows come from the warm page cache
    plan = json.loads((out / "plan.json").read_text())
    streamed = plan["predicted"]["io_bytes"] - 4 * 32 * (16 + 16)
    assert results[0].disk_read_bytes == (streamed if Store.open(tiny_bert_store).data_path.stat() and _direct_io(tiny_bert_store) else 0)


def _direct_io(store_dir) -> bool:
    from sticc.runtime.core import StoreReader

    reader = StoreReader(str(Store.open(store_dir).data_path))
    try:
        return reader.direct
    finally:
        reader.close()


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


INJECTED = "open('PWNED', 'w')"


@pytest.mark.parametrize("where", ["after the docstring", "in the schedule", "in the runtime", "nested", "nested, --store"])
def test_bench_refuses_an_edited_runner_before_running_it(tmp_path, tiny_bert_store, capsys, monkeypatch, where):
    """`sticc bench` imports and runs OUT/runner.py: one that is not exactly what codegen writes is
    refused in one line, nothing of it run (one nested past Python's parser too: MemoryError there)."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    assert main(["compile", str(tiny_bert_store), "-o", str(out), "--bits", "8", "--seq-len", "16"]) == 0
    runner = out / "runner.py"
    text = runner.read_text(encoding="utf-8")
    join_line = next(line for line in text.splitlines() if line.startswith("        x = self.join("))
    edited = {
        "after the docstring": text.replace('"""\n\n# ==== sticc runtime', f'"""\n{INJECTED}\n# ==== sticc runtime', 1),
        "in the schedule": text.replace(join_line, f"{join_line}\n        {INJECTED}", 1),
        "in the runtime": text.replace("READ_ALIGN_BYTES = 4096", f"READ_ALIGN_BYTES = 4096; {INJECTED}", 1),
        "nested": "x = " + "-" * 100_000 + "1\n",
        "nested, --store": "x = " + "-" * 100_000 + "1\n",
    }[where]
    assert edited != text
    runner.write_text(edited, encoding="utf-8")
    capsys.readouterr()
    store = ["--store", str(tiny_bert_store)] if where.endswith("--store") else []
    assert main(["bench", str(out), *store, "--runs", "1", "--baselines", "preload"]) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    expected = "nested too deeply to parse" if where.startswith("nested") else "it is not the runner sticc writes"
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], err
    assert not (tmp_path / "PWNED").exists()


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
    """preload (tables pinned), layerwise (a block loaded while one computes) and plain row reads agree."""
    from sticc.bench.modes import with_pinned_embeddings

    store = Store.open(tiny_bert_store)
    ids = torch.tensor([timing_ids(store.spec.vocab, 16)])
    preload = compile_runner(tiny_bert_store, preload_plan(store, 16), tmp_path / "p")
    reference = preload.forward(ids)
    pinned = with_pinned_embeddings(type(preload))(str(tiny_bert_store))
    assert torch.equal(pinned.forward(ids), reference)
    assert pinned.last_stats["io_bytes"] == 0
    assert pinned.last_stats["peak_weight_bytes"] > preload.last_stats["peak_weight_bytes"]  # the tables are held
    plan = layerwise_plan(store, 16, RuntimeSettings())
    layerwise = compile_runner(tiny_bert_store, plan, tmp_path / "l")
    for _ in range(3):
        assert torch.equal(layerwise.forward(ids), reference)
        assert layerwise.last_stats["peak_weight_bytes"] <= plan.memory_budget_bytes


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


# ----------------------------------------------------------------------------------------------
# ONNX Runtime peers (sticc.bench.ort) and cold starts; none of these needs a generated runner
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def onnx_models(tmp_path_factory, tiny_bert):
    """The tiny BERT exported to ONNX and quantized to int8, as `sticc bench` prepares them in its parent."""
    from sticc.bench.ort import export_fp32, quantize_int8

    work = tmp_path_factory.mktemp("ort")
    fp32 = export_fp32(tiny_bert, work / "ort" / "model.onnx")
    return {"ort": fp32, "ort-int8": quantize_int8(fp32, work / "ort-int8" / "model.onnx")}


def _padded_inputs(vocab: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    ids = torch.randint(0, vocab, (4, 12), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    mask[3, 9:] = 0
    return ids, mask, torch.zeros_like(ids)


@pytest.mark.parametrize(("name", "floor"), [("ort", 0.9999), ("ort-int8", 0.999)])
def test_ort_cases_match_fp32(onnx_models, tiny_bert, name, floor):
    """Resident session, padded fidelity batch: pooled last hidden states against transformers in fp32."""
    from helpers import hf_hidden, hf_model, pooled

    from sticc.bench.cases import run_case
    from sticc.bench.ort import ort_spec

    ids, mask, types = _padded_inputs(128)
    fidelity = {"input_ids": ids.tolist(), "attention_mask": mask.tolist(), "token_type_ids": types.tolist()}
    spec = {**ort_spec(name, onnx_models[name], "call", None, True), "input_ids": timing_ids(128, 16), "fidelity_inputs": fidelity}
    result = run_case(spec)
    reference = pooled(hf_hidden(hf_model(tiny_bert), ids, mask), mask)
    scores = torch.nn.functional.cosine_similarity(torch.tensor(result["embeddings"]), reference)
    assert scores.min() > floor, scores  # measured: 1.000000 (fp32), 0.99996 (int8) on this random model
    assert result["peak_weight_bytes"] == onnx_models[name].weight_bytes
    assert result["weight_bytes_method"].startswith("exact: the ONNX initializers' bytes")
    assert result["setup_s"] > 0 and result["latency_s"] > 0  # session and warm-up before the timer, one inference in it


def test_ort_weight_bytes_are_the_initializers(onnx_models, tiny_bert):
    import onnx
    import transformers
    from onnx import numpy_helper

    def initializer_bytes(path: str) -> int:
        return sum(numpy_helper.to_array(tensor).nbytes for tensor in onnx.load(path).graph.initializer)

    fp32, int8 = onnx_models["ort"], onnx_models["ort-int8"]
    assert fp32.weight_bytes == initializer_bytes(fp32.path) and int8.weight_bytes == initializer_bytes(int8.path)
    assert fp32.files == (fp32.path,) and not fp32.quantized and int8.quantized
    # every parameter of the model without its pooler, each once
    model = transformers.BertModel.from_pretrained(tiny_bert, add_pooling_layer=False)
    assert fp32.weight_bytes == sum(parameter.nbytes for parameter in model.parameters())
    dtypes = {tensor.data_type for tensor in onnx.load(int8.path).graph.initializer}
    assert onnx.TensorProto.INT8 in dtypes and int8.weight_bytes < 0.35 * fp32.weight_bytes


def test_ort_cold_start_runs_in_a_fresh_process(onnx_models):
    """Mode "cold-start": the session is created inside the timed call, from an evicted model file."""
    import os

    from sticc.bench.ort import ort_spec
    from sticc.bench.suite import run_child

    model = onnx_models["ort-int8"]
    spec = {**ort_spec("ort-int8", model, "cold-start", None, True), "input_ids": timing_ids(128, 16)}
    result, _ = run_child(spec, sample_rss=False)
    assert result["latency_s"] > 0 and result["peak_weight_bytes"] == model.weight_bytes
    assert result["disk_read_bytes"] >= os.path.getsize(model.path)  # the whole model is read in the call


def test_ort_without_its_packages_is_one_line(monkeypatch, tmp_path, tiny_bert_store):
    import importlib.util

    from sticc.base.errors import UserError
    from sticc.bench.suite import baseline_cases, subject_of

    store = Store.open(tiny_bert_store)
    subject = subject_of(store, {"targets": {"seq_len": 16}})
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None if name == "onnxruntime" else find_spec(name, *args))
    with pytest.raises(UserError) as error:
        baseline_cases(store, subject, Settings(1, True, None), ("preload", "ort-int8"), RuntimeSettings(), tmp_path)
    message = str(error.value)
    assert "\n" not in message and message.startswith("the ort-int8 case needs onnxruntime")
    assert not any(tmp_path.iterdir())  # refused before anything was built


def test_cold_starts_are_interleaved_and_reported(monkeypatch):
    """Cases with a cold-start mode get Settings.runs more runs with mode "cold-start"; the table and JSON show them."""
    import io
    from pathlib import Path

    from rich.console import Console

    import sticc.bench.suite as bench_module
    from sticc.bench.suite import Case, Subject, print_table, run_cases, to_json

    calls = []

    def fake_run_child(spec, sample_rss):
        calls.append((spec["name"], spec["mode"], sample_rss))
        latency_s = {"call": 0.010, "cold-start": 0.100}[spec["mode"]] * (1 + len(calls) / 100)
        return {
            "latency_s": latency_s, "setup_s": 0.0, "peak_weight_bytes": 1000, "weight_bytes_method": "exact",
            "disk_read_bytes": 0, "peak_rss_bytes": 2000, "rss_baseline": {"anon": 0, "file": 0, "total": 0},
            "call_window_s": [0.0, latency_s],
        }, []

    monkeypatch.setattr(bench_module, "run_child", fake_run_child)
    cases = [Case("ort", "an ORT case", {"name": "ort", "mode": "call"}, cold_start=True),
             Case("preload", "a preload case", {"name": "preload", "mode": "call"})]
    results = run_cases(cases, Settings(2, True, None), None, no_progress)
    assert calls == [("ort", "call", True), ("preload", "call", True)] + 2 * [
        ("ort", "call", False), ("ort", "cold-start", False), ("preload", "call", False)]
    ort, preload = results
    assert ort.runs == 2 and ort.cold_start_s.min == pytest.approx(0.104) and ort.cold_start_s.max == pytest.approx(0.107)
    assert ort.latency_s.max < 0.011 and preload.cold_start_s is None
    subject = Subject(Path("store"), "tiny", 2000, False, None, 16, None, None)
    data = json.loads(json.dumps(to_json(subject, Settings(2, True, None), results)))
    assert data["cases"][0]["cold_start_s"]["median"] == pytest.approx(0.1055) and data["cases"][1]["cold_start_s"] is None
    console = Console(file=io.StringIO(), width=200)
    print_table(subject, Settings(2, True, None), results, console)
    table = console.file.getvalue()
    assert "cold start ms (med)" in table and "105.5" in table


def test_lane_modes_load_first_or_only_load(tmp_path, tiny_bert_store):
    """The modes examples/bench_lanes.py times: every load before any compute gives the same
    output; loads alone read every streamed byte and compute nothing."""
    from solvers.uniform import uniform_plan
    from sticc.bench.modes import io_only, with_io_first
    from sticc.ir.plan import memory_model

    store = Store.open(tiny_bert_store)
    ids = torch.tensor([timing_ids(store.spec.vocab, 16)])
    tight = uniform_plan(store, 8, seq_len=16)
    streamed = compile_runner(tiny_bert_store, tight, tmp_path / "tight")
    expected = streamed.forward(ids)
    roomy_budget = memory_model(store, tight.shards, tight.shards_per_chunk, 16).all_chunks_bytes
    roomy = compile_runner(tiny_bert_store, uniform_plan(store, 8, seq_len=16, memory_bytes=roomy_budget), tmp_path / "roomy")
    first = with_io_first(type(roomy))(str(tiny_bert_store))
    trace: list = []
    assert torch.equal(first.forward(ids, trace=trace), expected)
    done = next(e.time_s for e in trace if e.event == "io_all_done")
    assert all(e.time_s <= done for e in trace if e.event == "io_end")
    assert all(e.time_s >= done for e in trace if e.event == "compute_start")
    with pytest.raises(ValueError, match="more --memory"):
        with_io_first(type(streamed))(str(tiny_bert_store)).forward(ids)
    loads = io_only(type(streamed))(str(tiny_bert_store))
    loads.forward(ids)
    assert loads.last_stats["io_bytes"] == streamed.last_stats["io_bytes"]
