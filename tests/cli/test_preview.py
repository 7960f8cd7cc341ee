"""`prep preview`: the demo recipe's first rows as build would write them, nothing written, warnings."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from shardprep.cli.app import app

ROOT = Path(__file__).parents[2]
DEMO = ROOT / "configs" / "demo.yaml"
QWEN3 = ROOT / "tests" / "fixtures" / "tokenizers" / "qwen3"
PLAIN_ENV = {"COLUMNS": "100", "NO_COLOR": "1", "FORCE_COLOR": None, "TERM": "dumb"}
runner = CliRunner()

# Snapshot helpers are shared with test_show (loaded by path: tests are not a package).
_spec = importlib.util.spec_from_file_location(
    "_show_tests", Path(__file__).with_name("test_show_cli.py")
)
assert _spec is not None and _spec.loader is not None
_show = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_show)


def invoke(*args: str) -> Any:
    return runner.invoke(app, list(args), env=PLAIN_ENV)


def _demo_recipe_in(tmp: Path) -> Path:
    """The demo recipe with absolute inputs and its output under `tmp` (to see that nothing is written)."""
    data = yaml.safe_load(DEMO.read_text())
    data["tokenizer"] = str(QWEN3)
    for s in data["sources"]:
        s["path"] = str((DEMO.parent / s["path"]).resolve())
    data["output"] = str(tmp / "never-written")
    path = tmp / "demo.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_preview_snapshot() -> None:
    res = invoke("preview", str(DEMO), "-n", "1")
    assert res.exit_code == 0, res.output
    assert "\x1b[" not in res.output
    _show.check_snapshot("preview_demo.txt", _show.mask(res.output, None))


def test_preview_writes_nothing_and_matches_build(tmp_path: Path) -> None:
    recipe = _demo_recipe_in(tmp_path)
    res = invoke("preview", str(recipe), "-n", "3", "--json", "--html", str(tmp_path / "p.html"))
    assert res.exit_code == 0, res.output
    assert not (tmp_path / "never-written").exists()
    data = json.loads(res.output)
    assert [s["rows_read"] for s in data["sources"]] == [3, 3, 3]
    # The demo is quiet: its earlier turns carry no reasoning for qwen3's history to drop.
    assert data["warnings"] == []
    assert len(data["rows"]) == 9 and data["row_errors"] == []
    # Token-exact parity: the previewed rows are the rows the build writes for the same inputs.
    built = runner.invoke(app, ["build", str(recipe), "--quiet", "-o", str(tmp_path / "built")])
    assert built.exit_code == 0, built.output
    m = json.loads((tmp_path / "built" / "manifest.json").read_text())
    shard_rows = [
        r
        for split in m["splits"].values()
        for s in split["shards"]
        for r in pq.read_table(tmp_path / "built" / s["path"]).to_pylist()
    ]
    by_key = {(r["source"], r["source_row"]): r for r in shard_rows}
    assert data["fingerprint"] == m["fingerprint"]  # preview names the build it previews
    for row in data["rows"]:
        got = by_key[(row["source"], row["source_row"])]
        assert row["input_ids"] == got["input_ids"] and row["target_ids"] == got["target_ids"]
        assert row["weights"] == pytest.approx(got["weights"])
    page = _show.parse_page(tmp_path / "p.html")
    assert page.scripts == 0 and page.external == []
    assert [r[0] for r in page.tables["sources"][1:]] == ["kto", "glaive_tools", "alpaca"]
    assert all(ex["n_trained"] == ex["trained"] for ex in page.examples) and len(page.examples) == 9


def test_preview_warns_on_untrained_and_bad_rows(tmp_path: Path) -> None:
    rows = [
        {
            "messages": [
                {"role": "user", "content": "hello"},
                {"role": "assistant", "content": "hi there"},
            ]
        },
        {"messages": [{"role": "user", "content": "no answer here"}]},  # trains nothing: dropped
        {"messages": [{"role": "user", "content": "nor here"}]},
        {"conversation": []},  # not the messages format
    ]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"name: bad\noutput: out\ntokenizer: {QWEN3}\nrenderer: qwen3\nsources: "
        f"[{{path: d.jsonl, name: chats}}]\non_error: skip\n"
    )
    res = invoke("preview", str(recipe), "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    (src,) = data["sources"]
    assert src["rows_read"] == 4 and src["examples"] == 1
    assert (
        src["dropped_by_reason"]["no_trained_tokens"] == 2
        and sum(src["dropped_by_reason"].values()) == 3
    )
    assert {e["reason"] for e in data["row_errors"]} >= {"no_trained_tokens"}
    assert "untrained_rows_dropped" in {w["code"] for w in data["warnings"]}
    text = invoke("preview", str(recipe))
    assert "rows that would be dropped" in text.output and "[untrained_rows_dropped]" in text.output
    # The row that did not convert has no source row: its line says where, never "row None".
    assert "row None" not in text.output
    flat = " ".join(text.output.split())
    assert "chats: missing_field" in flat and "d.jsonl, line 4" in flat


def test_preview_unknown_source_exit_2() -> None:
    res = invoke("preview", str(DEMO), "--source", "nope")
    assert res.exit_code == 2 and "kto" in res.output
    res = invoke("preview", str(DEMO), "-n", "0")
    assert res.exit_code == 2


def test_preview_one_source() -> None:
    res = invoke("preview", str(DEMO), "-n", "2", "--source", "alpaca", "--json")
    data = json.loads(res.output)
    assert [s["name"] for s in data["sources"]] == ["alpaca"]
    assert {r["source"] for r in data["rows"]} == {"alpaca"}
    assert re.fullmatch(r"[0-9a-f]{64}", data["fingerprint"])


def test_preview_says_the_build_would_stop_under_on_error_fail(tmp_path: Path) -> None:
    # Preview listed the bad row under "rows that would be dropped" with "no warnings", while the
    # build (on_error: fail, the default) stops on it with exit 2.
    good = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    (tmp_path / "d.jsonl").write_text(json.dumps(good) + "\n" + '{"conversation": []}\n')
    recipe = tmp_path / "r.yaml"
    body = f"name: bad\noutput: out\ntokenizer: {QWEN3}\nrenderer: qwen3\nsources: [{{path: d.jsonl}}]\n"
    recipe.write_text(body)
    res = invoke("preview", str(recipe), "--json")
    assert res.exit_code == 0, res.output
    (w,) = [w for w in json.loads(res.output)["warnings"] if w["code"] == "build_would_stop"]
    assert "d.jsonl, line 2" in w["message"] and "missing_field" in w["message"]
    out = " ".join(invoke("preview", str(recipe)).output.split())
    assert "prep build stops at the first bad row" in out and "[build_would_stop]" in out
    assert invoke("build", str(recipe)).exit_code == 2
    recipe.write_text(body + "on_error: skip\n")
    res = invoke("preview", str(recipe), "--json")
    assert "build_would_stop" not in {w["code"] for w in json.loads(res.output)["warnings"]}
