"""Group-wise affine quantization of shard pieces, and bit-packing.

Every `group_size` consecutive weights share an fp16 (scale, zero): w ~= code * scale + zero,
code in [0, 2^bits - 1]. The quantizer ("mse-lsq") picks each group's range by a clipping search
minimizing squared error, then refits (scale, zero) by least squares for the chosen codes, a few
rounds; see docs/quantization.md for why and how much it gains over plain round-to-nearest.
Dequantization lives in `sticc.runtime` (shared with every runner).
"""

from __future__ import annotations

import torch

from sticc.runtime import FULL_PRECISION_BITS, BlobLayout, blob_layout

QUANTIZER_NAME = "mse-lsq"
CLIP_SHRINKS = torch.linspace(1.0, 0.55, 10)  # candidate range shrink factors of the clip search
REFIT_ROUNDS = 3
TINY_SCALE = 1e-7


def _fp16(x: torch.Tensor) -> torch.Tensor:
    """Round to the fp16 values the store will hold (so codes are chosen for the stored params)."""
    return x.to(torch.float16).to(torch.float32)


def _codes_and_error(w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, qmax: int):
    codes = torch.clamp(torch.round((w - zero[:, None]) / scale[:, None]), 0, qmax)
    error = (codes * scale[:, None] + zero[:, None] - w).square().sum(1)
    return codes, error


def quantize_groups(w: torch.Tensor, bits: int, method: str = QUANTIZER_NAME):
    """Quantize rows of `w` [groups, group_size]: (codes uint8, scales fp16, zeros fp16).

    method "rtn": min/max range, round to nearest (the baseline). "mse-lsq": clip search plus
    least-squares refit.
    """
    qmax = (1 << bits) - 1
    lo, hi = w.min(1).values, w.max(1).values

    def params(low: torch.Tensor, high: torch.Tensor):
        scale = _fp16(torch.clamp((high - low) / qmax, min=TINY_SCALE))
        return scale, _fp16(low)

    scale, zero = params(lo, hi)
    codes, error = _codes_and_error(w, scale, zero, qmax)
    if method == "mse-lsq":
        for shrink in CLIP_SHRINKS[1:]:
            s, z = params(lo * shrink, hi * shrink)
            c, e = _codes_and_error(w, s, z, qmax)
            better = e < error
            scale, zero, error = torch.where(better, s, scale), torch.where(better, z, zero), torch.where(better, e, error)
            codes = torch.where(better[:, None], c, codes)
        for _ in range(REFIT_ROUNDS):
            # minimize sum (c*s + z - w)^2 over (s, z) for fixed codes c: ordinary least squares
            c_mean, w_mean = codes.mean(1), w.mean(1)
            c_var = (codes - c_mean[:, None]).square().sum(1)
            cov = ((codes - c_mean[:, None]) * (w - w_mean[:, None])).sum(1)
            fitted = torch.where(c_var > 0, cov / torch.clamp(c_var, min=1e-12), scale)
            s = _fp16(torch.clamp(fitted, min=TINY_SCALE))
            z = _fp16(w_mean - s * c_mean)
            c, e = _codes_and_error(w, s, z, qmax)
            better = e < error
            scale, zero, error = torch.where(better, s, scale), torch.where(better, z, zero), torch.where(better, e, error)
            codes = torch.where(better[:, None], c, codes)
    elif method != "rtn":
        raise ValueError(f"unknown quantizer {method!r}")
    return codes.to(torch.uint8), scale.to(torch.float16), zero.to(torch.float16)


def pack_codes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack flat uint8 codes: every 8 codes -> `bits` bytes, code k at bit k*bits (little-endian)."""
    if bits == 8:
        return codes.clone()
    eights = codes.view(-1, 8).to(torch.int64)
    word = torch.zeros(eights.shape[0], dtype=torch.int64)
    for k in range(8):
        word |= eights[:, k] << (bits * k)
    return torch.stack([(word >> (8 * j)) & 0xFF for j in range(bits)], dim=1).to(torch.uint8).reshape(-1)


def encode_piece(matrix: torch.Tensor, bias: torch.Tensor, bits: int, group_size: int, method: str = QUANTIZER_NAME) -> tuple[BlobLayout, bytes]:
    """The stored bytes of one piece at `bits` (layout from `sticc.runtime.blob_layout`)."""
    rows, cols = matrix.shape
    layout = blob_layout(rows, cols, bits, group_size, bias.numel())
    blob = bytearray(layout.nbytes)
    flat = matrix.reshape(-1).to(torch.float32)
    if bits in FULL_PRECISION_BITS:
        dtype = torch.float32 if bits == 32 else torch.float16
        blob[: layout.weight_nbytes] = flat.to(dtype).numpy().tobytes()
    else:
        codes, scales, zeros = quantize_groups(flat.view(layout.groups, group_size), bits, method)
        blob[: layout.weight_nbytes] = pack_codes(codes.reshape(-1), bits).numpy().tobytes()
        blob[layout.scales_offset : layout.scales_offset + 2 * layout.groups] = scales.numpy().tobytes()
        blob[layout.zeros_offset : layout.zeros_offset + 2 * layout.groups] = zeros.numpy().tobytes()
    blob[layout.bias_offset :] = bias.to(torch.float32).numpy().tobytes()
    return layout, bytes(blob)
