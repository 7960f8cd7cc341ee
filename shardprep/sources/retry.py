"""Transient vs permanent I/O errors, and retries with exponential backoff for the transient ones.

A dropped connection, a timeout or a 5xx/429 answer is worth another try; a 403, a missing bucket
or a missing file is not: it fails at once with the URL and the reason, as a SourceError.
"""

from __future__ import annotations

import errno
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from shardprep.errors import SourceError

T = TypeVar("T")

# Overridable so tests (and impatient users) can shorten the waits.
ATTEMPTS = int(os.environ.get("SHARDPREP_RETRY_ATTEMPTS", "5"))
BASE_DELAY_S = float(os.environ.get("SHARDPREP_RETRY_DELAY_S", "0.5"))
_TRANSIENT_ERRNO = {
    errno.ECONNRESET,
    errno.ECONNREFUSED,
    errno.ECONNABORTED,
    errno.EPIPE,
    errno.ETIMEDOUT,
}
_TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}
_TRANSIENT_NAMES = {
    # By name, so that no cloud SDK has to be imported to classify its errors.
    "ClientPayloadError",
    "ServerDisconnectedError",
    "ClientConnectionError",
    "ClientOSError",
    "ServerTimeoutError",
    "FSTimeoutError",
    "EndpointConnectionError",
    "ConnectionClosedError",
    "ReadTimeoutError",
    "ConnectTimeoutError",
    "ResponseStreamingError",
    "IncompleteReadError",
    "ProtocolError",
    "ChunkedEncodingError",
}


def _status(exc: BaseException) -> int | None:
    for attr in ("status", "code", "status_code"):
        value = getattr(exc, attr, None)
        if isinstance(value, int) and 100 <= value < 600:
            return value
    return None


def _loaded_transient_types() -> tuple[type[BaseException], ...]:
    """asyncio's TimeoutError (its own class before Python 3.11) and http.client's IncompleteRead,
    from the modules only if loaded: no error of theirs exists otherwise, and importing them costs
    every command that names a source (an up-to-date build) a twentieth of a second."""
    asyncio, http_client = sys.modules.get("asyncio"), sys.modules.get("http.client")
    return (
        *((asyncio.TimeoutError,) if asyncio is not None else ()),
        *((http_client.IncompleteRead,) if http_client is not None else ()),
    )


def is_transient(exc: BaseException) -> bool:
    """True for errors a retry may cure. Missing files and refused permissions never are."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, (FileNotFoundError, PermissionError, SourceError)):
            return False
        status = _status(e)
        if status is not None:
            return status in _TRANSIENT_STATUS
        if isinstance(e, (TimeoutError, ConnectionError, *_loaded_transient_types())):
            return True
        if type(e).__name__ in _TRANSIENT_NAMES:
            return True
        if isinstance(e, OSError) and e.errno in _TRANSIENT_ERRNO:
            return True
        e = e.__cause__ or e.__context__
    return False


def describe(exc: BaseException) -> str:
    """The reason in a few words: 'access denied', 'not found', or the error's own text."""
    status = _status(exc)
    if isinstance(exc, PermissionError) or status in (401, 403):
        return f"access denied ({exc})"
    if isinstance(exc, FileNotFoundError) or status == 404:
        return f"not found ({exc})"
    return f"{type(exc).__name__}: {exc}"


def backoff(attempt: int) -> float:
    return float(BASE_DELAY_S * (2**attempt))


def call(fn: Callable[[], T], *, url: str, what: str = "read") -> T:
    """`fn()`, retried on transient errors; a permanent one becomes SourceError naming `url`."""
    for attempt in range(ATTEMPTS):
        try:
            return fn()
        except SourceError:
            raise
        except Exception as exc:
            if not is_transient(exc) or attempt == ATTEMPTS - 1:
                raise SourceError(f"cannot {what} {url}: {describe(exc)}") from exc
            time.sleep(backoff(attempt))
    raise AssertionError("unreachable")


def _one(_: object) -> int:
    return 1


def resumed(
    make: Callable[[int], Iterable[T]], *, where: str, size: Callable[[T], int] = _one
) -> Iterator[T]:
    """The items of `make(0)`; after a transient error, `make(n)` continues, n being how much was
    delivered so far (counted by `size`), so the caller sees every item exactly once."""
    delivered = attempt = 0
    while True:
        try:
            for item in make(delivered):
                yield item
                delivered += size(item)
            return
        except SourceError:
            raise
        except Exception as exc:
            if not is_transient(exc) or attempt >= ATTEMPTS - 1:
                raise SourceError(f"cannot read {where}: {describe(exc)}") from exc
            time.sleep(backoff(attempt))
            attempt += 1
