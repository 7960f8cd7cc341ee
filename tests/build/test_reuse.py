"""Fingerprint: every change that can alter a byte of output rebuilds; nothing else does."""

from __future__ import annotations

import gzip
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from shardprep.build.run import build, plan_build
from shardprep.recipe import load_recipe
from shardprep.store import manifest as manifest_mod

ROOT = Path(__file__).parents[2]
TOY = ROOT / "tests/fixtures/tokenizers/toy"  # small: loads in milliseconds


def chat(i: int) -> dict[str, Any]:
    return {
        "messages": [
            {"role": "user", "content": f"Add {i} and {i}."},
            {"role": "assistant", "content": str(2 * i)},
        ]
    }


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(chat(i)) + "\n" for i in range(30)))
    tok = tmp_path / "tok"
    tok.mkdir()
    shutil.copy(TOY / "tokenizer.json.gz", tok / "tokenizer.json.gz")
    shutil.copy(TOY / "tokenizer_config.json", tok / "tokenizer_config.json")
    return tmp_path


def recipe_at(project: Path, **overrides: Any) -> tuple[Any, Path]:
    data: dict[str, Any] = {
        "name": "t",
        "output": "out",
        "tokenizer": "tok",
        "renderer": "qwen3",
        "sources": [{"name": "chat", "path": "data.jsonl"}],
        "workers": 1,
        **overrides,
    }
    p = project / "recipe.yaml"
    p.write_text(yaml.safe_dump(data))
    return load_recipe(p)


def fp(project: Path, **overrides: Any) -> str:
    return plan_build(*recipe_at(project, **overrides)).fingerprint


def test_unchanged_rebuild_is_a_noop(project: Path) -> None:
    first = build(*recipe_at(project))
    shard = project / "out" / first.manifest["splits"]["train"]["shards"][0]["path"]
    before = shard.stat().st_mtime_ns
    second = build(*recipe_at(project))
    assert second.status == "up_to_date"
    assert shard.stat().st_mtime_ns == before


@pytest.mark.parametrize(
    "overrides",
    [
        {"renderer": "qwen3_instruct"},  # template
        {"train_on": "last_assistant_message"},  # mask policy
        {"max_length": 64},
        {"overlong": "drop"},
        {"weight_reduction": "mean"},
        {"split": {"test_size": 3}},
        {"split": {"test_size": 3, "seed": 9}},
        {"shards": {"max_rows": 10}},
        {"work_unit_rows": 7},
        {
            "sources": [
                {
                    "name": "chat",
                    "path": "data.jsonl",
                    "format": "messages",
                    "columns": {"messages": "messages"},
                }
            ]
        },
        {"sources": [{"name": "other", "path": "data.jsonl"}]},
        {"on_error": "skip"},
    ],
    ids=lambda o: ",".join(o),
)
def test_output_relevant_change_changes_fingerprint(
    project: Path, overrides: dict[str, Any]
) -> None:
    assert fp(project, **overrides) != fp(project)


def test_tokenizer_bytes_change_fingerprint(project: Path) -> None:
    before = fp(project)
    path = project / "tok" / "tokenizer.json.gz"
    data = json.loads(gzip.decompress(path.read_bytes()))
    data["truncation"] = {
        "direction": "Right",
        "max_length": 100000,
        "strategy": "LongestFirst",
        "stride": 0,
    }
    path.write_bytes(gzip.compress(json.dumps(data).encode()))
    assert fp(project) != before


def test_source_content_change_fingerprint(project: Path) -> None:
    before = fp(project)
    path = project / "data.jsonl"
    text = path.read_text()
    path.write_text(text.replace("Add 3", "Add 4"))  # same size, new mtime
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert fp(project) != before
    # a rebuild actually happens and replaces the old build
    first = build(*recipe_at(project))
    path.write_text(text)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 2 * 10**9))
    second = build(*recipe_at(project))
    assert (
        second.status == "built" and second.manifest["fingerprint"] != first.manifest["fingerprint"]
    )


def test_format_version_changes_fingerprint(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = fp(project)
    monkeypatch.setattr(manifest_mod, "FORMAT_VERSION", manifest_mod.FORMAT_VERSION + 1)
    assert fp(project) != before


@pytest.mark.parametrize(
    "overrides",
    [
        {"output": "elsewhere/out"},
        {"workers": 2},
        {"workers": "auto"},
        {"batch_size": 7},
        {"name": "renamed"},
        {"skipped_sample": 3},
    ],
    ids=lambda o: ",".join(o),
)
def test_irrelevant_change_keeps_fingerprint(project: Path, overrides: dict[str, Any]) -> None:
    assert fp(project, **overrides) == fp(project)


def test_workers_and_batch_size_do_not_change_rows(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shardprep.build import run as build_mod

    monkeypatch.setattr(build_mod, "_MIN_ROWS_FOR_POOL", 0)  # use the process pool even for 30 rows
    a = build(*recipe_at(project, output="a", work_unit_rows=4))
    b = build(*recipe_at(project, output="b", work_unit_rows=4, batch_size=3), workers=2)
    assert a.manifest["fingerprint"] == b.manifest["fingerprint"]
    sa = [(s["path"], s["sha256"]) for s in a.manifest["splits"]["train"]["shards"]]
    sb = [(s["path"], s["sha256"]) for s in b.manifest["splits"]["train"]["shards"]]
    assert sa == sb  # byte-identical shards


def test_force_rebuilds(project: Path) -> None:
    build(*recipe_at(project))
    assert build(*recipe_at(project), force=True).status == "built"


def test_up_to_date_check_does_not_parse_the_tokenizer(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shardprep.build import checks as build_mod  # preflight is where a build loads it

    first = build(*recipe_at(project))
    assert first.manifest["quick_key"]

    def no_load(*a: Any, **k: Any) -> None:
        raise AssertionError("the tokenizer was loaded on the up-to-date path")

    monkeypatch.setattr(build_mod, "load_tokenizer", no_load)
    assert build(*recipe_at(project)).status == "up_to_date"


def test_touched_but_unchanged_tokenizer_is_still_up_to_date(project: Path) -> None:
    first = build(*recipe_at(project))
    tok = project / "tok" / "tokenizer.json.gz"
    os.utime(tok, ns=(tok.stat().st_atime_ns, tok.stat().st_mtime_ns + 10**9))
    second = build(*recipe_at(project))  # quick key differs; the full fingerprint decides
    assert (
        second.status == "up_to_date"
        and second.manifest["fingerprint"] == first.manifest["fingerprint"]
    )


def test_tokenizer_config_change_changes_fingerprint(project: Path) -> None:
    before = fp(project)
    cfg = project / "tok" / "tokenizer_config.json"
    data = json.loads(cfg.read_text())
    data["bos_token"] = "<|im_start|>"
    cfg.write_text(json.dumps(data))
    assert fp(project) != before


def test_a_setting_outside_the_fingerprint_costs_one_slow_check_then_none(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shardprep.build import checks as build_mod

    first = build(*recipe_at(project))
    # workers is not in the fingerprint: up to date, found by the full check (tokenizer parsed),
    # which records the new quick key ...
    second = build(*recipe_at(project, workers=2, conformance_rows=7))
    assert second.status == "up_to_date"
    assert second.manifest["fingerprint"] == first.manifest["fingerprint"]
    shard = project / "out" / first.manifest["splits"]["train"]["shards"][0]["path"]
    before = shard.stat().st_mtime_ns

    def no_load(*a: Any, **k: Any) -> None:
        raise AssertionError("the tokenizer was loaded on the up-to-date path")

    # ... so the next run answers from file stats alone, and no shard was touched.
    monkeypatch.setattr(build_mod, "load_tokenizer", no_load)
    assert build(*recipe_at(project, workers=2, conformance_rows=7)).status == "up_to_date"
    assert shard.stat().st_mtime_ns == before
