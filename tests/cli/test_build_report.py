"""`prep build` says what it dropped, where and why: the per-source table `prep show` prints, a
sample of rows per drop reason, and a source that yields nothing fails the build (or warns when
allowed). On the repo's LLaMA-Factory and axolotl data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import yaml
from typer.testing import CliRunner

from shardprep.cli.app import app

ROOT = Path(__file__).parents[2]
DATA = ROOT / "tests/fixtures/data"
TOY = ROOT / "tests/fixtures/tokenizers/toy"
runner = CliRunner()

SOURCES = [
    {
        "name": "lf_identity",
        "path": str(DATA / "llamafactory/identity.json.gz"),
        "format": "alpaca",
    },
    {
        "name": "lf_reason_tool",
        "path": str(DATA / "llamafactory/reason_tool_use_demo_50.jsonl.gz"),
        "format": "messages",
    },
    {"name": "ax_alpaca", "path": str(DATA / "axolotl/alpaca.json"), "format": "alpaca"},
    {"name": "ax_conv", "path": str(DATA / "axolotl/conversation.json"), "format": "sharegpt"},
]


def _recipe(tmp_path: Path, **overrides: Any) -> Path:
    data = {
        "name": "t",
        "output": "out",
        "tokenizer": str(TOY),
        "renderer": "qwen3",
        "on_error": "skip",
        # reason_tool_use's answers come after long tool outputs: this cuts some away whole.
        "max_length": 384,
        "sources": SOURCES,
        **overrides,
    }
    p = tmp_path / "recipe.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def _kept_rows(out: Path, manifest: dict[str, Any], source: str) -> set[int]:
    rows: set[int] = set()
    for split in manifest["splits"].values():
        for shard in split["shards"]:
            t = pq.read_table(out / shard["path"], columns=["source", "source_row"])
            rows |= {
                r
                for s, r in zip(t["source"].to_pylist(), t["source_row"].to_pylist(), strict=True)
                if s == source
            }
    return rows


def test_build_prints_the_per_source_table_with_drop_samples(tmp_path: Path) -> None:
    res = runner.invoke(app, ["build", str(_recipe(tmp_path)), "--quiet"])
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "out/manifest.json").read_text())
    by_name = {s["name"]: s for s in m["sources"]}
    lost = by_name["lf_reason_tool"]
    assert lost["dropped_by_reason"].get("truncated_away", 0) > 0
    # the table: every source with rows read, examples and drops by reason
    table = res.output[res.output.index("sources") :]
    for s in m["sources"]:
        line = next(ln for ln in table.splitlines() if f" {s['name']} " in ln)
        assert f" {s['rows_read']:,} " in line and f" {s['examples']:,} " in line
    assert f"truncated_away {lost['dropped_by_reason']['truncated_away']}" in table
    # the samples: source and row of a truncated_away drop, which indeed is in no shard
    samples = lost["drop_samples"]["truncated_away"]
    assert 1 <= len(samples) <= 3
    kept = _kept_rows(tmp_path / "out", m, "lf_reason_tool")
    for sample in samples:
        assert sample["row"] not in kept
        assert sample["file"].endswith("reason_tool_use_demo_50.jsonl.gz")
        assert sample["line"] == sample["row"] + 1  # JSONL: 1-based lines
    shown = ", ".join(f"row {x['row']} (line {x['line']})" for x in samples)
    assert f"lf_reason_tool  truncated_away: {shown} in reason_tool_use_demo_50.jsonl.gz" in (
        res.output
    )
    # `prep show` prints the same table and samples (one report path)
    show = runner.invoke(app, ["show", str(tmp_path / "out")])
    assert show.exit_code == 0, show.output
    assert f"lf_reason_tool  truncated_away: {shown}" in show.output
    assert "max_length cut away every token" in show.output  # the hint names the cause


def test_build_json_has_sources_drops_and_samples(tmp_path: Path) -> None:
    res = runner.invoke(app, ["build", str(_recipe(tmp_path)), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    m = json.loads((tmp_path / "out/manifest.json").read_text())
    assert data["rows_read"] == m["stats"]["rows_read"]
    assert data["dropped"] == m["stats"]["dropped"]
    assert [s["name"] for s in data["sources"]] == [s["name"] for s in SOURCES]
    for got, want in zip(data["sources"], m["sources"], strict=True):
        assert got["dropped_by_reason"] == want["dropped_by_reason"]
        assert got["drop_samples"] == want["drop_samples"]
        assert set(got["drop_samples"]) == set(want["dropped_by_reason"])  # a sample per reason
    # an up-to-date answer reads the manifest only: no table
    again = json.loads(runner.invoke(app, ["build", str(_recipe(tmp_path)), "--json"]).output)
    assert again["status"] == "up_to_date" and "sources" not in again


def _with_wrong_format(tmp_path: Path, **overrides: Any) -> Path:
    # axolotl's sharegpt conversation read as alpaca: every row is refused (missing_field).
    wrong = {
        "name": "ax_wrong",
        "path": str(DATA / "axolotl/conversation.json"),
        "format": "alpaca",
    }
    return _recipe(tmp_path, sources=[*SOURCES, wrong], **overrides)


def test_a_source_that_yields_nothing_fails_the_build(tmp_path: Path) -> None:
    res = runner.invoke(app, ["build", str(_with_wrong_format(tmp_path)), "--quiet"])
    assert res.exit_code == 2, res.output
    assert "source 'ax_wrong' yields no example: all 1 rows were dropped or skipped" in res.output
    assert "missing_field 1" in res.output and "e.g. row 0" in res.output
    assert "allow_empty_sources: true" in res.output
    assert not (tmp_path / "out/manifest.json").exists()


def test_allow_empty_sources_builds_with_a_warning(tmp_path: Path) -> None:
    recipe = _with_wrong_format(tmp_path, allow_empty_sources=True)
    res = runner.invoke(app, ["build", str(recipe), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "source 'ax_wrong' yields no example" in res.output and "[empty_source]" in res.output
    assert "ax_wrong  missing_field: row 0 in conversation.json" in res.output
    m = json.loads((tmp_path / "out/manifest.json").read_text())
    assert [w["source"] for w in m["warnings"] if w["code"] == "empty_source"] == ["ax_wrong"]
    sample = next(s for s in m["sources"] if s["name"] == "ax_wrong")["drop_samples"]
    assert sample["missing_field"][0]["row"] == 0 and sample["missing_field"][0]["message"]
    data = json.loads(runner.invoke(app, ["build", str(recipe), "--json", "--force"]).output)
    assert any(w["code"] == "empty_source" for w in data["warnings"])
