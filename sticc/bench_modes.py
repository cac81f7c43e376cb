"""Benchmark-only runner modes, kept out of every shipped runner.

The baselines of `sticc bench` run in sticc's own runtime but differ from a shipped runner in one
respect each; they are subclasses of a generated runner class made here, so no shipped runner
carries their code:
- `with_pinned_embeddings`: the whole embedding tables read at construction and held (counted as
  weight bytes), so a call reads nothing: the `preload` and `load-exec` baselines.
"""

from __future__ import annotations

import torch

from sticc.runtime.core import read_rows


def with_pinned_embeddings(runner_class: type) -> type:
    """`runner_class` with both embedding tables held in memory from construction on."""

    class PinnedEmbeddings(runner_class):
        def open_family(self) -> None:
            super().open_family()
            self.extra_weight_bytes = 0
            self.embedding_tables = (
                self._pin_table(self.WORD_ROWS, self._word_checksums, "word embedding"),
                self._pin_table(self.POSITION_ROWS, self._position_checksums, "position embedding"),
            )

        def _pin_table(self, table, checksums, what: str) -> torch.Tensor:
            rows = torch.empty(table.rows, table.row_nbytes // 4)
            read_rows(self.reader, table, checksums, torch.arange(table.rows), rows, what, self._row_threads, 1)
            self.extra_weight_bytes += table.rows * table.row_nbytes
            return rows

        def embedding_rows(self, input_ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
            words, positions = self.embedding_tables
            return words[input_ids] + positions[position_ids]

        def run_call(self, compute, trace=None):
            result = super().run_call(compute, trace)
            self.last_stats["peak_weight_bytes"] += self.extra_weight_bytes
            return result

    PinnedEmbeddings.__name__ = f"{runner_class.__name__}WithPinnedEmbeddings"
    return PinnedEmbeddings
