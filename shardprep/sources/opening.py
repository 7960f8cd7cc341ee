"""Opening one file for reading: fsspec, a large buffer for object stores, and decompression by
suffix (`.gz/.zst/.bz2/.xz`) with damaged or truncated files refused naming the file."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

from shardprep.errors import SourceError
from shardprep.sources import retry
from shardprep.sources.compressed import codec_available, damage_named, decompressor
from shardprep.sources.paths import is_local

CODEC_SUFFIXES = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd", ".bz2": "bz2", ".xz": "xz"}
# Object-store reads are network round trips; a large buffer turns line iteration into few requests.
_REMOTE_BUFFER = 1 << 20


def compression_of(url: str) -> str | None:
    # Our own table first: fsspec only infers codecs whose library is installed, and a .zst file
    # read as plain bytes would fail with a confusing JSON error instead of "install zstandard".
    name = url.split("?", 1)[0].lower()
    for suffix, codec in CODEC_SUFFIXES.items():
        if name.endswith(suffix):
            return codec
    # fsspec loads where a file is read, not where a source is named (an up-to-date build).
    from fsspec.utils import infer_compression

    return infer_compression(name)


@contextmanager
def open_binary(
    url: str, storage_options: dict[str, Any] | None, *, decompress: bool = True
) -> Iterator[IO[bytes]]:
    """A binary stream of the file's (decompressed) bytes; missing files become SourceError."""
    opts = storage_options or {}
    comp = compression_of(url) if decompress else None
    if comp is not None and not codec_available(comp):
        hint = " (pip install zstandard)" if comp == "zstd" else ""
        raise SourceError(f"cannot decompress {url}: {comp} support is not installed{hint}")
    from fsspec.core import url_to_fs

    try:
        fs, fs_path = url_to_fs(url, **opts)
    except (ImportError, ValueError) as e:
        raise SourceError(f"cannot open {url}: {e}") from e
    try:
        raw: Any = retry.call(lambda: fs.open(fs_path, "rb"), url=url, what="open")
    except SourceError as e:
        if isinstance(e.__cause__, FileNotFoundError):
            raise SourceError(f"no such file: {url}") from e.__cause__
        raise
    # Decompressors do not close the file they wrap, so every layer is closed here.
    layers: list[Any] = [raw]
    try:
        if not is_local(url) and hasattr(raw, "readinto"):
            layers.append(io.BufferedReader(raw, _REMOTE_BUFFER))
        if comp is not None:
            # Our own decompressors: each refuses a truncated file (zstd's stock reader does not).
            layers.append(decompressor(layers[-1], comp, url))
        with damage_named(url, comp):
            yield layers[-1]
    finally:
        for layer in reversed(layers):
            layer.close()
