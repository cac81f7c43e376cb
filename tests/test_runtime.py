"""Runtime pieces shared by the store writer and every runner: packing, dequantization, the ring and
the pool, the reader, units, the call driver."""

from __future__ import annotations

import json
import random
import threading

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sticc.model.quant import encode_piece, pack_codes, quantize_groups
from sticc.runtime.core import (
    READ_ALIGN_BYTES,
    Call,
    PoolLayout,
    Ring,
    StoreReader,
    TraceEvent,
    TraceEventName,
    WeightPool,
    blob_layout,
    parse_quantity,
)
from sticc.runtime.decode import PoolViews, RunDecoder, decode_piece, unpack_codes_into


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
    weight, restored_bias = decode_piece(torch.frombuffer(bytearray(blob), dtype=torch.uint8), layout)
    out = torch.cat([weight.reshape(-1), restored_bias])
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


@pytest.mark.parametrize("bits", [2, 3, 4, 8, 16, 32])
def test_a_run_decodes_into_kernel_form_like_single_pieces(bits):
    """Pieces stored one slot apart, decoded as one run into [blocks, members, block], equal the
    pieces decoded one by one and cut into their blocks."""
    rows, cols, bias_len, blocks, bias_blocks, count = 32, 64, 24, 4, 3, 3
    pieces = [encode_piece(torch.randn(rows, cols), torch.randn(bias_len), bits, 64) for _ in range(count)]
    layout = pieces[0][0]
    source = torch.zeros(count * layout.slot_nbytes + READ_ALIGN_BYTES, dtype=torch.uint8)
    base = 4096 - source.data_ptr() % 4096 if source.data_ptr() % 4096 else 0
    for k, (_, blob) in enumerate(pieces):
        at = base + k * layout.slot_nbytes
        source[at : at + layout.nbytes] = torch.frombuffer(bytearray(blob), dtype=torch.uint8)
    weights = torch.full((blocks, count, rows * cols // blocks), float("nan"))
    biases = torch.full((bias_blocks, count, bias_len // bias_blocks), float("nan"))
    RunDecoder(layout, count, blocks, bias_blocks, weights, biases)(PoolViews.of(source), base)
    for k, (_, blob) in enumerate(pieces):
        weight, bias = decode_piece(torch.frombuffer(bytearray(blob), dtype=torch.uint8), layout)
        assert torch.equal(weights[:, k], weight.reshape(blocks, -1))
        assert torch.equal(biases[:, k], bias.reshape(bias_blocks, -1))


def test_ring_admits_by_live_bytes_and_places_every_admitted_chunk():
    """Random chunk sizes, allocated and freed in order with a random number in flight: admission
    is by live bytes against the admission capacity, and a ring of that plus the largest chunk
    always has a contiguous place that overlaps no live chunk (wrapping included)."""
    rng = random.Random(0)
    unit = READ_ALIGN_BYTES
    for trial in range(40):
        sizes = [unit * rng.randint(1, 6) for _ in range(60)]
        admit = max(sizes) + unit * rng.randint(0, 10)
        ring = Ring(torch.zeros(admit + max(sizes), dtype=torch.uint8), admit)
        live: list[tuple[int, int]] = []
        for size in sizes:
            while live and sum(n for _, n in live) + size > admit:  # what `allocate` would wait for
                ring.free_oldest()
                live.pop(0)
            if live and rng.random() < 0.3:
                ring.free_oldest()
                live.pop(0)
            start = ring.allocate(size)
            assert start >= 0 and start + size <= ring.capacity, trial
            assert all(start + size <= a or a + n <= start for a, n in live), trial
            live.append((start, size))


def test_ring_waits_for_space_then_proceeds():
    ring = Ring(torch.zeros(3 * 1024, dtype=torch.uint8), 2 * 1024)
    ring.allocate(2 * 1024)
    got = []
    waiter = threading.Thread(target=lambda: got.append(ring.allocate(1024)))
    waiter.start()
    waiter.join(timeout=0.2)
    assert waiter.is_alive() and not got  # blocked: admitting it would exceed the capacity
    ring.free_oldest()
    waiter.join(timeout=5)
    assert got == [0]  # the ring was empty again: the chunk starts at its beginning


def test_a_stopped_ring_cancels_the_waiter():
    ring = Ring(torch.zeros(2048, dtype=torch.uint8), 1024)
    ring.allocate(1024)
    errors = []

    def wait() -> None:
        try:
            ring.allocate(1024)
        except RuntimeError as error:
            errors.append(str(error))

    waiter = threading.Thread(target=wait)
    waiter.start()
    ring.stop()
    waiter.join(timeout=5)
    assert errors == ["load cancelled"]


def test_pool_is_one_aligned_allocation_with_exact_regions():
    layout = PoolLayout(ring_nbytes=3 * 4096, admit_nbytes=2 * 4096, scratch_nbytes=4096, pinned_nbytes=2 * 4096)
    pool = WeightPool(layout)
    assert pool.buffer.data_ptr() % READ_ALIGN_BYTES == 0 and pool.peak_bytes == layout.nbytes == 6 * 4096
    assert pool.ring.buffer.numel() == 3 * 4096 and pool.scratch.numel() == 4096
    offset, first = pool.pin(100)
    assert offset == 4 * 4096 and first.numel() == 100
    offset, second = pool.pin(4096, READ_ALIGN_BYTES)
    assert offset == 5 * 4096 and second.data_ptr() % READ_ALIGN_BYTES == 0
    with pytest.raises(AssertionError, match="overflows"):
        pool.pin(1)
    # an input longer than planned: a counted temporary beyond the scratch
    assert pool.scratch_or_temporary(4096).data_ptr() == pool.scratch.data_ptr()
    assert pool.scratch_or_temporary(10_000).numel() == 10_000 and pool.peak_bytes == layout.nbytes + 10_000
    pool.reset_peak()
    assert pool.peak_bytes == layout.nbytes


@pytest.mark.parametrize("direct", [True, False])
def test_reader_reads_blobs_exactly_with_and_without_direct_io(tiny_bert_store, direct):
    from sticc.model.store import Store

    store = Store.open(tiny_bert_store)
    version = max(store.versions.values(), key=lambda v: v.extent.offset)  # the last blob: the file's end
    reader = StoreReader(str(store.data_path), direct=direct)
    try:
        buffer = WeightPool(PoolLayout(0, 0, 0, version.layout.slot_nbytes)).pin(version.layout.slot_nbytes, READ_ALIGN_BYTES)[1]
        reader.read_blobs(buffer, version.extent.offset, version.layout.nbytes, "the last blob")
        expected = store.data_path.read_bytes()[version.extent.offset : version.extent.offset + version.layout.nbytes]
        assert bytes(buffer[: version.layout.nbytes].numpy()) == expected
        assert reader.bytes_read == (version.layout.slot_nbytes if reader.direct else version.layout.nbytes)
        with pytest.raises(RuntimeError, match="truncated"):
            reader.read_blobs(buffer, reader.size - 10, 4096, "past the end")
    finally:
        reader.close()


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
    from sticc.bench.lane_fit import trace_from_json
    from sticc.model.store import Store

    store = Store.open(tiny_bert_store)
    runner = compile_runner(tiny_bert_store, uniform_plan(store, 4), tmp_path)
    trace: list = []
    runner.forward(torch.tensor([[1, 5, 9, 2]]), trace=trace)
    events = [e.event for e in trace]
    keys = len(runner.LOADS)
    assert events[0] == "call_start" and "embed_end" in events
    assert [events.count(e) for e in ("io_start", "io_end", "compute_start", "decode_end", "compute_end")] == [keys] * 5
    times = [e.time_s for e in trace]
    assert [e.key for e in trace if e.event == "io_end"] == list(range(keys))
    assert all(t >= trace[0].time_s for t in times)
    # typed events: the runner's own inlined `TraceEvent`, named by `TraceEventName` values (plain strings)
    runtime = type(runner).forward.__globals__
    assert all(isinstance(e, runtime["TraceEvent"]) for e in trace)
    assert all(type(e.event) is str and TraceEventName(e.event).value == e.event for e in trace)
    assert [e.value for e in runtime["TraceEventName"]] == [e.value for e in TraceEventName]
    assert trace[0].event == TraceEventName.CALL_START.value and trace[0].key == -1
    assert {e.key for e in trace if e.event == TraceEventName.EMBED_END.value} == {-1}
    # through JSON (a child process's traces) and back, the same events
    assert trace_from_json(json.loads(json.dumps(trace))) == trace
    assert all(isinstance(e, TraceEvent) for e in trace_from_json(json.loads(json.dumps(trace))))


def test_call_notes_trace_events_by_name():
    trace: list = []
    call = Call(trace)
    call.note(TraceEventName.IO_START, 3)
    call.note("io_end", 3)  # a name's value is accepted too (`sticc.bench.modes` notes by value)
    assert [(e.event, e.key) for e in trace] == [("io_start", 3), ("io_end", 3)]
    assert all(isinstance(e, TraceEvent) and e.time_s > 0 for e in trace)
    assert trace[0].time_s <= trace[1].time_s
    with pytest.raises(ValueError):
        call.note("io_ended", 3)
    Call(None).note(TraceEventName.CALL_START, -1)  # not tracing: nothing recorded, nothing raised


def test_calls_from_several_threads_are_served_one_at_a_time(tiny_bert_store, tmp_path):
    from helpers import compile_runner

    from solvers.uniform import uniform_plan
    from sticc.model.store import Store

    store = Store.open(tiny_bert_store)
    runner = compile_runner(tiny_bert_store, uniform_plan(store, 8, memory_bytes=None), tmp_path)
    inputs = [torch.randint(0, store.spec.vocab, (2, 12), generator=torch.Generator().manual_seed(k)) for k in range(6)]
    expected = [runner.forward(ids) for ids in inputs]
    results: dict[int, torch.Tensor] = {}
    errors = []

    def serve(k: int) -> None:
        try:
            results[k] = runner.forward(inputs[k])
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=serve, args=(k,)) for k in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert all(torch.equal(results[k], expected[k]) for k in range(6))
