"""Decompressing readers that refuse a truncated or damaged file instead of ending it early.

gzip, bz2 and xz readers raise EOFError when the input ends before the end-of-stream marker.
zstandard's stream reader does not: a file cut at a block boundary simply reads as a shorter file,
and a file cut mid-line as a shorter file with one bad last line. A damaged file is not a bad row,
so it must stop the build with the file named; the zstd reader here feeds the input to one
decompression object per frame and, at the end of the input, refuses a frame that never ended.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

from shardprep.errors import SourceError

_INPUT_BLOCK = 1 << 17


class ZstdReader(io.RawIOBase):
    """Raw stream of the decompressed bytes of every frame of a zstd file (frames concatenated,
    as `zstd` and `pzstd` write them); raises SourceError when the last frame is cut short."""

    def __init__(self, f: IO[bytes], url: str) -> None:
        import zstandard

        self._new = zstandard.ZstdDecompressor().decompressobj
        self._f = f
        self._url = url
        self._d = self._new()
        self._in_frame = False  # input was fed to the current frame and it has not ended
        self._buf = b""
        self._pos = 0
        self._eof = False

    def readable(self) -> bool:
        return True

    def _feed(self, data: bytes) -> None:
        out = []
        while data:
            if self._d.eof:
                self._d = self._new()
            out.append(self._d.decompress(data))
            if self._d.eof:
                self._in_frame = False
                data = self._d.unused_data
            else:
                self._in_frame = True
                data = b""
        self._buf = self._buf[self._pos :] + b"".join(out)
        self._pos = 0

    def readinto(self, b: Any) -> int:
        while self._pos >= len(self._buf) and not self._eof:
            chunk = self._f.read(_INPUT_BLOCK)
            if not chunk:
                self._eof = True
                if self._in_frame:
                    raise SourceError(
                        f"{self._url}: the zstd file is truncated (its last frame has no end); "
                        "the file is damaged or was not completely copied"
                    )
                break
            self._feed(chunk)
        n = min(len(b), len(self._buf) - self._pos)
        b[:n] = self._buf[self._pos : self._pos + n]
        self._pos += n
        return n


def _damage_types() -> tuple[type[BaseException], ...]:
    kinds: list[type[BaseException]] = [EOFError, zlib.error, lzma.LZMAError, gzip.BadGzipFile]
    try:
        import zstandard

        kinds.append(zstandard.ZstdError)
    except ImportError:
        pass
    return tuple(kinds)


@contextmanager
def damage_named(url: str, codec: str | None) -> Iterator[None]:
    """Decompression errors raised inside the block become one SourceError naming the file."""
    if codec is None:
        yield
        return
    try:
        yield
    except _damage_types() as exc:
        raise SourceError(f"{url}: the {codec} file is truncated or damaged ({exc})") from exc
    except OSError as exc:
        # bz2 reports a corrupt stream as a bare OSError; anything else (network) passes through.
        if codec == "bz2" and "Invalid data stream" in str(exc):
            raise SourceError(f"{url}: the bz2 file is damaged ({exc})") from exc
        raise


def codec_available(codec: str) -> bool:
    if codec == "zstd":
        try:
            import zstandard  # noqa: F401
        except ImportError:
            return False
        return True
    import fsspec.compression

    return codec in fsspec.compression.compr


def decompressor(raw: IO[bytes], codec: str, url: str) -> io.BufferedIOBase:
    """A buffered binary stream of `raw`'s decompressed bytes."""
    if codec == "zstd":
        return io.BufferedReader(ZstdReader(raw, url), 1 << 20)
    if codec == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if codec == "bz2":
        return bz2.BZ2File(raw, mode="rb")
    if codec == "xz":
        return lzma.LZMAFile(raw, mode="rb")
    import fsspec.compression

    reader: io.BufferedIOBase = fsspec.compression.compr[codec](raw, mode="rb")
    return reader
