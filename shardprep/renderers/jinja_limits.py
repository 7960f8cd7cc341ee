"""Time and size limits for rendering a model's chat template (code that came with a download).

Jinja's sandbox stops a template from reaching Python internals, not from looping for hours or
building a string of gigabytes. This environment checks a deadline at every call, filter, `range`
step, `for` loop step (over anything: a 100,000-character string looped in a loop is 10^10 steps)
and output chunk, and refuses, before building it, any value past the output bound: `*`, `+`, `%`,
`**`, `~` (concatenation), the widths and precisions inside `%` and `str.format` strings, `tojson`'s
indent, the padding/indenting/joining/replacing filters and string methods, and the lists that
splitting a string or listing its characters would make. The size is
estimated from the arguments, never learned by building the value: a width of 3,000,000,000 would
allocate gigabytes before any check after the fact could run.
A real render takes well under a millisecond and writes at most a few MB.
"""

from __future__ import annotations

import re
import string
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.sandbox import ImmutableSandboxedEnvironment

from shardprep.errors import RendererError

MAX_RENDER_S = 10.0
MAX_OUTPUT_CHARS = 64_000_000
_MAX_EXPONENT = 4096


# One `%` conversion: `%%`, or key, flags, width (digits or `*`), precision (digits or `*`).
_PERCENT_SPEC = re.compile(r"%(?:%|(?:\([^)]*\))?[-#0 +]*(\*|\d*)(?:\.(\*|\d*))?)")
_DIGITS = re.compile(r"\d+")
# Filters and str methods whose numeric argument is the size of what they build.
_WIDTH_NAMES = frozenset({"center", "ljust", "rjust", "zfill"})


# What str.split() and str.splitlines() split at (every character str.isspace() accepts; the
# line breaks): deleted by translate, the length lost counts them at C speed.
_SPACES = dict.fromkeys(
    map(
        ord,
        "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
        "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000",
    )
)
_BREAKS = dict.fromkeys(map(ord, "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"))
# Filters that make a list of their input's items: of a string, one item per character.
_LISTING_FILTERS = frozenset(
    {"list", "batch", "slice", "unique", "sort", "map", "select", "reject", "groupby"}
)


class _TimedIter:
    """A `for` loop's items, checking the deadline every 256; keeps the iterable's length, so
    `loop.length` reads it instead of listing the items (a 64M-character string: 512 MB)."""

    __slots__ = ("_env", "_items", "_source", "_n")

    def __init__(self, env: BoundedEnvironment, source: Iterable[Any]) -> None:
        self._env = env
        self._source = source
        self._items = iter(source)
        self._n = 0

    def __iter__(self) -> _TimedIter:
        return self

    def __next__(self) -> Any:
        if not self._n & 255:
            self._env.check_time()
        self._n += 1
        return next(self._items)

    def __len__(self) -> int:
        return len(self._source)  # type: ignore[arg-type]  # TypeError: LoopContext lists it


def _size(value: Any) -> int:
    """Characters of a string; a list's items weigh 64 each (a pointer plus a small object)."""
    if isinstance(value, str):
        return len(value)
    return 64 * len(value) if isinstance(value, (list, tuple)) else 0


class _BoundedCodeGenerator(CodeGenerator):
    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        # Loops over strings, lists and dicts call nothing the sandbox sees; the iterable is
        # wrapped for the one compile (the AST is left as it was).
        # (Jinja allows no custom node types: the wrapper is a call of an environment method.)
        original = node.iter
        wrapper = nodes.EnvironmentAttribute("bounded_iter", lineno=original.lineno)
        node.iter = nodes.Call(wrapper, [original], [], None, None, lineno=original.lineno)
        try:
            super().visit_For(node, frame)
        finally:
            node.iter = original

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
        self.filters = {name: self.bounded_filter(name, f) for name, f in self.filters.items()}

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

    def bounded_iter(self, iterable: Iterable[Any]) -> _TimedIter:
        return _TimedIter(self, iterable)

    def bounded_parts(self, parts: tuple[Any, ...]) -> tuple[Any, ...]:
        self.check_time()
        self.check_size(sum(len(p) if isinstance(p, str) else len(str(p)) for p in parts))
        return parts

    def _check_args(
        self,
        value: Any,
        name: str,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        *,
        is_filter: bool,
    ) -> None:
        """Refuse before building: a width past the bound, or a value its arguments say would
        grow past it. `value` is the string a method is called on, or a filter's input; `args`
        and `kwargs` the rest."""
        given = (*args, *kwargs.values())
        if any(isinstance(a, int) and a > MAX_OUTPUT_CHARS for a in given):
            raise self.too_large()
        n = _size(value)
        if name == "replace" and isinstance(value, str) and len(args) >= 2:
            old, new = str(args[0]), str(args[1])
            hits = len(value) + 1 if not old else value.count(old)
            self.check_size(len(value) + hits * len(new))
        elif name in _WIDTH_NAMES:
            self.check_size(n + sum(a for a in given if isinstance(a, int)))
        elif name == "indent" and isinstance(value, str):
            # Every line gets the indent (the filter's width: a count or a string).
            width = args[0] if args else kwargs.get("width", 4)
            w = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
            self.check_size(n + (value.count("\n") + 1) * w)
        elif name == "wordwrap" and isinstance(value, str):
            # do_wordwrap(s, width, break_long_words, wrapstring, ...)
            wrap = args[2] if len(args) > 2 else kwargs.get("wrapstring")
            if isinstance(wrap, str):  # written between lines: at most one line per character
                self.check_size(n + (n + 1) * len(wrap))
        elif name == "expandtabs" and isinstance(value, str):
            tab = args[0] if args else kwargs.get("tabsize", 8)
            self.check_size(n + value.count("\t") * (tab if isinstance(tab, int) else 8))
        elif name == "join":
            # str.join: `value` is the separator and args[0] the items; the filter: the reverse.
            if is_filter:
                sep, items = (args[0] if args else kwargs.get("d", "")), value
            else:
                sep, items = value, (args[0] if args else ())
            if isinstance(sep, str) and isinstance(items, str):  # joins its characters
                self.check_size(len(sep) * len(items) + len(items))
            elif isinstance(sep, str) and isinstance(items, (list, tuple)):
                self.check_size(
                    len(sep) * len(items) + sum(len(x) for x in items if isinstance(x, str))
                )
        elif name in ("format", "format_map") and isinstance(value, str):
            # The `format` filter is `%` formatting; str.format the format mini-language.
            if is_filter:
                self.check_percent(value, dict(kwargs) or args)
            else:
                self._check_format(value, given)
        elif name == "translate" and isinstance(value, str) and args:
            if isinstance(args[0], Mapping):
                lengths = (len(v) for v in args[0].values() if isinstance(v, str))
                self.check_size(n * max(1, max(lengths, default=1)))
        elif name == "tojson":
            indent = args[1] if len(args) > 1 else kwargs.get("indent")
            self._check_tojson(value, indent)
        elif name in ("split", "rsplit", "splitlines") and isinstance(value, str):
            # A list of pieces: at most one per separator, plus one.
            sep = args[0] if args else kwargs.get("sep")
            if name == "splitlines":
                pieces = n - len(value.translate(_BREAKS)) + 1
            elif isinstance(sep, str) and sep:
                pieces = value.count(sep) + 1
            else:
                pieces = n - len(value.translate(_SPACES)) + 1
            self.check_size(64 * pieces)
        elif is_filter and name in _LISTING_FILTERS and isinstance(value, str):
            self.check_size(64 * len(value))  # as _size weighs the list it makes

    def check_percent(self, fmt: str, args: Any) -> None:
        """`fmt % args`: its widths and precisions (and `*` values) are characters it writes."""
        items = args if isinstance(args, tuple) else (args,)
        total = len(fmt) + sum(len(str(x)) for x in items)
        star = False
        for m in _PERCENT_SPEC.finditer(fmt):
            for part in m.groups():
                if part == "*":
                    star = True
                elif part:
                    total += int(part)
            if total > MAX_OUTPUT_CHARS:
                raise self.too_large()
        if star:
            total += sum(abs(x) for x in items if isinstance(x, int))
        self.check_size(total)

    def _check_format(self, fmt: str, args: tuple[Any, ...]) -> None:
        """`fmt.format(*args)`: the numbers in its format specs are characters it writes."""
        total = len(fmt) + sum(len(str(x)) for x in args)
        try:
            fields = list(string.Formatter().parse(fmt))
        except ValueError:
            return  # str.format refuses it too, building nothing
        for _, _, spec, _ in fields:
            # Every number in a spec counts: width and precision are among them (a fill digit or
            # a `0` flag only makes the estimate larger). A nested `{}` is an argument, checked
            # above against the bound.
            total += sum(int(d) for d in _DIGITS.findall(spec or ""))
            if total > MAX_OUTPUT_CHARS:
                raise self.too_large()
        self.check_size(total)

    def _check_tojson(self, value: Any, indent: Any) -> None:
        width = len(indent) if isinstance(indent, str) else indent if isinstance(indent, int) else 0
        if width <= 0:
            return
        # Indented JSON writes at most one line per value, each indented `depth * width`.
        nodes_seen, depth, stack = 0, 0, [(value, 1)]
        while stack:
            item, d = stack.pop()
            nodes_seen += 1
            depth = max(depth, d)
            if isinstance(item, Mapping):
                stack.extend((v, d + 1) for v in item.values())
            elif isinstance(item, (list, tuple)):
                stack.extend((v, d + 1) for v in item)
            if nodes_seen * depth * width > MAX_OUTPUT_CHARS:
                raise self.too_large()

    def bounded_filter(self, name: str, f: Callable[..., Any]) -> Callable[..., Any]:
        """`f` as the filter `name`, checked like the built-in filters (add every filter so)."""
        # pass_context / pass_eval_context / pass_environment filters take that object first.
        first = 1 if hasattr(f, "jinja_pass_arg") else 0
        env = self

        def bounded(*args: Any, **kwargs: Any) -> Any:
            env.check_time()
            plain = args[first:]
            if plain:
                env._check_args(plain[0], name, tuple(plain[1:]), kwargs, is_filter=True)
            out = f(*args, **kwargs)
            env.check_size(_size(out))
            return out

        for attr in ("jinja_pass_arg",):  # keep the pass_context / pass_environment marker
            if hasattr(f, attr):
                setattr(bounded, attr, getattr(f, attr))
        return bounded

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        __self.check_time()
        # The sandbox hands out str.format / format_map wrapped (`__wrapped__` is the method).
        owner = getattr(getattr(__obj, "__wrapped__", __obj), "__self__", None)
        if isinstance(owner, str):
            name = getattr(__obj, "__name__", "")
            # Jinja's own bookkeeping (`_loop_vars`, `_block_vars`) is not the method's.
            given = {k: v for k, v in kwargs.items() if not k.startswith("_")}
            __self._check_args(owner, name, args, given, is_filter=False)
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
            self.check_percent(left, right)
        elif operator == "**" and isinstance(right, int) and right > _MAX_EXPONENT:
            raise self.too_large()
        return super().call_binop(context, operator, left, right)
