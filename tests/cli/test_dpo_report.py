"""A preference build's report shows both sides of a pair, labelled, in the terminal and in HTML."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from shardprep.cli.app import app

ROOT = Path(__file__).parents[2]
QWEN3 = ROOT / "tests" / "fixtures" / "tokenizers" / "qwen3"
PLAIN_ENV = {"COLUMNS": "120", "NO_COLOR": "1", "FORCE_COLOR": None, "TERM": "dumb"}
runner = CliRunner()


@pytest.fixture(scope="module")
def dpo_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("dpo")
    rows = [
        {
            "prompt": f"Question {i}?",
            "chosen": f"Good answer {i}.",
            "rejected": f"Bad answer {i}, much worse.",
        }
        for i in range(4)
    ]
    (tmp / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = {
        "name": "pairs",
        "output": str(tmp / "out"),
        "tokenizer": str(QWEN3),
        "renderer": "qwen3_disable_thinking",
        "task": "dpo",
        "sources": [{"name": "pairs", "path": "pairs.jsonl", "format": "text_pair"}],
        "workers": 1,
    }
    (tmp / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    res = runner.invoke(app, ["build", str(tmp / "recipe.yaml"), "--quiet"], env=PLAIN_ENV)
    assert res.exit_code == 0, res.output
    return tmp / "out"


class _Sides(HTMLParser):
    """Each labelled side of each pair: its label, its counts, and its tokens' text and trained counts."""

    def __init__(self) -> None:
        super().__init__()
        self.sides: list[dict[str, Any]] = []
        self._in_label = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "section" and "data-side" in a:
            self.sides.append(
                {
                    "side": a["data-side"],
                    "trained": int(a["data-trained"]),
                    "length": int(a["data-length"]),
                    "label": "",
                    "text": "",
                    "n": 0,
                    "n_trained": 0,
                }
            )
        elif tag == "h4" and self.sides:
            self._in_label = True
        elif tag == "span" and a.get("class", "").startswith("t ") and self.sides:
            self.sides[-1]["n"] += int(a["data-n"])
            self.sides[-1]["n_trained"] += int(a["data-trained"])

    def handle_endtag(self, tag: str) -> None:
        if tag == "h4":
            self._in_label = False

    def handle_data(self, data: str) -> None:
        if not self.sides:
            return
        if self._in_label:
            self.sides[-1]["label"] += data
        else:
            self.sides[-1]["text"] += data


def test_html_shows_both_sides_labelled(dpo_build: Path, tmp_path: Path) -> None:
    page = tmp_path / "dpo.html"
    res = runner.invoke(
        app,
        ["show", str(dpo_build), "--row", "0", "--row", "1", "--html", str(page)],
        env=PLAIN_ENV,
    )
    assert res.exit_code == 0, res.output
    js = json.loads(
        runner.invoke(app, ["show", str(dpo_build), "--row", "0", "--row", "1", "--json"]).output
    )
    parser = _Sides()
    parser.feed(page.read_text(encoding="utf-8"))
    assert [s["side"] for s in parser.sides] == ["chosen", "rejected"] * 2
    for side, row_side in zip(
        parser.sides,
        [r["pair"][k] for r in js["rows"] for k in ("chosen", "rejected")],
        strict=True,
    ):
        assert side["label"].startswith(f"{side['side']} · {row_side['length']:,} tokens")
        assert side["n"] == side["length"] + 1 == row_side["length"] + 1  # every token, once
        assert side["n_trained"] == side["trained"] == row_side["trained"] > 0
        assert ("Good answer" in side["text"]) == (side["side"] == "chosen")
        assert ("Bad answer" in side["text"]) == (side["side"] == "rejected")


def test_terminal_shows_both_sides_labelled(dpo_build: Path) -> None:
    res = runner.invoke(app, ["show", str(dpo_build), "--row", "0"], env=PLAIN_ENV)
    assert res.exit_code == 0, res.output
    assert "chosen ·" in res.output and "rejected ·" in res.output
    assert "Good answer" in res.output and "Bad answer" in res.output
