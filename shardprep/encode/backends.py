"""The two encoders behind BatchEncoder: fastokens where it is exact, `tokenizers` everywhere.

fastokens (a Rust BPE encoder over the same tokenizer.json) is tens of times faster than
`tokenizers`, and returns a whole batch as one flat uint32 buffer. Its exactness is not assumed:
before a build uses it, a fixed probe set (special-token text, whitespace runs, unicode, long
strings, the renderer's constants) is encoded with both in both modes and any difference refuses
it. `tokenizers` is the reference; the fast path only ever produces the same ids.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tokenizers import Tokenizer

# The encoder names and the fastokens parse live in a light module: `prep build` starts the parse
# before it loads numpy, tokenizers or the recipe model.
from shardprep.encode.fast_parse import (
    ENCODERS,
    ENV_VAR,
    EncoderName,
    _load_fastokens,
    prefetch_fastokens,
    requested_encoder,
)
from shardprep.errors import TokenizerError
from shardprep.tokenizer import LoadedTokenizer

__all__ = [  # re-exported: the names callers know from here
    "ENCODERS",
    "ENV_VAR",
    "EncoderName",
    "prefetch_fastokens",
    "requested_encoder",
]


class Backend(Protocol):
    name: str

    def encode_flat(self, texts: Sequence[str], *, escaped: bool) -> tuple[np.ndarray, np.ndarray]:
        """(ids int32, offsets int64 of len(texts) + 1); no special tokens added."""
        ...


@contextlib.contextmanager
def _special_tokens_escaped(tokenizer: Tokenizer, escaped: bool) -> Iterator[Tokenizer]:
    """The same tokenizer with special-token text encoded as plain text for the duration.

    Toggling the flag around one batched call costs nothing, where a private copy of a real
    tokenizer costs a second of parsing per process; every encode here runs on one thread.
    """
    if not escaped:
        yield tokenizer
        return
    tokenizer.encode_special_tokens = True
    try:
        yield tokenizer
    finally:
        tokenizer.encode_special_tokens = False


class TokenizersBackend:
    """HuggingFace `tokenizers`: the reference, and the only one that loads every tokenizer.json."""

    name = "tokenizers"

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer

    def encode_flat(self, texts: Sequence[str], *, escaped: bool) -> tuple[np.ndarray, np.ndarray]:
        backend = self.tokenizer
        batch = getattr(backend, "encode_batch_fast", backend.encode_batch)
        with _special_tokens_escaped(backend, escaped):
            encoded = batch(list(texts), add_special_tokens=False)
        lengths = np.fromiter((len(e.ids) for e in encoded), dtype=np.int64, count=len(encoded))
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        ids = np.fromiter(
            itertools.chain.from_iterable(e.ids for e in encoded),
            dtype=np.int32,
            count=int(offsets[-1]),
        )
        return ids, offsets


class FastokensBackend:
    """fastokens: one flat uint32 buffer per batch, no Python object per token."""

    name = "fastokens"

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def encode_flat(self, texts: Sequence[str], *, escaped: bool) -> tuple[np.ndarray, np.ndarray]:
        ids_b, offsets_b = self.tokenizer.encode_batch_flat(
            list(texts), add_special_tokens=False, split_special_tokens=escaped
        )
        # Token ids are below 2**31 in every vocabulary; the view reinterprets, it does not copy.
        ids = np.frombuffer(ids_b, dtype=np.uint32).view(np.int32)
        offsets = np.frombuffer(offsets_b, dtype=np.uint64).view(np.int64)
        return ids, offsets


@dataclass(frozen=True)
class Selection:
    """The encoder a build uses, and why (recorded in the manifest and the build summary)."""

    backend: Backend
    requested: str
    reason: str  # why this one: "probe identical (N texts)", "fastokens cannot load: ..."
    probe_texts: int = 0

    @property
    def name(self) -> str:
        return self.backend.name

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "requested": self.requested, "reason": self.reason}


_WHITESPACE = [
    " ",
    "  ",
    "   ",
    "\n",
    "\n\n",
    "\n\n\n\n",
    "\t",
    "\t\t\n",
    " \n",
    "\n ",
    " \n \n ",
    "\r\n",
    "\r\n\r\n",
    "a  b",
    "a\n\nb",
    "x   ",
    "   x",
    "\u00a0",
    "\u3000",
    " \u200b ",
]
_UNICODE = [
    "数学题：小明有3个苹果，又买了5个。他现在有几个？",
    "日本語のテキストです。",
    "한국어 문장입니다.",
    "Ünïcödé façade naïve café",
    "e\u0301 vs \u00e9",
    "😀🎉👍🏽 emoji \U0001f9d1\u200d\U0001f91d\u200d\U0001f9d1",
    "مرحبا بالعالم",
    "Привет, мир!",
    "αβγ δ ε",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "\ufeffBOM",
    "tab\tand\u2028line sep",
]
_TEXT = [
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
    "<<48/2=24>>24\n#### 72",
    "1234567890" * 3,
    "3.14159 -42 +7 1e-9 0x1F",
    "don't you're I'll we've",
    '{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}',
    "def f(x):\n    return x ** 2  # square\n",
    "<think>\nreasoning\n</think>\n\nanswer",
    "https://example.com/a?b=c&d=e",
    "ALLCAPS lowercase MiXeD",
    "...!!!???",
    "<",
    "<|",
    "|>",
]


def probe_texts(tokenizer: Tokenizer, extra: Sequence[str] = ()) -> list[str]:
    """The fixed probe set: every added token alone and inside text, whitespace, unicode, long
    strings, plus `extra` (the renderer's constants)."""
    added = sorted({t.content for t in tokenizer.get_added_tokens_decoder().values()})
    texts = [*_WHITESPACE, *_UNICODE, *_TEXT]
    texts += added
    texts += [f"a{t}b" for t in added] + [f" {t}\n" for t in added]
    texts.append("".join(added))
    texts.append(" ".join(added[:64]) + "\n".join(added[-64:]))
    texts.append(" ".join(_TEXT) * 40)  # long mixed text
    texts.append("word " * 1200)
    texts.append(" " * 3000 + "x" + "\n" * 2000)
    texts.append("".join(_UNICODE) * 20)
    texts.append("9" * 5000)
    texts.extend(s for s in extra if s)
    return texts


def renderer_probe(renderer: Any) -> tuple[str, ...]:
    """Every constant string of a renderer (its template constants), for the probe set."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v)

    walk(renderer.template_constants())
    return tuple(sorted(set(found)))


def first_difference(a: Backend, b: Backend, texts: Sequence[str]) -> str | None:
    """None when both encoders give the same ids for every text in both modes, else the first."""
    for escaped in (False, True):
        ids_a, off_a = a.encode_flat(texts, escaped=escaped)
        ids_b, off_b = b.encode_flat(texts, escaped=escaped)
        if np.array_equal(off_a, off_b) and np.array_equal(ids_a, ids_b):
            continue
        for i, text in enumerate(texts):
            x = ids_a[off_a[i] : off_a[i + 1]]
            y = ids_b[off_b[i] : off_b[i + 1]]
            if not np.array_equal(x, y):
                mode = "escaped" if escaped else "plain"
                return f"{mode} encoding of {text[:60]!r}: {x[:8].tolist()} vs {y[:8].tolist()}"
        return "token counts differ"  # pragma: no cover - implied by a per-text difference
    return None


def select(
    tokenizer: LoadedTokenizer, requested: str | None = None, extra: Sequence[str] = ()
) -> Selection:
    """The encoder for this tokenizer: fastokens when it loads and its probe ids are identical."""
    name = requested_encoder(requested)
    key = (tokenizer.path, tokenizer.sha256, name, tuple(extra))
    with _SELECT_LOCK:  # threads asking at once wait for one probe, not run one each
        if key not in _SELECTED:
            if len(_SELECTED) >= 16:
                _SELECTED.clear()
            _SELECTED[key] = _select(tokenizer, name, key[3])
        return _SELECTED[key]


# Once per process per tokenizer, encoder choice and probe: pool workers repeat the driver's
# probe on their own copy, which gives the same answer (both encoders are deterministic).
_SELECTED: dict[tuple[str, str, str, tuple[str, ...]], Selection] = {}
_SELECT_LOCK = threading.Lock()


def _select(tokenizer: LoadedTokenizer, name: str, extra: tuple[str, ...]) -> Selection:
    path, sha256 = tokenizer.path, tokenizer.sha256
    reference = TokenizersBackend(tokenizer.tokenizer)
    if name == "tokenizers":
        return Selection(reference, name, "requested")
    try:
        fast = FastokensBackend(_load_fastokens(path, sha256))
    except Exception as exc:  # ImportError, or fastokens refusing the file (e.g. Metaspace)
        why = f"fastokens cannot load {Path(path).name}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        if name == "fastokens":
            raise TokenizerError(f"encoder fastokens was requested but {why}") from exc
        return Selection(reference, name, why)
    texts = probe_texts(tokenizer.tokenizer, extra)
    diff = first_difference(reference, fast, texts)
    if diff is not None:
        why = f"fastokens differs from tokenizers on the probe set: {diff}"
        if name == "fastokens":
            raise TokenizerError(f"encoder fastokens was requested but {why}")
        return Selection(reference, name, why, len(texts))
    return Selection(
        fast, name, f"identical ids on {len(texts)} probe texts, both modes", len(texts)
    )
