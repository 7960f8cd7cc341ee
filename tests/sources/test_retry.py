"""Which errors are retried: asyncio's and http.client's are recognized without retry.py importing
either module (they are looked up only where loaded)."""

from __future__ import annotations

import asyncio
import http.client
import subprocess
import sys

from shardprep.sources.retry import is_transient


def test_transient_and_permanent_errors() -> None:
    assert is_transient(asyncio.TimeoutError())
    assert is_transient(http.client.IncompleteRead(b"partial"))
    assert is_transient(ConnectionResetError())
    try:
        raise OSError("read failed") from http.client.IncompleteRead(b"")
    except OSError as exc:
        assert is_transient(exc)  # found through the cause
    assert not is_transient(FileNotFoundError("gone"))
    assert not is_transient(ValueError("bad row"))


def test_retry_imports_neither_asyncio_nor_http_client() -> None:
    code = (
        "import sys\nfrom shardprep.sources.retry import is_transient\n"
        "assert not is_transient(ValueError())\n"
        "print(sorted(m for m in ('asyncio', 'http.client') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
