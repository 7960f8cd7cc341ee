"""What renderers emit instead of token ids: text to encode later, in bulk, or literal ids."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class Encoding(IntEnum):
    # NORMAL: `encode(text, add_special_tokens=False)`, special-token text becomes the special token.
    NORMAL = 0
    # ESCAPED: special-token text is encoded as plain text (tinker's Qwen3 content tokenizer copy
    # with `encode_special_tokens=True`); non-special added tokens still match.
    ESCAPED = 1


class TextChunk:
    """Text to encode, with how. A value: equal and hashed by (text, encoding); never mutated.

    A plain slotted class, not a frozen dataclass: renderers make one per message part, and a
    frozen dataclass's __init__ (object.__setattr__ per field) was a fifth of planning a row.
    """

    __slots__ = ("text", "encoding")
    __match_args__ = ("text", "encoding")

    def __init__(self, text: str, encoding: Encoding = Encoding.NORMAL) -> None:
        self.text = text
        self.encoding = encoding

    def __eq__(self, other: object) -> bool:
        if type(other) is not TextChunk:
            return NotImplemented
        return self.text == other.text and self.encoding == other.encoding

    def __hash__(self) -> int:
        return hash((self.text, self.encoding))

    def __repr__(self) -> str:
        return f"TextChunk(text={self.text!r}, encoding={self.encoding!r})"


@dataclass(frozen=True, slots=True)
class IdsChunk:
    ids: tuple[int, ...]


Chunk = TextChunk | IdsChunk


def text(s: str) -> TextChunk:
    return TextChunk(s, Encoding.NORMAL)


def escaped(s: str) -> TextChunk:
    return TextChunk(s, Encoding.ESCAPED)
