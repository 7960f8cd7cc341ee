"""Time and size limits for rendering a model's chat template (code that came with a download).

Jinja's sandbox stops a template from reaching Python internals, not from looping for hours or
building a string of gigabytes. This environment checks a deadline at every call, filter, `range`
step and output chunk, and refuses, before building it, any value past the output bound: `*`,
`+`, `%`, `**`, `~` (concatenation) and the padding/replacing filters and string methods.
A real render takes well under a millisecond and writes at most a few MB.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.sandbox import ImmutableSandboxedEnvironment

from shardprep.errors import RendererError

MAX_RENDER_S = 10.0
MAX_OUTPUT_CHARS = 64_000_000
_MAX_EXPONENT = 4096


def _size(value: Any) -> int:
    """Characters of a string; a list's items weigh 64 each (a pointer plus a small object)."""
    if isinstance(value, str):
        return len(value)
    return 64 * len(value) if isinstance(value, (list, tuple)) else 0


class _BoundedCodeGenerator(CodeGenerator):
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        # The stock code joins at once; the parts' total is checked first.
        if frame.eval_ctx.volatile:
            func_name = "(markup_join if context.eval_ctx.volatile else str_join)"
        elif frame.eval_ctx.autoescape:
            func_name = "markup_join"
        else:
            func_name = "str_join"
        self.write(f"{func_name}(environment.bounded_parts((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write(")))")


class BoundedEnvironment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "+", "%", "**"})
    code_generator_class = _BoundedCodeGenerator

    def __init__(self, *, label: str = "chat template", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.label = label
        self.deadline = float("inf")
        sandbox_range: Any = self.globals["range"]

        def bounded_range(*args: int) -> Iterator[int]:
            sandbox_range(*args)  # the sandbox's own length limit (MAX_RANGE)
            for i, value in enumerate(range(*args)):
                if not i & 255:
                    self.check_time()
                yield value

        self.globals["range"] = bounded_range
        self.filters = {name: self._bounded_filter(f) for name, f in self.filters.items()}

    def start(self) -> None:
        self.deadline = time.monotonic() + MAX_RENDER_S

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise RendererError(
                f"{self.label} took longer than {MAX_RENDER_S:g} s to render this conversation "
                "(a runaway loop?)",
                field="messages",
            )

    def too_large(self) -> RendererError:
        return RendererError(
            f"{self.label} output would exceed {MAX_OUTPUT_CHARS:,} characters for this conversation",
            field="messages",
        )

    def check_size(self, n: int) -> None:
        if n > MAX_OUTPUT_CHARS:
            raise self.too_large()

    def bounded_parts(self, parts: tuple[Any, ...]) -> tuple[Any, ...]:
        self.check_time()
        self.check_size(sum(len(p) if isinstance(p, str) else len(str(p)) for p in parts))
        return parts

    def _check_args(self, value: Any, name: str, args: tuple[Any, ...]) -> None:
        """Refuse before building: a width past the bound, or a replace that would grow past it."""
        if any(isinstance(a, int) and a > MAX_OUTPUT_CHARS for a in args):
            raise self.too_large()
        if name == "replace" and isinstance(value, str) and len(args) >= 2:
            old, new = str(args[0]), str(args[1])
            hits = len(value) + 1 if not old else value.count(old)
            self.check_size(len(value) + hits * len(new))

    def _bounded_filter(self, f: Callable[..., Any]) -> Callable[..., Any]:
        name = getattr(f, "__name__", "").removeprefix("do_")
        # pass_context / pass_eval_context / pass_environment filters take that object first.
        first = 1 if hasattr(f, "jinja_pass_arg") else 0
        env = self

        def bounded(*args: Any, **kwargs: Any) -> Any:
            env.check_time()
            plain = args[first:]
            if plain:
                env._check_args(plain[0], name, tuple(plain[1:]) + tuple(kwargs.values()))
            out = f(*args, **kwargs)
            env.check_size(_size(out))
            return out

        for attr in ("jinja_pass_arg",):  # keep the pass_context / pass_environment marker
            if hasattr(f, attr):
                setattr(bounded, attr, getattr(f, attr))
        return bounded

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        __self.check_time()
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str):
            __self._check_args(owner, getattr(__obj, "__name__", ""), args + tuple(kwargs.values()))
        out = super().call(__context, __obj, *args, **kwargs)
        __self.check_size(_size(out))
        return out

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        self.check_time()
        if operator == "*":
            seq, n = (left, right) if isinstance(right, int) else (right, left)
            if isinstance(n, int) and _size(seq) * n > MAX_OUTPUT_CHARS:
                raise self.too_large()
        elif operator == "+":
            self.check_size(_size(left) + _size(right))
        elif operator == "%" and isinstance(left, str):
            args = right if isinstance(right, tuple) else (right,)
            self.check_size(len(left) + sum(len(str(a)) for a in args))
        elif operator == "**" and isinstance(right, int) and right > _MAX_EXPONENT:
            raise self.too_large()
        return super().call_binop(context, operator, left, right)
