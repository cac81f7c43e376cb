"""Reading user-supplied JSON files: one clear error for a missing, malformed or non-object file."""

from __future__ import annotations

import json
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
