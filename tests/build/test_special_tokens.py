"""`special_tokens_in_content` through whole builds on the repo's LLaMA-Factory data: counted per
source and literal in the manifest, warned under keep, shown by `prep build` and `prep show`
(terminal and --json), escaped or refused, and part of the fingerprint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import yaml
from typer.testing import CliRunner

from shardprep.cli.app import app

ROOT = Path(__file__).parents[2]
DATA = ROOT / "tests/fixtures/data/llamafactory"
QWEN3 = ROOT / "tests/fixtures/tokenizers/qwen3"
TOY = ROOT / "tests/fixtures/tokenizers/toy"
runner = CliRunner()

# reason_tool_use_demo_50: rows 5 and 6 (lines 6 and 7) spell `</think>` inside their reasoning, which closes
# qwen3's think block early (the tool-call tags of the 48 tool rows are the template's own).
SOURCES = [
    {
        "name": "reason",
        "path": str(DATA / "reason_tool_use_demo_50.jsonl.gz"),
        "format": "messages",
    },
    {"name": "identity", "path": str(DATA / "identity.json.gz"), "format": "alpaca"},
]
SPELLED = {5, 6}


def _build(tmp_path: Path, out: str, *args: str, **overrides: Any) -> Any:
    data = {
        "name": "t",
        "output": out,
        "tokenizer": str(QWEN3),
        "renderer": "qwen3",
        "on_error": "skip",
        "conformance_rows": 0,
        "sources": SOURCES,
        **overrides,
    }
    p = tmp_path / f"{out}.yaml"
    p.write_text(yaml.safe_dump(data))
    return runner.invoke(app, ["build", str(p), *args])


def _manifest(tmp_path: Path, out: str) -> dict[str, Any]:
    return json.loads((tmp_path / out / "manifest.json").read_text())


def _rows(tmp_path: Path, out: str) -> dict[tuple[str, int], list[int]]:
    m = _manifest(tmp_path, out)
    rows = {}
    for split in m["splits"].values():
        for shard in split["shards"]:
            for r in pq.read_table(tmp_path / out / shard["path"]).to_pylist():
                rows[(r["source"], r["source_row"])] = r["input_ids"]
    return rows


def test_keep_counts_and_warns(tmp_path: Path) -> None:
    res = _build(tmp_path, "keep", "--quiet")
    assert res.exit_code == 0, res.output
    m = _manifest(tmp_path, "keep")
    record = {"policy": "keep", "rows": 2, "tokens": {"</think>": 2}}
    assert m["stats"]["special_tokens"] == record
    by_name = {s["name"]: s for s in m["sources"]}
    assert by_name["reason"]["special_tokens"] == record
    assert by_name["identity"]["special_tokens"] == {"policy": "keep", "rows": 0, "tokens": {}}
    [warning] = [w for w in m["warnings"] if w["code"] == "special_tokens_in_content"]
    assert warning["count"] == 2 and warning["tokens"] == {"</think>": 2}
    line = "2 rows spell control tokens in their message text (</think> 2)"
    assert line in res.output and "reason: 2 rows (</think> 2)" in res.output
    assert "[special_tokens_in_content]" in res.output  # the warning, under keep only
    # prep show: the same block and warning (terminal), the records (--json)
    show = runner.invoke(app, ["show", str(tmp_path / "keep")])
    assert show.exit_code == 0, show.output
    assert "control tokens in message text" in show.output and line in show.output
    assert "reason: 2 rows (</think> 2)" in show.output
    assert (
        "identity:" not in show.output.split("control tokens in message text")[1].split("\n\n")[0]
    )
    data = json.loads(runner.invoke(app, ["show", str(tmp_path / "keep"), "--json"]).output)
    assert data["special_tokens"] == record
    assert {s["name"]: s["special_tokens"]["rows"] for s in data["sources"]} == {
        "reason": 2,
        "identity": 0,
    }
    assert any(w["code"] == "special_tokens_in_content" for w in data["warnings"])
    built = json.loads(_build(tmp_path, "keep2", "--json").output)
    assert built["special_tokens"] == record


def test_escape_and_refuse(tmp_path: Path) -> None:
    assert _build(tmp_path, "keep", "--quiet").exit_code == 0
    res = _build(tmp_path, "esc", "--quiet", special_tokens_in_content="escape")
    assert res.exit_code == 0, res.output
    esc = _manifest(tmp_path, "esc")
    keep = _manifest(tmp_path, "keep")
    assert esc["fingerprint"] != keep["fingerprint"]  # the key is fingerprinted
    assert esc["stats"]["special_tokens"] == {
        "policy": "escape",
        "rows": 2,
        "tokens": {"</think>": 2},
    }
    assert not [w for w in esc["warnings"] if w["code"] == "special_tokens_in_content"]
    assert "escaped: encoded as plain text" in res.output
    close = 151668  # </think> in the Qwen3 tokenizer
    kept, escaped = _rows(tmp_path, "keep"), _rows(tmp_path, "esc")
    assert kept.keys() == escaped.keys()
    for key, ids in kept.items():
        if key[0] == "reason" and key[1] in SPELLED:
            assert ids.count(close) == escaped[key].count(close) + 1
        else:
            assert ids == escaped[key], key  # only the rows that spell it change
    res = _build(tmp_path, "ref", "--quiet", special_tokens_in_content="refuse")
    assert res.exit_code == 0, res.output
    ref = _manifest(tmp_path, "ref")
    reason = {s["name"]: s for s in ref["sources"]}["reason"]
    assert reason["dropped_by_reason"]["special_token_in_content"] == 2
    refused = {s["row"] for s in reason["drop_samples"]["special_token_in_content"]}
    assert refused == SPELLED
    assert ("reason", 5) not in _rows(tmp_path, "ref")
    # under on_error: fail the first such row stops the build, naming it
    res = _build(tmp_path, "fail", "--quiet", special_tokens_in_content="refuse", on_error="fail")
    assert res.exit_code == 2 and "special_token_in_content" in res.output


def test_dpo_counts_a_pair_once(tmp_path: Path) -> None:
    # <tool_call> is a non-special added token of the toy tokenizer: live in qwen3's content.
    rows = [
        {
            "chosen": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "a <tool_call> x"},
            ],
            "rejected": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "b <tool_call> y"},
            ],
        },
        {
            "chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
            "rejected": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "b"}],
        },
    ]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = {
        "name": "t",
        "output": "dpo",
        "tokenizer": str(TOY),
        "renderer": "qwen3",
        "task": "dpo",
        "sources": [{"path": str(tmp_path / "pairs.jsonl"), "format": "messages_pair"}],
    }
    (tmp_path / "dpo.yaml").write_text(yaml.safe_dump(data))
    res = runner.invoke(app, ["build", str(tmp_path / "dpo.yaml"), "--quiet"])
    assert res.exit_code == 0, res.output
    m = _manifest(tmp_path, "dpo")
    assert m["stats"]["special_tokens"] == {
        "policy": "keep",
        "rows": 1,
        "tokens": {"<tool_call>": 1},
    }


def test_preview_counts_what_the_build_would(tmp_path: Path) -> None:
    """prep preview drives the same encoder: the first 10 rows hold rows 5 and 6."""
    _build(tmp_path, "keep", "--quiet")  # writes keep.yaml
    recipe = str(tmp_path / "keep.yaml")
    data = json.loads(runner.invoke(app, ["preview", recipe, "-n", "10", "--json"]).output)
    record = {"policy": "keep", "rows": 2, "tokens": {"</think>": 2}}
    assert data["special_tokens"] == record
    by_name = {s["name"]: s["special_tokens"] for s in data["sources"]}
    assert by_name["reason"] == record and by_name["identity"]["rows"] == 0
    assert any(w["code"] == "special_tokens_in_content" for w in data["warnings"])
    text = runner.invoke(app, ["preview", recipe, "-n", "10"]).output
    assert "reason: 2 rows (</think> 2)" in text
