"""Decoder importance profiles (sticc/profile/decoder_importance.py) on tiny random Llama and GPT-2 stores.

The losses are checked against compiled runners: a plan with only one shard (or LM head slice)
changed, run by its runner over the calibration passages, must lose the KL the profile says.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch
import transformers
from helpers import build_tiny_checkpoint, compile_runner

from sticc.base.errors import UserError
from sticc.ir.graph import NodeCosts, Phase, ShardChoice, build_graph, store_shape
from sticc.ir.plan import SolverInfo, make_plan
from sticc.model.sharding import lm_head_rows
from sticc.model.store import Store, write_store
from sticc.model.texts import CALIBRATION_SENTENCES, IMPORTANCE_PASSAGES, IMPORTANCE_SENTENCES
from sticc.profile.decoder_importance import (
    DecoderMeasurer,
    decoder_calibration,
    kl_sum,
    lm_head_slice_kl,
)
from sticc.profile.importance import ImportanceProfile, random_plans
from sticc.profile.measure_importance import cached_importance, measure_importance

FAMILIES = ("llama", "gpt2")
PLANS = 4  # additivity plans in these tests (the default is 16)
HELDOUT = Path(__file__).parent.parent / "examples" / "texts" / "heldout.txt"


@pytest.fixture(scope="module")
def tiny_decoders(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """{family: (checkpoint, store at bits 4, 8 and 32)} for llama (grouped-query attention, a separate
    LM head) and gpt2 (learned positions, LayerNorm, biases, tied), as conftest's, without qwen2."""
    out = {}
    for family in FAMILIES:
        checkpoint = build_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / f"tiny-{family}", family)
        store = tmp_path_factory.mktemp("stores") / f"tiny-{family}"
        write_store(checkpoint, store, bits=(4, 8, 32))
        out[family] = (checkpoint, store)
    return out


@pytest.fixture(scope="module")
def profiles(tiny_decoders) -> dict[str, ImportanceProfile]:
    return {
        family: measure_importance(Store.open(tiny_decoders[family][1]), workers=1, additivity_plans=PLANS)
        for family in FAMILIES
    }


@pytest.fixture(scope="module")
def measurers(tiny_decoders):
    out = {}
    for family in FAMILIES:
        store = Store.open(tiny_decoders[family][1])
        out[family] = DecoderMeasurer(store, decoder_calibration(store).passages, 32)
    yield out
    for measurer in out.values():
        measurer.close()


@pytest.fixture(scope="module")
def reference_logits(tiny_decoders, measurers, tmp_path_factory) -> dict[str, list[torch.Tensor]]:
    """Each passage's logits from the 32-bit runner of each family."""
    return {
        family: _runner_logits(tiny_decoders[family][1], {}, measurers[family].passages, tmp_path_factory.mktemp("fp32"))
        for family in FAMILIES
    }


def _runner_logits(store_dir: Path, shards: dict[tuple[int, int], int], passages, out: Path) -> list[torch.Tensor]:
    """Logits [L, vocab] of each passage from a compiled runner whose plan holds every shard and LM
    head slice at 32 bits except `shards` ({position: bits})."""
    store = Store.open(store_dir)
    positions = [(layer, index) for layer in range(store.spec.layers + 1)
                 for index in range(store.lm_head_shards if layer == store.spec.layers else store.shards_per_layer)]
    choices = tuple(ShardChoice(layer, index, shards.get((layer, index), 32)) for layer, index in positions)
    context = max(len(ids) for ids in passages)
    plan = make_plan(store, choices, SolverInfo("hand", "GIVEN"), seq_len=8, context=context, shards_per_chunk=1)
    runner = compile_runner(store_dir, plan, out)
    try:
        return [runner.forward(torch.tensor([ids]))[0][0] for ids in passages]
    finally:
        runner.close()


def _kl(reference: list[torch.Tensor], variant: list[torch.Tensor]) -> float:
    """Mean over every position of KL(reference || variant), float64, from whole logits."""
    total, tokens = 0.0, 0
    for ref, var in zip(reference, variant, strict=True):
        logp = torch.log_softmax(ref.double(), -1)
        logq = torch.log_softmax(var.double(), -1)
        total += float((logp.exp() * (logp - logq)).sum())
        tokens += ref.shape[0]
    return total / tokens


@pytest.mark.parametrize("family", FAMILIES)
def test_reference_forward_matches_the_fp32_runner_and_transformers(tiny_decoders, measurers, reference_logits, family):
    checkpoint, _ = tiny_decoders[family]
    measurer = measurers[family]
    runner_logits = reference_logits[family]
    model = transformers.AutoModelForCausalLM.from_pretrained(checkpoint).eval()
    for p, ids in enumerate(measurer.passages):
        with torch.no_grad():
            expected = model(torch.tensor([ids])).logits[0]
        assert float((measurer.logits[p] - runner_logits[p]).abs().max()) < 1e-5
        assert float((measurer.logits[p] - expected).abs().max()) < 1e-4
    assert _kl(measurer.logits, runner_logits) < 1e-10


@pytest.mark.parametrize("family", FAMILIES)
def test_profile_covers_every_shard_and_lm_head_slice_at_every_bitwidth(tiny_decoders, profiles, family):
    store = Store.open(tiny_decoders[family][1])
    profile = profiles[family]
    profile.check_store(store)
    layers = store.spec.layers
    assert len(profile.loss) == layers * store.shards_per_layer + store.lm_head_shards
    assert "KL" in profile.metric and "32-bit" in profile.metric
    calibration = profile.calibration
    assert calibration.sentences == 4 and calibration.tokens == sum(len(ids) for ids in decoder_calibration(store).passages)
    for (layer, _), losses in profile.loss.items():
        assert set(losses) == {0, 4, 8, 32} and losses[32] == 0.0
        # fewer bits lose more; dropping (or zeroing an LM head slice's logits) loses the most
        assert 0 < losses[8] < losses[4] < losses[0], (layer, losses)
    lm_head = [profile.loss[(layers, index)] for index in range(store.lm_head_shards)]
    assert all(losses[0] > 10 * losses[4] for losses in lm_head)


@pytest.mark.parametrize("family", FAMILIES)
def test_losses_match_a_runner_with_only_that_shard_changed(tiny_decoders, profiles, measurers, reference_logits, family, tmp_path):
    """The differential test: each loss equals the KL between the 32-bit runner's logits and those of
    a runner compiled from a plan that changes only that shard (or LM head slice)."""
    _, store_dir = tiny_decoders[family]
    store = Store.open(store_dir)
    profile, passages, reference = profiles[family], measurers[family].passages, reference_logits[family]
    layers = store.spec.layers
    cases = [((0, 1), 4), ((layers - 1, 0), 0), ((layers, store.lm_head_shards - 1), 8)]
    for (position, bits), name in zip(cases, "abc", strict=True):
        variant = _runner_logits(store_dir, {position: bits}, passages, tmp_path / name)
        measured = _kl(reference, variant)
        assert profile.loss[position][bits] == pytest.approx(measured, rel=1e-3, abs=1e-12), (position, bits)
    # a dropped LM head slice (no plan may drop one): that slice's logits 0, the rest the reference's
    rows = lm_head_rows(store.spec, store.lm_head_shards)
    zeroed = [logits.clone() for logits in reference]
    for logits in zeroed:
        logits[:, rows : 2 * rows] = 0
    assert profile.loss[(layers, 1)][0] == pytest.approx(_kl(reference, zeroed), rel=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_random_plans_loss_matches_its_runner(tiny_decoders, measurers, reference_logits, family, tmp_path):
    _, store_dir = tiny_decoders[family]
    store = Store.open(store_dir)
    measurer = measurers[family]
    plan = next(p for p in random_plans(store, 8, 0) if any(b == 0 for row in p.bits for b in row))
    assert all(plan.bits[-1]) and len(plan.bits[-1]) == store.lm_head_shards  # the LM head row: never dropped
    shards = {(layer, index): bits for layer, row in enumerate(plan.bits) for index, bits in enumerate(row)}
    variant = _runner_logits(store_dir, shards, measurer.passages, tmp_path / "plan")
    assert measurer.plan_loss(plan.bits) == pytest.approx(_kl(reference_logits[family], variant), rel=1e-3)


def test_additivity_record(profiles):
    for profile in profiles.values():
        record = profile.additivity
        assert record.plans == PLANS and len(record.pairs) == PLANS and len(record.mix) == PLANS
        assert record.pearson is not None and record.pearson > 0.9
        for (predicted, measured), mix in zip(record.pairs, record.mix, strict=True):
            assert predicted >= 0 and measured >= 0
            if mix.min_bits == 32 and mix.dropped == 0:
                assert predicted == 0 and measured < 1e-12


def test_the_lm_head_slice_formula_is_the_whole_kl():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 50, generator=generator) * 3
    logp = torch.log_softmax(logits.double(), -1)
    lse = torch.logsumexp(logits.double(), -1)
    columns = slice(20, 35)
    for change in (torch.randn(6, 15, generator=generator) * 1e-3, -logits[:, columns]):  # a small change; the slice zeroed
        variant = logits.clone()
        variant[:, columns] += change
        whole = kl_sum(logp, logp.exp(), variant)
        sliced = lm_head_slice_kl(logits[:, columns], logp.exp()[:, columns], lse, variant[:, columns])
        assert sliced == pytest.approx(whole, rel=1e-9)


@pytest.mark.parametrize("family", FAMILIES)
def test_json_round_trip_and_a_lowered_graph_takes_the_profile(tiny_decoders, profiles, family, tmp_path):
    store = Store.open(tiny_decoders[family][1])
    profile = profiles[family]
    profile.write(tmp_path / "importance.json")
    back = ImportanceProfile.read(tmp_path / "importance.json")
    assert back == profile
    back.check_store(store)
    for phase, seq_len, context in ((Phase.PREFILL, 8, 32), (Phase.DECODE, 1, 32)):
        graph = build_graph(store_shape(store), 1, seq_len, phase, context=context, costs=NodeCosts(loss=back.loss))
        assert graph.loss((store.spec.layers, 0)) == profile.loss[(store.spec.layers, 0)]
    flat = ImportanceProfile.flat(store)
    flat.check_store(store)
    missing = ImportanceProfile(profile.store_id, profile.metric, None, {
        position: losses for position, losses in profile.loss.items() if position[0] < store.spec.layers
    })
    with pytest.raises(UserError, match="LM head slices"):
        missing.check_store(store)


def test_cache_hit_and_miss(tiny_decoders, profiles, monkeypatch, tmp_path):
    monkeypatch.setenv("STICC_CACHE_DIR", str(tmp_path / "cache"))
    store = Store.open(tiny_decoders["llama"][1])
    first, path, hit = cached_importance(store, None, workers=1)
    assert not hit and path.name.startswith("importance-kl-v1-") and path.exists()
    assert first.loss == profiles["llama"].loss  # deterministic
    second, path_again, hit = cached_importance(store, None, workers=1)
    assert hit and path_again == path and second == first
    path.write_text("{not json")
    third, _, hit = cached_importance(store, None, workers=1)
    assert not hit and third.loss == first.loss


def _store_with_byte_tokenizer(checkpoint: Path, tmp_path: Path) -> Store:
    """A tiny store sharded from a copy of `checkpoint` given a byte-level tokenizer.json whose ids
    fit the tiny vocabulary."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    copy = shutil.copytree(checkpoint, tmp_path / "checkpoint")
    vocab = {token: i for i, token in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    (copy / "tokenizer.json").write_text(tokenizer.to_str())
    return write_store(copy, tmp_path / "store", bits=(8, 32))


def test_calibration_texts(tiny_decoders, monkeypatch, tmp_path):
    monkeypatch.setenv("STICC_CACHE_DIR", str(tmp_path / "cache"))
    store = _store_with_byte_tokenizer(tiny_decoders["gpt2"][0], tmp_path)
    assert store.has_tokenizer
    # the built-in passages: the importance sentences, none of them in the quantizer's or the held-out text
    built_in = decoder_calibration(store)
    assert len(built_in.passages) == len(IMPORTANCE_PASSAGES) and built_in.source.startswith("built-in")
    assert " ".join(IMPORTANCE_PASSAGES) == " ".join(IMPORTANCE_SENTENCES)
    assert all(len(ids) == min(len(text.encode()), store.spec.max_positions) for ids, text in zip(built_in.passages, IMPORTANCE_PASSAGES, strict=True))
    heldout = re.sub(r"\s+", " ", HELDOUT.read_text())
    assert not any(sentence in heldout for sentence in IMPORTANCE_SENTENCES)
    assert not set(IMPORTANCE_SENTENCES) & set(CALIBRATION_SENTENCES)
    # --calib: one passage per line
    calib = tmp_path / "calib.txt"
    calib.write_text("A short line of text.\n\n  Another, a little longer, line of calibration text.  \n")
    profile, _, hit = cached_importance(store, calib, workers=1)
    assert not hit and profile.calibration.source == str(calib) and profile.calibration.sentences == 2
    assert profile.calibration.tokens == len("A short line of text.") + len("Another, a little longer, line of calibration text.")
    profile.check_store(store)
    # a store without a tokenizer refuses texts; a blank file is one line of error
    with pytest.raises(UserError, match=r"no tokenizer\.json"):
        cached_importance(Store.open(tiny_decoders["llama"][1]), calib, workers=1)
    blank = tmp_path / "blank.txt"
    blank.write_text("\n  \n")
    with pytest.raises(UserError, match="holds no text"):
        cached_importance(store, blank, workers=1)
