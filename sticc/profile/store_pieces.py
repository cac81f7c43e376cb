"""A store read piece by piece, for the importance profilers: checksummed reads and pieces
dequantized with the runner's own decoder (`sticc.runtime.decode.decode_piece`)."""

from __future__ import annotations

import torch

from sticc.model.store import Store
from sticc.runtime.core import Extent, StoreReader, checksum, checksum_error
from sticc.runtime.decode import decode_piece


class StorePieces:
    """Reads `store`'s data file: any extent, checked against its checksum, and any stored piece at
    any bitwidth, dequantized. The encoder and decoder models of the profilers build on it."""

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
