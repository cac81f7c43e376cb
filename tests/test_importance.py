"""The importance profiler: its reference forward, its per-shard losses, workers, cache and inputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from helpers import compile_runner, hf_hidden, hf_model, pooled
from tokenizers import Tokenizer, models, pre_tokenizers, processors

from solvers.uniform import uniform_plan
from sticc.base.errors import UserError
from sticc.ir.graph import ShardChoice
from sticc.ir.plan import SolverInfo, make_plan
from sticc.model.store import Store, write_store
from sticc.profile.importance import ImportanceProfile, additivity_summary, random_plans
from sticc.profile.measure_importance import (
    CalibrationBatch,
    ImportanceMeasurer,
    cached_importance,
    calibration_inputs,
    cosine_losses,
    measure_importance,
    read_calibration_texts,
)
from sticc.runtime.sentence import mean_pool

PLANS = 4  # additivity plans in these tests (the default is 16)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One torch thread, as the profiler's workers use: with two, every kernel waits for the second
    core, which costs milliseconds per call when another process holds it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def profile(tiny_bert_store: Path) -> ImportanceProfile:
    return measure_importance(Store.open(tiny_bert_store), workers=1, additivity_plans=PLANS)


@pytest.fixture(scope="module")
def measurer(tiny_bert_store: Path) -> ImportanceMeasurer:
    store = Store.open(tiny_bert_store)
    return ImportanceMeasurer(store, calibration_inputs(store).batches, 32)


@pytest.fixture(scope="module")
def word_store(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Path:
    """The tiny BERT with a word-level tokenizer.json, stored at 3 and 16 bits only (no 32)."""
    model_dir = tmp_path_factory.mktemp("ckpt") / "tiny-bert-words"
    shutil.copytree(tiny_bert, model_dir)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "a", "cat", "dog", "sat", "on", "mat", "ran", "."]
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)],
    )
    tokenizer.save(str(model_dir / "tokenizer.json"))
    out = tmp_path_factory.mktemp("stores") / "tiny-bert-words"
    write_store(model_dir, out, bits=(3, 16))
    return out


def runner_losses(runner, batches: tuple[CalibrationBatch, ...], reference: list[torch.Tensor]) -> float:
    """Mean 1 - cosine of the runner's pooled outputs against `reference`, over every sentence."""
    total, count = 0.0, 0
    for batch, ref in zip(batches, reference, strict=True):
        out = mean_pool(runner.forward(batch.input_ids, batch.attention_mask, batch.token_type_ids), batch.attention_mask)
        total += float(cosine_losses(ref, out).sum())
        count += len(ref)
    return total / count


def test_reference_forward_matches_runner_and_hf(tiny_bert: Path, tiny_bert_store: Path, measurer, tmp_path: Path) -> None:
    store = Store.open(tiny_bert_store)
    runner = compile_runner(tiny_bert_store, uniform_plan(store, 32), tmp_path / "fp32")
    model = hf_model(tiny_bert)
    batches = calibration_inputs(store).batches
    for batch, reference in zip(batches, measurer.pooled, strict=True):
        out = runner.forward(batch.input_ids, batch.attention_mask, batch.token_type_ids)
        torch.testing.assert_close(reference, mean_pool(out, batch.attention_mask), rtol=0, atol=1e-5)
        expected = pooled(hf_hidden(model, batch.input_ids, batch.attention_mask), batch.attention_mask)
        torch.testing.assert_close(reference, expected, rtol=0, atol=1e-4)
    runner.close()
    # a padded batch too (the built-in batches hold sentences of one length: no padding)
    ids = torch.cat([batches[0].input_ids[:1, :4], batches[-1].input_ids[:1, :4]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    ids[1, 2:] = store.spec.pad_token_id
    padded = CalibrationBatch(ids, mask, torch.zeros_like(ids))
    mine = mean_pool(measurer.model.reference_layers(measurer.model.embed(padded), (mask.bool())[:, None, None, :], 0), mask)
    torch.testing.assert_close(mine, pooled(hf_hidden(model, ids, mask), mask), rtol=0, atol=1e-4)


def test_profile_covers_every_shard_and_bitwidth(tiny_bert_store: Path, profile: ImportanceProfile) -> None:
    store = Store.open(tiny_bert_store)
    profile.check_store(store)
    assert profile.calibration.sentences == 32 and "random token" in profile.calibration.source
    assert "32-bit" in profile.metric
    for losses in profile.loss.values():
        assert set(losses) == {0, *store.bits}
        assert losses[32] == 0.0
        assert all(0.0 <= value <= 2.0 for value in losses.values())
        assert losses[16] < 1e-5 < losses[0]
        assert losses[2] > losses[8]


def test_losses_match_the_runner(tiny_bert_store: Path, profile: ImportanceProfile, measurer, tmp_path: Path) -> None:
    """A plan changing one shard, run by its generated runner, loses what the profile says."""
    store = Store.open(tiny_bert_store)
    batches = calibration_inputs(store).batches
    for (layer, index), bits in (((1, 2), 0), ((0, 1), 4), ((1, 0), 2)):
        shards = tuple(
            ShardChoice(l_, i, bits if (l_, i) == (layer, index) else 32)
            for l_ in range(store.spec.layers) for i in range(store.shards_per_layer)
        )
        runner = compile_runner(tiny_bert_store, make_plan(store, shards, SolverInfo("hand", "GIVEN")), tmp_path / f"{layer}-{index}-{bits}")
        measured = runner_losses(runner, batches, measurer.pooled)
        runner.close()
        assert measured == pytest.approx(profile.loss[(layer, index)][bits], rel=1e-4, abs=1e-9)


def test_plan_loss_matches_the_runner(tiny_bert_store: Path, measurer, tmp_path: Path) -> None:
    store = Store.open(tiny_bert_store)
    plan = random_plans(store, 1, seed=3)[0]
    shards = tuple(ShardChoice(layer, i, b) for layer, row in enumerate(plan.bits) for i, b in enumerate(row))
    runner = compile_runner(tiny_bert_store, make_plan(store, shards, SolverInfo("hand", "GIVEN")), tmp_path / "random")
    measured = runner_losses(runner, calibration_inputs(store).batches, measurer.pooled)
    runner.close()
    assert measured == pytest.approx(measurer.plan_loss(plan.bits), rel=1e-4, abs=1e-9)


def test_additivity_record(tiny_bert_store: Path, profile: ImportanceProfile) -> None:
    additivity = profile.additivity
    assert additivity.plans == PLANS == len(additivity.pairs) == len(additivity.mix)
    assert -1.0 <= additivity.pearson <= 1.0 and -1.0 <= additivity.spearman <= 1.0
    assert additivity.min_ratio <= additivity.median_ratio <= additivity.max_ratio
    plans = random_plans(Store.open(tiny_bert_store), PLANS, additivity.seed)
    for plan, (predicted, _) in zip(plans, additivity.pairs, strict=True):
        assert predicted == pytest.approx(
            sum(profile.loss[(layer, i)][b] for layer, row in enumerate(plan.bits) for i, b in enumerate(row))
        )
    # a perfectly additive world: ratio 1, correlations 1
    exact = additivity_summary(plans, [p for p, _ in additivity.pairs], profile.loss)
    assert exact.median_ratio == pytest.approx(1.0) and exact.pearson == pytest.approx(1.0)
    assert exact.spearman == pytest.approx(1.0)


def test_worker_count_does_not_change_the_profile(tiny_bert_store: Path, profile: ImportanceProfile) -> None:
    two = measure_importance(Store.open(tiny_bert_store), workers=2, additivity_plans=PLANS)
    assert two.to_json() == profile.to_json()


def test_json_round_trip(profile: ImportanceProfile, tmp_path: Path) -> None:
    assert ImportanceProfile.from_json(json.loads(json.dumps(profile.to_json()))) == profile
    profile.write(tmp_path / "importance.json")
    assert ImportanceProfile.read(tmp_path / "importance.json") == profile


def test_cache_hit_miss_and_corruption(tiny_bert_store: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STICC_CACHE_DIR", str(tmp_path / "cache"))
    store = Store.open(tiny_bert_store)
    advanced: dict[str, list[int]] = {}

    def progress(items, total, what):
        advanced[what] = [total, 0]
        for item in items:
            advanced[what][1] += 1
            yield item

    first, path, hit = cached_importance(store, None, progress, workers=1)
    assert not hit and path.exists() and path.parent == tmp_path / "cache" / store.store_id[:16]
    assert advanced == {"measuring shards": [8, 8], "measuring random plans": [16, 16]}
    again, same_path, hit = cached_importance(store, None, workers=1)
    assert hit and same_path == path and again == first
    for corrupt in ("{ not json", json.dumps({"format_version": 1, "store_id": store.store_id, "loss": "x"}),
                    json.dumps({**first.to_json(), "store_id": "0" * 64}), "[]"):
        path.write_text(corrupt, encoding="utf-8")
        remeasured, _, hit = cached_importance(store, None, workers=1)
        assert not hit and remeasured == first
        assert ImportanceProfile.read(path) == first  # rewritten whole


def test_calibration_file(word_store: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STICC_CACHE_DIR", str(tmp_path / "cache"))
    store = Store.open(word_store)
    calib = tmp_path / "calib.txt"
    calib.write_text("the cat sat on the mat .\n\n  a dog ran  \nthe dog sat\n", encoding="utf-8")
    assert read_calibration_texts(calib) == ["the cat sat on the mat .", "a dog ran", "the dog sat"]
    profile, path, hit = cached_importance(store, calib, workers=1)
    assert not hit and profile.calibration.sentences == 3 and profile.calibration.source == str(calib)
    assert profile.calibration.tokens == 9 + 5 + 5
    # no 32-bit versions: 16 bits is the reference
    assert "16-bit" in profile.metric and all(losses[16] == 0.0 for losses in profile.loss.values())
    profile.check_store(store)
    built_in, built_in_path, _ = cached_importance(store, None, workers=1)
    assert built_in_path != path and built_in.calibration.sentences == 32


def test_calibration_file_errors(tiny_bert_store: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        read_calibration_texts(tmp_path / "missing.txt")
    (tmp_path / "blank.txt").write_text("\n   \n\n", encoding="utf-8")
    with pytest.raises(UserError, match="holds no text"):
        read_calibration_texts(tmp_path / "blank.txt")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    with pytest.raises(UserError, match="not UTF-8"):
        read_calibration_texts(tmp_path / "latin1.txt")
    with pytest.raises(UserError, match="is a directory, not a file"):
        read_calibration_texts(tmp_path)
    with pytest.raises(UserError, match=r"no tokenizer\.json"):
        calibration_inputs(Store.open(tiny_bert_store), ["some text"])
