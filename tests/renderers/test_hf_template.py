"""`hf_template`: the model's own chat template, with masks from prefix renders."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest

from shardprep.encode.tokenize import BatchEncoder, RenderedExample, render_supervised_batch
from shardprep.errors import RendererError, RowError, ShardprepError
from shardprep.renderers import TrainOnWhat, get_renderer
from shardprep.renderers.base import plan_supervised
from shardprep.renderers.chunks import TextChunk
from shardprep.renderers.hf_template import HfTemplateRenderer, first_difference
from shardprep.renderers.jinja_template import ChatTemplate, template_messages
from shardprep.tokenizer import LoadedTokenizer, load_tokenizer

from .test_golden import conversations

FIXTURES = Path(__file__).parent.parent / "fixtures" / "tokenizers"
TEMPLATES = ["llama3", "qwen3", "deepseek_v3", "gpt_oss", "mistral_v3", "mistral_nemo_tekken"]


@functools.cache
def _tokenizer(name: str) -> LoadedTokenizer:
    return load_tokenizer(str(FIXTURES / name))


def _plan_text(renderer: HfTemplateRenderer, messages: list[dict[str, Any]], mode: str) -> str:
    plan = plan_supervised(renderer, messages, TrainOnWhat(mode))
    return "".join(c.text for c in plan.chunks if isinstance(c, TextChunk))


@pytest.mark.parametrize("name", TEMPLATES)
def test_text_equals_the_template_rendered_directly(name: str) -> None:
    tok = _tokenizer(name)
    renderer = get_renderer("hf_template", tok)
    assert isinstance(renderer, HfTemplateRenderer)
    direct = ChatTemplate.from_config(tok.config)
    rendered = refused = 0
    for messages in conversations(False).values():
        try:
            want = direct.render(template_messages(messages))
        except RendererError:
            want = None
        try:
            got = _plan_text(renderer, messages, "all_assistant_messages")
        except RowError as exc:
            # Only two reasons to refuse: the template itself refuses, or it is not
            # prefix-consistent for this row (said so, with the position).
            assert want is None or "prefix-consistent" in str(exc), exc
            refused += 1
            continue
        assert got == want
        rendered += 1
    assert rendered > 0, f"{name}: no conversation rendered ({refused} refused)"


def test_assistant_output_and_end_token_are_trained() -> None:
    tok = _tokenizer("llama3")
    renderer = get_renderer("hf_template", tok)
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    [got] = render_supervised_batch(
        renderer, BatchEncoder(tok), [messages], TrainOnWhat.LAST_ASSISTANT_MESSAGE
    )
    assert isinstance(got, RenderedExample)
    trained = [int(t) for t, w in zip(got.tokens, got.weights, strict=True) if w]
    assert tok.tokenizer.decode(trained, skip_special_tokens=False) == "Hello!<|eot_id|>"


def test_not_prefix_consistent_row_is_a_row_error_with_position() -> None:
    tok = _tokenizer("qwen3")
    renderer = get_renderer("hf_template", tok)
    # Qwen3's template drops reasoning from turns before the last user message, so adding
    # the second user turn rewrites the first answer.
    messages = [
        {"role": "user", "content": "a"},
        {
            "role": "assistant",
            "content": [{"type": "thinking", "thinking": "t"}, {"type": "text", "text": "b"}],
        },
        {"role": "user", "content": "c"},
        {"role": "assistant", "content": "d"},
    ]
    [got] = render_supervised_batch(
        renderer, BatchEncoder(tok), [messages], TrainOnWhat.ALL_ASSISTANT_MESSAGES
    )
    assert isinstance(got, RowError)
    assert "prefix-consistent" in str(got) and "character" in str(got)


def test_template_exception_is_a_row_error() -> None:
    tok = _tokenizer("mistral_v3")
    renderer = get_renderer("hf_template", tok)
    [got] = render_supervised_batch(
        renderer,
        BatchEncoder(tok),
        [[{"role": "assistant", "content": "no user first"}]],
        TrainOnWhat.ALL_ASSISTANT_MESSAGES,
    )
    assert isinstance(got, RowError) and "chat template raised" in str(got)


def test_sandbox_refuses_unsafe_attribute_access() -> None:
    template = ChatTemplate("{{ messages.__class__.__mro__ }}")
    with pytest.raises(RendererError):
        template.render([{"role": "user", "content": "x"}])


def test_missing_chat_template_is_a_configuration_error() -> None:
    with pytest.raises(ShardprepError, match="no chat_template"):
        get_renderer("hf_template", _tokenizer("toy"))


def test_first_difference() -> None:
    assert first_difference("abc", "abd") == 2
    assert first_difference("ab", "abc") == 2
