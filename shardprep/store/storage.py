"""Output storage through fsspec: atomic file placement on local disk and object stores."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from shardprep.errors import BuildError


class Output:
    """A build's output folder, local or remote (s3://, gs://, ...)."""

    def __init__(self, url: str, *, storage_options: dict[str, Any] | None = None) -> None:
        self.fs, root = fsspec.core.url_to_fs(url, **(storage_options or {}))
        self.root = root.rstrip("/")
        self.url = url
        self.is_local = isinstance(self.fs, LocalFileSystem)

    def path(self, rel: str) -> str:
        return f"{self.root}/{rel}" if rel else self.root

    def exists(self, rel: str) -> bool:
        return bool(self.fs.exists(self.path(rel)))

    def read_text(self, rel: str) -> str:
        with self.fs.open(self.path(rel), "rt", encoding="utf-8") as f:
            return str(f.read())

    def makedirs(self, rel: str = "") -> None:
        self.fs.makedirs(self.path(rel), exist_ok=True)

    def local_tempdir(self) -> str:
        """A scratch folder for files about to be placed: on the same disk when local (rename is atomic)."""
        if self.is_local:
            self.makedirs()
            return tempfile.mkdtemp(prefix=".tmp-", dir=self.root)
        return tempfile.mkdtemp(prefix="shardprep-")

    def place(self, local_file: str, rel: str) -> None:
        """Move a finished local file to `rel` in one step: rename locally, a single whole upload remotely."""
        target = self.path(rel)
        if self.is_local:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            os.replace(local_file, target)
        else:
            try:
                self.fs.put_file(local_file, target)
            except (OSError, ValueError) as exc:
                # fsspec retries transient errors itself; what is left is the store refusing
                # (a bucket gone, access denied): the build stops naming the object and the cause.
                raise BuildError(f"cannot write {self.fs.unstrip_protocol(target)}: {exc}") from exc
            os.unlink(local_file)

    def write_text_atomic(self, rel: str, text: str) -> None:
        tmpdir = self.local_tempdir()
        try:
            tmp = os.path.join(tmpdir, "file")
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            self.place(tmp, rel)
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)

    def remove_tree(self, rel: str) -> None:
        if self.exists(rel):
            self.fs.rm(self.path(rel), recursive=True)

    def listdir(self, rel: str = "") -> list[str]:
        if not self.exists(rel):
            return []
        return sorted(Path(p).name for p in self.fs.ls(self.path(rel), detail=False))


def sha256_file(path: str, *, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
