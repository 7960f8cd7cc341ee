"""Which files a source names (local paths, globs, any fsspec URL), and what identifies a version
of each one for the fingerprint.

A plain local file is checked and stat'ed with `os`, exactly as fsspec's LocalFileSystem would
(`store.storage.local_path`), so an up-to-date `prep build` takes its inputs' identities without
importing fsspec; globs and every other filesystem go through fsspec.
"""

from __future__ import annotations

import glob
import os
import re
from datetime import date, datetime
from pathlib import Path
from typing import Any

from shardprep.errors import SourceError
from shardprep.sources import retry
from shardprep.store.storage import local_path, protocol

_GLOB_CHARS = re.compile(r"[*?\[]")
# What object stores and filesystems report about a version of a file, beyond its size.
_VERSION_KEYS = (
    "mtime",
    "ETag",
    "etag",
    "md5Hash",
    "generation",
    "LastModified",
    "updated",
    "VersionId",
)


def resolve_path(path: str, base_dir: Path) -> str:
    """A local path relative to `base_dir` (the recipe's folder), normalized; URLs as they are."""
    if "://" in path:
        return path
    return os.path.normpath(path if Path(path).is_absolute() else base_dir / path)


def is_local(path: str) -> bool:
    return protocol(path) in ("file", "local")


def expand_paths(
    path: str, *, base_dir: Path | None = None, storage_options: dict[str, Any] | None = None
) -> list[str]:
    """The files `path` names: relative local paths resolve against `base_dir`; globs are expanded
    and sorted (the order decides global row indices, so it must not depend on listing order)."""
    opts = storage_options or {}
    # Only what the recipe wrote is a pattern: `[x]` in the recipe's own folder name is literal.
    is_glob = bool(_GLOB_CHARS.search(path))
    pattern = path
    if is_local(path):
        local = path[len("file://") :] if path.startswith("file://") else path
        p = Path(local).expanduser()
        if not p.is_absolute() and base_dir is not None:
            pattern = str(Path(glob.escape(str(base_dir))) / p)
            p = Path(base_dir) / p
        else:
            pattern = str(p)
        path = str(p)
    plain = None if is_glob else local_path(path, opts)
    if plain is not None:
        return [_local_file(path, plain)]
    from fsspec.core import url_to_fs

    try:
        fs, fs_path = url_to_fs(path, **opts)
    except (ImportError, ValueError) as e:
        raise SourceError(f"cannot open {path}: {e}") from e
    local_fs = is_local(path)

    def full(p: str) -> str:
        return p if local_fs else str(fs.unstrip_protocol(p))

    if is_glob:
        glob_path = url_to_fs(pattern, **opts)[1]
        try:
            matches = retry.call(
                lambda: [m for m in fs.glob(glob_path) if not fs.isdir(m)], url=path, what="list"
            )
        except ValueError as e:
            raise SourceError(f"cannot list {path}: {e}") from e
        if not matches:
            raise SourceError(f"no file matches {path!r}")
        return sorted(full(m) for m in matches)
    if retry.call(lambda: fs.isdir(fs_path), url=path, what="open"):
        raise SourceError(_folder_message(path))
    exists = retry.call(lambda: fs.exists(fs_path), url=path, what="open")
    if not exists:
        raise SourceError(f"no such file: {path}")
    return [full(fs_path)]


def _local_file(path: str, local: str) -> str:
    """`path`, naming one local file at `local`, checked as fsspec's isdir and exists would."""
    if retry.call(lambda: os.path.isdir(local), url=path, what="open"):
        raise SourceError(_folder_message(path))
    if not retry.call(lambda: os.path.exists(local), url=path, what="open"):
        raise SourceError(f"no such file: {path}")
    return local


def _folder_message(path: str) -> str:
    return f"{path} is a folder; name its files with a glob such as {path.rstrip('/')}/*.jsonl"


def _local_info(path: str) -> dict[str, Any]:
    """What fsspec's LocalFileSystem.info reports of the keys an identity reads: a link's target's
    size and mtime."""
    st = os.stat(path)
    return {"size": st.st_size, "mtime": st.st_mtime}


def file_identity(url: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """What identifies this version of the file (size plus mtime / etag / generation) for fingerprints."""
    local = local_path(url, storage_options)
    try:
        if local is not None:
            info = retry.call(lambda: _local_info(str(local)), url=url, what="stat")
        else:
            from fsspec.core import url_to_fs

            fs, fs_path = url_to_fs(url, **(storage_options or {}))
            info = retry.call(lambda: fs.info(fs_path), url=url, what="stat")
    except SourceError as e:
        if isinstance(e.__cause__, FileNotFoundError):
            raise SourceError(f"no such file: {url}") from e.__cause__
        raise
    ident: dict[str, Any] = {"uri": url, "size": info.get("size")}
    for key in _VERSION_KEYS:
        value = info.get(key)
        if value is None:
            continue
        if isinstance(value, (datetime, date)):
            value = value.isoformat()
        elif not isinstance(value, (str, int, float, bool)):
            value = str(value)
        ident[key.lower()] = value
    return ident
