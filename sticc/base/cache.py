"""The measurement cache: expensive profiles kept per store, reused while the store is unchanged.

`cache_dir(store_id)` is $STICC_CACHE_DIR, else $XDG_CACHE_HOME/sticc, else ~/.cache/sticc, then a
folder named by the first 16 hex digits of the store id. Entries are JSON written atomically; a
missing, unreadable or corrupt entry reads as absent (the caller measures again and overwrites it),
never as an error, and nothing is ever unpickled.
"""

from __future__ import annotations

import os
from pathlib import Path

from sticc.base.errors import UserError
from sticc.base.jsonfile import write_json_atomic
from sticc.base.schema import loose_json


def cache_root() -> Path:
    """The cache's root folder (not created)."""
    explicit = os.environ.get("STICC_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg) / "sticc"
    return Path.home() / ".cache" / "sticc"


def cache_dir(store_id: str) -> Path:
    """The folder holding the cached measurements of the store `store_id` (not created)."""
    return cache_root() / store_id[:16]


def read_cached_json(path: Path) -> dict | None:
    """The JSON object cached at `path`, or None when it is missing, unreadable, not JSON (nested
    too deeply included) or not an object."""
    try:
        data = loose_json(Path(path).read_bytes(), str(path))
    except (OSError, UserError):
        return None
    return data if isinstance(data, dict) else None


def write_cached_json(path: Path, data: dict) -> None:
    """Cache `data` at `path` (atomically: a reader sees the old entry or the new one, never half)."""
    write_json_atomic(path, data)
