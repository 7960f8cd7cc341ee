"""One map from exceptions to a one-line message and an exit code."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from rich.console import Console
from rich.markup import escape

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

F = TypeVar("F", bound=Callable[..., Any])
EXIT_BAD_INPUT = 2
EXIT_BUG = 1

_NEXT_STEP: dict[type[ShardprepError], str] = {
    RecipeError: "fix the recipe; `prep validate RECIPE` checks it without building",
    RowError: "fix the row, or set `on_error: skip` in the recipe to skip and count bad rows",
    SourceError: "check the source `path:` in the recipe (relative paths resolve against the recipe's folder)",
    TokenizerError: "point `tokenizer:` at the model's tokenizer.json or folder, matching the renderer",
    UnknownRendererError: "`prep renderers` lists the renderer names",
    ManifestError: "rebuild with `prep build RECIPE`",
    BuildError: "see the message above",
}

err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def _hint(exc: ShardprepError) -> str:
    if exc.hint:
        return exc.hint
    for cls in type(exc).__mro__:
        if cls in _NEXT_STEP:
            return _NEXT_STEP[cls]  # type: ignore[index]
    return ""


def handle_errors(debug_flag: Callable[[], bool]) -> Callable[[F], F]:
    def deco(fn: F) -> F:
        @wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except ShardprepError as exc:
                if debug_flag():
                    traceback.print_exc()
                # Escaped: messages end in "[reason]", which rich would take as a style tag and drop.
                err_console.print(f"[bold red]error:[/] {escape(str(exc))}", markup=True)
                hint = _hint(exc)
                if hint:
                    err_console.print(f"[dim]next: {hint}[/]", markup=True)
                sys.exit(EXIT_BAD_INPUT)
            except KeyboardInterrupt:
                err_console.print("interrupted")
                sys.exit(130)
            except Exception as exc:  # a bug: say so, keep the traceback behind --debug
                if debug_flag():
                    traceback.print_exc()
                err_console.print(f"[bold red]internal error:[/] {type(exc).__name__}: {exc}", markup=True)
                err_console.print("[dim]this is a bug in shardprep; rerun with --debug for the traceback[/]", markup=True)
                sys.exit(EXIT_BUG)

        return wrapper  # type: ignore[return-value]

    return deco
