"""Progress of long work: a bar on stderr (plain lines when stderr is not a terminal).

Stages take a `Progress` callable (items, total, what) -> items and draw nothing themselves; the
command line passes `progress_bar`, libraries and tests the silent `quiet`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from rich import progress as bars
from rich.console import Console

Progress = Callable[[Iterator, int, str], Iterator]
stderr = Console(stderr=True)


def progress_bar(items: Iterator, total: int, what: str) -> Iterator:
    """A progress bar on stderr (plain lines when stderr is not a terminal)."""
    with bars.Progress(
        bars.TextColumn("{task.description}"), bars.BarColumn(), bars.MofNCompleteColumn(), bars.TimeElapsedColumn(),
        console=stderr, transient=not stderr.is_terminal,
    ) as progress:
        task = progress.add_task(what, total=total)
        for item in items:
            yield item
            progress.advance(task)


def quiet(items: Iterator, total: int, what: str) -> Iterator:
    """No progress shown."""
    return items
