"""Item 5 on GCS (gcp-storage-emulator on loopback): the lock object is created only if absent,
so a second holder is refused while the first holds it.

The emulator ignores `ifGenerationMatch=0` (real GCS honours it), so these tests pass through the
checks around the conditional create; the race itself is tested on S3 (test_object_store.py)."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from typing import Any

os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"  # before gcsfs loads (platform notes)

import pytest  # noqa: E402

from shardprep.build.lock import LOCK_NAME, build_lock  # noqa: E402
from shardprep.build.lock_store import lock_store  # noqa: E402
from shardprep.errors import BuildError  # noqa: E402
from shardprep.store.storage import Output  # noqa: E402

pytestmark = pytest.mark.gcs


@pytest.fixture(scope="module")
def gcs() -> Iterator[dict[str, Any]]:
    from gcp_storage_emulator.server import create_server

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    opts = {"endpoint_url": f"http://127.0.0.1:{port}", "token": "anon", "project": "test"}
    out = Output("gs://locks", storage_options=opts)
    out.fs.mkdir("locks")
    yield opts
    server.stop()


def test_conditional_create_refuses_a_second_lock(gcs: dict[str, Any], faults) -> None:
    out = Output(f"gs://locks/{uuid.uuid4().hex[:8]}", storage_options=gcs)
    store = lock_store(out)
    assert store.create('{"first": 1}') is not None
    faults.fault()
    assert store.create('{"second": 2}') is None
    assert '"first"' in out.read_text(LOCK_NAME)


def test_held_lock_blocks_a_second_build(gcs: dict[str, Any]) -> None:
    out = Output(f"gs://locks/{uuid.uuid4().hex[:8]}", storage_options=gcs)
    with build_lock(out), pytest.raises(BuildError, match="another build"), build_lock(out):
        pass
    out.fs.invalidate_cache()
    assert not out.exists(LOCK_NAME)
