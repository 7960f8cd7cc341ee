"""Issue 23 items 1, 2, 4 and 7: a build removes only what it provably made, a manifest cannot widen
what it removes, an input changed under a build fails it, and the advice after damage works.

Each test injects what an operator met with ordinary folder layouts and hostile files: an output
that is the source folder (Hub-named inputs, an HF `save_to_disk` file, notes), a manifest whose
`data_dir` disagrees with its shards, an input rewritten or truncated while it is read, a
truncated manifest, unit shards left by a kill, a glob over the output's own shards."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from shardprep.build import units as units_mod
from shardprep.build.run import build
from shardprep.recipe import load_recipe
from shardprep.views.verify import verify_build

from ._project import jsonl_bytes, prep, write_recipe

USER_FILES = {
    "data-00000-of-00002.jsonl": None,  # the Hub's own naming of an input file
    "data-00000-of-00001.arrow": b"ARROW1\x00\x00not really",  # HF save_to_disk
    ".tmp-notes.txt": b"my notes\n",
}


def _user_files(folder: Path) -> dict[str, bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    made = {}
    for name, body in USER_FILES.items():
        data = body if body is not None else jsonl_bytes(40)
        (folder / name).write_bytes(data)
        made[name] = data
    return made


def _intact(folder: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        assert (folder / name).read_bytes() == data, f"{name} was changed or removed"


def test_output_equal_to_the_source_folder_is_refused(tmp_path: Path, faults) -> None:
    files = _user_files(tmp_path / "ds")
    recipe = write_recipe(tmp_path, "ds/data-00000-of-00002.jsonl", output="ds")
    faults.fault()
    code, out = prep("build", str(recipe), "--quiet")
    assert code == 2, out
    assert "not a shardprep build" in out and "data-00000-of-00002.jsonl" in out, out
    _intact(tmp_path / "ds", files)
    assert sorted(os.listdir(tmp_path / "ds")) == sorted(files)  # nothing written there either
    code, out = prep("validate", str(recipe))  # the same check, worded once, before a build
    assert code == 2 and "not a shardprep build" in out and ".tmp-notes.txt" in out, out


def test_dash_o_at_a_folder_of_other_files_is_refused(tmp_path: Path, faults) -> None:
    (tmp_path / "data.jsonl").write_bytes(jsonl_bytes(30))
    files = _user_files(tmp_path / "existing")
    recipe = write_recipe(tmp_path, "data.jsonl")
    faults.fault()
    code, out = prep("build", str(recipe), "--quiet", "-o", str(tmp_path / "existing"))
    assert code == 2, out
    assert ".tmp-notes.txt" in out or "data-00000-of-00001.arrow" in out, out
    _intact(tmp_path / "existing", files)
    # An empty folder is fine.
    (tmp_path / "empty").mkdir()
    code, out = prep("build", str(recipe), "--quiet", "-o", str(tmp_path / "empty"))
    assert code == 0, out


def test_rebuild_keeps_user_files_dropped_into_a_build(tmp_path: Path, faults) -> None:
    """A build folder that later gets the user's files beside it: a rebuild (a new fingerprint:
    the previous data folder is swept) and a --force rebuild remove only their own folders."""
    (tmp_path / "data.jsonl").write_bytes(jsonl_bytes(60))
    recipe = write_recipe(tmp_path, "data.jsonl", max_length=64)
    assert prep("build", str(recipe), "--quiet")[0] == 0
    out = tmp_path / "out"
    files = _user_files(out)
    os.mkdir(out / "data-0123456789ab")  # a folder with a build's name pattern, not a build's
    (out / "data-0123456789ab" / "mine.txt").write_text("keep me")
    faults.fault(2)
    recipe = write_recipe(tmp_path, "data.jsonl", max_length=48)  # another fingerprint
    code, text = prep("build", str(recipe), "--quiet")
    assert code == 0, text
    code, text = prep("build", str(recipe), "--quiet", "--force")
    assert code == 0, text
    _intact(out, files)
    assert (out / "data-0123456789ab" / "mine.txt").read_text() == "keep me"
    manifest = json.loads((out / "manifest.json").read_text())
    data_dirs = [
        n
        for n in os.listdir(out)
        if n.startswith("data-") and (out / n / ".shardprep-owner").exists()
    ]
    assert data_dirs == [manifest["data_dir"]]  # the earlier builds' own folders are gone
    assert verify_build(str(out)).ok


def _built(tmp_path: Path, rows: int = 80, **overrides: Any) -> tuple[Path, Path, dict[str, Any]]:
    (tmp_path / "data.jsonl").write_bytes(jsonl_bytes(rows))
    recipe = write_recipe(tmp_path, "data.jsonl", **overrides)
    code, text = prep("build", str(recipe), "--quiet")
    assert code == 0, text
    out = tmp_path / "out"
    return recipe, out, json.loads((out / "manifest.json").read_text())


@pytest.mark.parametrize("data_dir", ["data-ffffffffffff", "../x", "/tmp/elsewhere", "data-x/.."])
def test_a_manifest_data_dir_that_disagrees_with_its_shards(
    tmp_path: Path, data_dir: str, faults
) -> None:
    recipe, out, manifest = _built(tmp_path)
    real = manifest["data_dir"]
    before = {p.name: p.read_bytes() for p in (out / real).glob("*.parquet")}
    manifest["data_dir"] = data_dir
    (out / "manifest.json").write_text(json.dumps(manifest))
    faults.fault()
    code, text = prep("verify", str(out))  # verify fails
    assert code != 0 and "data_dir" in text, text
    code, text = prep("build", str(recipe), "--quiet")
    assert code == 2, text
    assert "--force" in text, text
    # Nothing the manifest says removed the folder holding every listed shard.
    assert {p.name: p.read_bytes() for p in (out / real).glob("*.parquet")} == before
    code, text = prep("build", str(recipe), "--quiet", "--force")
    assert code == 0, text
    assert verify_build(str(out)).ok


def test_truncated_manifest_is_recovered_by_force(tmp_path: Path, faults) -> None:
    recipe, out, manifest = _built(tmp_path)
    text = (out / "manifest.json").read_text()
    (out / "manifest.json").write_text(text[: len(text) // 2])
    faults.fault()
    code, msg = prep("build", str(recipe), "--quiet")
    assert code == 2 and "--force" in msg, msg
    code, msg = prep("build", str(recipe), "--quiet", "--force")
    assert code == 0, msg
    assert verify_build(str(out)).ok
    again = json.loads((out / "manifest.json").read_text())
    assert again["splits"]["train"]["rows"] == manifest["splits"]["train"]["rows"]


def test_corrupted_shard_of_the_same_size_advises_force(tmp_path: Path, faults) -> None:
    recipe, out, manifest = _built(tmp_path)
    shard = out / manifest["splits"]["train"]["shards"][0]["path"]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    faults.fault()
    code, text = prep("show", str(out), "--row", "0")
    assert code == 2, text
    assert "--force" in text, text
    code, text = prep("build", str(recipe), "--quiet")  # sizes only: it cannot see this damage
    assert code == 0, text
    try:
        from shardprep.errors import ManifestError
        from shardprep.torch import ShardDataset
    except ImportError:  # the reader's extra is not installed
        pass
    else:
        with pytest.raises(ManifestError, match=r"sha256 differs.*--force"):
            ShardDataset(str(out), cache_dir=str(tmp_path / "cache"))[0]
    code, text = prep("build", str(recipe), "--quiet", "--force")
    assert code == 0, text
    assert verify_build(str(out)).ok


def test_unit_shards_left_by_a_kill_after_the_manifest_are_removed(tmp_path: Path, faults) -> None:
    """A kill between placing the manifest and removing the merged unit shards: the next
    (up-to-date) build removes them; the shards the manifest lists stay."""
    recipe, out, manifest = _built(tmp_path)
    data = out / manifest["data_dir"]
    listed = {Path(s["path"]).name for s in manifest["splits"]["train"]["shards"]}
    some = data / sorted(listed)[0]
    for name in ("train-000000-0000.arrow", "train-000001-0000.arrow"):
        shutil.copy(some, data / name)
    faults.kill_point()
    code, text = prep("build", str(recipe), "--quiet")
    assert code == 0 and "up to date" in text.lower() or code == 0, text
    left = {p.name for p in data.iterdir() if p.is_file()} - {".shardprep-owner"}
    assert left == listed | ({"skipped.jsonl"} & left)
    assert verify_build(str(out)).ok


def test_a_glob_over_the_outputs_own_shards_is_refused(tmp_path: Path, faults) -> None:
    recipe, out, manifest = _built(tmp_path)
    overlap = write_recipe(
        tmp_path,
        "unused",
        name="overlap",
        sources=[{"name": "own", "path": "out/**/*.parquet", "format": "messages"}],
    )
    faults.bad_input()
    code, text = prep("build", str(overlap), "--quiet")
    assert code == 2, text
    assert "inside the output" in text, text
    assert verify_build(str(out)).ok


def _change_after_first_unit(monkeypatch: pytest.MonkeyPatch, change) -> None:
    real = units_mod.run_unit
    calls = {"n": 0}

    def run_unit(ctx, unit):  # type: ignore[no-untyped-def]
        res = real(ctx, unit)
        calls["n"] += 1
        if calls["n"] == 1:
            change()
        return res

    monkeypatch.setattr(units_mod, "run_unit", run_unit)


@pytest.mark.parametrize("how", ["rewritten_same_size", "truncated", "replaced_shorter"])
def test_an_input_changed_during_the_build_fails_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str, faults
) -> None:
    path = tmp_path / "data.jsonl"
    original = jsonl_bytes(1200)
    path.write_bytes(original)
    recipe = write_recipe(tmp_path, "data.jsonl", work_unit_rows=200)

    def change() -> None:
        st = path.stat()
        if how == "rewritten_same_size":
            path.write_bytes(original.replace(b"Answer", b"Reply!"))  # same length, new rows
            assert path.stat().st_size == st.st_size
        elif how == "truncated":
            with open(path, "r+b") as f:
                f.truncate(len(original) // 2)
        else:
            tmp = tmp_path / "new.jsonl"
            tmp.write_bytes(jsonl_bytes(600))
            os.replace(tmp, path)
        os.utime(path, (st.st_atime, st.st_mtime + 5))  # what a later write's clock gives

    _change_after_first_unit(monkeypatch, change)
    faults.fault()
    from shardprep.errors import BuildError

    with pytest.raises(BuildError, match=r"data\.jsonl.*changed while the build read it"):
        build(*load_recipe(recipe), workers=1)
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_a_reader_opened_before_a_forced_rebuild_says_it_was_replaced(
    tmp_path: Path, faults
) -> None:
    pytest.importorskip("torch")
    from shardprep.errors import ManifestError
    from shardprep.torch import ShardDataset

    recipe, out, manifest = _built(tmp_path)
    reader = ShardDataset(str(out), cache_dir=str(tmp_path / "cache"))  # nothing decoded yet
    code, text = prep("build", str(recipe), "--quiet", "--force")  # the old shards are removed
    assert code == 0, text
    faults.fault()
    with pytest.raises(ManifestError, match=r"was replaced since this reader opened it.*open it"):
        reader[0]
    again = ShardDataset(str(out), cache_dir=str(tmp_path / "cache"))
    assert len(again) == manifest["splits"]["train"]["rows"]
    assert again[0]["input_ids"].tolist()  # the rebuilt build reads
