"""The shard store: safetensors validity, alignment, checksums, atomic writes, verify."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from helpers import compile_runner
from safetensors import safe_open

import sticc.model.store as store_module
from solvers.uniform import uniform_plan
from sticc.base.errors import UserError
from sticc.model.store import ALIGNMENT_BYTES, Store, verify_store, write_store


def test_data_file_is_valid_safetensors_with_aligned_blobs(tiny_bert_store):
    store = Store.open(tiny_bert_store)
    with safe_open(store.data_path, framework="pt") as handle:
        names = set(handle.keys())
        word = handle.get_tensor("embed.word")
    assert word.shape == (store.spec.vocab, store.spec.hidden)
    assert "shard.1.3.ffn.4" in names and "header.layer.0" in names
    for version in store.versions.values():
        assert version.extent.offset % ALIGNMENT_BYTES == 0
    assert store.word_embeddings.offset % ALIGNMENT_BYTES == 0


def test_every_shard_at_every_bitwidth(tiny_bert_store):
    store = Store.open(tiny_bert_store)
    assert len(store.versions) == store.spec.layers * store.shards_per_layer * 2 * len(store.bits)
    assert store.bits == (2, 3, 4, 5, 6, 8, 16, 32)


def test_verify_passes_on_a_fresh_store(tiny_bert_store):
    assert verify_store(Store.open(tiny_bert_store)) == []


def _corrupt_copy(tmp_path, source, offset):
    copy = tmp_path / "corrupt"
    shutil.copytree(source, copy)
    data = copy / store_module.DATA_FILE
    raw = bytearray(data.read_bytes())
    raw[offset] ^= 0x40
    data.write_bytes(bytes(raw))
    return copy


def test_one_corrupt_byte_is_found_by_verify_and_by_the_runner(tmp_path, tiny_bert_store):
    store = Store.open(tiny_bert_store)
    version = store.version(1, 2, "ffn", 4)
    copy = _corrupt_copy(tmp_path, tiny_bert_store, version.extent.offset + 5)
    problems = verify_store(Store.open(copy))
    assert problems == ["layer 1 shard 2 ffn @4b: checksum mismatch"]
    runner = compile_runner(copy, uniform_plan(Store.open(copy), 4), tmp_path / "out")
    runner_store_error = type(runner).forward.__globals__["StoreError"]  # the runner's own inlined class
    with pytest.raises(runner_store_error, match="checksum mismatch in layer 1 shard 2 ffn @4b"):
        runner.forward(torch.tensor([[5, 6, 7]]))


def test_corrupt_embedding_row_is_named(tmp_path, tiny_bert_store):
    store = Store.open(tiny_bert_store)
    table = store.word_embeddings
    copy = _corrupt_copy(tmp_path, tiny_bert_store, table.offset + 17 * table.row_nbytes + 3)
    assert verify_store(Store.open(copy)) == ["word embedding row 17: checksum mismatch"]


def test_edited_manifest_is_rejected(tmp_path, tiny_bert_store):
    copy = tmp_path / "edited"
    shutil.copytree(tiny_bert_store, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["versions"][0]["offset"] += 4096
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="modified"):
        Store.open(copy)


def test_interrupted_write_leaves_nothing_that_loads(tmp_path, tiny_bert, monkeypatch):
    calls = {"n": 0}
    real = store_module.encode_piece

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 5:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(store_module, "encode_piece", failing)
    out = tmp_path / "store"
    with pytest.raises(KeyboardInterrupt):
        write_store(tiny_bert, out, bits=(4,))
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no partial directory left behind


def test_rewriting_replaces_an_existing_store(tmp_path, tiny_bert):
    out = tmp_path / "store"
    first = write_store(tiny_bert, out, bits=(4,))
    second = write_store(tiny_bert, out, bits=(8,))
    assert second.bits == (8,) and first.store_id != second.store_id
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]


def test_refuses_to_overwrite_a_non_store(tmp_path, tiny_bert):
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="not a sticc store"):
        write_store(tiny_bert, out, bits=(4,))
    assert (out / "notes.txt").read_text() == "keep me"


def test_store_is_deterministic(tmp_path, tiny_bert):
    a = write_store(tiny_bert, tmp_path / "a", bits=(3, 8))
    b = write_store(tiny_bert, tmp_path / "b", bits=(3, 8))
    assert a.store_id == b.store_id
    assert (a.data_path).read_bytes() == (b.data_path).read_bytes()


def test_a_store_of_the_old_format_is_refused_with_one_line_to_re_shard(tmp_path, tiny_bert_store):
    """Format 1 (crc32 checksums) cannot be read by this sticc nor by a runner compiled by it."""
    from sticc.model.store import manifest_id

    store = Store.open(tiny_bert_store)
    runner = compile_runner(tiny_bert_store, uniform_plan(store, 8), tmp_path / "out")
    old = tmp_path / "old"
    shutil.copytree(tiny_bert_store, old)
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["format_version"] = 1
    manifest["store_id"] = manifest_id(manifest)
    (old / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match=r"store of format 1, this sticc reads format 2: re-shard") as error:
        Store.open(old)
    assert "\n" not in str(error.value)
    with pytest.raises(RuntimeError, match=r"store of format 1; this runner reads format 2: re-shard"):
        type(runner)(str(old))  # the runner's own StoreError


def test_the_data_file_ends_on_a_whole_read_unit(tiny_bert_store):
    assert Store.open(tiny_bert_store).data_path.stat().st_size % ALIGNMENT_BYTES == 0


def test_a_manifest_layout_that_is_not_a_number_is_malformed(tmp_path, tiny_bert_store):
    """A layout field holding text never reaches a runner's source: the manifest is malformed."""
    from sticc.model.store import manifest_id

    bad = tmp_path / "bad"
    shutil.copytree(tiny_bert_store, bad)
    manifest = json.loads((bad / "manifest.json").read_text())
    manifest["versions"][0]["layout"]["rows"] = "1); import os  # "
    manifest["store_id"] = manifest_id(manifest)
    (bad / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match=r"manifest\.json: versions\[0\]\.layout\.rows: input should be a valid integer"):
        Store.open(bad)
