"""`prep build --encoder`: plain and --json output, the manifest record, a refused name."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from shardprep.cli.app import app
from shardprep.encode.backends import ENV_VAR

ROOT = Path(__file__).parents[2]
PLAIN_ENV = {"COLUMNS": "120", "NO_COLOR": "1", "FORCE_COLOR": None, "TERM": "dumb"}
runner = CliRunner()


@pytest.fixture(autouse=True)
def _keep_env() -> object:
    # The option sets $SHARDPREP_ENCODER for pool workers; do not leak it into other tests.
    before = os.environ.get(ENV_VAR)
    yield
    if before is None:
        os.environ.pop(ENV_VAR, None)
    else:
        os.environ[ENV_VAR] = before


def _recipe(tmp_path: Path, tokenizer: str, renderer: str) -> Path:
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"q{i}"},
                {"role": "assistant", "content": f"a{i}"},
            ]
        }
        for i in range(6)
    ]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = {
        "name": "enc",
        "output": "out",
        "tokenizer": str(ROOT / "tests" / "fixtures" / "tokenizers" / tokenizer),
        "renderer": renderer,
        "sources": [{"path": "d.jsonl"}],
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    return tmp_path / "r.yaml"


@pytest.mark.parametrize("encoder", ["tokenizers", "fastokens"])
def test_plain_summary_names_the_encoder(tmp_path: Path, encoder: str) -> None:
    res = runner.invoke(
        app,
        ["build", str(_recipe(tmp_path, "qwen3", "qwen3")), "-q", "--encoder", encoder],
        env=PLAIN_ENV,
    )
    assert res.exit_code == 0, res.output
    assert f"encoder {encoder}" in " ".join(res.output.split())
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["tokenizer"]["encoder"]["name"] == encoder
    assert manifest["tokenizer"]["encoder"]["requested"] == encoder


def test_auto_falls_back_for_metaspace_and_says_why(tmp_path: Path) -> None:
    res = runner.invoke(
        app, ["build", str(_recipe(tmp_path, "mistral_v3", "mistral")), "--json"], env=PLAIN_ENV
    )
    assert res.exit_code == 0, res.output
    enc = json.loads((tmp_path / "out" / "manifest.json").read_text())["tokenizer"]["encoder"]
    assert enc["name"] == "tokenizers" and "Metaspace" in enc["reason"]


def test_unknown_encoder_is_a_usage_error(tmp_path: Path) -> None:
    res = runner.invoke(
        app, ["build", str(_recipe(tmp_path, "qwen3", "qwen3")), "--encoder", "fast"], env=PLAIN_ENV
    )
    assert res.exit_code == 2
    out = " ".join(res.output.split())
    assert "Invalid value for '--encoder'" in out and "'fast' is not one of" in out
