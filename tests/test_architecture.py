"""The package layering (docs/architecture.md) holds: every module sits in a stage package named by
the import contract in pyproject.toml, and only the command line imports project modules inside
functions (for start-up time). `make test` runs import-linter on the contract itself."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECT = ("sticc", "solvers", "codegen")


def _layers() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    layered = next(c for c in config["contracts"] if c["type"] == "layers")
    return [name.strip() for layer in layered["layers"] for name in layer.split("|")]


def test_every_module_of_sticc_sits_in_a_layer_of_the_contract():
    layers = set(_layers())
    loose = [p.name for p in (ROOT / "sticc").glob("*.py") if p.name != "__init__.py"]
    assert not loose, f"modules outside every stage package (the contract cannot see them): {loose}"
    packages = {f"sticc.{p.name}" for p in (ROOT / "sticc").iterdir() if (p / "__init__.py").is_file()}
    assert packages <= layers, f"stage packages missing from the import contract: {sorted(packages - layers)}"
    assert {"solvers", "codegen"} <= layers


def _function_level_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for inner in ast.walk(node):
                names = []
                if isinstance(inner, ast.ImportFrom) and inner.module:
                    names = [inner.module]
                elif isinstance(inner, ast.Import):
                    names = [alias.name for alias in inner.names]
                found += [f"{path.relative_to(ROOT)}:{inner.lineno} {n}" for n in names if n.split(".")[0] in PROJECT]
    return found


def test_only_the_command_line_imports_project_modules_inside_functions():
    found = []
    for package in PROJECT:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.is_relative_to(ROOT / "sticc" / "cli"):
                continue
            found += _function_level_imports(path)
    assert not found, "imports inside functions (move them to the top; the contract then sees them): " + "; ".join(found)
