"""Group-wise affine quantization of shard pieces, and bit-packing.

Every `group_size` consecutive weights of the flattened row-major matrix share an fp16 (scale, zero):
w ~= code * scale + zero, code in [0, 2^bits - 1]. The stored format is fixed (`sticc.runtime.core`);
quantizers differ only in how they pick codes, scales and zeros:

- "rtn": min/max range, round to nearest (the baseline).
- "mse-lsq": a symmetric clipping search minimizing squared error, then a few least-squares
  refits of (scale, zero) for the chosen codes (the previous default).
- "gptq-mse" (`QUANTIZER_NAME`): a joint (scale, zero) grid search minimizing the *weighted*
  squared error sum_i h_i (w_i - w^_i)^2, h the per-element `importance`, then weighted
  least-squares refits. Given a `PieceStats` (`sticc.model.activation_stats`) it also runs GPTQ error
  feedback: weights are quantized one input channel at a time and the rounding error of each is
  pushed onto the not yet quantized channels through the inverse of the (shrunk) input second-moment
  matrix, so that the layer's *output* error, not the weight error, is minimized; and the fp32 bias of
  the piece's first rows absorbs the mean output shift. Error feedback runs below 8 bits
  (`GPTQ_BELOW_BITS`); at 8 bits, and without activation statistics, it is the weighted search.

docs/quantization.md explains the choices and has the end-to-end numbers.
Dequantization lives in `sticc.runtime.decode` (shared with every runner).
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from typing import TYPE_CHECKING

import torch

from sticc.runtime.core import FULL_PRECISION_BITS, BlobLayout, blob_layout

if TYPE_CHECKING:
    from sticc.model.activation_stats import PieceStats

QUANTIZER_NAME = "gptq-mse"
METHODS = ("rtn", "mse-lsq", QUANTIZER_NAME)
CLIP_SHRINKS = torch.linspace(1.0, 0.55, 10)  # "mse-lsq": candidate range shrink factors
GRID_SCALES = 6  # "gptq-mse": scale candidates, from the full range down to MIN_SHRINK of it
GRID_OFFSETS = 6  # "gptq-mse": zero candidates per scale, spread over one quantization step
MIN_SHRINK = {2: 0.5}  # per bitwidth; others use DEFAULT_MIN_SHRINK
DEFAULT_MIN_SHRINK = 0.6
REFIT_ROUNDS = 3
IMPORTANCE_FLOOR = 1e-4  # fraction of the piece's mean importance added to every element
TINY_SCALE = 1e-7
GPTQ_SHRINK = 0.3  # second-moment matrices are shrunk this far toward their diagonal (few calibration tokens)
GPTQ_RIDGE = 1e-4  # plus this fraction of the mean diagonal, so the Cholesky factorization always exists
GPTQ_ROW_BLOCK = 8  # transposed rows: (scale, zero) searched for this many rows at a time
# error feedback only below this bitwidth: at 8 bits it buys nothing on held-out sentences
# (docs/quantization.md) and overfits to the calibration activations (MiniLM: the empty text's
# embedding falls to cosine 0.9974 with it, 0.9996 with the importance-weighted search alone)
GPTQ_BELOW_BITS = 8
_FACTOR_CACHE_SIZE = 8  # the store writer encodes one piece at every bitwidth in a row
_factors: OrderedDict[tuple, tuple[weakref.ref, weakref.ref | None, torch.Tensor]] = OrderedDict()


def _fp16(x: torch.Tensor) -> torch.Tensor:
    """Round to the fp16 values the store will hold (so codes are chosen for the stored params)."""
    return x.to(torch.float16).to(torch.float32)


class _Best:
    """The best (scale, zero, codes, error) per group among the candidates offered so far."""

    def __init__(self, w: torch.Tensor, h: torch.Tensor | None, scales: torch.Tensor, zeros: torch.Tensor, qmax: int):
        self.w, self.h, self.qmax = w, h, qmax
        self.scale, self.zero, self.codes, self.error = self._pick(scales, zeros)

    def _pick(self, scales: torch.Tensor, zeros: torch.Tensor):
        """Evaluate candidates [k, groups] at once; per group the first one with the least error."""
        s, z = scales[:, :, None], zeros[:, :, None]
        codes = torch.clamp(torch.round((self.w - z) / s), 0, self.qmax)
        error = (codes * s + z - self.w).square()
        error = (error if self.h is None else error * self.h).sum(2)
        if scales.shape[0] == 1:
            return scales[0], zeros[0], codes[0], error[0]
        best = error.argmin(0)
        groups = torch.arange(best.numel())
        return scales[best, groups], zeros[best, groups], codes[best, groups], error[best, groups]

    def offer(self, scales: torch.Tensor, zeros: torch.Tensor) -> None:
        """Candidates [k, groups]: keep a group's current choice unless one is strictly better."""
        scale, zero, codes, error = self._pick(scales, zeros)
        better = error < self.error
        self.scale = torch.where(better, scale, self.scale)
        self.zero = torch.where(better, zero, self.zero)
        self.error = torch.where(better, error, self.error)
        self.codes = torch.where(better[:, None], codes, self.codes)

    def refit(self, rounds: int) -> None:
        """Least squares: minimize sum h (c*s + z - w)^2 over (s, z) for the current codes c."""
        w, h = self.w, self.h
        for _ in range(rounds):
            c = self.codes
            if h is None:
                c_mean, w_mean = c.mean(1), w.mean(1)
                dc = c - c_mean[:, None]
                c_var = dc.square().sum(1)
                cov = (dc * (w - w_mean[:, None])).sum(1)
            else:
                total = h.sum(1).clamp(min=1e-30)
                c_mean, w_mean = (h * c).sum(1) / total, (h * w).sum(1) / total
                dc = c - c_mean[:, None]
                c_var = (h * dc.square()).sum(1)
                cov = (h * dc * (w - w_mean[:, None])).sum(1)
            fitted = torch.where(c_var > 0, cov / torch.clamp(c_var, min=1e-30), self.scale)
            scale = _fp16(torch.clamp(fitted, min=TINY_SCALE))
            self.offer(scale[None], _fp16(w_mean - scale * c_mean)[None])


def _search(w: torch.Tensor, bits: int, method: str, h: torch.Tensor | None = None) -> _Best:
    """Pick (scale, zero) per row of `w` [groups, group_size] by `method`, weighting errors by `h`."""
    qmax = (1 << bits) - 1
    lo, hi = w.min(1).values, w.max(1).values
    full_scale = _fp16(torch.clamp((hi - lo) / qmax, min=TINY_SCALE))
    best = _Best(w, h, full_scale[None], _fp16(lo)[None], qmax)
    if method == "rtn":
        return best
    if method == "mse-lsq":
        shrinks = CLIP_SHRINKS[1:, None]
        best.offer(_fp16(torch.clamp((hi - lo) * shrinks / qmax, min=TINY_SCALE)), _fp16(lo * shrinks))
    elif method == QUANTIZER_NAME:
        shrinks = torch.linspace(1.0, MIN_SHRINK.get(bits, DEFAULT_MIN_SHRINK), GRID_SCALES)
        offsets = torch.arange(GRID_OFFSETS) / GRID_OFFSETS - 0.5
        scales = _fp16(torch.clamp((hi - lo) * (shrinks[:, None] / qmax), min=TINY_SCALE))  # [scales, groups]
        zeros = (lo + hi)[None, None] / 2 + scales[:, None] * (offsets[None, :, None] - qmax / 2)
        best.offer(scales[:, None].expand_as(zeros).reshape(-1, w.shape[0]), _fp16(zeros).reshape(-1, w.shape[0]))
    else:
        raise ValueError(f"unknown quantizer {method!r} (known: {', '.join(METHODS)})")
    best.refit(REFIT_ROUNDS)
    return best


def quantize_groups(w: torch.Tensor, bits: int, method: str = QUANTIZER_NAME, importance: torch.Tensor | None = None):
    """Quantize rows of `w` [groups, group_size]: (codes uint8, scales fp16, zeros fp16).

    `importance` (broadcastable to `w`, nonnegative) weights each element's squared error.
    """
    h = None if importance is None else torch.broadcast_to(importance.to(torch.float32), w.shape)
    best = _search(w.to(torch.float32), bits, method, h)
    return best.codes.to(torch.uint8), best.scale.to(torch.float16), best.zero.to(torch.float16)


def pack_codes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack flat uint8 codes: every 8 codes -> `bits` bytes, code k at bit k*bits (little-endian)."""
    if bits == 8:
        return codes.clone()
    eights = codes.view(-1, 8).to(torch.int64)
    word = torch.zeros(eights.shape[0], dtype=torch.int64)
    for k in range(8):
        word |= eights[:, k] << (bits * k)
    return torch.stack([(word >> (8 * j)) & 0xFF for j in range(bits)], dim=1).to(torch.uint8).reshape(-1)


# ----------------------------------------------------------------------------------------------
# GPTQ error feedback (needs input second moments; groups must lie inside rows)
# ----------------------------------------------------------------------------------------------


def _inverse_cholesky(gram: torch.Tensor, mean: torch.Tensor | None = None) -> torch.Tensor:
    """Upper Cholesky factor U of H^-1 (H^-1 = U^T U), H = gram (minus mean mean^T), shrunk and ridged.

    Cached by tensor identity (statistics are treated as immutable): a layer's shards share one
    gram, and every bitwidth of a piece reuses its factors.
    """
    key = (id(gram), id(mean), GPTQ_SHRINK, GPTQ_RIDGE)
    cached = _factors.get(key)
    if cached is not None and cached[0]() is gram and (mean is None or cached[1]() is mean):
        _factors.move_to_end(key)
        return cached[2]
    h = gram.to(torch.float64)
    if mean is not None:
        h = h - torch.outer(mean.to(torch.float64), mean.to(torch.float64))
    diagonal = torch.diagonal(h).clamp(min=0)
    h = (1 - GPTQ_SHRINK) * h + GPTQ_SHRINK * torch.diag(diagonal)
    ridge = GPTQ_RIDGE * float(diagonal.mean()) + 1e-12
    h = h + torch.diag(torch.where(diagonal > 0, ridge, ridge + 1.0))  # dead channels: keep H invertible
    inverse = torch.cholesky_inverse(torch.linalg.cholesky(h))
    factor = torch.linalg.cholesky(inverse, upper=True).to(torch.float32)
    _factors[key] = (weakref.ref(gram), None if mean is None else weakref.ref(mean), factor)
    while len(_factors) > _FACTOR_CACHE_SIZE:
        _factors.popitem(last=False)
    return factor


def _gptq_columns(w: torch.Tensor, u: torch.Tensor, h: torch.Tensor | None, bits: int, group_size: int):
    """y = x w^T, w [rows, cols], groups of `group_size` consecutive columns; u = `_inverse_cholesky` of x.

    Columns are quantized left to right; a group's (scale, zero) is searched when the group is
    reached, on the weights as updated by the error feedback so far. Returns dequantized weights,
    codes [rows, cols], scales and zeros [rows, cols / group_size].
    """
    rows, cols = w.shape
    qmax = (1 << bits) - 1
    w = w.to(torch.float32).clone()
    codes = torch.empty(rows, cols)
    scales = torch.empty(rows, cols // group_size)
    zeros = torch.empty(rows, cols // group_size)
    for group, start in enumerate(range(0, cols, group_size)):
        stop = start + group_size
        block = w[:, start:stop]
        best = _search(block, bits, QUANTIZER_NAME, None if h is None else h[:, start:stop])
        scale, zero = best.scale, best.zero
        scales[:, group], zeros[:, group] = scale, zero
        u_block = u[start:stop, start:stop]
        inverse_diagonal = (1 / torch.diagonal(u_block)).tolist()
        for j in range(group_size - 1):  # the last column feeds back into no column of this group
            column = block[:, j]
            code = torch.round((column - zero) / scale).clamp_(0, qmax)
            error = (column - (code * scale + zero)).mul_(inverse_diagonal[j])
            block[:, j + 1 :].addr_(error, u_block[j, j + 1 :], alpha=-1)
        # block columns now hold their final (fed-back) values: code them all at once
        block_codes = torch.round((block - zero[:, None]) / scale[:, None]).clamp_(0, qmax)
        codes[:, start:stop] = block_codes
        if stop < cols:
            errors = (block - (block_codes * scale[:, None] + zero[:, None])) * torch.diagonal(u_block).reciprocal()
            w[:, stop:].addmm_(errors, u[start:stop, stop:], alpha=-1)
    dequantized = codes.view(rows, -1, group_size) * scales[..., None] + zeros[..., None]
    return dequantized.view(rows, cols), codes, scales, zeros


def _gptq_rows(p: torch.Tensor, u: torch.Tensor, h: torch.Tensor | None, bits: int, group_size: int):
    """y = a p, p [rows, cols]: row r multiplies input channel a_r (u = `_inverse_cholesky` of a).

    Rows are quantized top to bottom, (scale, zero) searched `GPTQ_ROW_BLOCK` rows at a time.
    """
    rows, cols = p.shape
    qmax = (1 << bits) - 1
    per_row = cols // group_size
    p = p.to(torch.float32).clone()
    codes = torch.empty(rows, cols)
    scales = torch.empty(rows, per_row)
    zeros = torch.empty(rows, per_row)
    for start in range(0, rows, GPTQ_ROW_BLOCK):
        stop = min(start + GPTQ_ROW_BLOCK, rows)
        weights = None if h is None else h[start:stop].reshape(-1, group_size)
        best = _search(p[start:stop].reshape(-1, group_size), bits, QUANTIZER_NAME, weights)
        scale = best.scale.view(stop - start, per_row)
        zero = best.zero.view(stop - start, per_row)
        scales[start:stop], zeros[start:stop] = scale, zero
        scale, zero = scale.repeat_interleave(group_size, 1), zero.repeat_interleave(group_size, 1)
        inverse_diagonal = (1 / torch.diagonal(u)[start:stop]).tolist()
        for i, r in enumerate(range(start, stop - 1)):
            code = torch.round((p[r] - zero[i]) / scale[i]).clamp_(0, qmax)
            error = (p[r] - (code * scale[i] + zero[i])).mul_(inverse_diagonal[i])
            p[r + 1 : stop].addr_(u[r, r + 1 : stop], error, alpha=-1)
        block = p[start:stop]
        block_codes = torch.round((block - zero) / scale).clamp_(0, qmax)
        codes[start:stop] = block_codes
        if stop < rows:
            errors = (block - (block_codes * scale + zero)) * torch.diagonal(u)[start:stop, None].reciprocal()
            p[stop:].addmm_(u[start:stop, stop:].T, errors, alpha=-1)
    dequantized = codes.view(rows, per_row, group_size) * scales[..., None] + zeros[..., None]
    return dequantized.view(rows, cols), codes, scales, zeros


def _gptq_piece(
    matrix: torch.Tensor, bias: torch.Tensor, bits: int, group_size: int, h: torch.Tensor | None,
    stats: PieceStats,
):
    """GPTQ over both halves of a piece (the second may be empty: an LM head slice); where the first
    half has a bias it absorbs the mean output shift (a piece without one keeps none)."""
    split = stats.split
    first, second = matrix[:split].to(torch.float32), matrix[split:].to(torch.float32)
    # a bias absorbs the mean output shift, so the error feedback then uses the covariance
    mean = stats.column_mean if bias.numel() else None
    column_factor = _inverse_cholesky(stats.column_gram, mean)
    h_first = None if h is None else h[:split]
    approx, codes_a, scales_a, zeros_a = _gptq_columns(first, column_factor, h_first, bits, group_size)
    parts = [(codes_a, scales_a, zeros_a)]
    if len(second):
        h_second = None if h is None else h[split:]
        parts.append(_gptq_rows(second, _inverse_cholesky(stats.row_gram), h_second, bits, group_size)[1:])
    corrected = bias.to(torch.float32)
    if mean is not None:
        corrected = corrected - (approx - first) @ mean.to(torch.float32)
    codes, scales, zeros = (torch.cat([p[i].reshape(-1) for p in parts]) for i in range(3))
    return codes.to(torch.uint8), scales.to(torch.float16), zeros.to(torch.float16), corrected


def encode_piece(
    matrix: torch.Tensor,
    bias: torch.Tensor,
    bits: int,
    group_size: int,
    method: str = QUANTIZER_NAME,
    importance: torch.Tensor | None = None,
    stats: PieceStats | None = None,
) -> tuple[BlobLayout, bytes]:
    """The stored bytes of one piece at `bits` (layout from `sticc.runtime.core.blob_layout`).

    `importance`: None or a nonnegative tensor broadcastable to `matrix` [rows, cols], the weight of
    each element's squared error (e.g. `sticc.model.activation_stats.piece_importance`). `stats`: the
    piece's `sticc.model.activation_stats.PieceStats`; with method `QUANTIZER_NAME` it enables GPTQ error
    feedback and bias correction below `GPTQ_BELOW_BITS` (the stored bias then differs from `bias`),
    and supplies the importance when `importance` is None. Both are ignored at 16/32 bits.
    """
    rows, cols = matrix.shape
    layout = blob_layout(rows, cols, bits, group_size, bias.numel())
    blob = bytearray(layout.nbytes)
    flat = matrix.reshape(-1).to(torch.float32)
    stored_bias = bias.to(torch.float32)
    if bits in FULL_PRECISION_BITS:
        dtype = torch.float32 if bits == 32 else torch.float16
        blob[: layout.weight_nbytes] = flat.to(dtype).numpy().tobytes()
    else:
        if importance is None and stats is not None:
            importance = stats.importance
        h = None
        if importance is not None:
            h = torch.broadcast_to(importance.to(torch.float32), (rows, cols))
            if not bool(torch.isfinite(h).all()) or bool((h < 0).any()):
                raise ValueError("importance must be finite and nonnegative")
            h = h + IMPORTANCE_FLOOR * h.mean()  # a group of all-zero importance still fits its weights
        if method == QUANTIZER_NAME and stats is not None and cols % group_size == 0 and bits < GPTQ_BELOW_BITS:
            if bias.numel() not in (0, stats.split):
                raise ValueError(
                    f"the activation statistics split the piece after {stats.split} rows but its bias has {bias.numel()}"
                )
            codes, scales, zeros, stored_bias = _gptq_piece(matrix, bias, bits, group_size, h, stats)
        else:
            weights = None if h is None else h.reshape(layout.groups, group_size)
            codes, scales, zeros = quantize_groups(flat.view(layout.groups, group_size), bits, method, weights)
        blob[: layout.weight_nbytes] = pack_codes(codes.reshape(-1), bits).numpy().tobytes()
        blob[layout.scales_offset : layout.scales_offset + 2 * layout.groups] = scales.numpy().tobytes()
        blob[layout.zeros_offset : layout.zeros_offset + 2 * layout.groups] = zeros.numpy().tobytes()
    blob[layout.bias_offset :] = stored_bias.contiguous().numpy().tobytes()
    return layout, bytes(blob)
