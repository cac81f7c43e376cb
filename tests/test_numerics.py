"""Differential tests: generated runners against HF transformers on the same inputs."""

from __future__ import annotations

import pytest
import torch
from helpers import build_tiny_checkpoint, compile_runner, hf_hidden, hf_model, pooled, zero_dropped

from solvers.uniform import uniform_plan
from sticc.ir.graph import ShardChoice
from sticc.ir.plan import SolverInfo, make_plan
from sticc.model.store import Store, write_store

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "sticc streams quantized shards from flash while it computes.",
    "A man is playing a guitar on a small stage.",
    "Short one.",
    "What time does the first train leave tomorrow morning, and from which platform?",
]


def _minilm_outputs(minilm, minilm_store, tmp_path, plan, reference_model=None):
    runner = compile_runner(minilm_store, plan, tmp_path / "out")
    ids, mask, types = runner.tokenize(SENTENCES)
    hidden = runner.forward(ids, mask, types)
    reference = hf_hidden(reference_model or hf_model(minilm), ids, mask)
    return hidden, reference, mask, runner


def test_minilm_fp32_matches_transformers(minilm, minilm_store, tmp_path):
    plan = uniform_plan(Store.open(minilm_store), 32)
    hidden, reference, mask, _ = _minilm_outputs(minilm, minilm_store, tmp_path, plan)
    valid = mask.bool()
    assert (hidden - reference)[valid].abs().max().item() <= 1e-4
    cosine = torch.nn.functional.cosine_similarity(pooled(hidden, mask), pooled(reference, mask))
    assert cosine.min().item() >= 0.99999


def test_minilm_8bit_cosine(minilm, minilm_store, tmp_path):
    plan = uniform_plan(Store.open(minilm_store), 8)
    hidden, reference, mask, _ = _minilm_outputs(minilm, minilm_store, tmp_path, plan)
    cosine = torch.nn.functional.cosine_similarity(pooled(hidden, mask), pooled(reference, mask))
    assert cosine.min().item() >= 0.999


def _dropped_plan(
    store: Store, dropped: list[tuple[int, int]], preload: list[tuple[int, int]] = (), shards_per_chunk: int | None = None
) -> object:
    shards = [
        ShardChoice(layer, index, 0 if (layer, index) in dropped else 32, (layer, index) in preload)
        for layer in range(store.spec.layers)
        for index in range(store.shards_per_layer)
    ]
    return make_plan(store, tuple(shards), SolverInfo("hand", "GIVEN"), shards_per_chunk=shards_per_chunk)


def test_minilm_dropped_shards_match_masked_reference(minilm, minilm_store, tmp_path):
    store = Store.open(minilm_store)
    dropped = [(0, 3), (0, 11), (2, 0), (5, 7), (5, 8)] + [(4, i) for i in range(12)]  # layer 4 entirely
    reference_model = hf_model(minilm)
    zero_dropped(reference_model, "bert", dropped, store.shards_per_layer)
    plan = _dropped_plan(store, dropped, preload=[(0, 0), (1, 5)], shards_per_chunk=5)  # chunks of 5, 5, 1
    hidden, reference, mask, _ = _minilm_outputs(minilm, minilm_store, tmp_path, plan, reference_model)
    assert (hidden - reference)[mask.bool()].abs().max().item() <= 1e-4


@pytest.mark.parametrize("family", ["bert", "roberta", "distilbert"])
@pytest.mark.parametrize(("shards_per_layer", "shards_per_chunk"), [(4, None), (4, 1), (4, 2), (2, 1)])
def test_tiny_families_match_transformers(family, shards_per_layer, shards_per_chunk, tmp_path):
    checkpoint = build_tiny_checkpoint(tmp_path / family, family)
    store_dir = tmp_path / "store"
    store = write_store(checkpoint, store_dir, bits=(4, 32), shards_per_layer=shards_per_layer)
    dropped = [(0, 1), (1, 0)]
    plan = _dropped_plan(store, dropped, preload=[(1, 1)], shards_per_chunk=shards_per_chunk)
    runner = compile_runner(store_dir, plan, tmp_path / "out")
    generator = torch.Generator().manual_seed(1)
    pad = 1 if family == "roberta" else 0
    ids = torch.randint(3, 128, (3, 17), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 12:] = 0
    mask[2, 5:] = 0
    ids[mask == 0] = pad
    reference_model = hf_model(checkpoint)
    zero_dropped(reference_model, family, dropped, shards_per_layer)
    hidden = runner.forward(ids, mask)
    reference = hf_hidden(reference_model, ids, mask)
    assert (hidden - reference)[mask.bool()].abs().max().item() <= 1e-4


def test_streamed_runs_decode_exactly_like_single_pieces(tiny_bert_store, tmp_path):
    """Streamed pieces of one layout are read and decoded together; preloaded pieces one blob at a
    time. A mixed-bitwidth plan must give bit-identical output either way."""
    store = Store.open(tiny_bert_store)
    pattern = [4, 4, 8, 3, 16, 32, 6, 4]
    bits = {(layer, index): pattern[layer * 4 + index] for layer in range(2) for index in range(4)}

    def plan(preload: bool):
        shards = tuple(ShardChoice(l, i, b, preload) for (l, i), b in bits.items())  # noqa: E741
        return make_plan(store, shards, SolverInfo("hand", "GIVEN"), shards_per_chunk=4)

    streamed = compile_runner(tiny_bert_store, plan(False), tmp_path / "streamed")
    preloaded = compile_runner(tiny_bert_store, plan(True), tmp_path / "preloaded")
    ids = torch.randint(0, 128, (2, 9), generator=torch.Generator().manual_seed(3))
    assert torch.equal(streamed.forward(ids), preloaded.forward(ids))
    assert preloaded.last_stats["io_bytes"] < streamed.last_stats["io_bytes"]
