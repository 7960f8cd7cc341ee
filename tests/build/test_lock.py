"""The object-store build lock: a live holder blocks, a dead or silent one is taken over."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid

import pytest

from shardprep.build.lock import LOCK_NAME, build_lock
from shardprep.errors import BuildError
from shardprep.store.storage import Output


def _remote() -> Output:
    return Output(f"memory://locks/{uuid.uuid4().hex}")


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_live_holder_blocks_with_a_clear_message() -> None:
    out = _remote()
    out.write_text_atomic(
        LOCK_NAME,
        json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "heartbeat": time.time()}),
    )
    with pytest.raises(BuildError, match="another build is writing.*--wait"), build_lock(out):
        pass


def test_dead_holder_on_this_host_is_taken_over_at_once() -> None:
    out = _remote()
    out.write_text_atomic(
        LOCK_NAME,
        json.dumps({"host": socket.gethostname(), "pid": _dead_pid(), "heartbeat": time.time()}),
    )
    with build_lock(out):
        held = json.loads(out.read_text(LOCK_NAME))
        assert held["pid"] == os.getpid()
    assert not out.exists(LOCK_NAME)  # released


def test_silent_holder_elsewhere_is_taken_over_after_stale_after() -> None:
    out = _remote()
    out.write_text_atomic(
        LOCK_NAME, json.dumps({"host": "other-node", "pid": 1, "heartbeat": time.time() - 10})
    )
    with pytest.raises(BuildError), build_lock(out, stale_after=60):
        pass
    with build_lock(out, stale_after=5):
        assert json.loads(out.read_text(LOCK_NAME))["host"] == socket.gethostname()
