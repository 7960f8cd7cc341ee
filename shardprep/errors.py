"""One exception hierarchy; the CLI maps each class to an exit code and a one-line message."""

from __future__ import annotations

from typing import Any


class ShardprepError(Exception):
    """Base of every error shardprep raises on purpose (exit 2: the input, not the code, is wrong)."""

    hint: str = ""

    def __reduce__(self) -> tuple[Any, ...]:
        # Errors cross process boundaries (pool and Ray workers). The default pickling calls
        # `cls(*self.args)`, which fails for subclasses whose __init__ takes other arguments
        # (RowError, RecipeError); rebuild from the attributes instead, so the driver gets the
        # same class with the same reason, file, line and field.
        return (_rebuild_error, (type(self), self.args, dict(self.__dict__)))


def _rebuild_error(
    cls: type[ShardprepError], args: tuple[Any, ...], state: dict[str, Any]
) -> ShardprepError:
    err = cls.__new__(cls)
    err.args = args
    err.__dict__.update(state)
    return err


class RecipeError(ShardprepError):
    """The recipe is invalid; carries every problem found, each with its YAML path."""

    def __init__(self, problems: list[str], *, path: str | None = None) -> None:
        self.problems = problems
        self.path = path
        where = f"{path}: " if path else ""
        super().__init__(
            where
            + f"{len(problems)} problem(s) in recipe:\n"
            + "\n".join(f"  - {p}" for p in problems)
        )


class SourceError(ShardprepError):
    """A source cannot be opened or read (missing file, unreadable format)."""


class RowError(ShardprepError):
    """One input row is bad. `reason` is a short stable key used for skip counts in the manifest."""

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
        unit: str = "line",
    ) -> None:
        self.reason = reason
        self.message = message
        self.file = file
        self.line = line
        # What `line` counts in its file: "line" (JSONL, CSV: 1-based), "element" (JSON array) or
        # "row" (Parquet, the Hub), both 0-based; a Parquet row is never called a line.
        self.unit = unit
        self.field = field
        super().__init__(self.describe())

    def describe(self) -> str:
        where = []
        if self.file:
            where.append(self.file)
        if self.line is not None:
            where.append(f"{getattr(self, 'unit', 'line')} {self.line}")
        if self.field:
            where.append(f"field {self.field!r}")
        prefix = ", ".join(where)
        text = f"{prefix}: {self.message}" if prefix else self.message
        return f"{text} [{self.reason}]"

    def located(
        self, *, file: str | None = None, line: int | None = None, unit: str | None = None
    ) -> RowError:
        """Fill in the location when the stage that raised did not know it."""
        if self.file is None and file is not None:
            self.file = file
        if self.line is None and line is not None:
            self.line = line
            if unit is not None:
                self.unit = unit
        self.args = (self.describe(),)
        return self


def as_row_error(exc: Exception) -> RowError:
    """A row's failure as a RowError: its own, or any unexpected exception while reading it (a
    bug, but one row's: counted under `unexpected_error` or failing with its file and line, never
    an internal error that costs the build). Build-level errors (tokenizer, recipe) propagate."""
    if isinstance(exc, RowError):
        return exc
    if isinstance(exc, ShardprepError):
        raise exc
    return RowError(
        "unexpected_error", f"unexpected {type(exc).__name__} while reading this row: {exc}"
    )


class RendererError(RowError):
    """A renderer cannot render a conversation (tinker-cookbook raises RendererError in the same cases)."""

    def __init__(
        self, message: str, *, field: str | None = None, reason: str = "renderer_error"
    ) -> None:
        super().__init__(reason, message, field=field)


class TokenizerError(ShardprepError):
    """The tokenizer cannot be loaded or lacks a special token the renderer needs."""


class UnknownRendererError(ShardprepError):
    pass


class BuildError(ShardprepError):
    """The build cannot proceed (lock held, output not writable, ...)."""


class ManifestError(ShardprepError):
    """A manifest or shard directory is missing, invalid or inconsistent."""
