"""The format catalog (`prep formats`, docs/formats.md) against the converters themselves."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from shardprep.errors import RowError
from shardprep.formats import (
    ALL_FORMATS,
    CONVERSATION_FORMATS,
    PAIR_FORMATS,
    to_comparison,
    to_conversation,
    to_text,
)
from shardprep.formats.catalog import CATALOG, FormatDoc


def _convert(fmt: str, row: dict[str, Any], columns: dict[str, str] | None = None) -> Any:
    if fmt in CONVERSATION_FORMATS:
        return to_conversation(row, format=fmt, columns=columns)
    if fmt in PAIR_FORMATS:
        return to_comparison(row, format=fmt, columns=columns)
    return to_text(row, columns=columns)


def _pop(row: dict[str, Any], path: str) -> Any:
    *parents, last = path.split(".")
    node = row
    for p in parents:
        node = node[p]
    return node.pop(last)


def test_every_format_is_documented_in_order() -> None:
    assert tuple(CATALOG) == ALL_FORMATS


@pytest.mark.parametrize("doc", CATALOG.values(), ids=lambda d: d.name)
def test_example_converts_and_required_fields_are_read(doc: FormatDoc) -> None:
    assert _convert(doc.name, copy.deepcopy(doc.example))
    for name, path in doc.required.items():
        row = copy.deepcopy(doc.example)
        _pop(row, path)
        with pytest.raises(RowError) as err:
            _convert(doc.name, row)
        assert err.value.reason == "missing_field" and err.value.field == path, (name, err.value)


@pytest.mark.parametrize("doc", CATALOG.values(), ids=lambda d: d.name)
def test_columns_maps_each_required_field(doc: FormatDoc) -> None:
    """`columns: {field: other}` reads the format's field from a top-level field named `other`."""
    row = copy.deepcopy(doc.example)
    columns = {}
    for name, path in doc.required.items():
        value = _pop(row, path)
        row[f"my_{name}"] = value
        columns[name] = f"my_{name}"
    assert _convert(doc.name, row, columns) == _convert(doc.name, copy.deepcopy(doc.example))


def test_missing_field_names_what_the_row_has() -> None:
    row = {"chat": [{"role": "user", "content": "hi"}], "id": 1}
    with pytest.raises(RowError) as err:
        to_conversation(row, format="messages")
    msg = str(err.value)
    assert (
        "no 'messages' field (it has 'chat', 'id')" in msg
        and "`columns: {messages: <its field>}`" in msg
    )
    with pytest.raises(RowError) as err:
        to_conversation({"mesages": []}, format="messages")
    assert "`columns: {messages: mesages}`" in str(err.value)  # a close field name is suggested


def test_docs_page_is_the_catalog() -> None:
    from pathlib import Path

    from shardprep.formats.catalog import formats_markdown

    page = Path(__file__).parents[2] / "docs" / "formats.md"
    assert page.read_text(encoding="utf-8") == formats_markdown(), (
        'docs/formats.md is generated: python -c "from shardprep.formats.catalog import formats_markdown; '
        "print(formats_markdown(), end='')\" > docs/formats.md"
    )
