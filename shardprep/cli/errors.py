"""One map from exceptions to a one-line message and an exit code."""

from __future__ import annotations

import errno
import sys
import traceback
from collections.abc import Callable
from functools import cache, wraps
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from shardprep.errors import (
    BuildError,
    ManifestError,
    RecipeError,
    RowError,
    ShardprepError,
    SourceError,
    TokenizerError,
    UnknownRendererError,
)

if TYPE_CHECKING:
    from rich.console import Console

F = TypeVar("F", bound=Callable[..., Any])
EXIT_BAD_INPUT = 2
EXIT_BUG = 1

_NEXT_STEP: dict[type[ShardprepError], str] = {
    RecipeError: "fix the recipe; `prep validate RECIPE` checks it without building",
    RowError: "fix the row, or set `on_error: skip` in the recipe to skip and count bad rows",
    SourceError: "check the source `path:` in the recipe (relative paths resolve against the recipe's folder)",
    TokenizerError: "point `tokenizer:` at the model's tokenizer.json or folder, matching the renderer",
    UnknownRendererError: "`prep renderers` lists the renderer names",
    # A plain `prep build` trusts shards of their recorded size (it reads no shard's bytes), so
    # damage that `show`, `verify` or the reader found is rebuilt with --force.
    ManifestError: "`prep verify BUILD` names what is damaged; `prep build RECIPE --force` builds it again",
    BuildError: "see the message above",
}


@cache
def err_console() -> Console:
    """Made at the first message: a command that succeeds quietly (`prep build --json` of an
    up-to-date build) loads no rich."""
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


# OS errors that say the environment refuses a path (not that shardprep is wrong): the user fixes
# the path or its permissions, so they are bad input (exit 2), each with what to do next.
_OS_CAUSE: dict[int, str] = {
    errno.ENOTDIR: "a part of this path is a file, not a folder: choose another path",
    errno.EISDIR: "this path is a folder where a file is needed: choose another path",
    errno.EACCES: "no permission there: choose another path (-o) or fix the folder's permissions",
    errno.EPERM: "not permitted there: choose another path (-o) or fix the folder's permissions",
    errno.EROFS: "the file system is read-only: choose another path (-o)",
    errno.ENOSPC: "the disk is full: free space or write elsewhere (-o)",
    errno.EDQUOT: "the disk quota is exhausted: free space or write elsewhere (-o)",
}


def _hint(exc: ShardprepError) -> str:
    if exc.hint:
        return exc.hint
    if isinstance(exc, RowError) and exc.reason == "missing_field":
        # Usually every row: the format or the columns mapping is wrong, not this one row.
        return "`prep formats` lists each format's fields; `prep validate RECIPE` checks the first rows of every source"
    for cls in type(exc).__mro__:
        if cls in _NEXT_STEP:
            return _NEXT_STEP[cls]  # type: ignore[index]
    return ""


def _os_error_line(exc: OSError) -> str | None:
    """`PATH: cause` for an OSError about a path the user chose; None when it is not one."""
    if exc.errno not in _OS_CAUSE:
        return None
    path = exc.filename if exc.filename is not None else ""
    cause = exc.strerror or type(exc).__name__
    return f"{path}: {cause}" if path else cause


# Network failures reaching a storage endpoint the user named (an S3 endpoint_url, a bucket's
# host): the endpoint or network is wrong, not shardprep. Matched by class, as their libraries
# (botocore, aiohttp, requests, urllib3) load only where a remote path is used.
_UNREACHABLE_HINT = (
    "check the endpoint (`endpoint_url` in output_storage_options or the source's "
    "storage_options), the network, and that the service is running"
)


def _unreachable(exc: BaseException) -> bool:
    for cls in type(exc).__mro__:
        # Not every ConnectionError: a BrokenPipeError is stdout closed by `| head`.
        if cls is ConnectionRefusedError or cls.__name__ == "gaierror":
            return True
        if cls.__module__.split(".")[0] in ("botocore", "aiohttp", "requests", "urllib3") and (
            "Connect" in cls.__name__
        ):
            return True
    return False


def _print_error(message: str, hint: str) -> None:
    # Escaped: messages hold file names, row text ("[INST]") and end in "[reason]", which rich
    # would take as style tags (and drop, or fail on).
    from rich.markup import escape

    err_console().print(f"[bold red]error:[/] {escape(message)}", markup=True)
    if hint:
        err_console().print(f"[dim]next: {escape(hint)}[/]", markup=True)


def handle_errors(debug_flag: Callable[[], bool]) -> Callable[[F], F]:
    def deco(fn: F) -> F:
        @wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except ShardprepError as exc:
                if debug_flag():
                    traceback.print_exc()
                _print_error(str(exc), _hint(exc))
                sys.exit(EXIT_BAD_INPUT)
            except KeyboardInterrupt:
                err_console().print("interrupted")
                sys.exit(130)
            except Exception as exc:
                if debug_flag():
                    traceback.print_exc()
                if _unreachable(exc):
                    _print_error(f"cannot reach storage: {exc}", _UNREACHABLE_HINT)
                    sys.exit(EXIT_BAD_INPUT)
                if not isinstance(exc, OSError):
                    _internal(exc)  # a bug: say so, keep the traceback behind --debug
                line = _os_error_line(exc)
                if line is None:
                    _internal(exc)
                _print_error(f"cannot use {line}", _OS_CAUSE[exc.errno or 0])
                sys.exit(EXIT_BAD_INPUT)

        return wrapper  # type: ignore[return-value]

    return deco


def _internal(exc: BaseException) -> NoReturn:
    """A bug: say so (the traceback stays behind --debug) and exit 1."""
    from rich.markup import escape

    err_console().print(
        f"[bold red]internal error:[/] {escape(f'{type(exc).__name__}: {exc}')}", markup=True
    )
    err_console().print(
        "[dim]this is a bug in shardprep; rerun with --debug for the traceback[/]", markup=True
    )
    sys.exit(EXIT_BUG)
