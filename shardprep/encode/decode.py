"""Decode an example back to text, token by token, keeping which tokens are trained and which are special.

Used by `prep show` and `prep preview` (terminal and HTML). Nothing here changes data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from shardprep.tokenizer import LoadedTokenizer

_REPLACEMENT = "\ufffd"


@dataclass(frozen=True)
class Piece:
    """The smallest run of tokens that decodes to clean text: one token, unless BPE split a character.

    `trained` is per token; a piece shows as trained when any of its tokens is.
    """

    text: str
    ids: tuple[int, ...]
    trained_mask: tuple[bool, ...]
    special: bool

    @property
    def trained(self) -> bool:
        return any(self.trained_mask)

    @property
    def n_trained(self) -> int:
        return sum(self.trained_mask)


@dataclass(frozen=True)
class Span:
    """Adjacent pieces of equal trained-ness; a special token is always a span of its own."""

    text: str
    trained: bool
    special: bool
    n_tokens: int
    n_trained: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def special_ids(tok: LoadedTokenizer) -> set[int]:
    ids = set()
    for added in tok.tokenizer.get_added_tokens_decoder().values():
        if added.special:
            tid = tok.tokenizer.token_to_id(added.content)
            if tid is not None:
                ids.add(tid)
    return ids


def example_tokens(row: dict[str, Any]) -> tuple[list[int], list[bool]]:
    """The unshifted sequence and, per token, whether it is trained (the first token never is)."""
    tokens = [*row["input_ids"][:1], *row["target_ids"]]
    trained = [False, *(bool(w > 0) for w in row["weights"])]
    return tokens, trained


def decode_pieces(
    tok: LoadedTokenizer, tokens: Sequence[int], trained: Sequence[bool]
) -> list[Piece]:
    """Per-token pieces whose texts join to exactly the decoded sequence.

    Tokens that only decode cleanly together (a multi-byte character split by BPE) form one piece,
    even across a trained/untrained boundary, so the text is never garbled; the per-token mask keeps
    counts exact. Decoders that depend on context (SentencePiece's leading-space rule) make
    per-token text differ from the whole; then runs of equal trained-ness are decoded whole.
    """
    specials = special_ids(tok)
    dec = tok.tokenizer.decode
    pieces: list[Piece] = []
    pending: list[int] = []
    for i, tid in enumerate(tokens):
        if tid in specials:
            pieces.append(
                Piece(dec([tid], skip_special_tokens=False), (tid,), (bool(trained[i]),), True)
            )
            continue
        pending.append(tid)
        text = dec(pending, skip_special_tokens=False)
        nxt_special = i + 1 < len(tokens) and tokens[i + 1] in specials
        if (
            text.endswith(_REPLACEMENT)
            and len(pending) < 4
            and i + 1 < len(tokens)
            and not nxt_special
        ):
            continue  # wait for the rest of the character (UTF-8 is at most 4 bytes)
        start = i + 1 - len(pending)
        pieces.append(
            Piece(text, tuple(pending), tuple(bool(t) for t in trained[start : i + 1]), False)
        )
        pending = []
    if "".join(p.text for p in pieces) != dec(list(tokens), skip_special_tokens=False):
        return _run_pieces(tok, tokens, trained, specials)
    return pieces


def _run_pieces(
    tok: LoadedTokenizer, tokens: Sequence[int], trained: Sequence[bool], specials: set[int]
) -> list[Piece]:
    """Fallback: one piece per run of equal trained-ness, special tokens alone."""
    pieces: list[Piece] = []
    start = 0
    for i in range(1, len(tokens) + 1):
        if (
            i == len(tokens)
            or trained[i] != trained[start]
            or tokens[i] in specials
            or tokens[i - 1] in specials
        ):
            ids = tuple(tokens[start:i])
            text = tok.tokenizer.decode(list(ids), skip_special_tokens=False)
            pieces.append(
                Piece(
                    text,
                    ids,
                    tuple(bool(t) for t in trained[start:i]),
                    len(ids) == 1 and ids[0] in specials,
                )
            )
            start = i
    return pieces


def spans_of(pieces: Sequence[Piece]) -> list[Span]:
    """Merge pieces into spans of equal trained-ness, special tokens alone (for terminal display)."""
    spans: list[Span] = []
    text: list[str] = []
    n = n_trained = 0
    for i, p in enumerate(pieces):
        text.append(p.text)
        n += len(p.ids)
        n_trained += p.n_trained
        nxt = pieces[i + 1] if i + 1 < len(pieces) else None
        if nxt is None or nxt.trained != p.trained or nxt.special or p.special:
            spans.append(Span("".join(text), p.trained, p.special, n, n_trained))
            text, n, n_trained = [], 0, 0
    return spans


def decode_spans(tok: LoadedTokenizer, row: dict[str, Any]) -> list[Span]:
    tokens, trained = example_tokens(row)
    return spans_of(decode_pieces(tok, tokens, trained))


def row_payload(
    row: dict[str, Any], tok: LoadedTokenizer | None, *, split: str, index: int
) -> dict[str, Any]:
    """One decoded example as show/preview report it. `pieces` feed the HTML page; JSON drops them."""
    weights = np.asarray(row["weights"], dtype=np.float32)
    out: dict[str, Any] = {
        "split": split,
        "index": index,
        "source": row.get("source"),
        "source_row": row.get("source_row"),
        "shard": row.get("shard"),
        "length": len(weights),
        "trained": int(np.count_nonzero(weights > 0)),
        "weight_sum": float(weights.sum()),
        "input_ids": [int(t) for t in row["input_ids"]],
        "target_ids": [int(t) for t in row["target_ids"]],
        "weights": [float(w) for w in weights],
        "spans": None,
        "pieces": None,
    }
    if tok is not None:
        tokens, trained = example_tokens(row)
        pieces = decode_pieces(tok, tokens, trained)
        out["pieces"] = pieces
        out["spans"] = [s.to_json() for s in spans_of(pieces)]
    return out
