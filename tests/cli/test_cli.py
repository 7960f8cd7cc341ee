"""The `prep` command on the bundled demo: build, show, validate, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from shardprep.cli.app import app

ROOT = Path(__file__).parents[2]
DEMO = ROOT / "configs" / "demo.yaml"
runner = CliRunner()


@pytest.fixture(scope="module")
def demo_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "shards"
    res = runner.invoke(app, ["build", str(DEMO), "--output", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "built" in res.output
    return out


def test_demo_build_reads_back(demo_build: Path) -> None:
    m = json.loads((demo_build / "manifest.json").read_text())
    # 200 kto + 100 glaive + 200 alpaca rows read; 20 held out for test
    assert m["stats"]["rows_read"] == 500
    assert m["splits"]["test"]["rows"] == 20
    total = (
        m["splits"]["train"]["rows"]
        + m["splits"]["test"]["rows"]
        + sum(m["stats"]["dropped"].values())
    )
    assert total == 500
    tokens = 0
    for split in ("train", "test"):
        for shard in m["splits"][split]["shards"]:
            t = pq.read_table(demo_build / shard["path"])
            assert t.num_rows == shard["rows"]
            tokens += sum(t.column("length").to_pylist())
    assert tokens == m["splits"]["train"]["tokens"] + m["splits"]["test"]["tokens"]


def test_demo_rebuild_is_up_to_date(demo_build: Path) -> None:
    res = runner.invoke(app, ["build", str(DEMO), "--output", str(demo_build), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["status"] == "up_to_date"


def test_show_text_and_json(demo_build: Path) -> None:
    res = runner.invoke(app, ["show", str(demo_build), "--row", "0"])
    assert res.exit_code == 0, res.output
    assert "demo-qwen3" in res.output and "train" in res.output and "kto" in res.output
    js = runner.invoke(app, ["show", str(demo_build), "--row", "0", "--json"])
    data = json.loads(js.output)
    m = json.loads((demo_build / "manifest.json").read_text())
    assert data["splits"]["train"]["rows"] == m["splits"]["train"]["rows"]
    assert data["fingerprint"] == m["fingerprint"]
    row = data["row"]
    text = "".join(s["text"] for s in row["spans"])
    assert text.startswith("<|im_start|>user\n")
    trained = "".join(s["text"] for s in row["spans"] if s["trained"])
    assert trained.endswith("<|im_end|>")
    assert row["trained"] == sum(1 for w in row["weights"] if w > 0) > 0


def test_validate_ok_and_bad(tmp_path: Path) -> None:
    res = runner.invoke(app, ["validate", str(DEMO)])
    assert res.exit_code == 0, res.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: x\noutput: o\ntokenizer: t\nrenderer: nope\nsources: [{path: a.jsonl, format: weird}]\nextra: 1\n"
    )
    res = runner.invoke(app, ["validate", str(bad)])
    assert res.exit_code == 2
    assert "sources[0].format" in res.output and "extra: unknown key" in res.output


def test_build_bad_input_exit_2_names_line(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_text('{"messages": [{"role": "user", "content": "hi"}]}\n{oops\n')
    r = tmp_path / "r.yaml"
    r.write_text(
        f"name: x\noutput: out\ntokenizer: {ROOT / 'tests/fixtures/tokenizers/qwen3'}\n"
        "renderer: qwen3\nsources: [{path: d.jsonl}]\n"
    )
    res = runner.invoke(app, ["build", str(r), "--quiet"])
    assert res.exit_code == 2
    assert "d.jsonl" in res.output and "line 2" in res.output


def test_unknown_renderer_exit_2(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_text("")
    r = tmp_path / "r.yaml"
    r.write_text(
        f"name: x\noutput: out\ntokenizer: {ROOT / 'tests/fixtures/tokenizers/qwen3'}\n"
        "renderer: qwen9\nsources: [{path: d.jsonl}]\n"
    )
    res = runner.invoke(app, ["build", str(r), "--quiet"])
    assert res.exit_code == 2
    assert "qwen9" in res.output


def test_version_and_renderers() -> None:
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and "shardprep" in res.output
    res = runner.invoke(app, ["renderers", "--json"])
    names = {r["name"] for r in json.loads(res.output)}
    assert {
        "role_colon",
        "llama3",
        "qwen3",
        "qwen3_disable_thinking",
        "qwen3_instruct",
        "deepseekv3",
        "deepseekv3_thinking",
    } <= names
