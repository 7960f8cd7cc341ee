"""The Ray engine writes exactly what the local engine writes, survives a worker killed mid-unit,
and brings a worker's RowError back unchanged. One local Ray instance (2 CPUs) serves the module."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

ray = pytest.importorskip("ray")

from shardprep.build import units as units_mod  # noqa: E402
from shardprep.build.engines import ray_engine  # noqa: E402
from shardprep.build.run import build  # noqa: E402
from shardprep.cli.app import app  # noqa: E402
from shardprep.errors import RowError  # noqa: E402
from shardprep.recipe import load_recipe  # noqa: E402

ROOT = Path(__file__).parents[2]
TOY = ROOT / "tests/fixtures/tokenizers/toy"  # loads in milliseconds in every worker
ROWS = 240


@pytest.fixture(scope="module", autouse=True)
def ray_instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        # Loopback only, no auth token in ~/.ray, scratch under the test's temp folder.
        mp.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        mp.setenv("RAY_AUTH_MODE", "disabled")
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            _temp_dir=str(tmp_path_factory.mktemp("ray")),
            log_to_driver=False,
        )
        try:
            yield
        finally:
            ray.shutdown()


def write_project(tmp_path: Path, *, bad_line: int | None = None) -> Path:
    rows: list[str] = [
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": f"Question {i}: " + "why? " * (i % 13)},
                    {"role": "assistant", "content": f"Answer {i}."},
                ]
            }
        )
        for i in range(ROWS)
    ]
    if bad_line is not None:
        rows[bad_line - 1] = '{"messages": [oops'
    (tmp_path / "data.jsonl").write_text("".join(r + "\n" for r in rows))
    return tmp_path


def recipe_file(project: Path, output: str) -> Path:
    recipe = {
        "name": "ray",
        "output": output,
        "tokenizer": str(TOY),
        "renderer": "qwen3",
        "sources": [{"name": "chat", "path": "data.jsonl"}],
        "split": {"test_size": 20, "seed": 5},
        "work_unit_rows": 30,  # 8 units
        "batch_size": 8,
        "shards": {"max_rows": 10},  # several shards per unit: a unit can die half-written
        "workers": 2,
    }
    p = project / f"{output}.yaml"
    p.write_text(yaml.safe_dump(recipe))
    return p


def shard_hashes(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    return [(s["path"], s["sha256"]) for v in manifest["splits"].values() for s in v["shards"]]


def all_rows(out: Path, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        r
        for v in manifest["splits"].values()
        for s in v["shards"]
        for r in pq.read_table(out / s["path"]).to_pylist()
    ]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_project(tmp_path_factory.mktemp("project"))


@pytest.fixture(scope="module")
def local_manifest(project: Path) -> dict[str, Any]:
    return build(*load_recipe(recipe_file(project, "local")), workers=1).manifest


def test_ray_build_equals_local(project: Path, local_manifest: dict[str, Any]) -> None:
    res = build(*load_recipe(recipe_file(project, "viaray")), engine="ray")
    assert res.status == "built"
    m = res.manifest
    # The same input files, so the same fingerprint: engine and output path are not fingerprinted.
    assert m["fingerprint"] == local_manifest["fingerprint"]
    assert shard_hashes(m) == shard_hashes(local_manifest)
    assert m["stats"]["units"] == local_manifest["stats"]["units"] == 8
    assert {k: m["splits"][k]["rows"] for k in m["splits"]} == {
        k: local_manifest["splits"][k]["rows"] for k in local_manifest["splits"]
    }
    assert all_rows(project / "viaray", m) == all_rows(project / "local", local_manifest)
    # Rebuilding with the other engine finds it up to date.
    assert build(*load_recipe(recipe_file(project, "viaray"))).status == "up_to_date"


def killing_run(flag: str, victim: int) -> Callable[..., Any]:
    """A per-unit function that, the first time it runs unit `victim`, SIGKILLs its own worker
    right after placing the unit's first shard (so the unit is half written, without a marker).
    A closure with its imports inside: Ray pickles it by value into the workers."""
    original = units_mod.run_unit

    def run(ctx: Any, unit: Any) -> Any:
        import os
        import signal

        from shardprep.store.storage import Output

        if unit.index == victim and not os.path.exists(flag):
            open(flag, "w").close()  # noqa: SIM115 - the retry must see it, even after SIGKILL
            place = Output.place

            def place_then_die(self: Any, local_file: str, rel: str) -> None:
                place(self, local_file, rel)
                os.kill(os.getpid(), signal.SIGKILL)

            Output.place = place_then_die  # type: ignore[method-assign]
        return original(ctx, unit)

    return run


def test_worker_killed_mid_unit_is_retried_and_output_identical(
    project: Path, local_manifest: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flag = tmp_path / "killed-once"
    monkeypatch.setattr(ray_engine, "run_unit", killing_run(str(flag), victim=3))
    res = build(*load_recipe(recipe_file(project, "killed")), engine="ray")
    assert flag.exists(), "the fault was never injected"
    assert res.status == "built"
    assert res.manifest["fingerprint"] == local_manifest["fingerprint"]
    assert shard_hashes(res.manifest) == shard_hashes(local_manifest)
    assert all_rows(project / "killed", res.manifest) == all_rows(project / "local", local_manifest)
    assert not list((project / "killed").glob(".tmp-*"))  # the dead worker's scratch is gone


def test_row_error_from_a_worker_comes_back_unchanged(tmp_path: Path) -> None:
    project = write_project(tmp_path, bad_line=77)
    recipe = recipe_file(project, "bad")
    with pytest.raises(RowError) as local_err:
        build(*load_recipe(recipe), workers=1)
    with pytest.raises(RowError) as ray_err:
        build(*load_recipe(recipe), engine="ray")
    err = ray_err.value
    assert type(err) is RowError  # not Ray's wrapper
    assert err.reason == "malformed_json"
    assert err.file is not None and err.file.endswith("data.jsonl")
    assert err.line == local_err.value.line
    assert str(err) == str(local_err.value)
    assert not (project / "bad" / "manifest.json").exists()


def test_cli_engine_ray_exit_code_and_message(tmp_path: Path) -> None:
    project = write_project(tmp_path, bad_line=5)
    res = CliRunner().invoke(
        app, ["build", str(recipe_file(project, "out")), "--engine", "ray", "--quiet"]
    )
    assert res.exit_code == 2, res.output
    assert "data.jsonl" in res.output and "malformed_json" in res.output
    bad = CliRunner().invoke(app, ["build", str(recipe_file(project, "out")), "--address", "auto"])
    assert bad.exit_code != 0 and "--engine ray" in bad.output


def test_local_output_invisible_to_driver_is_refused(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a multi-node cluster with a local output path would do: shards land on another disk."""
    original = units_mod.run_unit

    def run_elsewhere(ctx: Any, unit: Any) -> Any:
        res = original(ctx, unit)
        for shards in res.shards.values():
            for s in shards:
                os.unlink(os.path.join(ctx.output_url, s["path"]))
        return res

    monkeypatch.setattr(ray_engine, "run_unit", run_elsewhere)
    from shardprep.errors import BuildError

    with pytest.raises(BuildError, match="object store"):
        build(*load_recipe(recipe_file(project, "elsewhere")), engine="ray")


def test_killed_driver_resumes_only_unfinished_units(tmp_path: Path) -> None:
    """A driver SIGKILLed mid-build (its tasks die with its Ray job); the next build redoes only the
    units without a marker and ends identical to an uninterrupted local build."""
    project = write_project(tmp_path)
    (project / "data.jsonl").write_text((project / "data.jsonl").read_text() * 4)  # 960 rows
    data = yaml.safe_load(recipe_file(project, "out").read_text())
    data["work_unit_rows"] = 16  # 60 units: the build is still running when it is killed
    recipe = project / "many.yaml"
    recipe.write_text(yaml.safe_dump(data))
    reference = build(*load_recipe(_with_output(recipe, "ref")), workers=1).manifest

    out = project / "out"
    driver = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from shardprep.cli.app import main; main()",
            "build",
            str(recipe),
            "--quiet",
            "--engine",
            "ray",
            "--address",
            ray.get_runtime_context().gcs_address,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while driver.poll() is None and time.monotonic() < deadline and markers(out) < 3:
        time.sleep(0.002)
    assert driver.poll() is None, "the build finished (or failed) before it could be killed"
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    assert not (out / "manifest.json").exists()
    time.sleep(0.5)  # let Ray reap the dead job's tasks, so the count below is final
    before = markers(out)
    assert 3 <= before < 60

    res = build(*load_recipe(recipe), engine="ray")
    assert res.resumed_units >= before  # every finished unit was kept, none redone
    assert res.manifest["stats"]["units"] == 60
    assert res.manifest["fingerprint"] == reference["fingerprint"]
    assert shard_hashes(res.manifest) == shard_hashes(reference)


def _with_output(recipe: Path, output: str) -> Path:
    data = yaml.safe_load(recipe.read_text())
    data["output"] = output
    p = recipe.with_name(f"{output}.yaml")
    p.write_text(yaml.safe_dump(data))
    return p


def markers(out: Path) -> int:
    return sum(1 for _ in out.glob("data-*/_units/*.json"))


def test_a_bug_in_a_worker_is_raised_as_itself(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(ctx: Any, unit: Any) -> Any:
        raise ValueError(f"bug in unit {unit.index}")

    monkeypatch.setattr(ray_engine, "run_unit", broken)
    with pytest.raises(ValueError, match="bug in unit"):
        build(*load_recipe(recipe_file(project, "buggy")), engine="ray")
