"""Added-token literals spelled in message text: found, counted, and kept, escaped or refused.

A renderer writes message text into text chunks; an encoding with added tokens live turns a
literal such as `<|eot_id|>` in that text into the token's id, as tinker-cookbook does (the
Qwen3 family encodes content with special tokens escaped, but its non-special added tokens,
`<think>` and `<tool_call>`, stay live). Inside a trained message that teaches the model to emit
a control token mid-answer. `ContentScreen` finds such rows in the one encode path
(`encode/tokenize.py`), for every renderer alike:

1. a precompiled regex over the tokenizer's added-token literals is searched in each message
   string (one C-level scan per string; a row without a match costs nothing more);
2. a row that matches is planned a second time with each literal in its strings replaced by an
   ASCII marker, and the literals that become ids (live in their chunk's encoding) are counted
   in both plans' text chunks: what the first plan has beyond the second came from the message
   text. A literal the renderer drops (history reasoning) or reads as structure (Qwen3's inline
   `</think>`) is therefore not counted, and `keep` never changes a token;
3. under `escape` the row takes the marked plan, each marked chunk encoded as ids: its template
   literals as their ids, the text between them (markers restored) as plain text, every added
   token spelled out; under `refuse` the row is a `special_token_in_content` row error.

Whitespace-only added tokens (indentation and newline tokens) are vocabulary, not control tokens,
and are left out; so are the messages a renderer writes itself (`renderers.tools.TemplateMessage`:
a tool declaration prefix spells `<tool_call>` on purpose, and it holds the declarations and the
system prompt it replaced, which are therefore not screened).

Splitting a chunk at its live literals and encoding the pieces alone is what `tokenizers` does
itself for added tokens without `lstrip` / `rstrip` / `single_word`; `tests/encode/test_special.py`
proves the escape path equal to the ordinary one on rows without literals.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from shardprep.errors import RowError
from shardprep.renderers.base import SupervisedPlan
from shardprep.renderers.chunks import Chunk, Encoding, IdsChunk, TextChunk
from shardprep.renderers.content import Message
from shardprep.tokenizer import LoadedTokenizer

SPECIAL_TOKEN_IN_CONTENT = "special_token_in_content"
POLICIES = ("keep", "escape", "refuse")

# Stands in for literal k as "QsPtk<k>kTPsQ": ASCII letters and digits, so it survives JSON
# dumps, stripping and Jinja unchanged; a row that already holds the prefix cannot be marked.
_MARK = "QsPtk"
_MARKED = re.compile(r"QsPtk(\d+)kTPsQ")

Plan = SupervisedPlan | list[Chunk] | RowError


def _trie_pattern(words: Sequence[str]) -> str:
    """One regex matching any of `words`, leftmost-longest, as a trie (no per-word alternation:
    a scan tests one character class per position, not every literal)."""
    trie: dict[str, Any] = {}
    for w in words:
        node = trie
        for ch in w:
            node = node.setdefault(ch, {})
        node[""] = {}

    def walk(node: dict[str, Any]) -> str:
        ends = "" in node
        alts = [re.escape(ch) + walk(child) for ch, child in sorted(node.items()) if ch]
        if not alts:
            return ""
        body = alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
        # Greedy: the longer literal is tried first, the shorter one when it does not continue.
        return f"(?:{body})?" if ends else body

    return walk(trie)


def _compile(words: Sequence[str]) -> re.Pattern[str] | None:
    return re.compile(_trie_pattern(words)) if words else None


class ContentScreen:
    """The added-token literals of one tokenizer, and what a policy does with them in a row."""

    def __init__(self, tokenizer: LoadedTokenizer, policy: str = "keep") -> None:
        if policy not in POLICIES:
            raise ValueError(f"special_tokens_in_content must be one of {POLICIES}, not {policy!r}")
        self.tokenizer = tokenizer
        self.policy = policy
        added = tokenizer.tokenizer.get_added_tokens_decoder()
        self.ids: dict[str, int] = {}
        special: list[str] = []
        plain: list[str] = []
        for tid, tok in sorted(added.items()):
            if not tok.content or tok.content.isspace() or tok.content in self.ids:
                continue
            self.ids[tok.content] = tid
            (special if tok.special else plain).append(tok.content)
        self.literals = sorted(self.ids)
        self._index = {lit: k for k, lit in enumerate(self.literals)}
        any_live = _compile(self.literals)
        self._search = any_live.search if any_live is not None else None
        self._sub = any_live.sub if any_live is not None else None
        # What each encoding turns into ids: NORMAL every added token, ESCAPED the non-special.
        self._live = {Encoding.NORMAL: any_live, Encoding.ESCAPED: _compile(plain)}
        self._plain_tokenizer: Any = None

    # -- finding ---------------------------------------------------------------------------

    def _spelled(self, value: Any) -> bool:
        search = self._search
        if type(value) is str:
            return search is not None and search(value) is not None
        if type(value) is dict:
            return any(self._spelled(v) for v in value.values())
        if type(value) is list:
            return any(self._spelled(v) for v in value)
        return False

    def spells(self, messages: Sequence[Message]) -> bool:
        """Whether any string of the conversation (but a role) holds an added-token literal."""
        search = self._search
        if search is None:
            return False
        for m in messages:
            if type(m) is not dict:
                continue
            for k, v in m.items():
                if type(v) is str:
                    if k != "role" and search(v) is not None:
                        return True
                elif (type(v) is list or type(v) is dict) and self._spelled(v):
                    return True
        return False

    def _literals_in(self, value: Any, out: set[str]) -> None:
        if type(value) is str:
            out.update(m.group() for m in self._live[Encoding.NORMAL].finditer(value))  # type: ignore[union-attr]
        elif type(value) is dict:
            for v in value.values():
                self._literals_in(v, out)
        elif type(value) is list:
            for v in value:
                self._literals_in(v, out)

    def _mark(self, value: Any, top: bool = False) -> Any:
        if type(value) is str:
            assert self._sub is not None
            return self._sub(lambda m: f"{_MARK}{self._index[m.group()]}kTPsQ", value)
        if type(value) is dict:
            return {k: (v if top and k == "role" else self._mark(v)) for k, v in value.items()}
        if type(value) is list:
            return [self._mark(v) for v in value]
        return value

    def _live_counts(self, chunks: Sequence[Chunk]) -> Counter[str]:
        counts: Counter[str] = Counter()
        for c in chunks:
            if type(c) is TextChunk:
                live = self._live[c.encoding]
                if live is not None:
                    counts.update(m.group() for m in live.finditer(c.text))
        return counts

    # -- the policy --------------------------------------------------------------------------

    def screen(
        self,
        plan: Callable[[Sequence[Message]], Plan],
        conversations: Sequence[Sequence[Message]],
        plans: list[Plan],
    ) -> dict[int, tuple[str, ...]]:
        """The literals each row's text turns into ids ({row: tokens}, only rows with some);
        under `escape` / `refuse` the row's plan in `plans` is replaced."""
        found: dict[int, tuple[str, ...]] = {}
        if self._search is None:
            return found
        for i, messages in enumerate(conversations):
            first = plans[i]
            if isinstance(first, RowError) or not self.spells(messages):
                continue
            tokens, second = self._compare(plan, messages, first)
            if not tokens:
                continue
            found[i] = tokens
            if self.policy == "refuse":
                plans[i] = RowError(
                    SPECIAL_TOKEN_IN_CONTENT,
                    f"the message text spells {', '.join(tokens)}, which this renderer encodes as "
                    "the control token (special_tokens_in_content: refuse); set `escape` to encode "
                    "it as plain text, or `keep` to train it as the token",
                    field="messages",
                )
            elif self.policy == "escape":
                plans[i] = second if isinstance(second, RowError) else self._escaped(second)
        return found

    def _compare(
        self, plan: Callable[[Sequence[Message]], Plan], messages: Sequence[Message], first: Plan
    ) -> tuple[tuple[str, ...], Plan]:
        """(the literals the message text adds to the row's tokens, the marked row's plan)."""
        if self._spelled_marker(messages):
            found: set[str] = set()
            self._literals_in(list(messages), found)
            why = RowError(
                SPECIAL_TOKEN_IN_CONTENT,
                f"the message text spells {', '.join(sorted(found))} and holds {_MARK!r}, the "
                "marker that escaping needs, so the text cannot be escaped",
                field="messages",
            )
            return tuple(sorted(found)), why
        marked = [self._mark(m, top=True) if type(m) is dict else m for m in messages]
        try:
            second = plan(marked)
        except RowError as exc:
            second = exc
        except Exception as exc:  # a marked row must fail as a row, as the first plan would
            second = RowError("renderer_error", f"cannot render conversation: {exc}")
        if isinstance(second, RowError):
            # Not comparable: every literal in the text counts (the row renders under `keep`).
            found = set()
            self._literals_in(list(messages), found)
            return tuple(sorted(found)), second
        extra = self._live_counts(_output(first)) - self._live_counts(_output(second))
        return tuple(sorted(extra)), second

    def _spelled_marker(self, messages: Sequence[Message]) -> bool:
        return _MARK in json.dumps(list(messages), ensure_ascii=False, default=str)

    # -- escaping ----------------------------------------------------------------------------

    def _escaped(self, plan: Plan) -> Plan:
        if isinstance(plan, SupervisedPlan):
            prompt = None if plan.prompt is None else [self.escape_chunk(c) for c in plan.prompt]
            return SupervisedPlan([self.escape_chunk(c) for c in plan.chunks], plan.weights, prompt)
        if isinstance(plan, list):
            return [self.escape_chunk(c) for c in plan]
        return plan

    def escape_chunk(self, chunk: Chunk) -> Chunk:
        """A chunk of a marked plan as ids: its live literals (the template's, since the message
        text's are markers) as their ids, the text between them plain with markers restored.
        A chunk without a marker is left to the batched encoder."""
        if type(chunk) is not TextChunk or _MARK not in chunk.text:
            return chunk
        return IdsChunk(tuple(self.pieces_ids(chunk)))

    def pieces_ids(self, chunk: TextChunk) -> list[int]:
        """The chunk's ids, split at its live literals and each piece encoded as plain text
        (equal to the ordinary encoding for a chunk whose text holds no marker)."""
        text = chunk.text
        live = self._live[chunk.encoding]
        ids: list[int] = []
        pos = 0
        if live is not None:
            for m in live.finditer(text):
                ids += self._plain(text[pos : m.start()])
                ids.append(self.ids[m.group()])
                pos = m.end()
        ids += self._plain(text[pos:])
        return ids

    def _plain(self, text: str) -> list[int]:
        text = _MARKED.sub(lambda m: self.literals[int(m.group(1))], text)
        if not text:
            return []
        if self._plain_tokenizer is None:
            self._plain_tokenizer = _all_added_escaped(self.tokenizer)
        return list(self._plain_tokenizer.encode(text, add_special_tokens=False).ids)


def _output(plan: Plan) -> Sequence[Chunk]:
    if isinstance(plan, SupervisedPlan):
        return plan.chunks
    return plan if isinstance(plan, list) else ()


# Per tokenizer file (sha256): a process builds one copy however many screens it makes.
_PLAIN: dict[str, Any] = {}


def _all_added_escaped(tok: LoadedTokenizer) -> Any:
    """A copy of the tokenizer that spells every added token as text (special or not).

    `encode_special_tokens` escapes only tokens marked special; marking every added token
    special in a copy makes it escape them all. Built on the first escaped row only.
    """
    if tok.sha256 not in _PLAIN:
        _PLAIN[tok.sha256] = _copy_all_escaped(tok)
    return _PLAIN[tok.sha256]


def _copy_all_escaped(tok: LoadedTokenizer) -> Any:
    from tokenizers import Tokenizer

    data = json.loads(tok.tokenizer.to_str())
    for entry in data.get("added_tokens", []):
        entry["special"] = True
    copy = Tokenizer.from_str(json.dumps(data))
    copy.encode_special_tokens = True
    return copy


# -- the record, as the manifest, the build summary and `prep show` give it ------------------------


def special_tokens_record(policy: str, rows: int, tokens: Mapping[str, int]) -> dict[str, Any]:
    """{policy, rows, tokens: {literal: rows}}: the manifest's stats and per-source record."""
    return {
        "policy": policy,
        "rows": rows,
        "tokens": dict(sorted(tokens.items(), key=lambda kv: (-kv[1], kv[0]))),
    }


def special_tokens_line(record: Mapping[str, Any] | None) -> str | None:
    """One line naming the rows and literals and what the policy did; None when there are none."""
    if not record or not record.get("rows"):
        return None
    tokens = ", ".join(f"{tok} {n:,}" for tok, n in (record.get("tokens") or {}).items())
    done = {
        "keep": "encoded as the control tokens themselves",
        "escape": "escaped: encoded as plain text",
        "refuse": f"refused as row errors ({SPECIAL_TOKEN_IN_CONTENT})",
    }.get(str(record.get("policy")), "")
    return (
        f"{record['rows']:,} rows spell control tokens in their message text ({tokens}); {done} "
        f"(special_tokens_in_content: {record.get('policy')})"
    )


def special_tokens_warning(record: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The build's warning under `keep` (the reference behaviour, which trains such a token
    mid-message); `escape` and `refuse` were asked for, so they are reported, not warned."""
    line = special_tokens_line(record)
    if line is None or record is None or record.get("policy") != "keep":
        return None
    return {
        "code": "special_tokens_in_content",
        "message": line
        + "; set special_tokens_in_content: escape to encode them as text, or refuse to skip the rows",
        "count": record["rows"],
        "tokens": record.get("tokens") or {},
    }
