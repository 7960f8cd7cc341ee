"""build/early.py: `prep build` starts the encoder's parse from a peek at the recipe."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from shardprep.build.early import start_encoder_parse
from shardprep.encode import fast_parse

TOY = Path(__file__).resolve().parents[1] / "fixtures" / "tokenizers" / "toy"


def _project(tmp_path: Path, extra: str = "") -> Path:
    tok = tmp_path / "tok"
    tok.mkdir()
    shutil.copy(TOY / "tokenizer.json.gz", tok / "tokenizer.json.gz")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"name: t\noutput: out\ntokenizer: tok\nrenderer: qwen3\n{extra}")
    return recipe


def _started(tmp_path: Path) -> bool:
    return str((tmp_path / "tok" / "tokenizer.json.gz").absolute()) in fast_parse._PARSES


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fast_parse, "_PARSES", {})
    monkeypatch.delenv(fast_parse.ENV_VAR, raising=False)


def test_a_new_build_starts_the_parse(tmp_path: Path) -> None:
    start_encoder_parse(_project(tmp_path), encoder=None, output=None, force=False)
    assert _started(tmp_path)


def test_an_output_with_a_manifest_waits_for_the_up_to_date_check(tmp_path: Path) -> None:
    recipe = _project(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "manifest.json").write_text("{}")
    start_encoder_parse(recipe, encoder=None, output=None, force=False)
    assert not _started(tmp_path)
    start_encoder_parse(recipe, encoder=None, output=None, force=True)
    assert _started(tmp_path)


@pytest.mark.parametrize(
    ("extra", "encoder"), [("encoder: tokenizers\n", None), ("", "tokenizers")]
)
def test_the_tokenizers_encoder_parses_nothing_early(
    tmp_path: Path, extra: str, encoder: str | None
) -> None:
    start_encoder_parse(_project(tmp_path, extra), encoder=encoder, output=None, force=True)
    assert not _started(tmp_path)


@pytest.mark.parametrize("text", ["tokenizer: [1, 2]\n", "tokenizer: missing\n", "{{{\n", "- a\n"])
def test_a_recipe_it_cannot_use_starts_nothing_and_raises_nothing(
    tmp_path: Path, text: str
) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(text)
    start_encoder_parse(recipe, encoder=None, output=None, force=True)
    assert fast_parse._PARSES == {}
