"""Benchmark-only runner modes, kept out of every shipped runner.

The baselines of `sticc bench` run in sticc's own runtime but differ from a shipped runner in one
respect each; they are subclasses of a generated runner class made here, so no shipped runner
carries their code:
- `with_pinned_embeddings`: the whole embedding tables read at construction and held (counted as
  weight bytes), so a call reads nothing: the `preload` and `load-exec` baselines (encoders), and
  the decoder bench's `preload` (a rotary decoder has no position table).
- `with_io_first`: the IO lane loads every chunk before the compute lane starts (the ring must
  admit them all): the compute lane's work alone, for `examples/bench_lanes.py`.
- `io_only`: the compute lane takes and releases each chunk without dequantizing or computing:
  the IO lane's work alone.
"""

from __future__ import annotations

import torch

from sticc.runtime.core import TraceEventName, read_rows


def with_pinned_embeddings(runner_class: type) -> type:
    """`runner_class` with both embedding tables held in memory from construction on."""

    class PinnedEmbeddings(runner_class):
        def open_family(self) -> None:
            super().open_family()
            self.extra_weight_bytes = 0
            self.embedding_tables = (
                self._pin_table(self.WORD_ROWS, self._word_checksums, "word embedding"),
                None if self.POSITION_ROWS is None
                else self._pin_table(self.POSITION_ROWS, self._position_checksums, "position embedding"),
            )

        def _pin_table(self, table, checksums, what: str) -> torch.Tensor:
            rows = torch.empty(table.rows, table.row_nbytes // 4)
            read_rows(self.reader, table, checksums, torch.arange(table.rows), rows, what, self._row_threads, 1)
            self.extra_weight_bytes += table.rows * table.row_nbytes
            return rows

        def embedding_rows(self, input_ids: torch.Tensor, position_ids: torch.Tensor | None = None) -> torch.Tensor:
            words, positions = self.embedding_tables
            return words[input_ids] if position_ids is None else words[input_ids] + positions[position_ids]

        def run_call(self, compute, trace=None, plan=0, keeper=None):
            result = super().run_call(compute, trace, plan, keeper)
            self.last_stats["peak_weight_bytes"] += self.extra_weight_bytes
            return result

    PinnedEmbeddings.__name__ = f"{runner_class.__name__}WithPinnedEmbeddings"
    return PinnedEmbeddings


def with_io_first(runner_class: type) -> type:
    """`runner_class` whose calls load every chunk before computing any (load, then compute)."""

    class IOFirst(runner_class):
        def start_io(self, call) -> None:
            streamed = [load.key for load in self.LOADS if load.ring_nbytes]
            if sum(load.ring_nbytes for load in self.LOADS) > self.POOL.admit_nbytes:
                raise ValueError("loading every chunk first needs a ring that admits them all: compile with more --memory")
            super().start_io(call)
            self._loaded_first = {key: call.wait(key) for key in streamed}
            call.note(TraceEventName.IO_ALL_DONE.value, -1)  # a value: the runner inlines its own enum

        def take(self, call, key: int):
            if key in self._loaded_first:
                call.note(TraceEventName.COMPUTE_START.value, key)
                out = self.decode_chunk(key, self._loaded_first.pop(key))
                call.note(TraceEventName.DECODE_END.value, key)
                return out
            return super().take(call, key)

    IOFirst.__name__ = f"{runner_class.__name__}IOFirst"
    return IOFirst


def io_only(runner_class: type) -> type:
    """`runner_class` whose calls only load: each chunk is waited for and released at once."""

    class IOOnly(runner_class):
        def schedule(self, x, mask, call):
            for load in self.LOADS:
                if load.ring_nbytes:
                    call.wait(load.key)
                    self.release(call, load.key)
            return x

    IOOnly.__name__ = f"{runner_class.__name__}IOOnly"
    return IOOnly
