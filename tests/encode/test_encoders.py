"""fastokens and tokenizers give the same ids on everything the golden tests render, and the
encoder choice refuses the fast path whenever its probe differs."""

from __future__ import annotations

import functools
import gzip
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shardprep.encode import backends
from shardprep.encode.backends import (
    FastokensBackend,
    TokenizersBackend,
    first_difference,
    probe_texts,
    select,
)
from shardprep.encode.tokenize import (
    BatchEncoder,
    RenderedExample,
    render_supervised_batch,
    render_supervised_flat,
)
from shardprep.errors import RowError, TokenizerError
from shardprep.renderers import TrainOnWhat, get_renderer
from shardprep.renderers.base import plan_prompt, plan_supervised
from shardprep.renderers.chunks import Encoding, TextChunk
from shardprep.tokenizer import LoadedTokenizer, load_tokenizer

FIXTURES = Path(__file__).parent.parent / "fixtures"
GOLDEN = FIXTURES / "golden"
FILES = sorted(p.name.removesuffix(".jsonl.gz") for p in GOLDEN.glob("*__*.jsonl.gz"))


@functools.cache
def _tok(name: str) -> LoadedTokenizer:
    return load_tokenizer(str(FIXTURES / "tokenizers" / name))


@functools.cache
def _conversations(customized: bool) -> list[list[dict[str, Any]]]:
    name = "conversations_customized" if customized else "conversations"
    with gzip.open(GOLDEN / f"{name}.jsonl.gz", "rt", encoding="utf-8") as fh:
        return [json.loads(line)["messages"] for line in fh if line.strip()]


def _golden_chunks(stem: str) -> set[TextChunk]:
    """Every text chunk the golden tests render for this file: all modes, and the prompts."""
    name, tok = stem.split("__")
    renderer = get_renderer(name, _tok(tok))
    found: set[TextChunk] = set()
    for mode in TrainOnWhat:
        for conv in _conversations(mode is TrainOnWhat.CUSTOMIZED):
            try:
                plan = plan_supervised(renderer, conv, mode)
            except Exception:
                continue  # rows golden expects to fail render no chunks
            found.update(c for c in plan.chunks if isinstance(c, TextChunk))
            found.update(c for c in plan.prompt or () if isinstance(c, TextChunk))
    for conv in _conversations(False):
        last = max(i for i, m in enumerate(conv) if m["role"] == "assistant")
        try:
            found.update(c for c in plan_prompt(renderer, conv[:last]) if isinstance(c, TextChunk))
        except Exception:
            continue
    return found


# Chunks of every golden file, grouped by tokenizer: the toy tokenizer's 30 files share most.
BY_TOKENIZER: dict[str, list[str]] = {}
for _stem in FILES:
    BY_TOKENIZER.setdefault(_stem.split("__")[1], []).append(_stem)


@pytest.mark.parametrize("tok_name", sorted(BY_TOKENIZER))
def test_encoders_agree_on_golden_chunks(tok_name: str) -> None:
    tok = _tok(tok_name)
    reference = TokenizersBackend(tok.tokenizer)
    fast = FastokensBackend(backends._load_fastokens(tok.path, tok.sha256))
    chunks = set().union(*(_golden_chunks(stem) for stem in BY_TOKENIZER[tok_name]))
    for encoding in Encoding:
        texts = sorted(c.text for c in chunks if c.encoding == encoding and c.text)
        if texts:
            assert first_difference(reference, fast, texts) is None, encoding


def test_auto_picks_fastokens_where_it_is_exact() -> None:
    sel = select(_tok("qwen3"), "auto")
    assert sel.name == "fastokens"
    assert "identical ids" in sel.reason and sel.probe_texts > 50
    assert select(_tok("qwen3"), "tokenizers").name == "tokenizers"


def test_metaspace_tokenizer_falls_back_and_cannot_be_forced() -> None:
    sel = select(_tok("mistral_v3"), "auto")
    assert sel.name == "tokenizers"
    assert "Metaspace" in sel.reason
    with pytest.raises(TokenizerError, match="fastokens was requested"):
        select(_tok("mistral_v3"), "fastokens")


def test_unknown_encoder_and_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(TokenizerError, match="unknown encoder 'fast'"):
        select(_tok("toy"), "fast")
    monkeypatch.setenv(backends.ENV_VAR, "tokenizers")
    assert BatchEncoder(_tok("toy")).name == "tokenizers"
    assert BatchEncoder(_tok("toy"), encoder="fastokens").name == "fastokens"


def test_probe_difference_refuses_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # fastokens over another model's tokenizer.json: real ids, wrong for this tokenizer.
    llama = _tok("llama3")
    other = backends._load_fastokens(llama.path, llama.sha256)
    monkeypatch.setattr(backends, "_load_fastokens", lambda path, sha: other)
    monkeypatch.setattr(backends, "_SELECTED", {})
    qwen = _tok("qwen3")
    sel = select(qwen, "auto")
    assert sel.name == "tokenizers"
    assert "differs from tokenizers on the probe set" in sel.reason
    with pytest.raises(TokenizerError, match="differs"):
        select(qwen, "fastokens")


def test_probe_covers_special_tokens_and_extra_texts() -> None:
    tok = _tok("qwen3").tokenizer
    texts = probe_texts(tok, ["<|im_start|>assistant\n"])
    assert "<|im_end|>" in texts and "<|im_start|>assistant\n" in texts
    assert max(map(len, texts)) >= 5000


@pytest.mark.parametrize("encoder", ["fastokens", "tokenizers"])
def test_flat_batch_equals_rows(encoder: str) -> None:
    tok = _tok("qwen3")
    renderer = get_renderer("qwen3", tok)
    convs = _conversations(False)[:40] + [[{"role": "user"}]]  # the last one is a row error
    enc = BatchEncoder(tok, encoder=encoder)
    flat = render_supervised_flat(renderer, enc, convs, TrainOnWhat.LAST_ASSISTANT_MESSAGE)
    assert flat.tokens.dtype == np.int32 and flat.weights.dtype == np.float32
    assert len(flat) == len(convs) and len(flat.tokens) == len(flat.weights) == flat.offsets[-1]
    assert isinstance(flat.example(len(convs) - 1), RowError)
    one_by_one = [
        render_supervised_batch(
            renderer, BatchEncoder(tok, encoder="tokenizers"), [c], "last_assistant_message"
        )[0]  # type: ignore[arg-type]
        for c in convs
    ]
    for got, want in zip(flat.rows(), one_by_one, strict=True):
        assert type(got) is type(want)
        if isinstance(want, RenderedExample):
            assert isinstance(got, RenderedExample)
            assert np.array_equal(got.tokens, want.tokens)
            assert np.array_equal(got.weights, want.weights)


def test_cli_names_the_same_encoders() -> None:
    from shardprep.cli import build as cli_build

    assert cli_build.ENCODERS == backends.ENCODERS
    assert cli_build.ENCODER_ENV == backends.ENV_VAR


def _pairs(convs: list[list[dict[str, Any]]]) -> list[list[dict[str, Any]]]:
    """Both sides of a preference pair per conversation ending in an assistant message: the
    same prompt message objects (as tasks/dpo.pair_conversations makes them), two answers."""
    sides = []
    for conv in convs:
        if not conv or conv[-1].get("role") != "assistant":
            continue
        prompt, answer = conv[:-1], conv[-1]
        other = {**answer, "content": f"not {answer.get('content')}"}
        sides += [[*prompt, answer], [*prompt, other]]
    return sides


@pytest.mark.parametrize("stem", [s for s in FILES if s.endswith("__qwen3")] + FILES[:1])
def test_a_pair_plans_its_shared_prompt_once_with_the_same_chunks(stem: str) -> None:
    """plan_supervised with a batch's prompt memo (the two sides of a pair share their prompt's
    message objects) gives exactly the plans of planning each side alone, and the memo is hit."""
    name, tok = stem.split("__")
    renderer = get_renderer(name, _tok(tok))
    sides = _pairs(_conversations(False))
    memo: dict[Any, Any] = {}
    for conv in sides:
        try:
            alone = plan_supervised(renderer, conv, TrainOnWhat.LAST_ASSISTANT_MESSAGE)
        except Exception as exc:
            with pytest.raises(type(exc)):
                plan_supervised(renderer, conv, TrainOnWhat.LAST_ASSISTANT_MESSAGE, memo)
            continue
        shared = plan_supervised(renderer, conv, TrainOnWhat.LAST_ASSISTANT_MESSAGE, memo)
        assert shared == alone
    assert 0 < len(memo) <= len(sides) // 2  # one prompt planned per pair


def test_flat_pairs_equal_each_side_alone() -> None:
    """render_supervised_flat over pairs (the shared prompts planned once) equals rendering
    each side in a batch of its own, tokens and weights."""
    tok = _tok("qwen3")
    renderer = get_renderer("qwen3", tok)
    sides = _pairs(_conversations(False)[:60])
    enc = BatchEncoder(tok, encoder="tokenizers")
    flat = render_supervised_flat(renderer, enc, sides, TrainOnWhat.LAST_ASSISTANT_MESSAGE)
    for i, conv in enumerate(sides):
        want = render_supervised_flat(renderer, enc, [conv], TrainOnWhat.LAST_ASSISTANT_MESSAGE)
        got = flat.example(i)
        assert type(got) is type(want.example(0))
        if isinstance(got, RenderedExample):
            assert np.array_equal(got.tokens, want.example(0).tokens)  # type: ignore[union-attr]
            assert np.array_equal(got.weights, want.example(0).weights)  # type: ignore[union-attr]
