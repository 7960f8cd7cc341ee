"""Output storage through fsspec: atomic file placement on local disk and object stores.

fsspec (a tenth of a second to import) loads on the first remote output or the first use of
`Output.fs`: a local folder is answered with `os`, as fsspec's own LocalFileSystem does, so an
up-to-date `prep build` reads its manifest and stats its shards without it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import re
import tempfile
import uuid
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

from shardprep.errors import BuildError

# The folder of a local output's temporary files (a file being written before its rename). It is
# claimed with an owner record like a data folder (store/ownership.py), so that only a build's own
# temporaries are ever swept: nothing of the user's beside it.
SCRATCH_DIR = ".shardprep-tmp"
LOCK_NAME = ".lock"  # the build lock (build/lock.py): a local flock file, an object elsewhere

# fsspec's own split (fsspec.utils.get_protocol): the protocol ends at the first "::" or "://".
_PROTOCOL_END = re.compile(r"(\:\:|\://)")


def protocol(url: str) -> str:
    """fsspec's protocol of `url` ("file" for a plain path), without importing fsspec."""
    parts = _PROTOCOL_END.split(url, maxsplit=1)
    return parts[0] if len(parts) > 1 else "file"


def local_path(url: str, storage_options: dict[str, Any] | None = None) -> str | None:
    """The absolute path fsspec's LocalFileSystem gives `url` (a plain path, file:// or local://),
    or None where fsspec alone decides: other protocols, chained URLs, a ":" that fsspec may read
    as a protocol (data:, file:x, a drive letter), a `protocol` option, and Windows."""
    if os.sep != "/" or "::" in url or "protocol" in (storage_options or {}):
        return None
    if "://" in url:
        proto, path = url.split("://", 1)
        if proto not in ("file", "local"):
            return None
    elif ":" in url:
        return None
    else:
        path = url
    # fsspec's make_path_posix on posix, then LocalFileSystem._strip_protocol's rstrip.
    if path.startswith("~"):
        path = os.path.expanduser(path)
    elif not path.startswith("/"):
        path = f"{os.getcwd()}/{path.removeprefix('./') if path != '.' else ''}"
    return path.rstrip("/") or "/"


@contextlib.contextmanager
def naming_errors(path: str) -> Iterator[None]:
    """An OS error while writing `path` names it: pyarrow's writers and a file's write/close
    leave the name out (a full disk said "No space left on device", not where)."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None and exc.errno:
            raise OSError(exc.errno, os.strerror(exc.errno), path) from exc
        raise


class Output:
    """A build's output folder, local or remote (s3://, gs://, ...)."""

    def __init__(self, url: str, *, storage_options: dict[str, Any] | None = None) -> None:
        self.url = url
        self.storage_options = storage_options or {}
        local = local_path(url, self.storage_options)
        if local is None:
            import fsspec
            from fsspec.implementations.local import LocalFileSystem

            fs, root = fsspec.core.url_to_fs(url, **self.storage_options)
            self.__dict__["fs"] = fs  # the cached_property's value
            self.is_local = isinstance(fs, LocalFileSystem)
        else:
            root, self.is_local = local, True
        self.root = root.rstrip("/")
        self._scratch_claimed = False

    @cached_property
    def fs(self) -> Any:
        """The fsspec filesystem (for a local output, made on first use)."""
        import fsspec

        return fsspec.core.url_to_fs(self.url, **self.storage_options)[0]

    def path(self, rel: str) -> str:
        return f"{self.root}/{rel}" if rel else self.root

    def exists(self, rel: str) -> bool:
        if self.is_local:
            return os.path.exists(self.path(rel))
        return bool(self.fs.exists(self.path(rel)))

    def read_text(self, rel: str) -> str:
        if self.is_local:
            with open(self.path(rel), encoding="utf-8") as f:
                return f.read()
        with self.fs.open(self.path(rel), "rt", encoding="utf-8") as f:
            return str(f.read())

    def makedirs(self, rel: str = "") -> None:
        if self.is_local:
            try:
                os.makedirs(self.path(rel), exist_ok=True)
            except FileNotFoundError as exc:
                # Its parent exists but refuses new entries (/proc, /sys): not a missing path.
                raise BuildError(
                    f"cannot create the folder {self.path(rel)}: {exc.strerror} (a system folder "
                    "such as /proc or /sys holds no new folders); choose another output (-o)"
                ) from exc
            return
        self.fs.makedirs(self.path(rel), exist_ok=True)

    def local_tempfile(self, name: str) -> str:
        """A fresh path for a file about to be placed: in the output's own scratch folder when
        local (rename is atomic; a killed writer's file is swept by the next build), else in the
        system's temporary folder. A file, not a folder per file: one unit writes several."""
        if self.is_local:
            if not self._scratch_claimed:
                from shardprep.store.ownership import claim

                claim(self, SCRATCH_DIR)
                self._scratch_claimed = True
            return os.path.join(self.root, SCRATCH_DIR, f"{uuid.uuid4().hex[:16]}-{name}")
        fd, path = tempfile.mkstemp(prefix="shardprep-", suffix=f"-{name}")
        os.close(fd)
        return path

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
        tmp = self.local_tempfile(posixpath.basename(rel))
        try:
            with naming_errors(tmp), open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            self.place(tmp, rel)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)  # only when placing failed: a placed file is no longer there

    def remove_tree(self, rel: str) -> None:
        if self.exists(rel):
            self.fs.rm(self.path(rel), recursive=True)

    def listdir(self, rel: str = "") -> list[str]:
        if not self.exists(rel):
            return []
        if self.is_local:
            path = self.path(rel)
            return sorted(os.listdir(path)) if os.path.isdir(path) else [Path(path).name]
        return sorted(Path(p).name for p in self.fs.ls(self.path(rel), detail=False))


def sha256_file(path: str, *, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
