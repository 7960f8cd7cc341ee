"""Item 5: object-store outputs under faults, against moto's S3 server on loopback.

Builds started together race for one output (the lock must be exclusive: conditional create),
and the server is restarted empty in the middle of a build (no manifest may list a shard the store
lost; the rerun rebuilds and then is up to date)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import pytest

from shardprep.build.lock import LOCK_NAME, build_lock
from shardprep.build.run import build
from shardprep.errors import BuildError
from shardprep.recipe import load_recipe
from shardprep.store.integrity import shard_problems
from shardprep.store.storage import Output

from ._project import jsonl_bytes, write_recipe

pytestmark = pytest.mark.s3
BUCKET = "faults"


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, Any]]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    opts = {"key": "testing", "secret": "testing", "endpoint_url": f"http://{host}:{port}"}
    fs = fsspec.filesystem("s3", **opts)
    fs.mkdir(BUCKET)
    yield {"fs": fs, "opts": opts, "endpoint": opts["endpoint_url"]}
    server.stop()


# A racer: imports once, says READY, then for each "URL START" line on stdin tries the lock at
# START (wall clock) and answers "HELD <acquired> <released>" or REFUSED. Every racer gets the same
# lines at once; a racer that is late may legitimately get the lock after the first released it,
# so exclusivity is judged by the holding intervals: they must never overlap.
RACER = """
import json, sys, time
from shardprep.build.lock import build_lock
from shardprep.errors import BuildError
from shardprep.store.storage import Output
opts = json.loads(sys.argv[1])
Output("s3://" + sys.argv[2], storage_options=opts).fs.ls(sys.argv[2])  # connected before racing
print("READY", flush=True)
for line in sys.stdin:
    url, start = line.split()
    out = Output(url, storage_options=opts)
    time.sleep(max(0.0, float(start) - time.time()))
    try:
        with build_lock(out, wait_s=0):
            acquired = time.time()
            time.sleep(0.8)
            released = time.time()
        print("HELD", acquired, released, flush=True)
    except BuildError:
        print("REFUSED", flush=True)
"""
RACERS, ROUNDS = 4, 4


def test_lock_is_exclusive_under_a_real_race(s3: dict[str, Any], faults) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, json.dumps(s3["opts"]), BUCKET],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(RACERS)
    ]
    try:
        assert all(p.stdout is not None and p.stdout.readline().strip() == "READY" for p in procs)
        for _ in range(ROUNDS):
            url = f"s3://{BUCKET}/race-{uuid.uuid4().hex[:8]}"
            start = time.time() + 0.3
            for p in procs:
                assert p.stdin is not None
                p.stdin.write(f"{url} {start}\n")
                p.stdin.flush()
            answers = [p.stdout.readline().split() for p in procs if p.stdout is not None]
            faults.fault(RACERS)
            held = sorted((float(a[1]), float(a[2])) for a in answers if a[0] == "HELD")
            assert held and all(a[0] in ("HELD", "REFUSED") for a in answers), answers
            # Holding intervals never overlap: one holder at a time.
            assert all(prev[1] <= nxt[0] for prev, nxt in zip(held, held[1:], strict=False)), held
            assert not Output(url, storage_options=s3["opts"]).exists(LOCK_NAME)  # released
    finally:
        for p in procs:
            if p.stdin is not None:
                p.stdin.close()
            p.wait(timeout=30)


def test_lock_released_by_its_holder_only(s3: dict[str, Any]) -> None:
    out = Output(f"s3://{BUCKET}/own-{uuid.uuid4().hex[:8]}", storage_options=s3["opts"])
    with build_lock(out):
        # Someone else's lock now (taken over as stale): our release must leave it alone.
        out.fs.pipe_file(
            out.path(LOCK_NAME),
            json.dumps({"host": "other", "pid": 1, "heartbeat": time.time()}).encode(),
        )
    assert json.loads(out.read_text(LOCK_NAME))["host"] == "other"


def test_stale_lock_is_taken_over(s3: dict[str, Any]) -> None:
    out = Output(f"s3://{BUCKET}/stale-{uuid.uuid4().hex[:8]}", storage_options=s3["opts"])
    out.fs.pipe_file(
        out.path(LOCK_NAME),
        json.dumps({"host": "gone", "pid": 1, "heartbeat": time.time() - 999}).encode(),
    )
    with build_lock(out, stale_after=60):
        assert json.loads(out.read_text(LOCK_NAME))["pid"] == os.getpid()
    with pytest.raises(BuildError, match="another build"):
        out.fs.pipe_file(
            out.path(LOCK_NAME),
            json.dumps({"host": "alive", "pid": 1, "heartbeat": time.time()}).encode(),
        )
        with build_lock(out, stale_after=60):
            pass


def _recipe(tmp_path: Path, s3: dict[str, Any], prefix: str) -> Path:
    (tmp_path / "rows.jsonl").write_bytes(jsonl_bytes(400))
    return write_recipe(
        tmp_path,
        "rows.jsonl",
        output=f"s3://{BUCKET}/{prefix}",
        output_storage_options=s3["opts"],
        work_unit_rows=8,
        batch_size=8,
    )


def test_two_builds_started_together_one_builds(s3: dict[str, Any], tmp_path: Path, faults) -> None:
    recipe = _recipe(tmp_path, s3, f"both-{uuid.uuid4().hex[:8]}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [
        sys.executable,
        "-c",
        "from shardprep.cli.app import main; main()",
        "build",
        str(recipe),
        "--json",
    ]
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(2)
    ]
    results = [p.communicate(timeout=180) for p in procs]
    faults.fault()
    codes = sorted(p.returncode for p in procs)
    built = [json.loads(o)["status"] for o, _ in results if o.strip()]
    # One builds; the other is refused (exit 2) or, if it came after, finds the build up to date.
    assert built.count("built") == 1, results
    assert codes in ([0, 2], [0, 0]), results


def test_server_restarted_empty_mid_build(s3: dict[str, Any], tmp_path: Path, faults) -> None:
    prefix = f"restart-{uuid.uuid4().hex[:8]}"
    recipe, base = load_recipe(_recipe(tmp_path, s3, prefix))
    recipe = recipe.model_copy(update={"output_storage_options": s3["opts"]})
    fs = s3["fs"]
    error: list[BaseException] = []

    def run() -> None:
        try:
            build(recipe, base)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            error.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and worker.is_alive():
        fs.invalidate_cache()
        if len(fs.glob(f"{BUCKET}/{prefix}/data-*/_units/*.json")) >= 5:
            break
        time.sleep(0.05)
    urllib.request.urlopen(
        urllib.request.Request(f"{s3['endpoint']}/moto-api/reset", method="POST")
    ).read()
    fs.invalidate_cache()
    fs.mkdir(BUCKET)  # the server is back, empty
    faults.fault()
    worker.join(timeout=180)
    out = Output(f"s3://{BUCKET}/{prefix}", storage_options=s3["opts"])
    if error:
        # Stopped with the cause named: a write into the vanished bucket, or the check that every
        # shard the manifest would list is there.
        assert isinstance(error[0], BuildError), error
        assert "store lost them" in str(error[0]) or "bucket does not exist" in str(error[0]), error
        assert not out.exists("manifest.json")
    else:
        # Every unit shard the store lost had been merged already (compaction runs while units
        # do), and the bucket was back before the next write: a whole build, or none at all.
        manifest = json.loads(out.read_text("manifest.json"))
        assert not shard_problems(out, manifest)
        assert manifest["stats"]["rows_read"] == 400
    # The rerun redoes what was lost; then the build is whole and up to date.
    res = build(recipe, base)
    assert res.status == ("built" if error else "up_to_date")
    assert res.manifest["stats"]["rows_read"] == 400
    assert build(recipe, base).status == "up_to_date"
    faults.rows_lost(400 - res.manifest["stats"]["rows_read"])


@pytest.mark.parametrize("merged", ["at_commit", "while_units_run"])
def test_store_emptied_between_units_then_written_again(
    s3: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, merged: str, faults
) -> None:
    # The race above, made certain: the store restarts empty after the third unit and the build
    # goes on writing into a data folder whose owner record is gone. Merged at commit, the first
    # units' shards are gone: it fails naming the loss, and the rerun must take the folder over
    # (the failing build wrote its record again), not refuse it as files that are not a build's.
    # Merged while units run, they were read before the restart: the build is whole.
    from shardprep.build import compact
    from shardprep.build import units as units_mod

    if merged == "at_commit":
        monkeypatch.setattr(compact.Streaming, "offer", lambda self, results: None)
    prefix = f"emptied-{uuid.uuid4().hex[:8]}"
    recipe, base = load_recipe(_recipe(tmp_path, s3, prefix))
    real, calls = units_mod.run_unit, {"n": 0}

    def run_unit(ctx, unit):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 4:
            urllib.request.urlopen(
                urllib.request.Request(f"{s3['endpoint']}/moto-api/reset", method="POST")
            ).read()
            s3["fs"].invalidate_cache()
            s3["fs"].mkdir(BUCKET)
        return real(ctx, unit)

    monkeypatch.setattr(units_mod, "run_unit", run_unit)
    faults.fault()
    if merged == "at_commit":
        with pytest.raises(BuildError, match="store lost them"):
            build(recipe, base)
    else:
        first = build(recipe, base)
        assert first.manifest["stats"]["rows_read"] == 400
        out = Output(f"s3://{BUCKET}/{prefix}", storage_options=s3["opts"])
        assert not shard_problems(out, first.manifest)
    monkeypatch.setattr(units_mod, "run_unit", real)
    res = build(recipe, base)
    assert res.status == ("built" if merged == "at_commit" else "up_to_date")
    assert res.manifest["stats"]["rows_read"] == 400
    assert build(recipe, base).status == "up_to_date"


def test_shards_lost_mid_build_never_reach_a_manifest(
    s3: dict[str, Any], tmp_path: Path, faults, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Unit shards are merged at commit here: a build that merges them while it runs may have
    # merged (and so kept) the ones the store drops before they go, which loses nothing
    # (tests/build/test_compact.py covers a unit shard lost before its streamed merge).
    from shardprep.build import compact

    monkeypatch.setattr(compact.Streaming, "offer", lambda self, results: None)
    prefix = f"lost-{uuid.uuid4().hex[:8]}"
    recipe, base = load_recipe(_recipe(tmp_path, s3, prefix))
    fs = s3["fs"]
    error: list[BaseException] = []

    def run() -> None:
        try:
            build(recipe, base)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            error.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    lost: list[str] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and worker.is_alive() and not lost:
        fs.invalidate_cache()
        shards = sorted(fs.glob(f"{BUCKET}/{prefix}/data-*/train-*.arrow"))
        if len(shards) >= 5:
            lost = shards[:3]
            fs.rm(lost)  # the store drops objects it had acknowledged
        time.sleep(0.05)
    faults.fault(len(lost))
    worker.join(timeout=180)
    assert lost and error and isinstance(error[0], BuildError), error
    assert "3 shard(s)" in str(error[0]) and "store lost them" in str(error[0])
    out = Output(f"s3://{BUCKET}/{prefix}", storage_options=s3["opts"])
    assert not out.exists("manifest.json")
    res = build(recipe, base)
    assert res.status == "built" and res.manifest["stats"]["rows_read"] == 400
    assert build(recipe, base).status == "up_to_date"


def test_a_forked_pool_writes_to_the_object_store(
    s3: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, faults
) -> None:
    # Pool workers forked from a driver that already talked to the store (its manifest, its
    # lock) must not reuse the driver's event loop, which has no thread in the child.
    from shardprep.build import run as build_mod

    monkeypatch.setattr(build_mod, "_MIN_ROWS_FOR_POOL", 0)
    prefix = f"forked-{uuid.uuid4().hex[:8]}"
    recipe, base = load_recipe(_recipe(tmp_path, s3, prefix))
    done: list[Any] = []

    def run() -> None:
        try:
            done.append(build(recipe, base, workers=2))
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            done.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join(timeout=120)
    faults.fault(1)
    assert not worker.is_alive(), "the forked pool hung on the object store"
    res = done[0]
    assert not isinstance(res, BaseException), repr(res)
    assert res.status == "built" and res.manifest["stats"]["rows_read"] == 400
    assert build(recipe, base, workers=2).status == "up_to_date"
