"""The decoder bench (`sticc.bench.decoder_suite`, `sticc.bench.decoder_cases`) on a tiny random llama:
every case runs and reports sane fields (no timing assertions); the whole bench end to end in fresh
processes; peers that cannot run are skipped with one line; bad requests get one line."""

from __future__ import annotations

import importlib.util
import json
import math

import pytest
from helpers import build_tiny_checkpoint

from codegen import emit_runner, write_output
from solvers.uniform import uniform_plan
from sticc.base.errors import UserError
from sticc.bench.decoder_cases import run_case, run_reference
from sticc.bench.decoder_suite import (
    DecoderBench,
    bench_decoder,
    build_cases,
    decoder_markdown,
    is_decoder_output,
    write_decoder_results,
)
from sticc.bench.suite import Settings
from sticc.compile.plan_view import read_plan_json
from sticc.model.store import Store, write_store

SEQ_LEN, CONTEXT, NEW = 8, 40, 4
PROMPTS = [list(range(3, 3 + SEQ_LEN)), list(range(20, 20 + SEQ_LEN))]  # token ids every tiny vocabulary has
TEXT = list(range(5, 5 + CONTEXT))


def _quiet(iterable, total, what):
    return iterable


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    """(store dir, OUT dir) of a tiny random llama at 4 and 32 bits, a uniform 4-bit runner."""
    root = tmp_path_factory.mktemp("decoder-bench")
    checkpoint = build_tiny_checkpoint(root / "ckpt", "llama")
    store_dir = root / "store"
    store = write_store(checkpoint, store_dir, bits=(4, 32))
    out = root / "out"
    write_output(out, emit_runner(store, uniform_plan(store, 4, seq_len=SEQ_LEN, context=CONTEXT), store_dir))
    return store_dir, out


def _sane(result: dict) -> None:
    assert result["load_s"] > 0 and result["ttft_s"] > 0
    assert len(result["token_latency_s"]) == NEW - 1 and all(t > 0 for t in result["token_latency_s"])
    assert len(result["generated"]) == NEW and len(result["disk_read_token_bytes"]) == NEW - 1
    assert result["weight_bytes"] > 0 and result["weight_bytes_method"]
    for key in ("rss_baseline", "rss_end", "rss_steps_max"):
        assert all(value >= 0 for value in result[key].values())
    assert result["peak_rss_bytes"] >= result["rss_baseline"]["total"]
    start, end = result["call_window_s"]
    assert end > start
    assert result["nll_count"] > 0 and math.isfinite(result["nll_sum"])
    assert 0 <= result["agree"] <= result["agree_total"] == 2 * NEW


def _specs(tiny_llama, baselines, tmp_path):
    store_dir, out = tiny_llama
    store = Store.open(store_dir)
    plan_json = read_plan_json(out / "plan.json")
    cases, reference, skipped = build_cases(out, store, plan_json, Settings(1, True, None), baselines, tmp_path)
    ref = run_reference({**reference.spec, "prompts": PROMPTS, "reference_tokens": NEW, "text": TEXT})
    assert [len(c) for c in ref["continuations"]] == [NEW, NEW] and ref["nll_count"] == CONTEXT - 1
    specs = {c.name: {**c.spec, "prompt_ids": PROMPTS[0], "new_tokens": NEW, "profile": True, "fidelity": _fidelity(ref)} for c in cases}
    return store, plan_json, specs, ref, skipped


def test_every_case_runs_and_reports_sane_fields(tiny_llama, tmp_path):
    store, plan_json, specs, ref, skipped = _specs(tiny_llama, ("preload", "layerwise", "hf", "hf-offload", "llama.cpp"), tmp_path)
    assert set(specs) == {"sticc", "preload", "layerwise", "hf", "hf-offload"}
    assert set(skipped) == {"llama.cpp"} and "\n" not in skipped["llama.cpp"]  # an HF directory: llama.cpp reads GGUF only
    results = {name: run_case(spec) for name, spec in specs.items()}  # in this process: fast; the bench runs fresh ones
    for result in results.values():
        _sane(result)
    fp32 = store.spec.fp32_weight_nbytes
    # the runner holds its pool, exactly; preload everything (and the embedding table); hf every parameter
    assert results["sticc"]["weight_bytes"] == plan_json["predicted"]["peak_weight_bytes"]
    assert results["preload"]["weight_bytes"] >= fp32 > results["layerwise"]["weight_bytes"]
    assert results["hf"]["weight_bytes"] == fp32
    assert 0 < results["hf-offload"]["weight_bytes"] < fp32
    assert results["sticc"]["kv_cache_bytes"] > 0 and results["hf"]["kv_cache_bytes"] > 0
    # fp32 cases decode as the reference does (sticc's runtime, or transformers, at fp32)
    for name in ("preload", "layerwise", "hf", "hf-offload"):
        assert results[name]["generated"] == ref["continuations"][0], name
        assert results[name]["agree"] == results[name]["agree_total"], name
        assert abs(results[name]["nll_sum"] - ref["nll_sum"]) < 1e-3 * abs(ref["nll_sum"]), name


def test_the_bench_end_to_end_in_fresh_processes(tiny_llama, tmp_path):
    _, out = tiny_llama
    assert is_decoder_output(out)
    bench = bench_decoder(out, None, Settings(1, True, None), ("llama.cpp",), _quiet, new_tokens=NEW, agreement_tokens=NEW)
    assert isinstance(bench, DecoderBench) and [r.name for r in bench.results] == ["sticc"]
    assert set(bench.skipped) == {"llama.cpp"}
    r = bench.results[0]
    assert r.runs == 1 and r.load_s.median > 0 and r.ttft_s.median > 0 and r.token_latency_s.min > 0 and r.tokens_per_s > 0
    assert r.weight_bytes == bench.subject.runner_pool_bytes and r.kv_cache_bytes > 0
    assert r.perplexity is not None and math.isfinite(r.perplexity) and 0 <= r.greedy_agreement <= 1
    assert r.greedy_total == bench.subject.agreement_prompts * NEW and 0 <= r.identical_prefix <= NEW
    assert min(r.rss_anon_bytes, r.rss_file_bytes, r.peak_rss_anon_bytes, r.peak_rss_file_bytes, r.peak_rss_bytes) >= 0
    assert r.weights_file_rss_bytes == 0  # the runner reads with direct IO: nothing of the store is mapped
    assert bench.subject.random_weights and bench.subject.text == "random token ids"
    assert math.isfinite(bench.subject.reference_perplexity)
    written = write_decoder_results(bench, tmp_path / "bench.json")
    data = json.loads((tmp_path / "bench.json").read_text())
    assert data["kind"] == "decoder" and data["cases"][0]["name"] == "sticc" and "llama.cpp" in data["skipped"]
    markdown = decoder_markdown(bench)
    assert "| sticc |" in markdown and "llama.cpp skipped" in markdown
    assert (tmp_path / "bench.md").read_text() == markdown
    if importlib.util.find_spec("matplotlib") is not None:
        assert (tmp_path / "bench.svg") in written and (tmp_path / "bench.svg").stat().st_size > 0


def test_bad_requests_get_one_line(tiny_llama, tmp_path):
    _, out = tiny_llama
    settings = Settings(1, True, None)
    with pytest.raises(UserError, match="unknown decoder baseline 'load-exec'"):
        bench_decoder(out, None, settings, ("load-exec",), _quiet)
    with pytest.raises(UserError, match="exceed the runner's context of 40"):
        bench_decoder(out, None, settings, (), _quiet, new_tokens=64)
    with pytest.raises(UserError, match=r"plan\.json does not exist"):
        bench_decoder(tmp_path, None, settings, (), _quiet)
    store = write_store(build_tiny_checkpoint(tmp_path / "ckpt", "llama"), tmp_path / "store4", bits=(4,))
    out4 = tmp_path / "out4"
    write_output(out4, emit_runner(store, uniform_plan(store, 4, seq_len=SEQ_LEN, context=CONTEXT), tmp_path / "store4"))
    with pytest.raises(UserError, match="no fp32 versions"):
        bench_decoder(out4, None, settings, ("preload",), _quiet, new_tokens=NEW, agreement_tokens=NEW)


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    """(GGUF file, its store, OUT, the reference's result) of a tiny llama GGUF with a tied LM head."""
    from test_gguf import write_tiny_gguf

    root = tmp_path_factory.mktemp("decoder-bench-gguf")
    gguf_path = root / "tiny.gguf"
    write_tiny_gguf(gguf_path, tied=True)
    store = write_store(gguf_path, root / "store", bits=(8, 32))
    out = root / "out"
    write_output(out, emit_runner(store, uniform_plan(store, 8, seq_len=SEQ_LEN, context=CONTEXT), root / "store"))
    _, reference, _ = build_cases(out, store, read_plan_json(out / "plan.json"), Settings(1, True, None), (), root)
    ref = run_reference({**reference.spec, "prompts": PROMPTS, "reference_tokens": NEW, "text": TEXT})
    return gguf_path, store, out, ref


def _fidelity(ref: dict) -> dict:
    return {"text": TEXT, "agreement": [[p, c] for p, c in zip(PROMPTS, ref["continuations"], strict=True)]}


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed (the llama-cpp extra)")
def test_the_llama_cpp_case_on_a_gguf_store(tiny_gguf, tmp_path):
    gguf_path, store, out, ref = tiny_gguf
    cases, _, skipped = build_cases(out, store, read_plan_json(out / "plan.json"), Settings(1, True, None), ("llama.cpp",), tmp_path)
    assert not skipped and [c.name for c in cases] == ["sticc", "llama.cpp"]
    result = run_case({**cases[1].spec, "prompt_ids": PROMPTS[0], "new_tokens": NEW, "profile": True, "fidelity": _fidelity(ref)})
    _sane(result)
    assert result["weight_bytes"] <= gguf_path.stat().st_size and result["kv_cache_bytes"] is None
    # llama.cpp maps the whole file: its pages are file-backed RSS of that mapping
    assert 0 < result["weights_file_rss_bytes"] <= gguf_path.stat().st_size
    # the tiny file holds Q8_0 and F32 tensors: llama.cpp's logits stay close to the fp32 reference's
    assert abs(result["nll_sum"] - ref["nll_sum"]) < 0.05 * abs(ref["nll_sum"])


def test_a_gguf_stores_transformers_cases_read_its_fp32_model_saved_once(tiny_gguf, tmp_path, monkeypatch):
    _, store, out, ref = tiny_gguf
    monkeypatch.setenv("STICC_CACHE_DIR", str(tmp_path / "cache"))
    plan_json = read_plan_json(out / "plan.json")
    cases, _, _ = build_cases(out, store, plan_json, Settings(1, True, None), ("hf", "hf-offload"), tmp_path)
    checkpoint = cases[1].spec["checkpoint"]
    assert checkpoint == cases[2].spec["checkpoint"] and checkpoint.startswith(str(tmp_path / "cache"))
    mtime = next((tmp_path / "cache").rglob("model.safetensors")).stat().st_mtime_ns
    build_cases(out, store, plan_json, Settings(1, True, None), ("hf",), tmp_path)  # the cached model, not written again
    assert next((tmp_path / "cache").rglob("model.safetensors")).stat().st_mtime_ns == mtime
    for case in cases[1:]:  # a tied LM head: hf-offload finds the embedding's weights under their own name
        result = run_case({**case.spec, "prompt_ids": PROMPTS[0], "new_tokens": NEW, "profile": True, "fidelity": _fidelity(ref)})
        _sane(result)
        assert result["generated"] == ref["continuations"][0] and result["agree"] == result["agree_total"], case.name
