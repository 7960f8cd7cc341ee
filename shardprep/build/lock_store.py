"""The lock object's conditional operations on each object store.

S3: PutObject with `If-None-Match: *` creates only when absent; `If-Match: <etag>` replaces or
deletes only what was read. GCS: `ifGenerationMatch=0` creates only when absent (gcsfs
mode="create"); a replace or delete checks the generation read. Other filesystems (memory://,
tests) compare the content read just before writing: best effort, not exclusive.
"""

from __future__ import annotations

import hashlib
from typing import Any, Protocol

from shardprep.store.storage import LOCK_NAME, Output


class LockStore(Protocol):
    def create(self, text: str) -> str | None:
        """Write the lock only if there is none; its token, or None when one exists."""

    def read(self) -> tuple[str, str] | None:
        """(content, token) of the current lock, or None when there is none."""

    def replace(self, text: str, token: str) -> str | None:
        """Overwrite the lock only if it is still the one `token` names; the new token or None."""

    def delete(self, token: str) -> None:
        """Remove the lock only if it is still the one `token` names."""


def _precondition_failed(exc: BaseException) -> bool:
    e: BaseException | None = exc
    while e is not None:
        if isinstance(e, FileExistsError):
            return True
        code = (
            getattr(e, "response", {}).get("Error", {}).get("Code")
            if hasattr(e, "response")
            else None
        )
        if code in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
            return True
        if (
            getattr(e, "code", None) == 412
            or "pre-condition" in str(e).lower()
            or "precondition" in str(e).lower()
        ):
            return True
        e = e.__cause__ or e.__context__
    return False


class _S3:
    def __init__(self, output: Output) -> None:
        self.fs: Any = output.fs
        self.path = output.path(LOCK_NAME)
        self.bucket, self.key, _ = self.fs.split_path(self.path)

    def create(self, text: str) -> str | None:
        try:
            out = self.fs.pipe_file(self.path, text.encode(), mode="create")
        except Exception as exc:
            if _precondition_failed(exc):
                return None
            raise
        return str(out["ETag"])

    def read(self) -> tuple[str, str] | None:
        # ETag first, then the content: if it changes in between, a replace with this ETag fails,
        # so the content judged (as new as or newer than the ETag) never lets a live lock be taken.
        self.fs.invalidate_cache(self.path)
        try:
            token = str(self.fs.info(self.path)["ETag"])
            data = self.fs.cat_file(self.path)
        except FileNotFoundError:
            return None
        return bytes(data).decode("utf-8", "replace"), token

    def replace(self, text: str, token: str) -> str | None:
        try:
            out = self.fs.pipe_file(self.path, text.encode(), IfMatch=token)
        except FileNotFoundError:
            return None
        except Exception as exc:
            if _precondition_failed(exc):
                return None
            raise
        return str(out["ETag"])

    def delete(self, token: str) -> None:
        try:
            self.fs.call_s3("delete_object", Bucket=self.bucket, Key=self.key, IfMatch=token)
        except Exception as exc:
            if not (_precondition_failed(exc) or isinstance(exc, FileNotFoundError)):
                raise
        self.fs.invalidate_cache(self.path)


class _Gcs:
    def __init__(self, output: Output) -> None:
        self.fs: Any = output.fs
        self.path = output.path(LOCK_NAME)

    def create(self, text: str) -> str | None:
        # ifGenerationMatch=0 makes this exclusive on GCS. A server that ignores it (the
        # emulator) still gets the checks around it: present before, someone else's after.
        self.fs.invalidate_cache(self.path)
        if self.fs.exists(self.path):
            return None
        try:
            self.fs.pipe_file(self.path, text.encode(), mode="create")
        except Exception as exc:
            if _precondition_failed(exc):
                return None
            raise
        got = self.read()
        return got[1] if got is not None and got[0] == text else None

    def read(self) -> tuple[str, str] | None:
        self.fs.invalidate_cache(self.path)
        try:
            info = self.fs.info(self.path)
            data = self.fs.cat_file(self.path, generation=info.get("generation"))
        except FileNotFoundError:
            return None
        except TypeError:  # an older gcsfs without generation reads
            data = self.fs.cat_file(self.path)
        return bytes(data).decode("utf-8", "replace"), str(
            info.get("generation") or _digest(bytes(data))
        )

    def replace(self, text: str, token: str) -> str | None:
        # gcsfs has no generation-matched overwrite; check, then write (the window is one request).
        got = self.read()
        if got is None or got[1] != token:
            return None
        self.fs.pipe_file(self.path, text.encode())
        got = self.read()
        return got[1] if got else None

    def delete(self, token: str) -> None:
        got = self.read()
        if got is not None and got[1] == token:
            self.fs.rm(self.path)


class _Plain:
    """Filesystems without conditional writes: content compared just before writing."""

    def __init__(self, output: Output) -> None:
        self.output = output

    def read(self) -> tuple[str, str] | None:
        try:
            text = self.output.read_text(LOCK_NAME)
        except FileNotFoundError:
            return None
        return text, _digest(text.encode())

    def create(self, text: str) -> str | None:
        if self.output.exists(LOCK_NAME):
            return None
        self.output.write_text_atomic(LOCK_NAME, text)
        return _digest(text.encode())

    def replace(self, text: str, token: str) -> str | None:
        got = self.read()
        if got is None or got[1] != token:
            return None
        self.output.write_text_atomic(LOCK_NAME, text)
        return _digest(text.encode())

    def delete(self, token: str) -> None:
        got = self.read()
        if got is not None and got[1] == token:
            self.output.fs.rm(self.output.path(LOCK_NAME))


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def lock_store(output: Output) -> LockStore:
    protocol = output.fs.protocol
    names = {protocol} if isinstance(protocol, str) else set(protocol)
    if names & {"s3", "s3a"}:
        return _S3(output)
    if names & {"gs", "gcs"}:
        return _Gcs(output)
    return _Plain(output)
