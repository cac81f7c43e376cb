"""The measuring protocol's primitives: a cold page cache, and min/median/max of repeated runs (docs/architecture.md)."""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass
from pathlib import Path


def evict_from_page_cache(path: str | Path) -> bool:
    """Drop a file's pages from the page cache (no root needed), so the next read is cold; whether
    they were dropped. Where the platform has no posix_fadvise (macOS) the pages stay, as the
    runtime goes without it: the next read may be warm, and False says so."""
    if not hasattr(os, "posix_fadvise"):
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return True


@dataclass(frozen=True)
class Spread:
    """min / median / max of repeated measurements."""

    min: float
    median: float
    max: float

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        return cls(min(values), statistics.median(values), max(values))
