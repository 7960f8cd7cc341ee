"""One build per output at a time.

Local outputs take an exclusive `flock` on OUTPUT/.lock: the kernel drops it when the holder dies,
even by SIGKILL, so a crashed build never blocks the next one. Object stores have no locks; there a
lock object names the holder (host, pid, token) and a heartbeat time that a thread refreshes while
the build runs. It is created only if absent and replaced only if unchanged since it was read
(conditional writes, lock_store.py), so two builds started together never both hold it. A lock is
taken over when its heartbeat is older than `stale_after` seconds, or at once when its holder is a
process on this host that no longer exists.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import IO, Any

from shardprep.build.lock_store import lock_store
from shardprep.errors import BuildError
from shardprep.store.storage import LOCK_NAME, Output, naming_errors

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
def build_lock(
    output: Output, *, wait_s: float = 0.0, stale_after: float = 4 * HEARTBEAT_S
) -> Iterator[None]:
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
        with naming_errors(path):
            f.seek(0)
            f.truncate()
            f.write(json.dumps(_holder()))
            f.flush()
        yield
    finally:
        f.close()  # closing releases the flock


@contextlib.contextmanager
def _remote_lock(output: Output, wait_s: float, stale_after: float) -> Iterator[None]:
    store = lock_store(output)
    me = _holder()
    me["token"] = uuid.uuid4().hex  # tells this lock apart from any other, even in one process
    deadline = time.monotonic() + wait_s
    while True:
        token = store.create(json.dumps(me))
        if token is not None:
            break
        current = store.read()
        if current is None:
            continue  # released between our create and read: try again
        text, seen = current
        try:
            held = json.loads(text)
            last_beat = float(held.get("heartbeat", 0))
        except (ValueError, TypeError, AttributeError):
            held, last_beat = {}, 0.0  # a torn or foreign lock object: as good as stale
        if time.time() - last_beat > stale_after or _holder_gone(held):
            # Taken over only if nobody changed it since we read it; else look again.
            token = store.replace(json.dumps({**me, "heartbeat": time.time()}), seen)
            if token is not None:
                break
            continue
        if time.monotonic() >= deadline:
            raise BuildError(
                f"another build is writing {output.url} ({held}); wait for it (--wait SECONDS), or use a "
                f"different output. A lock whose holder stopped is taken over after {stale_after:.0f} s."
            )
        time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))
    stop = threading.Event()
    held_token: str | None = token

    def beat() -> None:
        nonlocal held_token
        while not stop.wait(HEARTBEAT_S) and held_token is not None:
            try:
                held_token = store.replace(json.dumps({**me, "heartbeat": time.time()}), held_token)
            except Exception:  # noqa: BLE001 - a missed beat only shortens the lock's life
                continue

    thread = threading.Thread(target=beat, name="shardprep-lock-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        if held_token is not None:
            with contextlib.suppress(Exception):
                store.delete(held_token)  # only if it is still ours
