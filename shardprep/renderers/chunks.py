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


@dataclass(frozen=True, slots=True)
class TextChunk:
    text: str
    encoding: Encoding = Encoding.NORMAL


@dataclass(frozen=True, slots=True)
class IdsChunk:
    ids: tuple[int, ...]


Chunk = TextChunk | IdsChunk


def text(s: str) -> TextChunk:
    return TextChunk(s, Encoding.NORMAL)


def escaped(s: str) -> TextChunk:
    return TextChunk(s, Encoding.ESCAPED)
