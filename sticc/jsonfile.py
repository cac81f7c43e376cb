"""Files in and out: user-supplied JSON read with one clear error for a missing, malformed or
non-object file; outputs written atomically (a reader never sees half a file or half a set)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from sticc.errors import UserError


def read_json_object(path: Path, missing: str) -> dict:
    """The JSON object in `path`; `missing` is the error message when the file does not exist."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(missing) from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise UserError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} must hold a JSON object")
    return data


def write_json_atomic(path: str | Path, data: dict) -> None:
    """Write JSON to `path` via a temporary sibling and a rename: never half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    staging.replace(path)


def write_files_atomic(out_dir: str | Path, files: dict[str, str]) -> list[Path]:
    """Write the text `files` {name: text} into `out_dir`: all staged in a hidden folder there
    first, then each renamed into place, so an error leaves the old files, never half-written ones."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".sticc-write-", dir=out_dir))
    try:
        for name, text in files.items():
            (staging / name).write_text(text, encoding="utf-8")
        for name in files:
            os.replace(staging / name, out_dir / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [out_dir / name for name in files]
