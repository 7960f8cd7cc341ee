"""Seeded random conversations on the toy tokenizer: invariants of the batched render path."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from tokenizers import Tokenizer

from shardprep.encode.tokenize import BatchEncoder, RenderedExample, render_supervised_batch
from shardprep.errors import RowError
from shardprep.renderers import TrainOnWhat, get_renderer, renderer_names
from shardprep.renderers.base import plan_supervised
from shardprep.renderers.chunks import Encoding, IdsChunk
from shardprep.tokenizer import LoadedTokenizer

# Words include special-token text and think tags, so escaping and framing get exercised.
WORDS = [
    "hi",
    "there",
    " ",
    "\n",
    "\n\n",
    "42",
    "ünï",
    "日本",
    "<|im_end|>",
    "<|eot_id|>",
    "<think>",
    "</think>",
    "<｜end▁of▁sentence｜>",
    "User:",
    "{}",
    "a b c",
]


def _text(rng: random.Random) -> str:
    return "".join(rng.choice(WORDS) for _ in range(rng.randint(0, 6)))


def _message(rng: random.Random, role: str, idx: int) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": role, "content": _text(rng)}
    if role == "assistant":
        if rng.random() < 0.3:
            content: list[dict[str, Any]] = [{"type": "thinking", "thinking": _text(rng)}]
            if rng.random() < 0.7:
                content.append({"type": "text", "text": _text(rng)})
            msg["content"] = content
        if rng.random() < 0.3:
            msg["tool_calls"] = [
                {
                    "type": "function",
                    "id": f"call_{idx}_{k}",
                    "function": {"name": "f", "arguments": json.dumps({"x": _text(rng)})},
                }
                for k in range(rng.randint(1, 2))
            ]
    return msg


def random_conversation(rng: random.Random) -> list[dict[str, Any]]:
    roles = ["system"] if rng.random() < 0.4 else []
    roles += [
        rng.choice(["user", "user", "assistant", "assistant", "tool"])
        for _ in range(rng.randint(1, 6))
    ]
    return [_message(rng, role, i) for i, role in enumerate(roles)]


CONVERSATIONS = [random_conversation(random.Random(f"shardprep-props-{i}")) for i in range(120)]


def _encode_one_by_one(tok: Tokenizer, escaped: Tokenizer, chunks: list[Any]) -> list[int]:
    ids: list[int] = []
    for c in chunks:
        if isinstance(c, IdsChunk):
            ids += c.ids
        else:
            backend = escaped if c.encoding is Encoding.ESCAPED else tok
            ids += backend.encode(c.text, add_special_tokens=False).ids
    return ids


# Renderers that are not tinker's need their own model's tokenizer (tokens, chat template).
OWN_TOKENIZER = {
    "mistral": "mistral_v3",
    "mistral_tekken": "mistral_nemo_tekken",
    "hf_template": "llama3",
}
# Mistral's template refuses most random conversations (9-character tool ids, user first).
MIN_RENDERED = {"mistral": 5, "mistral_tekken": 5}


@pytest.mark.parametrize("name", renderer_names())
def test_render_invariants(name: str, tokenizer_for: Callable[[str], LoadedTokenizer]) -> None:
    tokenizer = tokenizer_for(OWN_TOKENIZER.get(name, "toy"))
    renderer = get_renderer(name, tokenizer)
    encoder = BatchEncoder(tokenizer)
    escaped = Tokenizer.from_str(tokenizer.tokenizer.to_str())
    escaped.encode_special_tokens = True
    by_mode = {
        mode: render_supervised_batch(renderer, encoder, CONVERSATIONS, mode)
        for mode in TrainOnWhat
        if mode is not TrainOnWhat.CUSTOMIZED
    }
    rendered = 0
    for i, conv in enumerate(CONVERSATIONS):
        am, at = by_mode[TrainOnWhat.ALL_MESSAGES][i], by_mode[TrainOnWhat.ALL_TOKENS][i]
        if isinstance(am, RowError):
            continue
        rendered += 1
        assert isinstance(at, RenderedExample)
        plan = plan_supervised(renderer, conv, TrainOnWhat.ALL_MESSAGES)
        assert am.tokens.tolist() == _encode_one_by_one(tokenizer.tokenizer, escaped, plan.chunks)
        assert np.all(at.weights >= am.weights)
        for mode, results in by_mode.items():
            got = results[i]
            if isinstance(got, RowError):
                continue
            assert np.array_equal(got.tokens, am.tokens), mode
            assert got.weights.shape == got.tokens.shape, mode
            assert set(np.unique(got.weights).tolist()) <= {0.0, 1.0}, mode
    assert rendered >= MIN_RENDERED.get(name, 20), (
        f"only {rendered} of {len(CONVERSATIONS)} conversations rendered"
    )
