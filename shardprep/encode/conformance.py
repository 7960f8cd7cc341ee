"""Conformance: does a built-in renderer write the same text as the model's own chat template?

A built-in renderer follows tinker-cookbook, which deliberately differs from some Hugging Face
templates (no Llama knowledge-date preamble, history thinking kept or stripped differently).
Counting, per build, the rows whose text equals the template's makes such a difference visible
in the manifest instead of discovering it at inference time.

The build calls `add()` once per row batch with the conversations and what the renderer made of
them (text chunks, or the already-joined text); `result()` is the manifest entry.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

from shardprep.errors import RowError, ShardprepError
from shardprep.renderers.base import Renderer, TrainOnWhat, plan_prompt, plan_supervised
from shardprep.renderers.chunks import Chunk, TextChunk
from shardprep.renderers.content import Message
from shardprep.renderers.jinja_template import ChatTemplate, template_messages
from shardprep.tokenizer import LoadedTokenizer

# Long conversations make long diffs; the manifest keeps the first lines only.
MAX_DIFF_LINES = 80


def chunks_text(chunks: Sequence[Chunk], tokenizer: LoadedTokenizer | None = None) -> str:
    """The text of a rendered conversation (id chunks are decoded when a tokenizer is given)."""
    out = []
    for c in chunks:
        if isinstance(c, TextChunk):
            out.append(c.text)
        elif tokenizer is not None:
            out.append(tokenizer.tokenizer.decode(list(c.ids), skip_special_tokens=False))
    return "".join(out)


def prompt_texts(
    renderer: Renderer, conversations: Sequence[Sequence[Message]]
) -> list[str | RowError]:
    """The renderer's generation-prompt text for each conversation (RowError where it cannot)."""
    out: list[str | RowError] = []
    for messages in conversations:
        try:
            out.append(chunks_text(plan_prompt(renderer, messages), renderer.tokenizer))
        except RowError as exc:
            out.append(exc)
    return out


def rendered_texts(
    renderer: Renderer, conversations: Sequence[Sequence[Message]], train_on: TrainOnWhat
) -> list[str | RowError]:
    """The renderer's text for each conversation (a RowError where it cannot render it)."""
    out: list[str | RowError] = []
    for messages in conversations:
        try:
            plan = plan_supervised(renderer, messages, train_on)
        except RowError as exc:
            out.append(exc)
            continue
        out.append(chunks_text(plan.chunks, renderer.tokenizer))
    return out


# Characters a terminal shows as nothing (or as a plain space) in a changed line, and how a diff
# shows them: two lines that differ only there would otherwise print the same.
_SHOWN = {"\t": "→", "\r": "␍", "\u00a0": "⍽"}
_CONTEXT = 24  # characters shown either side of the first difference


def _visible(line: str) -> str:
    """A changed diff line with its whitespace and invisible characters made visible."""
    body = line[:-1] if line.endswith("\n") else line
    out = []
    for ch in body:
        if ch in _SHOWN:
            out.append(_SHOWN[ch])
        elif ch != " " and (not ch.isprintable() or ch.isspace()):
            out.append(f"\\u{ord(ch):04x}")  # zero-width, other spaces, controls
        else:
            out.append(ch)
    text = "".join(out)
    stripped = text.rstrip(" ")
    text = stripped + "·" * (len(text) - len(stripped))  # trailing spaces
    if line.endswith("\n"):
        return text + "\n"
    return text + "\n\\ No newline at end of file\n"


def first_difference_line(expected: str, got: str) -> str:
    """Where the two texts first differ (line, column, and both sides there, escaped): what a
    reader needs when the changed lines differ only in whitespace."""
    i = next(
        (k for k, (a, b) in enumerate(zip(expected, got, strict=False)) if a != b),
        min(len(expected), len(got)),
    )
    line = expected.count("\n", 0, i) + 1
    column = i - (expected.rfind("\n", 0, i) + 1) + 1
    lo = max(0, i - _CONTEXT)

    def near(text: str) -> str:
        part = text[lo : i + _CONTEXT]
        return ("…" if lo else "") + repr(part) + ("…" if i + _CONTEXT < len(text) else "")

    return (
        f"first difference at line {line}, column {column}: chat_template {near(expected)}, "
        f"renderer {near(got)}\n"
    )


def unified_diff(expected: str, got: str, *, max_lines: int = MAX_DIFF_LINES) -> str:
    lines = [
        _visible(line) if line[:1] in "-+" and not line.startswith(("---", "+++")) else line
        for line in difflib.unified_diff(
            expected.splitlines(keepends=True),
            got.splitlines(keepends=True),
            fromfile="chat_template",
            tofile="renderer",
        )
    ]
    if len(lines) > max_lines:
        lines = [*lines[:max_lines], f"... ({len(lines) - max_lines} more diff lines)\n"]
    return "".join(lines) + first_difference_line(expected, got)


class ConformanceCheck:
    """Counts rows whose renderer text equals the model's chat_template text.

    `template_source` says where the template came from (e.g. the tokenizer_config.json path);
    it is recorded as is. Rows the template itself refuses count as checked, not identical.
    """

    def __init__(self, template: ChatTemplate, template_source: str) -> None:
        self.template = template
        self.template_source = template_source
        self.checked = 0
        self.identical = 0
        self.template_errors = 0
        self.first_difference: dict[str, Any] | None = None

    @classmethod
    def for_tokenizer(cls, tokenizer: LoadedTokenizer) -> ConformanceCheck | None:
        """A check against the tokenizer's own chat_template, or None when it has none."""
        try:
            template = ChatTemplate.from_config(tokenizer.config)
        except ShardprepError:
            return None
        return cls(template, f"{tokenizer.source} (tokenizer_config.json chat_template)")

    def add(
        self,
        conversations: Sequence[Sequence[Message]],
        rendered: Sequence[str | Sequence[Chunk] | RowError | None],
        *,
        indices: Sequence[int] | None = None,
        tokenizer: LoadedTokenizer | None = None,
        add_generation_prompt: bool = False,
    ) -> None:
        """One batch: `rendered[i]` is the text or chunks of `conversations[i]`.

        Rows the renderer failed on (RowError / None) are skipped. `indices` are the rows'
        global ordinals, used to name the first differing row (default: a running count).
        """
        for k, (messages, got) in enumerate(zip(conversations, rendered, strict=True)):
            if got is None or isinstance(got, RowError):
                continue
            index = indices[k] if indices is not None else self.checked
            text = got if isinstance(got, str) else chunks_text(got, tokenizer)
            self.checked += 1
            try:
                expected = self.template.render(
                    template_messages(messages), add_generation_prompt=add_generation_prompt
                )
            except RowError as exc:
                self.template_errors += 1
                self._note(index, f"chat_template refused this conversation: {exc.message}\n")
                continue
            # Templates end a conversation with the separator that would precede the next turn
            # (Qwen's "<|im_end|>\n"); a training example stops at the end-of-turn token, and
            # whitespace after it is never a target, so it does not count as a difference.
            if expected.rstrip() == text.rstrip():
                self.identical += 1
            else:
                # The diff leaves out that trailing whitespace too, or its last lines would
                # print as a -/+ pair that looks the same.
                self._note(index, unified_diff(expected.rstrip() + "\n", text.rstrip() + "\n"))

    def _note(self, index: int, diff: str) -> None:
        if self.first_difference is None:
            self.first_difference = {"index": index, "diff": diff}

    def result(self) -> dict[str, Any]:
        return {
            "template": self.template_source,
            "checked": self.checked,
            "identical": self.identical,
            "first_difference": self.first_difference,
        }


def merge_conformance(parts: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Several samples (one per work unit) as one record; the first difference in the given order."""
    if not parts:
        return None
    return {
        "template": parts[0]["template"],
        "checked": sum(p["checked"] for p in parts),
        "identical": sum(p["identical"] for p in parts),
        "first_difference": next(
            (p["first_difference"] for p in parts if p["first_difference"]), None
        ),
    }


# Differences between a built-in renderer and the model's own template that tinker-cookbook makes
# on purpose: the warning says so and names the renderer that matches the template.
KNOWN_DIFFERENCES: dict[str, str] = {
    "llama3": (
        "tinker's llama3 renderer writes no 'Cutting Knowledge Date' system block, which Llama 3's "
        "own template adds"
    ),
}


HF_TEMPLATE_CAVEAT = (
    "renderer hf_template renders that template itself but refuses each row it cannot split into "
    "per-message tokens (reason renderer_error; often multi-turn or tool-call rows), so it may "
    "build fewer rows: compare `prep preview` with each renderer before switching"
)


def mismatch_warning(conformance: dict[str, Any] | None, renderer: str) -> dict[str, Any] | None:
    """The `template_mismatch` warning for a conformance record, or None when every row matched.

    Build summaries, `prep show` and `prep preview` all say it with these words.
    """
    if not conformance or not conformance.get("checked"):
        return None
    diff = conformance["checked"] - conformance.get("identical", 0)
    if diff <= 0:
        return None
    message = (
        f"{diff:,} of {conformance['checked']:,} sampled rows render differently from the chat "
        f"template {conformance.get('template')!r} used at inference"
    )
    known = KNOWN_DIFFERENCES.get(renderer)
    if known:
        message += f" (known: {known})"
    if renderer != "hf_template":
        # Not a plain "use hf_template": it builds only the rows whose template output splits
        # into per-message tokens, and skips the others (often multi-turn or tool-call rows).
        message += f"; {HF_TEMPLATE_CAVEAT}"
    first = conformance.get("first_difference") or {}
    return {
        "code": "template_mismatch",
        "message": message,
        "count": diff,
        "checked": conformance["checked"],
        "known": bool(known),
        "first_difference": first or None,
    }
