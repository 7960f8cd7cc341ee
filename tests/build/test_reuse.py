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


# `prep build` answers a no-op from the recipe file and file stats alone (build/reuse.py).


def _cli(project: Path, *args: str) -> dict[str, Any]:
    from typer.testing import CliRunner

    from shardprep.cli.app import app

    res = CliRunner().invoke(app, ["build", str(project / "recipe.yaml"), "--json", *args])
    assert res.exit_code == 0, res.output
    out: dict[str, Any] = json.loads(res.output.strip().splitlines()[-1])
    return out


@pytest.fixture
def from_file_only(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records each no-op `prep build` that had to read the recipe model (the full way)."""
    from shardprep.recipe import load_recipe as real

    calls: list[str] = []

    def counted(path: Any) -> Any:
        calls.append(str(path))
        return real(path)

    monkeypatch.setattr("shardprep.recipe.load_recipe", counted)
    return calls


def test_cli_no_op_is_answered_from_the_recipe_file(
    project: Path, from_file_only: list[str]
) -> None:
    recipe_at(project)
    assert _cli(project)["status"] == "built"
    probe = json.loads((project / "out" / "manifest.json").read_text())["quick_probe"]
    assert probe["recipe_file"] and probe["sources"] == [["chat", "data.jsonl"]]
    from_file_only.clear()
    assert _cli(project)["status"] == "up_to_date"
    assert from_file_only == []  # no recipe model, no tokenizer


def test_cli_recipe_edits_rebuild_and_comment_edits_do_not(
    project: Path, from_file_only: list[str]
) -> None:
    recipe_at(project)
    first = _cli(project)
    recipe = project / "recipe.yaml"
    recipe.write_text(recipe.read_text() + "# a comment\n")
    # Other bytes: the full way decides (same recipe: up to date) and records the new file ...
    assert _cli(project)["status"] == "up_to_date"
    from_file_only.clear()
    assert _cli(project)["status"] == "up_to_date"
    assert from_file_only == []  # ... so the next no-op is answered from it again
    recipe.write_text(recipe.read_text().replace("renderer: qwen3", "renderer: role_colon"))
    second = _cli(project)
    assert second["status"] == "built" and second["fingerprint"] != first["fingerprint"]


def test_cli_no_op_sees_a_new_file_a_glob_matches(project: Path) -> None:
    recipe_at(project, sources=[{"name": "chat", "path": "data*.jsonl"}])
    first = _cli(project)
    assert _cli(project)["status"] == "up_to_date"
    shutil.copy(project / "data.jsonl", project / "data2.jsonl")
    second = _cli(project)
    assert second["status"] == "built" and second["fingerprint"] != first["fingerprint"]


def test_cli_no_op_sees_a_changed_tokenizer_and_a_damaged_shard(project: Path) -> None:
    recipe_at(project)
    first = _cli(project)
    cfg = project / "tok" / "tokenizer_config.json"
    data = json.loads(cfg.read_text())
    data["bos_token"] = "<|im_start|>"
    cfg.write_text(json.dumps(data))
    assert _cli(project)["fingerprint"] != first["fingerprint"]
    manifest = json.loads((project / "out" / "manifest.json").read_text())
    shard = project / "out" / manifest["splits"]["train"]["shards"][0]["path"]
    shard.write_bytes(shard.read_bytes()[:-10])
    assert _cli(project)["status"] == "built"  # not "up to date" over a short shard


def test_cli_no_op_with_another_output_or_base_folder_goes_the_full_way(
    project: Path, tmp_path_factory: pytest.TempPathFactory, from_file_only: list[str]
) -> None:
    recipe_at(project)
    _cli(project)
    other = tmp_path_factory.mktemp("elsewhere") / "out"
    assert _cli(project, "--output", str(other))["status"] == "built"
    # The same bytes in another folder: its relative paths name other files.
    moved = tmp_path_factory.mktemp("moved")
    for name in ("recipe.yaml", "data.jsonl", "tok", "out"):
        src = project / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, moved / name)
    from_file_only.clear()
    _cli(moved)  # (the inputs' paths are part of their identity: it rebuilds)
    assert from_file_only == [str(moved / "recipe.yaml")]


@pytest.mark.parametrize("probe", [None, "x", {"recipe": 1}, {"sources": [[1, 2, 3]]}])
def test_a_malformed_quick_probe_means_the_full_way(
    project: Path, probe: Any, from_file_only: list[str]
) -> None:
    recipe_at(project)
    _cli(project)
    path = project / "out" / "manifest.json"
    manifest = json.loads(path.read_text())
    good = manifest["quick_probe"]
    manifest["quick_probe"] = probe if not isinstance(probe, dict) else {**good, **probe}
    path.write_text(json.dumps(manifest))
    from_file_only.clear()
    assert _cli(project)["status"] == "up_to_date"
    assert from_file_only  # decided the full way, never a crash


def test_an_edited_manifest_is_not_trusted_by_the_quick_answer(
    project: Path, from_file_only: list[str]
) -> None:
    """The quick key seals the manifest it is recorded in: an edit anywhere else in it sends the
    no-op the full way, which validates the manifest (and here reports the bad field)."""
    recipe_at(project)
    _cli(project)
    path = project / "out" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["splits"]["train"]["rows"] = "many"
    path.write_text(json.dumps(manifest))
    from_file_only.clear()
    from typer.testing import CliRunner

    from shardprep.cli.app import app

    res = CliRunner().invoke(app, ["build", str(project / "recipe.yaml")])
    assert res.exit_code == 2 and "splits.train.rows" in res.output, res.output
    assert from_file_only


def test_cli_no_op_sees_a_tokenizer_json_appear_beside_the_gz(
    project: Path, from_file_only: list[str]
) -> None:
    """A folder's tokenizer.json wins over its tokenizer.json.gz: one appearing is a change the
    quick answer must see (it stats every name the folder's resolution would pick)."""
    recipe_at(project)
    _cli(project)
    tok = project / "tok"
    (tok / "tokenizer.json").write_bytes(gzip.decompress((tok / "tokenizer.json.gz").read_bytes()))
    from_file_only.clear()
    _cli(project)
    assert from_file_only  # judged the full way
    from_file_only.clear()
    assert _cli(project)["status"] == "up_to_date"
    assert from_file_only == []  # and answered from the file again after that


def test_cli_no_op_with_a_hub_tokenizer_resolves_it_again(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Hub id's cache can point it at another snapshot between two runs: such a recipe is never
    answered from the recipe file alone."""
    import huggingface_hub.constants as hc

    hub = project / "hub" / "models--acme--toy"
    raw = gzip.decompress((project / "tok" / "tokenizer.json.gz").read_bytes())
    for snap, data in (("aaaa", raw), ("bbbb", json.dumps(json.loads(raw)).encode())):
        (hub / "snapshots" / snap).mkdir(parents=True)
        (hub / "snapshots" / snap / "tokenizer.json").write_bytes(data)
    (hub / "refs").mkdir()
    (hub / "refs" / "main").write_text("aaaa")
    monkeypatch.setenv("HF_HUB_CACHE", str(project / "hub"))
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(project / "hub"))
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    recipe_at(project, tokenizer="acme/toy")
    first = _cli(project)
    assert _cli(project)["status"] == "up_to_date"
    (hub / "refs" / "main").write_text("bbbb")
    second = _cli(project)
    assert second["status"] == "built" and second["fingerprint"] != first["fingerprint"]
