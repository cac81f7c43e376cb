"""The docs' JSON Schemas are generated from the models that validate each file format."""

from __future__ import annotations

from pathlib import Path

from sticc.cli.formats import schemas

SCHEMAS = Path(__file__).resolve().parent.parent / "docs" / "schemas"


def test_committed_schemas_are_what_the_code_generates():
    generated = schemas()
    committed = {path.name: path.read_text(encoding="utf-8") for path in SCHEMAS.glob("*.schema.json")}
    assert set(committed) == set(generated), "run: python -m sticc.cli.formats docs/schemas"
    for name, text in generated.items():
        assert committed[name] == text, f"{name} is stale: run python -m sticc.cli.formats docs/schemas"
