"""One build per output at a time.

Local outputs take an exclusive `flock` on OUTPUT/.lock: the kernel drops it when the holder dies,
even by SIGKILL, so a crashed build never blocks the next one. Object stores have no locks; there a
lock object names the holder (host, pid) and a heartbeat time that a thread refreshes while the
build runs. A lock is taken over when its heartbeat is older than `stale_after` seconds, or at once
when its holder is a process on this host that no longer exists.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import IO, Any

from shardprep.errors import BuildError
from shardprep.store.storage import Output

LOCK_NAME = ".lock"


HEARTBEAT_S = 30.0


def _holder() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "heartbeat": time.time()}


def _holder_gone(held: dict[str, Any]) -> bool:
    """True when the lock names a process on this host that has exited (a killed build)."""
    if held.get("host") != socket.gethostname() or not isinstance(held.get("pid"), int):
        return False
    try:
        os.kill(held["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@contextlib.contextmanager
def build_lock(output: Output, *, wait_s: float = 0.0, stale_after: float = 4 * HEARTBEAT_S) -> Iterator[None]:
    output.makedirs()
    if output.is_local:
        with _local_lock(output.path(LOCK_NAME), wait_s):
            yield
    else:
        with _remote_lock(output, wait_s, stale_after):
            yield


@contextlib.contextmanager
def _local_lock(path: str, wait_s: float) -> Iterator[None]:
    import fcntl

    f: IO[str] = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the whole build
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    f.seek(0)
                    who = f.read().strip() or "another process"
                    raise BuildError(
                        f"another build is writing {os.path.dirname(path)} ({who}); "
                        "wait for it to finish, or use a different output"
                    ) from None
                time.sleep(0.2)
        f.seek(0)
        f.truncate()
        f.write(json.dumps(_holder()))
        f.flush()
        yield
    finally:
        f.close()  # closing releases the flock


@contextlib.contextmanager
def _remote_lock(output: Output, wait_s: float, stale_after: float) -> Iterator[None]:
    deadline = time.monotonic() + wait_s
    while output.exists(LOCK_NAME):
        try:
            held = json.loads(output.read_text(LOCK_NAME))
        except (ValueError, OSError):
            break
        if time.time() - float(held.get("heartbeat", 0)) > stale_after or _holder_gone(held):
            break  # its holder stopped heart-beating, or died on this host: taken over
        if time.monotonic() >= deadline:
            raise BuildError(
                f"another build is writing {output.url} ({held}); wait for it (--wait SECONDS), or use a "
                f"different output. A lock whose holder stopped is taken over after {stale_after:.0f} s."
            )
        time.sleep(1.0)
    output.write_text_atomic(LOCK_NAME, json.dumps(_holder()))
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_S):
            with contextlib.suppress(Exception):  # a missed beat only shortens the lock's life
                output.write_text_atomic(LOCK_NAME, json.dumps(_holder()))

    thread = threading.Thread(target=beat, name="shardprep-lock-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        with contextlib.suppress(OSError):
            output.fs.rm(output.path(LOCK_NAME))
