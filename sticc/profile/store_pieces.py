"""A store read piece by piece, for the importance profilers: checksummed reads, pieces
dequantized with the runner's own decoder (`sticc.runtime.decode.decode_piece`), and the chunks
both profilers' ablations build from them (a shard's variants beside the other shards at the
reference; a whole plan's layer, one chunk per kept bitwidth)."""

from __future__ import annotations

import torch

from sticc.model.store import Store
from sticc.runtime.core import Extent, StoreReader, checksum, checksum_error
from sticc.runtime.decode import decode_piece

Chunk = tuple[torch.Tensor, torch.Tensor]  # a chunk in the kernels' form: (weights, biases)


def kept_by_bits(row: tuple[int, ...]) -> list[tuple[int, list[int]]]:
    """A plan row's kept shards grouped by bitwidth, [(bits, indices)] by bits (one chunk each)."""
    by_bits: dict[int, list[int]] = {}
    for index, bits in enumerate(row):
        if bits:
            by_bits.setdefault(bits, []).append(index)
    return sorted(by_bits.items())


class StorePieces:
    """Reads `store`'s data file: any extent, checked against its checksum, and any stored piece at
    any bitwidth, dequantized. The encoder and decoder models of the profilers build on it: they set
    `shards` (per layer) and `reference` ({(layer, part): the layer block's chunk at the reference
    bits}) and say how pieces stack into a chunk (`chunk`)."""

    shards: int
    reference: dict[tuple[int, str], Chunk]

    def __init__(self, store: Store) -> None:
        self.store = store
        self.reader = StoreReader(str(store.data_path))

    def close(self) -> None:
        self.reader.close()

    def _read(self, extent: Extent, what: str) -> torch.Tensor:
        buffer = torch.empty(extent.nbytes, dtype=torch.uint8)
        self.reader.read(buffer, extent.offset, what)
        if checksum(memoryview(buffer.numpy())) != extent.checksum:
            raise checksum_error(what)
        return buffer

    def piece(self, layer: int, index: int, part: str, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One stored piece, dequantized: weight [rows, cols] and bias, fp32."""
        version = self.store.version(layer, index, part, bits)
        return decode_piece(self._read(version.extent, version.key.describe()), version.layout)

    def chunk(self, part: str, pieces: list[tuple[torch.Tensor, torch.Tensor]]) -> Chunk:
        """Pieces of `part` stacked in the kernels' form (the model's own layout)."""
        raise NotImplementedError

    def reference_subset(self, layer: int, part: str, indices: list[int]) -> Chunk | None:
        """The reference chunk of `layer`'s block `part` restricted to shards `indices` (None: none)."""
        if not indices:
            return None
        weights, biases = self.reference[(layer, part)]
        if len(indices) == self.shards:
            return weights, biases
        keep = torch.tensor(indices)
        return weights[:, keep], biases[:, keep]

    def variant_chunks(self, layer: int, index: int, variants: tuple[int, ...], parts: tuple[str, ...]) -> tuple:
        """What ablating shard (layer, index) at each of `variants` (0: dropped) uses: the other
        shards' indices, their reference chunk per part (None: no other shard), and the shard's own
        chunk per part at each kept variant, {bits: {part: chunk}}."""
        others = [k for k in range(self.shards) if k != index]
        shared = {part: self.reference_subset(layer, part, others) for part in parts}
        own = {bits: {part: self.chunk(part, [self.piece(layer, index, part, bits)]) for part in parts} for bits in variants if bits}
        return others, shared, own

    def kept_chunk(self, layer: int, part: str, bits: int, indices: list[int], reference_bits: int) -> Chunk:
        """Shards `indices` of `layer`'s block `part` at `bits` in one chunk: a subset of the reference
        chunk at the reference bits, else their stored pieces."""
        if bits == reference_bits:
            return self.reference_subset(layer, part, indices)
        return self.chunk(part, [self.piece(layer, index, part, bits) for index in indices])
