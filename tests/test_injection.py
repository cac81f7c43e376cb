"""No input ever becomes code: every field that reaches a runner's source, fed a payload.

Each payload, if it ever ran, would create the file PWNED in the working directory. For every
field from outside the compiler that reaches the template (a checkpoint's name, the store's path,
the manifest's spec, a plan's solver record and runtime settings, a device profile, a GGUF file's
general.name), the pipeline
must either refuse the input with one line, or write a runner that carries the text as data (the
literal equals the input), runs, gives the clean runner's output, and never creates PWNED.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import gguf
import pytest
import torch
from planning_helpers import synthetic_device
from test_gguf import write_tiny_gguf

from codegen import emit_runner, load_runner
from codegen.emit import DECODER_RUNTIME_MODULES, _runtime_body
from codegen.literals import DECODER_RUNNER, check_runner_source
from solvers.uniform import uniform_plan
from sticc.base.errors import UserError
from sticc.cli.main import INTERNAL_ERROR_EXIT, main
from sticc.model.store import Store, manifest_id

CODE = "open('PWNED', 'w')"
PAYLOADS = (
    f'"""\n{CODE}\n"""',
    f"'''\n{CODE}\n'''",
    f'\\"""; {CODE}; """\\',
    f"\r{CODE}\r\n",
    f'x\n# \n{CODE}\n#"',
    f'"); {CODE}; ("',
    f"\u2028{CODE}\u0085\x00",
    f"\ud800{CODE}",  # a lone surrogate: JSON's escapes can write it, it is not Unicode
)
PATH_PAYLOADS = tuple(p for p in PAYLOADS if "\x00" not in p and "\ud800" not in p and "/" not in p)
INPUT_IDS = torch.tensor([[2, 17, 99, 5, 3, 0]])
MASK = torch.tensor([[1, 1, 1, 1, 1, 0]])


def _unicode(text: str) -> bool:
    """Whether `text` is Unicode (has no lone surrogate): JSON files with lone surrogates are refused."""
    return not any(0xD800 <= ord(c) <= 0xDFFF for c in text)


@pytest.fixture()
def workdir(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def small_store(tmp_path_factory, tiny_bert) -> Path:
    out = tmp_path_factory.mktemp("injection") / "store"
    assert main(["shard", str(tiny_bert), "-o", str(out), "--bits", "8", "--shards-per-layer", "2"]) == 0
    return out


@pytest.fixture(scope="module")
def clean_output(small_store, tmp_path_factory) -> torch.Tensor:
    out = tmp_path_factory.mktemp("clean") / "out"
    assert main(["compile", str(small_store), "-o", str(out), "--bits", "8"]) == 0
    return _run(out, small_store)


def _run(out: Path, store: Path) -> torch.Tensor:
    module = load_runner(out / "runner.py")
    runner = module.Runner(str(store), warm_up=False)
    try:
        return runner.forward(INPUT_IDS, MASK)
    finally:
        runner.close()


def _outcome(capsys, argv: list[str]) -> int:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code != INTERNAL_ERROR_EXIT, err
    if code:
        assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return code


def _accepted_runner_is_data(workdir: Path, out: Path, store: Path, clean: torch.Tensor) -> object:
    """The runner at `out` loads and runs without creating PWNED and gives the clean output."""
    module = load_runner(out / "runner.py")
    runner = module.Runner(str(store), warm_up=False)
    try:
        assert torch.equal(runner.forward(INPUT_IDS, MASK), clean)
    finally:
        runner.close()
    assert not (workdir / "PWNED").exists()
    check_runner_source((out / "runner.py").read_text(encoding="utf-8"), _runtime_body())
    return module.Runner


@pytest.mark.parametrize("payload", PAYLOADS)
def test_a_checkpoints_name_is_only_ever_a_literal(capsys, workdir, tiny_bert, clean_output, payload):
    checkpoint = workdir / "ckpt"
    shutil.copytree(tiny_bert, checkpoint)
    config = json.loads((checkpoint / "config.json").read_text())
    (checkpoint / "config.json").write_text(json.dumps({**config, "_name_or_path": payload}))
    store = workdir / "store"
    code = _outcome(capsys, ["shard", checkpoint, "-o", store, "--bits", "8", "--shards-per-layer", "2"])
    if not _unicode(payload):  # strict JSON parsing refuses it, in one line
        assert code != 0 and not store.exists()
        return
    assert code == 0
    assert _outcome(capsys, ["compile", store, "-o", workdir / "out", "--bits", "8"]) == 0
    runner = _accepted_runner_is_data(workdir, workdir / "out", store, clean_output)
    assert payload == runner.MODEL_NAME


@pytest.mark.parametrize("payload", PATH_PAYLOADS)
def test_the_stores_path_is_only_ever_a_literal(capsys, workdir, small_store, clean_output, payload):
    store = workdir / f"store{payload}"
    shutil.copytree(small_store, store)
    assert _outcome(capsys, ["compile", store, "-o", workdir / "out", "--bits", "8"]) == 0
    runner = _accepted_runner_is_data(workdir, workdir / "out", store, clean_output)
    assert str(store.resolve()) == runner.DEFAULT_STORE


# manifest fields: (path into the manifest, whether a text there can be valid)
MANIFEST_FIELDS = (
    (("spec", "name"), True),
    (("spec", "family"), False),
    (("spec", "activation"), False),
    (("spec", "position_kind"), False),
    (("spec", "pad_token_id"), False),
    (("spec", "type_vocab"), False),
    (("spec", "layer_norm_eps"), False),
    (("spec", "norm_placement"), False),
    (("quantizer", "method"), True),
    (("source", "model_dir"), True),
    (("data_file",), False),
    (("tokenizer",), False),
    (("versions", 0, "part"), False),
    (("versions", 0, "checksum"), False),
    (("versions", 0, "layout", "rows"), False),
    (("layer_headers", 0, "offset"), False),
    (("word_embeddings", "rows"), False),
)


def _compile_edited_store(capsys, workdir: Path, small_store: Path, edit) -> tuple[int, Path]:
    """(`sticc compile --bits 8`'s exit code, the store) for a copy of `small_store` whose manifest
    `edit` changed, its store id recomputed (anyone can)."""
    store = workdir / "store"
    shutil.rmtree(store, ignore_errors=True)
    shutil.copytree(small_store, store)
    manifest = json.loads((store / "manifest.json").read_text())
    edit(manifest)
    manifest["store_id"] = manifest_id(manifest)
    (store / "manifest.json").write_text(json.dumps(manifest))
    shutil.rmtree(workdir / "out", ignore_errors=True)
    return _outcome(capsys, ["compile", store, "-o", workdir / "out", "--bits", "8"]), store


@pytest.mark.parametrize(("field", "valid"), MANIFEST_FIELDS, ids=lambda v: ".".join(map(str, v)) if isinstance(v, tuple) else str(v))
def test_manifest_fields_are_refused_or_only_ever_literals(capsys, workdir, small_store, clean_output, field, valid):
    for payload in PAYLOADS[:3] + PAYLOADS[-1:]:

        def edit(manifest: dict, payload: str = payload) -> None:
            node = manifest
            for key in field[:-1]:
                node = node[key]
            node[field[-1]] = payload

        code, store = _compile_edited_store(capsys, workdir, small_store, edit)
        assert (code == 0) == (valid and _unicode(payload)), field
        if code == 0:
            runner = _accepted_runner_is_data(workdir, workdir / "out", store, clean_output)
            if field == ("spec", "name"):
                assert payload == runner.MODEL_NAME
        else:
            assert not (workdir / "out").exists()


# the manifest's sentence-transformers pipeline: (its fields as a payload sets them, whether a text there can be valid)
PIPELINE_FIELDS = (
    (lambda text: {"prompts": {text: text}}, True),
    (lambda text: {"prompts": {text: "q"}, "default_prompt_name": text}, True),
    (lambda text: {"default_prompt_name": text}, False),  # not one of the prompts
    (lambda text: {"pooling": [text]}, False),
    (lambda text: {"max_seq_length": text}, False),
    (lambda text: {"normalize": text}, False),
)
PIPELINE = {"max_seq_length": 16, "do_lower_case": False, "pooling": ["mean"], "include_prompt": True, "normalize": True}


@pytest.mark.parametrize(("fields", "valid"), PIPELINE_FIELDS)
def test_sentence_pipeline_fields_are_refused_or_only_ever_literals(capsys, workdir, small_store, clean_output, fields, valid):
    for payload in PAYLOADS[:3] + PAYLOADS[-1:]:
        code, store = _compile_edited_store(
            capsys, workdir, small_store, lambda manifest, payload=payload: manifest.update(sentence_pipeline={**PIPELINE, **fields(payload)}),
        )
        assert (code == 0) == (valid and _unicode(payload)), fields(payload)
        if code == 0:
            runner = _accepted_runner_is_data(workdir, workdir / "out", store, clean_output)
            assert payload in dict(runner.PIPELINE.prompts)
        else:
            assert not (workdir / "out").exists()


# plan.json fields: (the plan's keys, whether a text there can be valid)
PLAN_FIELDS = (
    ({"solver": {"name": "{}", "status": "GIVEN"}}, True),
    ({"solver": {"name": "hand", "status": "{}"}}, True),
    ({"model": "{}"}, True),
    ({"runtime": {"compute_threads": "{}"}}, False),
    ({"runtime": {"io_bandwidth_cap_Bps": "{}"}}, False),
    ({"targets": {"seq_len": "{}"}}, False),
    ({"targets": {"latency_s": "{}"}}, False),
    ({"shards_per_chunk": "{}"}, False),
    ({"default_bits": "{}"}, False),
    ({"store_id": "{}"}, False),
    ({"plan_hash": "{}"}, False),
    ({"predicted": {"latency_s": "{}"}}, False),
    ({"timeline": {"events": [{"lane": "io", "kind": "load", "label": "{}", "start_s": 0, "end_s": 1}], "compute_stall_s": 0, "ring_wait_s": 0}}, True),
    ({"device": {"device": "{}", "read_bandwidth_Bps": 1e8, "emulated_bandwidth_Bps": None, "compute_threads": 1, "quantile_factor": 1.0}}, True),
)


def _fill(template, payload):
    if isinstance(template, dict):
        return {k: _fill(v, payload) for k, v in template.items()}
    if isinstance(template, list):
        return [_fill(v, payload) for v in template]
    return payload if template == "{}" else template


@pytest.mark.parametrize(("fields", "valid"), PLAN_FIELDS, ids=lambda v: next(iter(v)) if isinstance(v, dict) else str(v))
def test_plan_fields_are_refused_or_only_ever_literals(capsys, workdir, small_store, clean_output, fields, valid):
    for payload in PAYLOADS[:3] + PAYLOADS[-1:]:
        plan = workdir / "plan.json"
        plan.write_text(json.dumps({"default_bits": 8, **_fill(fields, payload)}))
        shutil.rmtree(workdir / "out", ignore_errors=True)
        code = _outcome(capsys, ["compile", small_store, "-o", workdir / "out", "--plan", plan])
        assert (code == 0) == (valid and _unicode(payload)), fields
        if code == 0:
            runner = _accepted_runner_is_data(workdir, workdir / "out", small_store, clean_output)
            assert runner.COMPUTE_THREADS is None and runner.IO_BANDWIDTH_CAP_BPS is None
            assert _outcome(capsys, ["report", workdir / "out"]) == 0


@pytest.mark.parametrize("payload", PAYLOADS)
def test_a_device_profiles_text_is_only_ever_data(capsys, workdir, small_store, clean_output, payload):
    profile = synthetic_device(Store.open(small_store)).to_json()
    (workdir / "device.json").write_text(json.dumps({**profile, "device": payload, "note": payload}))
    argv = ["compile", small_store, "-o", workdir / "out", "--bits", "8", "--device", workdir / "device.json"]
    code = _outcome(capsys, argv)
    assert (code == 0) == _unicode(payload)
    if code:
        return
    _accepted_runner_is_data(workdir, workdir / "out", small_store, clean_output)
    assert json.loads((workdir / "out" / "plan.json").read_text())["device"]["device"] == payload
    assert _outcome(capsys, ["report", workdir / "out"]) == 0


def test_the_check_refuses_data_that_became_code(tiny_bert_store):
    store = Store.open(tiny_bert_store)
    text = emit_runner(store, uniform_plan(store, 8), tiny_bert_store).text
    runtime = _runtime_body()
    check_runner_source(text, runtime)
    name_line = next(line for line in text.splitlines() if line.startswith("    MODEL_NAME = "))
    join_line = next(line for line in text.splitlines() if line.startswith("        x = self.join("))
    forged = {
        "a class attribute that is a call": text.replace(name_line, f"    MODEL_NAME = {CODE}"),
        "a class attribute that is a name": text.replace(name_line, "    MODEL_NAME = os.environ"),
        "a statement after the docstring": text.replace('"""\n\n# ==== sticc runtime', f'"""\n{CODE}\n# ==== sticc runtime', 1),
        "an extra class attribute": text.replace(name_line, f"{name_line}\n    EXTRA = 1"),
        "an extra method": text.replace("    def schedule(", f"    def other(self):\n        {CODE}\n\n    def schedule(", 1),
        "a call in the schedule": text.replace(join_line, f"{join_line}\n        {CODE}", 1),
        "a name in the schedule": text.replace(join_line, f"{join_line}\n        os", 1),
        "a changed runtime": text.replace("READ_ALIGN_BYTES = 4096", "READ_ALIGN_BYTES = 4096; " + CODE, 1),
        "a changed guard": text.replace("raise SystemExit(runner_main(Runner))", f"{CODE}", 1),
        "a decorated class": text.replace("class Runner(EncoderRunner):", "@print\nclass Runner(EncoderRunner):", 1),
        "not Python": text + "\n)",
    }
    for what, source in forged.items():
        assert source != text, what
        with pytest.raises(UserError, match="refusing to write the runner"):
            check_runner_source(source, runtime)


# ----------------------------------------------------------------------------------------------
# Decoders: the same guarantees for their runners (their own template, runtime and literals)
# ----------------------------------------------------------------------------------------------

DECODER_IDS = torch.tensor([[5, 17, 99, 5, 3, 250]])
DECODER_COMPILE = ["--bits", "8", "--prompt-len", "4", "--context", "16"]
# decoder fields of the manifest's spec: none may hold text
DECODER_FIELDS = (
    ("spec", "norm_kind"), ("spec", "ffn_kind"), ("spec", "biases"), ("spec", "lm_head"), ("spec", "rope_theta"),
    ("spec", "eos_token_ids"), ("spec", "norm_placement"), ("lm_head_shards",), ("position_embeddings",),
)


def _decoder_logits(out: Path, store: Path) -> torch.Tensor:
    runner = load_runner(out / "runner.py").Runner(str(store), warm_up=False)
    try:
        return runner.forward(DECODER_IDS)[0]
    finally:
        runner.close()


@pytest.fixture(scope="module")
def decoder_clean(tiny_decoders, tmp_path_factory) -> torch.Tensor:
    out = tmp_path_factory.mktemp("clean-decoder") / "out"
    assert main(["compile", str(tiny_decoders["llama"][1]), "-o", str(out), *DECODER_COMPILE]) == 0
    return _decoder_logits(out, tiny_decoders["llama"][1])


def _decoder_runner_is_data(workdir: Path, out: Path, store: Path, clean: torch.Tensor) -> object:
    assert torch.equal(_decoder_logits(out, store), clean)
    assert not (workdir / "PWNED").exists()
    check_runner_source((out / "runner.py").read_text(encoding="utf-8"), _runtime_body(DECODER_RUNTIME_MODULES), DECODER_RUNNER)
    return load_runner(out / "runner.py").Runner


@pytest.mark.parametrize("payload", PAYLOADS)
def test_a_decoders_name_is_only_ever_a_literal(capsys, workdir, tiny_decoders, decoder_clean, payload):
    checkpoint = workdir / "ckpt"
    shutil.copytree(tiny_decoders["llama"][0], checkpoint)
    config = json.loads((checkpoint / "config.json").read_text())
    (checkpoint / "config.json").write_text(json.dumps({**config, "_name_or_path": payload}))
    store = workdir / "store"
    code = _outcome(capsys, ["shard", checkpoint, "-o", store, "--bits", "8"])
    if not _unicode(payload):
        assert code != 0 and not store.exists()
        return
    assert code == 0
    assert _outcome(capsys, ["compile", store, "-o", workdir / "out", *DECODER_COMPILE]) == 0
    assert payload == _decoder_runner_is_data(workdir, workdir / "out", store, decoder_clean).MODEL_NAME


@pytest.fixture(scope="module")
def gguf_clean(tmp_path_factory) -> torch.Tensor:
    """The logits of the runner of the tiny GGUF as `tests/test_gguf.py` writes it (named "tiny-llama")."""
    root = tmp_path_factory.mktemp("clean-gguf")
    write_tiny_gguf(root / "tiny.gguf")
    assert main(["shard", str(root / "tiny.gguf"), "-o", str(root / "store"), "--bits", "8"]) == 0
    assert main(["compile", str(root / "store"), "-o", str(root / "out"), *DECODER_COMPILE]) == 0
    return _decoder_logits(root / "out", root / "store")


# a GGUF string is UTF-8: a lone surrogate cannot be written into one
@pytest.mark.parametrize("payload", [p for p in PAYLOADS if _unicode(p)])
def test_a_gguf_files_name_is_only_ever_a_literal(capsys, workdir, monkeypatch, gguf_clean, payload):
    write_name = gguf.GGUFWriter.add_name
    monkeypatch.setattr(gguf.GGUFWriter, "add_name", lambda writer, name: write_name(writer, payload))  # general.name
    write_tiny_gguf(workdir / "tiny.gguf")
    store = workdir / "store"
    assert _outcome(capsys, ["shard", workdir / "tiny.gguf", "-o", store, "--bits", "8"]) == 0
    assert Store.open(store).spec.name == payload
    assert _outcome(capsys, ["compile", store, "-o", workdir / "out", *DECODER_COMPILE]) == 0
    assert payload == _decoder_runner_is_data(workdir, workdir / "out", store, gguf_clean).MODEL_NAME
    assert _outcome(capsys, ["report", workdir / "out"]) == 0
    assert not (workdir / "PWNED").exists()


@pytest.mark.parametrize("field", DECODER_FIELDS, ids=lambda v: ".".join(map(str, v)))
def test_decoder_manifest_fields_are_refused(capsys, workdir, tiny_decoders, field):
    for payload in PAYLOADS[:2]:
        store = workdir / "store"
        shutil.rmtree(store, ignore_errors=True)
        shutil.copytree(tiny_decoders["llama"][1], store)
        manifest = json.loads((store / "manifest.json").read_text())
        node = manifest
        for key in field[:-1]:
            node = node[key]
        node[field[-1]] = payload
        manifest["store_id"] = manifest_id(manifest)
        (store / "manifest.json").write_text(json.dumps(manifest))
        assert _outcome(capsys, ["compile", store, "-o", workdir / "out", *DECODER_COMPILE]) != 0, field
        assert not (workdir / "out").exists()


def test_the_check_refuses_a_decoder_runner_that_runs_data(tiny_decoders):
    store = Store.open(tiny_decoders["gpt2"][1])
    text = emit_runner(store, uniform_plan(store, 8, seq_len=4, context=16), tiny_decoders["gpt2"][1]).text
    runtime = _runtime_body(DECODER_RUNTIME_MODULES)
    check_runner_source(text, runtime, DECODER_RUNNER)
    lm_head_line = next(line for line in text.splitlines() if line.startswith("            self.lm_head("))
    forged = {
        "a call in the schedule": text.replace(lm_head_line, f"{lm_head_line}\n            {CODE}", 1),
        "an extra class attribute": text.replace("    CONTEXT = ", "    EXTRA = 1\n    CONTEXT = ", 1),
        "the encoder's base": text.replace("class Runner(DecoderRunner):", "class Runner(EncoderRunner):", 1),
        "the encoder's guard": text.replace("decoder_main(Runner)", "runner_main(Runner)", 1),
    }
    for what, source in forged.items():
        assert source != text, what
        with pytest.raises(UserError, match="refusing to write the runner"):
            check_runner_source(source, runtime, DECODER_RUNNER)
    with pytest.raises(UserError, match="refusing to write the runner"):
        check_runner_source(text, runtime)  # a decoder runner is not an encoder runner
