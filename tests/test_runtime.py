"""Runtime pieces shared by the store writer and every runner: packing, dequantization, pool, units."""

from __future__ import annotations

import threading

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sticc.quant import encode_piece, pack_codes, quantize_groups
from sticc.runtime import WeightPool, arena_nbytes, blob_layout, dequantize_into, parse_quantity, unpack_codes_into


@settings(max_examples=60, deadline=None)
@given(bits=st.sampled_from([2, 3, 4, 5, 6, 7, 8]), count=st.integers(1, 64), seed=st.integers(0, 2**16))
def test_pack_unpack_roundtrip(bits, count, seed):
    codes = torch.randint(0, 1 << bits, (8 * count,), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))
    packed = pack_codes(codes, bits)
    assert packed.numel() == count * bits
    out = torch.empty(codes.numel())
    unpack_codes_into(packed, bits, out)
    assert torch.equal(out.to(torch.uint8), codes)


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 6, 8])
def test_rtn_error_is_at_most_half_a_step(bits):
    w = torch.randn(32, 64)
    codes, scales, zeros = quantize_groups(w, bits, method="rtn")
    restored = codes.float() * scales.float()[:, None] + zeros.float()[:, None]
    step = scales.float()[:, None]
    # fp16 rounding of scale and zero adds a little on top of half a quantization step
    assert ((restored - w).abs() <= step * 0.5 + 1e-3 * w.abs().max()).all()


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 6, 8, 16, 32])
def test_encode_then_dequantize(bits):
    matrix, bias = torch.randn(24, 32), torch.randn(7)
    layout, blob = encode_piece(matrix, bias, bits, 64)
    assert layout == blob_layout(24, 32, bits, 64, 7) and len(blob) == layout.nbytes
    out = torch.empty(layout.weight_count + layout.bias_len)
    dequantize_into(torch.frombuffer(bytearray(blob), dtype=torch.uint8), layout, out[: layout.weight_count], out[layout.weight_count :])
    assert torch.equal(out[layout.weight_count :], bias)
    error = (out[: layout.weight_count].view(24, 32) - matrix).square().mean() / matrix.square().mean()
    limit = {2: 0.2, 3: 0.05, 4: 0.012, 5: 3e-3, 6: 8e-4, 8: 5e-5, 16: 1e-6, 32: 0.0}[bits]
    assert error <= limit


def test_mse_quantizer_beats_rtn():
    w = torch.randn(256, 64) * torch.rand(256, 1)
    for bits in (2, 3, 4):
        errors = {}
        for method in ("rtn", "mse-lsq"):
            codes, scales, zeros = quantize_groups(w, bits, method=method)
            errors[method] = (codes.float() * scales.float()[:, None] + zeros.float()[:, None] - w).square().sum()
        assert errors["mse-lsq"] < errors["rtn"]


def test_blob_layout_segments_are_aligned_and_disjoint():
    layout = blob_layout(128, 384, 3, 64, 96)
    assert layout.weight_nbytes == 128 * 384 * 3 // 8
    offsets = [layout.weight_offset, layout.scales_offset, layout.zeros_offset, layout.bias_offset]
    assert all(o % 64 == 0 for o in offsets) and offsets == sorted(offsets)
    assert layout.scales_offset >= layout.weight_nbytes and layout.nbytes == layout.bias_offset + 4 * 96


def test_pool_admits_by_live_bytes_with_exact_accounting():
    pool = WeightPool(arena_bytes=1024, staging_bytes=128)
    pool.allocate(400)
    b = pool.allocate(400)
    assert pool.live_bytes == arena_nbytes(400) * 2
    pool.free_oldest(400)  # a
    pool.allocate(500)  # 448 + 512 <= 1024: fits beside b without waiting
    staged = pool.staging(100)
    assert staged.numel() == 100
    assert pool.live_bytes == arena_nbytes(400) + arena_nbytes(500) + 100
    assert pool.peak_bytes == pool.live_bytes
    pool.release_staging(100)
    pool.free_oldest(400)  # b
    pool.free_oldest(500)  # c
    assert pool.live_bytes == 0
    assert b.numel() == arena_nbytes(400)


def test_pool_peak_is_exact():
    pool = WeightPool(arena_bytes=4096, staging_bytes=256)
    pool.pin(1000)
    pool.reset_peak()
    pool.allocate(640)
    pool.staging(256)
    pool.release_staging(256)
    pool.free_oldest(640)
    assert pool.peak_bytes == 1000 + 640 + 256
    assert pool.live_bytes == 1000


def test_pool_waits_for_space_then_proceeds():
    pool = WeightPool(arena_bytes=1024, staging_bytes=0)
    pool.allocate(1024)
    got = []
    waiter = threading.Thread(target=lambda: got.append(pool.allocate(512)))
    waiter.start()
    waiter.join(timeout=0.2)
    assert waiter.is_alive() and not got  # blocked: the arena is full
    pool.free_oldest(1024)
    waiter.join(timeout=5)
    assert got and pool.live_bytes == 512


def test_pool_overflow_is_counted_not_deadlocked():
    pool = WeightPool(arena_bytes=256, staging_bytes=0)
    big = pool.allocate(1000)
    assert big.numel() >= 1000 and pool.peak_bytes == arena_nbytes(1000)
    pool.free_oldest(1000)
    assert pool.live_bytes == 0


@pytest.mark.parametrize(
    ("text", "unit", "value"),
    [("200MB/s", "B/s", 200e6), ("1.5GB/s", "B/s", 1.5e9), ("2MiB", "B", 2 * 2**20), ("8MB", "B", 8e6),
     ("512", "B", 512.0), ("40ms", "s", 0.04), ("2s", "s", 2.0), ("250us", "s", 250e-6)],
)
def test_parse_quantity(text, unit, value):
    assert parse_quantity(text, unit) == pytest.approx(value)


@pytest.mark.parametrize(("text", "unit"), [("fast", "B/s"), ("-2MB", "B"), ("2XB", "B"), ("ms", "s"), ("0MB/s", "B/s")])
def test_parse_quantity_rejects(text, unit):
    with pytest.raises(ValueError):
        parse_quantity(text, unit)


def test_parse_quantity_names_the_expected_form():
    with pytest.raises(ValueError, match=r"e\.g\. 40ms"):
        parse_quantity("fortyms", "s")


def test_trace_records_every_chunk_in_order(tiny_bert_store, tmp_path):
    from helpers import compile_runner

    from solvers.uniform import uniform_plan
    from sticc.store import Store

    store = Store.open(tiny_bert_store)
    runner = compile_runner(tiny_bert_store, uniform_plan(store, 4), tmp_path)
    trace: list = []
    runner.forward(torch.tensor([[1, 5, 9, 2]]), trace=trace)
    events = [event for event, _, _ in trace]
    keys = len(runner.LOADS)
    assert events[0] == "call_start" and "embed_end" in events
    assert [events.count(e) for e in ("io_start", "io_end", "compute_start", "compute_end")] == [keys] * 4
    times = [t for _, _, t in trace]
    assert [k for e, k, _ in trace if e == "io_end"] == list(range(keys))
    assert all(t >= trace[0][2] for t in times)
