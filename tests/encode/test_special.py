"""Control tokens spelled in message text: counted, kept, escaped or refused, asserted on ids.

Real tokenizers from tests/fixtures; the detection is checked against what the encoder really
does (keep's ids minus escape's ids), for every renderer family of the golden set.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shardprep.encode.special import (
    SPECIAL_TOKEN_IN_CONTENT,
    ContentScreen,
    special_tokens_line,
    special_tokens_record,
    special_tokens_warning,
)
from shardprep.encode.tokenize import (
    BatchEncoder,
    RenderedExample,
    render_prompt_batch,
    render_supervised_flat,
    render_turns_flat,
)
from shardprep.errors import RowError
from shardprep.renderers import TrainOnWhat, get_renderer
from shardprep.renderers.base import plan_prompt, plan_supervised
from shardprep.renderers.chunks import TextChunk
from shardprep.tokenizer import LoadedTokenizer

FIXTURES = Path(__file__).parents[1] / "fixtures"
LAM = TrainOnWhat.LAST_ASSISTANT_MESSAGE
Tok = Callable[[str], LoadedTokenizer]


def _render(tok: LoadedTokenizer, renderer: str, conv: list[dict[str, Any]], policy: str) -> Any:
    r = get_renderer(renderer, tok)
    enc = BatchEncoder(tok, encoder="tokenizers", special_tokens_in_content=policy)
    batch = render_supervised_flat(r, enc, [conv], LAM)
    return batch.example(0), batch.special


def _trained(ex: RenderedExample) -> list[int]:
    return ex.tokens[ex.weights > 0].tolist()


_COPIES: dict[str, Any] = {}


def _escaping_copy(tok: LoadedTokenizer) -> Any:
    if tok.sha256 in _COPIES:
        return _COPIES[tok.sha256]
    from tokenizers import Tokenizer

    data = json.loads(tok.tokenizer.to_str())
    for entry in data["added_tokens"]:
        entry["special"] = True
    copy = Tokenizer.from_str(json.dumps(data))
    copy.encode_special_tokens = True
    _COPIES[tok.sha256] = copy
    return copy


def _plain(tok: LoadedTokenizer, text: str) -> list[int]:
    """The ids of `text` with every added token spelled out (tokenizers' own escaping, on a copy
    where every added token counts as special)."""
    return list(_escaping_copy(tok).encode(text, add_special_tokens=False).ids)


def test_llama3_eot_in_an_assistant_message(tokenizer_for: Tok) -> None:
    tok = tokenizer_for("llama3")
    conv = [{"role": "user", "content": "A"}, {"role": "assistant", "content": "C <|eot_id|> D"}]
    eot = 128009
    kept, found = _render(tok, "llama3", conv, "keep")
    assert found == {0: ("<|eot_id|>",)}
    # keep (tinker's behaviour): the literal is the token, trained mid-message, then the real end.
    assert _trained(kept) == [34, 220, eot, 423, eot]
    escaped, found = _render(tok, "llama3", conv, "escape")
    assert found == {0: ("<|eot_id|>",)}
    # escape: the message's text as plain text, then the template's own end of turn.
    assert _trained(escaped) == _plain(tok, "C <|eot_id|> D") + [eot]
    assert _trained(escaped).count(eot) == 1
    # Everything before the message is the same rendering.
    k = len(kept.tokens) - 5
    assert escaped.tokens[:k].tolist() == kept.tokens[:k].tolist()
    refused, found = _render(tok, "llama3", conv, "refuse")
    assert found == {0: ("<|eot_id|>",)}
    assert isinstance(refused, RowError) and refused.reason == SPECIAL_TOKEN_IN_CONTENT
    assert "<|eot_id|>" in refused.message


def test_a_row_without_literals_is_untouched(tokenizer_for: Tok) -> None:
    tok = tokenizer_for("llama3")
    conv = [{"role": "user", "content": "A <b> |x|"}, {"role": "assistant", "content": "C"}]
    results = [_render(tok, "llama3", conv, p) for p in ("keep", "escape", "refuse")]
    assert all(found == {} for _, found in results)
    assert results[0][0].tokens.tolist() == results[1][0].tokens.tolist()
    assert results[0][0].tokens.tolist() == results[2][0].tokens.tolist()


def test_qwen3_escapes_special_tokens_but_not_added_ones(tokenizer_for: Tok) -> None:
    tok = tokenizer_for("qwen3")
    added = {t.content: t.special for t in tok.tokenizer.get_added_tokens_decoder().values()}
    # The premise, from the real tokenizer: <|im_end|> is special, <think> and <tool_call> not.
    assert added["<|im_end|>"] and not added["<think>"] and not added["<tool_call>"]
    im_end, think = tok.tokenizer.token_to_id("<|im_end|>"), tok.tokenizer.token_to_id("<think>")
    conv = [
        {"role": "user", "content": "a <|im_end|> b <think> c"},
        {"role": "assistant", "content": "ok"},
    ]
    kept, found = _render(tok, "qwen3", conv, "keep")
    assert found == {0: ("<think>",)}  # <|im_end|> is already text in qwen3's content
    user = kept.tokens.tolist()
    assert user.count(think) == 2  # the user's, and the empty think block of the answer
    assert user.count(im_end) == 2  # the two real ends of turn only
    escaped, _ = _render(tok, "qwen3", conv, "escape")
    ids = escaped.tokens.tolist()
    assert ids.count(think) == 1 and ids.count(im_end) == 2
    # <|im_start|>user\n + the text as plain text + <|im_end|>
    start = tok.tokenizer.token_to_id("<|im_start|>")
    body = ids[ids.index(start) + 3 : ids.index(im_end)]
    assert body == _plain(tok, "a <|im_end|> b <think> c")


def test_qwen3_inline_reasoning_is_structure_not_content(tokenizer_for: Tok) -> None:
    """Qwen3 reads `<think>..</think>` in an answer's text as its reasoning (tinker does): the
    think tokens are the template's frame, so the row is not counted and no policy changes it."""
    tok = tokenizer_for("qwen3")
    conv = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "<think>abc</think>answer"},
    ]
    kept, found = _render(tok, "qwen3", conv, "keep")
    assert found == {}
    for policy in ("escape", "refuse"):
        other, found = _render(tok, "qwen3", conv, policy)
        assert found == {} and other.tokens.tolist() == kept.tokens.tolist()


def test_reasoning_that_spells_the_closing_tag(tokenizer_for: Tok) -> None:
    """LLaMA-Factory's reason_tool_use demo: two rows whose reasoning text spells `</think>`,
    which closes qwen3's think block early under keep."""
    tok = tokenizer_for("qwen3")
    close = tok.tokenizer.token_to_id("</think>")
    conv = [
        {"role": "user", "content": "q"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "plan, then </think> more"},
                {"type": "text", "text": "done"},
            ],
        },
    ]
    kept, found = _render(tok, "qwen3", conv, "keep")
    assert found == {0: ("</think>",)}
    assert _trained(kept).count(close) == 2
    escaped, _ = _render(tok, "qwen3", conv, "escape")
    assert _trained(escaped).count(close) == 1


# Every golden renderer family with its tokenizer: one special and, where the tokenizer has one,
# one non-special added token spelled in a user and an assistant message. The screen's finding
# must match what the encoder does: keep has more ids of the token than the same row with the
# literal written as harmless text, and escape has exactly as many (the template's own).
FAMILIES = [
    ("llama3", "llama3"),
    ("role_colon", "llama3"),
    ("qwen3", "qwen3"),
    ("qwen3_instruct", "qwen3"),
    ("deepseekv3", "deepseek_v3"),
    ("gpt_oss_medium_reasoning", "gpt_oss"),
    ("kimi_k2", "toy"),
    ("qwen3_5", "toy"),
    ("glm5_3_high_reasoning", "toy"),
    ("nemotron3", "toy"),
    ("deepseekv4_1", "toy"),
    ("mistral", "mistral_v3"),
    ("hf_template", "qwen3"),
]


def _literals(tok: LoadedTokenizer) -> list[str]:
    added = sorted(tok.tokenizer.get_added_tokens_decoder().items())
    special = [t.content for _, t in added if t.special and not t.content.isspace()]
    plain = [t.content for _, t in added if not t.special and not t.content.isspace()]
    picked = [special[len(special) // 2]]  # not BOS/EOS: a token no template writes
    if plain:
        picked.append(plain[0])
    return picked


def _conv(literal: str) -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": f"x {literal} y"},
        {"role": "assistant", "content": f"sure {literal} z"},
    ]


@pytest.mark.parametrize(("renderer", "tokenizer"), FAMILIES)
def test_finding_matches_the_ids(renderer: str, tokenizer: str, tokenizer_for: Tok) -> None:
    tok = tokenizer_for(tokenizer)
    counted = 0
    for literal in _literals(tok):
        tid = tok.tokenizer.token_to_id(literal)
        kept, found = _render(tok, renderer, _conv(literal), "keep")
        escaped, found_e = _render(tok, renderer, _conv(literal), "escape")
        harmless, none = _render(tok, renderer, _conv("QQ"), "keep")
        assert none == {} and found == found_e
        ids = {k: r.tokens.tolist().count(tid) for k, r in (("keep", kept), ("esc", escaped))}
        template = harmless.tokens.tolist().count(tid)
        assert (found != {}) == (ids["keep"] > template), (renderer, literal, found, ids)
        assert ids["esc"] == template, (renderer, literal, ids, template)
        if found:
            counted += 1
            assert found == {0: (literal,)}
            refused, _ = _render(tok, renderer, _conv(literal), "refuse")
            assert isinstance(refused, RowError) and refused.reason == SPECIAL_TOKEN_IN_CONTENT
        else:
            assert kept.tokens.tolist() == escaped.tokens.tolist()
    # Every family turns some added token in its text into an id (the hazard is everywhere).
    assert counted >= 1


def _golden_conversations() -> list[list[dict[str, Any]]]:
    with gzip.open(FIXTURES / "golden/conversations.jsonl.gz", "rt", encoding="utf-8") as fh:
        return [json.loads(line)["messages"] for line in fh if line.strip()]


@pytest.mark.parametrize(
    ("renderer", "tokenizer"),
    [("llama3", "llama3"), ("qwen3", "qwen3"), ("deepseekv3", "deepseek_v3"), ("kimi_k2", "toy")],
)
def test_escape_encoding_equals_the_ordinary_one(
    renderer: str, tokenizer: str, tokenizer_for: Tok
) -> None:
    """The escape path (a chunk split at its live literals, each piece encoded alone with every
    added token spelled out) gives the batched encoder's ids for every chunk of the golden set."""
    tok = tokenizer_for(tokenizer)
    r = get_renderer(renderer, tok)
    screen = ContentScreen(tok, "escape")
    enc = BatchEncoder(tok, encoder="tokenizers")
    chunks: list[TextChunk] = []
    for conv in _golden_conversations():
        try:
            plan = plan_supervised(r, conv, TrainOnWhat.ALL_ASSISTANT_MESSAGES)
        except RowError:
            continue
        chunks += [c for c in plan.chunks if isinstance(c, TextChunk)]
    assert len(chunks) > 300
    table = enc.encode_unique(chunks)
    for c in chunks:
        assert screen.pieces_ids(c) == table[c].tolist(), c


def test_prompts_turns_and_counts(tokenizer_for: Tok) -> None:
    tok = tokenizer_for("llama3")
    r = get_renderer("llama3", tok)
    convs = [
        [{"role": "user", "content": "plain"}],
        [{"role": "user", "content": "a <|eot_id|> b <|start_header_id|>"}],
    ]
    special: dict[int, tuple[str, ...]] = {}
    keep = render_prompt_batch(r, BatchEncoder(tok, encoder="tokenizers"), convs, special=special)
    assert special == {1: ("<|eot_id|>", "<|start_header_id|>")}
    esc = render_prompt_batch(
        r,
        BatchEncoder(tok, encoder="tokenizers", special_tokens_in_content="escape"),
        convs,
        special=special,
    )
    assert isinstance(keep[1], np.ndarray) and isinstance(esc[1], np.ndarray)
    assert keep[0].tolist() == esc[0].tolist()
    assert keep[1].tolist().count(128009) == 2 and esc[1].tolist().count(128009) == 1
    assert plan_prompt(r, convs[1])  # the plan itself never changes: escaping is in the encoder
    turns = render_turns_flat(
        r,
        BatchEncoder(tok, encoder="tokenizers", special_tokens_in_content="refuse"),
        [
            [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "x <|eot_id|>"},
                {"role": "user", "content": "q2"},
                {"role": "assistant", "content": "y"},
            ]
        ],
        TrainOnWhat.ALL_ASSISTANT_MESSAGES,
    )
    assert turns.special == {0: ("<|eot_id|>",)}
    assert turns.errors[0].reason == SPECIAL_TOKEN_IN_CONTENT


def test_record_line_and_warning() -> None:
    rec = special_tokens_record("keep", 3, Counter({"<think>": 1, "<|eot_id|>": 3}))
    assert rec == {"policy": "keep", "rows": 3, "tokens": {"<|eot_id|>": 3, "<think>": 1}}
    line = special_tokens_line(rec)
    assert line is not None and line.startswith("3 rows spell control tokens")
    assert "<|eot_id|> 3, <think> 1" in line
    warning = special_tokens_warning(rec)
    assert warning is not None and warning["code"] == "special_tokens_in_content"
    assert "escape" in warning["message"]
    assert special_tokens_warning({**rec, "policy": "escape"}) is None
    assert special_tokens_line(special_tokens_record("keep", 0, Counter())) is None
