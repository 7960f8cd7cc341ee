"""`prep verify` finds a flipped byte, a truncated shard and a missing one; `prep ls` lists builds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from shardprep.build.run import build
from shardprep.cli.app import app
from shardprep.recipe import load_recipe
from shardprep.views.catalog import list_builds
from shardprep.views.verify import verify_build

ROOT = Path(__file__).parents[2]
runner = CliRunner()


@pytest.fixture
def built(tmp_path: Path) -> tuple[Path, dict]:
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"q{i}"},
                {"role": "assistant", "content": f"a{i}"},
            ]
        }
        for i in range(40)
    ]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = {
        "name": "v",
        "output": "builds/v",
        "tokenizer": str(ROOT / "tests/fixtures/tokenizers/toy"),
        "renderer": "qwen3",
        "sources": [{"path": "d.jsonl"}],
        "work_unit_rows": 10,
        "shards": {"max_rows": 10},  # several shards (a build merges small unit shards)
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    res = build(*load_recipe(tmp_path / "r.yaml"))
    return tmp_path / "builds" / "v", res.manifest


def test_intact_build_verifies(built: tuple[Path, dict]) -> None:
    out, m = built
    report = verify_build(str(out))
    assert report.ok and len(report.shards) == 4
    res = runner.invoke(app, ["verify", str(out)])
    assert res.exit_code == 0 and "4 shards checked, 0 with problems" in res.output


def test_flipped_byte_is_altered(built: tuple[Path, dict]) -> None:
    out, m = built
    shard = out / m["splits"]["train"]["shards"][1]["path"]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    report = verify_build(str(out))
    bad = [s for s in report.shards if not s.ok]
    assert [s.path for s in bad] == [m["splits"]["train"]["shards"][1]["path"]]
    assert any(p.startswith("altered") for p in bad[0].problems)
    res = runner.invoke(app, ["verify", str(out), "--json"])
    assert res.exit_code == 1
    assert json.loads(res.output)["problems"][0]["path"].endswith(shard.name)


def test_truncated_and_missing(built: tuple[Path, dict]) -> None:
    out, m = built
    shards = m["splits"]["train"]["shards"]
    first = out / shards[0]["path"]
    first.write_bytes(first.read_bytes()[:100])
    (out / shards[2]["path"]).unlink()
    report = {s.path: s.problems for s in verify_build(str(out)).shards}
    assert any(p.startswith("truncated") for p in report[shards[0]["path"]])
    assert report[shards[2]["path"]] == ["missing"]
    assert report[shards[1]["path"]] == [] and report[shards[3]["path"]] == []


def test_ls_lists_builds(built: tuple[Path, dict]) -> None:
    out, m = built
    found = list_builds(str(out.parent.parent))
    assert len(found) == 1
    b = found[0]
    assert (b["path"], b["name"], b["fingerprint"]) == ("builds/v", "v", m["fingerprint"])
    assert b["rows"] == 40 and b["bytes"] > 0 and b["age_s"] >= 0
    res = runner.invoke(app, ["ls", str(out.parent.parent), "--json"])
    assert json.loads(res.output)[0]["fingerprint"] == m["fingerprint"]
