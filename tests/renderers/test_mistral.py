"""`mistral` / `mistral_tekken`: the same text as mistral-common's chat template."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest

from shardprep.encode.tokenize import BatchEncoder, RenderedExample, render_supervised_batch
from shardprep.errors import RendererError, RowError
from shardprep.renderers import TrainOnWhat, get_renderer
from shardprep.renderers.base import plan_supervised
from shardprep.renderers.chunks import TextChunk
from shardprep.renderers.content import has_thinking
from shardprep.renderers.jinja_template import ChatTemplate, template_messages
from shardprep.tokenizer import LoadedTokenizer, load_tokenizer

from .test_golden import conversations

FIXTURES = Path(__file__).parent.parent / "fixtures" / "tokenizers"
PAIRS = [("mistral", "mistral_v3"), ("mistral_tekken", "mistral_nemo_tekken")]


@functools.cache
def _tokenizer(name: str) -> LoadedTokenizer:
    return load_tokenizer(str(FIXTURES / name))


@pytest.mark.parametrize(("renderer_name", "tok"), PAIRS)
def test_text_equals_the_chat_template(renderer_name: str, tok: str) -> None:
    tokenizer = _tokenizer(tok)
    renderer = get_renderer(renderer_name, tokenizer)
    renderer.check_tokenizer()
    template = ChatTemplate.from_config(tokenizer.config)
    accepted = 0
    for cid, messages in conversations(False).items():
        if any(has_thinking(m["content"]) for m in messages if not isinstance(m["content"], str)):
            # Mistral has no reasoning format: refused rather than silently dropped.
            with pytest.raises(RowError, match="Only text chunks"):
                plan_supervised(renderer, messages, TrainOnWhat.ALL_MESSAGES)
            continue
        try:
            want = template.render(template_messages(messages))
        except RendererError:
            with pytest.raises(RowError):  # what the template refuses, the renderer refuses
                plan_supervised(renderer, messages, TrainOnWhat.ALL_MESSAGES)
            continue
        plan = plan_supervised(renderer, messages, TrainOnWhat.ALL_MESSAGES)
        got = "".join(c.text for c in plan.chunks if isinstance(c, TextChunk))
        assert got == want, cid
        accepted += 1
    assert accepted >= 80  # 90 of 150 on this data; the rest refused by both


@pytest.mark.parametrize(("renderer_name", "tok"), PAIRS)
def test_assistant_content_and_eos_are_trained(renderer_name: str, tok: str) -> None:
    tokenizer = _tokenizer(tok)
    renderer = get_renderer(renderer_name, tokenizer)
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
    ]
    [got] = render_supervised_batch(
        renderer, BatchEncoder(tokenizer), [messages], TrainOnWhat.LAST_ASSISTANT_MESSAGE
    )
    assert isinstance(got, RenderedExample)
    trained = got.tokens[got.weights > 0].tolist()
    assert tokenizer.tokenizer.decode(trained, skip_special_tokens=False).strip() == "Hello!</s>"
    # Whole-text encoding of the template's output gives the same ids.
    whole = ChatTemplate.from_config(tokenizer.config).render(messages)
    ids = tokenizer.tokenizer.encode(whole, add_special_tokens=False).ids
    assert np.array_equal(got.tokens, np.asarray(ids, dtype=np.int32))
