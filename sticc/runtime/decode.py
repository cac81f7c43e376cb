"""Dequantization on the compute lane: stored pieces -> fp32 weights in kernel form, just in time.

A piece is stored as a weight matrix [rows, cols] (packed codes with fp16 scales and zeros per group
of `group_size` consecutive weights, or an fp16/fp32 matrix) and an fp32 bias (`BlobLayout`). Its
rows are `blocks` equal row blocks (an attention piece: the q, k and v rows of its heads and the
output projection's columns; an FFN piece: up rows and down columns), its bias `bias_blocks` equal
blocks. Kernels want every block of a chunk stacked across the chunk's members ([blocks, members,
block]): one matrix per projection. A run of members stored one slot apart is decoded straight into
that order by a handful of strided tensor ops, whatever its size:

    w = code * scale + zero   (per group)

The strided views are worked out once per run (`RunDecoder`), at construction; a call only offsets
them. Every op runs on torch's threads (the compute lane's cores).
"""

import functools
from dataclasses import dataclass

import torch

from sticc.runtime.core import READ_ALIGN_BYTES, BlobLayout, ChunkLoad, decoded_nbytes


def unpack_codes_into(packed: torch.Tensor, bits: int, out: torch.Tensor) -> None:
    """Write the integer codes packed in `packed` (uint8 [..., n * bits / 8]) into `out` (float
    [..., n]); leading dimensions may be strided, the last must be contiguous in both.

    Packing: every 8 consecutive codes occupy `bits` bytes, little-endian, code k at bit k*bits.
    """
    if bits == 8:
        out.copy_(packed)
    elif bits == 4:
        pairs = out.unflatten(-1, (-1, 2))
        pairs[..., 0].copy_(packed & 0x0F)
        pairs[..., 1].copy_(packed >> 4)
    elif bits == 2:
        quads = out.unflatten(-1, (-1, 4))
        for k in range(4):
            quads[..., k].copy_((packed >> (2 * k)) & 0x03)
    else:
        octets = packed.unflatten(-1, (-1, bits)).to(torch.int64)
        word = octets[..., 0].clone()
        for j in range(1, bits):
            word |= octets[..., j] << (8 * j)
        mask = (1 << bits) - 1
        eights = out.unflatten(-1, (-1, 8))
        for k in range(8):
            eights[..., k].copy_((word >> (bits * k)) & mask)


@dataclass(frozen=True)
class Strided:
    """A strided view of a buffer: sizes and strides in elements, offset in elements from a base."""

    size: tuple
    stride: tuple
    offset: int

    def of(self, buffer: torch.Tensor, base: int) -> torch.Tensor:
        return buffer.as_strided(self.size, self.stride, buffer.storage_offset() + base + self.offset)


class RunDecoder:
    """Decodes `count` pieces of one layout, stored `slot` bytes apart from a byte offset of a pool,
    into `weights` (fp32 [blocks, count, rows * cols / blocks]) and `biases` (fp32 [bias_blocks,
    count, bias_len / bias_blocks]), which may be slices of larger tensors along the member axis."""

    def __init__(self, layout: BlobLayout, count: int, blocks: int, bias_blocks: int, weights: torch.Tensor, biases: torch.Tensor) -> None:
        slot = layout.slot_nbytes
        self.bits = layout.bits
        self.weights, self.biases = weights, biases
        item = {32: 4, 16: 2}.get(layout.bits, 1)  # codes are read as fp32, fp16 or bytes
        per_block = layout.weight_nbytes // blocks // item
        self.codes = Strided((blocks, count, per_block), (per_block, slot // item, 1), layout.weight_offset // item)
        self.group_size = layout.group_size
        self.groups_per_block = layout.groups // blocks
        g = self.groups_per_block
        # scales and zeros (fp16) as one view [2, blocks, count, groups per block]
        self.params = Strided((2, blocks, count, g), ((layout.zeros_offset - layout.scales_offset) // 2, g, slot // 2, 1), layout.scales_offset // 2)
        per_bias = layout.bias_len // bias_blocks
        self.bias = Strided((bias_blocks, count, per_bias), (per_bias, slot // 4, 1), layout.bias_offset // 4)

    def __call__(self, pool: "PoolViews", base: int) -> None:
        """Decode the run whose first piece starts `base` bytes into the pool."""
        if self.bits == 32:
            self.weights.copy_(self.codes.of(pool.f32, base // 4))
        elif self.bits == 16:
            self.weights.copy_(self.codes.of(pool.f16, base // 2))
        else:
            unpack_codes_into(self.codes.of(pool.u8, base), self.bits, self.weights)
            params = self.params.of(pool.f16, base // 2).float()
            grouped = self.weights.unflatten(-1, (self.groups_per_block, self.group_size))
            grouped.mul_(params[0].unsqueeze(-1)).add_(params[1].unsqueeze(-1))
        self.biases.copy_(self.bias.of(pool.f32, base // 4))


@dataclass(frozen=True)
class PoolViews:
    """One buffer seen as bytes, fp16 and fp32 (offsets of a decoded run must be aligned to 4)."""

    u8: torch.Tensor
    f16: torch.Tensor
    f32: torch.Tensor

    @classmethod
    def of(cls, buffer: torch.Tensor) -> "PoolViews":
        return cls(buffer, buffer.view(torch.float16), buffer.view(torch.float32))


def decode_piece(blob: torch.Tensor, layout: BlobLayout) -> tuple[torch.Tensor, torch.Tensor]:
    """One stored piece as (weight [rows, cols], bias [bias_len]) in fp32, rows in stored order.
    `blob` holds at least the piece's slot (its stored bytes, rounded up to whole read units)."""
    weights = torch.empty(1, 1, layout.weight_count)
    biases = torch.empty(1, 1, layout.bias_len)
    buffer = blob[: layout.slot_nbytes]
    if buffer.numel() < layout.slot_nbytes or buffer.data_ptr() % 4:
        buffer = torch.zeros(layout.slot_nbytes, dtype=torch.uint8)
        buffer[: layout.nbytes] = blob[: layout.nbytes]
    RunDecoder(layout, 1, 1, 1, weights, biases)(PoolViews.of(buffer), 0)
    return weights.view(layout.rows, layout.cols), biases.view(layout.bias_len)


class DecodesChunks:
    """The chunk handling every runner family shares (a mixin of `RunnerCore` subclasses): a
    chunk's kernel form is `weights` [blocks, members, block] and `biases` [bias_blocks, members,
    bias block] views of a decoded buffer (the scratch, or the pinned region for a chunk pinned in
    place). The family says how many blocks each chunk's pieces have (`piece_blocks`)."""

    def piece_blocks(self, key: int) -> tuple:
        """(row blocks, bias blocks) of chunk `key`'s pieces."""
        raise NotImplementedError

    def kernel_views(self, buffer: torch.Tensor, load: ChunkLoad) -> tuple:
        """(weights [blocks, n, q], biases [bias_blocks, n, bq]) views of a decoded-chunk buffer."""
        first, count = load.members[0].layout, len(load.members)
        blocks, bias_blocks = self.piece_blocks(load.key)
        weight_nbytes = decoded_nbytes(load.members) - 4 * count * first.bias_len
        assert buffer.numel() >= decoded_nbytes(load.members), "scratch smaller than a chunk (plan and runner disagree)"
        weights = buffer[: 4 * count * first.weight_count].view(torch.float32).view(blocks, count, -1)
        biases = buffer[weight_nbytes : weight_nbytes + 4 * count * first.bias_len].view(torch.float32)
        return weights, biases.view(bias_blocks, count, -1)

    def pin_decoded(self, load: ChunkLoad, stored: list) -> tuple:
        _, buffer = self.pool.pin(decoded_nbytes(load.members), READ_ALIGN_BYTES)
        weights, biases = self.kernel_views(buffer, load)
        blocks, bias_blocks = self.piece_blocks(load.key)
        for i, (member, blob) in enumerate(zip(load.members, stored, strict=True)):
            decoder = RunDecoder(member.layout, 1, blocks, bias_blocks, weights[:, i : i + 1], biases[:, i : i + 1])
            decoder(PoolViews.of(blob), 0)
        return weights, biases

    @functools.cached_property
    def pool_views(self) -> PoolViews:
        return PoolViews.of(self.pool.buffer)

    def prepare_chunk(self, load: ChunkLoad, runs: tuple) -> None:
        weights, biases = self.kernel_views(self.pool.scratch, load)
        blocks, bias_blocks = self.piece_blocks(load.key)
        decoders = []
        for run in runs:
            stop = run.start + run.count
            decoder = RunDecoder(run.layout, run.count, blocks, bias_blocks, weights[:, run.start : stop], biases[:, run.start : stop])
            decoders.append((run.pinned, run.offset, decoder))
        self.prepared[load.key] = (tuple(decoders), weights, biases)

    def warm_up_chunks(self):
        """Yield (key, weights, biases) of one chunk of each (part, member count) of the plan (the
        family's `PARTS`): pinned chunks as they are, the others as zeroed scratch views. A family's
        `warm_up` runs its kernel on each, so torch's one-time lazy work (thread pool, kernel
        selection, the per-shape setup of its matmul libraries) happens at construction."""
        seen = set()
        for load in self.LOADS:
            shape = (self.PARTS[load.key], len(load.members))
            if shape in seen:
                continue
            seen.add(shape)
            if load.key in self.pinned_chunks:
                yield (load.key, *self.pinned_chunks[load.key])
            else:
                weights, biases = self.kernel_views(self.pool.scratch_of(self.plan_of(load.key)), load)
                yield load.key, weights.zero_(), biases.zero_()

    def decode_chunk(self, key: int, ring_start: int) -> tuple:
        decoders, weights, biases = self.prepared[key]
        views = self.pool_views
        for pinned, offset, decoder in decoders:
            decoder(views, offset if pinned else ring_start + offset)
        return weights, biases
