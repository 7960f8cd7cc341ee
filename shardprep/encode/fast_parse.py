"""The fastokens parse of a tokenizer.json, started early on a thread, and the encoder names.

Parsing a real vocabulary costs fastokens two to three CPU-seconds (it builds an Aho-Corasick
automaton of every token) with the GIL released. `prep build` starts it as soon as it has read
the recipe (`prefetch_encoder`), before it loads numpy, tokenizers or the recipe model, and does
the rest of its start-up meanwhile. This module imports nothing heavy for that reason.
"""

from __future__ import annotations

import hashlib
import os
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Literal

from shardprep.errors import ShardprepError, TokenizerError

EncoderName = Literal["auto", "fastokens", "tokenizers"]
ENCODERS: tuple[str, ...] = ("auto", "fastokens", "tokenizers")
# The build's choice when neither the recipe nor the CLI makes one (the CLI sets it for workers too).
ENV_VAR = "SHARDPREP_ENCODER"


def requested_encoder(explicit: str | None = None, recipe: str | None = None) -> str:
    """The explicit choice, else $SHARDPREP_ENCODER (what `prep build --encoder` sets), else the
    recipe's `encoder:`, else auto; an unknown name is an error."""
    name = explicit or os.environ.get(ENV_VAR) or recipe or "auto"
    if name not in ENCODERS:
        raise TokenizerError(f"unknown encoder {name!r}; known: {', '.join(ENCODERS)}")
    return name


def _parse_fastokens(path: str) -> tuple[str, Any]:
    """(sha256 of the tokenizer.json bytes, fastokens over them)."""
    import fastokens  # optional at run time: `auto` falls back to tokenizers without it

    from shardprep.tokenizer import read_tokenizer_json  # bounded, damage named: one reader

    raw = read_tokenizer_json(Path(path))
    return hashlib.sha256(raw).hexdigest(), fastokens.Tokenizer.from_json_str(raw.decode("utf-8"))


# path -> its parse, running or done.
_PARSES: dict[str, Future[tuple[str, Any]]] = {}
_PARSES_LOCK = threading.Lock()


def _parse(path: str) -> Future[tuple[str, Any]]:
    with _PARSES_LOCK:
        fut = _PARSES.get(path)
        if fut is None:
            fut = _PARSES[path] = Future()
            start = True
        else:
            start = False
    if start:

        def run() -> None:
            try:
                fut.set_result(_parse_fastokens(path))
            except BaseException as exc:  # reported to whoever waits on it
                fut.set_exception(exc)

        # Not a daemon: the interpreter joins it before tearing down. A daemon thread coming back
        # from fastokens during teardown is ended with pthread_exit through Rust frames, which
        # aborts the process (SIGABRT, exit 134) instead of the exit code it was leaving with.
        # An exit that comes early (a bad recipe or row) waits for the parse, a few CPU-seconds.
        threading.Thread(target=run, name="shardprep-fastokens-load", daemon=False).start()
    return fut


def prefetch_fastokens(path: str | Path) -> None:
    """Start parsing `path` with fastokens in the background (no-op when already started)."""
    _parse(str(path))


def _load_fastokens(path: str, sha256: str) -> Any:
    """fastokens over the same tokenizer.json bytes, parsed once per process per file version."""
    fut = _parse(path)
    digest, tokenizer = fut.result()
    if digest != sha256:  # the file changed since it was parsed: parse the bytes we now hold
        with _PARSES_LOCK:
            if _PARSES.get(path) is fut:
                del _PARSES[path]
        digest, tokenizer = _parse(path).result()
        if digest != sha256:
            raise TokenizerError(f"{path} changed while the build was loading it")
    return tokenizer


def prefetch_encoder(
    tokenizer: object, base_dir: Path, encoder: object = None, *, explicit: str | None = None
) -> None:
    """Start the parse for a recipe's `tokenizer:` (relative to `base_dir`) unless the encoder
    asked for (`explicit`, $SHARDPREP_ENCODER, the recipe's `encoder:`) is tokenizers. Anything
    it cannot resolve is left alone: the build reports it where it checks the recipe."""
    from shardprep.tokenizer import resolve_tokenizer_path

    if not isinstance(tokenizer, str) or not (encoder is None or isinstance(encoder, str)):
        return
    try:
        if requested_encoder(explicit, encoder) == "tokenizers":
            return
        path = resolve_tokenizer_path(tokenizer, base_dir=base_dir).absolute()
    except ShardprepError:
        return
    prefetch_fastokens(path)
