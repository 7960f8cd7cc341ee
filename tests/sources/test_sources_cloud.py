"""Sources and outputs on object stores, against real servers on loopback started by the tests:
moto's S3 server and gcp-storage-emulator for GCS; plus a tiny HTTP server that drops connections.

Each store: inputs read (glob, .gz, CSV), shards and manifest written (manifest last), read back
with ShardDataset and `prep show`. Transient errors are retried; permanent ones fail at once.
"""

from __future__ import annotations

import gzip
import http.server
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Before gcsfs is first imported: otherwise every open waits on a gRPC lookup the emulator never answers.
os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"
os.environ.setdefault("SHARDPREP_RETRY_DELAY_S", "0.05")

import fsspec  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from shardprep.build.run import build  # noqa: E402
from shardprep.cli.app import app  # noqa: E402
from shardprep.errors import SourceError  # noqa: E402
from shardprep.recipe import load_recipe  # noqa: E402
from shardprep.sources import retry  # noqa: E402
from shardprep.sources.files import count_rows, iter_source_rows  # noqa: E402
from shardprep.store import storage  # noqa: E402

ROOT = Path(__file__).parents[2]
QWEN3 = str(ROOT / "tests/fixtures/tokenizers/qwen3")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _chat(i: int) -> dict[str, Any]:
    return {
        "messages": [
            {"role": "user", "content": f"cloud {i}?"},
            {"role": "assistant", "content": f"{i}!"},
        ]
    }


@pytest.fixture(scope="session")
def s3() -> Iterator[dict[str, Any]]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    opts = {"key": "testing", "secret": "testing", "endpoint_url": f"http://{host}:{port}"}
    fs = fsspec.filesystem("s3", skip_instance_cache=True, **opts)
    fs.mkdir("inputs")
    fs.mkdir("outputs")
    yield {
        "fs": fs,
        "opts": opts,
        "env": {
            "AWS_ENDPOINT_URL": opts["endpoint_url"],
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        },
    }
    server.stop()


@pytest.fixture(scope="session")
def gcs() -> Iterator[dict[str, Any]]:
    from gcp_storage_emulator.server import create_server

    port = _free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    opts = {"endpoint_url": f"http://127.0.0.1:{port}", "token": "anon", "project": "test"}
    fs = fsspec.filesystem("gs", skip_instance_cache=True, **opts)
    fs.mkdir("inputs")
    fs.mkdir("outputs")
    fs.invalidate_cache()
    yield {"fs": fs, "opts": opts, "env": {"STORAGE_EMULATOR_HOST": opts["endpoint_url"]}}
    server.stop()


def _upload_inputs(fs: Any, root: str) -> None:
    for part in range(2):
        body = "".join(json.dumps(_chat(part * 30 + i)) + "\n" for i in range(30)).encode()
        fs.pipe(f"{root}/chat-{part}.jsonl.gz", gzip.compress(body))
    csv_body = "prompt,completion\n" + "".join(f"csv q{i},csv a{i}\n" for i in range(12))
    fs.pipe(f"{root}/pairs.csv", csv_body.encode())
    fs.invalidate_cache()


def _build_and_read_back(
    tmp: Path, store: dict[str, Any], proto: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _upload_inputs(store["fs"], "inputs/run")
    out_url = f"{proto}://outputs/build"
    recipe = {
        "name": "cloud",
        "output": out_url,
        "output_storage_options": store["opts"],
        "tokenizer": QWEN3,
        "renderer": "qwen3",
        "split": {"test_fraction": 0.2, "seed": 0},
        "sources": [
            {
                "name": "chat",
                "path": f"{proto}://inputs/run/chat-*.jsonl.gz",
                "storage_options": store["opts"],
            },
            {
                "name": "pairs",
                "path": f"{proto}://inputs/run/pairs.csv",
                "format": "prompt_completion",
                "storage_options": store["opts"],
            },
        ],
    }
    (tmp / "r.yaml").write_text(yaml.safe_dump(recipe))
    placed: list[str] = []
    real_place = storage.Output.place

    def spy(self: storage.Output, local_file: str, rel: str) -> None:
        placed.append(rel)
        real_place(self, local_file, rel)

    monkeypatch.setattr(storage.Output, "place", spy)
    res = build(*load_recipe(tmp / "r.yaml"))
    m = res.manifest
    assert m["stats"]["rows_read"] == 72
    assert m["splits"]["train"]["rows"] + m["splits"]["test"]["rows"] == 72
    # the manifest is the last object written (only the lock's removal follows)
    assert [p for p in placed if p != ".lock"][-1] == "manifest.json"
    assert any(p.endswith(".parquet") for p in placed)
    assert all(f["uri"].startswith(f"{proto}://") for f in m["sources"][0]["files"])

    from shardprep.torch import ShardDataset

    ds = ShardDataset(out_url, storage_options=store["opts"], cache_dir=str(tmp / "cache"))
    assert len(ds) == m["splits"]["train"]["rows"]
    for k, v in store["env"].items():
        monkeypatch.setenv(k, v)
    fsspec.config.conf.clear()
    show = CliRunner().invoke(app, ["show", out_url, "--json"])
    assert show.exit_code == 0, show.output
    assert m["fingerprint"][:12] in show.output and "train" in show.output
    # a second build is up to date: nothing read, nothing written
    assert build(*load_recipe(tmp / "r.yaml")).status == "up_to_date"


def test_s3_build_and_read_back(
    s3: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _build_and_read_back(tmp_path, s3, "s3", monkeypatch)


def test_gcs_build_and_read_back(
    gcs: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _build_and_read_back(tmp_path, gcs, "gs", monkeypatch)


def _retries(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The attempts after which the retry loop waited to try again (none: it failed at once).
    Counted, not timed: a clock bound on 'at once' fails on a machine busy enough."""
    waits: list[int] = []
    real = retry.backoff
    monkeypatch.setattr(retry, "backoff", lambda attempt: waits.append(attempt) or real(attempt))
    return waits


def test_missing_bucket_fails_at_once(s3: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    waits = _retries(monkeypatch)
    with pytest.raises(SourceError, match="s3://no-such-bucket"):
        count_rows("s3://no-such-bucket/x/*.jsonl", storage_options=s3["opts"])
    with pytest.raises(SourceError, match="no-such-bucket"):
        count_rows("s3://no-such-bucket/x/a.jsonl", storage_options=s3["opts"])
    assert waits == []


# ------------------------------------------------------------------------ flaky HTTP server


class _Flaky(http.server.BaseHTTPRequestHandler):
    body = b""
    gets = 0
    forbidden = 0  # requests for /forbidden/...
    drop_first = True

    def log_message(self, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        if self.path.startswith("/forbidden"):
            type(self).forbidden += 1
            self.send_response(403)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()

    def do_GET(self) -> None:
        if self.path.startswith("/forbidden"):
            type(self).forbidden += 1
            self.send_response(403)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        type(self).gets += 1
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        if type(self).drop_first and type(self).gets == 1:
            # Half the promised body, then the connection dies: a killed connection mid-read.
            self.wfile.write(self.body[: len(self.body) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self.wfile.write(self.body)


@pytest.fixture()
def flaky() -> Iterator[str]:
    _Flaky.body = "".join(json.dumps(_chat(i)) + "\n" for i in range(2000)).encode()
    _Flaky.gets = _Flaky.forbidden = 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_killed_connection_is_retried(flaky: str) -> None:
    rows = list(iter_source_rows(f"{flaky}/data.jsonl", storage_options={"block_size": 0}))
    assert [r.data for r in rows] == [_chat(i) for i in range(2000)]
    assert _Flaky.gets >= 2  # the first read died mid-body and was retried


def test_forbidden_fails_at_once_with_url_and_reason(
    flaky: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits = _retries(monkeypatch)
    with pytest.raises(SourceError, match=r"forbidden/data.jsonl.*(403|denied|Forbidden)"):
        list(iter_source_rows(f"{flaky}/forbidden/data.jsonl", storage_options={"block_size": 0}))
    # One request (two, were a HEAD sent first), never tried again by us or the HTTP client.
    assert waits == [] and 1 <= _Flaky.forbidden <= 2, (waits, _Flaky.forbidden)


def test_s3_build_killed_and_resumed_equals_uninterrupted(
    s3: dict[str, Any], tmp_path: Path
) -> None:
    """SIGKILL a build writing to the loopback S3 server after a few units; the next build resumes
    from the units' markers there and ends with the same shards as an uninterrupted local build."""
    import signal
    import subprocess
    import sys

    rows = [_chat(i) for i in range(240)]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    base = {
        "name": "s3-resume",
        "tokenizer": str(ROOT / "tests/fixtures/tokenizers/toy"),
        "renderer": "qwen3",
        "sources": [{"name": "chat", "path": "d.jsonl"}],
        "work_unit_rows": 8,
        "workers": 1,
        "split": {"test_size": 10},
    }
    (tmp_path / "s3.yaml").write_text(
        yaml.safe_dump(
            {**base, "output": "s3://outputs/resume", "output_storage_options": s3["opts"]}
        )
    )
    (tmp_path / "local.yaml").write_text(yaml.safe_dump({**base, "output": "local"}))
    fs = s3["fs"]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from shardprep.cli.app import main; main()",
            "build",
            str(tmp_path / "s3.yaml"),
            "-q",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    killed = False
    while proc.poll() is None and time.monotonic() < deadline:
        fs.invalidate_cache()
        if len(fs.glob("outputs/resume/data-*/_units/*.json")) >= 3:
            proc.send_signal(signal.SIGKILL)
            killed = True
            break
        time.sleep(0.05)
    proc.wait()
    assert killed, "the build finished before it could be killed"
    fs.invalidate_cache()
    assert not fs.exists("outputs/resume/manifest.json")
    done = len(fs.glob("outputs/resume/data-*/_units/*.json"))
    resumed = build(*load_recipe(tmp_path / "s3.yaml"))
    # A marker PUT the server had whole when the client was killed is stored by its own server
    # thread, which may finish after the count above: one such marker at most (one unit at a
    # time, its shard before its marker), and the resumed build takes it too.
    assert resumed.status == "built" and done <= resumed.resumed_units <= done + 1 and done > 0
    local = build(*load_recipe(tmp_path / "local.yaml"))

    def names(m: dict) -> list:
        return [
            (s["path"].split("/")[-1], s["sha256"])
            for v in m["splits"].values()
            for s in v["shards"]
        ]

    assert names(resumed.manifest) == names(local.manifest)
