"""The checkpoint's sentence-transformers pipeline: read at shard time, applied by the runner, and
both surfaces (`Runner.encode` and the SentenceTransformer adapter) against
`SentenceTransformer(model_dir).encode` itself."""

from __future__ import annotations

import inspect
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from helpers import compile_runner, hf_model, pooled
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Pooling
from sentence_transformers.util.quantization import quantize_embeddings as st_quantize
from test_cli import assert_one_line_error, run_cli

from solvers.uniform import uniform_plan
from sticc.base.errors import UserError
from sticc.integrations.sentence_transformers import sentence_transformer
from sticc.model.checkpoint import Checkpoint
from sticc.model.sentence import sentence_pipeline
from sticc.model.store import Store, write_store
from sticc.model.texts import CALIBRATION_SENTENCES, HELDOUT_LONG_TEXTS, HELDOUT_SHORT_TEXTS, IMPORTANCE_SENTENCES
from sticc.runtime.sentence import BARE_PIPELINE, POOLING_MODES, length_batches, pool, quantize_embeddings

# held out from the quantizer's calibration and the importance profile (the texts of examples/sentence_fidelity.py)
SHORT = list(HELDOUT_SHORT_TEXTS)
# longer than MiniLM's max_seq_length of 256 tokens; the last is longer than its 512 positions too
LONG = list(HELDOUT_LONG_TEXTS)
TEXTS = SHORT + LONG


def cosines(ours, reference) -> np.ndarray:
    ours, reference = np.asarray(ours, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    return (ours * reference).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(reference, axis=1)


# ----------------------------------------------------------------------------------------------
# Reading the pipeline
# ----------------------------------------------------------------------------------------------


def st_checkpoint(tmp_path: Path, minilm: Path, modules: list | None = None, pooling: dict | None = None, **files) -> Path:
    """MiniLM's checkpoint with its sentence-transformers files replaced (weights linked)."""
    out = tmp_path / "st-model"
    shutil.copytree(minilm, out, ignore=shutil.ignore_patterns("model.safetensors"))
    (out / "model.safetensors").symlink_to(minilm / "model.safetensors")
    if modules is not None:
        (out / "modules.json").write_text(json.dumps(modules))
    if pooling is not None:
        (out / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    write_files(out, files)
    return out


def write_files(model: Path, files: dict) -> None:
    """Files by keyword: `1_Pooling__config__json` is 1_Pooling/config.json."""
    for key, content in files.items():
        (model / key.replace("__json", ".json").replace("__", "/")).write_text(content if isinstance(content, str) else json.dumps(content))


TRANSFORMER = {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}
POOLING = {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}
NORMALIZE = {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}


def test_texts_are_held_out():
    fitted = CALIBRATION_SENTENCES + IMPORTANCE_SENTENCES
    assert not set(TEXTS) & set(fitted)
    assert not any(sentence in text for sentence in fitted for text in LONG)


def test_minilm_pipeline_is_read(minilm):
    record = Checkpoint.open(minilm).sentence_pipeline()
    assert (record.max_seq_length, record.pooling, record.include_prompt, record.normalize) == (256, ["mean"], True, True)


@pytest.mark.parametrize(
    ("pooling", "modes"),
    [
        ({"word_embedding_dimension": 384, "pooling_mode_mean_tokens": True, "pooling_mode_cls_token": True}, ["cls", "mean"]),
        ({"embedding_dimension": 384, "pooling_mode": "lasttoken"}, ["lasttoken"]),
        ({"embedding_dimension": 384, "pooling_mode": ["max", "weightedmean"]}, ["max", "weightedmean"]),
        ({"word_embedding_dimension": 384}, ["mean"]),
    ],
)
def test_pooling_config_forms(tmp_path, minilm, pooling, modes):
    model = st_checkpoint(tmp_path, minilm, pooling=pooling)
    assert sentence_pipeline(model, Checkpoint.open(model).spec).pooling == modes


def test_pipeline_without_normalize_max_length_or_modules(tmp_path, minilm):
    """Without modules.json the checkpoint is a bare model: sharded, compiled and run, it keeps the
    bare behaviour (the default prompt and max_seq_length of the other files are not applied)."""
    model = st_checkpoint(
        tmp_path, minilm, modules=[TRANSFORMER, POOLING], sentence_bert_config__json={"do_lower_case": True},
        config_sentence_transformers__json={"prompts": {"query": "query: ", "doc": ""}, "default_prompt_name": "query"},
    )
    record = sentence_pipeline(model, Checkpoint.open(model).spec)
    # no max_seq_length: the tokenizer's model_max_length (512), as sentence-transformers takes it
    assert (record.normalize, record.max_seq_length, record.do_lower_case) == (False, 512, True)
    assert record.runtime().prompt(None, None) == "query: " and record.runtime().prompt("doc", None) == ""
    (model / "modules.json").unlink()
    assert sentence_pipeline(model, Checkpoint.open(model).spec) is None
    store = write_store(model, tmp_path / "store", bits=(32,))
    assert store.sentence_pipeline is None
    runner = compile_runner(tmp_path / "store", uniform_plan(store, 32), tmp_path / "out")
    try:
        # truncation at the model's positions, mean pooling, no normalization
        assert vars(runner.PIPELINE) == vars(BARE_PIPELINE)  # the runner inlines its own SentencePipeline class
        assert runner.max_seq_length == store.spec.max_positions == 512
        ours = runner.encode(LONG, batch_size=2)
    finally:
        runner.close()
    tokenizer, reference_model = transformers.AutoTokenizer.from_pretrained(model), hf_model(model)
    reference = []
    for text in LONG:  # one at a time: no padding
        batch = tokenizer(text, truncation=True, max_length=512, return_tensors="pt")
        with torch.no_grad():
            hidden = reference_model(**batch).last_hidden_state
        reference.append(pooled(hidden, batch["attention_mask"])[0].numpy())
    reference = np.stack(reference)
    assert len(tokenizer(LONG[-1])["input_ids"]) > 512  # the reference is cut, not the text short
    assert cosines(ours, reference).min() >= 0.99999
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), np.linalg.norm(reference, axis=1), rtol=1e-4)


@pytest.mark.parametrize(
    ("modules", "files", "needle"),
    [
        ([TRANSFORMER, POOLING, {"path": "2_Dense", "type": "sentence_transformers.models.Dense"}], {}, "Dense"),
        ([TRANSFORMER, {**POOLING, "type": "os.system"}], {}, "which sticc runners do not run"),
        ([TRANSFORMER, {**POOLING, "path": "../../etc"}], {}, "outside the checkpoint"),
        ([{**TRANSFORMER, "path": "0_BERT"}, POOLING], {}, "shard that folder"),
        ([TRANSFORMER], {}, "Transformer -> Pooling"),
        ([TRANSFORMER, POOLING], {"sentence_bert_config__json": {"max_seq_length": "256"}}, "max_seq_length"),
        ([TRANSFORMER, POOLING], {"1_Pooling__config__json": {"embedding_dimension": 768}}, "768-wide"),
        ([TRANSFORMER, POOLING], {"1_Pooling__config__json": {"pooling_mode": "median"}}, "pooling_mode"),
        ([TRANSFORMER, POOLING], {"config_sentence_transformers__json": {"prompts": {}, "default_prompt_name": "q"}}, "default prompt"),
        ([TRANSFORMER, POOLING], {"modules__json": "{oops"}, "not valid JSON"),
    ],
)
def test_pipelines_sticc_cannot_run_exactly_are_refused(capsys, tmp_path, minilm, modules, files, needle):
    model = st_checkpoint(tmp_path, minilm, modules=modules)
    write_files(model, files)
    with pytest.raises(UserError, match=needle.replace("(", r"\(")):
        sentence_pipeline(model, Checkpoint.open(model).spec)
    if needle == "Dense":  # the command line: one line, nothing written; the flag shards the bare model
        out = tmp_path / "store"
        code, _, err = run_cli(capsys, "shard", model, "-o", out, "--bits", "32")
        assert_one_line_error(code, err, "--no-sentence-pipeline")
        assert not out.exists()
        code, _, _ = run_cli(capsys, "shard", model, "-o", out, "--bits", "32", "--no-sentence-pipeline")
        assert code == 0 and Store.open(out).sentence_pipeline is None


# ----------------------------------------------------------------------------------------------
# The runtime's pieces against sentence-transformers' own
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("modes", [*((m,) for m in POOLING_MODES), ("cls", "mean", "max"), ("weightedmean", "lasttoken")])
@pytest.mark.parametrize("prompt_length", [0, 3])
def test_pooling_equals_sentence_transformers(modes, prompt_length):
    hidden = torch.randn(4, 9, 16)
    mask = torch.ones(4, 9, dtype=torch.int64)
    for row, length in enumerate((9, 5, 4, 2)):  # right padding, as runners pad; one text shorter than the prompt
        mask[row, length:] = 0
    reference = Pooling(16, pooling_mode=modes if len(modes) > 1 else modes[0], include_prompt=not prompt_length)
    features = {"token_embeddings": hidden, "attention_mask": mask, **({"prompt_length": prompt_length} if prompt_length else {})}
    expected = reference(features)["sentence_embedding"]
    torch.testing.assert_close(pool(hidden, mask, modes, prompt_length), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("precision", ["float32", "int8", "uint8", "binary", "ubinary"])
def test_precision_equals_sentence_transformers(precision):
    embeddings = np.random.default_rng(0).standard_normal((40, 36)).astype(np.float32)
    np.testing.assert_array_equal(quantize_embeddings(embeddings, precision), st_quantize(embeddings, precision=precision))


def test_batches_are_longest_first_and_cover_every_text():
    batches = length_batches([3, 9, 1, 9, 4], 2)
    assert batches == [[1, 3], [4, 0], [2]]
    with pytest.raises(ValueError, match="batch_size"):
        length_batches([1], 0)


# ----------------------------------------------------------------------------------------------
# MiniLM end to end: both surfaces against SentenceTransformer(model_dir)
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference(minilm) -> np.ndarray:
    return SentenceTransformer(str(minilm), device="cpu").encode(TEXTS, normalize_embeddings=True)


@pytest.fixture(scope="module")
def minilm_runners(minilm_store, tmp_path_factory):
    store = Store.open(minilm_store)
    out = tmp_path_factory.mktemp("runners")
    runners = {bits: compile_runner(minilm_store, uniform_plan(store, bits), out / f"b{bits}") for bits in (32, 8)}
    yield runners
    for runner in runners.values():
        runner.close()


def test_long_texts_are_truncated_at_max_seq_length(minilm_runners):
    runner = minilm_runners[32]
    assert runner.max_seq_length == 256
    assert [len(e.ids) for e in runner.text_tokenizer().encode_batch(LONG)] == [256] * len(LONG)


@pytest.mark.parametrize(("bits", "floor"), [(32, 0.99999), (8, 0.999)])
def test_runner_encode_equals_sentence_transformers(minilm_runners, reference, bits, floor):
    ours = minilm_runners[bits].encode(TEXTS, normalize_embeddings=True, batch_size=3)
    assert ours.shape == (len(TEXTS), 384) and ours.dtype == np.float32
    assert cosines(ours, reference).min() >= floor


@pytest.mark.parametrize(("bits", "floor"), [(32, 0.99999), (8, 0.999)])
def test_adapter_equals_sentence_transformers(minilm_runners, reference, bits, floor):
    model = sentence_transformer(minilm_runners[bits])
    assert model.max_seq_length == 256
    ours = model.encode(TEXTS, normalize_embeddings=True, batch_size=3)
    assert cosines(ours, reference).min() >= floor


def test_encode_follows_sentence_transformers_shapes_and_stats(minilm_runners):
    runner = minilm_runners[32]
    batched = runner.encode(TEXTS, batch_size=3)
    stats = runner.last_stats
    assert [b["texts"] for b in stats["batches"]] == [min(3, len(TEXTS) - start) for start in range(0, len(TEXTS), 3)]
    assert [b["seq_len"] for b in stats["batches"]] == sorted((b["seq_len"] for b in stats["batches"]), reverse=True)
    assert stats["texts"] == len(TEXTS) and stats["io_bytes"] == sum(b["io_bytes"] for b in stats["batches"])
    assert stats["padded_tokens"] >= stats["tokens"] == sum(len(e.ids) for e in runner.text_tokenizer().encode_batch(TEXTS))
    # batching changes nothing but padding: one at a time gives the same embeddings, in input order
    np.testing.assert_allclose(runner.encode(TEXTS, batch_size=1), batched, atol=2e-5)
    assert np.allclose(np.linalg.norm(batched, axis=1), 1, atol=1e-5)  # MiniLM's Normalize module
    one = runner.encode(TEXTS[0])
    assert one.shape == (384,)
    assert isinstance(runner.encode(TEXTS[:2], convert_to_tensor=True), torch.Tensor)
    as_list = runner.encode(TEXTS[:2], convert_to_numpy=False)
    assert isinstance(as_list, list) and as_list[0].shape == (384,)
    assert runner.encode(TEXTS[:2], truncate_dim=64, normalize_embeddings=True).shape == (2, 64)
    tokens = runner.encode(TEXTS[:2], output_value="token_embeddings")
    assert [t.shape[0] for t in tokens] == [len(e.ids) for e in runner.text_tokenizer().encode_batch(TEXTS[:2])]
    assert runner.encode(TEXTS[:3], precision="ubinary").shape == (3, 48)
    assert runner.encode(TEXTS[:3], precision="int8").dtype == np.int8
    assert runner.encode([]).shape == (0,)
    for bad in ({"precision": "int4"}, {"output_value": "logits"}, {"device": "cuda"}, {"prompt_name": "query"}, {"batch_size": 0}):
        with pytest.raises(ValueError):
            runner.encode(TEXTS[:1], **bad)


def test_encode_names_its_texts_as_sentence_transformers_does(minilm_runners):
    """`inputs`, as sentence-transformers 6 names it, and `sentences=`, as 5 did."""
    runner = minilm_runners[32]
    ours = list(inspect.signature(runner.encode).parameters)
    theirs = [name for name in inspect.signature(SentenceTransformer.encode).parameters if name not in ("self", "pool", "chunk_size", "kwargs")]
    assert ours[: len(theirs)] == theirs and ours[0] == "inputs"
    positional = runner.encode(TEXTS[:3])
    np.testing.assert_array_equal(runner.encode(inputs=TEXTS[:3]), positional)
    np.testing.assert_array_equal(runner.encode(sentences=TEXTS[:3]), positional)
    assert runner.encode(sentences=TEXTS[0]).shape == (384,)
    with pytest.raises(TypeError, match="not both"):
        runner.encode(TEXTS[:1], sentences=TEXTS[:1])
    with pytest.raises(TypeError, match="missing"):
        runner.encode()


def test_prompts_and_excluded_prompt_tokens_match_sentence_transformers(tmp_path, minilm):
    """A checkpoint with CLS + max pooling, prompt tokens left out, a default prompt, no Normalize
    and a shorter max_seq_length: sharded, compiled and run, against sentence-transformers."""
    model = st_checkpoint(
        tmp_path, minilm, modules=[TRANSFORMER, POOLING],
        pooling={"embedding_dimension": 384, "pooling_mode": ["cls", "max"], "include_prompt": False},
        sentence_bert_config__json={"max_seq_length": 48},
        config_sentence_transformers__json={"prompts": {"query": "query: ", "passage": "passage: "}, "default_prompt_name": "query"},
    )
    store = write_store(model, tmp_path / "store", bits=(32,))
    runner = compile_runner(tmp_path / "store", uniform_plan(store, 32), tmp_path / "out")
    st = SentenceTransformer(str(model), device="cpu")
    try:
        for kwargs in ({}, {"prompt_name": "passage"}, {"prompt": "Represent this: "}):
            expected = st.encode(TEXTS, **kwargs)
            assert cosines(runner.encode(TEXTS, **kwargs), expected).min() >= 0.99999
            assert cosines(sentence_transformer(runner).encode(TEXTS, **kwargs), expected).min() >= 0.99999
    finally:
        runner.close()
