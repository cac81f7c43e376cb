"""Synthetic device and importance profiles for planner tests (no timing, fully deterministic)."""

from __future__ import annotations

import random

from sticc.ir.plan import store_positions
from sticc.model.store import Store
from sticc.profile.device import Decode, DeviceProfile, LaneFit, PartCompute, TokenCompute, model_shape
from sticc.profile.importance import CalibrationRecord, ImportanceProfile


def synthetic_device(
    store: Store, bandwidth_Bps: float = 50e6, cap_Bps: float | None = None, compute_scale: float = 1.0,
    handover_s: float = 20e-6,
) -> DeviceProfile:
    """A plausible slow device: 50 MB/s reads, 4/8-bit decode faster than odd bits, 20 us hand-overs,
    calls 10% slower at the 90th percentile than at the median."""
    decoder = store.spec.is_decoder
    decode = {
        bits: Decode(call_s=20e-6, weights_per_s=(2e9 if bits in (4, 8) else 0.5e9) if bits < 16 else 4e9)
        for bits in store.bits
    }
    return DeviceProfile(
        device="synthetic test device",
        model_shape=model_shape(store),
        compute_threads=1,
        read_bandwidth_Bps=bandwidth_Bps,
        request_latency_s=30e-6,
        checksum_Bps=5e9,
        emulated_bandwidth_Bps=cap_Bps,
        io_chunk_overhead_s=15e-6,
        decode=decode,
        compute={
            "attn": PartCompute((40e-6 * compute_scale, 0.0, 0.4e-6 * compute_scale, 2e-9 * compute_scale), (10e-6, 0.05e-6)),
            "ffn": PartCompute((30e-6 * compute_scale, 0.1e-6, 0.6e-6 * compute_scale, 0.0), (10e-6, 0.05e-6)),
            **({"lm_head": PartCompute((30e-6 * compute_scale, 0.1e-6, 0.8e-6 * compute_scale, 0.0), (8e-6, 0.02e-6))} if decoder else {}),
        },
        embed_s=(200e-6, 2e-6),
        fit_error=None,
        lane_fit=LaneFit(1.0, {}, 1.0, 1.0, 1.0, 0.1, 5e-6, handover_s, {50: 1.0, 90: 1.1}, 0, 0, 0.0, 0.0),
        token={  # one-token calls: a matrix-vector product per chunk, attention over the cache
            "attn": TokenCompute((30e-6 * compute_scale, 8e-6 * compute_scale, 2e-9 * compute_scale), 8e-6),
            "ffn": TokenCompute((25e-6 * compute_scale, 10e-6 * compute_scale, 0.0), 8e-6),
            "lm_head": TokenCompute((25e-6 * compute_scale, 12e-6 * compute_scale, 0.0), 6e-6),
        } if decoder else None,
    )


def synthetic_importance(store: Store, seed: int = 0) -> ImportanceProfile:
    """Random shard weights; a version's loss falls with its bits, fp32 loses nothing."""
    rng = random.Random(seed)
    loss = {}
    for layer, index in store_positions(store):  # a decoder's LM head slices too
        weight = rng.uniform(0.2, 1.0) * 1e-2
        loss[(layer, index)] = {0: weight, **{b: (0.0 if b == 32 else weight * 0.5 ** (b * rng.uniform(0.8, 1.2))) for b in store.bits}}
    return ImportanceProfile(store.store_id, "synthetic", CalibrationRecord(source="synthetic"), loss)
