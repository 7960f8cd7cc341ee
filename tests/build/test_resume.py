"""A build killed with SIGKILL at several points resumes and ends identical to an uninterrupted one."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml

from shardprep.build.lock import build_lock
from shardprep.build.run import build
from shardprep.errors import BuildError
from shardprep.recipe import load_recipe
from shardprep.store.storage import Output

ROOT = Path(__file__).parents[2]
TOY = ROOT / "tests/fixtures/tokenizers/toy"
ROWS = 400


def write_project(tmp_path: Path, output: str) -> Path:
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"Question {i}: " + "why? " * (i % 17)},
                {"role": "assistant", "content": f"Answer {i}."},
            ]
        }
        for i in range(ROWS)
    ]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = {
        "name": "resume",
        "output": output,
        "tokenizer": str(TOY),
        "renderer": "qwen3",
        "sources": [{"name": "chat", "path": "data.jsonl"}],
        "split": {"test_size": 25, "seed": 3},
        "work_unit_rows": 8,
        "batch_size": 4,
        "workers": 1,
    }
    p = tmp_path / f"{output}.yaml"
    p.write_text(yaml.safe_dump(recipe))
    return p


def markers(out: Path) -> int:
    return sum(1 for _ in out.glob("data-*/_units/*.json"))


def start_build(recipe: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from shardprep.cli.app import main; main()",
            "build",
            str(recipe),
            "--quiet",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def kill_when(proc: subprocess.Popen[bytes], cond: Any, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if cond():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.002)
    proc.wait()
    return False


def all_rows(out: Path, manifest: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    return {
        split: [r for s in info["shards"] for r in pq.read_table(out / s["path"]).to_pylist()]
        for split, info in manifest["splits"].items()
    }


@pytest.fixture(scope="module")
def reference(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    tmp = tmp_path_factory.mktemp("ref")
    res = build(*load_recipe(write_project(tmp, "out")))
    return res.manifest, all_rows(tmp / "out", res.manifest)


@pytest.mark.parametrize("kill_after_units", [0, 1, 7, 30])
def test_kill_and_resume_equals_uninterrupted(
    tmp_path: Path, reference: Any, kill_after_units: int
) -> None:
    ref_manifest, ref_rows = reference
    recipe = write_project(tmp_path, "out")
    out = tmp_path / "out"
    if kill_after_units == 0:
        # killed as soon as the lock file appears: before or while the first unit runs
        killed = kill_when(start_build(recipe), lambda: (out / ".lock").exists())
    else:
        killed = kill_when(start_build(recipe), lambda: markers(out) >= kill_after_units)
    assert killed, "the build finished before it could be killed"
    assert not (out / "manifest.json").exists()  # a killed build is never taken as complete
    done_before = markers(out)
    res = build(*load_recipe(recipe))
    assert res.status == "built"
    assert res.resumed_units == done_before
    assert all_rows(out, res.manifest) == ref_rows

    # byte-identical shards under the same names (the data folder is named by the fingerprint,
    # which differs from the reference's because the input file lives elsewhere)
    def strip(m: dict) -> list:
        return [
            (s["path"].split("/")[-1], s["sha256"])
            for v in m["splits"].values()
            for s in v["shards"]
        ]

    assert strip(res.manifest) == strip(ref_manifest)
    assert not list(out.glob(".tmp-*"))


def test_kill_during_a_unit_leaves_no_partial_shard_taken(tmp_path: Path, reference: Any) -> None:
    """Kill at arbitrary moments (timing-based); each resume must still end identical."""
    _, ref_rows = reference
    recipe = write_project(tmp_path, "out")
    out = tmp_path / "out"
    for delay_markers in (3, 11):
        kill_when(start_build(recipe), lambda n=delay_markers: markers(out) >= n)
    res = build(*load_recipe(recipe))
    assert all_rows(out, res.manifest) == ref_rows


def test_second_build_of_same_output_fails_clearly(tmp_path: Path) -> None:
    recipe, base = load_recipe(write_project(tmp_path, "out"))
    with (
        build_lock(Output(str(tmp_path / "out"))),
        pytest.raises(BuildError, match="another build is writing"),
    ):
        build(recipe, base)


def test_second_build_waits_when_asked(tmp_path: Path) -> None:
    recipe = write_project(tmp_path, "out")
    proc = start_build(recipe)
    deadline = time.monotonic() + 60
    while markers(tmp_path / "out") < 1 and time.monotonic() < deadline:  # it holds the lock now
        time.sleep(0.002)
    try:
        res = build(*load_recipe(recipe), lock_wait_s=120)
    finally:
        proc.wait(timeout=120)
    assert res.status == "up_to_date"  # it waited, then found the other build complete
    assert proc.returncode == 0
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert m["fingerprint"] == res.manifest["fingerprint"]
