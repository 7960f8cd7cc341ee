"""`prep ls`: what it says about a folder that is not one."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from shardprep.cli.app import app
from shardprep.errors import ShardprepError
from shardprep.views.catalog import list_builds

ENV = {"COLUMNS": "120", "NO_COLOR": "1"}


@pytest.mark.parametrize("as_json", [False, True])
def test_a_missing_folder_or_a_file_is_exit_2_naming_it(tmp_path: Path, as_json: bool) -> None:
    # Was an empty listing and exit 0: a mistyped path read as "no builds here".
    a_file = tmp_path / "manifest.json"
    a_file.write_text("{}")
    for path, why in ((tmp_path / "nope", "not found"), (a_file, "a file, not a folder")):
        res = CliRunner().invoke(app, ["ls", str(path), *(["--json"] if as_json else [])], env=ENV)
        assert res.exit_code == 2, res.output
        assert str(path) in " ".join(res.output.split()) and why in res.output
        with pytest.raises(ShardprepError, match=why):
            list_builds(str(path))


def test_an_empty_folder_lists_nothing(tmp_path: Path) -> None:
    assert list_builds(str(tmp_path)) == []
    res = CliRunner().invoke(app, ["ls", str(tmp_path), "--json"], env=ENV)
    assert res.exit_code == 0 and res.output.strip() == "[]"


def test_an_invalid_manifest_says_why_in_the_terminal(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "manifest.json").write_text('{"format": "shardprep", "format_version": 1}')
    res = CliRunner().invoke(app, ["ls", str(tmp_path)], env=ENV)
    assert res.exit_code == 0, res.output
    assert "invalid manifest" in res.output and "fingerprint" in res.output  # the missing key
