"""Item 1 (and the stale-folder part of item 7): a rebuild never touches what the current manifest
points to until its own manifest replaces it; "up to date" means the shards are there.

`prep build --force` is SIGKILLed at several points; after each, the previous build is whole
(verify passes, a reader opened before the rebuild reads every row), and the next build ends
with exactly the rows of an uninterrupted one and no stale shard folders."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from shardprep.build.run import build
from shardprep.recipe import load_recipe
from shardprep.store.ownership import OWNER_NAME
from shardprep.store.storage import SCRATCH_DIR
from shardprep.views.verify import verify_build

from ._project import jsonl_bytes, write_recipe

ROWS = 400


def _project(tmp_path: Path) -> Path:
    # The input by absolute path, so a copy of the recipe and output is up to date where it lands.
    (tmp_path / "rows.jsonl").write_bytes(jsonl_bytes(ROWS))
    return write_recipe(
        tmp_path,
        str(tmp_path / "rows.jsonl"),
        work_unit_rows=8,
        batch_size=4,
        split={"test_size": 20, "seed": 1},
    )


def _rows(out: Path) -> dict[str, list[list[int]]]:
    m = json.loads((out / "manifest.json").read_text())
    return {
        split: [
            r
            for s in info["shards"]
            for r in pq.read_table(out / s["path"]).column("input_ids").to_pylist()
        ]
        for split, info in m["splits"].items()
    }


def _data_dirs(out: Path) -> list[str]:
    return sorted(p.name for p in out.glob("data-*"))


def _start(recipe: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from shardprep.cli.app import main; main()",
            "build",
            str(recipe),
            "--quiet",
            *args,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _kill_when(
    proc: subprocess.Popen[bytes], cond: Callable[[], bool], timeout: float = 90
) -> bool:
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if cond():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.002)
    proc.wait()
    return False


def _new_markers(out: Path, old: str) -> int:
    return sum(1 for d in out.glob("data-*") if d.name != old for _ in d.glob("_units/*.json"))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[list[int]]]]:
    tmp = tmp_path_factory.mktemp("rebuild")
    recipe = _project(tmp)
    build(*load_recipe(recipe))
    return tmp, _rows(tmp / "out")


def _copy(built: tuple[Path, Any], tmp_path: Path) -> tuple[Path, Path]:
    src, _ = built
    (tmp_path / "p").mkdir()
    shutil.copy2(src / "faults.yaml", tmp_path / "p" / "faults.yaml")
    shutil.copytree(src / "out", tmp_path / "p" / "out")
    recipe, out = tmp_path / "p" / "faults.yaml", tmp_path / "p" / "out"
    assert build(*load_recipe(recipe)).status == "up_to_date"
    return recipe, out


KILL_POINTS: dict[str, Callable[[Path, str, float], bool]] = {
    "new_folder_created": lambda out, old, t0: len(_data_dirs(out)) > 1,
    "one_unit_done": lambda out, old, t0: _new_markers(out, old) >= 1,
    "half_the_units_done": lambda out, old, t0: _new_markers(out, old) >= 25,
    "manifest_replaced": lambda out, old, t0: (out / "manifest.json").stat().st_mtime > t0,
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_killed_forced_rebuild_keeps_the_current_build(
    built: Any, tmp_path: Path, point: str, faults
) -> None:
    recipe, out = _copy(built, tmp_path)
    expected = built[1]
    old = _data_dirs(out)[0]
    mtime = (out / "manifest.json").stat().st_mtime
    from shardprep.torch import ShardDataset  # a reader open across the rebuild

    reader = ShardDataset(str(out), cache_dir=str(tmp_path / "cache"))
    time.sleep(0.01)  # a later manifest gets a later mtime
    faults.kill_point()
    assert _kill_when(_start(recipe, "--force"), lambda: KILL_POINTS[point](out, old, mtime)), (
        "finished before the kill"
    )
    report = verify_build(str(out))
    assert report.ok, report.to_json()
    assert _rows(out) == expected
    if json.loads((out / "manifest.json").read_text())["data_dir"] == old:
        # Still the old manifest: the reader opened before the rebuild reads every row.
        assert [reader[i]["input_ids"].tolist() for i in range(len(reader))] == expected["train"]
    # The next plain build is up to date (or finishes the job) and leaves one shard folder.
    res = build(*load_recipe(recipe))
    assert res.status in ("up_to_date", "built")
    assert _rows(out) == expected and verify_build(str(out)).ok
    assert _data_dirs(out) == [json.loads((out / "manifest.json").read_text())["data_dir"]]
    faults.rows_lost(
        sum(len(v) for v in expected.values()) - sum(len(v) for v in _rows(out).values())
    )


def test_completed_forced_rebuild_swaps_then_removes_the_old_folder(
    built: Any, tmp_path: Path
) -> None:
    recipe, out = _copy(built, tmp_path)
    old = _data_dirs(out)
    res = build(*load_recipe(recipe), force=True)
    assert res.status == "built"
    assert _data_dirs(out) != old and len(_data_dirs(out)) == 1
    assert _rows(out) == built[1]


@pytest.mark.parametrize("damage", ["deleted", "truncated"])
def test_up_to_date_needs_the_shards(built: Any, tmp_path: Path, damage: str, faults) -> None:
    recipe, out = _copy(built, tmp_path)
    m = json.loads((out / "manifest.json").read_text())
    victim = out / m["splits"]["train"]["shards"][0]["path"]
    if damage == "deleted":
        victim.unlink()
    else:
        victim.write_bytes(victim.read_bytes()[:-10])
    faults.fault()
    res = build(*load_recipe(recipe))
    assert res.status == "built"
    assert verify_build(str(out)).ok
    assert _rows(out) == built[1]


def test_stale_folder_left_by_a_kill_after_the_manifest_is_cleaned(
    built: Any, tmp_path: Path, faults
) -> None:
    recipe, out = _copy(built, tmp_path)
    # What a kill between placing the new manifest and removing the old folder leaves behind:
    # the previous build's folder (with the owner record it was made with) and a temporary file.
    old = out / "data-0123456789ab"
    shutil.copytree(out / _data_dirs(out)[0], old)
    (old / OWNER_NAME).write_text(json.dumps({"made_by": "shardprep", "folder": old.name}))
    (out / SCRATCH_DIR / "0123-killed.parquet").write_bytes(b"half a shard")
    # Beside them, what no build made: never removed, whatever its name.
    (out / ".tmp-notes").write_text("mine")
    shutil.copytree(out / _data_dirs(out)[0], out / "data-fedcba987654")  # a user's copy
    faults.fault()
    res = build(*load_recipe(recipe))
    assert res.status == "up_to_date"
    assert _data_dirs(out) == sorted([res.manifest["data_dir"], "data-fedcba987654"])
    assert os.listdir(out / SCRATCH_DIR) == [OWNER_NAME]
    assert (out / ".tmp-notes").read_text() == "mine"
